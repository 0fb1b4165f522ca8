//! The playout buffer of one inbound stream, NetEq-style and sans-IO: packets go in with
//! their arrival time; every conference tick exactly one frame of decoded audio comes out.
//!
//! Two buffers, as in WebRTC's NetEq:
//! - a **packet buffer** keyed by extended sequence number (from
//!   [`SequenceExtender`](crate::SequenceExtender)); each packet keeps its arrival
//!   [`Instant`], which feeds the delay statistics at whatever resolution the caller's
//!   clock has (sub-millisecond with the socket reader's stamps);
//! - a **sync buffer** of decoded samples not yet played, from which each tick's frame is
//!   taken. Because it holds samples, not frames, latency is adapted in samples: by
//!   time-stretching the decoded audio, never by dropping or repeating a frame.
//!
//! [`JitterBuffer`] says how it decides what to do, and why.

mod delay;
mod stretch;

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codec::AudioDecoder;
use delay::DelayEstimator;
use stretch::Stretcher;

/// Delay bounds, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct JitterConfig {
    /// Delay always kept beyond one frame, ms (0: only what the jitter asks for).
    pub min_delay_ms: u32,
    /// The most delay the buffer aims for, ms, and the most delay a listener hears beyond
    /// the fastest path: a missing packet is given up (concealed, or rebuilt from FEC)
    /// rather than waited for once the wait would take the sample being played more than
    /// this far behind the fastest recent packet.
    /// The buffer holds at most [`max_held_ms`](Self::max_held_ms) of packets (a burst after
    /// a stall), past which the oldest packets are dropped.
    pub max_delay_ms: u32,
}

impl Default for JitterConfig {
    /// No added minimum; at most [`DEFAULT_MAX_DELAY_MS`](Self::DEFAULT_MAX_DELAY_MS).
    fn default() -> Self {
        Self { min_delay_ms: 0, max_delay_ms: Self::DEFAULT_MAX_DELAY_MS }
    }
}

impl JitterConfig {
    /// Bounds in ms; `max_delay_ms` is clamped to 20..=[`MAX_DELAY_MS`](Self::MAX_DELAY_MS)
    /// and `min_delay_ms` to at most `max_delay_ms`.
    pub fn new(min_delay_ms: u32, max_delay_ms: u32) -> Self {
        let max_delay_ms = max_delay_ms.clamp(20, Self::MAX_DELAY_MS);
        Self { min_delay_ms: min_delay_ms.min(max_delay_ms), max_delay_ms }
    }

    /// The largest delay a buffer may be configured with.
    pub const MAX_DELAY_MS: u32 = 2_000;

    /// The most the packet buffer holds, ms, from the playout point to the newest packet:
    /// twice `max_delay_ms`, and at least 400 ms. Not less under a small cap: under 100 ms of
    /// jitter a packet may come 100 ms before the ones in front of it, and pushing those out
    /// to make room would drop packets that are still in time; the cap gives up the late
    /// ones itself.
    pub fn max_held_ms(&self) -> u32 {
        2 * self.max_delay_ms.max(200)
    }

    /// The default cap on the delay heard, ms: quality first, every late packet within
    /// 200 ms is waited for (industry practice for adaptive buffers). Latency under jitter
    /// moves in whole 20 ms ticks: a cap of 20 ms reaches Janus AudioBridge's latency under
    /// 40 ms of jitter at about half the speech score of the default, 40 ms is one tick more
    /// (docs/QUALITY.md, "Latency under jitter"). Operators choose per conference.
    pub const DEFAULT_MAX_DELAY_MS: u32 = 200;
}

/// What happened to an inserted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InsertOutcome {
    /// Buffered.
    Accepted,
    /// Already buffered or recently played: dropped.
    Duplicate,
    /// Behind the playout point: dropped (its arrival still counts in the delay
    /// statistics, so the target grows).
    Late,
    /// Buffered, but the buffer would have held more than [`JitterConfig::max_held_ms`]: this many
    /// older buffered packets were dropped to make room.
    Overflow {
        /// Buffered packets dropped.
        dropped: u32,
    },
    /// Buffered after a jump too far to be a gap: everything older was discarded and the
    /// buffer restarted at this packet.
    Resync,
}

/// What the frame [`JitterBuffer::pull`] wrote holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameKind {
    /// Audio (decoded, concealed, or stretched).
    Audio,
    /// Only zeros: silence-marked frames, skipped decodes, or concealment faded out.
    Silence,
    /// Nothing is playing: the stream has not started or has paused. The frame is zeros.
    Empty,
}

