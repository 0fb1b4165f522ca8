//! RTCP through the `rtcp` crate: sender reports out, reports and BYE in.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rtcp::goodbye::Goodbye;
use rtcp::receiver_report::ReceiverReport;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;

use crate::leg::Leg;
use crate::stats::DropReason;

/// Seconds from 1900 (NTP's epoch) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What we take from a compound RTCP packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RtcpSummary {
    /// Sources that said BYE.
    pub bye: Vec<u32>,
    /// The sender of a sender report, if one was present.
    pub sender_report_ssrc: Option<u32>,
    /// The sender of a receiver report, if one was present.
    pub receiver_report_ssrc: Option<u32>,
    /// (source, fraction lost /256, cumulative lost, jitter) from reception reports.
    pub reception: Vec<(u32, u8, u32, u32)>,
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
                summary.sender_report_ssrc = Some(sr.ssrc);
                summary.reception.extend(sr.reports.iter().take(32).map(reception));
            } else if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                summary.receiver_report_ssrc = Some(rr.ssrc);
                summary.reception.extend(rr.reports.iter().take(32).map(reception));
            }
        }
    }
    summary.bye.truncate(32);
    summary.reception.truncate(32);
    Ok(summary)
}

fn reception(r: &ReceptionReport) -> (u32, u8, u32, u32) {
    (r.ssrc, r.fraction_lost, r.total_lost, r.jitter)
}

/// Handles one RTCP datagram from the peer (on the RTCP port, or on the RTP port when
/// `muxed`).
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
    let speaks_for_peer = summary.sender_report_ssrc == Some(ssrc)
        || summary.receiver_report_ssrc == Some(ssrc)
        || summary.bye.contains(&ssrc);
    if !speaks_for_peer {
        leg.stats.drop(DropReason::WrongSource);
        return;
    }
    leg.stats.rtcp_in += 1;
    leg.learn_rtcp_source(from);
    leg.last_rx = Some(now);
    if summary.bye.contains(&ssrc) {
        leg.bye = true;
    }
}

/// Sends a sender report when one is due.
pub(crate) fn maybe_send_report(leg: &mut Leg, now: Instant, interval: Duration) {
    if leg.last_report.is_some_and(|last| now.saturating_duration_since(last) < interval) {
        return;
    }
    if leg.stats.packets_out == 0 {
        return;
    }
    leg.last_report = Some(now);
    let Some(destination) = leg.rtcp_destination() else { return };
    let reports = leg
        .ssrc_in()
        .map(|ssrc| {
            let jitter = leg.jitter();
            vec![ReceptionReport {
                ssrc,
                fraction_lost: 0,
                total_lost: jitter.stats().lost.min(0x7f_ffff) as u32,
                last_sequence_number: leg.highest_seq() as u32,
                jitter: 0,
                last_sender_report: 0,
                delay: 0,
            }]
        })
        .unwrap_or_default();
    let report = SenderReport {
        ssrc: leg.out_ssrc,
        ntp_time: ntp_now(),
        rtp_time: leg.out_timestamp(),
        packet_count: leg.stats.packets_out as u32,
        octet_count: leg.stats.bytes_out as u32,
        reports,
        profile_extensions: Bytes::new(),
    };
    if let Ok(bytes) = rtcp::packet::marshal(&[Box::new(report)]) {
        if let Err(error) = leg.rtcp_socket().try_send_to(&bytes, destination) {
            leg.on_send_error(&error);
        }
    }
}

/// Tells the peer this stream ends.
pub(crate) fn send_bye(leg: &Leg) {
    let Some(destination) = leg.rtcp_destination() else { return };
    let bye =
        Goodbye { sources: vec![leg.out_ssrc], reason: Bytes::from_static(b"conference left") };
    if let Ok(bytes) = rtcp::packet::marshal(&[Box::new(bye)]) {
        let _ = leg.rtcp_socket().try_send_to(&bytes, destination);
    }
}

fn ntp_now() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((since.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
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
        assert_eq!(summary.sender_report_ssrc, Some(42));
        assert_eq!(summary.reception, vec![(7, 12, 3, 80)]);
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
