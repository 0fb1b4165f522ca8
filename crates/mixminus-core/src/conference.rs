//! The conference: participants, the matrix, and the mix tick.

use std::collections::{HashMap, VecDeque};

use crate::group::{GroupKey, GroupTable};
use crate::matrix::Matrix;
use crate::talk::{frame_energy, TalkChange, TalkState};
use crate::{ConferenceConfig, Error, Event, Gain, GroupId, ParticipantId, Relationship};

/// Events kept for a caller that does not drain them; past this the oldest are dropped.
const MAX_QUEUED_EVENTS: usize = 65_536;

/// How a participant joins. Unset flags take the conference's join defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JoinOptions {
    /// Join muted (cannot speak); `None` = the conference default for its role.
    pub muted: Option<bool>,
    /// Join deaf (cannot hear); `None` = the conference default for its role.
    pub deaf: Option<bool>,
    /// A moderator (picks the moderator join defaults; control planes treat it specially).
    pub moderator: bool,
    /// A ghost: mixed like anyone, but not counted or announced.
    pub ghost: bool,
    /// Gain on what this participant says.
    pub input_gain: Gain,
    /// Gain on what this participant hears.
    pub output_gain: Gain,
    /// This participant's own energy threshold instead of the conference's (0 = gate off).
    pub energy_threshold: Option<u32>,
}

/// A read-only view of one participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParticipantInfo {
    /// Its id.
    pub id: ParticipantId,
    /// Whether others can hear it at all (false = muted).
    pub can_speak: bool,
    /// Whether it hears anyone at all (false = deaf).
    pub can_hear: bool,
    /// A moderator.
    pub moderator: bool,
    /// A ghost (not counted, not announced).
    pub ghost: bool,
    /// Talk detection's verdict after the last tick.
    pub talking: bool,
    /// Mixed in the last tick (talking, allowed to speak, sent a frame, within top-N).
    pub active: bool,
    /// Energy (mean |sample|) of its last frame; 0 when it sent none.
    pub energy: u32,
    /// Gain on what it says.
    pub input_gain: Gain,
    /// Gain on what it hears.
    pub output_gain: Gain,
    /// Its own energy threshold, if it overrides the conference's.
    pub energy_threshold: Option<u32>,
    /// The group it heard in the last tick.
    pub group: GroupId,
}

/// What one tick did, for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TickSummary {
    /// The tick's number, from 1.
    pub tick: u64,
    /// Sources mixed this tick.
    pub active: usize,
    /// Groups materialised this tick (not counting silence).
    pub groups: usize,
    /// Listeners on the silence group.
    pub silent_listeners: usize,
    /// The loudest active talker.
    pub floor: Option<ParticipantId>,
}

/// One listener's output after a tick.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Output<'a> {
    /// The group it hears; equal ids mean byte-identical audio.
    pub group: GroupId,
    /// The audio, one frame at the conference rate, after the group's limiter.
    pub pcm: &'a [i16],
    /// The exact mix before the limiter, output gain applied: what the exactness
    /// guarantee (the naive per-listener sum) is about.
    pub unlimited: &'a [i32],
}

/// A group materialised in the last tick.
#[derive(Debug, Clone, Copy)]
pub struct GroupView<'a> {
    /// Its id.
    pub id: GroupId,
    /// Its audio.
    pub pcm: &'a [i16],
    /// How many listeners hear it.
    pub listeners: u32,
    /// The active sources its listeners do not hear, sorted.
    pub excluded: &'a [ParticipantId],
    /// Its listeners' output gain.
    pub gain: Gain,
}

#[derive(Debug)]
struct Member {
    id: ParticipantId,
    can_speak: bool,
    can_hear: bool,
    moderator: bool,
    ghost: bool,
    input_gain: Gain,
    output_gain: Gain,
    energy_threshold: Option<u32>,
    input: Vec<i16>,
    has_input: bool,
    /// `input_gain · input`, kept so the mix-minus subtraction is exact.
    scaled: Vec<i32>,
    energy: u32,
    talk: TalkState,
    active: bool,
    /// Mixed in the previous tick (a source mixed now but not then is faded in).
    was_active: bool,
    /// Sources this listener must not hear by the matrix, sorted by id, with their slots.
    blocked: Vec<(ParticipantId, u32)>,
    group: GroupId,
}

