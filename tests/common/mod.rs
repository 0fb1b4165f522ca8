//! Helpers shared by the end-to-end tests.

#![allow(dead_code)] // Each test binary uses a different part.

pub mod netem;
