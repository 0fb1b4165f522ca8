//! An adaptive jitter buffer, sans-IO: the caller passes arrival times in and pops exactly
//! one frame per conference tick.
//!
//! One RTP packet carries one frame (the leg's ptime equals the conference frame), so the
//! buffer works in extended sequence numbers (from
//! [`SequenceExtender`](crate::SequenceExtender)).
//! [`JitterBuffer`] documents how it behaves, and why.

use std::time::{Duration, Instant};

use bytes::Bytes;

/// Depth bounds, in frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JitterConfig {
    /// Never start playing with fewer frames buffered than this (at least 1).
    pub min_depth: u16,
    /// Never hold more than this; the oldest frames are dropped (and counted) past it.
    pub max_depth: u16,
}

impl Default for JitterConfig {
    /// 1 to 10 frames (20–200 ms at 20 ms frames).
    fn default() -> Self {
        Self { min_depth: 1, max_depth: 10 }
    }
}

impl JitterConfig {
    /// Bounds in frames; `min_depth` is clamped to 1..=[`MAX_DEPTH`](Self::MAX_DEPTH) and
    /// `max_depth` to `min_depth..=MAX_DEPTH`.
    pub fn new(min_depth: u16, max_depth: u16) -> Self {
        let min_depth = min_depth.clamp(1, Self::MAX_DEPTH);
        Self { min_depth, max_depth: max_depth.clamp(min_depth, Self::MAX_DEPTH) }
    }

    /// The largest depth a buffer may be configured with (2 s of 20 ms frames).
    pub const MAX_DEPTH: u16 = 100;
}

/// What happened to an inserted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsertOutcome {
    /// Buffered.
    Accepted,
    /// Already buffered or recently played: dropped.
    Duplicate,
    /// Behind the playout point: dropped.
    Late,
    /// Buffered, but the buffer would have been deeper than `max_depth`: this many older
    /// buffered packets were dropped to make room.
    Overflow {
        /// Buffered packets dropped.
        dropped: u32,
    },
    /// Buffered after a jump too far to be a gap: everything older was discarded and the
    /// buffer restarted at this packet.
    Resync,
}

/// One tick's frame.
///
/// Deliberately not `#[non_exhaustive]`: every caller must handle each case, and a new case
/// should break their build rather than fall into a wildcard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The frame's payload.
    Packet(Bytes),
    /// No payload for this frame: conceal it. `fec_from` is the next packet's payload when
    /// already buffered (Opus can rebuild the lost frame from its in-band FEC); it is
    /// `None` also when the buffer ran dry and holds its playout point.
    Lost {
        /// The next packet, if buffered.
        fec_from: Option<Bytes>,
    },
    /// Nothing to play: the participant is not sending (or the buffer is still filling).
    Empty,
}

/// Counters, plus the current and target depth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JitterStats {
    /// Packets accepted into the buffer.
    pub received: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Packets that arrived behind the playout point, dropped.
    pub late: u64,
    /// Buffered packets dropped because the buffer was past `max_depth`.
    pub overflow: u64,
    /// Buffered frames dropped to catch up with a sender clock running fast.
    pub drift_dropped: u64,
    /// Sequence numbers whose packet never arrived in time (played as [`Playout::Lost`],
    /// or skipped after a hold had already covered them).
    pub lost: u64,
    /// Frames concealed while the buffer held its playout point, waiting for a packet
    /// (a slow sender, jitter, or a loss not yet known as one).
    pub concealed: u64,
    /// Restarts after a far jump.
    pub resyncs: u64,
    /// Frames from the playout point to the newest packet, holes included.
    pub depth: u16,
    /// The depth the buffer aims for now.
    pub target_depth: u16,
}

