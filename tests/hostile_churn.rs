//! Churn: participants join, get related both ways, and are kicked, cycle after cycle,
//! through the real HTTP API, while the conference keeps mixing three residents who talk
//! over real UDP with real Opus. After a warm-up, nothing may accumulate: resident memory
//! stays within 5 %, and the sockets, tokio tasks, legs, mixer participants, mix groups,
//! encoders, relationship records, call metadata and bound ports all come back to exactly
//! what they were.
//!
//! `churn_keeps_nothing` runs 400 cycles (CI); `churn_soak_10k` (ignored) runs the 10,000
//! of docs/RELIABILITY.md: `cargo test --release --test hostile_churn -- --ignored
//! --nocapture`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http::Server;
use common::leak;
use mixminus::control::config::AccountScope;
use mixminus::control::{Auth, Registry};
use mixminus::rtp::client::{ToneClient, ToneClientConfig};
use mixminus::rtp::{Bridge, BridgeConfig, CodecKind, CodecParams, ConferenceCounters};
use serde_json::{json, Value};

const TOKEN: &str = "churn-token";
const BASE: &str = "/v2/accounts/acc1/conferences/churn";
/// Longer than an exit tone plus the talk detector's hangover (40 frames).
const QUIET: Duration = Duration::from_millis(1500);

/// Everything that must come back to its value after the churn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Census {
    sockets: usize,
    tasks: usize,
    ports: usize,
    legs: u32,
    mixer_participants: u32,
    mixer_groups: u32,
    encoders: u32,
    relationships: u32,
    members: usize,
}

async fn put(server: &Server, path: &str, body: Value) -> Value {
    server.put_data(path, TOKEN, body).await
}

