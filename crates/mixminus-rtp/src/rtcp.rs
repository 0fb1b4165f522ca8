//! RTCP through the `rtcp` crate: compound reports out (SR or RR, then SDES CNAME), reports
//! and BYE in.
//!
//! The state is sans-IO and lives in one file per concept: [`receiver_stats`] (what we
//! measure of the peer's stream: loss, extended highest sequence, jitter), [`peer`] (what
//! the peer reports about ours, and the round trip), [`clock`] (NTP time from a monotonic
//! clock) and [`session`] (one leg's state and the report schedule). This file parses
//! datagrams and is the glue the runtime calls.

mod clock;
mod peer;
mod receiver_stats;
mod session;

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use rtcp::goodbye::Goodbye;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;

pub(crate) use clock::NtpClock;
pub use peer::PeerReport;
pub use receiver_stats::ReportBlock;
pub(crate) use session::RtcpSession;
pub use session::RtcpStats;

use crate::leg::Leg;
use crate::stats::DropReason;

/// What we take from a compound RTCP packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RtcpSummary {
    /// Sources that said BYE.
    pub bye: Vec<u32>,
    /// The sender information of a sender report, if one was present.
    pub sender_report: Option<SenderInfo>,
    /// The sender of a receiver report, if one was present.
    pub receiver_report_ssrc: Option<u32>,
    /// Reception report blocks (of SRs and RRs), at most 32.
    pub reports: Vec<ReportBlock>,
}

/// The sender information of a sender report (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SenderInfo {
    /// The sender.
    pub ssrc: u32,
    /// Its wall-clock time, NTP 32.32.
    pub ntp_time: u64,
    /// The RTP timestamp of the same instant.
    pub rtp_time: u32,
    /// RTP packets it sent.
    pub packet_count: u32,
    /// RTP payload octets it sent.
    pub octet_count: u32,
}

/// Why an RTCP datagram was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtcpError {
    /// Larger than any RTCP we accept.
    #[error("RTCP datagram too large")]
    TooLarge,
    /// The `rtcp` crate could not parse it; the text says why.
    #[error("malformed RTCP: {0}")]
    Malformed(String),
}

/// Parses one compound RTCP datagram into what the mixer uses.
///
/// The compound is walked here (RFC 3550 §6.4: version 2, each length inside the
/// datagram); only sender reports, receiver reports and BYEs go to the `rtcp` crate, one
/// packet at a time. Feedback, SDES, APP and XR packets are skipped unread: the crate
/// panicked on a transport-layer NACK shorter than its fixed part (found by the `rtcp`
/// fuzz target), and we use none of them.
pub fn parse_rtcp(datagram: &[u8]) -> Result<RtcpSummary, RtcpError> {
    if datagram.len() > crate::MAX_RTP_DATAGRAM {
        return Err(RtcpError::TooLarge);
    }
    if datagram.is_empty() {
        return Err(RtcpError::Malformed("empty datagram".into()));
    }
    let mut summary = RtcpSummary::default();
    let mut rest = datagram;
    while !rest.is_empty() {
        if rest.len() < 4 || rest[0] >> 6 != 2 {
            return Err(RtcpError::Malformed("not an RTCP version 2 header".into()));
        }
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if len > rest.len() {
            return Err(RtcpError::Malformed("packet length past the datagram".into()));
        }
        let (packet, tail) = rest.split_at(len);
        rest = tail;
        if !matches!(packet[1], 200 | 201 | 203) {
            continue;
        }
        let mut raw = Bytes::copy_from_slice(packet);
        let packets =
            rtcp::packet::unmarshal(&mut raw).map_err(|e| RtcpError::Malformed(e.to_string()))?;
        for packet in &packets {
            let any = packet.as_any();
            if let Some(bye) = any.downcast_ref::<Goodbye>() {
                summary.bye.extend(bye.sources.iter().take(32));
            } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                summary.sender_report = Some(SenderInfo {
                    ssrc: sr.ssrc,
                    ntp_time: sr.ntp_time,
                    rtp_time: sr.rtp_time,
                    packet_count: sr.packet_count,
                    octet_count: sr.octet_count,
                });
                summary.reports.extend(sr.reports.iter().take(32).map(report_block));
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                summary.receiver_report_ssrc = Some(rr.ssrc);
                summary.reports.extend(rr.reports.iter().take(32).map(report_block));
            }
        }
    }
    summary.bye.truncate(32);
    summary.reports.truncate(32);
    Ok(summary)
}

