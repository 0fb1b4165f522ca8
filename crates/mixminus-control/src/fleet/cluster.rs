//! The control plane's side of a fleet: where each request is answered, what is stored
//! after each change, and who takes over a dead node's conferences.
//!
//! - **Routing** ([`route`], a layer inside the API's front): a request for a conference
//!   this node runs is answered here; one for a conference another live node owns is
//!   forwarded to it whole (method, path, query, headers, body) and answered with its
//!   reply; a create goes to the least loaded live node; a listing gathers every node's
//!   conferences; an event stream of a remote conference relays the owner's events.
//! - **Storing**: after every change to a conference this node owns (answered through the
//!   API, or a participant leaving on its own) its record is written by compare-and-set at
//!   the revision this node last wrote. A write that finds another revision means another
//!   node has claimed the conference: this node ends its copy.
//! - **Failover**: every half second, a node that [may claim](super::Fleet::may_claim)
//!   looks for conferences whose owner is no longer live and claims each by
//!   compare-and-set (exactly one claimant wins), restores document, lock, roster and
//!   matrix, and announces the move as a `conference-moved` event.
//! - **Fencing**: a node that is not [healthy](super::Fleet::healthy) refuses every change
//!   with 503, so it never diverges from the node that may be claiming its conferences.

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use dashmap::DashMap;
use http_body_util::BodyExt;
use mixminus_core::{Event, Gain, JoinOptions, ParticipantId, Relationship};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tower::ServiceExt;

use super::{
    Fleet, FleetError, Forward, ForwardHandler, ForwardReply, Load, Moved, RosterEntry,
    StoredConference, StoredRelation, HOP_BY_HOP,
};
use crate::doc::ConferenceDoc;
use crate::registry::{ConferenceEntry, Registry};
use crate::ApiError;

/// The control plane's fleet driver. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    fleet: Arc<dyn Fleet>,
    registry: Registry,
    owned: DashMap<(String, String), Arc<Owned>>,
    /// Whether the records a previous process of this node left have been taken back.
    adopted: std::sync::atomic::AtomicBool,
    /// The server is shutting down: its conferences end here but keep their records, so
    /// the others take them over.
    stopping: std::sync::atomic::AtomicBool,
}

/// A conference this node owns: the revision it last wrote, and what a move left waiting.
#[derive(Debug)]
struct Owned {
    /// Held while a record is written, so writes go out one at a time, in order.
    revision: tokio::sync::Mutex<u64>,
    /// Participants of the node before, not yet re-joined.
    awaiting: Mutex<Vec<RosterEntry>>,
    /// Relationship records naming an awaiting participant.
    pending: Mutex<Vec<StoredRelation>>,
    moves: Mutex<Vec<Moved>>,
    watcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(task) = self.watcher.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }
}

/// Marks a request another node forwarded here: it is answered here, never sent on.
#[derive(Debug, Clone)]
pub struct Forwarded;

/// Marks a response relayed from another node: the API sends it as it came.
#[derive(Debug, Clone)]
pub(crate) struct Relayed;

/// What the API's front saw: the method the client sent (before `?verb=` tunnelling) and
/// the request's id; a forwarded request carries both.
#[derive(Debug, Clone)]
pub(crate) struct Sent {
    pub(crate) method: Method,
    pub(crate) request_id: String,
}

/// Conference summaries from the other nodes, for a listing.
#[derive(Debug, Clone, Default)]
pub(crate) struct RemoteItems(pub(crate) Vec<Value>);

