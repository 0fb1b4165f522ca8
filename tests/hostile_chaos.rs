//! Chaos (issue 11): every attack of the hostile-network issue at once, against another
//! account's 100-participant conference on a real `mixminus serve` process.
//!
//! While the victim's participants talk and listen (plain RTP, PCMU, three talkers), for the
//! same window:
//! - a stranger on 127.0.0.2 floods junk (random bytes, RTP-looking packets, oversized
//!   datagrams, RTCP BYEs for random SSRCs) at one talker's RTP and RTCP ports, and more junk
//!   spread over every port of the range;
//! - a heavy tenant (`mallory`, its own token) loops over creating conferences past its
//!   quota, joins that name a third party's address (a reflection attempt), oversized
//!   document edits, relate lists full of duplicates and listings of everything it owns;
//! - idle TCP connections from 127.0.0.2 past the per-address limit, and slowloris clients
//!   that trickle a request head byte by byte.
//!
//! Then every one of the victim's participants must have received its frames (the bridge
//! sends each one a frame per tick), a listener must still hear the three talkers, the
//! victim's API must answer within a second, and the third party must have received nothing.
//!
//! `chaos_fast` (CI) runs 4 s of attack at reduced rates; `chaos_soak` (ignored) runs the
//! issue's 60 s at 20,000 datagrams/s on one port plus 20,000/s spread:
//! `cargo test --release --test hostile_chaos -- --ignored --nocapture`.

use std::io::Write;
use std::net::{SocketAddr, TcpStream as StdTcpStream, UdpSocket as StdUdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use mixminus::rtp::client::{ToneClient, ToneClientConfig};
use mixminus::rtp::{CodecKind, CodecParams};
use serde_json::{json, Value};

const VICTIM: &str = "victim-token-0123456789";
const MALLORY: &str = "mallory-token-0123456789";
const STRANGER: &str = "127.0.0.2";
const TONES: [f32; 3] = [400.0, 700.0, 1_000.0];
const PARTICIPANTS: usize = 100;

/// How hard and how long the attack is.
struct Attack {
    seconds: u64,
    flood_one_port_pps: u64,
    flood_spread_pps: u64,
    idle_connections: usize,
    min_heard: f64,
}

struct Serve {
    child: Child,
    api: SocketAddr,
    dir: std::path::PathBuf,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start_serve(ports: (u16, u16)) -> Serve {
    let api = SocketAddr::from(([127, 0, 0, 1], free_tcp_port()));
    let dir =
        std::env::temp_dir().join(format!("mixminus-chaos-{}-{}", std::process::id(), ports.0));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("chaos.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"{api}\"\nrtp_ports = \"{}-{}\"\nhttp_max_connections_per_ip = 256\n\
             http_header_timeout_secs = 2\n\n[quotas]\nconferences_per_account = 3\n\
             participants_per_account = 120\nrelationships_per_conference = 20000\n\n\
             [[tokens]]\ntoken = \"{VICTIM}\"\naccounts = [\"victim\"]\n\n\
             [[tokens]]\ntoken = \"{MALLORY}\"\naccounts = [\"mallory\"]\n\n\
             [logging]\nfilter = \"error\"\n",
            ports.0, ports.1
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_mixminus"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .spawn()
        .expect("mixminus serve starts");
    let serve = Serve { child, api, dir };
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(api).await.is_err() {
        assert!(Instant::now() < deadline, "serve did not start listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serve
}

/// One request on a fresh connection: (status, body), or status 0 when it failed or took
/// longer than 10 s.
async fn call(
    api: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(api).await.ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
        tokio::spawn(conn);
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", api.to_string())
            .header("x-auth-token", token)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
            .ok()?;
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or((0, Value::Null))
}

/// Junk datagrams, paced, from a stranger's address, on a thread of their own.
struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Flood {
    fn start(targets: Vec<SocketAddr>, pps: u64) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop_flag, counter) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let socket = StdUdpSocket::bind((STRANGER, 0)).unwrap();
            let started = Instant::now();
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            let mut i = 0u64;
            while !stop_flag.load(Ordering::Relaxed) {
                // Pace: never ahead of `pps`.
                let due = started + Duration::from_secs_f64(i as f64 / pps as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait.min(Duration::from_millis(5)));
                    continue;
                }
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let datagram = junk(i, seed);
                let target = targets[(seed % targets.len() as u64) as usize];
                let _ = socket.send_to(&datagram, target);
                i += 1;
                counter.store(i, Ordering::Relaxed);
            }
        });
        Flood { stop, sent, thread }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.sent.load(Ordering::Relaxed)
    }
}

