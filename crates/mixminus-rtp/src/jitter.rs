//! An adaptive jitter buffer, sans-IO: the caller passes arrival times in and pops exactly
//! one frame per conference tick.
//!
//! One RTP packet carries one frame (the leg's ptime equals the conference frame), so the
//! buffer works in extended sequence numbers. Its target depth follows the RFC 3550
//! interarrival jitter estimate between a configured minimum and maximum. A sender whose
//! clock runs fast fills the buffer: past the target for a second, one frame is dropped.
//! One that runs slow empties it: the buffer then holds back (conceals a frame without
//! advancing) rather than rushing. Memory is a fixed ring allocated at construction.

use std::time::{Duration, Instant};

use bytes::Bytes;

/// Depth bounds, in frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JitterConfig {
    /// Never play out with fewer frames buffered than this (at least 1).
    pub min_depth: u16,
    /// Never hold more than this; older frames are dropped (and counted) past it.
    pub max_depth: u16,
}

impl Default for JitterConfig {
    /// 1 to 10 frames (20–200 ms at 20 ms frames).
    fn default() -> Self {
        Self { min_depth: 1, max_depth: 10 }
    }
}

impl JitterConfig {
    /// Bounds in frames; `min_depth` at least 1, `max_depth` at least `min_depth`, at most
    /// 100.
    pub fn new(min_depth: u16, max_depth: u16) -> Self {
        let min_depth = min_depth.clamp(1, 100);
        Self { min_depth, max_depth: max_depth.clamp(min_depth, 100) }
    }
}

/// What happened to an inserted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsertOutcome {
    /// Buffered.
    Accepted,
    /// Already buffered: dropped.
    Duplicate,
    /// Its playout time has passed: dropped.
    Late,
    /// Too far ahead of playout to hold (the sender jumped): the buffer restarted there.
    Resync,
}

/// One tick's frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// The frame's payload.
    Packet(Bytes),
    /// The frame is missing; `fec_from` is the next packet's payload when already buffered
    /// (Opus can rebuild the lost frame from its in-band FEC).
    Lost {
        /// The next packet, if buffered.
        fec_from: Option<Bytes>,
    },
    /// Nothing to play: the participant is not sending (or the buffer is still filling).
    Empty,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JitterStats {
    /// Packets accepted.
    pub received: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Late packets dropped.
    pub late: u64,
    /// Frames dropped because the buffer was past its maximum or drifting long.
    pub dropped: u64,
    /// Frames reported lost (never arrived in time).
    pub lost: u64,
    /// Restarts after a far jump.
    pub resyncs: u64,
}

/// Ring capacity; also the furthest ahead of playout a packet may land.
const CAPACITY: usize = 128;
/// Underrun frames concealed before the buffer decides the sender paused.
const UNDERRUN_CONCEAL: u32 = 3;
/// Pops spent above target (plus slack) before one frame is dropped to catch up.
const DRIFT_PATIENCE: u32 = 50;