/// One [`pull`](JitterBuffer::pull): what the frame holds and what the decoder did for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pulled {
    /// What the output frame holds.
    pub frame: FrameKind,
    /// Payloads decoded.
    pub decoded: u32,
    /// Lost frames rebuilt from the next packet's in-band FEC.
    pub fec: u32,
    /// Frames of decoder concealment (loss, or a packet not here yet).
    pub concealed: u32,
    /// Silence-marked (empty) payloads played as silence without decoding.
    pub silent: u32,
    /// Payloads not decoded because the caller asked to skip decoding.
    pub skipped: u32,
    /// Payloads the decoder refused (concealed instead).
    pub undecodable: u32,
    /// Samples removed by accelerate or merge this pull.
    pub accelerated: u32,
    /// Samples added by preemptive expand this pull.
    pub expanded: u32,
}

impl Pulled {
    fn new() -> Self {
        Self {
            frame: FrameKind::Empty,
            decoded: 0,
            fec: 0,
            concealed: 0,
            silent: 0,
            skipped: 0,
            undecodable: 0,
            accelerated: 0,
            expanded: 0,
        }
    }

    /// Decoder calls made (decodes, FEC and concealment).
    pub fn decoder_calls(&self) -> u32 {
        self.decoded + self.fec + self.concealed + self.undecodable
    }
}

/// Counters, and the current and target delay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JitterStats {
    /// Packets accepted into the buffer.
    pub received: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Packets that arrived behind the playout point, dropped.
    pub late: u64,
    /// Buffered packets dropped because the buffer held more than [`JitterConfig::max_held_ms`].
    pub overflow: u64,
    /// Sequence numbers whose packet never arrived in time.
    pub lost: u64,
    /// Frames of decoder concealment: losses without FEC, and waits for a packet not
    /// here yet (a wait whose packet then comes costs latency, not audio).
    pub concealed: u64,
    /// Lost frames rebuilt from Opus in-band FEC.
    pub fec_recovered: u64,
    /// Samples removed by accelerate (audio and silence), at the output rate.
    pub accelerated_samples: u64,
    /// Samples added by preemptive expand (audio and silence), at the output rate.
    pub expanded_samples: u64,
    /// Samples of concealment dropped when real audio returned (merge), at the output rate.
    pub merged_samples: u64,
    /// Restarts after a far jump.
    pub resyncs: u64,
    /// The output sample rate, Hz: the unit of the sample counters.
    pub sample_rate: u32,
    /// Packets from the playout point to the newest one, holes included.
    pub depth: u16,
    /// Audio the buffer holds (packets plus decoded samples), smoothed, ms.
    pub delay_ms: u32,
    /// The delay the buffer aims for: one frame, plus the 95th percentile of recent
    /// packets' delay relative to the fastest one, within the configured bounds, ms.
    pub target_ms: u32,
}

