//! The registry of running conferences: per account, an id → entry map (dashmap). An entry
//! holds the Kazoo document, the lock flag, each participant's call metadata and the
//! runtime's [`ConferenceHandle`]. Entries are handed out as `Arc`s so no map guard is ever
//! held across an `.await`; live state (participants, flags, matrix) is read from the
//! handle's snapshot, never cached here.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use mixminus_core::ParticipantId;
use mixminus_rtp::{
    Bridge, CodecKind, CodecParams, ConferenceHandle, ConferenceSettings, LegSnapshot, ReportBlock,
    RtcpStats, Snapshot,
};
use serde_json::{json, Map, Value};

use crate::doc::ConferenceDoc;
use crate::envelope::gregorian_seconds;
use crate::join::{CodecName, RtpCodec};
use crate::ApiError;

/// The conferences a server runs, on one [`Bridge`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bridge: Bridge,
    conferences: DashMap<(String, String), Arc<ConferenceEntry>>,
    max_conferences: usize,
    quotas: Quotas,
    /// Whether the expiry sweeper runs (started with the first conference).
    sweeping: AtomicBool,
}

/// What one account may hold (TOML `[quotas]`). A request past a quota is refused with a
/// 4xx naming it, and changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Quotas {
    /// Conferences one account may run at once.
    pub conferences_per_account: usize,
    /// Participants (not ghosts) one account may have across its conferences. Counted from
    /// the conferences' snapshots at join, so concurrent joins in several conferences of one
    /// account can overshoot by the joins in flight; per conference the limit is exact.
    pub participants_per_account: usize,
    /// Relationship records one conference may hold.
    pub relationships_per_conference: usize,
    /// Seconds a conference may stay empty (no participant) before it ends; 0 = never.
    pub empty_conference_ttl_secs: u64,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            conferences_per_account: 100,
            participants_per_account: 10_000,
            relationships_per_conference: 100_000,
            empty_conference_ttl_secs: 600,
        }
    }
}

/// One running conference.
#[derive(Debug)]
pub struct ConferenceEntry {
    id: String,
    account_id: String,
    doc: RwLock<ConferenceDoc>,
    /// The document the runtime was started with: what cannot change live comes from it.
    started: ConferenceDoc,
    revision: AtomicU64,
    /// Shared with every join request: the conference task reads it when it admits one.
    locked: Arc<AtomicBool>,
    /// Since when the conference has had no participant (for expiry).
    empty_since: Mutex<Option<std::time::Instant>>,
    created_at: SystemTime,
    members: Mutex<HashMap<ParticipantId, ParticipantMeta>>,
    /// Calls whose join is under way (see [`ConferenceEntry::claim_call`]).
    joining: Mutex<std::collections::HashSet<String>>,
    /// The last participants to leave, as their events describe them (bounded).
    departed: Mutex<std::collections::VecDeque<(ParticipantId, Value)>>,
    handle: ConferenceHandle,
}

/// How many departed participants' descriptions are kept for their `del-member` events.
const DEPARTED_KEPT: usize = 64;

/// What the control plane knows about a participant beyond the mixer: its call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParticipantMeta {
    /// Kazoo's `call_id`.
    pub call_id: String,
    /// Caller id name.
    pub caller_id_name: Option<String>,
    /// Caller id number.
    pub caller_id_number: Option<String>,
    /// When it joined.
    pub joined_at: SystemTime,
    /// Kazoo's `custom_channel_vars`, as the join gave them.
    pub custom_channel_vars: Option<Map<String, Value>>,
    /// Whether its energy threshold was set on it (the `energy` action), so a change of
    /// the conference's `energy-level` leaves it alone.
    pub energy_override: bool,
}

impl ParticipantMeta {
    /// Metadata for a participant joining now.
    pub fn new(
        call_id: String,
        caller_id_name: Option<String>,
        caller_id_number: Option<String>,
    ) -> Self {
        Self {
            call_id,
            caller_id_name,
            caller_id_number,
            joined_at: SystemTime::now(),
            custom_channel_vars: None,
            energy_override: false,
        }
    }

    /// With Kazoo's `custom_channel_vars`.
    pub fn with_custom_channel_vars(mut self, vars: Option<Map<String, Value>>) -> Self {
        self.custom_channel_vars = vars;
        self
    }
}

