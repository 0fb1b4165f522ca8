//! A simulated sender, network and receiver for the playout tests, in simulated time: a
//! sender emits one real Opus packet per 20 ms, a seeded network delays (by a chosen
//! distribution), loses, reorders and duplicates them, and the receiver pulls one frame per
//! tick at a phase of its own. Faster than real time and deterministic.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{FrameKind, JitterBuffer, JitterConfig, JitterStats};
use crate::codec::{new_decoder, new_encoder, AudioDecoder, CodecKind, CodecParams, CodecSettings};

pub(super) const RATE: u32 = 48_000;
pub(super) const FRAME: usize = 960;
pub(super) const FRAME_MS: u64 = 20;

/// A splitmix64 generator: small, seeded, deterministic.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How the network delays a packet beyond its base delay.
#[derive(Debug, Clone, Copy)]
pub(super) enum Jitter {
    None,
    /// Uniform in 0..max ms (the project's netem definition of "N ms jitter").
    Uniform(f64),
    /// Exponential with this mean, ms (a long tail), capped at 10 means.
    Exponential(f64),
    /// A fraction of the packets held back this many ms, the rest on time (the quality
    /// bench's "reordering").
    HeldBack(f64, f64),
    /// Stalls: for the first `len` ms of every `period` ms nothing gets through, and what
    /// was sent meanwhile arrives at once when the stall ends (a starved sender or reader).
    Stall(f64, f64),
    /// A queue growing at this many ms per s of media (a path filling up), from 0 at the
    /// first packet: each packet is that much later than the one before.
    Ramp(f64),
    /// A constant extra delay plus uniform jitter up to the second value, ms.
    StepPlusUniform(f64, f64),
}

impl Jitter {
    fn sample_ms(self, rng: &mut Rng, sent_ms: f64) -> f64 {
        match self {
            Jitter::Stall(period, len) => {
                let into = sent_ms % period;
                if into < len {
                    len - into
                } else {
                    0.0
                }
            }
            Jitter::StepPlusUniform(step, max) => step + rng.unit() * max,
            Jitter::Ramp(ms_per_s) => sent_ms / 1000.0 * ms_per_s,
            Jitter::None => 0.0,
            Jitter::Uniform(max) => rng.unit() * max,
            Jitter::Exponential(mean) => (-(1.0 - rng.unit()).ln() * mean).min(10.0 * mean),
            Jitter::HeldBack(fraction, ms) => {
                if rng.unit() < fraction {
                    ms
                } else {
                    0.0
                }
            }
        }
    }
}

/// The network during one stretch of simulated time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Net {
    pub(super) jitter: Jitter,
    pub(super) loss: f64,
    pub(super) duplicate: f64,
}

impl Net {
    pub(super) fn jitter(jitter: Jitter) -> Self {
        Self { jitter, loss: 0.0, duplicate: 0.0 }
    }
}

/// What one simulated run saw, per tick.
#[derive(Debug, Default)]
pub(super) struct Run {
    /// Audio held before each pull (packets plus decoded samples), ms, unsmoothed.
    pub(super) held_ms: Vec<f64>,
    /// After each pull, how far the next sample to play is behind the sender's timeline
    /// beyond the network's 30 ms base delay, ms: the delay a listener hears, which the
    /// buffer does not see (it steers by `held_ms`). `NaN` before playing starts.
    pub(super) behind_ms: Vec<f64>,
    /// The smoothed delay and the target after each pull, ms.
    pub(super) delay_ms: Vec<u32>,
    pub(super) target_ms: Vec<u32>,
    /// Packets the network delivered (duplicates included) and lost.
    pub(super) delivered: u64,
    pub(super) network_lost: u64,
    pub(super) stats: JitterStats,
    /// Frames pulled that were not audio, from the stream's start to its last packet.
    pub(super) gaps: u64,
    /// Every output sample (when kept).
    pub(super) output: Vec<i16>,
}

impl Run {
    /// The late fraction: packets that arrived but too late to play, over packets sent
    /// that the network did not lose.
    pub(super) fn late_fraction(&self) -> f64 {
        self.stats.late as f64 / (self.delivered.max(1) as f64)
    }

    /// Mean of `behind_ms` over ticks `from..to`.
    pub(super) fn mean_behind(&self, from: usize, to: usize) -> f64 {
        let slice: Vec<f64> = self.behind_ms[from..to.min(self.behind_ms.len())]
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        slice.iter().sum::<f64>() / slice.len().max(1) as f64
    }

    /// Mean of `held_ms` over ticks `from..to`.
    pub(super) fn mean_held(&self, from: usize, to: usize) -> f64 {
        let slice = &self.held_ms[from..to.min(self.held_ms.len())];
        slice.iter().sum::<f64>() / slice.len().max(1) as f64
    }
}

/// A voiced test signal: a 200 Hz fundamental with four harmonics (period 5 ms, so 20 ms
/// frames and a 1 s loop line up).
pub(super) fn voiced(frame_index: u64, out: &mut [i16]) {
    let base = frame_index as f64 * out.len() as f64;
    for (i, s) in out.iter_mut().enumerate() {
        let t = (base + i as f64) / f64::from(RATE);
        let mut v = 0.0;
        for (h, a) in [(1.0, 6000.0), (2.0, 3000.0), (3.0, 1500.0), (4.0, 800.0), (5.0, 400.0)] {
            v += a * (std::f64::consts::TAU * 200.0 * h * t).sin();
        }
        *s = v as i16;
    }
}

