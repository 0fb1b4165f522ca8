//! The SIP front against bad input and churn, with a hand-written UAC: malformed messages
//! are dropped (the server keeps answering), bad requests get their 4xx, an INVITE flood is
//! rate-limited per source, SIP INFO DTMF and offerless INVITEs work, and call cycles leak
//! no leg, no metadata and no port.
//!
//! RTP ports 16200-16299 (below the ephemeral range; see `common`).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http::Server;
use common::sipua::{pcmu_offer, Uac};
use mixminus::control::{Auth, Registry};
use mixminus::rtp::{Bridge, BridgeConfig};
use mixminus::sip::auth::DigestAlgorithm;
use mixminus::sip::config::Password;
use mixminus::sip::{SipConfig, SipServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A bridge, its API and a SIP front (UDP and TCP) taking `invites_per_second` from one
/// source.
async fn rig(ports: (u16, u16), invites_per_second: u32) -> (Server, SipServer) {
    let mut sip = SipConfig::default();
    sip.invites_per_second = invites_per_second;
    rig_with(ports, sip).await
}

/// [`rig`] with this SIP configuration (its `listen` is set here).
async fn rig_with(ports: (u16, u16), mut sip: SipConfig) -> (Server, SipServer) {
    let mut config = BridgeConfig::default();
    config.rtp_ports = ports;
    let registry = Registry::new(Bridge::new(config).unwrap(), 10);
    let api = Server::start(registry.clone(), Auth::default(), 64 * 1024).await;
    sip.listen = Some("127.0.0.1:0".parse().unwrap());
    let sip = SipServer::start(registry, sip).await.unwrap();
    (api, sip)
}

async fn create(api: &Server, doc: Value) {
    let r = api
        .call(
            "PUT",
            "/v2/accounts/acc/conferences",
            None,
            Some(json!({"data": doc}).to_string().as_bytes()),
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
}

async fn participants(api: &Server, conference: &str) -> Vec<Value> {
    let r = api
        .call("GET", &format!("/v2/accounts/acc/conferences/{conference}/participants"), None, None)
        .await;
    r.json["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sip_is_dropped_bad_requests_are_refused_and_nothing_panics() {
    let (api, server) = rig((16_200, 16_229), 10).await;
    let sip = server.local_addr();
    create(&api, json!({"id": "room"})).await;
    let mut uac = Uac::new("127.0.0.1:0", sip).await;
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        b"\r\n\r\n".to_vec(),
        b"INVITE\r\n\r\n".to_vec(),
        b"INVITE sip:room@x SIP/2.0\r\n\r\n".to_vec(),
        b"INVITE sip:room@x SIP/2.0\r\nVia: nonsense\r\nCSeq: x\r\n\r\n".to_vec(),
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n\r\n".to_vec(),
        b"INVITE sip:room@x SIP/2.0\r\nContent-Length: 999999\r\n\r\nv=0".to_vec(),
        vec![0xff; 1500],
        vec![b'A'; 60_000],
        (0..=255u8).cycle().take(4000).collect(),
    ];
    for datagram in &junk {
        if !datagram.is_empty() {
            uac.send_raw(datagram).await;
        }
    }
    let ok = uac.options().await.expect("OPTIONS after junk");
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(ok.header("Allow").is_some_and(|a| a.contains("INVITE")), "{}", ok.text);
    // A TCP stream that is not SIP is closed; SIP still works after.
    let mut tcp = tokio::net::TcpStream::connect(sip).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server closes a stream that is not SIP");
    assert_eq!(uac.options().await.map(|r| r.status), Some(200));

    let (r, _) =
        uac.invite("nobody", "c-404", &pcmu_offer("127.0.0.1:4000".parse().unwrap())).await;
    assert_eq!(
        (r.status, r.text.lines().next().unwrap()),
        (404, "SIP/2.0 404 Conference Not Found")
    );
    let (r, _) = uac
        .invite("room", "c-488", "v=0\r\nm=audio 4000 RTP/AVP 18\r\nc=IN IP4 127.0.0.1\r\n")
        .await;
    assert_eq!(r.status, 488, "no common codec: {}", r.text);
    let (r, _) = uac.invite("room", "c-488b", "this is not SDP").await;
    assert_eq!(r.status, 488, "{}", r.text);
    let raw = uac.socket.local_addr().unwrap();
    let message = format!(
        "MESSAGE sip:room@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {raw};branch=z9hG4bKm1\r\n\
        From: <sip:t@{raw}>;tag=1\r\nTo: <sip:room@{sip}>\r\nCall-ID: m1\r\nCSeq: 1 MESSAGE\r\n\
        Content-Length: 0\r\n\r\n"
    );
    uac.send_raw(message.as_bytes()).await;
    assert_eq!(uac.final_response(Duration::from_secs(3)).await.map(|r| r.status), Some(405));
    assert!(participants(&api, "room").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_flood_is_rate_limited_per_source() {
    let (_api, sip) = rig((16_230, 16_239), 10).await;
    let sip = sip.local_addr();
    let mut flood = Uac::new("127.0.0.1:0", sip).await;
    let start = Instant::now();
    let offer = pcmu_offer("127.0.0.1:4000".parse().unwrap());
    for i in 0..300 {
        let (from, uri) = (flood.local(), format!("sip:nobody@{sip}"));
        let invite = format!("INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKf{i}\r\n\
            From: <sip:f@{from}>;tag=f{i}\r\nTo: <{uri}>\r\nCall-ID: flood-{i}\r\nCSeq: 1 INVITE\r\n\
            Contact: <sip:f@{from}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}", offer.len());
        flood.send_raw(invite.as_bytes()).await;
    }
    let mut answered = 0;
    while flood.final_response(Duration::from_millis(1_500)).await.is_some() {
        answered += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Burst 20, then 10 a second (a retransmitted 404 may come twice).
    let bound = (20.0 + 10.0 * elapsed) * 2.0;
    assert!(
        answered >= 20 && f64::from(answered) <= bound,
        "{answered} answered in {elapsed:.1} s"
    );
    // Another source is answered at once.
    let mut other = Uac::new("127.0.0.2:0", sip).await;
    let (r, _) = other.invite("nobody", "other-1", &offer).await;
    assert_eq!(r.status, 404);
    let _ = &mut flood;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_pins_offerless_invites_hold_kick_and_call_cycles_that_leak_nothing() {
    let (api, sip) = rig((16_240, 16_299), 100_000).await;
    let sip = sip.local_addr();
    create(&api, json!({"id": "open", "member": {"join_muted": false}})).await;
    create(&api, json!({"id": "pin", "member": {"pins": ["42"]}})).await;
    let registry = api.registry.clone();
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer = pcmu_offer(rtp.local_addr().unwrap());
    let mut uac = Uac::new("127.0.0.1:0", sip).await;

    // A PIN by SIP INFO (application/dtmf-relay).
    let mut call = uac.call("pin", "info-1", &offer).await.map_err(|r| r.text).unwrap();
    for digit in ["4", "2"] {
        let r = uac
            .in_dialog(
                &mut call,
                "INFO",
                &format!("Signal={digit}\r\nDuration=160\r\n"),
                "application/dtmf-relay",
            )
            .await;
        assert_eq!(r.map(|r| r.status), Some(200));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while participants(&api, "pin").await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = participants(&api, "pin").await;
    assert_eq!(list.len(), 1, "the INFO PIN let the caller in");
    assert_eq!(list[0]["call_id"], "info-1");
    assert_eq!(list[0]["caller_id_name"], "Tester");
    assert_eq!(uac.in_dialog(&mut call, "BYE", "", "").await.map(|r| r.status), Some(200));

    // Offerless: our offer in the 200, the answer in the ACK.
    let answer = offer.clone();
    let mut call =
        uac.call_with_ack("open", "offerless-1", "", &answer).await.map_err(|r| r.text).unwrap();
    assert!(call.answer.contains("PCMU/8000"), "{}", call.answer);
    let deadline = Instant::now() + Duration::from_secs(5);
    while participants(&api, "open").await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = participants(&api, "open").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["rtp"]["codec"], "pcmu", "{}", list[0]);
    assert_eq!(uac.in_dialog(&mut call, "BYE", "", "").await.map(|r| r.status), Some(200));

    // Hold: a sendonly re-INVITE stops the mix coming; sendrecv brings it back. The UAC
    // sends RTP all along (the bridge sends only to a peer it hears: consent).
    let mut call = uac.call("open", "held-1", &offer).await.map_err(|r| r.text).unwrap();
    let bridge_rtp: SocketAddr = {
        let port = call
            .answer
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split(' ').next())
            .unwrap();
        format!("127.0.0.1:{port}").parse().unwrap()
    };
    let rtp = std::sync::Arc::new(rtp);
    let talker = {
        let rtp = rtp.clone();
        tokio::spawn(async move {
            let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
            packet.extend_from_slice(&[0xff; 160]);
            for seq in 0u16.. {
                packet[2..4].copy_from_slice(&seq.to_be_bytes());
                packet[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                let _ = rtp.send_to(&packet, bridge_rtp).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let received = |socket: &tokio::net::UdpSocket| {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while socket.try_recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(received(&rtp) > 10, "the mix comes");
    let r = uac.reinvite(&mut call, &offer.replace("a=sendrecv", "a=sendonly")).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body().contains("a=recvonly") && r.body().contains(" 2 IN IP4"), "{}", r.body());
    tokio::time::sleep(Duration::from_millis(100)).await;
    received(&rtp);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(received(&rtp), 0, "held: nothing is sent");
    let r = uac.reinvite(&mut call, &offer).await.unwrap();
    assert!(r.body().contains("a=sendrecv"), "{}", r.body());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(received(&rtp) > 10, "resumed");
    talker.abort();
    assert_eq!(uac.in_dialog(&mut call, "BYE", "", "").await.map(|r| r.status), Some(200));

    // A kick through the API sends the caller a BYE in its dialog.
    let _call = uac.call("open", "kicked-1", &offer).await.map_err(|r| r.text).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let id = loop {
        if let Some(p) = participants(&api, "open").await.first() {
            break p["participant_id"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "the call did not join");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let kick = json!({"action": "kick", "data": {}}).to_string();
    let r = api
        .call(
            "PUT",
            &format!("/v2/accounts/acc/conferences/open/participants/{id}"),
            None,
            Some(kick.as_bytes()),
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    let bye = uac.server_request(Duration::from_secs(5)).await.expect("a BYE after the kick");
    assert!(bye.starts_with("BYE sip:tester@"), "{bye}");
    assert!(bye.contains("Call-ID: kicked-1"), "{bye}");

    // Call cycles: INVITE, 200, ACK, BYE, 200.
    let cycles = 300;
    let start = Instant::now();
    for i in 0..cycles {
        let mut call =
            uac.call("open", &format!("cycle-{i}"), &offer).await.map_err(|r| r.text).unwrap();
        let bye = uac.in_dialog(&mut call, "BYE", "", "").await;
        assert_eq!(bye.map(|r| r.status), Some(200), "cycle {i}");
    }
    let per_cycle_ms = start.elapsed().as_secs_f64() * 1000.0 / f64::from(cycles);
    let deadline = Instant::now() + Duration::from_secs(5);
    while (registry.bridge().ports_in_use() > 0 || !participants(&api, "open").await.is_empty())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(participants(&api, "open").await.is_empty(), "no leg left");
    assert_eq!(registry.bridge().ports_in_use(), 0, "no port left");
    let entry = registry.get("acc", "open").unwrap();
    assert_eq!(entry.member_count(), 0, "no call metadata left");
    println!("{cycles} SIP call cycles, {per_cycle_ms:.1} ms each");
}

/// A `mixminus serve` process with SIP on (UDP), its API address and SIP address.
struct Serve {
    child: std::process::Child,
    api: SocketAddr,
    sip: SocketAddr,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TOKEN: &str = "sip-cycles-token";

impl Serve {
    /// SIP over UDP only.
    fn start(ports: (u16, u16)) -> Serve {
        Serve::start_with(ports, false)
    }

    /// SIP over UDP, and TCP on the same port when `tcp`.
    fn start_with(ports: (u16, u16), tcp: bool) -> Serve {
        let dir = std::env::temp_dir().join(format!(
            "mixminus-sip-serve-{}-{}",
            std::process::id(),
            ports.0
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let api = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let sip = loop {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
            if !tcp || std::net::TcpListener::bind(udp).is_ok() {
                break udp;
            }
        };
        let config = dir.join("mixminus.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"{api}\"\nrtp_ports = \"{}-{}\"\n\n[sip]\nlisten = \"{sip}\"\n\
                 tcp = {tcp}\ninvites_per_second = 100000\ninvite_burst = 100000\n\n\
                 [logging]\nfilter = \"error\"\n",
                ports.0, ports.1
            ),
        )
        .unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_mixminus"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("MIXMINUS_AUTH_TOKEN", TOKEN)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("mixminus serve starts");
        let serve = Serve { child, api, sip };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(api).is_err()
            || (tcp && std::net::TcpStream::connect(sip).is_err())
        {
            assert!(Instant::now() < deadline, "serve did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
        serve
    }

    fn api(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let request =
            ureq::request(method, &format!("http://{}{path}", self.api)).set("x-auth-token", TOKEN);
        let response = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        response.map(|r| r.into_json().unwrap_or(Value::Null)).unwrap_or(Value::Null)
    }

    fn metrics(&self) -> String {
        ureq::get(&format!("http://{}/metrics", self.api))
            .set("x-auth-token", TOKEN)
            .call()
            .map(|r| r.into_string().unwrap_or_default())
            .unwrap_or_default()
    }

    /// What the process holds: (open fds, of which sockets, threads, resident kB).
    fn holds(&self) -> (usize, usize, usize, u64) {
        let pid = self.child.id();
        let links: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|dir| {
                dir.filter_map(Result::ok)
                    .filter_map(|e| std::fs::read_link(e.path()).ok())
                    .map(|t| t.to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let sockets = links.iter().filter(|l| l.starts_with("socket:")).count();
        (links.len(), sockets, field("Threads:") as usize, field("VmRSS:"))
    }
}

/// The value of an unlabelled Prometheus sample `name` (0 when absent).
fn sample(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// INVITE / 200 / ACK / BYE / 200 against a real `serve`, `SIP_CYCLES` times (default
/// 500: well under a minute in debug); afterwards the process holds no more fds, sockets
/// or threads than after the warm-up, the conference has no participant, no call is
/// active and no RTP port is taken. `SIP_CYCLES=10000` is the full run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sip_call_cycles_against_serve_leak_no_leg_port_fd_or_thread() {
    let cycles: u32 = std::env::var("SIP_CYCLES").ok().and_then(|n| n.parse().ok()).unwrap_or(500);
    // 4 RTP port pairs: leaking one call's pair in four would exhaust the pool at once.
    let serve = Serve::start((16_300, 16_307));
    let created = serve.api(
        "PUT",
        "/v2/accounts/acc/conferences",
        Some(json!({"data": {"id": "cycles", "member": {"join_muted": false},
            "play_entry_tone": false, "play_exit_tone": false}})),
    );
    assert_eq!(created["data"]["id"], "cycles", "{created}");
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer = pcmu_offer(rtp.local_addr().unwrap());
    let mut uac = Uac::new("127.0.0.1:0", serve.sip).await;
    let participants = |serve: &Serve| {
        serve.api("GET", "/v2/accounts/acc/conferences/cycles/participants", None)["data"]
            .as_array()
            .map_or(usize::MAX, Vec::len)
    };
    // Warm-up: the runtime's threads, the conference's tick, first-use allocations.
    for i in 0..20 {
        cycle(&mut uac, &offer, i).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = serve.holds();
    let start = Instant::now();
    for i in 20..20 + cycles {
        cycle(&mut uac, &offer, i).await;
    }
    let elapsed = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let now = serve.holds();
        let settled = now.0 <= before.0 && now.2 <= before.2 && participants(&serve) == 0;
        if settled || Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let metrics = serve.metrics();
    println!(
        "{cycles} SIP call cycles against serve in {:.1} s ({:.2} ms each); \
         fds {} -> {}, sockets {} -> {}, threads {} -> {}, RSS {} -> {} kB",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / f64::from(cycles),
        before.0,
        after.0,
        before.1,
        after.1,
        before.2,
        after.2,
        before.3,
        after.3
    );
    assert_eq!(participants(&serve), 0, "no leg left");
    assert!(after.0 <= before.0, "fds: {} after, {} before", after.0, before.0);
    assert!(after.1 <= before.1, "sockets: {} after, {} before", after.1, before.1);
    assert!(after.2 <= before.2, "threads: {} after, {} before", after.2, before.2);
    assert_eq!(sample(&metrics, "mixminus_sip_active_calls"), 0.0, "{metrics}");
    let calls = sample(&metrics, "mixminus_sip_calls_total");
    assert_eq!(calls, f64::from(cycles + 20), "every cycle was a call");
    if cycles >= 2_000 {
        // The full run: is memory held, or only not yet given back? Server transactions
        // linger 32 s after their call (RFC 3261 Timer J / L); once they are gone, a second
        // batch as long as the first must fit in what the first left (the allocator keeps
        // freed pages, so RSS rises once and then stays).
        tokio::time::sleep(Duration::from_secs(40)).await;
        let rested = serve.holds().3;
        for i in 0..cycles {
            cycle(&mut uac, &offer, 20 + cycles + i).await;
        }
        tokio::time::sleep(Duration::from_secs(40)).await;
        let again = serve.holds().3;
        println!(
            "RSS after {cycles} more cycles: {rested} -> {again} kB (after the warm-up: {} kB)",
            before.3
        );
        let first = rested.saturating_sub(before.3);
        assert!(
            again <= rested + first / 4 + 4_096,
            "memory grows with calls: {} kB, then {rested} kB, then {again} kB",
            before.3
        );
    }
    // The pool has 4 pairs: four calls at once prove every one came back.
    let mut held = Vec::new();
    for i in 0..4 {
        match uac.call("cycles", &format!("last-{i}"), &offer).await {
            Ok(call) => held.push(call),
            Err(r) => panic!("RTP port pair {i} is not free after {cycles} cycles: {}", r.text),
        }
    }
    for mut call in held {
        assert_eq!(uac.in_dialog(&mut call, "BYE", "", "").await.map(|r| r.status), Some(200));
    }
}

/// One call cycle: INVITE, 200, ACK, BYE, 200.
async fn cycle(uac: &mut Uac, offer: &str, i: u32) {
    let mut call =
        uac.call("cycles", &format!("cycle-{i}"), offer).await.map_err(|r| r.text).unwrap();
    let bye = uac.in_dialog(&mut call, "BYE", "", "").await;
    assert_eq!(bye.map(|r| r.status), Some(200), "cycle {i}");
}

/// `offer` with its audio line's codec replaced: `payload_type`, `rtpmap`.
fn with_codec(offer: &str, payload_type: u8, rtpmap: &str) -> String {
    offer
        .lines()
        .map(|line| {
            if let Some(rest) = line.strip_prefix("m=audio ") {
                let port = rest.split(' ').next().unwrap_or("0");
                format!("m=audio {port} RTP/AVP {payload_type} 101\r\n")
            } else if line.starts_with("a=rtpmap:0 ") {
                format!("a=rtpmap:{payload_type} {rtpmap}\r\n")
            } else {
                format!("{line}\r\n")
            }
        })
        .collect()
}

/// The payload types of the RTP packets waiting on `socket`.
fn payload_types(socket: &tokio::net::UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 2048];
    let mut types = Vec::new();
    while let Ok((n, _)) = socket.try_recv_from(&mut buf) {
        if n >= 12 {
            types.push(buf[1] & 0x7f);
        }
    }
    types
}

/// The payload types the bridge sends during `window`, once `settle` has passed for a change
/// to take hold (what came before is drained and dropped).
async fn payload_types_after(
    socket: &tokio::net::UdpSocket,
    settle: Duration,
    window: Duration,
) -> Vec<u8> {
    tokio::time::sleep(settle).await;
    payload_types(socket);
    tokio::time::sleep(window).await;
    payload_types(socket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reinvite_with_another_codec_switches_the_leg_and_hold_still_works() {
    let (api, sip) = rig((16_320, 16_339), 10).await;
    let sip = sip.local_addr();
    create(&api, json!({"id": "codecs", "member": {"join_muted": false}})).await;
    let rtp = std::sync::Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let pcmu = pcmu_offer(rtp.local_addr().unwrap());
    let mut uac = Uac::new("127.0.0.1:0", sip).await;
    let mut call = uac.call("codecs", "codec-1", &pcmu).await.map_err(|r| r.text).unwrap();
    let port = |answer: &str| {
        answer
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .map(|l| l.split(' ').next().unwrap().to_owned())
    };
    let bridge_port = port(&call.answer).unwrap();
    let bridge_rtp: SocketAddr = format!("127.0.0.1:{bridge_port}").parse().unwrap();
    // The caller talks in whatever payload type `pt` holds (the bridge sends once it hears us).
    let pt = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0));
    let talker = {
        let (rtp, pt) = (rtp.clone(), pt.clone());
        tokio::spawn(async move {
            let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
            packet.extend_from_slice(&[0xd5; 160]);
            for seq in 0u16.. {
                packet[1] = pt.load(std::sync::atomic::Ordering::Relaxed);
                packet[2..4].copy_from_slice(&seq.to_be_bytes());
                packet[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                let _ = rtp.send_to(&packet, bridge_rtp).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let leg = |list: Vec<Value>| list.into_iter().next().unwrap_or(Value::Null);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let types = payload_types(&rtp);
    assert!(types.len() > 10 && types.iter().all(|&t| t == 0), "PCMU comes: {types:?}");
    let before = leg(participants(&api, "codecs").await);
    assert_eq!(before["rtp"]["codec"], "pcmu", "{before}");

    // DTMF on the joined leg (telephone-event, PT 101): three presses of three packets
    // each are three digits, not payload-type junk.
    for (press, event) in [1u8, 2, 11].into_iter().enumerate() {
        for copy in 0..3u16 {
            let mut packet = vec![0x80, 101, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
            packet[2..4].copy_from_slice(&(1000 + press as u16 * 3 + copy).to_be_bytes());
            packet[4..8].copy_from_slice(&(50_000 + press as u32 * 1_600).to_be_bytes());
            packet.extend_from_slice(&[event, if copy == 2 { 0x8a } else { 0x0a }, 0x03, 0x20]);
            rtp.send_to(&packet, bridge_rtp).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dtmf = leg(participants(&api, "codecs").await);
    assert_eq!(dtmf["rtp"]["dtmf_digits"], 3, "{dtmf}");

    // PCMU -> PCMA: answered with PCMA on the same port; the leg's decoder and encoder follow.
    let r = uac.reinvite(&mut call, &with_codec(&pcmu, 8, "PCMA/8000")).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.body().contains("a=rtpmap:8 PCMA/8000"), "{}", r.body());
    assert!(r.body().contains(" 2 IN IP4"), "a new SDP version: {}", r.body());
    assert_eq!(port(r.body()).as_deref(), Some(bridge_port.as_str()), "the same port");
    pt.store(8, std::sync::atomic::Ordering::Relaxed);
    let types =
        payload_types_after(&rtp, Duration::from_millis(200), Duration::from_millis(600)).await;
    assert!(types.len() > 10 && types.iter().all(|&t| t == 8), "PCMA comes: {types:?}");
    let after = leg(participants(&api, "codecs").await);
    assert_eq!(after["participant_id"], before["participant_id"], "the same participant");
    assert_eq!(
        (after["rtp"]["codec"].as_str(), after["rtp"]["payload_type"].as_u64()),
        (Some("pcma"), Some(8))
    );
    let received = after["playout"]["received"].as_u64().unwrap_or(0);
    assert!(received > 10, "the PCMA the caller sends is taken: {after}");

    // A codec we cannot take: 488, and the call stays as it was.
    let r = uac.reinvite(&mut call, &with_codec(&pcmu, 18, "G729/8000")).await.unwrap();
    assert_eq!(r.status, 488, "{}", r.text);
    let types =
        payload_types_after(&rtp, Duration::from_millis(100), Duration::from_millis(400)).await;
    assert!(types.len() > 5 && types.iter().all(|&t| t == 8), "still PCMA: {types:?}");

    // Hold still works after a switch, and so does Opus (48 kHz clock).
    let held = with_codec(&pcmu, 8, "PCMA/8000").replace("a=sendrecv", "a=sendonly");
    let r = uac.reinvite(&mut call, &held).await.unwrap();
    assert!(r.status == 200 && r.body().contains("a=recvonly"), "{}", r.text);
    assert_eq!(
        payload_types_after(&rtp, Duration::from_millis(100), Duration::from_millis(500)).await,
        Vec::<u8>::new(),
        "held: nothing is sent"
    );
    let opus = with_codec(&pcmu, 111, "opus/48000/2");
    let r = uac.reinvite(&mut call, &opus).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        r.body().contains("a=rtpmap:111 opus/48000/2") && r.body().contains("a=sendrecv"),
        "{}",
        r.body()
    );
    pt.store(111, std::sync::atomic::Ordering::Relaxed);
    let types =
        payload_types_after(&rtp, Duration::from_millis(200), Duration::from_millis(600)).await;
    assert!(types.len() > 10 && types.iter().all(|&t| t == 111), "Opus comes, resumed: {types:?}");
    let opus_leg = leg(participants(&api, "codecs").await);
    assert_eq!(opus_leg["rtp"]["codec"], "opus", "{opus_leg}");
    assert_eq!(opus_leg["participant_id"], before["participant_id"]);
    talker.abort();
    assert_eq!(uac.in_dialog(&mut call, "BYE", "", "").await.map(|r| r.status), Some(200));
}

/// An `Authorization` header line answering `nonce` for an INVITE to `uri`.
fn authorization(algorithm: &str, user: &str, password: &str, nonce: &str, uri: &str) -> String {
    let hash = match algorithm {
        "MD5" => DigestAlgorithm::Md5,
        _ => DigestAlgorithm::Sha256,
    };
    let ha1 = hash.hex(&format!("{user}:mixminus:{password}"));
    let ha2 = hash.hex(&format!("INVITE:{uri}"));
    let response = hash.hex(&format!("{ha1}:{nonce}:00000001:4a1f:auth:{ha2}"));
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"mixminus\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm={algorithm}, qop=auth, nc=00000001, \
         cnonce=\"4a1f\"\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_authentication_refuses_a_wrong_password_and_admits_the_right_one() {
    let mut config = SipConfig::default();
    config.auth_users = BTreeMap::from([("alice".to_owned(), Password::new("wonderland"))]);
    config.auth_sha256 = true;
    let (api, server) = rig_with((16_340, 16_349), config).await;
    let sip = server.local_addr();
    create(&api, json!({"id": "secure"})).await;
    let offer = pcmu_offer("127.0.0.1:4000".parse().unwrap());
    let mut uac = Uac::new("127.0.0.1:0", sip).await;
    let uri = format!("sip:secure@{sip}");

    // No credentials: 401 with a SHA-256 challenge, then an MD5 one.
    let (r, _) = uac.invite("secure", "auth-1", &offer).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let challenges: Vec<&str> =
        r.text.lines().filter_map(|l| l.strip_prefix("WWW-Authenticate: ")).collect();
    assert_eq!(challenges.len(), 2, "{}", r.text);
    assert!(challenges[0].contains("algorithm=SHA-256") && challenges[1].contains("algorithm=MD5"));
    assert!(challenges[1].contains("realm=\"mixminus\"") && challenges[1].contains("qop=\"auth\""));
    let nonce =
        challenges[1].split("nonce=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    // An unknown number without credentials is challenged too: no probing for numbers.
    assert_eq!(uac.invite("nobody", "auth-2", &offer).await.0.status, 401);

    // A wrong password, or an unknown user: challenged again, nobody joins.
    uac.extra_headers = authorization("MD5", "alice", "looking-glass", &nonce, &uri);
    assert_eq!(uac.invite("secure", "auth-3", &offer).await.0.status, 401);
    uac.extra_headers = authorization("MD5", "mallory", "wonderland", &nonce, &uri);
    assert_eq!(uac.invite("secure", "auth-4", &offer).await.0.status, 401);
    assert!(participants(&api, "secure").await.is_empty());

    // The right one (MD5, then SHA-256): the call joins.
    for (i, algorithm) in ["MD5", "SHA-256"].into_iter().enumerate() {
        uac.extra_headers = authorization(algorithm, "alice", "wonderland", &nonce, &uri);
        let mut call =
            uac.call("secure", &format!("auth-ok-{i}"), &offer).await.map_err(|r| r.text).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while participants(&api, "secure").await.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(participants(&api, "secure").await.len(), 1, "{algorithm} admits");
        uac.extra_headers.clear();
        assert_eq!(uac.in_dialog(&mut call, "BYE", "", "").await.map(|r| r.status), Some(200));
    }
}

/// `offer` offering PCMA only.
fn pcma_offer(rtp: SocketAddr) -> String {
    with_codec(&pcmu_offer(rtp), 8, "PCMA/8000")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_decide_the_role_full_says_why_pcma_joins_and_hangups_before_joining_leak_nothing()
{
    let (api, sip) = rig((16_350, 16_369), 1_000).await;
    let sip = sip.local_addr();
    let registry = api.registry.clone();
    create(
        &api,
        json!({"id": "roles", "member": {"numbers": ["2000"]}, "moderator": {"numbers": ["2001"]},
            "max_participants": 2}),
    )
    .await;
    create(&api, json!({"id": "lobby", "member": {"pins": ["1234"]}})).await;
    let offer = pcma_offer("127.0.0.1:4000".parse().unwrap());
    let mut uac = Uac::new("127.0.0.1:0", sip).await;
    let until = |n: usize, conference: &'static str| {
        let api = &api;
        async move {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let list = participants(api, conference).await;
                if list.len() == n || Instant::now() > deadline {
                    return list;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // A member number joins as member, a moderator number as moderator; PCMA is taken.
    let mut member = uac.call("2000", "role-member", &offer).await.map_err(|r| r.text).unwrap();
    assert!(member.answer.contains("a=rtpmap:8 PCMA/8000"), "{}", member.answer);
    let mut moderator = uac.call("+2001", "role-mod", &offer).await.map_err(|r| r.text).unwrap();
    let list = until(2, "roles").await;
    let role = |call_id: &str| {
        let p = list.iter().find(|p| p["call_id"] == call_id).cloned().unwrap_or(Value::Null);
        (
            p["conference_channel_vars"]["is_moderator"].as_bool(),
            p["rtp"]["codec"].as_str().map(str::to_owned),
        )
    };
    assert_eq!(role("role-member"), (Some(false), Some("pcma".into())), "{list:?}");
    assert_eq!(role("role-mod"), (Some(true), Some("pcma".into())), "{list:?}");

    // Full: 486 with its reason phrase.
    let (r, _) = uac.invite("2000", "role-third", &offer).await;
    assert_eq!(r.text.lines().next(), Some("SIP/2.0 486 Conference Full"), "{}", r.text);
    assert_eq!(uac.in_dialog(&mut member, "BYE", "", "").await.map(|r| r.status), Some(200));
    assert_eq!(uac.in_dialog(&mut moderator, "BYE", "", "").await.map(|r| r.status), Some(200));

    // The caller hangs up in the PIN lobby: it never joins, its ports come back.
    let mut waiting = uac.call("lobby", "lobby-bye", &offer).await.map_err(|r| r.text).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(registry.bridge().ports_in_use() > 0, "the lobby holds the caller's ports");
    assert_eq!(uac.in_dialog(&mut waiting, "BYE", "", "").await.map(|r| r.status), Some(200));

    // CANCEL right behind the INVITE: 487 if it arrives first, else the call is up and
    // ends by BYE; either way nothing is left.
    let mut outcomes = [0u32; 2];
    for i in 0..5 {
        let call_id = format!("cancel-{i}");
        let local = uac.local();
        let uri = format!("sip:lobby@{sip}");
        let head = |method: &str| {
            format!(
                "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKcancel{i}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:t@{local}>;tag=c{i}\r\nTo: <{uri}>\r\n\
                 Call-ID: {call_id}\r\nCSeq: 1 {method}\r\nContact: <sip:t@{local}>\r\n"
            )
        };
        let invite = format!(
            "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
            head("INVITE"),
            offer.len()
        );
        uac.send_raw(invite.as_bytes()).await;
        uac.send_raw(format!("{}Content-Length: 0\r\n\r\n", head("CANCEL")).as_bytes()).await;
        let mut statuses = Vec::new();
        while let Some(r) = uac.response(Duration::from_millis(500)).await {
            statuses.push((r.status, r.header("CSeq").unwrap_or_default().to_owned()));
            if r.status == 200 && r.text.contains("CSeq: 1 INVITE") {
                // Too late to cancel: ACK and hang up like a caller would.
                let to = r.header("To").unwrap_or_default().to_owned();
                let contact = r
                    .header("Contact")
                    .and_then(|c| c.split('<').nth(1))
                    .and_then(|c| c.split('>').next())
                    .unwrap_or_default()
                    .to_owned();
                let mut call = common::sipua::Dialog {
                    call_id: call_id.clone(),
                    from_tag: format!("c{i}"),
                    to,
                    target: contact,
                    cseq: 2,
                    answer: String::new(),
                };
                let ack = format!(
                    "ACK {} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKack{i}\r\n\
                     From: <sip:t@{local}>;tag=c{i}\r\nTo: {}\r\nCall-ID: {call_id}\r\n\
                     CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
                    call.target, call.to
                );
                uac.send_raw(ack.as_bytes()).await;
                let _ = uac.in_dialog(&mut call, "BYE", "", "").await;
                break;
            }
            if r.status == 487 {
                let to = r.header("To").unwrap_or_default().to_owned();
                let ack = format!(
                    "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKcancel{i}\r\n\
                     From: <sip:t@{local}>;tag=c{i}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
                     CSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
                );
                uac.send_raw(ack.as_bytes()).await;
            }
        }
        let cancelled = statuses.iter().any(|(s, c)| *s == 487 && c.contains("INVITE"));
        let answered = statuses.iter().any(|(s, c)| *s == 200 && c.contains("INVITE"));
        assert!(cancelled || answered, "{statuses:?}");
        outcomes[usize::from(answered)] += 1;
    }
    // The server answers within a millisecond, so the CANCEL usually comes too late; the
    // point is that neither outcome leaves anything behind.
    println!(
        "CANCEL behind INVITE: {} cancelled (487), {} too late (200, BYE)",
        outcomes[0], outcomes[1]
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while registry.bridge().ports_in_use() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(registry.bridge().ports_in_use(), 0, "no port left");
    assert!(participants(&api, "lobby").await.is_empty());
    assert!(participants(&api, "roles").await.is_empty());
}

/// The value of `name{…}` with every label pair in `labels`, whatever their order (0 when
/// absent).
fn labelled(metrics: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{')))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.trim().parse::<f64>().ok()))
        .sum()
}

/// `n` bytes no SIP or STUN parser takes: pseudo-random, seeded, with no CR or LF and a
/// first byte that is neither a SIP method's nor STUN's.
fn junk(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut bytes: Vec<u8> = (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .map(|b| if b == b'\r' || b == b'\n' { b'.' } else { b })
        .collect();
    bytes[0] = 0xff;
    bytes
}

/// A SIP request from `local` over `transport` with these header lines (each ending in
/// CRLF) between the request line and `Content-Length`, and a body.
fn raw_request(
    transport: &str,
    local: SocketAddr,
    branch: &str,
    headers: &str,
    body: &str,
) -> String {
    format!(
        "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/{transport} {local};branch=z9hG4bK{branch};rport\r\n\
         {headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const BASE: &str = "From: <sip:t@127.0.0.1>;tag=f1\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: CALLID\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n";

/// Against a real `mixminus serve` with SIP over UDP and TCP: junk, requests without
/// base headers, truncated and oversized messages are counted per transport and reason in
/// `mixminus_sip_malformed_total` (UDP: answered `400` / `513` when a Via and CSeq say
/// where, else dropped; TCP: ezk closes a stream that does not frame), keep-alives are
/// not counted, and OPTIONS still gets 200 on both transports afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sip_is_counted_per_transport_and_answered_where_addressable_against_serve() {
    let serve = Serve::start_with((16_310, 16_313), true);
    let uac = Uac::new("127.0.0.1:0", serve.sip).await;
    let local = uac.local();
    let count = |metrics: &str, transport: &str, reason: &str| {
        labelled(
            metrics,
            "mixminus_sip_malformed_total",
            &[("transport", transport), ("reason", reason)],
        )
    };
    let before = serve.metrics();

    // UDP. Random junk: dropped (nothing addresses an answer).
    for seed in 1..=3 {
        uac.send_raw(&junk(seed, 300)).await;
    }
    // A message cut inside its head.
    let cut = raw_request("UDP", local, "cut", BASE, "");
    uac.send_raw(&cut.as_bytes()[..cut.len() / 2]).await;
    // No Via and no CSeq: dropped.
    let bare = "OPTIONS sip:ping@127.0.0.1 SIP/2.0\r\nFrom: <sip:t@x>;tag=1\r\nTo: <sip:p@x>\r\nCall-ID: b\r\nContent-Length: 0\r\n\r\n";
    uac.send_raw(bare.as_bytes()).await;
    assert!(uac.response(Duration::from_millis(500)).await.is_none(), "nothing to answer to");
    // Via and CSeq but no Call-ID: 400, to us.
    let no_call_id =
        raw_request("UDP", local, "nocid", &BASE.replace("Call-ID: CALLID\r\n", ""), "");
    uac.send_raw(no_call_id.as_bytes()).await;
    let r =
        uac.response(Duration::from_secs(3)).await.expect("a 400 for a request without Call-ID");
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("branch=z9hG4bKnocid") && r.text.contains("CSeq: 1 OPTIONS"),
        "{}",
        r.text
    );
    // A body shorter than its Content-Length: 400 (RFC 3261 §18.3).
    let truncated = raw_request("UDP", local, "trunc", &BASE.replace("CALLID", "t"), "0123456789");
    let truncated = truncated.replace("Content-Length: 10", "Content-Length: 200");
    uac.send_raw(truncated.as_bytes()).await;
    assert_eq!(uac.response(Duration::from_secs(3)).await.map(|r| r.status), Some(400));
    // Over max_message_bytes (16 KiB by default): 513.
    let big = raw_request("UDP", local, "big", &BASE.replace("CALLID", "g"), &"a".repeat(20_000));
    uac.send_raw(big.as_bytes()).await;
    assert_eq!(uac.response(Duration::from_secs(3)).await.map(|r| r.status), Some(513));
    // A keep-alive is answered and not counted.
    uac.send_raw(b"\r\n\r\n").await;
    let mut pong = [0u8; 16];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), uac.socket.recv_from(&mut pong))
        .await
        .expect("a CRLF pong")
        .unwrap();
    assert_eq!(&pong[..n], b"\r\n");
    let mut uac = uac;
    assert_eq!(uac.options().await.map(|r| r.status), Some(200), "OPTIONS over UDP after it all");

    // TCP. Junk up to a blank line: the stream is closed.
    let mut tcp = tokio::net::TcpStream::connect(serve.sip).await.unwrap();
    let mut bytes = junk(4, 300);
    bytes.extend_from_slice(b"\r\n\r\n");
    tcp.write_all(&bytes).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "junk closes the stream");
    // More than 65535 bytes that never make a head: closed.
    let mut tcp = tokio::net::TcpStream::connect(serve.sip).await.unwrap();
    let _ = tcp.write_all(&vec![b'A'; 70_000]).await;
    let closed = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "an oversized head closes the stream");
    // No Via and no CSeq on a good stream: dropped; then OPTIONS on the same stream: 200.
    let mut tcp = tokio::net::TcpStream::connect(serve.sip).await.unwrap();
    let tcp_local = tcp.local_addr().unwrap();
    tcp.write_all(bare.as_bytes()).await.unwrap();
    let options = raw_request("TCP", tcp_local, "tcpok", &BASE.replace("CALLID", "tcp-ok"), "");
    tcp.write_all(options.as_bytes()).await.unwrap();
    // ezk pings a new stream with CRLF CRLF (RFC 5626) first: read past it.
    let mut received = Vec::new();
    let mut chunk = vec![0u8; 4096];
    let text = loop {
        let n = tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut chunk))
            .await
            .expect("an answer over TCP")
            .unwrap();
        assert!(n > 0, "the stream stays open");
        received.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&received).trim_start().to_owned();
        if text.contains("\r\n\r\n") {
            break text;
        }
    };
    assert!(text.starts_with("SIP/2.0 200 "), "OPTIONS over TCP after it all: {text}");
    assert!(text.contains("branch=z9hG4bKtcpok"), "{text}");

    // The counts, once ezk's tasks have logged (they run apart from the socket).
    let expected = [
        ("udp", "unparseable", 4.0),
        ("udp", "missing_headers", 2.0),
        ("udp", "truncated", 1.0),
        ("udp", "oversized", 1.0),
        ("tcp", "unparseable", 1.0),
        ("tcp", "oversized", 1.0),
        ("tcp", "missing_headers", 1.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let metrics = serve.metrics();
        let all =
            expected.iter().all(|(t, r, n)| count(&metrics, t, r) - count(&before, t, r) >= *n);
        if all || Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (transport, reason, n) in expected {
        let counted = count(&metrics, transport, reason) - count(&before, transport, reason);
        assert_eq!(counted, n, "{transport} {reason}:\n{metrics}");
    }
    let answered =
        labelled(&metrics, "mixminus_sip_malformed_answered_total", &[("transport", "udp")]);
    assert_eq!(answered, 3.0, "two 400s and a 513:\n{metrics}");
    assert_eq!(count(&metrics, "udp", "stun"), 0.0);
}
