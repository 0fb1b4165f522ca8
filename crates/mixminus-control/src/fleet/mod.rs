//! The fleet seam: what several `mixminus serve` processes share so they answer as one
//! bridge (see `docs/FLEET.md`).
//!
//! [`Fleet`] is everything the control plane needs from the outside world to run on more
//! than one machine:
//!
//! - a **node registry with liveness**: every node reports its load each second; a node not
//!   heard from for [`Fleet::liveness`] is dead ([`Fleet::nodes`] lists the live ones);
//! - **placement by compare-and-set**: a conference's record is created only if absent
//!   ([`Fleet::create`]) and replaced only at the revision the writer last saw
//!   ([`Fleet::update`]), so two nodes can never both own one conference;
//! - **request/reply to the owner**: [`Fleet::forward`] carries an HTTP request to another
//!   node and brings back its answer; [`Fleet::serve`] answers the ones sent here;
//! - a **watched store** of the conference records (document, lock, roster, relationship
//!   matrix; [`StoredConference`]), whose placements every node sees change
//!   ([`Fleet::placements`]), and the conferences' event streams across nodes.
//!
//! Two implementations: [`Local`] (in-process, one node: the default, with which `serve`
//! works exactly as it does without a fleet) and `mixminus_fleet::Nats` (NATS JetStream
//! key-value for the records and node registry, NATS request/reply for forwarding).
//! [`Cluster`] is the control plane's side: it decides where a request is answered, stores
//! every change of the conferences this node owns, and claims dead nodes' conferences.

mod cluster;
mod local;
mod stored;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

pub(crate) use cluster::{route, Relayed, RemoteItems, Sent};
pub use cluster::{Cluster, Forwarded};
pub use local::Local;
pub use stored::{Moved, RosterEntry, StoredConference, StoredRelation};

/// A boxed future, so [`Fleet`] can be a trait object.
pub type FleetFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, FleetError>> + Send + 'a>>;

/// Answers a forwarded request (the control plane's router, see [`Cluster::start`]).
pub type ForwardHandler =
    Arc<dyn Fn(Forward) -> Pin<Box<dyn Future<Output = ForwardReply> + Send>> + Send + Sync>;

/// What the control plane needs from a fleet. See the [module docs](self).
pub trait Fleet: Send + Sync + fmt::Debug {
    /// This node's name (unique in the fleet).
    fn node(&self) -> &str;

    /// Whether other nodes can exist. `false` ([`Local`]): the API answers everything
    /// itself and stores nothing, exactly as a lone `serve`.
    fn is_distributed(&self) -> bool;

    /// How long a node may go unheard before it is dead.
    fn liveness(&self) -> Duration;

    /// Whether this node is in touch with the fleet. A node that is not refuses every
    /// change (fencing): the others may be claiming its conferences.
    fn healthy(&self) -> bool;

    /// Whether this node sees the fleet well enough to declare others dead: healthy for a
    /// whole liveness window, so it has heard every live node's heartbeat since.
    fn may_claim(&self) -> bool;

    /// The live nodes, this one included, with the load each reported last.
    fn nodes(&self) -> Vec<NodeStatus>;

    /// Sets the load this node reports from its next heartbeat on.
    fn report_load(&self, load: Load);

    /// Where every stored conference is, as last seen (watched, not fetched).
    fn placements(&self) -> Vec<Placement>;

    /// Stores a new conference's record only if there is none: its revision, or
    /// [`FleetError::Taken`].
    fn create(&self, record: &StoredConference) -> FleetFuture<'_, u64>;

    /// Replaces a record if it is still at `revision` (compare-and-set): the new revision,
    /// or [`FleetError::Taken`] when someone else wrote it since.
    fn update(&self, record: &StoredConference, revision: u64) -> FleetFuture<'_, u64>;

    /// A conference's record and its revision.
    fn load(&self, account: &str, id: &str) -> FleetFuture<'_, Option<(StoredConference, u64)>>;