async fn churn(cycles: usize, ports: (u16, u16)) {
    let mut config = BridgeConfig::default();
    config.rtp_ports = ports;
    config.inactivity_timeout = None;
    let bridge = Bridge::new(config).unwrap();
    let registry = Registry::new(bridge, 4);
    let auth = Auth::default().with_token(TOKEN, AccountScope::All);
    let server = Server::start(registry.clone(), auth, 64 * 1024).await;
    let doc = json!({"data": {"id": "churn", "member": {"join_muted": false}}});
    let r = server
        .call("PUT", "/v2/accounts/acc1/conferences", Some(TOKEN), Some(doc.to_string().as_bytes()))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    // Three residents: A and C talk, B listens; B is deaf to C.
    let opus = CodecParams::new(CodecKind::Opus);
    let mut residents = Vec::new();
    let mut resident_ids = Vec::new();
    for tone in [Some(440.0), None, Some(1100.0)] {
        let joined = put(
            &server,
            &format!("{BASE}/participants"),
            json!({"data": {"action": "join", "data": {"rtp": {"codec": "opus"}}}}),
        )
        .await;
        let id = joined["participant_id"].as_u64().unwrap();
        let local = common::http::local_rtp(&joined);
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        residents
            .push(ToneClient::start(ToneClientConfig::new(opus, tone), any, local).await.unwrap());
        resident_ids.push(id);
    }
    let (a, b, c) = (resident_ids[0], resident_ids[1], resident_ids[2]);
    put(
        &server,
        &format!("{BASE}/participants"),
        json!({"data": {"action": "relate", "data": {"participant_id": b, "other_participant": c,
            "relationship": "deaf"}}}),
    )
    .await;
    // Newcomers send their mix here; nobody reads it (the kernel drops what overflows).
    let sink = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sink_port = sink.local_addr().unwrap().port();

    let entry = registry.get("acc1", "churn").unwrap();
    let census = || {
        let s = entry.handle().snapshot();
        let k: ConferenceCounters = s.counters;
        Census {
            sockets: leak::sockets(),
            tasks: leak::tasks(),
            ports: registry.bridge().ports_in_use(),
            legs: k.legs,
            mixer_participants: k.mixer_participants,
            mixer_groups: k.mixer_groups,
            encoders: k.encoders,
            relationships: k.relationships,
            members: entry.member_count(),
        }
    };

    let warmup = (cycles / 5).max(50);
    let mut baseline = None;
    let mut rss_warm = 0;
    let started = Instant::now();
    let mut timed_from = started;
    for i in 0..warmup + cycles {
        if i == warmup {
            // Quiet first: the exit tone of the last leave, and the talk detector's 800 ms
            // hangover on it, hold a mix group and its encoders for a while.
            tokio::time::sleep(QUIET).await;
            baseline = Some(census());
            rss_warm = leak::rss_kb();
            timed_from = Instant::now();
        }
        // Opus and PCMU legs, half of them with a destination (so they get a mix group
        // and an encoder), flags from the join, relationships both ways.
        let codec = if i % 2 == 0 { "opus" } else { "pcmu" };
        let mut rtp = json!({"codec": codec});
        if i % 4 < 2 {
            rtp["remote_ip"] = json!("127.0.0.1");
            rtp["remote_port"] = json!(sink_port);
        }
        let flags = if i % 3 == 0 { json!(["deaf"]) } else { json!([]) };
        let joined = put(
            &server,
            &format!("{BASE}/participants"),
            json!({"data": {"action": "join", "data": {"call_id": format!("churn-{i}"),
                "participant_flags": flags, "rtp": rtp}}}),
        )
        .await;
        let id = joined["participant_id"].as_u64().unwrap();
        put(
            &server,
            &format!("{BASE}/participants"),
            json!({"data": {"action": "relate", "data": {"participant_id": id,
                "other_participant": [a, c], "relationship": "deaf"}}}),
        )
        .await;
        put(
            &server,
            &format!("{BASE}/participants"),
            json!({"data": {"action": "relate", "data": {"participant_id": a,
                "other_participant": id, "relationship": ["deaf", "mute"]}}}),
        )
        .await;
        if i % 10 == 0 {
            // Live long enough to be mixed and encoded for.
            tokio::time::sleep(Duration::from_millis(45)).await;
        }
        let kicked =
            put(&server, &format!("{BASE}/participants/{id}"), json!({"data": {"action": "kick"}}))
                .await;
        assert_eq!(kicked["changed"], true);
    }
    let elapsed = timed_from.elapsed();
    tokio::time::sleep(QUIET).await;
    let baseline = baseline.unwrap();
    let end = leak::settle(baseline, Duration::from_secs(3), census).await;
    let rss_end = leak::rss_kb();
    let snapshot = entry.handle().snapshot();
    println!(
        "churn: {cycles} cycles after {warmup} warm-up in {:.1} s ({:.2} ms/cycle, 4 HTTP calls each); \
         RSS {rss_warm} kB -> {rss_end} kB ({:+.2} %); census {end:?}; late ticks {}, ticks {}",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / cycles as f64,
        (rss_end as f64 / rss_warm as f64 - 1.0) * 100.0,
        snapshot.counters.late_ticks,
        snapshot.counters.ticks,
    );
    assert_eq!(end, baseline, "something outlived its participant");
    assert_eq!(end.legs, 3);
    assert_eq!(end.members, 3);
    assert_eq!(end.relationships, 1, "only B deaf to C is left");
    assert_eq!(snapshot.relationships.len(), 1);
    assert!(
        rss_end as f64 <= rss_warm as f64 * 1.05,
        "RSS grew more than 5 %: {rss_warm} kB -> {rss_end} kB"
    );

    // The conference kept mixing all along: B hears A, not C (deaf), A hears C.
    residents[1].clear();
    residents[0].clear();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let heard_b = residents[1].tone_levels(&[440.0, 1100.0]);
    let heard_a = residents[0].tone_levels(&[1100.0]);
    assert!(heard_b[0] > -40.0 && heard_b[1] < -55.0, "B hears A only: {heard_b:?}");
    assert!(heard_a[0] > -40.0, "A hears C: {heard_a:?}");
    drop(residents);
    registry.stop_all().await;
    assert_eq!(registry.bridge().ports_in_use(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_keeps_nothing() {
    churn(400, (14_000, 14_499)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: 10,000 cycles, minutes; run with --release --ignored"]
async fn churn_soak_10k() {
    churn(10_000, (14_500, 14_999)).await;
}

/// A participant the runtime removes by itself (here: its peer sends an RTCP BYE) leaves no
/// call metadata behind once someone else joins, even if nobody lists the participants.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_of_legs_the_runtime_removed_is_pruned() {
    let mut config = BridgeConfig::default();
    config.rtp_ports = (14_400, 14_499);
    let server = Server::with_bridge(config, TOKEN).await;
    let registry = server.registry.clone();
    let doc = json!({"data": {"id": "churn"}});
    let r = server
        .call("PUT", "/v2/accounts/acc1/conferences", Some(TOKEN), Some(doc.to_string().as_bytes()))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let join = json!({"data": {"action": "join", "data": {"call_id": "leaving", "rtp": {"codec": "pcmu"}}}});
    let joined = put(&server, &format!("{BASE}/participants"), join).await;
    let port = joined["rtp"]["local_port"].as_u64().unwrap() as u16;
    let entry = registry.get("acc1", "churn").unwrap();
    assert_eq!(entry.member_count(), 1);

    // Its phone sends one PCMU packet (the leg latches), then says BYE.
    let phone = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rtp = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x0b, 0xad];
    rtp.extend_from_slice(&[0xff; 160]);
    phone.send_to(&rtp, ("127.0.0.1", port)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let bye = [0x81, 203, 0, 1, 0, 0, 0x0b, 0xad];
    phone.send_to(&bye, ("127.0.0.1", port + 1)).await.unwrap();
    let gone =
        leak::settle(0, Duration::from_secs(3), || entry.handle().snapshot().participants.len())
            .await;
    assert_eq!(gone, 0, "the BYE removed the participant");
    assert_eq!(entry.member_count(), 1, "its metadata is still there until something prunes it");

    let join =
        json!({"data": {"action": "join", "data": {"call_id": "next", "rtp": {"codec": "pcmu"}}}});
    put(&server, &format!("{BASE}/participants"), join).await;
    assert_eq!(
        entry.member_count(),
        1,
        "the join pruned the metadata of the participant that left"
    );
    assert!(entry.participant_by_call("leaving").is_none());
    registry.stop_all().await;
}