fn report_block(r: &ReceptionReport) -> ReportBlock {
    ReportBlock {
        ssrc: r.ssrc,
        fraction_lost: r.fraction_lost,
        // 24 bits, two's complement: sign-extend.
        cumulative_lost: ((r.total_lost << 8) as i32) >> 8,
        extended_highest_seq: r.last_sequence_number,
        jitter: r.jitter,
        last_sr: r.last_sender_report,
        delay_since_last_sr: r.delay,
    }
}

/// Handles one RTCP datagram that arrived at `now` from the peer (on the RTCP port, or on
/// the RTP port when `muxed`).
///
/// RTCP is trusted only from the peer's transport address and only about the peer's own
/// stream: the leg must have latched (so its peer and SSRC are known); muxed RTCP must come
/// from the latched address itself, RTCP on its own port from the latched address, its
/// port + 1, or the address our reports go to; and the packet must speak for the latched
/// SSRC (its sender report, receiver report or BYE names it). Anything else is dropped as
/// `wrong_source`: a stranger — or another process on the peer's host — can neither end the
/// leg with a BYE nor redirect our reports.
pub(crate) fn on_rtcp(leg: &mut Leg, now: Instant, datagram: &[u8], from: SocketAddr, muxed: bool) {
    let (Some(latched), Some(ssrc)) = (leg.latched, leg.ssrc_in()) else {
        leg.stats.drop(DropReason::WrongSource);
        return;
    };
    let from_peer = if muxed {
        from == latched
    } else {
        // The peer's RTCP port (its RTP port + 1), or its RTP socket itself (symmetric
        // RTCP from the one socket), or where our reports go.
        let next_port = SocketAddr::new(latched.ip(), latched.port().wrapping_add(1));
        from == next_port || from == latched || leg.rtcp_destination_any() == Some(from)
    };
    if !from_peer {
        leg.stats.drop(DropReason::WrongSource);
        return;
    }
    let Ok(summary) = parse_rtcp(datagram) else {
        leg.stats.drop(DropReason::BadRtcp);
        return;
    };
    let speaks_for_peer = summary.sender_report.is_some_and(|sr| sr.ssrc == ssrc)
        || summary.receiver_report_ssrc == Some(ssrc)
        || summary.bye.contains(&ssrc);
    if !speaks_for_peer {
        leg.stats.drop(DropReason::WrongSource);
        return;
    }
    leg.stats.rtcp_in += 1;
    leg.learn_rtcp_source(from);
    leg.last_rx = Some(now);
    leg.rtcp.on_rtcp(now, &summary, Some(ssrc));
    if summary.bye.contains(&ssrc) {
        leg.bye = true;
    }
}

/// RTCP metrics, registered once. Low cardinality: histograms over every leg, no label per
/// participant.
pub(crate) struct RtcpMetrics {
    reports_sent: metrics::Counter,
    reports_received: metrics::Counter,
    remote_fraction_lost: metrics::Histogram,
    remote_jitter: metrics::Histogram,
    round_trip: metrics::Histogram,
    inbound_fraction_lost: metrics::Histogram,
    inbound_jitter: metrics::Histogram,
}

impl RtcpMetrics {
    pub(crate) fn register() -> Self {
        Self {
            reports_sent: metrics::counter!("mixminus_rtcp_reports_sent_total"),
            reports_received: metrics::counter!("mixminus_rtcp_peer_reports_total"),
            remote_fraction_lost: metrics::histogram!("mixminus_rtcp_remote_fraction_lost"),
            remote_jitter: metrics::histogram!("mixminus_rtcp_remote_jitter_seconds"),
            round_trip: metrics::histogram!("mixminus_rtcp_round_trip_seconds"),
            inbound_fraction_lost: metrics::histogram!("mixminus_rtcp_inbound_fraction_lost"),
            inbound_jitter: metrics::histogram!("mixminus_rtcp_inbound_jitter_seconds"),
        }
    }
}

