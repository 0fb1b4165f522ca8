//! 16-bit RTP sequence numbers extended to 64 bits (RFC 3550 appendix A.1).
//!
//! We never order packets by `rtp_rs::Seq`: its comparison is not transitive across a
//! wrap, so it cannot key a sorted map or a ring. Extended numbers can.
//!
//! Decisions beyond A.1, which a jitter buffer downstream relies on:
//! - The first packet is accepted at once (no `MIN_SEQUENTIAL` probation): a conference
//!   wants the first frame, and a bogus first packet is corrected by the resync rule.
//! - Numbering starts one cycle above zero, so a packet reordered from *before* the first
//!   one (even across a wrap) still has a number.
//! - Extended numbers never go backwards across a resync or an SSRC change: the new
//!   sequence space starts two cycles above the old maximum, so downstream sees one far
//!   forward jump and restarts there.

/// A forward jump of at least this is a possible restart, not a gap (A.1 `MAX_DROPOUT`).
const MAX_DROPOUT: u16 = 3000;
/// A packet at most this far behind the maximum is reordered or duplicated (A.1
/// `MAX_MISORDER`); further behind is a possible restart.
const MAX_MISORDER: u16 = 100;
const CYCLE: u64 = 1 << 16;

/// Extends one stream's 16-bit sequence numbers to a monotonic 64-bit space.
///
/// Feed it every packet's sequence number with [`extend`](Self::extend), or with
/// [`extend_ssrc`](Self::extend_ssrc) to have an SSRC change start a new sequence space.
#[derive(Debug, Clone, Default)]
pub struct SequenceExtender {
    /// Highest extended number accepted.
    max: Option<u64>,
    /// After a far jump, the sequence number that confirms a restart (A.1 `bad_seq`).
    bad_seq: Option<u16>,
    ssrc: Option<u32>,
    resyncs: u64,
}

impl SequenceExtender {
    /// A fresh extender.
    pub fn new() -> Self {
        Self::default()
    }

    /// The extended number of `seq`.
    ///
    /// Returns a number at most [`highest`](Self::highest) for a reordered or duplicate
    /// packet (a duplicate gets the same number as its original), and a new maximum for
    /// one ahead by less than 3000. A packet further away returns `None` unless it directly
    /// follows the previous far packet: two sequential packets mean the sender restarted,
    /// and numbering resumes there, above everything handed out before.
    pub fn extend(&mut self, seq: u16) -> Option<u64> {
        let Some(max) = self.max else {
            let ext = CYCLE | u64::from(seq);
            self.max = Some(ext);
            return Some(ext);
        };
        let delta = seq.wrapping_sub(max as u16);
        if delta < MAX_DROPOUT {
            // In order, possibly with a gap (or a duplicate of the newest when 0).
            let ext = max + u64::from(delta);
            self.max = Some(ext);
            self.bad_seq = None;
            Some(ext)
        } else if delta > u16::MAX - MAX_MISORDER {
            // Reordered or duplicated, just behind the maximum. `max` starts one cycle up,
            // so this cannot underflow.
            Some(max - u64::from(delta.wrapping_neg()))
        } else if self.bad_seq == Some(seq) {
            self.restart(seq)
        } else {
            self.bad_seq = Some(seq.wrapping_add(1));
            None
        }
    }

    /// Like [`extend`](Self::extend), but a change of `ssrc` starts a new sequence space
    /// at once (the first packet of the new source is accepted), above every number
    /// handed out for the old one.
    pub fn extend_ssrc(&mut self, ssrc: u32, seq: u16) -> Option<u64> {
        if self.ssrc.replace(ssrc).is_some_and(|old| old != ssrc) && self.max.is_some() {
            return self.restart(seq);
        }
        self.extend(seq)
    }

    /// The highest extended number handed out.
    pub fn highest(&self) -> Option<u64> {
        self.max
    }