/// `count` Opus packets of [`voiced`] audio (played in a loop by the sender).
pub(super) fn opus_packets(count: u64) -> Vec<Bytes> {
    let params = CodecParams::new(CodecKind::Opus);
    // Nothing here can fail: valid parameters for a 48 kHz, 20 ms Opus encoder.
    let mut encoder = new_encoder(&params, &CodecSettings::default(), RATE, FRAME).unwrap();
    let mut pcm = vec![0i16; FRAME];
    let mut out = vec![0u8; crate::codec::MAX_PAYLOAD];
    (0..count)
        .map(|k| {
            voiced(k, &mut pcm);
            let n = encoder.encode(&pcm, &mut out).unwrap();
            Bytes::copy_from_slice(&out[..n])
        })
        .collect()
}

pub(super) fn opus_decoder() -> Box<dyn AudioDecoder + Send> {
    new_decoder(&CodecParams::new(CodecKind::Opus), RATE, FRAME).unwrap()
}

/// Runs `seconds` of simulated time: the sender starts at 0, the network's base delay is
/// 30 ms plus `net(t)` jitter, the receiver ticks every 20 ms from a phase of 7.3 ms.
pub(super) fn simulate(
    config: JitterConfig,
    seconds: u64,
    seed: u64,
    keep_output: bool,
    net: impl Fn(f64) -> Net,
) -> Run {
    simulate_clock(config, seconds, seed, keep_output, 1.0, net)
}

/// [`simulate`] with a sender whose clock runs at `clock` times the receiver's (1.01: 1 %
/// fast, so its 20 ms packets come every 19.8 ms).
pub(super) fn simulate_clock(
    config: JitterConfig,
    seconds: u64,
    seed: u64,
    keep_output: bool,
    clock: f64,
    net: impl Fn(f64) -> Net,
) -> Run {
    simulate_full(config, seconds, seed, keep_output, clock, 7.3, net)
}

/// [`simulate`] with the receiver ticking from `phase_ms` (where its ticks fall against
/// the packets' arrivals decides which delays the tick grid can play at).
pub(super) fn simulate_phase(
    config: JitterConfig,
    seconds: u64,
    seed: u64,
    phase_ms: f64,
    net: impl Fn(f64) -> Net,
) -> Run {
    simulate_full(config, seconds, seed, false, 1.0, phase_ms, net)
}

pub(super) fn simulate_full(
    config: JitterConfig,
    seconds: u64,
    seed: u64,
    keep_output: bool,
    clock: f64,
    phase_ms: f64,
    net: impl Fn(f64) -> Net,
) -> Run {
    let packets = opus_packets(50);
    let mut decoder = opus_decoder();
    let mut jb = JitterBuffer::new(config, FRAME_MS as u32, RATE, FRAME);
    let mut rng = Rng::new(seed);
    let t0 = Instant::now();
    let at = |ms: f64| t0 + Duration::from_secs_f64(ms / 1000.0);
    let frames = seconds * 1000 / FRAME_MS;

    // Arrivals, generated up front: (arrival ms, seq).
    let mut arrivals: Vec<(f64, u64)> = Vec::new();
    let mut run = Run::default();
    for seq in 0..frames {
        let sent = (seq * FRAME_MS) as f64 / clock;
        let n = net(sent);
        if rng.unit() < n.loss {
            run.network_lost += 1;
            continue;
        }
        let arrival = sent + 30.0 + n.jitter.sample_ms(&mut rng, sent);
        arrivals.push((arrival, seq));
        if rng.unit() < n.duplicate {
            arrivals.push((arrival + n.jitter.sample_ms(&mut rng, sent), seq));
        }
    }
    arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
    run.delivered = arrivals.len() as u64;

    let last_arrival = arrivals.last().map_or(0.0, |a| a.0);
    let mut frame = vec![0i16; FRAME];
    let mut next_arrival = 0;
    let mut started = false;
    for tick in 0..frames + 20 {
        let now_ms = phase_ms + (tick * FRAME_MS) as f64;
        while next_arrival < arrivals.len() && arrivals[next_arrival].0 <= now_ms {
            let (arrival, seq) = arrivals[next_arrival];
            let payload = packets[(seq % packets.len() as u64) as usize].clone();
            jb.insert(at(arrival), seq, (seq * FRAME as u64) as u32, payload);
            next_arrival += 1;
        }
        run.held_ms.push(jb.raw_level() / jb.per_ms);
        let pulled = jb.pull(at(now_ms), decoder.as_mut(), false, &mut frame);
        started |= pulled.frame == FrameKind::Audio;
        if started && pulled.frame != FrameKind::Audio && now_ms < last_arrival {
            run.gaps += 1;
        }
        // The next sample to play is `sync_len` samples before the playout point's packet.
        run.behind_ms.push(jb.next.map_or(f64::NAN, |next| {
            let sent_ms = (next * FRAME_MS) as f64 / clock - jb.sync_len as f64 / jb.per_ms;
            now_ms + FRAME_MS as f64 - sent_ms - 30.0
        }));
        let stats = jb.stats();
        run.delay_ms.push(stats.delay_ms);
        run.target_ms.push(stats.target_ms);
        if keep_output {
            run.output.extend_from_slice(&frame);
        }
    }
    run.stats = jb.stats();
    run
}