impl Cluster {
    /// A driver for `registry` in `fleet`.
    pub fn new(fleet: Arc<dyn Fleet>, registry: Registry) -> Self {
        Self {
            inner: Arc::new(Inner {
                fleet,
                registry,
                owned: DashMap::new(),
                adopted: std::sync::atomic::AtomicBool::new(false),
                stopping: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The fleet.
    pub fn fleet(&self) -> &Arc<dyn Fleet> {
        &self.inner.fleet
    }

    /// Whether requests may be answered elsewhere (not [`super::Local`]).
    pub fn is_distributed(&self) -> bool {
        self.inner.fleet.is_distributed()
    }

    /// Starts answering forwarded requests with `router` (the API's), reporting this node's
    /// load each second (`cpu` gives the cores used since its last call), and watching for
    /// dead owners. Call once, inside the tokio runtime.
    pub async fn start(
        &self,
        router: Router,
        mut cpu: impl FnMut() -> f64 + Send + 'static,
    ) -> Result<(), FleetError> {
        let handler: ForwardHandler = Arc::new(move |request: Forward| {
            let router = router.clone();
            Box::pin(async move { answer(router, request).await })
        });
        self.inner.fleet.serve(handler).await?;
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(500));
            let mut tick = 0u64;
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let cluster = Cluster { inner };
                tick += 1;
                if tick % 2 == 0 {
                    let (participants, conferences) = cluster.local_load();
                    cluster.inner.fleet.report_load(Load::new(participants, conferences, cpu()));
                }
                cluster.reconcile().await;
                cluster.claim_orphans().await;
            }
        });
        Ok(())
    }

    /// The server is shutting down: the conferences it ends from now on keep their records
    /// (the other nodes claim them after the liveness window). Call before ending them.
    pub fn stop(&self) {
        self.inner.stopping.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Records a conference just created on this node: its record is created only if
    /// there is none (two nodes never own one id). Refused: the caller ends its copy.
    pub(crate) async fn created(&self, entry: &Arc<ConferenceEntry>) -> Result<(), ApiError> {
        let owned = Arc::new(Owned::new(0, Vec::new(), Vec::new(), Vec::new()));
        let record = self.record(entry, &owned);
        let revision = self.inner.fleet.create(&record).await.map_err(|e| match e {
            FleetError::Taken { .. } => ApiError::Conflict {
                field: "id".into(),
                rule: "unique",
                message: format!("conference {} already exists in the fleet", entry.id()),
            },
            other => ApiError::Unavailable(other.to_string()),
        })?;
        *owned.revision.lock().await = revision;
        self.own(entry, owned);
        Ok(())
    }

    /// The roles a re-joining call had before its conference moved here.
    pub(crate) fn rejoining(&self, entry: &ConferenceEntry, call_id: &str) -> Option<RosterEntry> {
        let owned = self.owned(entry.account_id(), entry.id())?;
        let awaiting = owned.awaiting.lock().unwrap_or_else(|p| p.into_inner());
        awaiting.iter().find(|r| r.call_id == call_id).cloned()
    }

    /// A call from before the move is back as `id`: its own settings and every
    /// relationship with a participant already back are applied again.
    pub(crate) async fn rejoined(
        &self,
        entry: &ConferenceEntry,
        roster: &RosterEntry,
        id: ParticipantId,
    ) -> Result<(), ApiError> {
        let Some(owned) = self.owned(entry.account_id(), entry.id()) else { return Ok(()) };
        owned
            .awaiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|r| r.call_id != roster.call_id);
        let handle = entry.handle();
        if let Some(threshold) = roster.energy_threshold {
            entry.set_energy_override(id, true);
            handle.set_energy_threshold(id, Some(threshold)).await?;
        }
        let ready: Vec<StoredRelation> = {
            let mut pending = owned.pending.lock().unwrap_or_else(|p| p.into_inner());
            let (ready, rest): (Vec<_>, Vec<_>) = pending.drain(..).partition(|r| {
                let other = if r.participant == roster.call_id {
                    &r.other
                } else if r.other == roster.call_id {
                    &r.participant
                } else {
                    return false;
                };
                entry.participant_by_call(other).is_some()
            });
            *pending = rest;
            ready
        };
        for r in ready {
            let (Some(p), Some(o)) =
                (entry.participant_by_call(&r.participant), entry.participant_by_call(&r.other))
            else {
                continue;
            };
            handle.relate(vec![p], vec![o], Relationship { deaf: r.deaf, mute: r.mute }).await?;
        }
        Ok(())
    }

    /// The join options a re-joining call gets back.
    pub(crate) fn restored_options(roster: &RosterEntry, options: &mut JoinOptions) {
        options.muted = Some(!roster.can_speak);
        options.deaf = Some(!roster.can_hear);
        options.moderator = roster.moderator;
        options.ghost = roster.ghost;
        options.input_gain = Gain::from_q12(roster.input_gain).unwrap_or(Gain::UNITY);
        options.output_gain = Gain::from_q12(roster.output_gain).unwrap_or(Gain::UNITY);
    }