/// The playout buffer of one stream, sans-IO: [`insert`](Self::insert) every packet as it
/// arrives, with its arrival time; [`pull`](Self::pull) exactly once per conference frame.
///
/// How it behaves, and why:
/// - **Target delay** (ms, not frames): one frame, plus the 0.95 quantile of the packets'
///   delay relative to the fastest packet of the last 2 s, from a histogram with
///   exponential forgetting (NetEq's `DelayManager`), within
///   [`JitterConfig`]'s bounds. With no jitter it is one frame. Packets slower than the
///   cap are given up whatever the target, so when fewer than 95 % come within it the
///   target is the least delay that keeps as many in time as the cap does (10 % of packets
///   held back past the cap add no delay; they would only have been buffered for).
/// - **Level**: each pull measures the audio held (the span of buffered packets plus the
///   decoded samples not yet played), smoothed over about 8 ticks. Above the target by
///   more than a margin (a quarter of the jitter allowance, at least 3 ms), one pitch
///   period is removed (**accelerate**), tick after tick until the level is back at the
///   target; below it by the margin, one is added (**preemptive expand**), both with the
///   cross-fades of `stretch.rs`. Silence is cut or padded directly. At most one stretch
///   per tick, of at most 15 ms.
/// - **The delay heard** is also measured in time: how far the sample about to play is
///   behind the fastest packet of the window (from its RTP timestamp and the arrival
///   statistics). Waiting for a late packet moves it without moving the level; so
///   `max_delay_ms` bounds it (see [`JitterConfig::max_delay_ms`]).
/// - **Loss and lateness**: a missing packet with the target's worth of audio behind it is
///   lost: the decoder rebuilds it from the next packet's FEC when that is here, or
///   conceals it (**expand**). With less behind it, it is more likely late: the decoder
///   conceals a frame and the buffer waits for it; if it comes it plays (the wait cost
///   latency, which accelerate takes back), if later packets come first it is skipped.
///   A wait that would pass the delay cap is not made: the packet is lost, and if it
///   comes after all it is dropped as late.
///   When real audio follows concealment, the end of the concealment not yet played is
///   cross-faded into it (**merge**). After a few concealed frames with nothing buffered
///   the sender is taken to have paused (DTX, hold): [`FrameKind::Empty`] until it
///   resumes, and playing resumes once the target delay is buffered again.
/// - **Reordering** within the window is free; **duplicates** are dropped; a packet behind
///   the playout point is **late** (dropped, but its arrival feeds the statistics).
/// - **Bounded**: all memory (packet slots, sync buffer, statistics, scratch) is allocated
///   in [`new`](Self::new); a burst that would hold more than [`JitterConfig::max_held_ms`] pushes
///   the oldest packets out, and a jump further than any plausible gap restarts the buffer.
///
/// ```
/// use std::time::{Duration, Instant};
/// use bytes::Bytes;
/// use mixminus_rtp::{new_decoder, CodecKind, CodecParams, FrameKind, JitterBuffer, JitterConfig};
///
/// // PCMU at 8 kHz, decoded to a 48 kHz conference in 20 ms frames.
/// let params = CodecParams::new(CodecKind::Pcmu);
/// let mut decoder = new_decoder(&params, 48_000, 960).unwrap();
/// let mut jb = JitterBuffer::new(JitterConfig::default(), 20, 8_000, 960);
/// let t0 = Instant::now();
/// let mut frame = vec![0i16; 960];
/// for seq in 0..50u64 {
///     let now = t0 + Duration::from_millis(20 * seq);
///     // 0x80 is µ-law for a small positive value; a steady stream, no jitter.
///     jb.insert(now, seq, seq as u32 * 160, Bytes::from(vec![0x80u8; 160]));
///     let pulled = jb.pull(now, decoder.as_mut(), false, &mut frame);
///     assert_eq!(pulled.frame, FrameKind::Audio);
/// }
/// let stats = jb.stats();
/// assert_eq!((stats.lost, stats.concealed, stats.target_ms), (0, 0, 20));
/// assert!(stats.delay_ms <= 25, "one frame held, not more: {}", stats.delay_ms);
/// ```
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    /// Output samples per frame (one packet decodes to one frame).
    frame: usize,
    /// Output samples per ms.
    per_ms: f64,
    slots: Vec<Slot>,
    /// The next sequence number to decode; `None` before the first packet.
    next: Option<u64>,
    /// The newest sequence number buffered (meaningful when `next` is set).
    highest: u64,
    playing: bool,
    /// Whether the playout point has moved since the last (re)start; before that, a
    /// packet reordered ahead of the first one may lower it.
    advanced: bool,
    /// Consecutive frames concealed with nothing buffered.
    underruns: u32,
    /// Frames concealed while waiting for `next` (each stands in for one missing packet).
    held: u32,
    /// Decoded samples not yet played: `sync[..sync_len]`.
    sync: Vec<i16>,
    sync_len: usize,
    /// Samples at the end of `sync[..sync_len]` that are decoder concealment.
    concealed_tail: usize,
    /// Samples at the end of `sync[..sync_len]` that are silence (zeros).
    silent_tail: usize,
    /// Whether the last frame appended was silence: then a gap stays silent rather than
    /// asking the decoder to extrapolate from stale state.
    after_silence: bool,
    delays: DelayEstimator,
    stretcher: Stretcher,
    /// Smoothed level, output samples.
    level: f64,
    /// Which way the level is being steered: once a stretch starts it goes on until the
    /// level is back at the target, not just inside the margin (or the level would sit at
    /// the edge of the band after every wait for a late packet).
    steering: Steering,
    /// RTP timestamp ticks per frame.
    frame_ticks: u32,
    /// The RTP timestamp of the end of the decoded audio (`sync[..sync_len]`): where the
    /// next packet's media would start. `None` before the first decode.
    sync_end_ts: Option<u32>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// An empty buffer for a stream of `frame_ms` packets whose RTP timestamps run at
    /// `clock_rate` Hz and which a decoder turns into `frame_samples` samples each. All
    /// memory is allocated here.
    pub fn new(config: JitterConfig, frame_ms: u32, clock_rate: u32, frame_samples: usize) -> Self {
        // Re-clamp: the fields are public, so a config may not have come through `new`.
        let config = JitterConfig::new(config.min_delay_ms, config.max_delay_ms);
        let frame_ms = frame_ms.max(1);
        let frame = frame_samples.max(1);
        let out_rate = (frame as u64 * 1000 / u64::from(frame_ms)) as u32;
        let slots = (config.max_held_ms() / frame_ms) as usize + SLOT_MARGIN;
        let stretcher = Stretcher::new(out_rate);
        Self {
            config,
            frame,
            per_ms: frame as f64 / f64::from(frame_ms),
            slots: (0..slots).map(|_| Slot::default()).collect(),
            next: None,
            highest: 0,
            playing: false,
            advanced: false,
            underruns: 0,
            held: 0,
            // Room for: a frame left over, up to two decoded frames, and one inserted
            // period (≤ 15 ms ≤ a frame at most rates); four frames cover it all.
            sync: vec![0; 4 * frame + out_rate as usize * 15 / 1000],
            sync_len: 0,
            concealed_tail: 0,
            silent_tail: 0,
            after_silence: false,
            delays: DelayEstimator::new(clock_rate, config.max_held_ms()),
            stretcher,
            level: 0.0,
            steering: Steering::Hold,
            frame_ticks: (u64::from(clock_rate) * u64::from(frame_ms) / 1000) as u32,
            sync_end_ts: None,
            stats: JitterStats { sample_rate: out_rate, ..JitterStats::default() },
        }
    }

    /// Adds a packet with extended sequence number `seq` (below 2^62, as any
    /// [`SequenceExtender`](crate::SequenceExtender) gives) and media timestamp
    /// `rtp_timestamp`, which arrived at `arrival`. An empty `payload` marks a frame known
    /// to be silent: it keeps its place and plays as silence without a decode.
    pub fn insert(
        &mut self,
        arrival: Instant,
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
            return self.store(arrival, seq, rtp_timestamp, payload, InsertOutcome::Accepted);
        };
        if self.slot(seq).holds(seq) {
            self.stats.duplicates += 1;
            return InsertOutcome::Duplicate;
        }
        let capacity = self.slots.len() as u64 - SLOT_MARGIN as u64;
        if seq < next {
            // While filling, nothing has played: a packet reordered ahead of the first one
            // can still take its place.
            if !self.advanced && self.highest - seq < capacity {
                self.next = Some(seq);
                return self.store(arrival, seq, rtp_timestamp, payload, InsertOutcome::Accepted);
            }
            self.stats.late += 1;
            // The evidence that the target was too short.
            self.delays.on_packet(arrival, rtp_timestamp);
            return InsertOutcome::Late;
        }
        let mut outcome = InsertOutcome::Accepted;
        if seq >= next + capacity {
            if seq - self.highest.max(next) > RESYNC_GAP {
                // Not a gap but a new stream (or hours of outage): start over there.
                self.clear_packets();
                self.restart_at(seq);
                self.stats.resyncs += 1;
                self.delays.reset();
                outcome = InsertOutcome::Resync;
            } else {
                let keep_from = seq + 1 - capacity;
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
        self.store(arrival, seq, rtp_timestamp, payload, outcome)
    }

    /// Writes this tick's frame into `out` (exactly `frame_samples`; a longer `out` keeps
    /// its tail, a shorter one gets what fits). Call exactly once per conference frame,
    /// after inserting what arrived. `decoder` is the stream's decoder: the buffer decides
    /// when to decode, to rebuild from FEC or to conceal. With `skip_decode` (the caller
    /// does not need this frame's sound, e.g. a quiet participant) payloads due now are
    /// consumed as silence without decoding, and losses are not concealed; the buffer's
    /// timing is unaffected. `now` is the time this frame is for (the tick's deadline, on
    /// the clock of [`insert`](Self::insert)'s arrival times): the delay heard, which
    /// `max_delay_ms` bounds, is measured against it.
    pub fn pull(
        &mut self,
        now: Instant,
        decoder: &mut dyn AudioDecoder,
        skip_decode: bool,
        out: &mut [i16],
    ) -> Pulled {
        let mut pulled = Pulled::new();
        let f = self.frame;
        let out = if out.len() >= f { &mut out[..f] } else { out };
        if !self.playing && !self.try_start() {
            out.fill(0);
            // Audio decoded before a pause still plays out.
            if self.sync_len == 0 {
                return pulled;
            }
        }
        let level = self.raw_level();
        self.level += (level - self.level) * LEVEL_SMOOTHING;
        let target = self.target_samples();
        let margin = (((target - f as f64) / 4.0).max(0.0)).max(MIN_MARGIN_MS * self.per_ms);
        // The cap is on the delay heard: how far the next sample to play is behind the
        // fastest path. Waits for late packets move it without moving the level.
        let cap = f64::from(self.config.max_delay_ms) * self.per_ms;
        // The cap bounds waits only. Stretching whenever the delay heard is over it was
        // tried: under a packet flood (packets queued behind junk arrive late) every leg
        // stretched at once, and the CPU that cost starved the tick (`hostile_chaos`:
        // 85-96 % of frames delivered instead of 99 %).
        let behind = self.behind_samples(now);
        self.steering = match self.steering {
            Steering::Accelerate if self.level > target => Steering::Accelerate,
            _ if self.level > target + margin => Steering::Accelerate,
            _ if self.level < target - margin => Steering::Expand,
            _ => Steering::Hold,
        };
        let excess = (self.level.min(level) - target).max(0.0);
        let deficit = (target - self.level).max(0.0);
        let accelerate = self.steering == Steering::Accelerate;
        // Expanding delays what is heard on purpose, so it too stays within the cap: under
        // jitter past the cap the level is low because packets are late, and stretching
        // the audio would not bring them sooner, only make the waits it can no longer make.
        let expand = !accelerate
            && self.steering == Steering::Expand
            && behind.is_none_or(|b| b + deficit.min(MAX_EXPAND_MS * self.per_ms) <= cap);
        // Frames a missing packet may still be waited for before the wait would take the
        // delay heard past the cap.
        let wait_room = behind.map_or(u32::MAX, |b| ((cap - b) / f as f64).floor().max(0.0) as u32);

        // Decode until a frame is ready. Accelerate cuts from the decoded audio left over
        // beyond this frame, which costs no robustness (the next packet is due at the next
        // tick either way); only half a frame of excess justifies decoding the next packet
        // a tick early to cut from it (less would leave the level below target).
        let want_extra = if accelerate && excess >= f as f64 / 2.0 + margin { f } else { 0 };
        let mut guard = 0;
        while self.playing && guard < MAX_FETCHES {
            guard += 1;
            let need_more = self.sync_len < f
                || (self.sync_len < f + want_extra && self.next.is_some_and(|n| self.has(n)));
            if !need_more || !self.fetch(decoder, skip_decode, wait_room, &mut pulled) {
                break;
            }
        }

        if self.sync_len >= f && self.playing {
            if accelerate {
                let removed = self.accelerate(excess, margin);
                pulled.accelerated += removed as u32;
                self.level -= removed as f64;
            } else if expand {
                let added = self.expand(deficit);
                pulled.expanded += added as u32;
                self.level += added as f64;
            }
        }

        let available = self.sync_len.min(out.len());
        out[..available].copy_from_slice(&self.sync[..available]);
        out[available..].fill(0);
        self.consume(available);
        if self.playing || available > 0 {
            pulled.frame =
                if out.iter().any(|&s| s != 0) { FrameKind::Audio } else { FrameKind::Silence };
        }
        pulled
    }

    /// Forgets every packet, the decoded audio and the delay statistics (the source
    /// changed). Counters stay.
    pub fn reset(&mut self) {
        self.clear_packets();
        self.next = None;
        self.playing = false;
        self.advanced = false;
        self.held = 0;
        self.underruns = 0;
        self.sync_len = 0;
        self.concealed_tail = 0;
        self.silent_tail = 0;
        self.after_silence = false;
        self.level = 0.0;
        self.steering = Steering::Hold;
        self.sync_end_ts = None;
        self.delays.reset();
    }

    /// Packets from the playout point to the newest one, holes included.
    pub fn depth(&self) -> usize {
        self.next.map_or(0, |next| (self.highest + 1).saturating_sub(next) as usize)
    }

    /// The delay the buffer aims for (see [`JitterStats::target_ms`]).
    pub fn target_delay(&self) -> Duration {
        Duration::from_secs_f64(self.target_samples() / self.per_ms / 1000.0)
    }

    /// The audio held now, smoothed (see [`JitterStats::delay_ms`]).
    pub fn current_delay(&self) -> Duration {
        Duration::from_secs_f64(self.level.max(0.0) / self.per_ms / 1000.0)
    }

    /// Counters, with the current and target delay.
    pub fn stats(&self) -> JitterStats {
        JitterStats {
            // At most the slot count (≤ 2 · 2000 / 10 + margin).
            depth: self.depth().min(usize::from(u16::MAX)) as u16,
            delay_ms: (self.level.max(0.0) / self.per_ms).round() as u32,
            target_ms: (self.target_samples() / self.per_ms).round() as u32,
            ..self.stats
        }
    }

    /// The configuration in force (after clamping).
    pub fn config(&self) -> JitterConfig {
        self.config
    }
}

