//! Encode once per mix group and codec, share the bytes with every listener, and never
//! hand a listener's decoder a stream from an encoder it did not track.
//!
//! # Encoder lineage
//!
//! Every listener *follows* one encoder: the one whose packets its decoder has been
//! decoding. Encoders are not owned by groups; each tick an encoder encodes the group its
//! followers are in. When its followers split over several groups (a participant starts
//! talking and leaves the full mix for "everyone but me"), the encoder goes on with the
//! group most of them are in, and each other group gets a **fork**: a copy of the encoder's
//! whole state (libopus's state block, the resampler's history) taken before this tick's
//! encode, so every decoder keeps receiving one continuous stream.
//!
//! The reverse move (the talker stops and rejoins the full mix) cannot be made continuous
//! the same way: the full mix's encoder has a different history. The listener keeps its
//! own encoder, now encoding the same group as the group's main encoder (it is *in
//! transition*, one extra encode), until the group has been near-silent for
//! [`MERGE_SILENT_FRAMES`] frames; then both decoders hear silence, the move is inaudible,
//! and the two encoders **merge**. Listeners that arrive follow the group's main encoder.
//!
//! Encodes per tick are therefore the groups in use plus the encoders in transition, and
//! a steady state (no forks, no merges, no new keys) allocates nothing: forks reuse spare
//! encoders kept from earlier merges, copying state into them without allocating.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use mixminus_core::{Conference, GroupId, ParticipantId};

use crate::codec::{new_encoder, AudioEncoder, CodecError, CodecKind, CodecParams, CodecSettings};

/// What makes two listeners of one group able to share an encoded payload: the codec, its
/// clock rate and the encoder settings their SDP leads to (the payload type is only in the
/// per-listener header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct EncoderKey {
    kind: CodecKind,
    clock_rate: u32,
    /// Opus bitrate, FEC and DTX for this receiver (zero / false for other codecs).
    bitrate: u32,
    fec: bool,
    dtx: bool,
}

impl EncoderKey {
    /// The key of a listener receiving `params` in a conference encoding with `settings`.
    pub(crate) fn of(params: &CodecParams, settings: &CodecSettings) -> Self {
        let (bitrate, fec, dtx) = match params.kind {
            CodecKind::Opus => {
                let applied = params.opus_fmtp.applied_to(settings);
                (applied.bitrate, applied.fec, applied.dtx)
            }
            _ => (0, false, false),
        };
        Self { kind: params.kind, clock_rate: params.clock_rate, bitrate, fec, dtx }
    }

    /// The settings an encoder for this key uses.
    fn settings(&self, conference: &CodecSettings) -> CodecSettings {
        let mut settings = *conference;
        if self.kind == CodecKind::Opus {
            settings.bitrate = self.bitrate;
            settings.fec = self.fec;
            settings.dtx = self.dtx;
        }
        settings
    }
}

/// Frames of near-silence, already sent and in the current tick, after which two encoders
/// of one group may merge: by then both decoders have played out their codecs' overlap and
/// are producing silence, so the change of encoder cannot be heard.
pub(crate) const MERGE_SILENT_FRAMES: u32 = 3;

/// A frame whose largest sample is at most this (about −66 dBFS) counts as silence.
const SILENT_PEAK: i16 = 16;

/// Spare encoders kept for forks, per fan-out (beyond this, merged encoders are dropped).
const MAX_SPARES: usize = 16;

/// Largest payload an encoder may write (an RTP datagram's worth).
const MAX_PAYLOAD: usize = 1500;

/// Totals since the fan-out was made, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LineageStats {
    /// Encoders forked (a copy of a listener's encoder, for the group it moved to).
    pub(crate) forks: u64,
    /// Encoders merged into another of the same group during silence.
    pub(crate) merges: u64,
    /// Listeners moved to another encoder during silence (by a merge).
    pub(crate) silent_switches: u64,
    /// Listeners whose decoder had to start on an encoder it did not track, with sound
    /// playing (a codec change on the same leg): audible, and counted so it shows.
    pub(crate) discontinuities: u64,
    /// Listeners following an encoder other than their group's main one, this tick.
    pub(crate) in_transition: u32,
}

