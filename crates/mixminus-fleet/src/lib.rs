//! # mixminus-fleet: a fleet of bridges on NATS
//!
//! [`Nats`] implements [`mixminus_control::fleet::Fleet`] on a NATS server with JetStream
//! (`nats-server -js`), through the official `async-nats` client:
//!
//! | what | where |
//! |---|---|
//! | node registry | KV bucket `{cluster}_nodes`: key = node name, value = [`NodeStatus`] JSON, rewritten every second by compare-and-set on the node's own revision; entries expire after the liveness window |
//! | conference records | KV bucket `{cluster}_conferences`: key = `{account}.{id}`, value = [`StoredConference`] JSON; created only if absent, replaced only at the revision the writer last saw |
//! | forwarding | request/reply on `{cluster}.node.{node}.http`: headers `Mixminus-Method`, `Mixminus-Uri`, `Http-{name}`; payload = body; the reply has `Mixminus-Status` |
//! | events | `{cluster}.events.{account}.{id}`: one JSON event per message |
//!
//! Both buckets are watched (`watch_all`), so liveness and placement are read from memory;
//! a node is live while its heartbeats keep arriving (seen within the liveness window).
//! Every message and key needs the NATS credentials from the configuration: a process
//! without them cannot join, read, or send anything to the fleet.
//!
//! **Fencing.** A node whose last successful heartbeat is older than the liveness window
//! minus one heartbeat interval is unhealthy: the control plane then refuses changes. The
//! others declare it dead only when they have not seen a heartbeat for the whole window,
//! so it stops first. A node claims nothing until it has been healthy and watching for a
//! whole window itself (after a start or a NATS outage it must first hear who is alive).
//!
//! **Names.** A node starts only if no live node has its name (its registry key is created
//! only if absent; a dead node's key expires with the window).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, Operation, Store};
use async_nats::{ConnectOptions, HeaderMap};
use bytes::Bytes;
use futures_util::StreamExt;
use mixminus_control::fleet::{
    Fleet, FleetError, FleetFuture, Forward, ForwardHandler, ForwardReply, Load, NodeStatus,
    Placement, StoredConference,
};
use serde_json::Value;
use tokio::sync::mpsc;

/// How a node authenticates to NATS.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// None (a NATS server without authorization; for tests on loopback only).
    #[default]
    None,
    /// User and password.
    UserPassword {
        /// User.
        user: String,
        /// Password.
        password: String,
    },
    /// A token.
    Token(String),
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::UserPassword { user, .. } => write!(f, "UserPassword({user}, ***)"),
            Credentials::Token(_) => f.write_str("Token(***)"),
        }
    }
}

/// How to join a fleet.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NatsConfig {
    /// The NATS server, `nats://host:port`.
    pub url: String,
    /// This node's name (`[A-Za-z0-9_-]{1,64}`, unique in the fleet).
    pub node: String,
    /// The fleet's name: prefixes its buckets and subjects, so fleets can share a server.
    pub cluster: String,
    /// A node unheard for this long is dead.
    pub liveness: Duration,
    /// How often a node reports itself.
    pub heartbeat: Duration,
    /// How long a forwarded request may take.
    pub forward_timeout: Duration,
    /// NATS credentials.
    pub credentials: Credentials,
}

impl NatsConfig {
    /// A configuration with the defaults: cluster `mixminus`, liveness 5 s, heartbeat 1 s,
    /// forwarding timeout 10 s, no credentials.
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            node: node.into(),
            cluster: "mixminus".into(),
            liveness: Duration::from_secs(5),
            heartbeat: Duration::from_secs(1),
            forward_timeout: Duration::from_secs(10),
            credentials: Credentials::None,
        }
    }
}

