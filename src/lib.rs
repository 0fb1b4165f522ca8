//! # mixminus
//!
//! An audio conference mixer engine: every participant hears everyone else (mix-minus),
//! and a per-pair relationship matrix (FreeSWITCH's `relate`, as Kazoo exposes it) removes
//! more. This facade re-exports the crates:
//!
//! - [`core`]: the sans-IO mixer (embed it anywhere; no runtime, no I/O);
//! - [`rtp`]: RTP media and the tokio conference runtime;
//! - [`control`]: the Kazoo-shaped HTTP control plane;
//! - [`sip`]: the SIP front (dial in by number and PIN).
//!
//! [`quality`] holds the sound measurements the end-to-end tests and the quality benchmark
//! share.
//!
//! The `mixminus` binary runs the standalone bridge (`mixminus serve`) and its demo
//! (`mixminus demo`).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

// The README's examples are compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub use mixminus_control as control;
pub use mixminus_core as core;
pub use mixminus_rtp as rtp;
pub use mixminus_sip as sip;

pub mod quality;