/// Slots beyond [`JitterConfig::max_held_ms`] of packets, so duplicates of played packets are
/// still recognised.
const SLOT_MARGIN: usize = 32;
/// Frames concealed in a row with nothing buffered before the sender is taken to have
/// paused.
const PAUSE_AFTER_UNDERRUNS: u32 = 3;
/// Weight of each tick's level in the smoothed level (a time constant of ~8 ticks).
const LEVEL_SMOOTHING: f64 = 1.0 / 8.0;
/// The most one preemptive expand adds, ms (see `stretch.rs`).
const MAX_EXPAND_MS: f64 = 15.0;
/// The least distance from the target before stretching, ms.
const MIN_MARGIN_MS: f64 = 3.0;
/// A stretch of poorly correlated (noise-like) audio is done anyway when the level is
/// this far off target, ms: a smooth splice of noise beats unbounded latency.
const FORCE_STRETCH_MS: f64 = 40.0;
/// Decodes per pull at most (a frame, one to accelerate, skipped holds, a merge).
const MAX_FETCHES: u32 = 8;
/// Sequence numbers above this are refused (counted late).
const MAX_SEQ: u64 = 1 << 62;
/// A forward jump larger than this is a new stream, not loss (RFC 3550 A.1 `MAX_DROPOUT`).
const RESYNC_GAP: u64 = 3000;

