//! Helpers shared by the end-to-end tests.
//!
//! The hostile tests' RTP port ranges (api_security 12000s, impairment 13000s, churn
//! 14000s, flood 15000s; sound_glitch 11000s, quality_smoke 11200s) sit below Linux's
//! ephemeral range (32768–60999): a socket bound to port 0 anywhere on the machine cannot
//! take them, and the flood's "unused" ports stay unused.

#![allow(dead_code)] // Each test binary uses a different part.

pub mod baresip;
pub mod browser;
pub mod fleet;
pub mod http;
pub mod leak;
pub mod netem;
pub mod sipua;
pub mod talker;