/// Persistent encoders, which listener follows which, and this tick's payloads.
pub(crate) struct Fanout {
    settings: CodecSettings,
    conference_rate: u32,
    frame_samples: usize,
    slots: Vec<Option<Slot>>,
    free_slots: Vec<u32>,
    spares: Vec<(EncoderKey, Box<dyn AudioEncoder + Send>)>,
    /// The encoder each listener follows: slot index and the slot's serial (a slot index
    /// may be reused by another encoder after this one retired).
    follow: HashMap<ParticipantId, (u32, u64)>,
    next_serial: u64,
    /// This tick: listeners, their groups, codecs and encoder slots, in send order.
    plan: Vec<PlanEntry>,
    /// This tick: the main encoder of each (group, codec).
    main: HashMap<(GroupId, EncoderKey), u32>,
    /// This tick: forks made, `(from slot, group, new slot)`.
    forks: Vec<(u32, GroupId, u32)>,
    /// Payloads are carved out of this arena, so a tick's encodes share a few allocations.
    arena: BytesMut,
    scratch: Vec<u8>,
    encodes_this_tick: u32,
    stats: LineageStats,
}

struct PlanEntry {
    listener: ParticipantId,
    group: GroupId,
    key: EncoderKey,
    slot: u32,
}

struct Slot {
    encoder: Box<dyn AudioEncoder + Send>,
    serial: u64,
    key: EncoderKey,
    /// The group this encoder encodes this tick.
    group: Option<GroupId>,
    /// This tick: the groups its followers are in, with how many.
    votes: Vec<(GroupId, u32)>,
    followers: u32,
    /// Consecutive frames of near-silence encoded, up to the last tick.
    silent_run: u32,
    /// This tick: merged into that slot.
    merged_into: Option<u32>,
    encoded: Option<Bytes>,
}

impl Fanout {
    pub(crate) fn new(settings: CodecSettings, conference_rate: u32, frame_samples: usize) -> Self {
        Self {
            settings,
            conference_rate,
            frame_samples,
            slots: Vec::new(),
            free_slots: Vec::new(),
            spares: Vec::new(),
            follow: HashMap::new(),
            next_serial: 0,
            plan: Vec::new(),
            main: HashMap::new(),
            forks: Vec::new(),
            arena: BytesMut::with_capacity(64 * 1024),
            scratch: vec![0; MAX_PAYLOAD],
            encodes_this_tick: 0,
            stats: LineageStats::default(),
        }
    }

    /// Decides, for this tick, which encoder every listener hears: call once per tick after
    /// the conference ticked, with every listener that will be sent a payload, then ask
    /// [`payload`](Self::payload) for each by its index in `listeners`' order.
    pub(crate) fn plan(
        &mut self,
        conference: &Conference,
        listeners: impl Iterator<Item = (ParticipantId, GroupId, EncoderKey)>,
    ) -> Result<(), CodecError> {
        self.begin_tick();
        self.plan.clear();
        for (listener, group, key) in listeners {
            let followed = self.follow.get(&listener).and_then(|&(s, serial)| {
                let live = self.slots.get(s as usize).and_then(Option::as_ref);
                live.is_some_and(|x| x.serial == serial && x.key == key).then_some(s)
            });
            let slot = match followed {
                Some(slot) => {
                    self.slot_mut(slot).vote(group);
                    slot
                }
                None => {
                    if self.follow.contains_key(&listener) {
                        // The same leg now wants another codec: its decoder starts over.
                        self.stats.discontinuities += 1;
                    }
                    u32::MAX // placed below, after the groups have their main encoders
                }
            };
            self.plan.push(PlanEntry { listener, group, key, slot });
        }
        self.assign_groups(conference)?;
        self.place_listeners()?;
        Ok(())
    }

