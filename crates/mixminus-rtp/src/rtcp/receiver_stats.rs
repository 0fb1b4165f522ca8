//! What we measure of a peer's RTP stream, for the reception report block we send it
//! (RFC 3550 §6.4.1): loss per appendix A.3, interarrival jitter per appendix A.8.
//!
//! Sans-IO: each accepted packet comes in with its arrival time (taken by the receive path,
//! never read here), its extended sequence number (from [`crate::SequenceExtender`], which
//! does appendix A.1's validation) and its RTP timestamp.
//!
//! Decisions where the RFC leaves room:
//! - Every packet the extender numbers counts as received, duplicates and late ones
//!   included (A.3: "the number of packets received includes any which are late or
//!   duplicated"), so the cumulative loss can go negative; it is clamped to 24 bits signed.
//! - Jitter is updated for every such packet, as A.8 writes it, with A.8's integer form
//!   (the estimate is kept ×16 so no precision is lost between packets).
//! - A restart of the sender's numbering (the extender jumps by a cycle or more) or a new
//!   SSRC starts the statistics over, as A.1's `init_seq` does.

use std::time::Instant;

/// The extender numbers a restarted stream at least this far above the old maximum; no
/// in-stream gap is that large (A.1 `MAX_DROPOUT` is 3000).
const RESTART_JUMP: u64 = 1 << 16;

/// The fields of one reception report block (RFC 3550 §6.4.1), as sent or as received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReportBlock {
    /// The source the block is about.
    pub ssrc: u32,
    /// Packets lost since the previous report, as a fraction of those expected, ×256.
    pub fraction_lost: u8,
    /// Packets lost since reception started (expected − received; negative with
    /// duplicates), 24 bits signed on the wire.
    pub cumulative_lost: i32,
    /// Extended highest sequence number received: cycles << 16 | highest sequence number.
    pub extended_highest_seq: u32,
    /// Interarrival jitter, in RTP timestamp units.
    pub jitter: u32,
    /// The middle 32 bits of the NTP time in the last sender report from `ssrc` (0: none).
    pub last_sr: u32,
    /// Time from receiving that sender report to sending this block, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// Reception statistics of one RTP source.