    /// What the fleet adds to a conference's `_read_only`: its owner, its moves, and who
    /// and which relationships still wait for a re-join after a move.
    pub(crate) fn read_only(&self, entry: &ConferenceEntry) -> Option<Value> {
        let owned = self.owned(entry.account_id(), entry.id())?;
        let awaiting: Vec<Value> = owned
            .awaiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|r| json!({"call_id": r.call_id, "participant_id": r.participant_id}))
            .collect();
        let pending = owned.pending.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let moves = owned.moves.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Some(json!({
            "owner": self.inner.fleet.node(),
            "moves": moves,
            "awaiting": awaiting,
            "awaiting_relationships": pending,
        }))
    }

    fn owned(&self, account: &str, id: &str) -> Option<Arc<Owned>> {
        self.inner.owned.get(&(account.to_owned(), id.to_owned())).map(|o| o.value().clone())
    }

    fn own(&self, entry: &Arc<ConferenceEntry>, owned: Arc<Owned>) {
        let key = (entry.account_id().to_owned(), entry.id().to_owned());
        let task = tokio::spawn(watch(Arc::downgrade(&self.inner), Arc::downgrade(entry)));
        *owned.watcher.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        self.inner.owned.insert(key, owned);
    }

    /// Participants and conferences on this node.
    fn local_load(&self) -> (u64, u64) {
        let all = self.inner.registry.all();
        let participants = all.iter().map(|e| e.counted(&e.handle().snapshot()) as u64).sum();
        (participants, all.len() as u64)
    }

    /// The record of a conference this node runs, as it is now.
    fn record(&self, entry: &ConferenceEntry, owned: &Owned) -> StoredConference {
        let snapshot = entry.handle().snapshot();
        let mut record = StoredConference::new(
            self.inner.fleet.node(),
            entry.account_id(),
            entry.id(),
            entry.doc().to_json(entry.id()),
        );
        record.locked = entry.is_locked();
        let mut calls = std::collections::HashMap::new();
        for leg in &snapshot.participants {
            let Some(meta) = entry.member(leg.info.id) else { continue };
            let info = &leg.info;
            calls.insert(info.id, meta.call_id.clone());
            record.roster.push(RosterEntry {
                call_id: meta.call_id,
                participant_id: info.id.get(),
                caller_id_name: meta.caller_id_name,
                caller_id_number: meta.caller_id_number,
                moderator: info.moderator,
                ghost: info.ghost,
                can_speak: info.can_speak,
                can_hear: info.can_hear,
                input_gain: info.input_gain.q12(),
                output_gain: info.output_gain.q12(),
                energy_threshold: if meta.energy_override { info.energy_threshold } else { None },
                awaiting: false,
            });
        }
        for (p, o, r) in snapshot.relationships.iter() {
            if let (Some(p), Some(o)) = (calls.get(p), calls.get(o)) {
                record.matrix.push(StoredRelation {
                    participant: p.clone(),
                    other: o.clone(),
                    deaf: r.deaf,
                    mute: r.mute,
                });
            }
        }
        record.roster.extend(owned.awaiting.lock().unwrap_or_else(|p| p.into_inner()).clone());
        record.matrix.extend(owned.pending.lock().unwrap_or_else(|p| p.into_inner()).clone());
        record.moves = owned.moves.lock().unwrap_or_else(|p| p.into_inner()).clone();
        record
    }

    /// Writes the record of a conference this node owns (after a change). Finding
    /// another node's write there means it was claimed: this node's copy ends.
    pub(crate) async fn persist(&self, account: &str, id: &str) -> Result<(), FleetError> {
        let Some(owned) = self.owned(account, id) else { return Ok(()) };
        let Ok(entry) = self.inner.registry.get(account, id) else { return Ok(()) };
        let mut revision = owned.revision.lock().await;
        let record = self.record(&entry, &owned);
        match self.inner.fleet.update(&record, *revision).await {
            Ok(r) => {
                *revision = r;
                Ok(())
            }
            Err(FleetError::Taken { revision: now }) => {
                drop(revision);
                tracing::warn!(
                    account,
                    conference = id,
                    ?now,
                    "another node claimed this conference: ending our copy"
                );
                self.lost(account, id).await;
                Err(FleetError::Taken { revision: now })
            }
            Err(e) => Err(e),
        }
    }

    /// A conference ended here through the API: its record goes too.
    async fn released(&self, account: &str, id: &str) {
        let Some((_, owned)) = self.inner.owned.remove(&(account.to_owned(), id.to_owned())) else {
            return;
        };
        let revision = *owned.revision.lock().await;
        if let Err(e) = self.inner.fleet.remove(account, id, revision).await {
            tracing::warn!(account, conference = id, error = %e, "removing the record failed");
        }
    }

    /// This node no longer owns the conference: its copy ends (participants get a BYE).
    async fn lost(&self, account: &str, id: &str) {
        self.inner.owned.remove(&(account.to_owned(), id.to_owned()));
        if self.inner.registry.remove(account, id).await.is_ok() {
            metrics::counter!("mixminus_fleet_lost_total").increment(1);
        }
    }

    /// Ends local copies of conferences the directory gives to another node (this node
    /// was cut off and someone claimed them meanwhile).
    async fn reconcile(&self) {
        if !self.inner.fleet.healthy() {
            return;
        }
        let me = self.inner.fleet.node().to_owned();
        let placements = self.inner.fleet.placements();
        let keys: Vec<_> = self.inner.owned.iter().map(|e| e.key().clone()).collect();
        let stopping = self.inner.stopping.load(std::sync::atomic::Ordering::Acquire);
        for (account, id) in keys {
            // Ended here other than through the API (an empty conference expired): its
            // record goes too, unless the whole server is stopping.
            if !stopping && self.inner.registry.get(&account, &id).is_err() {
                self.released(&account, &id).await;
                continue;
            }
            let elsewhere =
                placements.iter().any(|p| p.account == account && p.id == id && p.owner != me);
            if elsewhere {
                tracing::warn!(%account, conference = %id,
                    "the directory gives this conference to another node: ending our copy");
                self.lost(&account, &id).await;
            }
        }
    }

    /// Claims the conferences of dead owners, one compare-and-set each.
    async fn claim_orphans(&self) {
        let fleet = &self.inner.fleet;
        if !fleet.may_claim() {
            return;
        }
        let live: HashSet<String> = fleet.nodes().into_iter().map(|n| n.node).collect();
        let me = fleet.node().to_owned();
        // Once, when this node may first claim: records naming it that it does not run
        // were left by its previous process (restarted after a crash, after the window,
        // while the others still saw the name live). They are taken back like any other.
        let adopt = !self.inner.adopted.swap(true, std::sync::atomic::Ordering::AcqRel);
        for p in fleet.placements() {
            let leftover = adopt
                && p.owner == me
                && !self.inner.owned.contains_key(&(p.account.clone(), p.id.clone()))
                && self.inner.registry.get(&p.account, &p.id).is_err();
            if !leftover && (p.owner == me || live.contains(&p.owner)) {
                continue;
            }
            if let Err(e) = self.claim(&p.account, &p.id, &live, leftover).await {
                tracing::debug!(account = %p.account, conference = %p.id, error = %e, "claim lost");
            }
        }
    }

    /// Claims one conference whose owner is dead (or, `leftover`, this node's previous
    /// process).
    async fn claim(
        &self,
        account: &str,
        id: &str,
        live: &HashSet<String>,
        leftover: bool,
    ) -> Result<(), FleetError> {
        let fleet = &self.inner.fleet;
        let me = fleet.node().to_owned();
        let Some((mut record, revision)) = fleet.load(account, id).await? else { return Ok(()) };
        let ours = leftover && record.owner == me;
        if !ours && (record.owner == me || live.contains(&record.owner)) {
            return Ok(());
        }
        let from = std::mem::replace(&mut record.owner, me.clone());
        let at =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        record.moves.push(Moved { from: from.clone(), to: me.clone(), at });
        let excess = record.moves.len().saturating_sub(super::stored::MOVES_KEPT);
        record.moves.drain(..excess);
        for r in &mut record.roster {
            r.awaiting = true;
        }
        let revision = fleet.update(&record, revision).await?;
        metrics::counter!("mixminus_fleet_claims_total").increment(1);
        tracing::warn!(account, conference = id, from = %from, "claimed a dead node's conference");
        self.restore(record, revision, &from).await;
        Ok(())
    }

    /// Starts a claimed conference from its record and announces the move.
    async fn restore(&self, record: StoredConference, revision: u64, from: &str) {
        let (account, id) = (record.account.clone(), record.id.clone());
        let entry = match ConferenceDoc::parse(&record.doc)
            .and_then(|doc| self.inner.registry.create(&account, doc))
        {
            Ok(entry) => entry,
            Err(e) => {
                // It stays ours in the directory; requests for it answer 404 here until
                // it is created again. Nothing better can be done without its media.
                tracing::error!(%account, conference = %id, error = %e,
                    "a claimed conference could not be started");
                return;
            }
        };
        entry.set_locked(record.locked);
        let calls: Vec<String> = record.roster.iter().map(|r| r.call_id.clone()).collect();
        let owned = Arc::new(Owned::new(revision, record.roster, record.matrix, record.moves));
        self.own(&entry, owned);
        let rtp = self.inner.registry.bridge().config().rtp_bind;
        let event = json!({
            "event": "conference-moved",
            "conference_id": id,
            "from": from,
            "to": self.inner.fleet.node(),
            "rtp": {"local_ip": rtp.to_string()},
            "rejoin": calls,
        });
        if let Err(e) = self.inner.fleet.publish_event(&account, &id, &event).await {
            tracing::warn!(%account, conference = %id, error = %e, "announcing the move failed");
        }
    }
}