/// One packet slot: the sequence number it last held, and its packet until decoded.
#[derive(Debug, Default, Clone)]
struct Slot {
    seq: Option<u64>,
    payload: Option<Bytes>,
    /// The packet's RTP timestamp.
    timestamp: u32,
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

/// Which way [`JitterBuffer::pull`] is moving the level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Steering {
    Hold,
    Accelerate,
    Expand,
}

/// What [`JitterBuffer::fetch`] appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fetched {
    Audio,
    Concealed,
    Silence,
}

impl JitterBuffer {
    fn slot(&self, seq: u64) -> &Slot {
        &self.slots[(seq % self.slots.len() as u64) as usize]
    }

    fn slot_mut(&mut self, seq: u64) -> &mut Slot {
        let n = self.slots.len() as u64;
        &mut self.slots[(seq % n) as usize]
    }

    /// Whether `seq`'s payload is buffered.
    fn has(&self, seq: u64) -> bool {
        self.slot(seq).payload(seq).is_some()
    }

    /// The target, output samples: one frame plus the jitter allowance, within bounds.
    fn target_samples(&self) -> f64 {
        let frame_ms = self.frame as f64 / self.per_ms;
        let cap_us = (f64::from(self.config.max_delay_ms) - frame_ms).max(0.0) * 1000.0;
        let ms = (frame_ms + self.delays.target_us(cap_us) / 1000.0)
            .max(frame_ms + f64::from(self.config.min_delay_ms))
            .min(f64::from(self.config.max_delay_ms).max(frame_ms));
        ms * self.per_ms
    }