/// A conference: the sans-IO mixer.
///
/// Drive it like this, once per frame (every 20 ms by default):
///
/// 1. hand in each participant's decoded frame with [`Conference::input_mut`] or
///    [`Conference::push_input`] (a participant that sends nothing this tick is silent);
/// 2. call [`Conference::tick`];
/// 3. read each listener's audio with [`Conference::output`] (or walk
///    [`Conference::groups`] to encode once per group and fan out by
///    [`Conference::listener_groups`]);
/// 4. drain [`Conference::poll_event`] until it returns `None`.
///
/// Control calls (join, leave, relate, mute, …) may come between any two ticks and take
/// effect in the next one. The conference never reads a clock, does no I/O, and a tick in
/// steady state allocates nothing.
#[derive(Debug)]
pub struct Conference {
    config: ConferenceConfig,
    frame_samples: usize,
    next_id: u32,
    members: Vec<Option<Member>>,
    free_slots: Vec<u32>,
    slot_of: HashMap<ParticipantId, u32>,
    matrix: Matrix,
    /// Slots mixed this tick, sorted by participant id.
    active: Vec<u32>,
    total: Vec<i32>,
    /// Scratch for groups that exclude more than one source.
    acc: Vec<i32>,
    silence: Vec<i16>,
    silence_mix: Vec<i32>,
    groups: GroupTable,
    key: GroupKey,
    closed_groups: Vec<GroupId>,
    events: VecDeque<Event>,
    events_dropped: u64,
    tick: u64,
    floor: Option<ParticipantId>,
    last_summary: TickSummary,
}