impl Registry {
    /// A registry starting conferences on `bridge`, at most `max_conferences` at once.
    pub fn new(bridge: Bridge, max_conferences: usize) -> Self {
        Self::with_quotas(bridge, max_conferences, Quotas::default())
    }

    /// A registry with per-account quotas.
    pub fn with_quotas(bridge: Bridge, max_conferences: usize, quotas: Quotas) -> Self {
        Self {
            inner: Arc::new(Inner {
                bridge,
                conferences: DashMap::new(),
                max_conferences,
                quotas,
                sweeping: AtomicBool::new(false),
            }),
        }
    }

    /// The quotas in force.
    pub fn quotas(&self) -> Quotas {
        self.inner.quotas
    }

    /// Participants (not ghosts) of `account`, across its conferences, as of their
    /// snapshots.
    pub fn account_participants(&self, account: &str) -> usize {
        self.inner
            .conferences
            .iter()
            .filter(|e| e.key().0 == account)
            .map(|e| e.value().counted(&e.value().handle.snapshot()))
            .sum()
    }

    /// Starts the sweeper that ends conferences empty for longer than the quota allows
    /// (once, on the current runtime; it stops when the registry is dropped).
    fn start_sweeper(&self) {
        let ttl = self.inner.quotas.empty_conference_ttl_secs;
        if ttl == 0 || self.inner.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let ttl = std::time::Duration::from_secs(ttl);
        let weak = Arc::downgrade(&self.inner);
        let every = (ttl / 4)
            .clamp(std::time::Duration::from_millis(50), std::time::Duration::from_secs(10));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(inner) = weak.upgrade() else { return };
                let registry = Registry { inner };
                for (account, id) in registry.expired(ttl) {
                    tracing::info!(%account, conference = %id, "ending a conference empty for {ttl:?}");
                    let _ = registry.remove(&account, &id).await;
                }
            }
        });
    }

    /// Conferences empty for longer than `ttl` (marks the newly empty ones).
    fn expired(&self, ttl: std::time::Duration) -> Vec<(String, String)> {
        let now = std::time::Instant::now();
        let mut out = Vec::new();
        for e in self.inner.conferences.iter() {
            let empty = e.value().handle.snapshot().participants.is_empty();
            let mut since = e.value().empty_since.lock().unwrap_or_else(|p| p.into_inner());
            match (*since, empty) {
                (_, false) => *since = None,
                (None, true) => *since = Some(now),
                (Some(t), true) if now.duration_since(t) >= ttl => out.push(e.key().clone()),
                _ => {}
            }
        }
        out
    }

    /// The bridge.
    pub fn bridge(&self) -> &Bridge {
        &self.inner.bridge
    }

    /// Starts a conference for `doc` in `account` (inside a tokio runtime). Its id is the
    /// document's `id` when given, else a fresh UUID (32 hex digits, like Kazoo's ids).
    pub fn create(
        &self,
        account: &str,
        doc: ConferenceDoc,
    ) -> Result<Arc<ConferenceEntry>, ApiError> {
        let quota = self.inner.quotas.conferences_per_account;
        if self.inner.conferences.iter().filter(|e| e.key().0 == account).count() >= quota {
            return Err(ApiError::Conflict {
                field: "conference".into(),
                rule: "conferences_per_account",
                message: format!("this account may run at most {quota} conferences at once"),
            });
        }
        if self.inner.conferences.len() >= self.inner.max_conferences {
            return Err(ApiError::Conflict {
                field: "conference".into(),
                rule: "max_conferences",
                message: format!("at most {} conferences at once", self.inner.max_conferences),
            });
        }
        let id = doc.id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        match self.inner.conferences.entry((account.to_owned(), id.clone())) {
            Entry::Occupied(_) => Err(ApiError::Conflict {
                field: "id".into(),
                rule: "unique",
                message: format!("conference {id} already exists"),
            }),
            Entry::Vacant(slot) => {
                let mut settings = settings(&doc);
                settings.core.max_relationships = settings
                    .core
                    .max_relationships
                    .min(self.inner.quotas.relationships_per_conference);
                let handle = self.inner.bridge.start_conference(settings)?;
                let entry = Arc::new(ConferenceEntry {
                    id,
                    account_id: account.to_owned(),
                    started: doc.clone(),
                    doc: RwLock::new(doc),
                    revision: AtomicU64::new(1),
                    locked: Arc::new(AtomicBool::new(false)),
                    empty_since: Mutex::new(None),
                    created_at: SystemTime::now(),
                    members: Mutex::new(HashMap::new()),
                    joining: Mutex::new(std::collections::HashSet::new()),
                    departed: Mutex::new(std::collections::VecDeque::new()),
                    handle,
                });
                slot.insert(entry.clone());
                metrics::gauge!("mixminus_control_conferences").increment(1.0);
                self.start_sweeper();
                Ok(entry)
            }
        }
    }

    /// The conference `id` of `account`.
    pub fn get(&self, account: &str, id: &str) -> Result<Arc<ConferenceEntry>, ApiError> {
        self.inner
            .conferences
            .get(&(account.to_owned(), id.to_owned()))
            .map(|e| e.value().clone())
            .ok_or_else(|| ApiError::NotFound { kind: "conference", id: id.to_owned() })
    }

    /// The conferences of `account`, oldest first.
    pub fn list(&self, account: &str) -> Vec<Arc<ConferenceEntry>> {
        let mut all: Vec<_> = self
            .inner
            .conferences
            .iter()
            .filter(|e| e.key().0 == account)
            .map(|e| e.value().clone())
            .collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        all
    }

    /// Every conference, all accounts, oldest first (a SIP call looks for its number here).
    pub fn all(&self) -> Vec<Arc<ConferenceEntry>> {
        let mut all: Vec<_> = self.inner.conferences.iter().map(|e| e.value().clone()).collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        all
    }

    /// Ends a conference: every participant gets an RTCP BYE, every port is released.
    pub async fn remove(&self, account: &str, id: &str) -> Result<Arc<ConferenceEntry>, ApiError> {
        let (_, entry) = self
            .inner
            .conferences
            .remove(&(account.to_owned(), id.to_owned()))
            .ok_or_else(|| ApiError::NotFound { kind: "conference", id: id.to_owned() })?;
        metrics::gauge!("mixminus_control_conferences").decrement(1.0);
        entry.handle.stop().await?;
        Ok(entry)
    }

    /// The conference of `account` that has a participant with `call_id`.
    pub fn find_call(
        &self,
        account: &str,
        call_id: &str,
    ) -> Option<(Arc<ConferenceEntry>, ParticipantId)> {
        self.list(account).into_iter().find_map(|entry| {
            let id = entry.participant_by_call(call_id)?;
            Some((entry, id))
        })
    }

    /// Stops every conference (graceful shutdown).
    pub async fn stop_all(&self) {
        let keys: Vec<_> = self.inner.conferences.iter().map(|e| e.key().clone()).collect();
        for (account, id) in keys {
            if let Err(e) = self.remove(&account, &id).await {
                tracing::warn!(conference = %id, error = %e, "stopping conference failed");
            }
        }
    }

    /// Conferences running, all accounts.
    pub fn len(&self) -> usize {
        self.inner.conferences.len()
    }

    /// Whether none runs.
    pub fn is_empty(&self) -> bool {
        self.inner.conferences.is_empty()
    }
}

