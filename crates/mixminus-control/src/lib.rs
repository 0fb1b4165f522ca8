//! # mixminus-control: the control plane
//!
//! A Kazoo-shaped HTTP API (crossbar v2: `{"data": …}` requests, Kazoo's response and
//! error envelopes, `X-Auth-Token`) over a registry of running conferences, each driven by
//! a `mixminus-rtp` conference task. A Kazoo client works unchanged: it creates
//! conferences, lists participants with their live flags, relates them (`deaf` / `mute` /
//! `clear`), mutes, deafens and kicks; mixminus adds a media `join` action, the
//! relationship matrix, server-sent events and Prometheus metrics.
//!
//! This commit holds the edge of the API — request bodies parsed into typed values
//! ([`doc`], [`relate`], [`join`]), Kazoo's envelopes ([`envelope`], [`error`]), tokens
//! ([`auth`]) and the server's configuration ([`config`]); the routes and the registry
//! follow with the runtime they drive.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod config;
pub mod doc;
pub mod envelope;
pub mod error;
mod fields;
pub mod join;
pub mod relate;

pub use auth::Auth;
pub use config::Config;
pub use error::ApiError;
