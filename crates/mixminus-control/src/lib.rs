//! # mixminus-control: the control plane
//!
//! A Kazoo-shaped HTTP API (crossbar v2: `{"data": …}` requests, Kazoo's response and
//! error envelopes, `X-Auth-Token`) over a registry of running conferences, each driven by
//! a [`mixminus_rtp`] conference task. A Kazoo client works unchanged: it creates
//! conferences, lists participants with their live flags, relates them (`deaf` / `mute` /
//! `clear`), mutes, deafens and kicks; mixminus adds a media `join` action, the
//! relationship matrix, server-sent events and Prometheus metrics.
//!
//! - [`api`]: the routes ([`Api`] builds the axum router);
//! - [`registry`]: the running conferences and their participants' call metadata;
//! - [`schema`]: Kazoo's JSON schemas, run on request bodies (with `fix_js_types`);
//! - [`doc`], [`relate`], [`join`]: request bodies parsed into typed values;
//! - [`envelope`], [`error`]: Kazoo's response and error envelopes;
//! - [`auth`]: tokens; [`config`]: the server's TOML configuration;
//! - [`whip`]: browsers join through WHIP (an SDP offer in, a WebRTC participant);
//! - [`ui`]: the moderator page at `/ui/` (conferences, participants, the matrix as a grid).
//! - [`fleet`]: several servers answering as one (placement, forwarding, failover).
//!
//! ## Embedding
//!
//! ```no_run
//! use mixminus_control::{Api, Auth, Registry};
//! use mixminus_control::config::AccountScope;
//! use mixminus_rtp::{Bridge, BridgeConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let bridge = Bridge::new(BridgeConfig::default())?;
//! let registry = Registry::new(bridge, 100);
//! let auth = Auth::default().with_token("change-me", AccountScope::All);
//! let app = Api::new(registry.clone(), auth).node("edge1").router();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8000").await?;
//! axum::serve(listener, app).await?;
//! registry.stop_all().await; // every participant gets an RTCP BYE
//! # Ok(()) }
//! ```
//!
//! Then `curl -H 'X-Auth-Token: change-me' -X PUT -d '{"data": {"name": "standup"}}'
//! http://127.0.0.1:8000/v2/accounts/acc1/conferences`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod auth;
pub mod config;
pub mod doc;
pub mod envelope;
pub mod error;
pub mod events;
mod fields;
pub mod fleet;
pub mod join;
pub mod listing;
pub mod media;
pub mod registry;
pub mod relate;
pub mod request;
pub mod schema;
pub mod server;
pub mod ui;
pub mod whip;

pub use api::Api;
pub use auth::Auth;
pub use config::Config;
pub use error::ApiError;
pub use registry::Registry;
