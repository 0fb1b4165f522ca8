//! End to end: `mixminus serve` as a process, a conference created over HTTP, two synthetic
//! participants and two GStreamer clients (`opusenc ! rtpopuspay ! udpsink`,
//! `udpsrc ! rtpopusdepay ! opusdec`) joined, and what each one hears checked from its
//! decoded audio, before and after `relate`; then SIGTERM and a clean exit.
//!
//! Skipped (with a note) when `gst-launch-1.0` is missing; `.ci/run` installs it.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use mixminus_rtp::client::{ToneClient, ToneClientConfig};
use mixminus_rtp::dsp::tone_dbfs;
use mixminus_rtp::{CodecKind, CodecParams};
use serde_json::{json, Value};

const TOKEN: &str = "e2e-token";
const HEARD_DB: f64 = -30.0;
const SILENT_DB: f64 = -45.0;
const TONES: [f32; 4] = [350.0, 520.0, 770.0, 1_150.0];

struct Killer(Vec<Child>);

impl Drop for Killer {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port(udp: bool) -> u16 {
    if udp {
        UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect to serve");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("x-auth-token", TOKEN)
        .body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// The last 600 ms a GStreamer client decoded (S16LE mono 48 kHz raw file).
fn gst_levels(file: &Path) -> Vec<f64> {
    let bytes = std::fs::read(file).unwrap_or_default();
    let pcm: Vec<i16> = bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    let tail = &pcm[pcm.len().saturating_sub(28_800)..];
    TONES.iter().map(|&hz| tone_dbfs(tail, 48_000, hz)).collect()
}

fn check(who: usize, levels: &[f64], expect: [bool; 4], failures: &mut Vec<String>) {
    for (s, (&db, &want)) in levels.iter().zip(expect.iter()).enumerate() {
        if s == who {
            continue;
        }
        let ok = if want { db >= HEARD_DB } else { db <= SILENT_DB };
        if !ok {
            failures.push(format!("listener {who} source {s}: {db:.0} dB, expected heard={want}"));
        }
    }
}

fn gst(freq: f32, bridge_port: u16, recv_port: u16, file: &Path) -> Child {
    let pipeline = format!(
        "audiotestsrc is-live=true freq={freq} volume=0.25 ! audioconvert ! audioresample \
         ! audio/x-raw,rate=48000,channels=1 ! opusenc ! rtpopuspay pt=96 \
         ! udpsink host=127.0.0.1 port={bridge_port} \
         udpsrc port={recv_port} caps=\"application/x-rtp,media=audio,encoding-name=OPUS,clock-rate=48000,payload=96\" \
         ! rtpjitterbuffer latency=40 ! rtpopusdepay ! opusdec ! audioconvert ! audioresample \
         ! audio/x-raw,format=S16LE,channels=1,rate=48000 ! filesink location={} buffer-mode=unbuffered async=false",
        file.display()
    );
    Command::new("sh")
        .arg("-c")
        .arg(format!("exec gst-launch-1.0 -q {pipeline}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gstreamer_clients_are_mixed_by_the_matrix() {
    assert!(
        Command::new("gst-launch-1.0").arg("--version").output().is_ok(),
        "gst-launch-1.0 is needed (scripts/install-deps.sh installs it)"
    );
    let api_port = free_port(false);
    let api = SocketAddr::from(([127, 0, 0, 1], api_port));
    let serve = Command::new(env!("CARGO_BIN_EXE_mixminus"))
        .args(["serve", "--listen", &api.to_string(), "--rtp-ports", "33000-33999"])
        .env("MIXMINUS_AUTH_TOKEN", TOKEN)
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("mixminus serve starts");
    let serve_pid = serve.id();
    let mut children = Killer(vec![serve]);

    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(api).await.is_err() {
        assert!(Instant::now() < deadline, "serve did not start listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let base = "/v2/accounts/e2e/conferences";
    let (status, body) = call(
        api,
        "PUT",
        base,
        Some(json!({"data": {"name": "e2e",
        "member": {"join_muted": false}, "play_entry_tone": false, "play_exit_tone": false}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let conf = body["data"]["id"].as_str().unwrap().to_owned();
    let participants = format!("{base}/{conf}/participants");

    // 0, 1: synthetic participants; 2, 3: GStreamer.
    let mut ids = Vec::new();
    let mut tone_clients = Vec::new();
    for &hz in &TONES[..2] {
        let (status, body) = call(
            api,
            "PUT",
            &participants,
            Some(json!({"data": {"action": "join",
            "data": {"rtp": {"codec": "opus"}}}})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["data"]["participant_id"].as_u64().unwrap());
        let port = body["data"]["rtp"]["local_port"].as_u64().unwrap() as u16;
        let config = ToneClientConfig::new(CodecParams::new(CodecKind::Opus), Some(hz));
        let client = ToneClient::start(
            config,
            "127.0.0.1:0".parse().unwrap(),
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
        .await
        .unwrap();
        tone_clients.push(client);
    }
    let dir = std::env::temp_dir().join(format!("mixminus-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut files: Vec<PathBuf> = Vec::new();
    for (i, &hz) in TONES[2..].iter().enumerate() {
        let recv = free_port(true);
        let (status, body) = call(api, "PUT", &participants, Some(json!({"data": {"action": "join",
            "data": {"call_id": format!("gst-{i}"), "rtp": {"remote_ip": "127.0.0.1", "remote_port": recv,
                "codec": "opus", "payload_type": 96}}}}))).await;
        assert_eq!(status, 201, "{body}");
        ids.push(body["data"]["participant_id"].as_u64().unwrap());
        let port = body["data"]["rtp"]["local_port"].as_u64().unwrap() as u16;
        let file = dir.join(format!("gst-{i}.raw"));
        children.0.push(gst(hz, port, recv, &file));
        files.push(file);
    }

    let measure = |tone_clients: &[ToneClient], files: &[PathBuf]| -> Vec<Vec<f64>> {
        let mut all: Vec<Vec<f64>> = tone_clients.iter().map(|c| c.tone_levels(&TONES)).collect();
        all.extend(files.iter().map(|f| gst_levels(f)));
        all
    };

    // Measures window after window until every row matches, for up to ~6 s, so a loaded
    // machine gets time to settle; a wrong mix never matches and fails with what was heard.
    let settle = |expected: [[bool; 4]; 4]| {
        let tone_clients = &tone_clients;
        let files = &files;
        async move {
            let mut last = (Vec::new(), Vec::new());
            for _ in 0..5 {
                tone_clients.iter().for_each(|c| c.clear());
                tokio::time::sleep(Duration::from_millis(1_200)).await;
                let levels = measure(tone_clients, files);
                let mut failures = Vec::new();
                for (who, l) in levels.iter().enumerate() {
                    check(who, l, expected[who], &mut failures);
                }
                if failures.is_empty() {
                    return Ok(());
                }
                last = (failures, levels);
            }
            Err(last)
        }
    };

    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Err((failures, levels)) = settle([[true; 4]; 4]).await {
        panic!("before relate: {failures:?}\nlevels {levels:?}");
    }

    // GStreamer client 2 stops hearing participant 0; participant 1's audio stops going to
    // GStreamer client 3.
    for (p, o, rel) in [(2, 0, "deaf"), (1, 3, "mute")] {
        let (status, body) = call(api, "PUT", &participants, Some(json!({"data": {"action": "relate",
            "data": {"participant_id": ids[p], "other_participant": ids[o], "relationship": rel}}}))).await;
        assert_eq!(status, 201, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected = [[true; 4], [true; 4], [false, true, true, true], [true, false, true, true]];
    if let Err((failures, levels)) = settle(expected).await {
        panic!("after relate: {failures:?}\nlevels {levels:?}");
    }

    let (status, _) = call(api, "DELETE", &format!("{base}/{conf}"), None).await;
    assert_eq!(status, 200);

    // SIGTERM: a graceful, successful exit.
    let _ = Command::new("kill").args(["-TERM", &serve_pid.to_string()]).status();
    let mut serve = children.0.remove(0);
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "serve did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "serve exited with {status}");
    let _ = std::fs::remove_dir_all(&dir);
}
