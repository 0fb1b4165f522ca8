//! WebRTC legs without a browser: str0m clients in the test (they make the offers) join a
//! conference through WHIP over real HTTP, do ICE, DTLS and SRTP with the bridge over real
//! UDP, say a tone in Opus, and hear the mix, beside an RTP phone. Then the API's kick ends
//! one PeerConnection (the client sees the bridge close it) and WHIP `DELETE` the other.
//!
//! It also shows the shape of the leg: the bridge's WebRTC port comes from `rtp_ports`, and
//! the process has no other UDP socket (no loopback hop to an inner RTP leg), even with a
//! `remote_allow` that leaves 127.0.0.1 out.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::http::{Response, Server};
use mixminus::rtp::client::{ToneClient, ToneClientConfig};
use mixminus::rtp::webrtc_client::{WebRtcClientConfig, WebRtcToneClient};
use mixminus::rtp::{BridgeConfig, CodecKind, CodecParams};
use serde_json::{json, Value};

const TOKEN: &str = "webrtc-client-token";
const ACCOUNT: &str = "acc1";
const CONFERENCE: &str = "str0m";
const PORTS: (u16, u16) = (11_900, 11_939);
/// Client A, client B, the phone.
const TONES: [f32; 3] = [440.0, 700.0, 1100.0];
const HEARD_DBFS: f64 = -40.0;
/// The tests run one at a time: the first counts every UDP socket of the process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn put(server: &Server, path: &str, body: Value) -> Value {
    server.put_data(path, TOKEN, body).await
}

async fn whip_post(server: &Server, offer: &str) -> Response {
    let path = format!("/v2/accounts/{ACCOUNT}/conferences/{CONFERENCE}/whip");
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/sdp\r\n\
         authorization: Bearer {TOKEN}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{offer}",
        offer.len()
    );
    server.raw(request.as_bytes()).await
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
        .unwrap_or_else(|| panic!("no {name} in {}", response.head))
}

/// The port of the answer's (only) candidate.
fn candidate_port(answer: &str) -> u16 {
    let line = answer.lines().find(|l| l.starts_with("a=candidate:")).expect("a candidate");
    line.split_whitespace().nth(5).and_then(|p| p.parse().ok()).expect("a port")
}

