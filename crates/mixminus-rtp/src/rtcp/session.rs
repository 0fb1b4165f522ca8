//! One leg's RTCP state, sans-IO: what we measure of the peer's stream, what we sent, the
//! peer's last sender report (for LSR/DLSR), what the peer reports about us, and when the
//! next compound report is due.
//!
//! Every input carries its time; [`RtcpSession::poll_report`] hands out a compound packet
//! (SR or RR first, then SDES with our CNAME: RFC 3550 §6.1) when one is due.
//!
//! Decisions where the RFC leaves room:
//! - The interval is the configured one times a uniform factor in 0.5..1.5 (§6.3.1),
//!   without §6.3.1's e − 3/2 compensation or §6.3.3's reconsideration: a leg is a
//!   two-party session whose reports are a few hundred bytes every few seconds. The first
//!   report comes after half an interval (randomised the same way), as §6.2 allows.
//! - We are a sender (SR, else RR) when we sent RTP in the current or the previous
//!   interval (§6.3.8's two-interval rule).
//! - A report carries a block about the peer only if its RTP arrived since the previous
//!   report (§6.4).
//! - The CNAME is random per leg (RFC 7022: 96 random bits, here as 24 hex digits): each
//!   leg is its own RTP session with its own peer, and nothing about the host leaks.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rtcp::goodbye::Goodbye;
use rtcp::packet::Packet;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;
use rtcp::source_description::{
    SdesType, SourceDescription, SourceDescriptionChunk, SourceDescriptionItem,
};

use super::clock::{compact, to_compact, NtpClock};
use super::peer::{rtp_units, PeerReport};
use super::receiver_stats::{ReceiverStats, ReportBlock};
use super::RtcpSummary;

/// RTCP counters and the latest reports of one leg, for snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RtcpStats {
    /// The SSRC we send the leg's stream as.
    pub ssrc: u32,
    /// The CNAME our reports carry.
    pub cname: Bytes,
    /// The RTP clock rate of the leg's streams (both ways), Hz.
    pub clock_rate: u32,
    /// Compound reports sent.
    pub reports_sent: u64,
    /// Compound reports received from the peer (and parsed).
    pub reports_received: u64,
    /// Our last reception report block about the peer's stream, as sent.
    pub inbound: Option<ReportBlock>,
    /// The peer's last report about the stream we send it.
    pub remote_inbound: Option<PeerReport>,
}

impl RtcpStats {
    /// The jitter of our last block about the peer's stream, as a duration.
    pub fn inbound_jitter(&self) -> Option<Duration> {
        self.inbound.map(|b| rtp_units(b.jitter, self.clock_rate))
    }
}

/// One leg's RTCP state.
#[derive(Debug, Clone)]
pub(crate) struct RtcpSession {
    ssrc: u32,
    clock: NtpClock,
    interval: Duration,
    rng: SmallRng,
    next_report: Option<Instant>,
    receiver: ReceiverStats,
    /// RTP packets and payload octets sent (RFC 3550 §6.4.1: headers and padding excluded).
    packets_sent: u32,
    octets_sent: u32,
    /// `packets_sent` when the last and the one-before-last reports were built.
    sent_at_reports: [u32; 2],
    /// The peer's last sender report: its NTP time's middle 32 bits, and when it came.
    last_sr: Option<(u32, Instant)>,
    stats: RtcpStats,
    /// A peer report arrived since [`take_peer_report`](Self::take_peer_report).
    fresh_peer_report: bool,
    /// A block about the peer went out since [`take_inbound_report`](Self::take_inbound_report).
    fresh_inbound_report: bool,
}

impl RtcpSession {
    /// A session sending as `ssrc` with `cname`, streams at `clock_rate` Hz, reports every
    /// `interval` (randomised), interval randomness from `seed`.
    pub(crate) fn new(
        ssrc: u32,
        cname: Bytes,
        clock_rate: u32,
        clock: NtpClock,
        interval: Duration,
        seed: u64,
    ) -> Self {
        Self {
            ssrc,
            clock,
            interval,
            rng: SmallRng::seed_from_u64(seed),
            next_report: None,
            receiver: ReceiverStats::new(clock_rate),
            packets_sent: 0,
            octets_sent: 0,
            sent_at_reports: [0; 2],
            last_sr: None,
            stats: RtcpStats { ssrc, cname, clock_rate, ..RtcpStats::default() },
            fresh_peer_report: false,
            fresh_inbound_report: false,
        }
    }