    /// The SSRC last given to [`extend_ssrc`](Self::extend_ssrc).
    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// How many times the sequence space restarted (confirmed far jumps and SSRC changes).
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    fn restart(&mut self, seq: u16) -> Option<u64> {
        let max = self.max.unwrap_or(0);
        let ext = ((max / CYCLE + 2) * CYCLE) | u64::from(seq);
        self.max = Some(ext);
        self.bad_seq = None;
        self.resyncs += 1;
        Some(ext)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps_reorders_and_resyncs() {
        let mut s = SequenceExtender::new();
        let a = s.extend(65_534).unwrap();
        assert_eq!(s.extend(65_535), Some(a + 1));
        assert_eq!(s.extend(1), Some(a + 3));
        assert_eq!(s.extend(0), Some(a + 2), "reordered across the wrap");
        assert_eq!(s.extend(1), Some(a + 3), "duplicate maps to the same number");
        assert_eq!(s.highest(), Some(a + 3));
        // A far jump needs a second sequential packet.
        assert_eq!(s.extend(30_000), None);
        let b = s.extend(30_001).unwrap();
        assert!(b > a + 3);
        assert_eq!(b & 0xffff, 30_001);
        assert_eq!(s.extend(30_002), Some(b + 1));
        assert_eq!(s.resyncs(), 1);
    }

    #[test]
    fn a_single_stray_packet_does_not_move_the_stream() {
        let mut s = SequenceExtender::new();
        let a = s.extend(100).unwrap();
        assert_eq!(s.extend(40_000), None);
        assert_eq!(s.extend(101), Some(a + 1), "the stream carries on");
        assert_eq!(s.extend(40_001), None, "not sequential with the stray: no resync");
        assert_eq!(s.resyncs(), 0);
    }

    #[test]
    fn a_packet_from_before_the_first_one_has_a_number_across_the_wrap() {
        let mut s = SequenceExtender::new();
        let a = s.extend(2).unwrap();
        assert_eq!(s.extend(65_535), Some(a - 3));
        assert_eq!(s.extend(0), Some(a - 2));
    }

    #[test]
    fn far_behind_is_a_possible_restart_not_a_reorder() {
        let mut s = SequenceExtender::new();
        let a = s.extend(5_000).unwrap();
        assert_eq!(s.extend(4_899), None, "101 behind");
        assert_eq!(s.extend(4_900), Some(a - 100), "100 behind is reordered");
        assert_eq!(s.extend(8_000), None, "3000 ahead");
        assert_eq!(s.extend(7_999), Some(a + 2_999), "2999 ahead is a gap");
    }

    #[test]
    fn an_ssrc_change_restarts_above_the_old_numbers() {
        let mut s = SequenceExtender::new();
        let a = s.extend_ssrc(1, 10).unwrap();
        assert_eq!(s.extend_ssrc(1, 11), Some(a + 1));
        let b = s.extend_ssrc(2, 50_000).expect("a new source is accepted at once");
        assert!(b > a + 1);
        assert_eq!(s.extend_ssrc(2, 50_001), Some(b + 1));
        assert_eq!((s.ssrc(), s.resyncs()), (Some(2), 1));
    }

    /// A sender's true sequence numbers (small gaps), delivered with local reordering and
    /// duplicates.
    fn network() -> impl Strategy<Value = (u16, Vec<u64>)> {
        (any::<u16>(), prop::collection::vec((1u64..=3, 0usize..4, any::<bool>()), 1..3000))
            .prop_map(|(start, steps)| {
                let mut truth = Vec::with_capacity(steps.len());
                let mut t = 1_000u64;
                for &(gap, _, _) in &steps {
                    truth.push(t);
                    t += gap;
                }
                // Reorder within blocks of four (a bounded displacement), then duplicate some.
                for (block, &(_, rotate, _)) in truth.chunks_mut(4).zip(steps.iter().step_by(4)) {
                    let by = rotate % block.len();
                    block.rotate_left(by);
                }
                let mut delivered = Vec::with_capacity(truth.len() * 2);
                for (&t, &(_, _, dup)) in truth.iter().zip(&steps) {
                    delivered.push(t);
                    if dup {
                        delivered.push(t);
                    }
                }
                (start, delivered)
            })
    }

    proptest! {
        #[test]
        fn in_order_with_small_gaps_is_monotonic(start: u16, gaps in prop::collection::vec(1u16..50, 1..2000)) {
            let mut s = SequenceExtender::new();
            let mut seq = start;
            let mut last = s.extend(seq).unwrap();
            for g in gaps {
                seq = seq.wrapping_add(g);
                let ext = s.extend(seq).unwrap();
                prop_assert_eq!(ext, last + g as u64);
                last = ext;
            }
        }

        #[test]
        fn reordered_and_duplicated_streams_recover_true_distances((start, delivered) in network()) {
            let mut s = SequenceExtender::new();
            let wire = |t: u64| start.wrapping_add(t as u16);
            let first = delivered[0];
            let base = s.extend(wire(first)).unwrap();
            for &t in &delivered[1..] {
                let ext = s.extend(wire(t)).unwrap();
                prop_assert_eq!(ext as i128 - base as i128, t as i128 - first as i128);
            }
        }

        #[test]
        fn any_input_keeps_the_low_bits_and_never_goes_backwards(
            input in prop::collection::vec((any::<u16>(), 0u32..3), 0..2000)
        ) {
            let mut s = SequenceExtender::new();
            let mut highest = 0;
            for (seq, ssrc) in input {
                if let Some(ext) = s.extend_ssrc(ssrc, seq) {
                    prop_assert_eq!(ext as u16, seq);
                    prop_assert!(ext <= s.highest().unwrap());
                }
                let now = s.highest().unwrap_or(0);
                prop_assert!(now >= highest);
                highest = now;
            }
        }
    }
}