    /// The payload listener number `index` (in [`plan`](Self::plan)'s order) is sent this
    /// tick, encoding it on first use by any follower of its encoder.
    pub(crate) fn payload(
        &mut self,
        conference: &Conference,
        index: usize,
    ) -> Result<Bytes, CodecError> {
        let slot_index = self
            .plan
            .get(index)
            .map(|entry| entry.slot)
            .ok_or(CodecError::InvalidInput("listener not planned this tick"))?;
        let slot = self
            .slots
            .get_mut(slot_index as usize)
            .and_then(Option::as_mut)
            .ok_or(CodecError::InvalidInput("planned encoder is gone"))?;
        if let Some(bytes) = &slot.encoded {
            return Ok(bytes.clone());
        }
        let group = slot.group.ok_or(CodecError::InvalidInput("encoder has no group"))?;
        let pcm =
            conference.group_pcm(group).ok_or(CodecError::InvalidInput("unknown mix group"))?;
        let len = slot.encoder.encode(pcm, &mut self.scratch)?;
        slot.silent_run = if is_silent(pcm) { slot.silent_run.saturating_add(1) } else { 0 };
        self.arena.extend_from_slice(&self.scratch[..len]);
        let bytes = self.arena.split().freeze();
        self.encodes_this_tick += 1;
        slot.encoded = Some(bytes.clone());
        Ok(bytes)
    }

    /// The listener this tick's entry `index` is for.
    pub(crate) fn listener(&self, index: usize) -> Option<ParticipantId> {
        self.plan.get(index).map(|entry| entry.listener)
    }

    /// Listeners planned this tick.
    pub(crate) fn planned(&self) -> usize {
        self.plan.len()
    }

    /// A listener left: its decoder is gone, so is what it followed.
    pub(crate) fn forget(&mut self, listener: ParticipantId) {
        self.follow.remove(&listener);
    }

    /// The conference's encoder settings (each receiver's SDP may lower them).
    pub(crate) fn settings(&self) -> &CodecSettings {
        &self.settings
    }

    pub(crate) fn encodes_this_tick(&self) -> u32 {
        self.encodes_this_tick
    }