#[derive(Debug, Clone)]
pub(crate) struct ReceiverStats {
    clock_rate: u32,
    /// The first extended sequence number (A.1 `base_seq`), `None` until a packet came.
    base: Option<u64>,
    /// The highest extended sequence number.
    max: u64,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Arrival times are counted in RTP units from here (the first packet's arrival).
    epoch: Option<Instant>,
    /// The previous packet's relative transit time, in RTP units.
    transit: Option<u32>,
    /// Interarrival jitter ×16, in RTP units (A.8's integer form).
    jitter_x16: u32,
}

impl ReceiverStats {
    /// Statistics for a stream with this RTP clock rate.
    pub(crate) fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            base: None,
            max: 0,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            epoch: None,
            transit: None,
            jitter_x16: 0,
        }
    }

    /// Forgets everything (a new SSRC).
    pub(crate) fn reset(&mut self) {
        *self = Self::new(self.clock_rate);
    }

    /// Counts one packet that arrived at `arrival` with extended sequence number `ext_seq`
    /// and RTP timestamp `rtp_timestamp`.
    pub(crate) fn on_packet(&mut self, arrival: Instant, ext_seq: u64, rtp_timestamp: u32) {
        if self.base.is_some_and(|_| ext_seq >= self.max.saturating_add(RESTART_JUMP)) {
            self.reset();
        }
        match self.base {
            None => {
                self.base = Some(ext_seq);
                self.max = ext_seq;
            }
            Some(_) => self.max = self.max.max(ext_seq),
        }
        self.received += 1;

        // A.8: the transit time's absolute change, smoothed with gain 1/16. The arrival
        // clock's origin is arbitrary (only differences count), so it is the first arrival.
        let epoch = *self.epoch.get_or_insert(arrival);
        let since = arrival.saturating_duration_since(epoch).as_nanos();
        let arrival_rtp = (since * u128::from(self.clock_rate) / 1_000_000_000) as u32;
        let transit = arrival_rtp.wrapping_sub(rtp_timestamp);
        if let Some(previous) = self.transit {
            let d = (transit.wrapping_sub(previous) as i32).unsigned_abs();
            // jitter += (|D| − jitter) / 16, kept ×16: J16 += |D| − J16/16 (rounded).
            self.jitter_x16 =
                self.jitter_x16.wrapping_add(d).wrapping_sub(self.jitter_x16.wrapping_add(8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// Whether a packet came since the last [`report`](Self::report) (RFC 3550 §6.4: a
    /// report carries blocks only for sources heard since the previous one).
    pub(crate) fn heard_since_report(&self) -> bool {
        self.base.is_some() && self.received > self.received_prior
    }

    /// The block for the next report about `ssrc` (A.3); starts the next reporting
    /// interval. `last_sr` and `delay_since_last_sr` are left 0 for the caller.
    pub(crate) fn report(&mut self, ssrc: u32) -> ReportBlock {
        let block = self.peek(ssrc);
        self.expected_prior = self.expected();
        self.received_prior = self.received;
        block
    }

    /// The block [`report`](Self::report) would give now, without starting a new interval.
    pub(crate) fn peek(&self, ssrc: u32) -> ReportBlock {
        let Some(base) = self.base else { return ReportBlock { ssrc, ..ReportBlock::default() } };
        let expected = self.expected();
        let lost = expected as i64 - self.received as i64;
        let expected_interval = expected.saturating_sub(self.expected_prior);
        let received_interval = self.received.saturating_sub(self.received_prior);
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: lost.clamp(-0x80_0000, 0x7f_ffff) as i32,
            // The extender numbers the first cycle 1, not 0: count cycles from the base's.
            extended_highest_seq: (self.max - (base & !0xffff)) as u32,
            jitter: self.jitter_x16 >> 4,
            last_sr: 0,
            delay_since_last_sr: 0,
        }
    }

    fn expected(&self) -> u64 {
        self.base.map_or(0, |base| self.max + 1 - base)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::SequenceExtender;

    /// Feeds `(sequence number, RTP timestamp, arrival ms)` through a real extender.
    fn feed(stats: &mut ReceiverStats, t0: Instant, packets: &[(u16, u32, f64)]) {
        let mut seq = SequenceExtender::new();
        for &(s, ts, ms) in packets {
            let ext = seq.extend(s).expect("in range");
            stats.on_packet(t0 + Duration::from_secs_f64(ms / 1000.0), ext, ts);
        }
    }

    #[test]
    fn loss_counted_per_interval_and_in_total() {
        // 10 expected (100..=109), 102 and 105 lost: 2/10 → 51/256; then 110..=119 with
        // 111 lost: interval 1/10 → 25, cumulative 3.
        let t0 = Instant::now();
        let mut stats = ReceiverStats::new(8000);
        let first: Vec<_> = (100u16..110)
            .filter(|s| ![102, 105].contains(s))
            .map(|s| (s, u32::from(s) * 160, f64::from(s) * 20.0))
            .collect();
        feed(&mut stats, t0, &first);
        let block = stats.report(7);
        assert_eq!((block.ssrc, block.fraction_lost, block.cumulative_lost), (7, 51, 2));
        assert_eq!(block.extended_highest_seq, 109);
        let mut seq = SequenceExtender::new();
        for &(s, ..) in &first {
            seq.extend(s);
        }
        for s in (110u16..120).filter(|&s| s != 111) {
            let ext = seq.extend(s).unwrap();
            stats.on_packet(t0 + Duration::from_millis(u64::from(s) * 20), ext, u32::from(s) * 160);
        }
        let block = stats.report(7);
        assert_eq!((block.fraction_lost, block.cumulative_lost), (25, 3));
        assert_eq!(block.extended_highest_seq, 119);
        // Nothing since: no block due, and a block would say no loss in the interval.
        assert!(!stats.heard_since_report());
        assert_eq!(stats.peek(7).fraction_lost, 0);
    }

    #[test]
    fn reordering_and_duplicates_do_not_count_as_loss() {
        // 1, 3, 2, 4, 4: all of 1..=4 arrived (one twice): lost = 4 − 5 = −1, fraction 0.
        let t0 = Instant::now();
        let mut stats = ReceiverStats::new(48_000);
        feed(
            &mut stats,
            t0,
            &[(1, 0, 0.0), (3, 1920, 40.0), (2, 960, 41.0), (4, 2880, 60.0), (4, 2880, 61.0)],
        );
        let block = stats.report(1);
        assert_eq!((block.fraction_lost, block.cumulative_lost), (0, -1));
        assert_eq!(block.extended_highest_seq, 4);
    }

    #[test]
    fn extended_highest_counts_cycles_across_the_wrap() {
        // 65533..=65535 then 0..=2 (one wrap), 1 lost: cycles = 1, highest 2.
        let t0 = Instant::now();
        let mut stats = ReceiverStats::new(8000);
        let packets: Vec<_> = [65533u16, 65534, 65535, 0, 2]
            .iter()
            .enumerate()
            .map(|(i, &s)| (s, i as u32 * 160, i as f64 * 20.0))
            .collect();
        feed(&mut stats, t0, &packets);
        let block = stats.report(1);
        assert_eq!(block.extended_highest_seq, (1 << 16) | 2);
        assert_eq!(block.cumulative_lost, 1);
        assert_eq!(u32::from(block.fraction_lost), 256 / 6);
    }

    #[test]
    fn a_restart_starts_the_statistics_over() {
        let t0 = Instant::now();
        let mut stats = ReceiverStats::new(8000);
        let mut seq = SequenceExtender::new();
        for s in [10u16, 11, 12] {
            stats.on_packet(t0, seq.extend(s).unwrap(), 0);
        }
        // Two sequential packets far away: the extender confirms a restart.
        assert!(seq.extend(40_000).is_none());
        let ext = seq.extend(40_001).unwrap();
        stats.on_packet(t0, ext, 0);
        let block = stats.report(1);
        assert_eq!((block.cumulative_lost, block.extended_highest_seq), (0, 40_001));
    }

    /// A.8 computed independently, in floating point, from the same transit times.
    fn reference_jitter(packets: &[(u32, f64)], clock_rate: f64) -> f64 {
        let mut jitter = 0.0;
        let mut previous: Option<f64> = None;
        for &(ts, ms) in packets {
            let transit = ms / 1000.0 * clock_rate - f64::from(ts);
            if let Some(p) = previous {
                jitter += ((transit - p).abs() - jitter) / 16.0;
            }
            previous = Some(transit);
        }
        jitter
    }

    #[test]
    fn jitter_follows_a8_from_known_transit_times() {
        // 20 ms packets at 8 kHz whose transit alternates 0 / +5 ms / −3 ms / +12 ms …:
        // each |D| is known, the estimate is checked against A.8 in f64.
        let offsets_ms = [0.0, 5.0, -3.0, 12.0, 0.0, 1.0, 7.5, -2.0, 30.0, 0.0, 0.0, 4.0];
        let packets: Vec<(u32, f64)> = (0..200)
            .map(|i| (i as u32 * 160, 1000.0 + f64::from(i) * 20.0 + offsets_ms[i as usize % 12]))
            .collect();
        let t0 = Instant::now();
        let mut stats = ReceiverStats::new(8000);
        let with_seq: Vec<_> =
            packets.iter().enumerate().map(|(i, &(ts, ms))| (i as u16, ts, ms)).collect();
        feed(&mut stats, t0, &with_seq);
        let expected = reference_jitter(&packets, 8000.0);
        let got = f64::from(stats.report(1).jitter);
        assert!((got - expected).abs() <= 1.0, "jitter {got} vs A.8 {expected:.2}");
        assert!(expected > 40.0, "the test exercises a real jitter ({expected:.1})");
    }

    #[test]
    fn constant_transit_has_no_jitter_even_across_the_timestamp_wrap() {
        let t0 = Instant::now();
        let mut stats = ReceiverStats::new(48_000);
        let start = u32::MAX - 960 * 5;
        let packets: Vec<_> = (0..20u16)
            .map(|i| (i, start.wrapping_add(u32::from(i) * 960), f64::from(i) * 20.0))
            .collect();
        feed(&mut stats, t0, &packets);
        assert_eq!(stats.report(1).jitter, 0);
    }

    #[test]
    fn cumulative_loss_clamps_to_24_bits() {
        let t0 = Instant::now();
        let mut stats = ReceiverStats::new(8000);
        // One packet, then (via the extended space directly) one 2^24 packets later in
        // steps the extender would allow.
        stats.on_packet(t0, 1 << 16, 0);
        let mut ext = 1u64 << 16;
        for _ in 0..(0x80_0000 / 2999 + 2) {
            ext += 2999;
            stats.on_packet(t0, ext, 0);
        }
        assert_eq!(stats.report(1).cumulative_lost, 0x7f_ffff);
    }
}
