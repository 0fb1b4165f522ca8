//! `mixminus demo`: the whole bridge in one command, checked by ear.
//!
//! Starts a bridge and its HTTP API in-process, creates a conference through the API, joins
//! four synthetic participants (real UDP on loopback, real Opus) each saying its own tone,
//! then applies a `deaf` relationship, a `mute` relationship, and clears both. After each
//! step it measures, from each participant's decoded audio, which tones it hears (Goertzel),
//! prints the table and compares it with what the matrix says. Exit 0 only if every cell
//! matches.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use mixminus_control::config::AccountScope;
use mixminus_control::{Api, Auth, Registry};
use mixminus_rtp::client::{ToneClient, ToneClientConfig};
use mixminus_rtp::{Bridge, BridgeConfig, CodecKind, CodecParams};
use serde_json::{json, Value};

use crate::DemoArgs;

/// The participants: a name and the tone each says. The frequencies avoid the bridge's
/// entry/exit tones and each other's harmonics.
const VOICES: [(&str, f32); 4] = [("A", 350.0), ("B", 520.0), ("C", 770.0), ("D", 1_150.0)];
/// At least this loud (dB re full-scale sine) counts as heard…
const HEARD_DB: f64 = -30.0;
/// …and at most this quiet as not heard; in between is a failure either way.
const SILENT_DB: f64 = -45.0;
const ACCOUNT: &str = "demo";

pub(crate) fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(demo(args))
}

/// The records the demo has set: (P, O) → (deaf, mute).
type Matrix = HashMap<(usize, usize), (bool, bool)>;

/// One relate call: (P index, O index, relationship).
type Change = (usize, usize, &'static str);

async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut bridge_config = BridgeConfig::default();
    bridge_config.rtp_ports = (args.rtp_ports.low, args.rtp_ports.high);
    let bridge = Bridge::new(bridge_config).context("RTP port range")?;
    let registry = Registry::new(bridge, 10);
    let app =
        Api::new(registry.clone(), Auth::default().with_token(token.clone(), AccountScope::All))
            .node("mixminus-demo")
            .router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("mixminus demo: bridge API on http://{api_addr}, RTP on 127.0.0.1:{}", args.rtp_ports);
    let api = Client { addr: api_addr, token };

    let (status, body) = api
        .call(
            "PUT",
            &format!("/v2/accounts/{ACCOUNT}/conferences"),
            Some(json!({"data": {
                "name": "mixminus demo",
                "member": {"join_muted": false},
                "play_entry_tone": false,
                "play_exit_tone": false,
            }})),
        )
        .await?;
    if status != 201 {
        bail!("creating the conference: HTTP {status}: {body}");
    }
    let conference = body["data"]["id"].as_str().context("conference id")?.to_owned();
    println!("created conference {conference} (PUT /v2/accounts/{ACCOUNT}/conferences)");

    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for (name, hz) in VOICES {
        let (status, body) = api
            .call(
                "PUT",
                &format!("/v2/accounts/{ACCOUNT}/conferences/{conference}/participants"),
                Some(json!({"data": {"action": "join", "data": {
                    "call_id": format!("demo-{name}"), "caller_id_name": name,
                    "rtp": {"codec": "opus"}}}})),
            )
            .await?;
        if status != 201 {
            bail!("joining {name}: HTTP {status}: {body}");
        }
        let id = body["data"]["participant_id"].as_u64().context("participant id")?;
        let port = body["data"]["rtp"]["local_port"].as_u64().context("local port")? as u16;
        let target = SocketAddr::from(([127, 0, 0, 1], port));
        let config = ToneClientConfig::new(CodecParams::new(CodecKind::Opus), Some(hz));
        let client = ToneClient::start(config, SocketAddr::from(([127, 0, 0, 1], 0)), target)
            .await
            .with_context(|| format!("starting participant {name}"))?;
        println!(
            "joined {name} ({hz} Hz) as participant {id}: sends from {} to {target}",
            client.local_addr()
        );
        clients.push(client);
        ids.push(id);
    }

    let mut matrix = Matrix::new();
    let mut all_ok = true;
    let steps: [(&str, &[Change]); 4] = [
        ("everyone hears everyone else", &[]),
        ("relate(A, B, deaf): A stops hearing B", &[(0, 1, "deaf")]),
        ("relate(C, D, mute): D stops hearing C", &[(2, 3, "mute")]),
        (
            "relate(A, B, clear) and relate(C, D, clear): back to everyone",
            &[(0, 1, "clear"), (2, 3, "clear")],
        ),
    ];
    for (n, (title, changes)) in steps.into_iter().enumerate() {
        println!("\nstep {}: {title}", n + 1);
        for &(p, o, rel) in changes {
            let (status, body) = api
                .call("PUT", &format!("/v2/accounts/{ACCOUNT}/conferences/{conference}/participants"),
                    Some(json!({"data": {"action": "relate", "data": {
                        "participant_id": ids[p], "other_participant": ids[o], "relationship": rel}}})))
                .await?;
            println!(
                "  PUT …/participants relate {} → {} {rel}: HTTP {status} {}",
                VOICES[p].0, VOICES[o].0, body["data"]
            );
            if status != 201 {
                bail!("relate refused: {body}");
            }
            matrix.insert((p, o), (rel == "deaf", rel == "mute"));
        }
        // Let the change reach the mix and the jitter buffers, then listen afresh. A loaded
        // machine may need longer to settle: listen again (up to three windows) before
        // calling a mismatch.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for attempt in 1..=3 {
            clients.iter().for_each(|c| c.clear());
            tokio::time::sleep(Duration::from_millis(args.settle_ms)).await;
            if report(&clients, &matrix, false) || attempt == 3 {
                all_ok &= report(&clients, &matrix, true);
                break;
            }
            println!("  (not settled yet, listening again)");
        }
    }

    for client in &clients {
        client.stop();
    }
    let (status, _) = api
        .call("DELETE", &format!("/v2/accounts/{ACCOUNT}/conferences/{conference}"), None)
        .await?;
    println!(
        "\nended the conference (DELETE: HTTP {status}); ports in use: {}",
        registry.bridge().ports_in_use()
    );
    if all_ok {
        println!("demo: every participant heard exactly what the matrix says");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("demo: MISMATCH between what was heard and the matrix");
        Ok(ExitCode::FAILURE)
    }
}

