//! The target delay, from arrival statistics (the idea of WebRTC NetEq's `DelayManager`).
//!
//! Each packet's *transit* is its arrival time minus its media time (RTP timestamp over the
//! clock rate). Its *relative delay* is its transit minus the smallest transit of the last
//! [`WINDOW`]: how much later it came than the fastest recent packet, which is what a
//! buffer must absorb. Sender clock offset cancels out, a drifting sender clock is followed
//! by the sliding minimum, and a DTX pause (timestamps jump with the pause) is not jitter.
//!
//! Relative delays go into a histogram of 0.25 ms buckets with exponential forgetting (each
//! new packet weighs `1 / FORGET` times the one before it); the target is its
//! [`QUANTILE`]. Why a quantile and not RFC 3550's interarrival jitter: `J` is a mean of
//! *consecutive* differences, so it says nothing about the tail. For delay uniform in
//! 0..40 ms, `J` settles near 13 ms, and a `2·J` target leaves a third of the packets
//! behind it, while the 0.95 quantile (38 ms) leaves 5 % before the buffer's frame of
//! slack, and none late after it (`tests.rs`, `forty_ms_jitter_loses_under_one_percent_late`).

use std::cell::Cell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long the fastest packet is remembered (NetEq: 2 s).
const WINDOW: Duration = Duration::from_secs(2);
/// Transit samples kept for the sliding minimum; a flood only shortens the window.
const WINDOW_CAPACITY: usize = 256;
/// The histogram quantile the target covers.
const QUANTILE: f64 = 0.95;
/// Per-packet forgetting factor (NetEq's 0.983: old packets' weight halves every ~40
/// packets, so a spike's tail falls below 5 % of the mass about 3.5 s after it ends).
const FORGET: f64 = 0.983;
/// Histogram bucket width, µs.
const BUCKET_US: f64 = 250.0;
/// Weights are rescaled before they grow past this.
const RESCALE_AT: f64 = 1e12;

/// One stream's arrival statistics. All memory is allocated in [`new`](Self::new).
#[derive(Debug)]
pub(super) struct DelayEstimator {
    clock_rate: f64,
    /// `(arrival, transit µs)`, transits increasing from front to back (a monotonic queue:
    /// the front is the window's minimum).
    window: VecDeque<(Instant, f64)>,
    /// Relative-delay weights per 0.25 ms bucket; the last bucket takes everything above.
    histogram: Vec<f64>,
    /// The weight the next packet adds (grows by `1 / FORGET` per packet).
    weight: f64,
    total: f64,
    /// The timeline: the first arrival, and unwrapped media time.
    origin: Option<Instant>,
    last_timestamp: u32,
    media_ticks: i64,
    /// Cached `(cap, target)`, µs; `None` when a packet came since.
    quantile_us: Cell<Option<(f64, f64)>>,
}

impl DelayEstimator {
    /// Relative delays up to `max_ms` are told apart; larger ones count as `max_ms`.
    pub(super) fn new(clock_rate: u32, max_ms: u32) -> Self {
        Self {
            clock_rate: f64::from(clock_rate.max(1)),
            window: VecDeque::with_capacity(WINDOW_CAPACITY),
            histogram: vec![0.0; (max_ms as f64 * 1000.0 / BUCKET_US) as usize + 1],
            weight: 1.0,
            total: 0.0,
            origin: None,
            last_timestamp: 0,
            media_ticks: 0,
            quantile_us: Cell::new(None),
        }
    }

