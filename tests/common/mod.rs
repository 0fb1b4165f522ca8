//! Helpers shared by the end-to-end tests.

#![allow(dead_code)] // Each test binary uses a different part.

pub mod http;
pub mod leak;
pub mod netem;
pub mod talker;