impl Conference {
    /// A new, empty conference.
    pub fn new(config: ConferenceConfig) -> Result<Self, Error> {
        config.validate()?;
        let frame_samples = config.frame_samples();
        Ok(Self {
            frame_samples,
            next_id: 1,
            members: Vec::new(),
            free_slots: Vec::new(),
            slot_of: HashMap::new(),
            matrix: Matrix::default(),
            active: Vec::new(),
            total: vec![0; frame_samples],
            acc: vec![0; frame_samples],
            silence: vec![0; frame_samples],
            silence_mix: vec![0; frame_samples],
            groups: GroupTable::default(),
            key: GroupKey::default(),
            closed_groups: Vec::new(),
            events: VecDeque::new(),
            events_dropped: 0,
            tick: 0,
            floor: None,
            last_summary: TickSummary::default(),
            config,
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &ConferenceConfig {
        &self.config
    }

    /// Samples per frame handed in and out.
    pub fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    /// Adds a participant; its id is new, never used before in this conference.
    pub fn join(&mut self, options: JoinOptions) -> Result<ParticipantId, Error> {
        if self.slot_of.len() >= self.config.max_participants {
            return Err(Error::ConferenceFull(self.config.max_participants));
        }
        let id = ParticipantId::new(self.next_id);
        self.next_id += 1;
        let defaults =
            if options.moderator { self.config.moderator_join } else { self.config.member_join };
        let member = Member {
            id,
            can_speak: !options.muted.unwrap_or(defaults.muted),
            can_hear: !options.deaf.unwrap_or(defaults.deaf),
            moderator: options.moderator,
            ghost: options.ghost,
            input_gain: options.input_gain,
            output_gain: options.output_gain,
            energy_threshold: options.energy_threshold,
            input: vec![0; self.frame_samples],
            has_input: false,
            scaled: vec![0; self.frame_samples],
            energy: 0,
            talk: TalkState::default(),
            active: false,
            was_active: false,
            blocked: Vec::new(),
            group: GroupId::SILENCE,
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.members[slot as usize] = Some(member);
                slot
            }
            None => {
                self.members.push(Some(member));
                (self.members.len() - 1) as u32
            }
        };
        self.slot_of.insert(id, slot);
        // Reserve now so that a tick never grows these.
        self.active.reserve(self.slot_of.len().saturating_sub(self.active.len()));
        self.key.excluded.reserve(self.slot_of.len().saturating_sub(self.key.excluded.len()));
        self.push_event(Event::Joined(id));
        Ok(id)
    }

    /// Removes a participant and every relationship record naming it, in both directions.
    pub fn leave(&mut self, id: ParticipantId) -> Result<(), Error> {
        let slot = self.slot_of.remove(&id).ok_or(Error::UnknownParticipant(id))?;
        for other in self.matrix.remove_participant(id) {
            if let Some(m) = self.member_mut(other) {
                remove_blocked(&mut m.blocked, id);
            }
        }
        let member = self.members[slot as usize].take();
        self.free_slots.push(slot);
        if member.is_some_and(|m| m.active) {
            self.active.retain(|&s| s != slot);
        }
        if self.floor == Some(id) {
            self.floor = None;
            self.push_event(Event::FloorChanged { from: Some(id), to: None });
        }
        self.push_event(Event::Left(id));
        Ok(())
    }

    /// Sets the record `p → o` for every `p` in `participants` and `o` in `others`,
    /// replacing what was there (FreeSWITCH's and Kazoo's `relate`).
    ///
    /// All or nothing: an unknown id, a self-relation or the relationship limit refuses the
    /// whole call and changes nothing.
    ///
    /// ```
    /// use mixminus_core::{Conference, ConferenceConfig, JoinOptions, Relationship};
    /// let mut conf = Conference::new(ConferenceConfig::default()).unwrap();
    /// let a = conf.join(JoinOptions::default()).unwrap();
    /// let b = conf.join(JoinOptions::default()).unwrap();
    /// conf.relate(&[a], &[b], Relationship::DEAF).unwrap(); // a stops hearing b
    /// conf.relate(&[a], &[b], Relationship::MUTE).unwrap(); // replaces: b stops hearing a
    /// assert_eq!(conf.relationship(a, b), Relationship::MUTE);
    /// assert!(conf.relate(&[a], &[a], Relationship::DEAF).is_err());
    /// ```
    pub fn relate(
        &mut self,
        participants: &[ParticipantId],
        others: &[ParticipantId],
        relationship: Relationship,
    ) -> Result<(), Error> {
        if participants.is_empty() || others.is_empty() {
            return Err(Error::EmptyRelate);
        }
        for &id in participants.iter().chain(others) {
            if !self.slot_of.contains_key(&id) {
                return Err(Error::UnknownParticipant(id));
            }
        }
        for &p in participants {
            if others.contains(&p) {
                return Err(Error::SelfRelationship(p));
            }
        }
        if !relationship.is_clear() {
            let mut new_records = 0usize;
            for &p in participants {
                for &o in others {
                    new_records += usize::from(!self.matrix.contains(p, o));
                }
            }
            // Duplicated ids in a list count twice here: conservative, never over the limit.
            if self.matrix.len() + new_records > self.config.max_relationships {
                return Err(Error::TooManyRelationships(self.config.max_relationships));
            }
        }
        for &p in participants {
            for &o in others {
                self.set_relationship(p, o, relationship);
            }
        }
        Ok(())
    }

    /// The record `p → o` (clear when there is none).
    pub fn relationship(&self, p: ParticipantId, o: ParticipantId) -> Relationship {
        self.matrix.get(p, o)
    }

    /// Every non-clear record `(P, O, value)`, sorted by `(P, O)`.
    pub fn relationships(&self) -> Vec<(ParticipantId, ParticipantId, Relationship)> {
        self.matrix.records()
    }

    /// The records naming `id` in either direction, `(P, O, value)`, sorted.
    pub fn relationships_of(
        &self,
        id: ParticipantId,
    ) -> Result<Vec<(ParticipantId, ParticipantId, Relationship)>, Error> {
        self.slot_of(id)?;
        let mut out = Vec::new();
        for &other in self.matrix.related(id) {
            for (p, o) in [(id, other), (other, id)] {
                let r = self.matrix.get(p, o);
                if !r.is_clear() {
                    out.push((p, o, r));
                }
            }
        }
        out.sort_unstable_by_key(|&(p, o, _)| (p, o));
        Ok(out)
    }

    /// How many directed records exist.
    pub fn relationship_count(&self) -> usize {
        self.matrix.len()
    }

    /// Mute (`false`) or unmute (`true`); returns whether anything changed.
    pub fn set_can_speak(&mut self, id: ParticipantId, can_speak: bool) -> Result<bool, Error> {
        let m = self.member_mut(id).ok_or(Error::UnknownParticipant(id))?;
        let changed = m.can_speak != can_speak;
        m.can_speak = can_speak;
        if changed {
            self.push_event(Event::SpeakChanged { participant: id, can_speak });
        }
        Ok(changed)
    }

    /// Deafen (`false`) or undeafen (`true`); returns whether anything changed.
    pub fn set_can_hear(&mut self, id: ParticipantId, can_hear: bool) -> Result<bool, Error> {
        let m = self.member_mut(id).ok_or(Error::UnknownParticipant(id))?;
        let changed = m.can_hear != can_hear;
        m.can_hear = can_hear;
        if changed {
            self.push_event(Event::HearChanged { participant: id, can_hear });
        }
        Ok(changed)
    }

    /// Sets the gain on what `id` says.
    pub fn set_input_gain(&mut self, id: ParticipantId, gain: Gain) -> Result<(), Error> {
        self.member_mut(id).ok_or(Error::UnknownParticipant(id))?.input_gain = gain;
        Ok(())
    }

    /// Sets the gain on what `id` hears.
    pub fn set_output_gain(&mut self, id: ParticipantId, gain: Gain) -> Result<(), Error> {
        self.member_mut(id).ok_or(Error::UnknownParticipant(id))?.output_gain = gain;
        Ok(())
    }

    /// Overrides (or with `None` restores) `id`'s energy threshold; 0 turns its gate off.
    pub fn set_energy_threshold(
        &mut self,
        id: ParticipantId,
        threshold: Option<u32>,
    ) -> Result<(), Error> {
        if threshold.is_some_and(|t| t > 32_768) {
            return Err(Error::InvalidConfig("energy threshold must be at most 32768"));
        }
        self.member_mut(id).ok_or(Error::UnknownParticipant(id))?.energy_threshold = threshold;
        Ok(())
    }

    /// Marks `id` as moderator or not.
    pub fn set_moderator(&mut self, id: ParticipantId, moderator: bool) -> Result<(), Error> {
        self.member_mut(id).ok_or(Error::UnknownParticipant(id))?.moderator = moderator;
        Ok(())
    }

    /// Lends `id`'s input buffer for this tick (the caller's decoder writes into it) and
    /// marks the participant as having sent a frame. No copy, no allocation.
    pub fn input_mut(&mut self, id: ParticipantId) -> Result<&mut [i16], Error> {
        let m = self.member_mut(id).ok_or(Error::UnknownParticipant(id))?;
        m.has_input = true;
        Ok(&mut m.input)
    }

    /// Copies `frame` in as `id`'s input for this tick.
    pub fn push_input(&mut self, id: ParticipantId, frame: &[i16]) -> Result<(), Error> {
        let expected = self.frame_samples;
        if frame.len() != expected {
            return Err(Error::FrameLength { expected, got: frame.len() });
        }
        self.input_mut(id)?.copy_from_slice(frame);
        Ok(())
    }

    /// Runs one mix tick over the frames handed in since the last one.
    ///
    /// Cost: O(N) cheap per-listener work (plus each listener's relationship count), and
    /// O(|active| · F + groups · F) sample work, where F is the frame length.
    pub fn tick(&mut self) -> TickSummary {
        self.tick += 1;
        self.detect_talkers();
        self.select_active();
        self.sum_active();
        let silent_listeners = self.assign_groups();
        self.materialise_groups();
        // A scratch list reused across ticks: closing groups must not allocate either.
        let mut closed = std::mem::take(&mut self.closed_groups);
        self.groups.end_tick(self.config.group_idle_ticks, |id| closed.push(id));
        for &id in &closed {
            self.push_event(Event::GroupClosed(id));
        }
        closed.clear();
        self.closed_groups = closed;
        self.last_summary = TickSummary {
            tick: self.tick,
            active: self.active.len(),
            groups: self.groups.used.len(),
            silent_listeners,
            floor: self.floor,
        };
        self.last_summary
    }

    /// What `listener` hears after the last tick.
    pub fn output(&self, listener: ParticipantId) -> Option<Output<'_>> {
        let m = self.member(listener)?;
        let unlimited = match m.group.is_silence() {
            true => &self.silence_mix,
            false => self.groups.get(m.group)?.mix.as_slice(),
        };
        Some(Output { group: m.group, pcm: self.group_pcm(m.group)?, unlimited })
    }

    /// The audio of a group of the last tick (`GroupId::SILENCE` is all zeros).
    pub fn group_pcm(&self, group: GroupId) -> Option<&[i16]> {
        if group.is_silence() {
            return Some(&self.silence);
        }
        self.groups.get(group).map(|g| g.pcm.as_slice())
    }

    /// The groups materialised in the last tick, silence excluded: encode each once.
    pub fn groups(&self) -> impl Iterator<Item = GroupView<'_>> + '_ {
        self.groups.used.iter().map(|&slot| {
            let g = self.groups.slot(slot);
            GroupView {
                id: g.id,
                pcm: &g.pcm,
                listeners: g.listeners,
                excluded: &g.key.excluded,
                gain: g.key.gain,
            }
        })
    }

    /// Every participant and the group it heard in the last tick.
    pub fn listener_groups(&self) -> impl Iterator<Item = (ParticipantId, GroupId)> + '_ {
        self.members.iter().flatten().map(|m| (m.id, m.group))
    }