/// A node of a fleet on NATS. See the [crate docs](crate).
#[derive(Debug)]
pub struct Nats {
    config: NatsConfig,
    instance: String,
    client: async_nats::Client,
    nodes: Store,
    conferences: Store,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    load: Mutex<Load>,
    /// When a heartbeat was last written.
    last_ok: Mutex<Option<Instant>>,
    /// Since when this node has been healthy without a break.
    healthy_since: Mutex<Option<Instant>>,
    /// Since when both watches have been running without a break.
    watching_since: Mutex<Option<Instant>>,
    /// Every node heard from: its status and when.
    seen: Mutex<HashMap<String, (NodeStatus, Instant)>>,
    /// Every conference's placement, by key.
    placements: Mutex<HashMap<String, Placement>>,
    /// Another process took this node's name: it never changes anything again.
    evicted: AtomicBool,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The part of a conference record placement needs.
#[derive(serde::Deserialize)]
struct PlacementView {
    owner: String,
    account: String,
    id: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unreachable(e: impl fmt::Display) -> FleetError {
    FleetError::Unreachable(e.to_string())
}

impl Nats {
    /// Connects, opens (or creates) the buckets, registers this node (refused when a live
    /// node has its name) and starts the heartbeats and watches.
    pub async fn connect(config: NatsConfig) -> Result<Self, FleetError> {
        if !mixminus_control::fleet::valid_node_name(&config.node) {
            return Err(FleetError::Malformed(format!(
                "node name {:?}: a fleet node is named by 1-64 of A-Z a-z 0-9 _ -",
                config.node
            )));
        }
        let options = match &config.credentials {
            Credentials::None => ConnectOptions::new(),
            Credentials::UserPassword { user, password } => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Credentials::Token(token) => ConnectOptions::with_token(token.clone()),
        };
        let heartbeat = config.heartbeat;
        let client = options
            .name(format!("mixminus {}", config.node))
            .connection_timeout(Duration::from_secs(3))
            .request_timeout(Some(Duration::from_secs(3)))
            .ping_interval(heartbeat * 2)
            // Back quickly after a NATS restart: the liveness window is counting.
            .reconnect_delay_callback(move |attempts| {
                (heartbeat / 4).saturating_mul(attempts.min(4) as u32)
            })
            .connect(config.url.as_str())
            .await
            .map_err(unreachable)?;
        let js = async_nats::jetstream::new(client.clone());
        let nodes = bucket(
            &js,
            kv::Config {
                bucket: format!("{}_nodes", config.cluster),
                description: "mixminus fleet: live nodes and their load".into(),
                history: 1,
                max_age: config.liveness,
                ..Default::default()
            },
        )
        .await?;
        let conferences = bucket(
            &js,
            kv::Config {
                bucket: format!("{}_conferences", config.cluster),
                description: "mixminus fleet: conference placement, documents and matrices".into(),
                history: 1,
                storage: async_nats::jetstream::stream::StorageType::File,
                ..Default::default()
            },
        )
        .await?;
        let nats = Self {
            instance: uuid::Uuid::new_v4().simple().to_string(),
            config,
            client,
            nodes,
            conferences,
            shared: Arc::new(Shared::default()),
        };
        let revision = nats.register().await?;
        let beat = tokio::spawn(heartbeats(
            nats.nodes.clone(),
            nats.config.clone(),
            nats.instance.clone(),
            nats.shared.clone(),
            Some(revision),
        ));
        let watch = tokio::spawn(watches(
            nats.nodes.clone(),
            nats.conferences.clone(),
            nats.config.clone(),
            nats.shared.clone(),
        ));
        lock(&nats.shared.tasks).extend([beat, watch]);
        Ok(nats)
    }

    /// Writes this node's first heartbeat, only if no live node has its name.
    async fn register(&self) -> Result<u64, FleetError> {
        let status = self.status();
        match self.nodes.create(&self.config.node, status).await {
            Ok(revision) => {
                let now = Instant::now();
                *lock(&self.shared.last_ok) = Some(now);
                *lock(&self.shared.healthy_since) = Some(now);
                Ok(revision)
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(FleetError::DuplicateNode(self.config.node.clone()))
            }
            Err(e) => Err(unreachable(e)),
        }
    }

    fn status(&self) -> Bytes {
        status_bytes(&self.config.node, &self.instance, &lock(&self.shared.load))
    }

    fn subject(&self, node: &str) -> String {
        format!("{}.node.{node}.http", self.config.cluster)
    }