/// An adaptive jitter buffer for one stream, sans-IO.
///
/// Insert every packet as it arrives, with its arrival time; pop exactly once per
/// conference frame. [`stats`](Self::stats) counts what happened.
///
/// How it behaves, and why:
/// - **Target depth** follows the RFC 3550 interarrival jitter estimate (§6.4.1, spacing
///   measured against media timestamps so a DTX pause is not mistaken for jitter): one
///   frame plus two jitter deviations, plus the frames by which the latest late packet
///   missed its turn (decaying by one frame per 10 s without late packets), between the
///   configured minimum and maximum.
/// - **Start**: nothing plays until the target depth is buffered. While filling, a packet
///   reordered ahead of the first one is still accepted.
/// - **Reordering** within the window is free: packets land in their slot. **Duplicates**
///   (still buffered, or played recently) are dropped. A packet **behind the playout point**
///   is late: dropped and counted (its frame was already reported lost).
/// - **Hold**: when the next frame is missing and less than the target depth is buffered
///   behind it (nothing at all, in an underrun), it is more likely late than lost. The
///   playout point holds still for a frame ([`Playout::Lost`] without FEC, counted as
///   `concealed`): if the packet then comes, it plays and the buffer is one frame deeper —
///   this is how a slow sender clock or more jitter buys latency. If it never comes, it is
///   skipped as soon as later packets are here, so the hold leaves no latency behind.
///   After a few empty holds in a row the sender is taken to have paused (DTX, on hold):
///   [`Playout::Empty`] until it resumes.
/// - **Loss**: a missing frame with the target depth behind it is [`Playout::Lost`],
///   carrying the next packet's payload when buffered, so Opus can decode the lost frame
///   from its FEC.
/// - **Drift**: if the depth at playout never drops to the target for a whole window (one
///   second at 20 ms frames), that surplus was never needed: one frame is dropped. A fast
///   sender clock is corrected this way, one frame at a time.
/// - **Bounded memory**: the slots are allocated once; a packet that would make the buffer
///   deeper than `max_depth` pushes the oldest frames out ([`InsertOutcome::Overflow`]).
///   A jump further than any plausible gap restarts the buffer there.
///
/// ```
/// use std::time::{Duration, Instant};
/// use bytes::Bytes;
/// use mixminus_rtp::{InsertOutcome, JitterBuffer, JitterConfig, Playout};
///
/// let t0 = Instant::now();
/// let mut jb = JitterBuffer::new(JitterConfig::default(), 20, 48_000);
/// // Packets 0 and 2 arrive; 1 is lost on the way.
/// for seq in [0u64, 2] {
///     let ts = seq as u32 * 960;
///     assert_eq!(jb.insert(t0, seq, ts, Bytes::from(vec![seq as u8])), InsertOutcome::Accepted);
/// }
/// let tick = Duration::from_millis(20);
/// assert_eq!(jb.pop(t0), Playout::Packet(Bytes::from(vec![0])));
/// // Frame 1 is missing, but frame 2 (which carries Opus FEC for it) is here.
/// assert_eq!(jb.pop(t0 + tick), Playout::Lost { fec_from: Some(Bytes::from(vec![2])) });
/// assert_eq!(jb.pop(t0 + 2 * tick), Playout::Packet(Bytes::from(vec![2])));
/// assert_eq!(jb.stats().lost, 1);
/// ```
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    frame_us: f64,
    clock_rate: f64,
    /// A ring indexed by `seq % SLOTS`; more slots than `max_depth`, so recently played
    /// sequence numbers are remembered for duplicate detection.
    slots: Vec<Slot>,
    /// The next sequence number to play; `None` before the first packet.
    next: Option<u64>,
    /// The newest sequence number buffered (meaningful when `next` is set).
    highest: u64,
    playing: bool,
    /// Whether the playout point has moved since the last (re)start; before that, a
    /// packet reordered ahead of the first one may lower it.
    advanced: bool,
    /// Consecutive pops that found the buffer empty.
    underruns: u32,
    /// Frames concealed by holds since a packet last played.
    held: u32,
    /// Extra target depth after late packets, and pops since the last one.
    late_boost: u16,
    pops_since_late: u32,
    /// Pops in the current drift window and the least depth seen in it.
    window_pops: u32,
    window_min: u64,
    /// RFC 3550 jitter estimate, µs.
    jitter_us: f64,
    /// The previous in-order arrival: (seq, time, media timestamp).
    last_arrival: Option<(u64, Instant, u32)>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer for frames of `frame_ms` milliseconds whose RTP timestamps run at
    /// `clock_rate` Hz. All memory is allocated here.
    pub fn new(config: JitterConfig, frame_ms: u32, clock_rate: u32) -> Self {
        // Re-clamp: the fields are public, so a config may not have come through `new`.
        let config = JitterConfig::new(config.min_depth, config.max_depth);
        Self {
            config,
            frame_us: f64::from(frame_ms.max(1)) * 1_000.0,
            clock_rate: f64::from(clock_rate.max(1)),
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            next: None,
            highest: 0,
            playing: false,
            advanced: false,
            underruns: 0,
            held: 0,
            late_boost: 0,
            pops_since_late: 0,
            window_pops: 0,
            window_min: u64::MAX,
            jitter_us: 0.0,
            last_arrival: None,
            stats: JitterStats::default(),
        }
    }

    /// Adds a packet with extended sequence number `seq` (below 2^62, as any
    /// [`SequenceExtender`](crate::SequenceExtender) gives) and media timestamp
    /// `rtp_timestamp` that arrived at `now`. An empty `payload` is kept as is (callers may
    /// use it to mark a frame known to be silent).
    pub fn insert(
        &mut self,
        now: Instant,
        seq: u64,
        rtp_timestamp: u32,
        payload: Bytes,
    ) -> InsertOutcome {
        if seq > MAX_SEQ {
            // No extender gets here (2^62 packets); refusing keeps the arithmetic below
            // free of overflow whatever a caller passes.
            self.stats.late += 1;
            return InsertOutcome::Late;
        }
        let Some(next) = self.next else {
            self.restart_at(seq);
            return self.store(now, seq, rtp_timestamp, payload, InsertOutcome::Accepted);
        };
        if self.slot(seq).holds(seq) {
            self.stats.duplicates += 1;
            return InsertOutcome::Duplicate;
        }
        if seq < next {
            // While filling, nothing has played: a packet reordered ahead of the first one
            // can still take its place.
            if !self.advanced && self.highest - seq < u64::from(self.config.max_depth) {
                self.next = Some(seq);
                return self.store(now, seq, rtp_timestamp, payload, InsertOutcome::Accepted);
            }
            self.stats.late += 1;
            // Raise the target so a packet this late would have made it (decays later).
            let lateness = (next - seq).min(u64::from(self.config.max_depth)) as u16;
            self.late_boost = self.late_boost.max(lateness);
            self.pops_since_late = 0;
            return InsertOutcome::Late;
        }
        let max = u64::from(self.config.max_depth);
        let mut outcome = InsertOutcome::Accepted;
        if seq >= next + max {
            if seq - self.highest.max(next) > RESYNC_GAP {
                // Not a gap but a new stream (or hours of outage): start over there.
                self.clear();
                self.restart_at(seq);
                self.stats.resyncs += 1;
                self.last_arrival = None;
                outcome = InsertOutcome::Resync;
            } else {
                let keep_from = seq + 1 - max;
                // When nothing older survives, restart at this packet and refill before
                // playing, rather than play out a run of holes.
                let to = if self.highest < keep_from { seq } else { keep_from };
                let dropped = self.skip_to(to);
                self.stats.overflow += u64::from(dropped);
                if to == seq {
                    self.playing = false;
                }
                outcome = InsertOutcome::Overflow { dropped };
            }
        }
        self.store(now, seq, rtp_timestamp, payload, outcome)
    }

    /// The frame to play this tick. Call exactly once per conference frame, after inserting
    /// what arrived. `now` is accepted for symmetry with [`insert`](Self::insert); the
    /// buffer's clock is the pop cadence itself.
    pub fn pop(&mut self, now: Instant) -> Playout {
        let _ = now;
        let Some(mut next) = self.next else { return Playout::Empty };
        let mut depth = self.depth() as u64;
        if !self.playing {
            if depth < u64::from(self.target_depth()) {
                return Playout::Empty;
            }
            // Start with audio, not with the holes in front of it (a resuming sender's
            // first packets may be the lost ones).
            let first = (next..=self.highest).find(|&s| self.slot(s).payload(s).is_some());
            if let Some(first) = first.filter(|&first| first > next) {
                self.skip_to(first);
                next = first;
                depth = self.depth() as u64;
            }
            self.playing = true;
            self.underruns = 0;
            self.held = 0;
            self.reset_window();
        }
        self.decay_late_boost();
        if depth == 0 {
            // Dry: hold the playout point, so the buffer grows rather than the stream
            // skipping ahead.
            self.underruns += 1;
            if self.underruns > PAUSE_AFTER_UNDERRUNS {
                self.playing = false;
                return Playout::Empty;
            }
            return self.hold();
        }
        self.underruns = 0;
        // A frame already covered by a hold whose packet never came, with later packets
        // here: skip it now, or the hold would leave a frame of latency behind.
        while self.held > 0 && !self.has(next) && next < self.highest {
            self.held -= 1;
            self.stats.lost += 1;
            self.advanced = true;
            next += 1;
        }
        self.next = Some(next);
        let depth = self.depth() as u64;
        if !self.has(next) && depth < u64::from(self.target_depth()) {
            // Missing, with less than the target behind it: more likely late than lost.
            // Wait a frame for it; the latency grows towards the target.
            return self.hold();
        }
        let next = self.correct_drift(next, depth);
        self.advanced = true;
        self.next = Some(next + 1);
        match self.slot_mut(next).take(next) {
            Some(payload) => {
                self.held = 0;
                Playout::Packet(payload)
            }
            None => {
                self.stats.lost += 1;
                Playout::Lost { fec_from: self.slot(next + 1).payload(next + 1).cloned() }
            }
        }
    }

    /// Forgets every packet and the jitter estimate (the source changed). Counters stay.
    pub fn reset(&mut self) {
        self.clear();
        self.next = None;
        self.playing = false;
        self.advanced = false;
        self.held = 0;
        self.late_boost = 0;
        self.last_arrival = None;
        self.jitter_us = 0.0;
    }

    /// Frames from the playout point to the newest packet, holes included; at most
    /// `max_depth`.
    pub fn depth(&self) -> usize {
        self.next.map_or(0, |next| (self.highest + 1).saturating_sub(next) as usize)
    }

    /// The depth the buffer aims for now: one frame plus two jitter deviations, plus as
    /// many frames as the latest recent late packet missed by, within the configured
    /// bounds.
    pub fn target_depth(&self) -> u16 {
        let frames = 1.0 + (2.0 * self.jitter_us / self.frame_us).ceil();
        // The float is finite and non-negative; `as` saturates, then we clamp.
        (frames as u16)
            .saturating_add(self.late_boost)
            .clamp(self.config.min_depth, self.config.max_depth)
    }

    /// The RFC 3550 interarrival jitter estimate.
    pub fn jitter(&self) -> Duration {
        Duration::from_micros(self.jitter_us as u64)
    }

    /// Counters, with the current and target depth.
    pub fn stats(&self) -> JitterStats {
        JitterStats {
            // Both are bounded by `max_depth` (≤ 100).
            depth: self.depth() as u16,
            target_depth: self.target_depth(),
            ..self.stats
        }
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> JitterConfig {
        self.config
    }
}