    /// Audio held now, output samples: decoded samples plus the span of buffered packets
    /// (holes included), less the packets concealment already stood in for.
    fn raw_level(&self) -> f64 {
        let packets = (self.depth() as u64).saturating_sub(u64::from(self.held));
        self.sync_len as f64 + packets as f64 * self.frame as f64
    }

    /// How far the next sample to play is behind the fastest path now, output samples
    /// (see [`DelayEstimator::behind_us`]); `None` before anything was decoded.
    fn behind_samples(&self, now: Instant) -> Option<f64> {
        let end = self.delays.behind_us(now, self.sync_end_ts?)?;
        Some(end / 1000.0 * self.per_ms + self.sync_len as f64)
    }

    /// Starts (or resumes) playing once the target delay is buffered; skips leading holes.
    fn try_start(&mut self) -> bool {
        let Some(next) = self.next else { return false };
        if self.raw_level() < self.target_samples() - self.frame as f64 / 2.0 {
            return false;
        }
        // Start with audio, not with the holes in front of it (a resuming sender's
        // first packets may be the lost ones).
        let first = (next..=self.highest).find(|&s| self.has(s));
        match first {
            Some(first) if first > next => {
                self.skip_to(first);
            }
            Some(_) => {}
            None => return false,
        }
        self.playing = true;
        self.underruns = 0;
        self.held = 0;
        self.level = self.raw_level();
        self.steering = Steering::Hold;
        if self.sync_len == 0 {
            // What played before a pause says nothing about the delay now.
            self.sync_end_ts = None;
        }
        true
    }