impl Owned {
    fn new(
        revision: u64,
        roster: Vec<RosterEntry>,
        matrix: Vec<StoredRelation>,
        moves: Vec<Moved>,
    ) -> Self {
        Self {
            revision: tokio::sync::Mutex::new(revision),
            awaiting: Mutex::new(roster),
            pending: Mutex::new(matrix),
            moves: Mutex::new(moves),
            watcher: Mutex::new(None),
        }
    }
}

/// Relays an owned conference's events to the fleet, and stores its record when a
/// participant leaves on its own (BYE, inactivity).
async fn watch(cluster: Weak<Inner>, entry: Weak<ConferenceEntry>) {
    let Some(strong) = entry.upgrade() else { return };
    let mut events = strong.handle().subscribe();
    let (account, id) = (strong.account_id().to_owned(), strong.id().to_owned());
    drop(strong);
    loop {
        let event = match events.recv().await {
            Ok(event) => event,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let (Some(inner), Some(entry)) = (cluster.upgrade(), entry.upgrade()) else { return };
        let cluster = Cluster { inner };
        let node = cluster.inner.fleet.node().to_owned();
        if let Some(p) = crate::events::payload(&event, Some(&entry), &id, &node) {
            let _ = cluster.inner.fleet.publish_event(&account, &id, &p.data).await;
        }
        if matches!(event, Event::Left(_)) {
            let _ = cluster.persist(&account, &id).await;
        }
    }
}

/// Answers a request another node forwarded, through this node's router.
async fn answer(router: Router, request: Forward) -> ForwardReply {
    let mut builder =
        axum::http::Request::builder().method(request.method.as_str()).uri(&request.uri);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    let Ok(mut http) = builder.body(Body::from(request.body)) else {
        return ForwardReply::new(400, Vec::new(), Bytes::from_static(b"{}"));
    };
    http.extensions_mut().insert(Forwarded);
    let response = match router.oneshot(http).await {
        Ok(response) => response,
        Err(e) => match e {},
    };
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    ForwardReply::new(parts.status.as_u16(), keep_headers(&parts.headers), body)
}

fn keep_headers(headers: &axum::http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !HOP_BY_HOP.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect()
}

/// What a path under `/v2/accounts/{A}` names.
enum Target {
    Collection { account: String },
    Conference { account: String, id: String, events: bool },
    Channel { account: String },
}

fn target(path: &str) -> Option<Target> {
    let mut parts = path.trim_end_matches('/').split('/').skip(1);
    if parts.next()? != "v2" || parts.next()? != "accounts" {
        return None;
    }
    let account = parts.next()?.to_owned();
    match parts.next()? {
        "conferences" => match parts.next() {
            None => Some(Target::Collection { account }),
            Some(id) => {
                let rest: Vec<&str> = parts.collect();
                Some(Target::Conference { account, id: id.to_owned(), events: rest == ["events"] })
            }
        },
        "channels" => Some(Target::Channel { account }),
        _ => None,
    }
}

fn changes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The routing layer (see the [module docs](self)); it runs inside the API's front, so
/// the body is read and the verb tunnelled already.
pub(crate) async fn route(
    State(cluster): State<Cluster>,
    request: Request,
    next: Next,
) -> Response {
    let forwarded = request.extensions().get::<Forwarded>().is_some();
    let method = request.method().clone();
    let Some(target) = target(request.uri().path()) else { return next.run(request).await };
    let fleet = cluster.inner.fleet.clone();
    if changes(&method) && !fleet.healthy() {
        return ApiError::Unavailable(
            "this node has lost touch with the fleet and accepts no changes (fenced)".into(),
        )
        .into_response();
    }
    match target {
        Target::Collection { account } => {
            if forwarded {
                return next.run(request).await;
            }
            if method == Method::PUT {
                let me = fleet.node().to_owned();
                // Our own load as it is now; the others' as of their last heartbeat.
                let (participants, conferences) = cluster.local_load();
                let best = fleet
                    .nodes()
                    .into_iter()
                    .map(|mut n| {
                        if n.node == me {
                            n.load = Load::new(participants, conferences, n.load.cpu);
                        }
                        n
                    })
                    .min_by(|a, b| {
                        a.load.score().total_cmp(&b.load.score()).then_with(|| a.node.cmp(&b.node))
                    })
                    .map(|n| n.node)
                    .unwrap_or_else(|| me.clone());
                if best != me {
                    return match relay(&cluster, &best, request).await {
                        Ok(response) => response,
                        Err((_, request)) => next.run(request).await,
                    };
                }
                return next.run(request).await;
            }
            if method == Method::GET {
                let (parts, body) = request.into_parts();
                let items = remote_listing(&cluster, &parts, &account).await;
                let mut request = Request::from_parts(parts, body);
                request.extensions_mut().insert(RemoteItems(items));
                return next.run(request).await;
            }
            next.run(request).await
        }
        Target::Conference { account, id, events } => {
            let local = cluster.inner.registry.get(&account, &id).is_ok();
            if forwarded || local {
                let delete = method == Method::DELETE;
                let response = next.run(request).await;
                if local && changes(&method) && response.status().is_success() {
                    if delete {
                        cluster.released(&account, &id).await;
                    } else if let Err(e) = cluster.persist(&account, &id).await {
                        // Applied here but not stored: the caller must not take it as
                        // done, the node that claims the conference will not have it.
                        tracing::warn!(%account, conference = %id, error = %e, "storing the change failed");
                        return ApiError::Unavailable(format!(
                            "the change was applied on this node but not stored in the fleet: {e}"
                        ))
                        .into_response();
                    }
                }
                return response;
            }
            let me = fleet.node();
            let Some(p) =
                fleet.placements().into_iter().find(|p| p.account == account && p.id == id)
            else {
                return next.run(request).await;
            };
            if p.owner == me {
                return next.run(request).await;
            }
            if !fleet.nodes().iter().any(|n| n.node == p.owner) {
                return ApiError::Unavailable(format!(
                    "conference {id}'s node {} is down; it is being moved, try again shortly",
                    p.owner
                ))
                .into_response();
            }
            if events && method == Method::GET {
                return relay_events(&cluster, &account, &id).await;
            }
            match relay(&cluster, &p.owner, request).await {
                Ok(response) => response,
                Err((e, _)) => e.into_response(),
            }
        }
        Target::Channel { account } => {
            let call = request.uri().path().trim_end_matches('/').rsplit('/').next().unwrap_or("");
            let found = cluster.inner.registry.find_call(&account, call);
            if forwarded || found.is_some() {
                let response = next.run(request).await;
                if let (Some((entry, _)), true) = (found, response.status().is_success()) {
                    let _ = cluster.persist(&account, entry.id()).await;
                }
                return response;
            }
            // The call may be on another node: the first that knows it answers.
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            for node in fleet.nodes().into_iter().filter(|n| n.node != fleet.node()) {
                let request = Request::from_parts(parts.clone(), Body::from(bytes.clone()));
                if let Ok(response) = relay(&cluster, &node.node, request).await {
                    if response.status() != StatusCode::NOT_FOUND {
                        return response;
                    }
                }
            }
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
    }
}

/// Forwards `request` to `node`; its answer, or why not (with the request back).
async fn relay(
    cluster: &Cluster,
    node: &str,
    request: Request,
) -> Result<Response, (ApiError, Request)> {
    let (parts, body) = request.into_parts();
    let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    let uri =
        parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |p| p.to_string());
    let sent = parts.extensions.get::<Sent>();
    let method = sent.map_or(&parts.method, |s| &s.method);
    let mut headers = keep_headers(&parts.headers);
    if let Some(sent) = sent {
        headers.retain(|(name, _)| name != "x-request-id");
        headers.push(("x-request-id".into(), sent.request_id.clone()));
    }
    let forward = Forward::new(method.to_string(), uri, headers, bytes.clone());
    match cluster.inner.fleet.forward(node, forward).await {
        Ok(reply) => {
            metrics::counter!("mixminus_fleet_forwarded_total").increment(1);
            let mut response = Response::new(Body::from(reply.body));
            *response.status_mut() =
                StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
            for (name, value) in reply.headers {
                if let (Ok(name), Ok(value)) =
                    (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value))
                {
                    response.headers_mut().append(name, value);
                }
            }
            response.extensions_mut().insert(Relayed);
            Ok(response)
        }
        Err(e) => {
            tracing::warn!(node, error = %e, "forwarding failed");
            let error = ApiError::Unavailable(format!("node {node} did not answer: {e}"));
            Err((error, Request::from_parts(parts, Body::from(bytes))))
        }
    }
}