fn junk(i: u64, r: u64) -> Vec<u8> {
    let len = (r % 200) as usize + 4;
    let mut bytes: Vec<u8> = (0..len).map(|k| (r.rotate_left(k as u32 % 64) >> 5) as u8).collect();
    match i % 5 {
        0 => {}
        1 => {
            // RTP v2 with PCMU's payload type and a random SSRC: it could latch an unlatched
            // leg, were any left.
            bytes.resize(bytes.len().max(172), 0);
            bytes[0] = 0x80;
            bytes[1] = 0;
        }
        2 => bytes = vec![0x80; 1600],
        3 => {
            bytes = vec![0x81, 203, 0, 1];
            bytes.extend_from_slice(&(r as u32).to_be_bytes());
        }
        _ => bytes.truncate(3),
    }
    bytes
}

/// The heavy tenant: everything its token allows it, as fast as the API answers, until
/// told to stop. Returns the statuses it got.
async fn mallory(api: SocketAddr, third_party: SocketAddr, stop: Arc<AtomicBool>) -> Vec<u16> {
    let base = "/v2/accounts/mallory/conferences";
    let mut statuses = Vec::new();
    let mut n = 0u32;
    let mut own: Vec<String> = Vec::new();
    let mut legs: Vec<u64> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        // Conferences, past the quota of 3.
        let (status, body) =
            call(api, MALLORY, "PUT", base, Some(json!({"data": {"name": format!("m{n}")}}))).await;
        statuses.push(status);
        if let Some(id) = body["data"]["id"].as_str() {
            own.push(id.to_owned());
        }
        let Some(conf) = own.first().cloned() else { continue };
        let participants = format!("{base}/{conf}/participants");
        // A join naming a third party's address: it must get nothing.
        let (status, body) = call(
            api,
            MALLORY,
            "PUT",
            &participants,
            Some(json!({"data": {"action": "join",
            "data": {"rtp": {"codec": "l16", "remote_ip": third_party.ip().to_string(),
                "remote_port": third_party.port()}}}})),
        )
        .await;
        statuses.push(status);
        if let Some(id) = body["data"]["participant_id"].as_u64() {
            legs.push(id);
        }
        // An oversized edit (past the 64 KiB document bound) and a large one within it.
        let big = "x".repeat(if n % 2 == 0 { 70_000 } else { 30_000 });
        let (status, _) = call(
            api,
            MALLORY,
            "PATCH",
            &format!("{base}/{conf}"),
            Some(json!({"data": {"junk": big}})),
        )
        .await;
        statuses.push(status);
        // Relate lists full of duplicates.
        if legs.len() >= 2 {
            let many: Vec<u64> = legs.iter().cycle().take(2_000).copied().collect();
            let (status, _) = call(api, MALLORY, "PUT", &participants, Some(json!({"data": {"action": "relate",
                "data": {"participant_id": many, "other_participant": many, "relationship": "deaf"}}}))).await;
            statuses.push(status);
        }
        // Listings of everything it owns.
        for path in [base.to_owned(), participants.clone(), format!("{base}/{conf}")] {
            let (status, _) = call(api, MALLORY, "GET", &path, None).await;
            statuses.push(status);
        }
    }
    statuses
}