/// Whether listener `l` should hear source `s`.
fn expected(matrix: &Matrix, l: usize, s: usize) -> bool {
    let deaf = matrix.get(&(l, s)).is_some_and(|r| r.0);
    let mute = matrix.get(&(s, l)).is_some_and(|r| r.1);
    l != s && !deaf && !mute
}

/// Prints one step's table (when `print`); true when every cell matches.
fn report(clients: &[ToneClient], matrix: &Matrix, print: bool) -> bool {
    let freqs: Vec<f32> = VOICES.iter().map(|v| v.1).collect();
    let mut header = String::from("  listener hears |");
    for (name, hz) in VOICES {
        header.push_str(&format!(" {:<13}|", format!("{name} {hz} Hz")));
    }
    if print {
        println!("{header}");
    }
    let mut ok = true;
    for (l, client) in clients.iter().enumerate() {
        let levels = client.tone_levels(&freqs);
        let mut row = format!("  {:<14} |", VOICES[l].0);
        for (s, db) in levels.iter().enumerate() {
            let cell = if l == s {
                format!(" {:<13}", "(self)")
            } else {
                let want = expected(matrix, l, s);
                let heard = *db >= HEARD_DB;
                let silent = *db <= SILENT_DB;
                let good = (want && heard) || (!want && silent);
                ok &= good;
                let mark = match (heard, silent) {
                    (true, _) => "yes",
                    (_, true) => "no ",
                    _ => "?? ",
                };
                format!(" {mark} {db:>5.0} dB{:<1}", if good { "" } else { "!" })
            };
            row.push_str(&cell);
            row.push('|');
        }
        if print {
            println!("{row}");
        }
    }
    if print {
        println!("  {}", if ok { "matches the matrix" } else { "DOES NOT match the matrix" });
    }
    ok
}

/// A minimal client of the bridge's own HTTP API (hyper, HTTP/1.1, one connection per call).
struct Client {
    addr: SocketAddr,
    token: String,
}

impl Client {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let stream = tokio::net::TcpStream::connect(self.addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string())
            .header("x-auth-token", &self.token)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }
}