    /// A random CNAME (RFC 7022 §4.2: 96 random bits).
    pub(crate) fn random_cname() -> Bytes {
        let bits: [u8; 12] = rand::random();
        Bytes::from(bits.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    /// An RTP packet of the peer's arrived at `arrival` (accepted, numbered `ext_seq`).
    pub(crate) fn on_rtp_received(&mut self, arrival: Instant, ext_seq: u64, rtp_timestamp: u32) {
        self.receiver.on_packet(arrival, ext_seq, rtp_timestamp);
    }

    /// The peer's stream restarted under a new SSRC: its statistics start over.
    pub(crate) fn on_new_source(&mut self) {
        self.receiver.reset();
        self.last_sr = None;
    }

    /// We sent an RTP packet carrying `payload_len` payload octets.
    pub(crate) fn on_rtp_sent(&mut self, payload_len: usize) {
        self.packets_sent = self.packets_sent.wrapping_add(1);
        self.octets_sent = self.octets_sent.wrapping_add(payload_len as u32);
    }

    /// A compound RTCP packet from the peer (whose RTP comes as `peer_ssrc`) arrived at
    /// `arrival`. Only its sender report and the block about our SSRC are kept.
    pub(crate) fn on_rtcp(
        &mut self,
        arrival: Instant,
        summary: &RtcpSummary,
        peer_ssrc: Option<u32>,
    ) {
        self.stats.reports_received += 1;
        if let Some(sr) = summary.sender_report.filter(|sr| Some(sr.ssrc) == peer_ssrc) {
            self.last_sr = Some((compact(sr.ntp_time), arrival));
        }
        if let Some(block) = summary.reports.iter().rev().find(|b| b.ssrc == self.ssrc) {
            let now = compact(self.clock.ntp(arrival));
            self.stats.remote_inbound = Some(PeerReport::new(*block, now, self.stats.clock_rate));
            self.fresh_peer_report = true;
        }
    }

    /// The peer's report about us, once per report received.
    pub(crate) fn take_peer_report(&mut self) -> Option<PeerReport> {
        std::mem::take(&mut self.fresh_peer_report).then_some(self.stats.remote_inbound)?
    }

    /// Our block about the peer, once per report that carried one.
    pub(crate) fn take_inbound_report(&mut self) -> Option<ReportBlock> {
        std::mem::take(&mut self.fresh_inbound_report).then_some(self.stats.inbound)?
    }

    /// The compound report to send now, if one is due. `rtp_time` is our stream's RTP
    /// timestamp at `now`; `peer_ssrc` the source the peer's RTP comes as. Call it only when
    /// the report can be sent (a destination is known): it starts a new interval.
    pub(crate) fn poll_report(
        &mut self,
        now: Instant,
        rtp_time: u32,
        peer_ssrc: Option<u32>,
    ) -> Option<Bytes> {
        let due = *self.next_report.get_or_insert_with(|| {
            let first = self.interval / 2;
            now + first.mul_f64(self.rng.random_range(0.5..1.5))
        });
        if now < due {
            return None;
        }
        self.next_report = Some(now + self.interval.mul_f64(self.rng.random_range(0.5..1.5)));
        self.compound(now, rtp_time, peer_ssrc, None)
    }

    /// A final compound report ending with a BYE for our SSRC (RFC 3550 §6.6).
    pub(crate) fn bye(
        &mut self,
        now: Instant,
        rtp_time: u32,
        peer_ssrc: Option<u32>,
        reason: &'static [u8],
    ) -> Option<Bytes> {
        self.compound(now, rtp_time, peer_ssrc, Some(reason))
    }

    /// Counters and the latest reports.
    pub(crate) fn stats(&self) -> &RtcpStats {
        &self.stats
    }

    fn compound(
        &mut self,
        now: Instant,
        rtp_time: u32,
        peer_ssrc: Option<u32>,
        bye: Option<&'static [u8]>,
    ) -> Option<Bytes> {
        let reports: Vec<ReceptionReport> = peer_ssrc
            .filter(|_| self.receiver.heard_since_report())
            .map(|ssrc| {
                let mut block = self.receiver.report(ssrc);
                if let Some((lsr, at)) = self.last_sr {
                    block.last_sr = lsr;
                    block.delay_since_last_sr = to_compact(now.saturating_duration_since(at));
                }
                self.stats.inbound = Some(block);
                self.fresh_inbound_report = true;
                reception_report(&block)
            })
            .into_iter()
            .collect();
        let we_sent = self.packets_sent != self.sent_at_reports[1];
        self.sent_at_reports = [self.packets_sent, self.sent_at_reports[0]];
        let first: Box<dyn Packet + Send + Sync> = if we_sent {
            Box::new(SenderReport {
                ssrc: self.ssrc,
                ntp_time: self.clock.ntp(now),
                rtp_time,
                packet_count: self.packets_sent,
                octet_count: self.octets_sent,
                reports,
                profile_extensions: Bytes::new(),
            })
        } else {
            Box::new(ReceiverReport { ssrc: self.ssrc, reports, profile_extensions: Bytes::new() })
        };
        let sdes = SourceDescription {
            chunks: vec![SourceDescriptionChunk {
                source: self.ssrc,
                items: vec![SourceDescriptionItem {
                    sdes_type: SdesType::SdesCname,
                    text: self.stats.cname.clone(),
                }],
            }],
        };
        let mut packets = vec![first, Box::new(sdes)];
        if let Some(reason) = bye {
            packets.push(Box::new(Goodbye {
                sources: vec![self.ssrc],
                reason: Bytes::from_static(reason),
            }));
        }
        // Our own packets, within the crate's limits (one block, a 24-digit CNAME): marshal
        // cannot fail; if it ever did, that report is skipped rather than sent malformed.
        let bytes = rtcp::packet::marshal(&packets).ok()?;
        self.stats.reports_sent += 1;
        Some(bytes)
    }
}

fn reception_report(block: &ReportBlock) -> ReceptionReport {
    ReceptionReport {
        ssrc: block.ssrc,
        fraction_lost: block.fraction_lost,
        // 24-bit two's complement on the wire.
        total_lost: (block.cumulative_lost as u32) & 0xff_ffff,
        last_sequence_number: block.extended_highest_seq,
        jitter: block.jitter,
        last_sender_report: block.last_sr,
        delay: block.delay_since_last_sr,
    }
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use rtcp::packet::unmarshal;

    use super::*;
    use crate::rtcp::parse_rtcp;
    use crate::SequenceExtender;

    const US: u32 = 0x1111_1111;
    const PEER: u32 = 0x2222_2222;

    fn session(t0: Instant) -> RtcpSession {
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let clock = NtpClock::new(t0, wall);
        RtcpSession::new(US, Bytes::from_static(b"cname-1"), 8000, clock, Duration::from_secs(5), 7)
    }

    /// Polls every 20 ms from `from` until a report comes; returns it and when.
    fn next(s: &mut RtcpSession, from: Instant, rtp: u32) -> (Bytes, Instant) {
        let mut now = from;
        loop {
            if let Some(bytes) = s.poll_report(now, rtp, Some(PEER)) {
                return (bytes, now);
            }
            now += Duration::from_millis(20);
            assert!(now < from + Duration::from_secs(60), "no report");
        }
    }

    /// The compound's packets, read back with the `rtcp` crate (all of them, SDES
    /// included): an independent parse of what goes on the wire.
    fn unpack(bytes: &Bytes) -> Vec<Box<dyn Packet + Send + Sync>> {
        unmarshal(&mut bytes.clone()).expect("our compound parses")
    }

    fn cname_of(packet: &dyn Packet) -> (u32, Bytes) {
        let sdes = packet.as_any().downcast_ref::<SourceDescription>().expect("SDES second");
        let chunk = &sdes.chunks[0];
        let item = &chunk.items[0];
        assert_eq!(item.sdes_type, SdesType::SdesCname);
        (chunk.source, item.text.clone())
    }

    #[test]
    fn sender_report_fields_are_rfc_3550s() {
        let t0 = Instant::now();
        let mut s = session(t0);
        // We sent 50 packets of 160 payload octets; the peer sent 1..=20 with 5 and 9 lost,
        // at constant transit; its SR arrived 1.5 s before our report.
        for _ in 0..50 {
            s.on_rtp_sent(160);
        }
        let mut seq = SequenceExtender::new();
        for n in (1u16..=20).filter(|n| ![5, 9].contains(n)) {
            let arrival = t0 + Duration::from_millis(u64::from(n) * 20);
            s.on_rtp_received(arrival, seq.extend(n).unwrap(), u32::from(n) * 160);
        }
        let peer_ntp = 0xdead_beef_1234_5678u64;
        let peer_sr = SenderReport { ssrc: PEER, ntp_time: peer_ntp, ..Default::default() };
        let datagram = rtcp::packet::marshal(&[Box::new(peer_sr)]).unwrap();
        let sr_at = t0 + Duration::from_millis(500);
        s.on_rtcp(sr_at, &parse_rtcp(&datagram).unwrap(), Some(PEER));

        let (bytes, at) = next(&mut s, t0 + Duration::from_secs(2), 123_456);
        let packets = unpack(&bytes);
        assert_eq!(packets.len(), 2, "SR then SDES");
        let sr = packets[0].as_any().downcast_ref::<SenderReport>().expect("SR first");
        assert_eq!(
            (sr.ssrc, sr.packet_count, sr.octet_count, sr.rtp_time),
            (US, 50, 8000, 123_456)
        );
        let unix = (at - t0) + Duration::from_secs(1_700_000_000);
        let ntp_secs = unix.as_secs() + 2_208_988_800;
        assert_eq!(sr.ntp_time >> 32, ntp_secs);
        let frac_ns = ((sr.ntp_time & 0xffff_ffff) * 1_000_000_000) >> 32;
        assert!(frac_ns.abs_diff(u64::from(unix.subsec_nanos())) <= 1);
        assert_eq!(sr.reports.len(), 1);
        let block = &sr.reports[0];
        assert_eq!(block.ssrc, PEER);
        assert_eq!(block.fraction_lost, (2 * 256 / 20) as u8);
        assert_eq!(block.total_lost, 2);
        assert_eq!(block.last_sequence_number, 20);
        assert_eq!(block.jitter, 0);
        assert_eq!(block.last_sender_report, 0xbeef_1234, "LSR: the middle 32 bits");
        let dlsr = Duration::from_secs_f64(f64::from(block.delay) / 65536.0);
        assert!(dlsr.abs_diff(at - sr_at) < Duration::from_micros(20), "DLSR {dlsr:?}");
        assert_eq!(cname_of(&*packets[1]), (US, Bytes::from_static(b"cname-1")));
    }

    #[test]
    fn receiver_report_when_not_sending_and_no_block_when_nothing_heard() {
        let t0 = Instant::now();
        let mut s = session(t0);
        // Nothing sent, nothing heard: an RR without blocks, still with SDES.
        let (bytes, at) = next(&mut s, t0, 0);
        let packets = unpack(&bytes);
        let rr = packets[0].as_any().downcast_ref::<ReceiverReport>().expect("RR first");
        assert_eq!((rr.ssrc, rr.reports.len()), (US, 0));
        assert_eq!(cname_of(&*packets[1]).0, US);
        // Sent in this interval: SR; in the next: still SR (two-interval rule); then RR.
        s.on_rtp_sent(10);
        let (bytes, at) = next(&mut s, at + Duration::from_millis(20), 0);
        assert!(unpack(&bytes)[0].as_any().is::<SenderReport>());
        let (bytes, at) = next(&mut s, at + Duration::from_millis(20), 0);
        assert!(unpack(&bytes)[0].as_any().is::<SenderReport>());
        let (bytes, _) = next(&mut s, at + Duration::from_millis(20), 0);
        assert!(unpack(&bytes)[0].as_any().is::<ReceiverReport>());
        assert_eq!(s.stats().reports_sent, 4);
    }

    #[test]
    fn intervals_are_randomised_between_half_and_one_and_a_half() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let (_, first) = next(&mut s, t0, 0);
        let first = first - t0;
        assert!((1250..=3750).contains(&first.as_millis()), "first after {first:?}");
        let mut last = t0 + first;
        let mut gaps = Vec::new();
        for _ in 0..200 {
            let (_, at) = next(&mut s, last + Duration::from_millis(1), 0);
            gaps.push((at - last).as_secs_f64());
            last = at;
        }
        let (min, max) = gaps.iter().fold((f64::MAX, 0.0f64), |(a, b), &g| (a.min(g), b.max(g)));
        let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
        assert!(min >= 2.5 && max <= 7.5 + 0.021, "gaps {min:.2}..{max:.2}");
        assert!(max - min > 3.0, "spread over the range, not fixed: {min:.2}..{max:.2}");
        assert!((mean - 5.0).abs() < 0.3, "mean {mean:.2} s");
    }

    #[test]
    fn peer_reports_about_us_give_loss_jitter_and_round_trip() {
        let t0 = Instant::now();
        let mut s = session(t0);
        s.on_rtp_sent(160);
        let (bytes, sent_at) = next(&mut s, t0, 0);
        let our_sr = unpack(&bytes)[0].as_any().downcast_ref::<SenderReport>().unwrap().clone();
        let lsr = (our_sr.ntp_time >> 16) as u32;
        // The peer holds our SR 250 ms, its report takes 40 ms each way: RTT 80 ms.
        let block = ReceptionReport {
            ssrc: US,
            fraction_lost: 64,
            total_lost: 0xff_fffe, // −2 in 24 bits (duplicates)
            last_sequence_number: 70_000,
            jitter: 160,
            last_sender_report: lsr,
            delay: 16_384,
        };
        let other = ReceptionReport { ssrc: 99, fraction_lost: 200, ..Default::default() };
        let rr = ReceiverReport { ssrc: PEER, reports: vec![other, block], ..Default::default() };
        let datagram = rtcp::packet::marshal(&[Box::new(rr)]).unwrap();
        let arrival = sent_at + Duration::from_millis(40 + 250 + 40);
        s.on_rtcp(arrival, &parse_rtcp(&datagram).unwrap(), Some(PEER));
        let report = s.take_peer_report().expect("a report about us");
        assert!(s.take_peer_report().is_none(), "taken once");
        assert_eq!(report.block.cumulative_lost, -2);
        assert_eq!(report.block.extended_highest_seq, 70_000);
        assert_eq!(report.fraction_lost(), 0.25);
        assert_eq!(report.jitter, Duration::from_millis(20));
        let rtt = report.round_trip.expect("LSR given");
        assert!(rtt.abs_diff(Duration::from_millis(80)) < Duration::from_micros(50), "{rtt:?}");
        assert_eq!(s.stats().reports_received, 1);
        assert_eq!(s.stats().remote_inbound, Some(report));
    }

    #[test]
    fn a_sender_report_from_a_stranger_ssrc_is_not_echoed() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let sr = SenderReport { ssrc: 0x5555, ntp_time: u64::MAX, ..Default::default() };
        let datagram = rtcp::packet::marshal(&[Box::new(sr)]).unwrap();
        s.on_rtcp(t0, &parse_rtcp(&datagram).unwrap(), Some(PEER));
        s.on_rtp_received(t0, 1 << 16, 0);
        let (bytes, _) = next(&mut s, t0, 0);
        let packets = unpack(&bytes);
        let rr = packets[0].as_any().downcast_ref::<ReceiverReport>().unwrap();
        assert_eq!(rr.reports[0].last_sender_report, 0);
        assert_eq!(rr.reports[0].delay, 0);
    }

    #[test]
    fn bye_is_the_last_packet_of_a_compound() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let bytes = s.bye(t0, 0, None, b"bye").unwrap();
        let packets = unpack(&bytes);
        assert_eq!(packets.len(), 3);
        assert!(packets[0].as_any().is::<ReceiverReport>());
        assert_eq!(cname_of(&*packets[1]).0, US);
        let bye = packets[2].as_any().downcast_ref::<Goodbye>().unwrap();
        assert_eq!(bye.sources, vec![US]);
    }

    #[test]
    fn cnames_are_random_and_rfc_7022_sized() {
        let (a, b) = (RtcpSession::random_cname(), RtcpSession::random_cname());
        assert_ne!(a, b);
        assert_eq!(a.len(), 24);
    }
}