/// TCP connections from the stranger's address that send nothing, and slowloris clients
/// that trickle a request head. Returns (held, refused at connect).
fn idle_connections(
    api: SocketAddr,
    count: usize,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(usize, usize)> {
    std::thread::spawn(move || {
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..count {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            let stranger: SocketAddr = format!("{STRANGER}:0").parse().unwrap();
            socket.bind(&stranger.into()).unwrap();
            match socket.connect_timeout(&api.into(), Duration::from_secs(1)) {
                Ok(()) => held.push(StdTcpStream::from(socket)),
                Err(_) => refused += 1,
            }
        }
        // The first few trickle a request head, a byte every 200 ms.
        let head = b"GET /v2/accounts/victim/conferences HTTP/1.1\r\nhost: x\r\n";
        let mut k = 0;
        while !stop.load(Ordering::Relaxed) {
            for stream in held.iter_mut().take(8) {
                let _ = stream.write_all(&head[k % head.len()..k % head.len() + 1]);
            }
            k += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
        (held.len(), refused)
    })
}

async fn chaos(attack: Attack, ports: (u16, u16)) {
    let serve = start_serve(ports).await;
    let api = serve.api;
    let base = "/v2/accounts/victim/conferences";
    let (status, body) = call(
        api,
        VICTIM,
        "PUT",
        base,
        // A narrowband conference: PCMU legs need no resampling, so the debug build CI runs
        // carries 100 participants on its share of two cores.
        Some(json!({"data": {"name": "chaos", "profile": {"rate": 8000},
        "member": {"join_muted": false}, "play_entry_tone": false, "play_exit_tone": false}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let conf = body["data"]["id"].as_str().unwrap().to_owned();
    let participants = format!("{base}/{conf}/participants");

    let pcmu = CodecParams::new(CodecKind::Pcmu);
    let mut clients = Vec::new();
    for i in 0..PARTICIPANTS {
        let (status, body) = call(
            api,
            VICTIM,
            "PUT",
            &participants,
            Some(json!({"data": {"action": "join",
            "data": {"call_id": format!("victim-{i}"), "rtp": {"codec": "pcmu"}}}})),
        )
        .await;
        assert_eq!(status, 201, "join {i}: {body}");
        let local: SocketAddr = format!(
            "{}:{}",
            body["data"]["rtp"]["local_ip"].as_str().unwrap(),
            body["data"]["rtp"]["local_port"]
        )
        .parse()
        .unwrap();
        let mut config = ToneClientConfig::new(pcmu, TONES.get(i).copied());
        // PCMU's own rate: no resampling in the clients (100 of them share the test's two
        // workers with everything else).
        config.pcm_rate = 8_000;
        let client =
            ToneClient::start(config, "127.0.0.1:0".parse().unwrap(), local).await.unwrap();
        clients.push((client, local));
    }
    // The third party a reflection attempt names: it counts what reaches it.
    let third_party = tokio::net::UdpSocket::bind("127.0.0.3:0").await.unwrap();
    let third_party_addr = third_party.local_addr().unwrap();
    let reflected = Arc::new(AtomicU64::new(0));
    let counter = reflected.clone();
    let sink = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = third_party.recv_from(&mut buf).await {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    });
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let window = Duration::from_secs(attack.seconds);
    // Each participant's share of the frames the bridge owed it since `start` (one per
    // 20 ms tick).
    let share_heard = |start: &(Vec<u64>, Instant), end: &[u64]| -> Vec<f64> {
        let expected = start.1.elapsed().as_secs_f64() / 0.020;
        end.iter().zip(&start.0).map(|(end, start)| (end - start) as f64 / expected).collect()
    };
    let received = |clients: &[(ToneClient, SocketAddr)]| -> Vec<u64> {
        clients.iter().map(|(c, _)| c.packets_received()).collect()
    };
    // A calm window first: what the machine itself costs.
    let calm_start = (received(&clients), Instant::now());
    tokio::time::sleep(window).await;
    let calm = share_heard(&calm_start, &received(&clients));

    // Everything at once.
    let stop = Arc::new(AtomicBool::new(false));
    let talker_rtp = clients[0].1;
    let talker_rtcp = SocketAddr::new(talker_rtp.ip(), talker_rtp.port() + 1);
    let one_port = Flood::start(vec![talker_rtp, talker_rtcp], attack.flood_one_port_pps);
    let every_port: Vec<SocketAddr> =
        (ports.0..=ports.1).map(|p| SocketAddr::new(talker_rtp.ip(), p)).collect();
    let spread = Flood::start(every_port, attack.flood_spread_pps);
    let idle = idle_connections(api, attack.idle_connections, stop.clone());
    let tenants: Vec<_> =
        (0..3).map(|_| tokio::spawn(mallory(api, third_party_addr, stop.clone()))).collect();
    let attack_start = (received(&clients), Instant::now());
    let started = attack_start.1;
    let mut slowest_api = Duration::ZERO;
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let asked = Instant::now();
        let (status, _) = call(api, VICTIM, "GET", &format!("{base}/{conf}"), None).await;
        slowest_api = slowest_api.max(asked.elapsed());
        assert_eq!(status, 200, "the victim's API answers during the attack");
    }
    let heard = share_heard(&attack_start, &received(&clients));
    let listener_levels = clients[50].0.tone_levels(&TONES);
    stop.store(true, Ordering::Relaxed);
    let flooded = one_port.finish() + spread.finish();
    let (held, refused) = idle.join().unwrap();
    let mut statuses = Vec::new();
    for tenant in tenants {
        statuses.extend(tenant.await.unwrap());
    }
    sink.abort();

    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let worst = heard.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap();
    let mut by_status = std::collections::BTreeMap::new();
    for s in &statuses {
        *by_status.entry(*s).or_insert(0u32) += 1;
    }
    println!(
        "chaos: {} s, {flooded} junk datagrams ({:.0}/s), {held} idle connections held ({refused} refused), \
         mallory's {} requests by status {by_status:?}; frames heard per participant: calm min {:.1} %, \
         attacked min {:.1} % (participant {worst}), mean {:.2} %; a listener hears the talkers at {:?} dB; \
         slowest victim API answer {slowest_api:?}; bytes reflected to the third party: {}",
        attack.seconds,
        flooded as f64 / window.as_secs_f64(),
        statuses.len(),
        100.0 * min(&calm),
        100.0 * heard[worst],
        100.0 * heard.iter().sum::<f64>() / heard.len() as f64,
        listener_levels.iter().map(|l| l.round()).collect::<Vec<_>>(),
        reflected.load(Ordering::Relaxed),
    );
    assert!(
        heard[worst] >= attack.min_heard,
        "participant {worst} heard {:.1} % of its frames under attack (calm: {:.1} %)",
        100.0 * heard[worst],
        100.0 * calm[worst]
    );
    for (tone, level) in TONES.iter().zip(&listener_levels) {
        assert!(*level > -40.0, "a listener still hears the {tone} Hz talker: {level:.1} dB");
    }
    assert!(slowest_api < Duration::from_secs(1), "the victim's API answered in {slowest_api:?}");
    assert_eq!(reflected.load(Ordering::Relaxed), 0, "the bridge sent a third party nothing");
    assert!(statuses.iter().any(|&s| s == 429 || s == 403 || s == 409), "mallory met its quota");
    assert!(statuses.contains(&413), "mallory's oversized edit was refused");
    assert!(!statuses.contains(&500), "no request made the server fail");
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_fast() {
    let attack = Attack {
        seconds: 4,
        flood_one_port_pps: 5_000,
        flood_spread_pps: 5_000,
        idle_connections: 300,
        // A debug build on a 2-core CI machine whose two cores also run the attackers (the
        // flood threads, mallory's HTTP loops) and the 100 clients: on this VM, calm 100 %,
        // attacked 95-100 %, all participants alike (the tick loop starved of CPU, not
        // frames taken by the attack). The soak run asserts the 99 %.
        min_heard: 0.90,
    };
    chaos(attack, (35_000, 35_399)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "60 s at full rate: cargo test --release --test hostile_chaos -- --ignored --nocapture"]
async fn chaos_soak() {
    let attack = Attack {
        seconds: 60,
        flood_one_port_pps: 20_000,
        flood_spread_pps: 20_000,
        idle_connections: 2_000,
        min_heard: 0.99,
    };
    chaos(attack, (35_400, 35_799)).await;
}