/// The buffer.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    frame: Duration,
    slots: Vec<Option<(u64, Bytes)>>,
    /// Next sequence number to play.
    next: Option<u64>,
    highest: u64,
    playing: bool,
    underruns: u32,
    above_target: u32,
    /// RFC 3550 jitter estimate, µs, and the previous transit time.
    jitter_us: f64,
    last_transit: Option<(u64, Instant, u32)>,
    clock_rate: u32,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer for frames of `frame_ms` with RTP timestamps at `clock_rate`.
    pub fn new(config: JitterConfig, frame_ms: u32, clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            config,
            frame: Duration::from_millis(frame_ms.max(1) as u64),
            slots: vec![None; CAPACITY],
            next: None,
            highest: 0,
            playing: false,
            underruns: 0,
            above_target: 0,
            jitter_us: 0.0,
            last_transit: None,
            stats: JitterStats::default(),
        }
    }

    /// Adds a packet that arrived at `now`.
    pub fn insert(
        &mut self,
        now: Instant,
        seq: u64,
        rtp_timestamp: u32,
        payload: Bytes,
    ) -> InsertOutcome {
        let next = match self.next {
            Some(next) => next,
            None => {
                self.next = Some(seq);
                self.highest = seq;
                seq
            }
        };
        if seq < next {
            self.stats.late += 1;
            return InsertOutcome::Late;
        }
        let mut outcome = InsertOutcome::Accepted;
        if seq >= next + CAPACITY as u64 {
            // Far ahead of playout: a restart or a long outage. Start over from here.
            self.clear_slots();
            self.next = Some(seq);
            self.highest = seq;
            self.playing = false;
            self.stats.resyncs += 1;
            outcome = InsertOutcome::Resync;
        }
        let slot = &mut self.slots[(seq % CAPACITY as u64) as usize];
        if slot.as_ref().is_some_and(|(s, _)| *s == seq) {
            self.stats.duplicates += 1;
            return InsertOutcome::Duplicate;
        }
        *slot = Some((seq, payload));
        self.stats.received += 1;
        self.highest = self.highest.max(seq);
        self.update_jitter(now, seq, rtp_timestamp);
        outcome
    }

    /// The frame to play this tick. Call exactly once per conference frame.
    pub fn pop(&mut self, _now: Instant) -> Playout {
        let Some(next) = self.next else { return Playout::Empty };
        let buffered = (self.highest + 1).saturating_sub(next);
        if !self.playing {
            if buffered >= self.target_depth() as u64 {
                self.playing = true;
                self.underruns = 0;
            } else {
                return Playout::Empty;
            }
        }
        if buffered == 0 {
            // Underrun: the sender is late or paused. Hold the playout point.
            self.underruns += 1;
            if self.underruns > UNDERRUN_CONCEAL {
                self.playing = false;
                return Playout::Empty;
            }
            self.stats.lost += 1;
            return Playout::Lost { fec_from: None };
        }
        self.underruns = 0;
        self.trim(next, buffered);
        let next = self.next.unwrap_or(next);
        let played = self.take(next);
        self.next = Some(next + 1);
        match played {
            Some(payload) => Playout::Packet(payload),
            None => {
                self.stats.lost += 1;
                let fec_from = self.slots[((next + 1) % CAPACITY as u64) as usize]
                    .as_ref()
                    .filter(|(s, _)| *s == next + 1)
                    .map(|(_, p)| p.clone());
                Playout::Lost { fec_from }
            }
        }
    }

    /// Forgets everything (the source changed).
    pub fn reset(&mut self) {
        self.clear_slots();
        self.next = None;
        self.playing = false;
        self.last_transit = None;
        self.jitter_us = 0.0;
    }

    /// Frames buffered ahead of playout.
    pub fn depth(&self) -> usize {
        self.next.map_or(0, |next| (self.highest + 1).saturating_sub(next) as usize)
    }

    /// The depth it aims for now, from the jitter estimate.
    pub fn target_depth(&self) -> u16 {
        let frame_us = self.frame.as_micros().max(1) as f64;
        // Two jitter deviations of headroom beyond one frame.
        let frames = 1.0 + (2.0 * self.jitter_us / frame_us).ceil();
        (frames as u16).clamp(self.config.min_depth, self.config.max_depth)
    }

    /// The interarrival jitter estimate.
    pub fn jitter(&self) -> Duration {
        Duration::from_micros(self.jitter_us as u64)
    }

    /// Counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    fn take(&mut self, seq: u64) -> Option<Bytes> {
        let slot = &mut self.slots[(seq % CAPACITY as u64) as usize];
        match slot.take() {
            Some((s, payload)) if s == seq => Some(payload),
            other => {
                *slot = other;
                None
            }
        }
    }

    /// Drops the oldest frames when the buffer is past its maximum, or has sat above its
    /// target for a while (a sender clock running fast).
    fn trim(&mut self, next: u64, buffered: u64) {
        let target = self.target_depth() as u64;
        let mut drop = buffered.saturating_sub(self.config.max_depth as u64);
        if buffered > target + 1 {
            self.above_target += 1;
            if self.above_target >= DRIFT_PATIENCE {
                self.above_target = 0;
                drop = drop.max(1);
            }
        } else {
            self.above_target = 0;
        }
        for seq in next..next + drop {
            self.take(seq);
            self.stats.dropped += 1;
        }
        self.next = Some(next + drop);
    }

    fn update_jitter(&mut self, now: Instant, seq: u64, timestamp: u32) {
        if let Some((prev_seq, prev_at, prev_ts)) = self.last_transit {
            if seq > prev_seq {
                // Spacing by media timestamps (RFC 3550 §6.4.1), so a DTX pause, whose
                // timestamps jump with it, is not mistaken for jitter.
                let ticks = timestamp.wrapping_sub(prev_ts) as i32 as f64;
                let expected = ticks * 1e6 / self.clock_rate as f64;
                let actual = now.saturating_duration_since(prev_at).as_micros() as f64
                    - prev_at.saturating_duration_since(now).as_micros() as f64;
                let d = (actual - expected).abs();
                self.jitter_us += (d - self.jitter_us) / 16.0;
            }
        }
        if self.last_transit.is_none_or(|(prev, _, _)| seq > prev) {
            self.last_transit = Some((seq, now, timestamp));
        }
    }

    fn clear_slots(&mut self) {
        for slot in &mut self.slots {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests;