    /// Records one packet (in any order, late ones included: they are the evidence).
    pub(super) fn on_packet(&mut self, arrival: Instant, timestamp: u32) {
        let origin = match self.origin {
            Some(origin) => origin,
            None => {
                self.origin = Some(arrival);
                self.last_timestamp = timestamp;
                arrival
            }
        };
        // Unwrap the 32-bit timestamp against the previous packet's (signed: reordering).
        self.media_ticks += i64::from(timestamp.wrapping_sub(self.last_timestamp) as i32);
        self.last_timestamp = timestamp;
        let arrival_us = signed_micros(arrival, origin);
        let transit = arrival_us - self.media_ticks as f64 * 1e6 / self.clock_rate;

        while self
            .window
            .front()
            .is_some_and(|&(at, _)| arrival.saturating_duration_since(at) > WINDOW)
            || self.window.len() == WINDOW_CAPACITY
        {
            self.window.pop_front();
        }
        while self.window.back().is_some_and(|&(_, t)| t >= transit) {
            self.window.pop_back();
        }
        self.window.push_back((arrival, transit));
        // The front is the window's minimum (this packet's transit at most).
        let min = self.window.front().map_or(transit, |&(_, t)| t);
        let relative = (transit - min).max(0.0);
        let max_us = (self.histogram.len() - 1) as f64 * BUCKET_US;
        if relative > 4.0 * max_us.max(WINDOW.as_secs_f64() * 1e6) {
            // Not jitter but a new timeline (a sender restarted its timestamps): start the
            // window over from this packet, and learn nothing from it.
            self.window.clear();
            self.window.push_back((arrival, transit));
            return;
        }
        let bucket = ((relative / BUCKET_US) as usize).min(self.histogram.len() - 1);
        self.histogram[bucket] += self.weight;
        self.total += self.weight;
        self.weight /= FORGET;
        if self.weight > RESCALE_AT {
            let scale = 1.0 / self.weight;
            self.histogram.iter_mut().for_each(|w| *w *= scale);
            self.total *= scale;
            self.weight = 1.0;
        }
        self.quantile_us.set(None);
    }

    /// The [`QUANTILE`] of recent relative delays, µs (0 before any packet): the delay the
    /// buffer must add beyond its frame so that all but the slowest few packets are in time.
    ///
    /// Packets slower than `cap_us` are given up whatever the target (the buffer will not
    /// wait past its cap), so buffering for them buys nothing: when fewer than
    /// [`QUANTILE`] of the packets are within the cap, the target is the least delay that
    /// keeps as many in time as the cap does. Under 10 % of packets held back 50 ms and a
    /// 40 ms cap, that is no added delay at all (the 90 % are on time; the held-back ones
    /// are lost either way), where the plain quantile would have buffered up to the cap.
    pub(super) fn target_us(&self, cap_us: f64) -> f64 {
        if let Some((cap, q)) = self.quantile_us.get() {
            if cap == cap_us {
                return q;
            }
        }
        // The weight the cap keeps in time: buckets whose upper edge is within it.
        let within = ((cap_us / BUCKET_US).floor().max(0.0) as usize).min(self.histogram.len());
        let in_time: f64 = self.histogram[..within].iter().sum();
        let goal = (QUANTILE * self.total).min(in_time.max(f64::MIN_POSITIVE));
        let mut sum = 0.0;
        let mut bucket = self.histogram.len() - 1;
        for (i, w) in self.histogram.iter().enumerate() {
            sum += w;
            if sum >= goal {
                bucket = i;
                break;
            }
        }
        // The bucket's upper edge: a packet in it is covered.
        let q = if self.total > 0.0 { (bucket + 1) as f64 * BUCKET_US } else { 0.0 };
        self.quantile_us.set(Some((cap_us, q)));
        q
    }

    /// How late, µs, media timestamp `timestamp` is at `now` against the fastest path of
    /// the window: `now` minus when a packet with that timestamp would have arrived had it
    /// been as fast as the fastest recent packet. This is the delay a listener hears for
    /// the sample at that timestamp, less the fastest path's own transit; `None` before
    /// any packet.
    pub(super) fn behind_us(&self, now: Instant, timestamp: u32) -> Option<f64> {
        let origin = self.origin?;
        let min = self.window.front()?.1;
        let ticks =
            self.media_ticks + i64::from(timestamp.wrapping_sub(self.last_timestamp) as i32);
        Some(signed_micros(now, origin) - (ticks as f64 * 1e6 / self.clock_rate + min))
    }

    /// Forgets everything (a new source).
    pub(super) fn reset(&mut self) {
        self.window.clear();
        self.histogram.iter_mut().for_each(|w| *w = 0.0);
        self.weight = 1.0;
        self.total = 0.0;
        self.origin = None;
        self.media_ticks = 0;
        self.quantile_us.set(None);
    }
}

/// `a − b` in microseconds, negative when `a` is earlier.
pub(super) fn signed_micros(a: Instant, b: Instant) -> f64 {
    match a.checked_duration_since(b) {
        Some(d) => d.as_secs_f64() * 1e6,
        None => -(b.saturating_duration_since(a).as_secs_f64() * 1e6),
    }
}