    /// Appends one frame of audio for the playout point to the sync buffer; false when
    /// nothing was appended (paused, or skipped a frame already concealed). A missing
    /// packet is waited for at most `wait_room` frames in all (see [`JitterConfig`]).
    fn fetch(
        &mut self,
        decoder: &mut dyn AudioDecoder,
        skip: bool,
        wait_room: u32,
        pulled: &mut Pulled,
    ) -> bool {
        let Some(mut next) = self.next else {
            self.playing = false;
            return false;
        };
        // A frame already covered by concealment whose packet never came, with later
        // packets here: skip it now, or the wait would leave its latency behind. So is one
        // that came, when playing it now would put the delay heard past the cap, even with
        // nothing after it (the buffer then conceals for the next packet instead: the cap
        // is on the delay heard, and a late packet played would raise it by the wait).
        while self.held > 0
            && if next < self.highest {
                !self.has(next) || self.held > wait_room
            } else {
                self.held > wait_room && self.has(next)
            }
        {
            self.held -= 1;
            if self.slot_mut(next).take(next).is_some() {
                self.stats.late += 1;
            } else {
                self.stats.lost += 1;
            }
            next += 1;
        }
        self.next = Some(next);
        if self.depth() == 0 || (!self.has(next) && next >= self.highest) {
            // Dry (nothing at or after the playout point).
            self.underruns += 1;
            if self.underruns > PAUSE_AFTER_UNDERRUNS {
                self.playing = false;
                self.held = 0;
                return false;
            }
            return self.conceal_waiting(decoder, skip, pulled);
        }
        self.underruns = 0;
        let timestamp = self.slot(next).timestamp;
        if let Some(payload) = self.slot_mut(next).take(next) {
            self.held = 0;
            self.advance(next);
            self.sync_end_ts = Some(timestamp.wrapping_add(self.frame_ticks));
            self.append_payload(&payload, decoder, skip, pulled);
            return true;
        }
        // Missing, with later packets here.
        let behind = (self.depth() as f64 - 1.0) * self.frame as f64 + self.sync_len as f64;
        if behind < self.target_samples() && self.held < wait_room {
            // Less than the target behind it: more likely late than lost. Wait for it.
            return self.conceal_waiting(decoder, skip, pulled);
        }
        self.stats.lost += 1;
        self.advance(next);
        let fec_from = self.slot(next + 1).payload(next + 1).filter(|p| !p.is_empty()).cloned();
        match fec_from {
            Some(fec_from) if !(skip || self.after_silence) => {
                let (start, end) = (self.sync_len, self.sync_len + self.frame);
                decoder.decode_fec(&fec_from, &mut self.sync[start..end]);
                self.sync_end_ts = self.sync_end_ts.map(|t| t.wrapping_add(self.frame_ticks));
                pulled.fec += 1;
                self.stats.fec_recovered += 1;
                self.appended(Fetched::Audio);
            }
            _ => self.append_concealment(decoder, skip, pulled),
        }
        true
    }

    /// Conceals one frame for a packet not here yet, without moving the playout point.
    fn conceal_waiting(
        &mut self,
        decoder: &mut dyn AudioDecoder,
        skip: bool,
        pulled: &mut Pulled,
    ) -> bool {
        self.held += 1;
        self.append_concealment(decoder, skip, pulled);
        true
    }

    /// Appends one concealed frame (silence when decoding is skipped or the sender paused).
    fn append_concealment(
        &mut self,
        decoder: &mut dyn AudioDecoder,
        skip: bool,
        pulled: &mut Pulled,
    ) {
        // The concealment stands in for the next packet's media.
        self.sync_end_ts = self.sync_end_ts.map(|t| t.wrapping_add(self.frame_ticks));
        let (start, end) = (self.sync_len, self.sync_len + self.frame);
        if skip || self.after_silence {
            self.sync[start..end].fill(0);
            self.appended(Fetched::Silence);
        } else {
            decoder.conceal(&mut self.sync[start..end]);
            pulled.concealed += 1;
            self.stats.concealed += 1;
            self.appended(Fetched::Concealed);
        }
    }

    fn append_payload(
        &mut self,
        payload: &Bytes,
        decoder: &mut dyn AudioDecoder,
        skip: bool,
        pulled: &mut Pulled,
    ) {
        let (start, end) = (self.sync_len, self.sync_len + self.frame);
        if payload.is_empty() || skip {
            self.sync[start..end].fill(0);
            if payload.is_empty() {
                pulled.silent += 1;
            } else {
                pulled.skipped += 1;
            }
            self.appended(Fetched::Silence);
            return;
        }
        let concealed_before = self.concealed_tail;
        match decoder.decode(payload, &mut self.sync[start..end]) {
            Ok(written) => {
                self.sync[start + written.min(self.frame)..end].fill(0);
                pulled.decoded += 1;
            }
            Err(_) => {
                decoder.conceal(&mut self.sync[start..end]);
                pulled.undecodable += 1;
                self.stats.concealed += 1;
                self.appended(Fetched::Concealed);
                return;
            }
        }
        self.appended(Fetched::Audio);
        if concealed_before > 0 {
            // Real audio after concealment: cross-fade the concealment not yet played into
            // it, cutting no deeper than this tick's frame (or the next packet would be
            // decoded early).
            let cap = self.sync_len.saturating_sub(self.frame);
            let merged = self.stretcher.merge(
                &mut self.sync,
                self.sync_len,
                concealed_before,
                self.frame,
                cap,
            );
            self.sync_len -= merged;
            self.stats.merged_samples += merged as u64;
            self.level -= merged as f64;
            pulled.accelerated += merged as u32;
        }
    }

