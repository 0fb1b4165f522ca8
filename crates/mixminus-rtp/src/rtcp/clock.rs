//! NTP time (RFC 3550 §4: 32.32 fixed point, seconds since 1900) derived from a monotonic
//! clock, so sender reports and round-trip times never jump with the wall clock.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds from 1900 (NTP's epoch) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Maps `Instant`s to NTP timestamps through one anchor (an instant and the wall time then).
#[derive(Debug, Clone, Copy)]
pub(crate) struct NtpClock {
    anchor: Instant,
    anchor_ntp: u64,
}

impl NtpClock {
    /// A clock on which `anchor` is the wall time `wall`.
    pub(crate) fn new(anchor: Instant, wall: SystemTime) -> Self {
        let since = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
        Self { anchor, anchor_ntp: to_ntp(since + Duration::from_secs(NTP_UNIX_OFFSET)) }
    }

    /// The NTP timestamp of `at`.
    pub(crate) fn ntp(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.anchor) {
            Some(after) => self.anchor_ntp.wrapping_add(to_ntp(after)),
            None => self.anchor_ntp.wrapping_sub(to_ntp(self.anchor - at)),
        }
    }
}

/// The middle 32 bits of an NTP timestamp (16.16 seconds), as LSR and round trips use.
pub(crate) fn compact(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration in 1/65536 s (DLSR's unit), saturating.
pub(crate) fn to_compact(duration: Duration) -> u32 {
    u32::try_from(duration.as_nanos() * 65_536 / 1_000_000_000).unwrap_or(u32::MAX)
}

/// A duration of 1/65536 s units.
pub(crate) fn from_compact(units: u32) -> Duration {
    Duration::from_nanos(u64::from(units) * 1_000_000_000 / 65_536)
}

fn to_ntp(duration: Duration) -> u64 {
    let frac = (u64::from(duration.subsec_nanos()) << 32) / 1_000_000_000;
    (duration.as_secs() << 32) | frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_counts_from_1900_and_follows_the_monotonic_clock() {
        let anchor = Instant::now();
        // 2020-01-01T00:00:00Z is 3_786_825_600 s after 1900-01-01.
        let wall = UNIX_EPOCH + Duration::from_secs(1_577_836_800);
        let clock = NtpClock::new(anchor, wall);
        assert_eq!(clock.ntp(anchor), 3_786_825_600u64 << 32);
        let later = clock.ntp(anchor + Duration::from_millis(1500));
        assert_eq!(later, (3_786_825_601u64 << 32) | (1 << 31));
        assert_eq!(compact(later), ((3_786_825_601u64 & 0xffff) << 16) as u32 | 0x8000);
        let earlier = clock.ntp(anchor - Duration::from_millis(500));
        assert_eq!(earlier, (3_786_825_599u64 << 32) | (1 << 31));
    }

    #[test]
    fn compact_durations_round_trip() {
        assert_eq!(to_compact(Duration::from_millis(250)), 16_384);
        assert_eq!(from_compact(16_384), Duration::from_millis(250));
        assert_eq!(to_compact(Duration::from_secs(1 << 20)), u32::MAX);
    }
}
