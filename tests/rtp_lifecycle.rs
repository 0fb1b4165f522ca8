//! A leg's life over real UDP: latching, symmetric RTP and split ports, RTCP sender reports,
//! and the two ways a participant ends without a control-plane leave (RTCP BYE and
//! inactivity).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mixminus::core::{ConferenceConfig, ParticipantId};
use mixminus::rtp::{
    write_rtp_header, write_rtp_header_with_audio_level, AudioLevel, Bridge, BridgeConfig,
    CodecKind, CodecParams, ConferenceHandle, ConferenceSettings, DropReason, JoinRequest,
    LegSnapshot, RtpHeader,
};
use tokio::net::UdpSocket;

fn bridge_config(inactivity: Option<Duration>) -> BridgeConfig {
    let mut config = BridgeConfig::default();
    config.rtp_ports = (34_000, 34_999);
    config.inactivity_timeout = inactivity;
    config.rtcp_interval = Duration::from_millis(200);
    config
}

fn bridge(inactivity: Option<Duration>) -> Bridge {
    Bridge::new(bridge_config(inactivity)).unwrap()
}

fn start(bridge: &Bridge) -> ConferenceHandle {
    bridge.start_conference(ConferenceSettings::new(ConferenceConfig::default())).unwrap()
}

/// One PCMU packet of a square wave: loud (μ-law 0x8F/0x0F ≈ ±8000, well above the talk
/// threshold) or quiet (0xFE/0x7E ≈ ±8, under any threshold).
fn pcmu_frame(seq: u16, ssrc: u32, loud: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(172);
    let header = RtpHeader {
        payload_type: 0,
        marker: false,
        sequence: seq,
        timestamp: u32::from(seq) * 160,
        ssrc,
    };
    write_rtp_header(&mut out, &header);
    let (hi, lo) = if loud { (0x8F, 0x0F) } else { (0xFE, 0x7E) };
    out.extend((0..160).map(|i| if (i / 10) % 2 == 0 { hi } else { lo }));
    out
}