    /// Deletes a record if it is still at `revision`.
    fn remove(&self, account: &str, id: &str, revision: u64) -> FleetFuture<'_, ()>;

    /// Sends an HTTP request to `node` and waits for its answer.
    fn forward(&self, node: &str, request: Forward) -> FleetFuture<'_, ForwardReply>;

    /// Answers requests forwarded to this node with `handler` from now on.
    fn serve(&self, handler: ForwardHandler) -> FleetFuture<'_, ()>;

    /// Sends one event of a conference to every node's subscribers.
    fn publish_event(&self, account: &str, id: &str, event: &Value) -> FleetFuture<'_, ()>;

    /// A conference's events as its owner publishes them, whichever node that is.
    fn subscribe_events(&self, account: &str, id: &str) -> FleetFuture<'_, mpsc::Receiver<Value>>;
}

/// Why the fleet could not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The record was created or changed by another node first (compare-and-set lost).
    #[error("the conference record changed under us (now revision {revision:?})")]
    Taken {
        /// The record's current revision, when known.
        revision: Option<u64>,
    },
    /// The fleet's store or transport did not answer.
    #[error("the fleet is unreachable: {0}")]
    Unreachable(String),
    /// Another live node has this node's name.
    #[error("node name {0} is in use by a live node")]
    DuplicateNode(String),
    /// The operation needs other nodes and there are none ([`Local`]).
    #[error("no such node: {0}")]
    NoSuchNode(String),
    /// A record or message could not be read.
    #[error("malformed fleet data: {0}")]
    Malformed(String),
}

/// What a node reports about itself each second.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Load {
    /// Participants in its conferences.
    pub participants: u64,
    /// Conferences it runs.
    pub conferences: u64,
    /// CPU it used over the last second, in cores (1.0 = one core busy).
    pub cpu: f64,
}

impl Load {
    /// A load report.
    pub fn new(participants: u64, conferences: u64, cpu: f64) -> Self {
        Self { participants, conferences, cpu }
    }

    /// Placement's score, lower is better: participants, plus 5 per conference (a new
    /// conference is expected to grow), plus 100 per busy core.
    pub fn score(&self) -> f64 {
        self.participants as f64 + 5.0 * self.conferences as f64 + 100.0 * self.cpu
    }
}

/// A live node as the registry sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct NodeStatus {
    /// Its name.
    pub node: String,
    /// Its process's random id: tells a restarted node from the one before it.
    pub instance: String,
    /// Its last reported load.
    pub load: Load,
}

impl NodeStatus {
    /// A node's status.
    pub fn new(node: impl Into<String>, instance: impl Into<String>, load: Load) -> Self {
        Self { node: node.into(), instance: instance.into(), load }
    }
}

/// Which node a conference is on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Placement {
    /// The account.
    pub account: String,
    /// The conference id.
    pub id: String,
    /// The node that owns it.
    pub owner: String,
    /// The record's revision.
    pub revision: u64,
}

impl Placement {
    /// A placement.
    pub fn new(account: &str, id: &str, owner: &str, revision: u64) -> Self {
        Self { account: account.into(), id: id.into(), owner: owner.into(), revision }
    }
}

/// An HTTP request carried to another node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Forward {
    /// The method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// The headers that matter (not the hop-by-hop ones).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl Forward {
    /// A forwarded request.
    pub fn new(method: String, uri: String, headers: Vec<(String, String)>, body: Bytes) -> Self {
        Self { method, uri, headers, body }
    }
}

/// The answer to a [`Forward`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForwardReply {
    /// The status code.
    pub status: u16,
    /// The headers that matter.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

impl ForwardReply {
    /// An answer.
    pub fn new(status: u16, headers: Vec<(String, String)>, body: Bytes) -> Self {
        Self { status, headers, body }
    }
}

/// Headers never carried to another node (hop-by-hop, or recomputed there).
pub const HOP_BY_HOP: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];

/// Whether `name` is usable as a node name in a fleet: 1..=64 of `[A-Za-z0-9_-]` (it
/// names a key and a subject).
pub fn valid_node_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