/// The other live nodes' conferences of `account`, for a listing.
async fn remote_listing(
    cluster: &Cluster,
    parts: &axum::http::request::Parts,
    account: &str,
) -> Vec<Value> {
    let fleet = &cluster.inner.fleet;
    let mut items = Vec::new();
    for node in fleet.nodes().into_iter().filter(|n| n.node != fleet.node()) {
        let mut parts = parts.clone();
        let Ok(uri) = format!("/v2/accounts/{account}/conferences?paginate=false").parse() else {
            continue;
        };
        parts.uri = uri;
        let request = Request::from_parts(parts, Body::empty());
        let Ok(response) = relay(cluster, &node.node, request).await else { continue };
        let body = response.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if let Some(list) = value.get("data").and_then(Value::as_array) {
            items.extend(list.iter().cloned());
        }
    }
    items
}

/// Server-sent events of a conference another node owns, as it publishes them.
async fn relay_events(cluster: &Cluster, account: &str, id: &str) -> Response {
    let mut receiver = match cluster.inner.fleet.subscribe_events(account, id).await {
        Ok(receiver) => receiver,
        Err(e) => return ApiError::Unavailable(e.to_string()).into_response(),
    };
    let stream = async_stream(move |tx| async move {
        while let Some(event) = receiver.recv().await {
            let name = event.get("event").and_then(Value::as_str).unwrap_or("event").to_owned();
            if tx.send(SseEvent::default().event(name).data(event.to_string())).await.is_err() {
                return;
            }
        }
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    response.extensions_mut().insert(Relayed);
    response
}

/// A stream fed by a task (the task ends when the stream is dropped).
fn async_stream<F, Fut>(f: F) -> impl futures_util::Stream<Item = Result<SseEvent, Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<SseEvent>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert!(matches!(target("/v2/accounts/a/conferences"), Some(Target::Collection { .. })));
        assert!(matches!(target("/v2/accounts/a/conferences/"), Some(Target::Collection { .. })));
        assert!(matches!(
            target("/v2/accounts/a/conferences/c/events"),
            Some(Target::Conference { events: true, .. })
        ));
        assert!(matches!(
            target("/v2/accounts/a/conferences/c/participants/2"),
            Some(Target::Conference { events: false, .. })
        ));
        assert!(matches!(target("/v2/accounts/a/channels/x"), Some(Target::Channel { .. })));
        assert!(target("/metrics").is_none());
        assert!(target("/websocket").is_none());
    }
}
