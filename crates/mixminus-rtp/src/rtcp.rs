//! RTCP through the `rtcp` crate: sender reports out, reports and BYE in.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rtcp::goodbye::Goodbye;
use rtcp::reception_report::ReceptionReport;
use rtcp::sender_report::SenderReport;

use crate::leg::Leg;
use crate::stats::DropReason;

/// Seconds from 1900 (NTP's epoch) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Handles one RTCP datagram from the peer (on the RTCP port or muxed on the RTP port).
pub(crate) fn on_rtcp(leg: &mut Leg, datagram: &[u8], from: SocketAddr) {
    // RTCP is only trusted from the peer's address (the latched RTP source's host).
    if leg.latched.or(leg.remote).is_some_and(|peer| peer.ip() != from.ip()) {
        leg.stats.drop(DropReason::WrongSource);
        return;
    }
    let mut raw = Bytes::copy_from_slice(datagram);
    let packets = match rtcp::packet::unmarshal(&mut raw) {
        Ok(packets) => packets,
        Err(_) => {
            leg.stats.drop(DropReason::BadRtcp);
            return;
        }
    };
    leg.stats.rtcp_in += 1;
    leg.learn_rtcp_source(from);
    leg.last_rx = Some(Instant::now());
    for packet in &packets {
        if let Some(bye) = packet.as_any().downcast_ref::<Goodbye>() {
            if leg.ssrc_in().is_none_or(|ssrc| bye.sources.contains(&ssrc)) {
                leg.bye = true;
            }
        }
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
        let _ = leg.ports.rtcp.try_send_to(&bytes, destination);
    }
}

/// Tells the peer this stream ends.
pub(crate) fn send_bye(leg: &Leg) {
    let Some(destination) = leg.rtcp_destination() else { return };
    let bye =
        Goodbye { sources: vec![leg.out_ssrc], reason: Bytes::from_static(b"conference left") };
    if let Ok(bytes) = rtcp::packet::marshal(&[Box::new(bye)]) {
        let _ = leg.ports.rtcp.try_send_to(&bytes, destination);
    }
}

fn ntp_now() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((since.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}