/// Ring size; above [`JitterConfig::MAX_DEPTH`] so duplicates of played frames are caught.
const SLOTS: usize = 128;
/// Frames concealed in a row before the sender is taken to have paused.
const PAUSE_AFTER_UNDERRUNS: u32 = 3;
/// Pops without a late packet before the late boost drops by a frame (10 s at 20 ms).
const LATE_BOOST_DECAY: u32 = 500;
/// Pops per drift window (1 s of 20 ms frames).
const DRIFT_WINDOW: u32 = 50;
/// Sequence numbers above this are refused (counted late).
const MAX_SEQ: u64 = 1 << 62;
/// A forward jump larger than this is a new stream, not loss (RFC 3550 A.1 `MAX_DROPOUT`).
const RESYNC_GAP: u64 = 3000;

/// One ring entry: the sequence number it last held, and its payload until played.
#[derive(Debug, Default, Clone)]
struct Slot {
    seq: Option<u64>,
    payload: Option<Bytes>,
}

impl Slot {
    /// Whether `seq` was received into this slot (buffered or already played).
    fn holds(&self, seq: u64) -> bool {
        self.seq == Some(seq)
    }

    fn payload(&self, seq: u64) -> Option<&Bytes> {
        self.payload.as_ref().filter(|_| self.holds(seq))
    }

