//! The bridge is no amplifier (issue 11): a join naming a third party's address makes the
//! bridge send it nothing until that address has sent to us (consent, in the spirit of RFC
//! 7675); unspecified, multicast, broadcast, wrong-family and denied remotes are refused; a
//! peer that answers with ICMP port unreachable ends its leg; RTCP counts only from the
//! peer's transport address and about the peer's SSRC.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mixminus::core::ConferenceConfig;
use mixminus::rtp::{
    write_rtp_header, Bridge, BridgeConfig, CodecKind, CodecParams, ConferenceHandle,
    ConferenceSettings, IpNet, JoinRequest, RtpHeader, RuntimeError,
};
use tokio::net::UdpSocket;

fn bridge(ports: (u16, u16)) -> Bridge {
    let mut config = BridgeConfig::default();
    config.rtp_ports = ports;
    config.remote_deny = vec!["192.0.2.0/24".parse::<IpNet>().unwrap()];
    Bridge::new(config).unwrap()
}

fn start(bridge: &Bridge) -> ConferenceHandle {
    bridge.start_conference(ConferenceSettings::new(ConferenceConfig::default())).unwrap()
}

fn pcmu_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut datagram = Vec::new();
    let header = RtpHeader {
        payload_type: 0,
        marker: false,
        sequence: seq,
        timestamp: seq as u32 * 160,
        ssrc,
    };
    write_rtp_header(&mut datagram, &header);
    datagram.extend_from_slice(&[0xff; 160]);
    datagram
}

/// Bytes that reach `socket` within `window`.
async fn bytes_within(socket: &UdpSocket, window: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + window;
    let mut buf = [0u8; 2048];
    let mut total = 0;
    while let Ok(Ok(len)) = tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
        total += len as u64;
    }
    total
}

fn has_leg(conference: &ConferenceHandle, id: mixminus::core::ParticipantId) -> bool {
    conference.snapshot().participants.iter().any(|p| p.info.id == id)
}

/// Main streamed the mix (≈ 50 packets/s) to whatever address a join named: a 329-byte
/// request bought 5.8 MB in 60 s with L16. Now nothing goes out until the remote sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_remote_that_never_sent_gets_nothing() {
    let bridge = bridge((17_600, 17_699));
    let conference = start(&bridge);
    let victim = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let victim_rtcp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let pcmu = CodecParams::new(CodecKind::Pcmu);
    let l16 = CodecParams::new(CodecKind::L16);
    let mut ids = Vec::new();
    for codec in [pcmu, l16] {
        let joined =
            conference.join(JoinRequest::new(codec, Some(victim.local_addr().unwrap()))).await;
        ids.push(joined.unwrap().id);
    }
    let window = Duration::from_millis(1500);
    let received = bytes_within(&victim, window).await;
    let rtcp = bytes_within(&victim_rtcp, Duration::from_millis(10)).await;
    println!(
        "reflection: {received} bytes of media reached a remote that never sent, in {window:?}"
    );
    assert_eq!(received + rtcp, 0, "the bridge streamed to a remote that never consented");

    // Once the remote speaks, it is heard and answered.
    let a =
        conference.snapshot().participants.iter().find(|p| p.info.id == ids[0]).unwrap().local_rtp;
    for seq in 0..5 {
        victim.send_to(&pcmu_packet(seq, 77), a).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        bytes_within(&victim, Duration::from_millis(500)).await > 0,
        "consent given, media flows"
    );
    conference.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unusable_remotes_are_refused() {
    let bridge = bridge((17_700, 17_799));
    let conference = start(&bridge);
    let pcmu = CodecParams::new(CodecKind::Pcmu);
    for remote in [
        "0.0.0.0:5004",
        "224.0.0.1:5004",
        "239.1.2.3:5004",
        "255.255.255.255:5004",
        "[::1]:5004",
        "192.0.2.7:5004",
        "127.0.0.1:0",
    ] {
        let remote: SocketAddr = remote.parse().unwrap();
        let result = conference.join(JoinRequest::new(pcmu, Some(remote))).await;
        assert!(
            matches!(result, Err(RuntimeError::InvalidRequest(_))),
            "{remote} was accepted: {result:?}"
        );
    }
    assert_eq!(bridge.ports_in_use(), 0, "a refused join binds nothing");
    assert!(conference
        .join(JoinRequest::new(pcmu, Some("127.0.0.1:5004".parse().unwrap())))
        .await
        .is_ok());
    conference.stop().await.unwrap();
}

/// A peer that goes away (its port closed) answers our packets with ICMP port unreachable:
/// the leg ends at once instead of streaming into the void until the inactivity timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn icmp_port_unreachable_ends_the_leg() {
    let bridge = bridge((17_800, 17_899));
    let conference = start(&bridge);
    let pcmu = CodecParams::new(CodecKind::Pcmu);
    let a = conference.join(JoinRequest::new(pcmu, None)).await.unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for seq in 0..10 {
        peer.send_to(&pcmu_packet(seq, 5), a.local_rtp).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(bytes_within(&peer, Duration::from_millis(300)).await > 0, "the peer is answered");
    drop(peer);
    let gone = Instant::now();
    while has_leg(&conference, a.id) {
        assert!(gone.elapsed() < Duration::from_secs(3), "the leg outlived its peer's port");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("ICMP unreachable ended the leg {:?} after the peer closed its port", gone.elapsed());
    conference.stop().await.unwrap();
}

/// Main trusted RTCP by IP alone: any port, any SSRC. Now a BYE ends a leg only from the
/// peer's transport address and for the peer's SSRC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtcp_counts_only_from_the_peers_address_and_ssrc() {
    let bridge = bridge((17_900, 17_999));
    let conference = start(&bridge);
    let pcmu = CodecParams::new(CodecKind::Pcmu);
    let a = conference.join(JoinRequest::new(pcmu, None)).await.unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for seq in 0..10 {
        peer.send_to(&pcmu_packet(seq, 0xabcd), a.local_rtp).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let bye = |ssrc: u32| {
        let mut b = vec![0x81, 203, 0, 1];
        b.extend_from_slice(&ssrc.to_be_bytes());
        b
    };
    let rtcp_port = SocketAddr::new(a.local_rtp.ip(), a.local_rtp.port() + 1);
    // Same host, another port (not the peer's RTP port + 1), the right SSRC.
    let neighbour = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    neighbour.send_to(&bye(0xabcd), rtcp_port).await.unwrap();
    // The peer's own address (muxed on the RTP port), a wrong SSRC.
    peer.send_to(&bye(0x1234), a.local_rtp).await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        has_leg(&conference, a.id),
        "a BYE from the wrong address or for the wrong SSRC ended the leg"
    );
    // The peer, its SSRC: the leg ends.
    peer.send_to(&bye(0xabcd), a.local_rtp).await.unwrap();
    let sent = Instant::now();
    while has_leg(&conference, a.id) {
        assert!(sent.elapsed() < Duration::from_secs(2), "the peer's own BYE did not end the leg");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    conference.stop().await.unwrap();
}