/// Joins through WHIP: the client, its participant id, its `Location`, the bridge's port.
async fn join(server: &Server, tone: f32) -> (WebRtcToneClient, u64, String, u16) {
    let (pending, offer) = WebRtcToneClient::offer(
        WebRtcClientConfig::new(Some(tone)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let r = whip_post(server, &offer).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(header(&r, "content-type").starts_with("application/sdp"));
    let id: u64 = header(&r, "x-participant-id").parse().unwrap();
    let location = header(&r, "location").to_string();
    let port = candidate_port(&r.text);
    let client = pending.start(&r.text).unwrap();
    (client, id, location, port)
}

/// The local UDP ports of this process's sockets (from /proc: its fds and the netns table).
fn own_udp_ports() -> BTreeSet<u16> {
    let inodes: BTreeSet<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && inodes.contains(fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

async fn participant_count(server: &Server) -> usize {
    let path = format!("/v2/accounts/{ACCOUNT}/conferences/{CONFERENCE}/participants");
    let r = server.call("GET", &path, Some(TOKEN), None).await;
    r.json["data"].as_array().map_or(usize::MAX, Vec::len)
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn str0m_clients_join_by_whip_talk_hear_and_are_kicked() {
    let _serial = SERIAL.lock().await;
    let mut config = BridgeConfig::default();
    config.rtp_ports = PORTS;
    // The old front needed 127.0.0.1 allowed (its inner RTP leg's remote); a leg of the
    // runtime names no remote at all.
    config.remote_allow = vec!["10.0.0.0/8".parse().unwrap()];
    let server = Server::with_bridge(config, TOKEN).await;
    let registry = server.registry.clone();
    let conferences = format!("/v2/accounts/{ACCOUNT}/conferences");
    put(
        &server,
        &conferences,
        json!({"data": {"id": CONFERENCE, "member": {"join_muted": false},
            "play_entry_tone": false, "play_exit_tone": false}}),
    )
    .await;
    let participants = format!("{conferences}/{CONFERENCE}/participants");
    let joined = put(
        &server,
        &participants,
        json!({"data": {"action": "join", "data": {"call_id": "phone",
            "rtp": {"codec": "opus"}}}}),
    )
    .await;
    let phone = ToneClient::start(
        ToneClientConfig::new(CodecParams::new(CodecKind::Opus), Some(TONES[2])),
        "127.0.0.1:0".parse().unwrap(),
        common::http::local_rtp(&joined),
    )
    .await
    .unwrap();

    let (a, a_id, _, a_port) = join(&server, TONES[0]).await;
    let (b, b_id, b_location, b_port) = join(&server, TONES[1]).await;
    until("both clients are connected", || a.is_connected() && b.is_connected()).await;

    // The bridge's WebRTC ports are pairs from rtp_ports, listed by the API like any leg's.
    for (id, port) in [(a_id, a_port), (b_id, b_port)] {
        assert!((PORTS.0..=PORTS.1).contains(&port), "port {port} outside rtp_ports");
        let p = server.call("GET", &format!("{participants}/{id}"), Some(TOKEN), None).await;
        assert_eq!(p.json["data"]["rtp"]["local_port"], json!(port), "{}", p.text);
    }
    // No loopback hop: every UDP socket of this process is a client's, or the bridge's in
    // rtp_ports (three pairs).
    let clients = [a.local_addr().port(), b.local_addr().port(), phone.local_addr().port()];
    let ports = own_udp_ports();
    let strays: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| !clients.contains(p) && !(PORTS.0..=PORTS.1).contains(p))
        .collect();
    assert!(strays.is_empty(), "UDP sockets outside rtp_ports: {strays:?} (all: {ports:?})");
    assert_eq!(ports.len(), clients.len() + 6, "{ports:?}");

    // Everyone hears the other two.
    let mut heard = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        heard = vec![a.tone_levels(&TONES), b.tone_levels(&TONES), phone.tone_levels(&TONES)];
        let ok = heard.iter().enumerate().all(|(who, levels)| {
            levels.iter().enumerate().all(|(tone, &db)| (db >= HEARD_DBFS) == (tone != who))
        });
        if ok {
            break;
        }
    }
    println!("levels (rows A, B, phone; columns {TONES:?} Hz, dBFS): {heard:.0?}");
    for (who, levels) in heard.iter().enumerate() {
        for (tone, &db) in levels.iter().enumerate() {
            assert_eq!(db >= HEARD_DBFS, tone != who, "listener {who}, tone {tone}: {heard:.0?}");
        }
    }

    // The API's kick closes A's PeerConnection (str0m sees DTLS close_notify) and A leaves.
    put(&server, &format!("{participants}/{a_id}"), json!({"data": {"action": "kick"}})).await;
    until("A's PeerConnection is closed", || a.is_closed()).await;
    assert_eq!(participant_count(&server).await, 2);
    let received = a.packets_received();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.packets_received(), received, "the bridge still sends to a kicked client");

    // WHIP DELETE ends B the same way.
    let r = server.call("DELETE", &b_location, Some(TOKEN), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    until("B's PeerConnection is closed", || b.is_closed()).await;
    assert_eq!(participant_count(&server).await, 1);
    assert_eq!(registry.bridge().ports_in_use(), 1, "the WebRTC legs' ports are released");

    phone.stop();
    registry.stop_all().await;
}

/// Hostile datagrams at a WebRTC leg's port are dropped and counted; the leg lives on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_at_a_webrtc_port_is_dropped_and_counted() {
    let _serial = SERIAL.lock().await;
    let mut config = BridgeConfig::default();
    config.rtp_ports = (11_940, 11_959);
    let server = Server::with_bridge(config, TOKEN).await;
    let registry = server.registry.clone();
    let conferences = format!("/v2/accounts/{ACCOUNT}/conferences");
    put(
        &server,
        &conferences,
        json!({"data": {"id": CONFERENCE, "member": {"join_muted": false}}}),
    )
    .await;
    let (a, a_id, _, port) = join(&server, TONES[0]).await;
    until("the client is connected", || a.is_connected()).await;
    let junk = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let shapes: [&[u8]; 5] = [
        b"",
        &[0x80; 12],
        &[0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42],
        &[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff],
        &[0x90; 1400],
    ];
    for k in 0..200 {
        let _ = junk.send_to(shapes[k % shapes.len()], ("127.0.0.1", port)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p = server
        .call("GET", &format!("{conferences}/{CONFERENCE}/participants/{a_id}"), Some(TOKEN), None)
        .await;
    assert_eq!(p.status, 200, "the leg survived: {}", p.text);
    assert!(a.is_connected() && !a.is_closed());
    let snapshot = registry.get(ACCOUNT, CONFERENCE).unwrap().handle().snapshot();
    let leg = snapshot.participants.iter().find(|l| u64::from(l.info.id.get()) == a_id).unwrap();
    let dropped: u64 = leg.stats.dropped.iter().sum();
    println!("dropped by reason: {:?}", leg.stats.dropped);
    // What the reader's stranger budget let through, str0m refused, and the leg counted.
    assert!(dropped >= 25, "junk counted: {:?}", leg.stats.dropped);
    let received = a.packets_received();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.packets_received() > received, "the client still hears the bridge");
    registry.stop_all().await;
}