    fn take(&mut self, seq: u64) -> Option<Bytes> {
        if self.holds(seq) {
            self.payload.take()
        } else {
            None
        }
    }
}

impl JitterBuffer {
    fn slot(&self, seq: u64) -> &Slot {
        &self.slots[(seq % SLOTS as u64) as usize]
    }

    fn slot_mut(&mut self, seq: u64) -> &mut Slot {
        &mut self.slots[(seq % SLOTS as u64) as usize]
    }

    /// Whether `seq`'s payload is buffered.
    fn has(&self, seq: u64) -> bool {
        self.slot(seq).payload(seq).is_some()
    }

    /// Conceals this frame without advancing: the buffer grows by a frame.
    fn hold(&mut self) -> Playout {
        self.held += 1;
        self.stats.concealed += 1;
        self.reset_window();
        Playout::Lost { fec_from: None }
    }

    fn decay_late_boost(&mut self) {
        self.pops_since_late += 1;
        if self.pops_since_late >= LATE_BOOST_DECAY {
            self.pops_since_late = 0;
            self.late_boost = self.late_boost.saturating_sub(1);
        }
    }

    fn store(
        &mut self,
        now: Instant,
        seq: u64,
        timestamp: u32,
        payload: Bytes,
        outcome: InsertOutcome,
    ) -> InsertOutcome {
        *self.slot_mut(seq) = Slot { seq: Some(seq), payload: Some(payload) };
        self.highest = self.highest.max(seq);
        self.stats.received += 1;
        self.update_jitter(now, seq, timestamp);
        outcome
    }