impl ConferenceEntry {
    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its account.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The runtime handle.
    pub fn handle(&self) -> &ConferenceHandle {
        &self.handle
    }

    /// The current document.
    pub fn doc(&self) -> ConferenceDoc {
        self.doc.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the document and applies it live, as far as a running conference can
    /// change: join flags and limits hold for the next join; a new `energy-level` is set
    /// on every participant that has no threshold of its own, and given to later joiners.
    /// What the runtime cannot change while it runs (`profile.rate`, `profile.interval`,
    /// `profile.max-active-speakers`, turning the entry or exit tone on or off) is kept
    /// in the document and reported in `_read_only.pending` (see [`Self::pending`]); it
    /// takes effect in a conference created from the document. Never refused for a
    /// valid document (Kazoo never refuses one).
    pub async fn replace_doc(&self, new: ConferenceDoc) -> Result<(), ApiError> {
        let old_energy = self.energy_level();
        {
            let mut doc = self.doc.write().unwrap_or_else(|p| p.into_inner());
            *doc = new;
        }
        self.revision.fetch_add(1, Ordering::Relaxed);
        let energy = self.energy_level();
        if energy != old_energy {
            let snapshot = self.handle.snapshot();
            for leg in &snapshot.participants {
                let own = self.member(leg.info.id).is_some_and(|m| m.energy_override);
                if own {
                    continue;
                }
                match self.handle.set_energy_threshold(leg.info.id, Some(energy)).await {
                    // It left meanwhile: nothing to update.
                    Ok(())
                    | Err(mixminus_rtp::RuntimeError::Core(
                        mixminus_core::Error::UnknownParticipant(_),
                    )) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// The document's talk threshold (its `energy-level`, else the engine's default).
    pub fn energy_level(&self) -> u32 {
        let doc = self.doc.read().unwrap_or_else(|p| p.into_inner());
        doc.profile.energy_level.unwrap_or_else(|| doc.core_config().talk.energy_threshold)
    }

    /// The threshold a participant without one of its own gets: `None` while the document
    /// still asks for the level the runtime started with.
    pub fn conference_energy(&self) -> Option<u32> {
        let started = self
            .started
            .profile
            .energy_level
            .unwrap_or(self.started.core_config().talk.energy_threshold);
        let now = self.energy_level();
        (now != started).then_some(now)
    }

    /// Notes whether a participant's threshold is its own (the `energy` action).
    pub fn set_energy_override(&self, id: ParticipantId, own: bool) {
        if let Some(meta) = self.members.lock().unwrap_or_else(|p| p.into_inner()).get_mut(&id) {
            meta.energy_override = own;
        }
    }

    /// The settings the document asks for that the running conference does not have (they
    /// cannot change while it runs), as `{"profile.rate": {"requested": …, "running": …}}`.
    pub fn pending(&self) -> Map<String, Value> {
        let doc = self.doc();
        let (now, then) = (&doc.profile, &self.started.profile);
        let mut pending = Map::new();
        let mut note = |field: &str, requested: Value, running: Value| {
            if requested != running {
                pending.insert(field.into(), json!({"requested": requested, "running": running}));
            }
        };
        note("profile.rate", now.rate.hz().into(), then.rate.hz().into());
        note("profile.interval", now.interval.millis().into(), then.interval.millis().into());
        note(
            "profile.max-active-speakers",
            now.max_active_speakers.into(),
            then.max_active_speakers.into(),
        );
        note(
            "play_entry_tone",
            doc.play_entry_tone.plays().into(),
            self.started.play_entry_tone.plays().into(),
        );
        note(
            "play_exit_tone",
            doc.play_exit_tone.plays().into(),
            self.started.play_exit_tone.plays().into(),
        );
        pending
    }

    /// Kazoo-style revision: `"<n>-<id>"`, bumped by every document or lock change.
    pub fn revision(&self) -> String {
        format!("{}-{}", self.revision.load(Ordering::Relaxed), self.id)
    }

    /// Whether joins are refused.
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Acquire)
    }

    /// The lock flag a join request carries into the conference task.
    pub fn lock_flag(&self) -> Arc<AtomicBool> {
        self.locked.clone()
    }

    /// Locks or unlocks; returns whether it changed.
    pub fn set_locked(&self, locked: bool) -> bool {
        // The flag is the one every join request carries: the conference task reads it when
        // it admits the join, so a lock that has answered stops every later admission.
        let changed = self.locked.swap(locked, Ordering::AcqRel) != locked;
        if changed {
            self.revision.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }

    /// Records a joined participant's call metadata.
    pub fn add_member(&self, id: ParticipantId, meta: ParticipantMeta) {
        self.members.lock().unwrap_or_else(|p| p.into_inner()).insert(id, meta);
    }

    /// Forgets a participant's metadata (its description stays for its `del-member`).
    pub fn remove_member(&self, id: ParticipantId) {
        let meta = self.members.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        if let Some(meta) = meta {
            self.remember_departed(id, &meta);
        }
    }

    fn remember_departed(&self, id: ParticipantId, meta: &ParticipantMeta) {
        let mut departed = self.departed.lock().unwrap_or_else(|p| p.into_inner());
        if departed.len() >= DEPARTED_KEPT {
            departed.pop_front();
        }
        departed.push_back((id, meta_json(id, meta, &self.id)));
    }

    /// A participant as its events describe it: the participant object while it is in
    /// the conference, else what is known of its call.
    pub fn event_participant(&self, id: ParticipantId, node: &str) -> Value {
        let snapshot = self.handle.snapshot();
        if let Some(leg) = snapshot.participants.iter().find(|l| l.info.id == id) {
            let mut object = self.participant_json(leg, &snapshot, node);
            if let Value::Object(map) = &mut object {
                map.remove("rtp");
            }
            return object;
        }
        if let Some(meta) = self.member(id) {
            return meta_json(id, &meta, &self.id);
        }
        let departed = self.departed.lock().unwrap_or_else(|p| p.into_inner());
        departed.iter().rev().find(|(d, _)| *d == id).map_or_else(
            || json!({"conference_name": self.id, "conference_uuid": self.id}),
            |(_, v)| v.clone(),
        )
    }

    /// Participants whose metadata is held.
    pub fn member_count(&self) -> usize {
        self.members.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Forgets the metadata of participants that left without the API removing them (the
    /// runtime drops a leg on RTCP BYE or inactivity). `snapshot` must already hold
    /// `newest`: ids only grow, so every member below `newest` that it lacks has left,
    /// while one above may have joined after it was published and is kept.
    pub fn prune_members(&self, snapshot: &Snapshot, newest: ParticipantId) {
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        members.retain(|&id, meta| {
            let keep = id >= newest || snapshot.participants.iter().any(|l| l.info.id == id);
            if !keep {
                self.remember_departed(id, meta);
            }
            keep
        });
    }

    /// A participant's metadata.
    pub fn member(&self, id: ParticipantId) -> Option<ParticipantMeta> {
        self.members.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
    }

    /// Claims `call_id` for a join: `None` when the call is in the conference or another
    /// join of it is under way. The claim ends when the returned guard drops (after the
    /// join recorded the call, or failed).
    pub fn claim_call(&self, call_id: &str) -> Option<CallClaim<'_>> {
        let mut joining = self.joining.lock().unwrap_or_else(|p| p.into_inner());
        if joining.contains(call_id) || self.participant_by_call(call_id).is_some() {
            return None;
        }
        joining.insert(call_id.to_owned());
        Some(CallClaim { entry: self, call_id: call_id.to_owned() })
    }

    /// The participant whose call is `call_id` (one still in the conference).
    pub fn participant_by_call(&self, call_id: &str) -> Option<ParticipantId> {
        let snapshot = self.handle.snapshot();
        let members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        members
            .iter()
            .filter(|(id, _)| snapshot.participants.iter().any(|l| l.info.id == **id))
            .find(|(_, m)| m.call_id == call_id)
            .map(|(id, _)| *id)
    }

    /// Participants counted against the limit (ghosts are not).
    pub fn counted(&self, snapshot: &Snapshot) -> usize {
        snapshot.participants.iter().filter(|l| !l.info.ghost).count()
    }

    /// Seconds since the conference started.
    pub fn duration(&self) -> u64 {
        self.created_at.elapsed().map_or(0, |d| d.as_secs())
    }

    /// Kazoo's participant object for one leg (the fields of Kazoo's example, plus
    /// mixminus's `rtp` and `conference_channel_vars.current_energy`). Caller id fields
    /// and `custom_channel_vars` appear only when the join gave them.
    pub fn participant_json(&self, leg: &LegSnapshot, snapshot: &Snapshot, node: &str) -> Value {
        let meta = self.member(leg.info.id);
        let joined_at = meta.as_ref().map_or(leg.joined_at, |m| m.joined_at);
        let info = &leg.info;
        let mut rtp = json!({
            "local_ip": leg.local_rtp.ip().to_string(),
            "local_port": leg.local_rtp.port(),
            "codec": codec_name(leg.codec.kind).as_str(),
            "payload_type": leg.codec.payload_type,
            "rate": leg.codec.clock_rate,
            "ptime": leg.codec.ptime_ms,
            "dtmf_digits": leg.stats.dtmf_digits,
        });
        if let (Some(remote), Value::Object(map)) = (leg.remote.or(leg.latched), &mut rtp) {
            map.insert("remote_ip".into(), remote.ip().to_string().into());
            map.insert("remote_port".into(), remote.port().into());
        }
        let mut object = json!({
            "participant_id": info.id.get(),
            "conference_name": self.id,
            "conference_uuid": self.id,
            "switch_hostname": node,
            "join_time": gregorian_seconds(joined_at),
            "duration": joined_at.elapsed().unwrap_or(Duration::ZERO).as_secs(),
            "conference_channel_vars": {
                "energy_level": info.energy_threshold.unwrap_or_else(|| self.energy_level()),
                "current_energy": info.energy,
                "floor": snapshot.floor == Some(info.id),
                "hear": info.can_hear,
                "speak": info.can_speak,
                "talking": info.talking,
                "mute_detect": false,
                "is_moderator": info.moderator,
                "member_ghost": info.ghost,
                "member_id": info.id.get(),
                "member_type": if info.moderator { "moderator" } else { "member" },
                "see": true,
                "video": false,
            },
            "rtp": rtp,
            "rtcp": rtcp_json(&leg.rtcp),
            "playout": playout_json(leg),
        });
        if let (Value::Object(map), Some(meta)) = (&mut object, meta) {
            map.insert("call_id".into(), meta.call_id.into());
            if let Some(name) = meta.caller_id_name {
                map.insert("caller_id_name".into(), name.into());
            }
            if let Some(number) = meta.caller_id_number {
                map.insert("caller_id_number".into(), number.into());
            }
            if let Some(vars) = meta.custom_channel_vars {
                map.insert("custom_channel_vars".into(), Value::Object(vars));
            }
        }
        object
    }

    /// Every participant's object.
    pub fn participants_json(&self, snapshot: &Snapshot, node: &str) -> Vec<Value> {
        self.prune(snapshot);
        snapshot.participants.iter().map(|leg| self.participant_json(leg, snapshot, node)).collect()
    }

    /// Kazoo's `_read_only` block, plus `pending` when the document asks for settings the
    /// running conference cannot take live.
    pub fn read_only(&self, snapshot: &Snapshot, node: &str) -> Value {
        let mut block = self.realtime(snapshot);
        if let Value::Object(map) = &mut block {
            map.insert("participants".into(), self.participants_json(snapshot, node).into());
            let pending = self.pending();
            if !pending.is_empty() {
                map.insert("pending".into(), Value::Object(pending));
            }
            map.extend(crate::media::read_only(snapshot));
        }
        block
    }

    /// Kazoo's realtime counters: `members`, `moderators`, `duration`, `is_locked`.
    fn realtime(&self, snapshot: &Snapshot) -> Value {
        let moderators =
            snapshot.participants.iter().filter(|l| l.info.moderator && !l.info.ghost).count();
        json!({
            "duration": self.duration(),
            "is_locked": self.is_locked(),
            "members": self.counted(snapshot) - moderators,
            "moderators": moderators,
        })
    }

    /// The list entry: Kazoo's `crossbar_listing` view (`id`, `name`, `owner_id`,
    /// `member`, `moderator`, `conference_numbers`, `flags`, and `ui_flags` when set) with
    /// the realtime counters under `_read_only`, as `cb_conferences:add_realtime` has it.
    pub fn summary(&self, snapshot: &Snapshot) -> Value {
        let full = self.doc().to_json(&self.id);
        let mut item = Map::new();
        for key in
            ["id", "name", "owner_id", "member", "moderator", "ui_flags", "conference_numbers"]
        {
            if let Some(v) = full.get(key) {
                item.insert(key.into(), v.clone());
            }
        }
        item.insert("flags".into(), full.get("flags").cloned().unwrap_or_else(|| json!([])));
        item.insert("_read_only".into(), self.realtime(snapshot));
        Value::Object(item)
    }

    /// The document with `_read_only`.
    pub fn full_json(&self, node: &str) -> Value {
        let snapshot = self.handle.snapshot();
        let mut doc = self.doc().to_json(&self.id);
        if let Value::Object(map) = &mut doc {
            map.insert("_read_only".into(), self.read_only(&snapshot, node));
        }
        doc
    }

    /// Drops metadata of participants that left on their own (inactivity), once the
    /// snapshot has had time to show a fresh join.
    fn prune(&self, snapshot: &Snapshot) {
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        members.retain(|id, meta| {
            let keep = snapshot.participants.iter().any(|l| l.info.id == *id)
                || meta.joined_at.elapsed().unwrap_or(Duration::ZERO) < Duration::from_secs(5);
            if !keep {
                self.remember_departed(*id, meta);
            }
            keep
        });
    }
}

/// What `GET …/conferences/{id}` shows for a conference that is not running: Kazoo's
/// ad-hoc conference (`maybe_build_conference`), the document's defaults with nobody in it.
pub fn ad_hoc(id: &str) -> Value {
    let doc = ConferenceDoc::parse(&json!({}))
        .map(|d| d.to_json(id))
        .unwrap_or_else(|_| json!({"id": id}));
    let mut doc = doc;
    if let Value::Object(map) = &mut doc {
        map.insert(
            "_read_only".into(),
            json!({"duration": 0, "is_locked": false, "members": 0, "moderators": 0, "participants": []}),
        );
    }
    doc
}

/// A join's claim on its call id ([`ConferenceEntry::claim_call`]).
#[derive(Debug)]
pub struct CallClaim<'a> {
    entry: &'a ConferenceEntry,
    call_id: String,
}

impl Drop for CallClaim<'_> {
    fn drop(&mut self) {
        let mut joining = self.entry.joining.lock().unwrap_or_else(|p| p.into_inner());
        joining.remove(&self.call_id);
    }
}

/// What is known of a participant's call, Kazoo's field names.
fn meta_json(id: ParticipantId, meta: &ParticipantMeta, conference_id: &str) -> Value {
    let mut object = json!({
        "participant_id": id.get(),
        "call_id": meta.call_id,
        "conference_name": conference_id,
        "conference_uuid": conference_id,
        "join_time": gregorian_seconds(meta.joined_at),
    });
    if let Value::Object(map) = &mut object {
        if let Some(name) = &meta.caller_id_name {
            map.insert("caller_id_name".into(), name.clone().into());
        }
        if let Some(number) = &meta.caller_id_number {
            map.insert("caller_id_number".into(), number.clone().into());
        }
        if let Some(vars) = &meta.custom_channel_vars {
            map.insert("custom_channel_vars".into(), Value::Object(vars.clone()));
        }
    }
    object
}

/// The runtime settings a document asks for.
pub fn settings(doc: &ConferenceDoc) -> ConferenceSettings {
    let mut settings = ConferenceSettings::new(doc.core_config());
    settings.entry_tone = doc.play_entry_tone.plays();
    settings.exit_tone = doc.play_exit_tone.plays();
    let (profile, encoder) = (&doc.profile, &mut settings.encoder);
    encoder.bitrate = profile.opus_bitrate.unwrap_or(encoder.bitrate);
    encoder.complexity = profile.opus_complexity.unwrap_or(encoder.complexity);
    encoder.fec = profile.opus_fec.unwrap_or(encoder.fec);
    encoder.dtx = profile.opus_dtx.unwrap_or(encoder.dtx);
    encoder.expected_loss_percent =
        profile.opus_loss_percent.unwrap_or(encoder.expected_loss_percent);
    settings.jitter_min_delay_ms = profile.jitter_min_delay_ms;
    settings.jitter_max_delay_ms = profile.jitter_max_delay_ms;
    settings
}

/// The runtime's codec parameters for a join's codec.
pub fn codec_params(codec: &RtpCodec) -> CodecParams {
    let kind = match codec.name {
        CodecName::Opus => CodecKind::Opus,
        CodecName::Pcmu => CodecKind::Pcmu,
        CodecName::Pcma => CodecKind::Pcma,
        _ => CodecKind::L16,
    };
    let mut params = CodecParams::new(kind);
    if let Some(pt) = codec.payload_type {
        params.payload_type = pt;
    }
    if let Some(rate) = codec.rate {
        params.clock_rate = rate;
    }
    if let Some(ms) = codec.ptime_ms {
        params.ptime_ms = ms;
    }
    params
}

/// The API's name of a runtime codec.
pub fn codec_name(kind: CodecKind) -> CodecName {
    match kind {
        CodecKind::Opus => CodecName::Opus,
        CodecKind::Pcmu => CodecName::Pcmu,
        CodecKind::Pcma => CodecName::Pcma,
        _ => CodecName::L16,
    }
}

/// A participant's `rtcp` object (our extension to Kazoo's participant): our SSRC and CNAME,
/// reports counted, `inbound` (the stream it sends us, as our last report described it) and
/// `remote_inbound` (the stream we send it, as its last report describes it, with the round
/// trip), named as WebRTC's statistics name them; each `null` until there is one.
pub fn rtcp_json(rtcp: &RtcpStats) -> Value {
    let block = |b: &ReportBlock, jitter: Duration| {
        json!({
            "fraction_lost": f64::from(b.fraction_lost) / 256.0,
            "cumulative_lost": b.cumulative_lost,
            "extended_highest_seq": b.extended_highest_seq,
            "jitter_ms": jitter.as_secs_f64() * 1000.0,
        })
    };
    let inbound = rtcp.inbound.zip(rtcp.inbound_jitter()).map(|(b, j)| block(&b, j));
    let remote = rtcp.remote_inbound.map(|r| {
        let mut object = block(&r.block, r.jitter);
        object["round_trip_ms"] = r.round_trip.map(|rtt| rtt.as_secs_f64() * 1000.0).into();
        object
    });
    json!({
        "ssrc": rtcp.ssrc,
        "cname": String::from_utf8_lossy(&rtcp.cname),
        "reports_sent": rtcp.reports_sent,
        "reports_received": rtcp.reports_received,
        "inbound": inbound,
        "remote_inbound": remote,
    })
}

/// The participant's `playout` object: its playout buffer's delay, target and what it did to
/// hold them (stretch amounts in ms of audio).
pub fn playout_json(leg: &LegSnapshot) -> Value {
    let j = &leg.jitter;
    let ms = |samples: u64| samples as f64 * 1000.0 / f64::from(j.sample_rate.max(1));
    json!({
        "delay_ms": j.delay_ms,
        "target_ms": j.target_ms,
        "depth": leg.jitter_depth,
        "received": j.received,
        "late": j.late,
        "lost": j.lost,
        "concealed": j.concealed,
        "fec_recovered": j.fec_recovered,
        "duplicates": j.duplicates,
        "overflow": j.overflow,
        "accelerated_ms": ms(j.accelerated_samples),
        "expanded_ms": ms(j.expanded_samples),
        "merged_ms": ms(j.merged_samples),
    })
}

/// How a runtime refusal reads in the API.
impl From<mixminus_rtp::RuntimeError> for ApiError {
    fn from(e: mixminus_rtp::RuntimeError) -> Self {
        use mixminus_core::Error as CoreError;
        use mixminus_rtp::RuntimeError as R;
        match e {
            R::Core(CoreError::UnknownParticipant(id)) => {
                ApiError::BadIdentifier { field: "participant_id".into(), id: json!(id.get()) }
            }
            R::Core(CoreError::SelfRelationship(id)) => ApiError::invalid_value(
                "other_participant",
                "not",
                "a participant cannot be related to itself",
                &json!(id.get()),
            ),
            R::Core(CoreError::EmptyRelate) => {
                ApiError::invalid("participant_id", "minItems", "at least one participant per side")
            }
            R::Core(CoreError::ConferenceFull(n)) => ApiError::Conflict {
                field: "max_participants".into(),
                rule: "max_participants",
                message: format!("the conference is full ({n} participants)"),
            },
            R::Core(CoreError::TooManyRelationships(n)) => ApiError::Conflict {
                field: "relationship".into(),
                rule: "maxItems",
                message: format!(
                    "the conference would exceed {n} relationship records \
                     (quota relationships_per_conference)"
                ),
            },
            R::Locked => ApiError::Conflict {
                field: "is_locked".into(),
                rule: "locked",
                message: "the conference is locked".into(),
            },
            R::Full(n) => ApiError::Conflict {
                field: "max_participants".into(),
                rule: "max_participants",
                message: format!("the conference is full ({n} participants)"),
            },
            R::Core(CoreError::GainOutOfRange) => {
                ApiError::invalid("value", "maximum", "volume levels are -4..=4")
            }
            R::Core(CoreError::InvalidConfig(field)) => ApiError::invalid("profile", "enum", field),
            R::Core(other) => ApiError::Internal(other.to_string()),
            R::Closed => ApiError::NotFound { kind: "conference", id: "(stopped)".into() },
            R::NoFreePorts => ApiError::Unavailable("no free RTP port pair".into()),
            R::Io(e) if e.raw_os_error().is_some_and(|c| matches!(c, 23 | 24 | 105 | 12)) => {
                ApiError::Unavailable(format!("out of sockets or memory: {e}"))
            }
            R::InvalidRequest(field) => ApiError::invalid("rtp", "format", field),
            R::Codec(e) => ApiError::invalid("rtp.codec", "enum", e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
