//! 16-bit RTP sequence numbers extended to 64 bits (RFC 3550 appendix A.1).
//!
//! We never order packets by `rtp_rs::Seq`: its comparison is not transitive across a
//! wrap, so it cannot key a sorted map. Extended numbers can.

/// A jump larger than this (forward) or older than `MAX_MISORDER` is a possible restart.
const MAX_DROPOUT: u64 = 3000;
const MAX_MISORDER: u64 = 100;

/// Extends one source's sequence numbers. Make a new one when the SSRC changes.
#[derive(Debug, Clone, Default)]
pub struct SequenceExtender {
    highest: Option<u64>,
    /// A far jump waiting for confirmation: the next packet must follow it.
    probation: Option<u16>,
}

impl SequenceExtender {
    /// A fresh extender.
    pub fn new() -> Self {
        Self::default()
    }

    /// The extended number of `seq`, or `None` when it is a far jump not yet confirmed by
    /// the next packet (after which the stream resynchronises there).
    pub fn extend(&mut self, seq: u16) -> Option<u64> {
        let Some(highest) = self.highest else {
            // Start high enough above zero that old packets stay representable.
            let ext = (1u64 << 16) | seq as u64;
            self.highest = Some(ext);
            return Some(ext);
        };
        // The candidate nearest to `highest` with these low 16 bits.
        let base = highest & !0xffff;
        let candidates = [
            base.wrapping_sub(1 << 16) | seq as u64,
            base | seq as u64,
            (base + (1 << 16)) | seq as u64,
        ];
        let ext = candidates
            .into_iter()
            .filter(|&c| c >= 1 << 16 || base == 0)
            .min_by_key(|&c| c.abs_diff(highest))
            .unwrap_or(base | seq as u64);
        let ahead = ext > highest && ext - highest <= MAX_DROPOUT;
        let behind = ext <= highest && highest - ext <= MAX_MISORDER;
        if ahead {
            self.probation = None;
            self.highest = Some(ext);
            Some(ext)
        } else if behind {
            Some(ext)
        } else if self.probation == Some(seq.wrapping_sub(1)) {
            // Two sequential packets after a jump: the sender restarted; follow it.
            self.probation = None;
            let ext = (((highest >> 16) + 2) << 16) | seq as u64;
            self.highest = Some(ext);
            Some(ext)
        } else {
            self.probation = Some(seq);
            None
        }
    }

    /// The highest extended number seen.
    pub fn highest(&self) -> Option<u64> {
        self.highest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_reorders_and_resyncs() {
        let mut s = SequenceExtender::new();
        let a = s.extend(65_534).unwrap();
        assert_eq!(s.extend(65_535), Some(a + 1));
        assert_eq!(s.extend(1), Some(a + 3));
        assert_eq!(s.extend(0), Some(a + 2), "reordered across the wrap");
        assert_eq!(s.extend(1), Some(a + 3), "duplicate maps to the same number");
        // A far jump needs a second sequential packet.
        assert_eq!(s.extend(30_000), None);
        let b = s.extend(30_001).unwrap();
        assert!(b > a + 3);
        assert_eq!(s.extend(30_002), Some(b + 1));
    }

    proptest::proptest! {
        #[test]
        fn in_order_with_small_gaps_is_monotonic(start: u16, gaps in proptest::collection::vec(1u16..50, 1..2000)) {
            let mut s = SequenceExtender::new();
            let mut seq = start;
            let mut last = s.extend(seq).unwrap();
            for g in gaps {
                seq = seq.wrapping_add(g);
                let ext = s.extend(seq).unwrap();
                proptest::prop_assert_eq!(ext, last + g as u64);
                last = ext;
            }
        }
    }
}