    fn events_subject(&self, account: &str, id: &str) -> String {
        format!("{}.events.{account}.{id}", self.config.cluster)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for task in lock(&self.shared.tasks).drain(..) {
            task.abort();
        }
    }
}

/// Opens a key-value bucket, creating it when missing. The bucket's stream is created here
/// with the key-value conventions (what `create_key_value` would send) because
/// `create_key_value` first reads the account's limits in a shape NATS 2.9 (Debian
/// bookworm's) does not answer.
async fn bucket(
    js: &async_nats::jetstream::Context,
    config: kv::Config,
) -> Result<Store, FleetError> {
    if let Ok(store) = js.get_key_value(config.bucket.clone()).await {
        return Ok(store);
    }
    use async_nats::jetstream::stream;
    let stream = stream::Config {
        name: format!("KV_{}", config.bucket),
        description: Some(config.description),
        subjects: vec![format!("$KV.{}.>", config.bucket)],
        max_messages_per_subject: config.history.max(1),
        max_age: config.max_age,
        storage: config.storage,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        num_replicas: 1,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    };
    let created = js.get_or_create_stream(stream).await;
    match js.get_key_value(config.bucket).await {
        Ok(store) => Ok(store),
        Err(e) => Err(unreachable(match created {
            Err(c) => c.to_string(),
            Ok(_) => e.to_string(),
        })),
    }
}

fn status_bytes(node: &str, instance: &str, load: &Load) -> Bytes {
    let status = NodeStatus::new(node, instance, load.clone());
    serde_json::to_vec(&status).map(Bytes::from).unwrap_or_default()
}

/// Rewrites this node's registry entry every heartbeat, at its own revision.
async fn heartbeats(
    nodes: Store,
    config: NatsConfig,
    instance: String,
    shared: Arc<Shared>,
    mut revision: Option<u64>,
) {
    let mut every = tokio::time::interval(config.heartbeat);
    loop {
        every.tick().await;
        if shared.evicted.load(Ordering::Acquire) {
            return;
        }
        let status = status_bytes(&config.node, &instance, &lock(&shared.load));
        let written = match revision {
            Some(r) => nodes
                .update(&config.node, status, r)
                .await
                .map_err(|e| (e.kind() == kv::UpdateErrorKind::WrongLastRevision, e.to_string())),
            None => nodes
                .create(&config.node, status)
                .await
                .map_err(|e| (e.kind() == kv::CreateErrorKind::AlreadyExists, e.to_string())),
        };
        match written {
            Ok(r) => {
                let now = Instant::now();
                let was_healthy = healthy(&config, &shared);
                revision = Some(r);
                *lock(&shared.last_ok) = Some(now);
                if !was_healthy {
                    tracing::info!("back in touch with the fleet");
                    *lock(&shared.healthy_since) = Some(now);
                }
            }
            Err((true, _)) => {
                // Our entry changed under us: it expired while we were cut off (write it
                // anew), or another process has our name (stop for good).
                match nodes.entry(&config.node).await {
                    Ok(Some(entry)) if entry.operation == Operation::Put => {
                        let theirs: Option<NodeStatus> = serde_json::from_slice(&entry.value).ok();
                        if theirs.is_some_and(|s| s.instance == instance) {
                            revision = Some(entry.revision);
                        } else {
                            tracing::error!(node = %config.node,
                                "another process runs under this node's name: this one stops changing anything");
                            shared.evicted.store(true, Ordering::Release);
                            return;
                        }
                    }
                    Ok(_) => revision = None,
                    Err(e) => tracing::debug!(error = %e, "reading our registry entry failed"),
                }
            }
            Err((false, e)) => tracing::debug!(error = %e, "heartbeat failed"),
        }
    }
}

fn healthy(config: &NatsConfig, shared: &Shared) -> bool {
    if shared.evicted.load(Ordering::Acquire) {
        return false;
    }
    // A little before the others may declare us dead: we stop changing things first.
    let margin = config.heartbeat.min(config.liveness / 2);
    lock(&shared.last_ok).is_some_and(|t| t.elapsed() < config.liveness - margin)
}

/// Watches both buckets into memory; starts over when either watch ends, fails, or goes
/// quiet (this node's own heartbeat must come through every interval). Each watch starts
/// with every key's current value (`watch_with_history`): the memory is cleared on a
/// restart, and `watch_all` would deliver only changes made after it, so a node back from
/// a partition forgot every placement that did not change again.
async fn watches(nodes: Store, conferences: Store, config: NatsConfig, shared: Arc<Shared>) {
    loop {
        let watched = async {
            Ok::<_, String>((
                nodes.watch_with_history(">").await.map_err(|e| e.to_string())?,
                conferences.watch_with_history(">").await.map_err(|e| e.to_string())?,
            ))
        }
        .await;
        let (mut node_watch, mut conference_watch) = match watched {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(error = %e, "watching the fleet failed");
                tokio::time::sleep(config.heartbeat / 4).await;
                continue;
            }
        };
        lock(&shared.placements).clear();
        *lock(&shared.watching_since) = Some(Instant::now());
        let mut last_self = Instant::now();
        let mut check = tokio::time::interval(config.heartbeat / 2);
        loop {
            tokio::select! {
                entry = node_watch.next() => {
                    let Some(Ok(entry)) = entry else { break };
                    let name = entry.key.clone();
                    if entry.operation != Operation::Put {
                        lock(&shared.seen).remove(&name);
                        continue;
                    }
                    let Ok(status) = serde_json::from_slice::<NodeStatus>(&entry.value) else { continue };
                    if name == config.node {
                        last_self = Instant::now();
                    }
                    lock(&shared.seen).insert(name, (status, Instant::now()));
                }
                entry = conference_watch.next() => {
                    let Some(Ok(entry)) = entry else { break };
                    let mut placements = lock(&shared.placements);
                    if entry.operation != Operation::Put {
                        placements.remove(&entry.key);
                        continue;
                    }
                    match serde_json::from_slice::<PlacementView>(&entry.value) {
                        Ok(v) => {
                            placements.insert(entry.key.clone(), Placement::new(&v.account, &v.id, &v.owner, entry.revision));
                        }
                        Err(e) => tracing::warn!(key = %entry.key, error = %e, "unreadable conference record"),
                    }
                }
                _ = check.tick() => {
                    if healthy(&config, &shared) && last_self.elapsed() > config.heartbeat * 3 {
                        tracing::info!("the fleet watch went quiet: watching again");
                        break;
                    }
                }
            }
        }
        *lock(&shared.watching_since) = None;
        tokio::time::sleep(config.heartbeat / 4).await;
    }
}

fn header(headers: Option<&HeaderMap>, name: &str) -> Option<String> {
    headers?.get(name).map(|v| v.as_str().to_owned())
}

fn http_headers(headers: Option<&HeaderMap>) -> Vec<(String, String)> {
    let Some(headers) = headers else { return Vec::new() };
    let mut out = Vec::new();
    for (name, values) in headers.iter() {
        let name = name.to_string();
        if let Some(http) = name.strip_prefix("Http-") {
            out.extend(values.iter().map(|v| (http.to_owned(), v.as_str().to_owned())));
        }
    }
    out
}

fn with_http_headers(mut map: HeaderMap, headers: &[(String, String)]) -> HeaderMap {
    for (name, value) in headers {
        map.append(format!("Http-{name}").as_str(), value.as_str());
    }
    map
}

impl Fleet for Nats {
    fn node(&self) -> &str {
        &self.config.node
    }