    /// The sources mixed in the last tick, by id.
    pub fn active_talkers(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.active.iter().filter_map(|&s| self.members[s as usize].as_ref().map(|m| m.id))
    }

    /// The loudest active talker of the last tick.
    pub fn floor(&self) -> Option<ParticipantId> {
        self.floor
    }

    /// One participant's state.
    pub fn participant(&self, id: ParticipantId) -> Option<ParticipantInfo> {
        self.member(id).map(info)
    }

    /// Every participant's state, in no particular order.
    pub fn participants(&self) -> impl Iterator<Item = ParticipantInfo> + '_ {
        self.members.iter().flatten().map(info)
    }

    /// Whether `id` is in the conference.
    pub fn contains(&self, id: ParticipantId) -> bool {
        self.slot_of.contains_key(&id)
    }

    /// Participants, ghosts included.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    /// Whether nobody is in the conference.
    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }

    /// Live mix groups (used recently, silence excluded).
    pub fn group_count(&self) -> usize {
        self.groups.live()
    }

    /// The summary of the last tick.
    pub fn last_tick(&self) -> TickSummary {
        self.last_summary
    }

    /// Takes the next queued event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Events dropped because the queue was full (the caller did not drain it).
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    // ---- helpers -------------------------------------------------------------------------

    fn slot_of(&self, id: ParticipantId) -> Result<u32, Error> {
        self.slot_of.get(&id).copied().ok_or(Error::UnknownParticipant(id))
    }

    fn member(&self, id: ParticipantId) -> Option<&Member> {
        let slot = *self.slot_of.get(&id)?;
        self.members[slot as usize].as_ref()
    }

    fn member_mut(&mut self, id: ParticipantId) -> Option<&mut Member> {
        let slot = *self.slot_of.get(&id)?;
        self.members[slot as usize].as_mut()
    }

    fn push_event(&mut self, event: Event) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(event);
    }

    fn set_relationship(&mut self, p: ParticipantId, o: ParticipantId, relationship: Relationship) {
        let previous = self.matrix.set(p, o, relationship);
        if previous == relationship {
            return;
        }
        // Only the pair's two "blocked" memberships can change.
        for (listener, source) in [(p, o), (o, p)] {
            let blocks = self.matrix.blocks(listener, source);
            let source_slot = self.slot_of[&source];
            if let Some(m) = self.member_mut(listener) {
                if blocks {
                    insert_blocked(&mut m.blocked, source, source_slot);
                } else {
                    remove_blocked(&mut m.blocked, source);
                }
            }
        }
        self.push_event(Event::RelationshipChanged { participant: p, other: o, relationship });
    }

    /// Talk detection for everyone, collecting this tick's candidates (talking, allowed to
    /// speak, sent a frame) into `active`; one pass over the participants.
    fn detect_talkers(&mut self) {
        self.active.clear();
        let talk = self.config.talk;
        for slot in 0..self.members.len() {
            let Some(m) = self.members[slot].as_mut() else { continue };
            m.was_active = m.active;
            m.active = false;
            let energy = m.has_input.then(|| frame_energy(&m.input));
            m.energy = energy.unwrap_or(0);
            let threshold = m.energy_threshold.unwrap_or(talk.energy_threshold);
            let id = m.id;
            let change = m.talk.update(&talk, threshold, energy);
            if m.talk.mixing && m.can_speak && m.has_input {
                self.active.push(slot as u32);
            }
            // The frame is consumed: next tick starts with nothing sent.
            m.has_input = false;
            match change {
                TalkChange::Started => self.push_event(Event::TalkingStarted(id)),
                TalkChange::Stopped => self.push_event(Event::TalkingStopped(id)),
                TalkChange::None => {}
            }
        }
    }

    /// Narrows the candidates to the loudest N and finds the floor holder.
    fn select_active(&mut self) {
        let members = &self.members;
        let energy_id = |slot: &u32| {
            // Active slots are live members: they were pushed just above.
            let m = members[*slot as usize].as_ref().expect("active slots are live");
            (std::cmp::Reverse(m.energy), m.id)
        };
        let limit = self.config.max_active_speakers;
        if limit > 0 && self.active.len() > limit {
            // Loudest first, ties to the lower id; sort_unstable allocates nothing.
            self.active.sort_unstable_by_key(energy_id);
            self.active.truncate(limit);
        }
        // The floor is the loudest mixed source that is talking (past the attack), so a
        // source at its onset is heard at once but takes the floor as FreeSWITCH's would.
        let talking = |slot: &&u32| {
            // As in `energy_id`.
            members[**slot as usize].as_ref().expect("active slots are live").talk.talking
        };
        let floor =
            self.active.iter().filter(talking).min_by_key(|s| energy_id(s)).map(|s| energy_id(s).1);
        self.active.sort_unstable_by_key(|s| energy_id(s).1);
        for &slot in &self.active {
            if let Some(m) = self.members[slot as usize].as_mut() {
                m.active = true;
            }
        }
        if floor != self.floor {
            let from = self.floor;
            self.floor = floor;
            self.push_event(Event::FloorChanged { from, to: floor });
        }
    }

    fn sum_active(&mut self) {
        self.total.fill(0);
        let fade = self.config.onset_fade_samples;
        for &slot in &self.active {
            // Active slots are live members (select_active).
            let m = self.members[slot as usize].as_mut().expect("active slots are live");
            let gain = m.input_gain;
            let pairs = m.scaled.iter_mut().zip(&m.input);
            if gain.is_unity() {
                // Same result as scale_sample at unity, without the multiply.
                for (scaled, &sample) in pairs {
                    *scaled = i32::from(sample);
                }
            } else {
                for (scaled, &sample) in pairs {
                    *scaled = gain.scale_sample(sample);
                }
            }
            if !m.was_active && fade > 0 {
                for (i, scaled) in m.scaled.iter_mut().take(fade).enumerate() {
                    *scaled = onset_fade(*scaled, i, fade);
                }
            }
            for (total, &scaled) in self.total.iter_mut().zip(&m.scaled) {
                *total += scaled;
            }
        }
    }

    /// Puts every listener in a group; returns how many hear silence.
    fn assign_groups(&mut self) -> usize {
        self.groups.begin_tick();
        let mut silent = 0;
        let active_count = self.active.len();
        // Most listeners block nobody and are not talking: they hear every active source, so
        // their key is empty and only the gain tells them apart. Remember that group's slot
        // for the tick instead of hashing the same key thousands of times.
        let mut everyone: Option<(Gain, u32)> = None;
        for slot in 0..self.members.len() {
            let Some(m) = self.members[slot].as_ref() else { continue };
            let group = if !m.can_hear || active_count == 0 || m.output_gain == Gain::MUTE {
                GroupId::SILENCE
            } else if m.blocked.is_empty() && !m.active {
                match everyone {
                    Some((gain, group_slot)) if gain == m.output_gain => {
                        self.groups.join_slot(group_slot)
                    }
                    _ => {
                        self.key.excluded.clear();
                        self.key.gain = m.output_gain;
                        let id = self.groups.join(&self.key, self.frame_samples);
                        everyone = Some((m.output_gain, id.slot() as u32));
                        id
                    }
                }
            } else {
                self.key.excluded.clear();
                self.key.gain = m.output_gain;
                let mut self_pending = m.active;
                for &(source, source_slot) in &m.blocked {
                    if self_pending && source > m.id {
                        self.key.excluded.push(m.id);
                        self_pending = false;
                    }
                    let source_active =
                        self.members[source_slot as usize].as_ref().is_some_and(|s| s.active);
                    if source_active {
                        self.key.excluded.push(source);
                    }
                }
                if self_pending {
                    self.key.excluded.push(m.id);
                }
                if self.key.excluded.len() == active_count {
                    GroupId::SILENCE
                } else {
                    self.groups.join(&self.key, self.frame_samples)
                }
            };
            silent += usize::from(group.is_silence());
            // The slot was live at the top of this iteration and nothing removed it.
            self.members[slot].as_mut().expect("live slot").group = group;
        }
        silent
    }

    fn materialise_groups(&mut self) {
        let Self { groups, members, slot_of, acc, total, active, .. } = self;
        let scaled_of = |id: &ParticipantId| -> &[i32] {
            // Keys name active sources of this tick, which are live members.
            let slot = slot_of[id] as usize;
            &members[slot].as_ref().expect("excluded sources are live").scaled
        };
        for i in 0..groups.used.len() {
            let slot = groups.used[i];
            let group = groups.slot_mut(slot);
            let gain = group.key.gain;
            match group.key.excluded.as_slice() {
                // The two common keys get a fused loop: the full mix, and mix-minus-one.
                [] => {
                    write_gained(&mut group.mix, total.iter().copied(), gain);
                    group.limiter.process(&group.mix, &mut group.pcm);
                    continue;
                }
                [only] => {
                    let own = scaled_of(only);
                    let mixed = total.iter().zip(own).map(|(&t, &s)| t - s);
                    write_gained(&mut group.mix, mixed, gain);
                    group.limiter.process(&group.mix, &mut group.pcm);
                    continue;
                }
                excluded if excluded.len() * 2 <= active.len() => {
                    // total − Σ excluded: cheaper while fewer than half are excluded.
                    acc.copy_from_slice(total);
                    for id in excluded {
                        for (a, &s) in acc.iter_mut().zip(scaled_of(id)) {
                            *a -= s;
                        }
                    }
                }
                excluded => {
                    // Σ of the heard sources: cheaper when most are excluded.
                    acc.fill(0);
                    for &source_slot in active.iter() {
                        let m =
                            members[source_slot as usize].as_ref().expect("active slots are live");
                        if excluded.binary_search(&m.id).is_err() {
                            for (a, &s) in acc.iter_mut().zip(&m.scaled) {
                                *a += s;
                            }
                        }
                    }
                }
            }
            write_gained(&mut group.mix, acc.iter().copied(), gain);
            group.limiter.process(&group.mix, &mut group.pcm);
        }
    }
}