    fn restart_at(&mut self, seq: u64) {
        self.next = Some(seq);
        self.highest = seq;
        self.playing = false;
        self.advanced = false;
    }

    /// Advances the playout point to `to`, dropping what lies before it; returns how many
    /// buffered packets went. Frames that never arrived count as lost.
    fn skip_to(&mut self, to: u64) -> u32 {
        let Some(next) = self.next else { return 0 };
        self.advanced = true;
        let mut dropped = 0;
        // At most `max_depth` iterations: everything buffered lies in `next..=highest`.
        for seq in next..to.min(self.highest + 1) {
            if self.slot_mut(seq).take(seq).is_some() {
                dropped += 1;
            } else {
                self.stats.lost += 1;
            }
        }
        // Frames past the newest packet were never sent yet or were lost in a gap.
        self.stats.lost += to.saturating_sub(self.highest + 1);
        self.next = Some(to.max(next));
        self.highest = self.highest.max(to.saturating_sub(1));
        dropped
    }

    /// At the end of each window in which the depth never fell to the target, drops
    /// the oldest frame; returns the (possibly advanced) playout point.
    fn correct_drift(&mut self, next: u64, depth: u64) -> u64 {
        self.window_min = self.window_min.min(depth);
        self.window_pops += 1;
        if self.window_pops < DRIFT_WINDOW {
            return next;
        }
        let surplus = self.window_min > u64::from(self.target_depth());
        self.reset_window();
        if !surplus {
            return next;
        }
        if self.slot_mut(next).take(next).is_some() {
            self.stats.drift_dropped += 1;
        } else {
            self.stats.lost += 1;
        }
        next + 1
    }

    fn reset_window(&mut self) {
        self.window_pops = 0;
        self.window_min = u64::MAX;
    }

    fn update_jitter(&mut self, now: Instant, seq: u64, timestamp: u32) {
        if let Some((prev_seq, prev_at, prev_ts)) = self.last_arrival {
            if seq <= prev_seq {
                // Reordered: RFC 3550 measures consecutive arrivals, but a reordered packet
                // against the newest would double count; skip it.
                return;
            }
            // Spacing by media timestamps, so a DTX pause, whose timestamps jump with it,
            // is not mistaken for jitter. Signed: a sender restart may step backwards.
            let expected =
                f64::from(timestamp.wrapping_sub(prev_ts) as i32) * 1e6 / self.clock_rate;
            let actual = signed_micros(now, prev_at);
            let d = (actual - expected).abs();
            // RFC 3550 §6.4.1: J += (|D| − J) / 16.
            self.jitter_us += (d - self.jitter_us) / 16.0;
        }
        self.last_arrival = Some((seq, now, timestamp));
    }

    fn clear(&mut self) {
        for slot in &mut self.slots {
            *slot = Slot::default();
        }
    }
}

/// `a − b` in microseconds, negative when `a` is earlier.
fn signed_micros(a: Instant, b: Instant) -> f64 {
    match a.checked_duration_since(b) {
        Some(d) => d.as_secs_f64() * 1e6,
        None => -(b.saturating_duration_since(a).as_secs_f64() * 1e6),
    }
}

#[cfg(test)]
mod tests;