/// Sends the leg's compound report when one is due, and records what the peer reported
/// since the last call. Call once per tick, after the mix went out.
pub(crate) fn maybe_send_report(leg: &mut Leg, now: Instant, metrics: &RtcpMetrics) {
    if let Some(report) = leg.rtcp.take_peer_report() {
        metrics.reports_received.increment(1);
        metrics.remote_fraction_lost.record(report.fraction_lost());
        metrics.remote_jitter.record(report.jitter.as_secs_f64());
        if let Some(rtt) = report.round_trip {
            metrics.round_trip.record(rtt.as_secs_f64());
        }
    }
    let Some(destination) = leg.rtcp_destination() else { return };
    let (rtp_time, peer_ssrc) = (leg.rtp_time_now(), leg.ssrc_in());
    let Some(bytes) = leg.rtcp.poll_report(now, rtp_time, peer_ssrc) else { return };
    if let Err(error) = leg.send_rtcp(&bytes, destination) {
        leg.on_send_error(&error);
    }
    metrics.reports_sent.increment(1);
    if let Some(block) = leg.rtcp.take_inbound_report() {
        metrics.inbound_fraction_lost.record(f64::from(block.fraction_lost) / 256.0);
        let jitter = peer::rtp_units(block.jitter, leg.rtcp.stats().clock_rate);
        metrics.inbound_jitter.record(jitter.as_secs_f64());
    }
}

/// Tells the peer this stream ends: a last report, SDES and BYE in one compound.
pub(crate) fn send_bye(leg: &mut Leg, now: Instant) {
    let Some(destination) = leg.rtcp_destination() else { return };
    let (rtp_time, peer_ssrc) = (leg.rtp_time_now(), leg.ssrc_in());
    if let Some(bytes) = leg.rtcp.bye(now, rtp_time, peer_ssrc, b"conference left") {
        // The last word: nothing to do if it cannot go.
        let _ = leg.send_rtcp(&bytes, destination);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bye_and_reports_refuses_garbage() {
        let bye = Goodbye { sources: vec![7, 9], reason: Bytes::new() };
        let sr = SenderReport {
            ssrc: 42,
            reports: vec![ReceptionReport {
                ssrc: 7,
                fraction_lost: 12,
                total_lost: 3,
                jitter: 80,
                ..Default::default()
            }],
            ..Default::default()
        };
        let compound = rtcp::packet::marshal(&[Box::new(sr), Box::new(bye)]).unwrap();
        let summary = parse_rtcp(&compound).unwrap();
        assert_eq!(summary.bye, vec![7, 9]);
        assert_eq!(summary.sender_report.map(|sr| sr.ssrc), Some(42));
        let block = ReportBlock {
            ssrc: 7,
            fraction_lost: 12,
            cumulative_lost: 3,
            jitter: 80,
            ..Default::default()
        };
        assert_eq!(summary.reports, vec![block]);
        assert!(parse_rtcp(&[0x80, 200, 0, 99, 1, 2]).is_err());
        assert!(parse_rtcp(&[]).is_err());
        assert_eq!(parse_rtcp(&[0x80; 2000]), Err(RtcpError::TooLarge));
    }

    /// Found by `fuzz/fuzz_targets/rtcp.rs`: a transport-layer NACK (PT 205) one word
    /// long made the `rtcp` crate read past its end and panic. It is skipped now, and the
    /// receiver report beside it still counts.
    #[test]
    fn short_nack_does_not_panic() {
        let crash = [
            0x81, 0xcd, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x9a, 0xbc, 0x00, 0xe8,
            0xe8, 0xe8, 0xe8, 0xe0, 0x81, 0xdb, 0x00, 0x0c, 0x00, 0x00, 0x12, 0x01, 0xff, 0xff,
            0xff, 0xff, 0x00, 0x03, 0x00, 0x00, 0x35, 0x04, 0x00, 0x00, 0x00, 0xe3,
        ];
        assert!(parse_rtcp(&crash).is_err(), "the second header is not version 2");
        let nack = [0x81, 205, 0, 1, 0, 0, 0, 7];
        let rr = ReceiverReport { ssrc: 5, reports: vec![], ..Default::default() };
        let mut compound = rtcp::packet::marshal(&[Box::new(rr)]).unwrap().to_vec();
        compound.extend_from_slice(&nack);
        let rr_only = RtcpSummary { receiver_report_ssrc: Some(5), ..Default::default() };
        assert_eq!(parse_rtcp(&compound), Ok(rr_only));
        assert_eq!(parse_rtcp(&nack), Ok(RtcpSummary::default()));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = parse_rtcp(&bytes);
        }
    }
}