    fn is_distributed(&self) -> bool {
        true
    }

    fn liveness(&self) -> Duration {
        self.config.liveness
    }

    fn healthy(&self) -> bool {
        healthy(&self.config, &self.shared)
    }

    fn may_claim(&self) -> bool {
        let window = self.config.liveness;
        self.healthy()
            && lock(&self.shared.healthy_since).is_some_and(|t| t.elapsed() >= window)
            && lock(&self.shared.watching_since).is_some_and(|t| t.elapsed() >= window)
    }

    fn nodes(&self) -> Vec<NodeStatus> {
        let window = self.config.liveness;
        let mut live: Vec<NodeStatus> = lock(&self.shared.seen)
            .values()
            .filter(|(_, at)| at.elapsed() < window)
            .map(|(s, _)| s.clone())
            .collect();
        let me = &self.config.node;
        live.retain(|s| s.node != *me);
        live.push(NodeStatus::new(
            me.clone(),
            self.instance.clone(),
            lock(&self.shared.load).clone(),
        ));
        live
    }

    fn report_load(&self, load: Load) {
        *lock(&self.shared.load) = load;
    }

    fn placements(&self) -> Vec<Placement> {
        lock(&self.shared.placements).values().cloned().collect()
    }

    fn create(&self, record: &StoredConference) -> FleetFuture<'_, u64> {
        let key = StoredConference::key(&record.account, &record.id);
        let value = serde_json::to_vec(record).map(Bytes::from);
        Box::pin(async move {
            let value = value.map_err(|e| FleetError::Malformed(e.to_string()))?;
            match self.conferences.create(&key, value).await {
                Ok(revision) => Ok(revision),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    Err(FleetError::Taken { revision: None })
                }
                Err(e) => Err(unreachable(e)),
            }
        })
    }

    fn update(&self, record: &StoredConference, revision: u64) -> FleetFuture<'_, u64> {
        let key = StoredConference::key(&record.account, &record.id);
        let value = serde_json::to_vec(record).map(Bytes::from);
        Box::pin(async move {
            let value = value.map_err(|e| FleetError::Malformed(e.to_string()))?;
            match self.conferences.update(&key, value, revision).await {
                Ok(revision) => Ok(revision),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    Err(FleetError::Taken { revision: None })
                }
                Err(e) => Err(unreachable(e)),
            }
        })
    }

    fn load(&self, account: &str, id: &str) -> FleetFuture<'_, Option<(StoredConference, u64)>> {
        let key = StoredConference::key(account, id);
        Box::pin(async move {
            match self.conferences.entry(&key).await.map_err(unreachable)? {
                Some(entry) if entry.operation == Operation::Put => {
                    let record = serde_json::from_slice(&entry.value)
                        .map_err(|e| FleetError::Malformed(e.to_string()))?;
                    Ok(Some((record, entry.revision)))
                }
                _ => Ok(None),
            }
        })
    }

    fn remove(&self, account: &str, id: &str, revision: u64) -> FleetFuture<'_, ()> {
        let key = StoredConference::key(account, id);
        Box::pin(async move {
            self.conferences
                .delete_expect_revision(&key, Some(revision))
                .await
                .map_err(|_| FleetError::Taken { revision: None })
        })
    }

    fn forward(&self, node: &str, request: Forward) -> FleetFuture<'_, ForwardReply> {
        let subject = self.subject(node);
        let node = node.to_owned();
        Box::pin(async move {
            let mut headers = HeaderMap::new();
            headers.insert("Mixminus-Method", request.method.as_str());
            headers.insert("Mixminus-Uri", request.uri.as_str());
            headers.insert("Mixminus-From", self.config.node.as_str());
            let headers = with_http_headers(headers, &request.headers);
            let message = self
                .client
                .send_request(
                    subject,
                    async_nats::Request::new()
                        .headers(headers)
                        .payload(request.body)
                        .timeout(Some(self.config.forward_timeout)),
                )
                .await
                .map_err(|e| match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => FleetError::NoSuchNode(node),
                    _ => unreachable(e),
                })?;
            let status = header(message.headers.as_ref(), "Mixminus-Status")
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| FleetError::Malformed("a reply without Mixminus-Status".into()))?;
            Ok(ForwardReply::new(status, http_headers(message.headers.as_ref()), message.payload))
        })
    }

    fn serve(&self, handler: ForwardHandler) -> FleetFuture<'_, ()> {
        let subject = self.subject(&self.config.node);
        Box::pin(async move {
            let mut requests = self.client.subscribe(subject).await.map_err(unreachable)?;
            let client = self.client.clone();
            let task = tokio::spawn(async move {
                while let Some(message) = requests.next().await {
                    let (client, handler) = (client.clone(), handler.clone());
                    tokio::spawn(async move {
                        let Some(reply_to) = message.reply.clone() else { return };
                        let headers = message.headers.as_ref();
                        let (Some(method), Some(uri)) =
                            (header(headers, "Mixminus-Method"), header(headers, "Mixminus-Uri"))
                        else {
                            return;
                        };
                        let request = Forward::new(
                            method,
                            uri,
                            http_headers(headers),
                            message.payload.clone(),
                        );
                        let reply = handler(request).await;
                        let mut map = HeaderMap::new();
                        map.insert("Mixminus-Status", reply.status.to_string().as_str());
                        let map = with_http_headers(map, &reply.headers);
                        if let Err(e) = client.publish_with_headers(reply_to, map, reply.body).await
                        {
                            tracing::debug!(error = %e, "answering a forwarded request failed");
                        }
                    });
                }
            });
            lock(&self.shared.tasks).push(task);
            Ok(())
        })
    }

    fn publish_event(&self, account: &str, id: &str, event: &Value) -> FleetFuture<'_, ()> {
        let subject = self.events_subject(account, id);
        let payload = Bytes::from(event.to_string());
        Box::pin(async move { self.client.publish(subject, payload).await.map_err(unreachable) })
    }

    fn subscribe_events(&self, account: &str, id: &str) -> FleetFuture<'_, mpsc::Receiver<Value>> {
        let subject = self.events_subject(account, id);
        Box::pin(async move {
            let mut events = self.client.subscribe(subject).await.map_err(unreachable)?;
            let (tx, rx) = mpsc::channel(256);
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        message = events.next() => {
                            let Some(message) = message else { return };
                            let Ok(event) = serde_json::from_slice::<Value>(&message.payload) else { continue };
                            // A reader that does not keep up loses events, never our memory.
                            if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(event) {
                                return;
                            }
                        }
                        _ = tx.closed() => return,
                    }
                }
            });
            Ok(rx)
        })
    }
}