/// Sends `count` loud or quiet frames, one per 20 ms, from `socket` to `to`.
async fn send_frames(
    socket: &UdpSocket,
    to: SocketAddr,
    first_seq: u16,
    count: u16,
    ssrc: u32,
    loud: bool,
) {
    for k in 0..count {
        socket.send_to(&pcmu_frame(first_seq.wrapping_add(k), ssrc, loud), to).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `count` loud frames, one per 20 ms.
async fn send_packets(socket: &UdpSocket, to: SocketAddr, first_seq: u16, count: u16, ssrc: u32) {
    send_frames(socket, to, first_seq, count, ssrc, true).await;
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `id`'s leg as of the last published snapshot.
fn leg(conference: &ConferenceHandle, id: ParticipantId) -> Option<LegSnapshot> {
    conference.snapshot().participants.iter().find(|l| l.info.id == id).cloned()
}

fn present(conference: &ConferenceHandle, id: ParticipantId) -> bool {
    leg(conference, id).is_some()
}

async fn bind() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latching_fixes_the_source_and_symmetric_rtp_answers_it() {
    let bridge = bridge(None);
    let conference = start(&bridge);
    let pcmu = CodecParams::new(CodecKind::Pcmu);
    let a = conference.join(JoinRequest::new(pcmu, None)).await.unwrap();
    let b = conference.join(JoinRequest::new(pcmu, None)).await.unwrap();
    let (a_sock, b_sock, stranger) = (bind().await, bind().await, bind().await);

    // b talks so that a has something to hear; a sends so the bridge latches a's address.
    let b_target = b.local_rtp;
    let b_task = tokio::spawn(async move { send_packets(&b_sock, b_target, 0, 50, 22).await });
    send_packets(&a_sock, a.local_rtp, 0, 10, 11).await;
    // A stranger's packets to a's port, after the latch, never reach the bridge: the latch
    // connected the socket, so the kernel drops them.
    send_packets(&stranger, a.local_rtp, 500, 5, 99).await;

    // The mix comes back to the latched address, with the bridge's own SSRC for a.
    let mut buf = [0u8; 1500];
    let (len, from) = tokio::time::timeout(Duration::from_secs(2), a_sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, a.local_rtp);
    assert!(len > 12 && buf[0] >> 6 == 2, "an RTP packet");
    b_task.await.unwrap();

    let leg = leg(&conference, a.id).unwrap();
    assert_eq!(leg.latched, Some(a_sock.local_addr().unwrap()));
    assert_eq!(leg.stats.dropped_total(), 0, "{:?}", leg.stats);
    conference.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_ports_send_from_one_and_receive_on_another() {
    let bridge = bridge(None);
    let conference = start(&bridge);
    let pcmu = CodecParams::new(CodecKind::Pcmu);
    let (send_sock, recv_sock, other) = (bind().await, bind().await, bind().await);
    let a = conference
        .join(JoinRequest::new(pcmu, Some(recv_sock.local_addr().unwrap())))
        .await
        .unwrap();
    let b = conference.join(JoinRequest::new(pcmu, None)).await.unwrap();
    let b_target = b.local_rtp;
    let b_task = tokio::spawn(async move { send_packets(&other, b_target, 0, 40, 22).await });
    send_packets(&send_sock, a.local_rtp, 0, 10, 11).await;
    let mut buf = [0u8; 1500];
    let (_, from) = tokio::time::timeout(Duration::from_secs(2), recv_sock.recv_from(&mut buf))
        .await
        .expect("the mix goes to the address given at join")
        .unwrap();
    assert_eq!(from, a.local_rtp);
    b_task.await.unwrap();
    conference.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_reports_go_to_the_rtcp_port() {
    let bridge = bridge(None);
    let conference = start(&bridge);
    // The client's RTP and RTCP ports: an even port and the one above, as RFC 3550 has it.
    let (rtp, rtcp) = loop {
        let rtp = bind().await;
        let port = rtp.local_addr().unwrap().port();
        if port % 2 == 0 {
            if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)).await {
                break (rtp, rtcp);
            }
        }
    };
    let pcmu = CodecParams::new(CodecKind::Pcmu);
    let a = conference.join(JoinRequest::new(pcmu, Some(rtp.local_addr().unwrap()))).await.unwrap();
    let sender = tokio::spawn(async move { send_packets(&rtp, a.local_rtp, 0, 40, 11).await });
    let mut buf = [0u8; 1500];
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut saw_sr = false;
    while !saw_sr && Instant::now() < deadline {
        if let Ok(Ok((len, from))) =
            tokio::time::timeout(Duration::from_millis(500), rtcp.recv_from(&mut buf)).await
        {
            assert_eq!(from.port(), a.local_rtp.port() + 1, "RTCP comes from the RTCP port");
            saw_sr = len >= 28 && buf[1] == 200;
        }
    }
    assert!(saw_sr, "no RTCP sender report within 3 s");
    sender.await.unwrap();
    conference.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtcp_bye_from_the_latched_source_removes_the_participant() {
    let bridge = bridge(None);
    let conference = start(&bridge);
    let pcmu = CodecParams::new(CodecKind::Pcmu);
    let a = conference.join(JoinRequest::new(pcmu, None)).await.unwrap();
    let stays = conference.join(JoinRequest::new(pcmu, None)).await.unwrap();
    let sock = bind().await;
    send_packets(&sock, a.local_rtp, 0, 5, 0xA11CE).await;
    assert!(present(&conference, a.id));

    // BYE for its SSRC, multiplexed on the RTP port as rtcp-mux peers send it.
    let ssrc = 0xA11CEu32.to_be_bytes();
    let bye = [0x81, 203, 0, 1, ssrc[0], ssrc[1], ssrc[2], ssrc[3]];
    sock.send_to(&bye, a.local_rtp).await.unwrap();
    wait_until("the BYE to remove the leg", Duration::from_secs(2), || !present(&conference, a.id))
        .await;
    assert!(present(&conference, stays.id), "only the sender of the BYE leaves");
    assert_eq!(bridge.ports_in_use(), 1, "its ports are released");
    conference.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_participant_times_out_and_a_sending_one_stays() {
    let bridge = bridge(Some(Duration::from_millis(400)));
    let conference = start(&bridge);
    let pcmu = CodecParams::new(CodecKind::Pcmu);
    let quits = conference.join(JoinRequest::new(pcmu, None)).await.unwrap();
    let keeps = conference.join(JoinRequest::new(pcmu, None)).await.unwrap();
    let (q_sock, k_sock) = (bind().await, bind().await);
    let keeps_target = keeps.local_rtp;
    let keeper = tokio::spawn(async move { send_packets(&k_sock, keeps_target, 0, 75, 2).await });
    send_packets(&q_sock, quits.local_rtp, 0, 5, 1).await;
    let stopped = Instant::now();
    wait_until("the inactivity timeout", Duration::from_secs(2), || {
        !present(&conference, quits.id)
    })
    .await;
    assert!(stopped.elapsed() >= Duration::from_millis(350), "removed before its timeout");
    assert!(present(&conference, keeps.id), "a participant that keeps sending stays");
    keeper.await.unwrap();
    conference.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtcp_mux_reports_arrive_on_the_rtp_port() {
    let bridge = bridge(None);
    let conference = start(&bridge);
    let sock = bind().await;
    let mut request = JoinRequest::new(CodecParams::new(CodecKind::Pcmu), None);
    request.rtcp_mux = true;
    let a = conference.join(request).await.unwrap();
    let target = a.local_rtp;
    let mut buf = [0u8; 1500];
    let mut saw_sr = false;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut seq = 0u16;
    while !saw_sr && Instant::now() < deadline {
        sock.send_to(&pcmu_frame(seq, 7, true), target).await.unwrap();
        seq += 1;
        if let Ok(Ok((len, from))) =
            tokio::time::timeout(Duration::from_millis(20), sock.recv_from(&mut buf)).await
        {
            assert_eq!(from, target, "RTP and RTCP both come from the one port");
            saw_sr |= len >= 28 && buf[1] == 200;
        }
    }
    assert!(saw_sr, "no multiplexed sender report within 3 s");
    conference.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_leg_audio_level_id_skips_decoding_silent_frames() {
    let bridge = bridge(None);
    let conference = start(&bridge);
    let mut request = JoinRequest::new(CodecParams::new(CodecKind::Pcmu), None);
    request.audio_level_ext = Some(3);
    let a = conference.join(request).await.unwrap();
    let sock = bind().await;
    for seq in 0..25u16 {
        let mut packet = Vec::new();
        let header = RtpHeader {
            payload_type: 0,
            marker: false,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 5,
        };
        // Digital silence (127 −dBov, no voice) on extension id 3.
        write_rtp_header_with_audio_level(
            &mut packet,
            &header,
            3,
            AudioLevel { voice: false, level_dbov: 127 },
        )
        .unwrap();
        packet.extend([0xFFu8; 160]);
        sock.send_to(&packet, a.local_rtp).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_until("silent frames to play out", Duration::from_secs(2), || {
        leg(&conference, a.id).is_some_and(|l| l.stats.silent_skipped >= 15)
    })
    .await;
    let leg = leg(&conference, a.id).unwrap();
    // Concealment at the stream's start may count as a decode; no payload was decoded.
    assert_eq!(
        leg.stats.decodes, leg.stats.concealed,
        "a frame marked silent was decoded: {:?}",
        leg.stats
    );
    assert!(
        conference
            .join({
                let mut r = JoinRequest::new(CodecParams::new(CodecKind::Pcmu), None);
                r.audio_level_ext = Some(15);
                r
            })
            .await
            .is_err(),
        "extension ids stop at 14"
    );
    conference.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_cannot_take_a_leg_whose_peer_was_named() {
    let bridge = bridge(None);
    let conference = start(&bridge);
    let peer_recv = bind().await;
    let request =
        JoinRequest::new(CodecParams::new(CodecKind::Pcmu), Some(peer_recv.local_addr().unwrap()));
    let a = conference.join(request).await.unwrap();
    // A stranger on another host address gets there first; the peer sends from another port.
    let stranger = UdpSocket::bind("127.0.0.2:0").await.unwrap();
    send_packets(&stranger, a.local_rtp, 100, 5, 66).await;
    let peer_send = bind().await;
    send_packets(&peer_send, a.local_rtp, 0, 5, 11).await;
    wait_until("the peer to latch", Duration::from_secs(2), || {
        leg(&conference, a.id).is_some_and(|l| l.latched == Some(peer_send.local_addr().unwrap()))
    })
    .await;
    let leg = leg(&conference, a.id).unwrap();
    assert_eq!(leg.stats.dropped(DropReason::WrongSource), 5, "{:?}", leg.stats);
    conference.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_participants_are_decoded_every_nth_frame_and_onset_is_still_seen() {
    let mut config = bridge_config(None);
    config.quiet_decode_interval = 4;
    let bridge = Bridge::new(config).unwrap();
    let conference = start(&bridge);
    let a =
        conference.join(JoinRequest::new(CodecParams::new(CodecKind::Pcmu), None)).await.unwrap();
    let sock = bind().await;
    send_frames(&sock, a.local_rtp, 0, 40, 9, false).await;
    let stats = |c: &ConferenceHandle| {
        let leg = leg(c, a.id).unwrap();
        (leg.stats, leg.info.talking)
    };
    // Snapshots are published every few ticks: let the last quiet frames play out and show.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (quiet, talking) = stats(&conference);
    assert!(!talking);
    // About three of every four quiet frames skipped.
    assert!(quiet.quiet_skipped >= 25, "{quiet:?}");
    let payload_decodes = |s: &mixminus::rtp::LegStats| s.decodes - s.concealed - s.fec_recovered;
    assert!(payload_decodes(&quiet) <= 12, "{quiet:?}");

    // Loud frames: every frame decoded again within n − 1 frames, and talking starts.
    send_frames(&sock, a.local_rtp, 40, 20, 9, true).await;
    wait_until("talking to start", Duration::from_secs(2), || stats(&conference).1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (loud, _) = stats(&conference);
    assert!(loud.quiet_skipped - quiet.quiet_skipped <= 3, "skipped a loud frame: {loud:?}");
    assert!(payload_decodes(&loud) - payload_decodes(&quiet) >= 15, "{loud:?}");
    conference.stop().await.unwrap();

    let mut bad = BridgeConfig::default();
    bad.quiet_decode_interval = 0;
    assert!(Bridge::new(bad).is_err());
}