    pub(crate) fn encoder_count(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    pub(crate) fn stats(&self) -> LineageStats {
        self.stats
    }

    /// Forgets last tick's payloads and votes.
    fn begin_tick(&mut self) {
        for slot in self.slots.iter_mut().flatten() {
            slot.group = None;
            slot.votes.clear();
            slot.followers = 0;
            slot.merged_into = None;
            slot.encoded = None;
        }
        self.main.clear();
        self.forks.clear();
        self.encodes_this_tick = 0;
        self.stats.in_transition = 0;
        if self.arena.capacity() < 16 * 1024 {
            // Reclaims the arena once last tick's payloads are dropped; allocates otherwise.
            self.arena.reserve(64 * 1024);
        }
    }

    /// Gives every followed encoder the group most of its followers are in, forks it for
    /// the others, merges encoders of one group that have been silent long enough, and
    /// retires encoders nobody follows.
    fn assign_groups(&mut self, conference: &Conference) -> Result<(), CodecError> {
        for index in 0..self.slots.len() as u32 {
            let Some(slot) = self.slots[index as usize].as_mut() else { continue };
            if slot.group.is_some() {
                continue; // a fork made earlier in this loop
            }
            // The group most followers are in (the first such, on a tie).
            let most = slot.votes.iter().fold(None, |best: Option<(GroupId, u32)>, &(g, n)| {
                if best.is_some_and(|(_, m)| m >= n) {
                    best
                } else {
                    Some((g, n))
                }
            });
            let Some((group, followers)) = most else {
                self.retire(index);
                continue;
            };
            slot.group = Some(group);
            slot.followers = followers;
            let key = slot.key;
            self.claim_group(conference, index, group, key);
            // Each other group its followers went to gets a copy of this encoder's state.
            let mut other = 0;
            while let Some(&(fork_group, fork_followers)) =
                self.slot(index).votes.iter().filter(|&&(g, _)| g != group).nth(other)
            {
                other += 1;
                let fork = self.fork(index, fork_group, fork_followers)?;
                self.forks.push((index, fork_group, fork));
                self.claim_group(conference, fork, fork_group, key);
            }
        }
        Ok(())
    }

    /// Registers `index` as an encoder of `group`: the group's main one if it is the first,
    /// merged with the main one if both have been silent long enough, else in transition.
    fn claim_group(
        &mut self,
        conference: &Conference,
        index: u32,
        group: GroupId,
        key: EncoderKey,
    ) {
        let Some(&main) = self.main.get(&(group, key)) else {
            self.main.insert((group, key), index);
            return;
        };
        let silent_now = conference.group_pcm(group).is_some_and(is_silent);
        let settled = |s: &Slot| s.silent_run >= MERGE_SILENT_FRAMES - 1;
        if silent_now && settled(self.slot(main)) && settled(self.slot(index)) {
            // The one with more followers stays, so fewer listeners move.
            let (keep, drop) = if self.slot(index).followers > self.slot(main).followers {
                (index, main)
            } else {
                (main, index)
            };
            let moved = self.slot(drop).followers;
            self.slot_mut(keep).followers += moved;
            self.slot_mut(drop).merged_into = Some(keep);
            self.main.insert((group, key), keep);
            self.stats.merges += 1;
            self.stats.silent_switches += u64::from(moved);
        } else {
            // Not silent: the listeners of `index` keep their own stream a while longer.
            self.stats.in_transition += self.slot(index).followers;
        }
    }

    /// A new slot in exactly `from`'s state (before this tick's encode), for `group`.
    fn fork(&mut self, from: u32, group: GroupId, followers: u32) -> Result<u32, CodecError> {
        let key = self.slot(from).key;
        let spare = self.spares.iter().position(|(k, _)| *k == key);
        let spare = spare.map(|i| self.spares.swap_remove(i).1);
        let source = &*self.slot(from).encoder;
        let encoder = match spare {
            Some(mut spare) => {
                // Copied into a spare: no allocation.
                if spare.copy_state_from(source) {
                    spare
                } else {
                    source.duplicate()?
                }
            }
            None => source.duplicate()?,
        };
        let silent_run = self.slot(from).silent_run;
        let index = self.insert(encoder, key);
        let slot = self.slot_mut(index);
        slot.group = Some(group);
        slot.followers = followers;
        slot.silent_run = silent_run;
        self.stats.forks += 1;
        Ok(index)
    }

    /// Points every planned listener at its encoder: the one it followed, a fork of it, the
    /// encoder it merged into, or (arriving listeners) the group's main encoder.
    fn place_listeners(&mut self) -> Result<(), CodecError> {
        for i in 0..self.plan.len() {
            let PlanEntry { listener, group, key, slot } = self.plan[i];
            let placed = if slot == u32::MAX {
                match self.main.get(&(group, key)) {
                    Some(&main) => {
                        self.slot_mut(main).followers += 1;
                        main
                    }
                    None => {
                        let encoder = self.new_encoder(key)?;
                        let index = self.insert(encoder, key);
                        let new = self.slot_mut(index);
                        new.group = Some(group);
                        new.followers = 1;
                        self.main.insert((group, key), index);
                        index
                    }
                }
            } else if self.slot(slot).group != Some(group) {
                // Its followers split: this one moved to a group that got a fork.
                self.forks
                    .iter()
                    .find(|&&(from, g, _)| from == slot && g == group)
                    .map(|&(_, _, fork)| fork)
                    .ok_or(CodecError::InvalidInput("no fork for a moved listener"))?
            } else {
                slot
            };
            // Merges can chain (a slot merged into one that later merged into a third).
            let mut placed = placed;
            while let Some(next) = self.slot(placed).merged_into {
                placed = next;
            }
            self.plan[i].slot = placed;
            self.follow.insert(listener, (placed, self.slot(placed).serial));
        }
        // Merged encoders have no followers left.
        for index in 0..self.slots.len() as u32 {
            if self.slots[index as usize].as_ref().is_some_and(|s| s.merged_into.is_some()) {
                self.retire(index);
            }
        }
        Ok(())
    }

    /// A fresh encoder for a new stream: a spare of that codec (any state does, the
    /// decoder is new) or a new one.
    fn new_encoder(&mut self, key: EncoderKey) -> Result<Box<dyn AudioEncoder + Send>, CodecError> {
        if let Some(i) = self.spares.iter().position(|(k, _)| *k == key) {
            return Ok(self.spares.swap_remove(i).1);
        }
        let params = CodecParams { clock_rate: key.clock_rate, ..CodecParams::new(key.kind) };
        new_encoder(
            &params,
            &key.settings(&self.settings),
            self.conference_rate,
            self.frame_samples,
        )
    }

    fn insert(&mut self, encoder: Box<dyn AudioEncoder + Send>, key: EncoderKey) -> u32 {
        self.next_serial += 1;
        let slot = Slot {
            encoder,
            serial: self.next_serial,
            key,
            group: None,
            votes: Vec::new(),
            followers: 0,
            silent_run: 0,
            merged_into: None,
            encoded: None,
        };
        match self.free_slots.pop() {
            Some(index) => {
                self.slots[index as usize] = Some(slot);
                index
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Frees a slot nobody follows; its encoder becomes a spare for later forks.
    fn retire(&mut self, index: u32) {
        if let Some(slot) = self.slots[index as usize].take() {
            self.free_slots.push(index);
            if self.spares.len() < MAX_SPARES {
                self.spares.push((slot.key, slot.encoder));
            }
        }
    }

    fn slot(&self, index: u32) -> &Slot {
        // Indices come from `insert` and are only used while the slot is live.
        self.slots[index as usize].as_ref().expect("live encoder slot")
    }

    fn slot_mut(&mut self, index: u32) -> &mut Slot {
        // As in `slot`.
        self.slots[index as usize].as_mut().expect("live encoder slot")
    }
}

impl Slot {
    fn vote(&mut self, group: GroupId) {
        match self.votes.iter_mut().find(|(g, _)| *g == group) {
            Some((_, n)) => *n += 1,
            None => self.votes.push((group, 1)),
        }
    }
}

fn is_silent(pcm: &[i16]) -> bool {
    pcm.iter().all(|&s| s.unsigned_abs() <= SILENT_PEAK as u16)
}

#[cfg(test)]
mod tests {
    use mixminus_core::{ConferenceConfig, JoinOptions};

    use super::*;
    use crate::codec::new_decoder;
    use crate::dsp::{tone_residual_db, SineGenerator};

    const RATE: u32 = 48_000;
    const FRAME: usize = 960;

    /// What the fan-out did and what A heard, in the scenario: B says a steady
    /// 440 Hz tone, A says 1 kHz in 1.2 s bursts every 3 s (so A keeps moving between
    /// "everyone" and "everyone but A"), C, D and E send quiet noise (so the full mix keeps
    /// more listeners than A's group, and A is the one whose encoder forks). A's payloads
    /// are decoded by one continuous decoder, as a phone does.
    struct Heard {
        a: Vec<i16>,
        max_encodes: u32,
        stats: LineageStats,
    }

    fn five_party(kind: CodecKind, seconds: f32) -> Heard {
        let config = ConferenceConfig::default();
        let mut conference = Conference::new(config).unwrap();
        let [a, b, c, d, e] = [(); 5].map(|_| conference.join(JoinOptions::default()).unwrap());
        let params = CodecParams::new(kind);
        let key = EncoderKey::of(&params, &CodecSettings::default());
        let mut fanout = Fanout::new(CodecSettings::default(), RATE, FRAME);
        let mut decoder = new_decoder(&params, RATE, FRAME).unwrap();
        let (mut tone_a, mut tone_b) =
            (SineGenerator::new(1_000.0, RATE, 8_000.0), SineGenerator::new(440.0, RATE, 8_000.0));
        let mut frame = vec![0i16; FRAME];
        let mut out = vec![0i16; FRAME];
        let mut heard = Heard { a: Vec::new(), max_encodes: 0, stats: LineageStats::default() };
        let mut noise = 1u32;
        let ticks = (seconds * 50.0) as usize;
        for tick in 0..ticks {
            let t = tick as f32 / 50.0;
            if t >= 0.5 && (t - 0.5) % 3.0 < 1.2 {
                tone_a.fill(&mut frame);
            } else {
                frame.fill(0);
            }
            conference.push_input(a, &frame).unwrap();
            tone_b.fill(&mut frame);
            conference.push_input(b, &frame).unwrap();
            for quiet in [c, d, e] {
                for s in frame.iter_mut() {
                    noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    *s = ((noise >> 16) % 41) as i16 - 20;
                }
                conference.push_input(quiet, &frame).unwrap();
            }
            conference.tick();
            let listeners: Vec<_> =
                conference.listener_groups().map(|(id, g)| (id, g, key)).collect();
            fanout.plan(&conference, listeners.into_iter()).unwrap();
            for index in 0..fanout.planned() {
                let payload = fanout.payload(&conference, index).unwrap();
                if fanout.listener(index) == Some(a) {
                    decoder.decode(&payload, &mut out).unwrap();
                    heard.a.extend_from_slice(&out);
                }
            }
            heard.max_encodes = heard.max_encodes.max(fanout.encodes_this_tick());
        }
        heard.stats = fanout.stats();
        heard
    }

    /// (median, worst, windows above −20 dB) of A's stream against B's tone, in 5 ms
    /// windows, after the first 300 ms (B's own talk onset and the codec's start).
    fn glitches(pcm: &[i16]) -> (f64, f64, usize) {
        let window = RATE as usize / 200;
        let mut scores: Vec<f64> = pcm[RATE as usize * 3 / 10..]
            .chunks_exact(window)
            .map(|w| tone_residual_db(w, RATE, 440.0))
            .collect();
        scores.sort_by(f64::total_cmp);
        let above = scores.iter().filter(|&&s| s > -20.0).count();
        (scores[scores.len() / 2], scores[scores.len() - 1], above)
    }

    fn assert_seamless(kind: CodecKind) {
        let heard = five_party(kind, 7.0);
        let (median, worst, above) = glitches(&heard.a);
        eprintln!(
            "{kind:?}: median {median:.1} dB, worst {worst:.1} dB, {above} windows above -20 dB"
        );
        assert!(worst <= -30.0, "{kind:?}: worst window {worst:.1} dB (goal ≤ −30 dB)");
        assert_eq!(above, 0, "{kind:?}: {above} windows above −20 dB");
        eprintln!("{:?}, max encodes {}", heard.stats, heard.max_encodes);
        assert!(
            heard.stats.forks >= 1,
            "A's first talk onset forks its encoder: {:?}",
            heard.stats
        );
        assert_eq!(heard.stats.discontinuities, 0);
        // Two groups (everyone; everyone but B) while A is quiet, a third (everyone but A)
        // while it talks, and A's own encoder while it waits to merge.
        assert!(heard.max_encodes <= 3, "{kind:?}: {} encodes in a tick", heard.max_encodes);
    }

    #[test]
    fn opus_listener_hears_no_glitch_when_it_starts_or_stops_talking() {
        assert_seamless(CodecKind::Opus);
    }

    #[test]
    fn pcmu_listener_hears_no_glitch_when_it_starts_or_stops_talking() {
        assert_seamless(CodecKind::Pcmu);
    }

    #[test]
    fn duplicated_encoders_continue_byte_for_byte() {
        for kind in [CodecKind::Opus, CodecKind::Pcmu, CodecKind::L16] {
            let params = CodecParams::new(kind);
            let mut original =
                new_encoder(&params, &CodecSettings::default(), RATE, FRAME).unwrap();
            let mut spare = new_encoder(&params, &CodecSettings::default(), RATE, FRAME).unwrap();
            let mut tone = SineGenerator::new(523.0, RATE, 9_000.0);
            let mut frame = vec![0i16; FRAME];
            let (mut x, mut y, mut z) = ([0u8; 1500], [0u8; 1500], [0u8; 1500]);
            for _ in 0..7 {
                tone.fill(&mut frame);
                original.encode(&frame, &mut x).unwrap();
            }
            let mut copy = original.duplicate().unwrap();
            assert!(spare.copy_state_from(&*original), "{kind:?}");
            for _ in 0..10 {
                tone.fill(&mut frame);
                let n = original.encode(&frame, &mut x).unwrap();
                assert_eq!(copy.encode(&frame, &mut y).unwrap(), n);
                assert_eq!(spare.encode(&frame, &mut z).unwrap(), n);
                assert_eq!(x[..n], y[..n], "{kind:?}: a duplicate diverged");
                assert_eq!(x[..n], z[..n], "{kind:?}: a state copy diverged");
            }
        }
    }
}