    /// Bookkeeping after a frame was appended at the end of the sync buffer.
    fn appended(&mut self, kind: Fetched) {
        self.sync_len += self.frame;
        self.after_silence = kind == Fetched::Silence;
        match kind {
            Fetched::Audio => {
                self.concealed_tail = 0;
                self.silent_tail = 0;
            }
            Fetched::Concealed => {
                self.concealed_tail += self.frame;
                self.silent_tail = 0;
            }
            Fetched::Silence => {
                self.concealed_tail = 0;
                self.silent_tail += self.frame;
            }
        }
    }

    /// Removes up to `excess` samples (trailing silence directly, audio by one period);
    /// returns how many went.
    fn accelerate(&mut self, excess: f64, margin: f64) -> usize {
        let want = (excess as usize).min(self.sync_len - self.frame);
        if want == 0 {
            return 0;
        }
        let removed = if self.silent_tail >= want {
            // Shorten the trailing silence.
            self.silent_tail -= want;
            want
        } else {
            let force = excess > FORCE_STRETCH_MS * self.per_ms + margin;
            self.stretcher.accelerate(&mut self.sync, self.sync_len, want, force)
        };
        self.sync_len -= removed;
        self.tails_within_sync();
        self.stats.accelerated_samples += removed as u64;
        removed
    }

    /// Adds up to `deficit` samples (trailing silence directly, audio by one period);
    /// returns how many were added.
    fn expand(&mut self, deficit: f64) -> usize {
        let room = self.sync.len() - self.sync_len;
        let want = (deficit as usize).min(self.frame).min(room);
        if want < self.stretcher.min_lag() {
            return 0;
        }
        let added = if self.silent_tail >= self.frame {
            // Pad the trailing silence.
            let end = self.sync_len + want;
            self.sync[self.sync_len..end].fill(0);
            self.silent_tail += want;
            want
        } else {
            let force = deficit > FORCE_STRETCH_MS * self.per_ms;
            // The period goes in near the start: the tails move but stay tails.
            self.stretcher.expand(&mut self.sync, self.sync_len, want, force)
        };
        self.sync_len += added;
        self.stats.expanded_samples += added as u64;
        added
    }

    fn tails_within_sync(&mut self) {
        self.concealed_tail = self.concealed_tail.min(self.sync_len);
        self.silent_tail = self.silent_tail.min(self.sync_len);
    }

    /// Drops the first `n` samples of the sync buffer (played).
    fn consume(&mut self, n: usize) {
        self.sync.copy_within(n..self.sync_len, 0);
        self.sync_len -= n;
        self.tails_within_sync();
    }

    fn advance(&mut self, played: u64) {
        self.advanced = true;
        self.next = Some(played + 1);
        self.highest = self.highest.max(played);
    }

    fn store(
        &mut self,
        arrival: Instant,
        seq: u64,
        timestamp: u32,
        payload: Bytes,
        outcome: InsertOutcome,
    ) -> InsertOutcome {
        *self.slot_mut(seq) = Slot { seq: Some(seq), payload: Some(payload), timestamp };
        self.highest = self.highest.max(seq);
        self.stats.received += 1;
        self.delays.on_packet(arrival, timestamp);
        outcome
    }

    fn restart_at(&mut self, seq: u64) {
        self.next = Some(seq);
        self.highest = seq;
        self.playing = false;
        self.advanced = false;
        self.held = 0;
    }

    /// Advances the playout point to `to`, dropping what lies before it; returns how many
    /// buffered packets went. Packets that never arrived count as lost.
    fn skip_to(&mut self, to: u64) -> u32 {
        let Some(next) = self.next else { return 0 };
        self.advanced = true;
        let mut dropped = 0;
        // At most the slot count: everything buffered lies in `next..=highest`.
        for seq in next..to.min(self.highest + 1) {
            if self.slot_mut(seq).take(seq).is_some() {
                dropped += 1;
            } else {
                self.stats.lost += 1;
            }
        }
        // Packets past the newest one were never sent yet or were lost in a gap.
        self.stats.lost += to.saturating_sub(self.highest + 1);
        self.next = Some(to.max(next));
        self.highest = self.highest.max(to.saturating_sub(1));
        self.held = 0;
        dropped
    }

    fn clear_packets(&mut self) {
        for slot in &mut self.slots {
            *slot = Slot::default();
        }
    }
}

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