/// Sample `index` of a fade-in over `len` samples: a linear ramp that reaches full level
/// just after the last faded sample. Integer arithmetic, so the reference mixer can apply
/// exactly the same rule.
pub fn onset_fade(scaled: i32, index: usize, len: usize) -> i32 {
    // |scaled| < 2^19 and index < len ≤ 2^13 (a 60 ms frame at 48 kHz is under 2^12
    // samples), so the product stays far inside i64.
    (i64::from(scaled) * (index as i64 + 1) / (len as i64 + 1)) as i32
}

/// Applies the output gain to a mixed frame into `out`, the group's mix before its limiter.
/// Unity gain, by far the common case, is a plain copy.
fn write_gained(out: &mut [i32], mixed: impl Iterator<Item = i32>, gain: Gain) {
    if gain.is_unity() {
        for (o, m) in out.iter_mut().zip(mixed) {
            *o = m;
        }
    } else {
        for (o, m) in out.iter_mut().zip(mixed) {
            *o = gain.apply(m);
        }
    }
}

fn info(m: &Member) -> ParticipantInfo {
    ParticipantInfo {
        id: m.id,
        can_speak: m.can_speak,
        can_hear: m.can_hear,
        moderator: m.moderator,
        ghost: m.ghost,
        talking: m.talk.talking,
        active: m.active,
        energy: m.energy,
        input_gain: m.input_gain,
        output_gain: m.output_gain,
        energy_threshold: m.energy_threshold,
        group: m.group,
    }
}

fn insert_blocked(blocked: &mut Vec<(ParticipantId, u32)>, source: ParticipantId, slot: u32) {
    if let Err(at) = blocked.binary_search_by_key(&source, |&(id, _)| id) {
        blocked.insert(at, (source, slot));
    }
}

fn remove_blocked(blocked: &mut Vec<(ParticipantId, u32)>, source: ParticipantId) {
    if let Ok(at) = blocked.binary_search_by_key(&source, |&(id, _)| id) {
        blocked.remove(at);
    }
}
