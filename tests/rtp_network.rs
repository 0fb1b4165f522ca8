//! The media runtime under real network conditions: impairment, fan-out cost, garbage.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::netem::{Impairment, Proxy};
use mixminus::core::{ConferenceConfig, Relationship};
use mixminus::rtp::client::{ToneClient, ToneClientConfig};
use mixminus::rtp::{
    Bridge, BridgeConfig, CodecKind, CodecParams, ConferenceSettings, DropReason, JoinRequest,
};

const TONES: [f32; 4] = [440.0, 700.0, 1100.0, 1700.0];

fn bridge(ports: (u16, u16)) -> Bridge {
    let mut config = BridgeConfig::default();
    config.rtp_ports = ports;
    Bridge::new(config).unwrap()
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tones_survive_loss_jitter_reordering_and_duplicates() {
    let bridge = bridge((32_000, 32_999));
    let conference =
        bridge.start_conference(ConferenceSettings::new(ConferenceConfig::default())).unwrap();
    let codec = CodecParams::new(CodecKind::Opus);
    let mut clients = Vec::new();
    let mut proxies = Vec::new();
    let mut ids = Vec::new();
    for (i, tone) in TONES.iter().enumerate() {
        let joined = conference.join(JoinRequest::new(codec, None)).await.unwrap();
        let proxy = Proxy::start(
            joined.local_rtp,
            Impairment {
                loss: 0.10,
                delay: Duration::from_millis(20),
                jitter: Duration::from_millis(40),
                duplicate: 0.05,
                seed: 17 + i as u64,
                ..Impairment::default()
            },
        )
        .await;
        let client = ToneClient::start(
            ToneClientConfig::new(codec, Some(*tone)),
            any_port(),
            proxy.client_facing,
        )
        .await
        .unwrap();
        ids.push(joined.id);
        clients.push(client);
        proxies.push(proxy);
    }
    conference.relate(vec![ids[0]], vec![ids[1]], Relationship::DEAF).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for c in &clients {
        c.clear();
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let expected = [
        [false, false, true, true],
        [true, false, true, true],
        [true, true, false, true],
        [true, true, true, false],
    ];
    for (i, c) in clients.iter().enumerate() {
        let levels = c.tone_levels(&TONES);
        for (j, &db) in levels.iter().enumerate() {
            if expected[i][j] {
                assert!(db > -40.0, "participant {i} should hear tone {j}: {levels:?}");
            } else {
                assert!(db < -55.0, "participant {i} should not hear tone {j}: {levels:?}");
            }
        }
    }
    let snapshot = conference.snapshot();
    for p in &snapshot.participants {
        assert!(p.jitter_depth <= 20, "jitter buffer bounded: {}", p.jitter_depth);
        // 40 ms of jitter: the playout buffer aims beyond one frame, within its bounds.
        let j = p.jitter;
        assert!(j.target_ms > 20 && j.target_ms <= 200, "playout target: {j:?}");
        assert!(j.delay_ms <= 400, "playout delay bounded: {j:?}");
        assert!(p.stats.concealed + p.stats.fec_recovered > 0, "loss was repaired: {:?}", p.stats);
        assert!(p.stats.dropped(DropReason::Duplicate) > 0, "duplicates dropped: {:?}", p.stats);
    }
    conference.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encodes_grow_with_groups_not_listeners() {
    let bridge = bridge((33_000, 33_999));
    let conference =
        bridge.start_conference(ConferenceSettings::new(ConferenceConfig::default())).unwrap();
    let codec = CodecParams::new(CodecKind::Opus);
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for i in 0..53 {
        let joined = conference.join(JoinRequest::new(codec, None)).await.unwrap();
        let tone = TONES.get(i).copied().filter(|_| i < 3);
        clients.push(
            ToneClient::start(ToneClientConfig::new(codec, tone), any_port(), joined.local_rtp)
                .await
                .unwrap(),
        );
        ids.push(joined.id);
    }
    let window = |conference: &mixminus::rtp::ConferenceHandle| {
        let c = conference.clone();
        async move {
            // The typical (median) per-tick encode count over one second of steady state: a
            // talker whose packet came late for one tick leaves its group for that tick and
            // costs one more encode then (see `fanout`), which a loaded machine makes common.
            let mut samples = Vec::with_capacity(20);
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                samples.push(c.snapshot().counters.encodes_last_tick);
            }
            samples.sort_unstable();
            samples[samples.len() / 2]
        }
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    let encodes = window(&conference).await;
    assert!(
        encodes <= 4,
        "3 talkers + 50 listeners: {encodes} encodes per tick (one per participant would be 53)"
    );
    assert!(encodes >= 3, "the talkers are mixed: {encodes}");
    assert!(clients[10].packets_received() > 20);

    conference.relate(vec![ids[10]], vec![ids[0]], Relationship::DEAF).await.unwrap();
    conference.relate(vec![ids[11]], vec![ids[0], ids[1]], Relationship::DEAF).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let encodes = window(&conference).await;
    // Listener 11's key is new: its group forks listener 11's encoder. Listener 10 joins
    // talker 0's group, whose encoder has another history: it keeps its own encoder (one
    // more encode) until the mix is silent long enough to merge, which these steady tones
    // never are (on a machine that keeps up).
    let counters = conference.snapshot().counters;
    assert!(encodes <= 5 + 1, "one more exclusion key and one listener in transition: {encodes}");
    assert_eq!(counters.discontinuities, 0, "{counters:?}");
    conference.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_are_dropped_and_counted() {
    let bridge = bridge((34_000, 34_999));
    let conference =
        bridge.start_conference(ConferenceSettings::new(ConferenceConfig::default())).unwrap();
    let codec = CodecParams::new(CodecKind::Opus);
    let a = conference.join(JoinRequest::new(codec, None)).await.unwrap();
    let b = conference.join(JoinRequest::new(codec, None)).await.unwrap();
    let talker =
        ToneClient::start(ToneClientConfig::new(codec, Some(440.0)), any_port(), a.local_rtp)
            .await
            .unwrap();
    let listener = ToneClient::start(ToneClientConfig::new(codec, None), any_port(), b.local_rtp)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;

    // A third leg nobody has sent to yet: garbage must neither latch it nor get through.
    let c = conference.join(JoinRequest::new(codec, None)).await.unwrap();
    let stranger = tokio::net::UdpSocket::bind(any_port()).await.unwrap();
    let mut garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x80],
        vec![0x80, 0x6f, 0, 1, 0, 0, 0, 0, 0, 0, 0], // truncated header
        vec![0x40, 0x6f, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xde, 0xad], // version 1
        vec![0xa0, 0x6f, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xff], // padding past the end
        vec![0x8f, 0x6f, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2], // 15 CSRCs past the end
        vec![0x80; 4000],                            // oversized
    ];
    let mut seed = 0x1234_5678_u32;
    for _ in 0..200 {
        let len = (seed % 200) as usize;
        garbage.push((0..len).map(|i| (seed.wrapping_mul(i as u32 + 7) >> 13) as u8).collect());
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
    }
    for datagram in &garbage {
        let _ = stranger.send_to(datagram, a.local_rtp).await;
    }
    for datagram in &garbage {
        let _ = stranger.send_to(datagram, b.local_rtp).await;
        let _ = stranger.send_to(datagram, c.local_rtp).await;
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    listener.clear();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(listener.heard_tones(&[440.0], -40.0)[0], "the conference keeps mixing");
    let snapshot = conference.snapshot();
    for p in &snapshot.participants {
        // A latched leg's socket is connected to its peer: the kernel drops a stranger's
        // datagrams before the bridge reads them. The fresh leg reads and counts each one.
        let expected = if p.latched.is_some() { 0 } else { garbage.len() as u64 };
        assert_eq!(p.stats.dropped_total(), expected, "every datagram counted: {:?}", p.stats);
    }
    let fresh = snapshot.participants.iter().find(|p| p.info.id == c.id).unwrap();
    assert_eq!(fresh.latched, None, "garbage never latches a leg");
    // The stranger's burst budget lets the first ones through to the parser; the rest of a
    // burst of 207 is dropped unparsed, over the source's budget.
    assert!(fresh.stats.dropped(DropReason::Malformed) >= 20, "{:?}", fresh.stats);
    assert!(fresh.stats.dropped(DropReason::OverBudget) >= 100, "{:?}", fresh.stats);
    assert!(conference.is_running());
    drop(talker);
    conference.stop().await.unwrap();
}

/// A conference's `jitter_max_delay_ms` caps what its legs' playout buffers aim for under
/// the same 40 ms of jitter that makes a default conference's buffer aim higher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conference_caps_its_playout_delay() {
    let bridge = bridge((34_000, 34_999));
    let codec = CodecParams::new(CodecKind::Opus);
    let mut targets = Vec::new();
    for cap in [None, Some(30)] {
        let mut settings = ConferenceSettings::new(ConferenceConfig::default());
        settings.jitter_max_delay_ms = cap;
        let conference = bridge.start_conference(settings).unwrap();
        let joined = conference.join(JoinRequest::new(codec, None)).await.unwrap();
        let impairment =
            Impairment { jitter: Duration::from_millis(40), seed: 5, ..Impairment::default() };
        let proxy = Proxy::start(joined.local_rtp, impairment).await;
        let client = ToneClient::start(
            ToneClientConfig::new(codec, Some(TONES[0])),
            any_port(),
            proxy.client_facing,
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let snapshot = conference.snapshot();
        let j = snapshot.participants[0].jitter;
        assert!(j.received > 50, "the leg got packets: {j:?}");
        targets.push(j.target_ms);
        drop(client);
        drop(proxy);
        conference.stop().await.unwrap();
    }
    assert!(targets[0] > 30, "40 ms of jitter asks for more than 30 ms: {targets:?}");
    assert!(targets[1] <= 30, "the conference's cap holds: {targets:?}");
}
