//! What the peer reports about the stream we send it: the reception report block about our
//! SSRC in its SR or RR, and the round-trip time it gives (RFC 3550 §6.4.1 and A.8).

use std::time::Duration;

use super::clock::from_compact;
use super::receiver_stats::ReportBlock;

/// The peer's latest report about the stream we send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PeerReport {
    /// The block as received.
    pub block: ReportBlock,
    /// Round-trip time: arrival − LSR − DLSR (RFC 3550 §6.4.1); `None` while the peer has
    /// not received a sender report from us (LSR 0).
    pub round_trip: Option<Duration>,
    /// The block's interarrival jitter as a duration (at our stream's RTP clock rate).
    pub jitter: Duration,
}

impl PeerReport {
    /// Reads `block`, which arrived at `arrival` (compact NTP time on our clock, the clock
    /// our sender reports carry, so LSR echoes it), for a stream at `clock_rate` Hz.
    pub(crate) fn new(block: ReportBlock, arrival: u32, clock_rate: u32) -> Self {
        Self {
            block,
            round_trip: round_trip(arrival, block.last_sr, block.delay_since_last_sr),
            jitter: rtp_units(block.jitter, clock_rate),
        }
    }

    /// The fraction of our packets the peer lost in its last interval, 0..1.
    pub fn fraction_lost(&self) -> f64 {
        f64::from(self.block.fraction_lost) / 256.0
    }
}

/// A.8's round trip in 1/65536 s arithmetic modulo 2^32. A peer that overstates its delay
/// would make it negative: that is reported as zero.
pub(crate) fn round_trip(arrival: u32, last_sr: u32, delay: u32) -> Option<Duration> {
    if last_sr == 0 {
        return None;
    }
    let rtt = arrival.wrapping_sub(last_sr).wrapping_sub(delay);
    Some(if (rtt as i32) < 0 { Duration::ZERO } else { from_compact(rtt) })
}

/// `units` of an RTP clock at `clock_rate` Hz, as a duration.
pub(crate) fn rtp_units(units: u32, clock_rate: u32) -> Duration {
    Duration::from_nanos(u64::from(units) * 1_000_000_000 / u64::from(clock_rate.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_arrival_minus_lsr_minus_dlsr() {
        // RFC 3550 §6.4.1's example: LSR 0xb705:2000 (46853.125 s), DLSR 0x0005:4000
        // (5.25 s), arrival 0xb710:8000 (46864.5 s): RTT 6.125 s.
        let rtt = round_trip(0xb710_8000, 0xb705_2000, 0x0005_4000);
        assert_eq!(rtt, Some(Duration::from_millis(6125)));
        assert_eq!(round_trip(0xb710_8000, 0, 5), None);
        // Across the 16.16 wrap.
        assert_eq!(round_trip(0x0000_1000, 0xffff_f000, 0x1000), Some(from_compact(0x1000)));
        assert_eq!(round_trip(100, 90, 20), Some(Duration::ZERO));
    }

    #[test]
    fn jitter_in_time() {
        assert_eq!(rtp_units(480, 48_000), Duration::from_millis(10));
        assert_eq!(rtp_units(80, 8_000), Duration::from_millis(10));
    }
}
