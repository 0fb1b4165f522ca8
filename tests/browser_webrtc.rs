//! WebRTC participants through WHIP, in real browsers: two headless Chromiums, each
//! saying its own tone through fake audio capture from a WAV file
//! (`--use-fake-device-for-media-stream --use-file-for-fake-audio-capture=…`), join a
//! conference from the moderator page ("Join from this browser": getUserMedia, an
//! RTCPeerConnection, WHIP `POST`), beside one RTP participant saying a third tone. Every
//! participant hears the other two: the browsers measured by WebAudio in the page (an
//! `AnalyserNode` on the mix that comes back on the same PeerConnection), the RTP
//! participant from its decoded audio. Then the matrix is clicked on browser A's page:
//! A deaf to B removes exactly B's tone from A's WebAudio; the RTP listener deaf to A removes
//! exactly A's tone at the RTP client; clicking the cells back to `hears` brings both back.
//! Browser B leaves (WHIP `DELETE`) and is gone from the conference. Then the API kicks
//! browser A: A's page sees its PeerConnection end, and A is gone.
//!
//! `MIXMINUS_SCREENSHOTS=docs/ui cargo test --test browser_webrtc` writes the screenshot
//! in docs/ui/.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::browser::{screenshot, text, wait_attr, Driver};
use common::http::Server;
use fantoccini::{Client, Locator};
use mixminus::rtp::client::{ToneClient, ToneClientConfig};
use mixminus::rtp::{BridgeConfig, CodecKind, CodecParams};
use serde_json::{json, Value};

const TOKEN: &str = "webrtc-token";
const ACCOUNT: &str = "acc1";
const CONFERENCE: &str = "webrtc";
/// Browser A, browser B, the RTP participant.
const TONES: [f32; 3] = [440.0, 700.0, 1100.0];
/// At the RTP client (dBFS, decoded): heard at or above.
const HEARD_DBFS: f64 = -40.0;
/// In the page's analyser (dB on WebAudio's scale): heard at or above.
const HEARD_ANALYSER_DB: f64 = -60.0;

async fn put(server: &Server, path: &str, body: Value) -> Value {
    server.put_data(path, TOKEN, body).await
}

/// A WAV file saying `hz` at −12 dBFS for 4 s (Chromium loops it).
fn tone_wav(hz: f32) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("tone-{hz}.wav"));
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(&path, spec).unwrap();
    // A whole number of periods in 4 s, so the loop has no click.
    for n in 0..48_000 * 4 {
        let t = n as f32 / 48_000.0;
        wav.write_sample((8_000.0 * (2.0 * std::f32::consts::PI * hz * t).sin()) as i16).unwrap();
    }
    wav.finalize().unwrap();
    path
}

fn browser_flags(wav: &std::path::Path) -> Vec<String> {
    vec![
        "--use-fake-ui-for-media-stream".into(),
        "--use-fake-device-for-media-stream".into(),
        format!("--use-file-for-fake-audio-capture={}", wav.display()),
        // The bridge's candidate is on loopback, which Chromium leaves out unless told.
        "--allow-loopback-in-peer-connection".into(),
        "--autoplay-policy=no-user-gesture-required".into(),
    ]
}

/// Joins from the page as `name`; returns the participant id the WHIP answer named.
async fn join_from_page(browser: &Client, name: &str) -> u64 {
    browser.find(Locator::Id("join-name")).await.unwrap().send_keys(name).await.unwrap();
    browser.find(Locator::Id("join-raw")).await.unwrap().click().await.unwrap();
    browser.find(Locator::Id("join-browser")).await.unwrap().click().await.unwrap();
    wait_attr(browser, "join-status", "data-state", "connected").await;
    let id = browser
        .find(Locator::Id("browser-join"))
        .await
        .unwrap()
        .attr("data-participant")
        .await
        .unwrap()
        .unwrap_or_default();
    id.parse().unwrap_or_else(|_| panic!("participant id {id:?}"))
}

/// The page's WebAudio levels of the three tones, the maximum of several reads over 600 ms.
async fn page_levels(browser: &Client) -> Vec<f64> {
    let mut best = vec![-200.0_f64; TONES.len()];
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let levels = browser
            .execute("return window.mixminus.levels(arguments[0]);", vec![json!(TONES)])
            .await
            .unwrap();
        for (b, v) in best.iter_mut().zip(levels.as_array().into_iter().flatten()) {
            *b = f64::max(*b, v.as_f64().unwrap_or(-200.0));
        }
    }
    best
}

struct Everyone<'a> {
    a: &'a Client,
    b: &'a Client,
    rtp: &'a ToneClient,
}

impl Everyone<'_> {
    /// Which tones A, B and the RTP participant hear.
    async fn hearing(&self) -> (Vec<Vec<bool>>, Vec<Vec<f64>>) {
        self.rtp.clear();
        let a = page_levels(self.a).await;
        let b = page_levels(self.b).await;
        let rtp = self.rtp.tone_levels(&TONES);
        let heard = vec![
            a.iter().map(|&d| d >= HEARD_ANALYSER_DB).collect(),
            b.iter().map(|&d| d >= HEARD_ANALYSER_DB).collect(),
            rtp.iter().map(|&d| d >= HEARD_DBFS).collect(),
        ];
        (heard, vec![a, b, rtp])
    }

    /// Waits (up to ~15 s) until everyone hears what `expected` says.
    async fn assert(&self, expected: [[u8; 3]; 3], step: &str) {
        let expected: Vec<Vec<bool>> =
            expected.iter().map(|row| row.iter().map(|&x| x == 1).collect()).collect();
        let mut last = (Vec::new(), Vec::new());
        for _ in 0..12 {
            last = self.hearing().await;
            if last.0 == expected {
                println!(
                    "{step}: as expected; levels (A, B: analyser dB; RTP: dBFS): {:.0?}",
                    last.1
                );
                return;
            }
        }
        panic!(
            "{step}: heard {:?}, expected {expected:?}; levels (A, B analyser dB, RTP dBFS): {:.0?}",
            last.0, last.1
        );
    }
}

async fn click_until(browser: &Client, cell: &str, state: &str) {
    browser.find(Locator::Id(cell)).await.unwrap().click().await.unwrap();
    wait_attr(browser, cell, "data-state", state).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browsers_and_a_phone_through_the_matrix() {
    let mut config = BridgeConfig::default();
    config.rtp_ports = (11_700, 11_799);
    let server = Server::with_bridge(config, TOKEN).await;
    let registry = server.registry.clone();
    let conferences = format!("/v2/accounts/{ACCOUNT}/conferences");
    put(
        &server,
        &conferences,
        json!({"data": {"id": CONFERENCE, "name": "WebRTC test", "member": {"join_muted": false},
            "play_entry_tone": false, "play_exit_tone": false}}),
    )
    .await;
    let participants = format!("{conferences}/{CONFERENCE}/participants");
    let joined = put(
        &server,
        &participants,
        json!({"data": {"action": "join", "data": {"call_id": "phone", "caller_id_name": "Phone",
            "rtp": {"codec": "opus"}}}}),
    )
    .await;
    let rtp_id = joined["participant_id"].as_u64().unwrap();
    let phone = ToneClient::start(
        ToneClientConfig::new(CodecParams::new(CodecKind::Opus), Some(TONES[2])),
        "127.0.0.1:0".parse().unwrap(),
        common::http::local_rtp(&joined),
    )
    .await
    .unwrap();

    let driver = Driver::start().await;
    let page = format!("http://{}/ui/", server.addr);
    let a = driver.browser(&browser_flags(&tone_wav(TONES[0]))).await;
    let b = driver.browser(&browser_flags(&tone_wav(TONES[1]))).await;
    common::browser::sign_in_and_open(&a, &page, ACCOUNT, TOKEN, CONFERENCE).await;
    common::browser::sign_in_and_open(&b, &page, ACCOUNT, TOKEN, CONFERENCE).await;
    let a_id = join_from_page(&a, "Browser A").await;
    let b_id = join_from_page(&b, "Browser B").await;

    // Both are participants like any other in the API.
    let list = server.call("GET", &participants, Some(TOKEN), None).await;
    let names: Vec<&str> = list.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["caller_id_name"].as_str())
        .collect();
    assert_eq!(names.len(), 3, "{}", list.text);
    assert!(names.contains(&"Browser A") && names.contains(&"Browser B"), "{names:?}");

    let everyone = Everyone { a: &a, b: &b, rtp: &phone };
    everyone.assert([[0, 1, 1], [1, 0, 1], [1, 1, 0]], "everyone").await;

    // On A's page: A deaf to B. Only B's tone leaves A's mix.
    let a_deaf_b = format!("cell-{a_id}-{b_id}");
    click_until(&a, &a_deaf_b, "deaf").await;
    everyone.assert([[0, 0, 1], [1, 0, 1], [1, 1, 0]], "A deaf to B").await;
    // The phone deaf to A: only A's tone leaves the phone's mix.
    let rtp_deaf_a = format!("cell-{rtp_id}-{a_id}");
    click_until(&a, &rtp_deaf_a, "deaf").await;
    everyone.assert([[0, 0, 1], [1, 0, 1], [0, 1, 0]], "and phone deaf to A").await;
    screenshot(&a, "ui-webrtc.png").await;

    // Back to hears (deaf → mute → hears), and everything comes back.
    click_until(&a, &a_deaf_b, "mute").await;
    click_until(&a, &a_deaf_b, "hears").await;
    click_until(&a, &rtp_deaf_a, "mute").await;
    click_until(&a, &rtp_deaf_a, "hears").await;
    everyone.assert([[0, 1, 1], [1, 0, 1], [1, 1, 0]], "cleared").await;

    // B leaves through WHIP's DELETE: gone from the conference, and from A's page.
    b.find(Locator::Id("leave-browser")).await.unwrap().click().await.unwrap();
    let mut left = false;
    for _ in 0..50 {
        let list = server.call("GET", &participants, Some(TOKEN), None).await;
        if list.json["data"].as_array().is_some_and(|l| l.len() == 2) {
            left = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left, "B left the conference");
    for _ in 0..50 {
        if a.find(Locator::Id(&format!("p-{b_id}"))).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(a.find(Locator::Id(&format!("p-{b_id}"))).await.is_err(), "B gone from A's page");
    println!("A's page: {}", text(&a, "browser-hearing").await);

    // The API's kick of A closes A's PeerConnection: the bridge sends DTLS close_notify and
    // stops answering, and A's page sees the connection end. A leaves the conference.
    put(&server, &format!("{participants}/{a_id}"), json!({"data": {"action": "kick"}})).await;
    let mut state = String::new();
    for _ in 0..300 {
        state = a
            .find(Locator::Id("join-status"))
            .await
            .unwrap()
            .attr("data-state")
            .await
            .unwrap()
            .unwrap_or_default();
        if ["closed", "failed", "disconnected"].contains(&state.as_str()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ["closed", "failed", "disconnected"].contains(&state.as_str()),
        "A's PeerConnection after the kick: {state}"
    );
    println!("A's PeerConnection after the kick: {state}");
    let list = server.call("GET", &participants, Some(TOKEN), None).await;
    assert_eq!(list.json["data"].as_array().map(Vec::len), Some(1), "{}", list.text);

    a.close().await.unwrap();
    b.close().await.unwrap();
    phone.stop();
    registry.stop_all().await;
}

/// What the WHIP endpoint refuses, and how (no browser needed).
#[tokio::test]
async fn whip_refusals() {
    let mut config = BridgeConfig::default();
    config.rtp_ports = (11_800, 11_819);
    let server = Server::with_bridge(config, TOKEN).await;
    let registry = server.registry.clone();
    put(&server, &format!("/v2/accounts/{ACCOUNT}/conferences"), json!({"data": {"id": "c1"}}))
        .await;
    let post = |path: &str, auth: Option<&str>, kind: &str, body: &str| {
        let mut head = format!("POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: {kind}\r\n");
        if let Some(token) = auth {
            head.push_str(&format!("authorization: Bearer {token}\r\n"));
        }
        format!("{head}content-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
    };
    let whip = format!("/v2/accounts/{ACCOUNT}/conferences/c1/whip");
    let r = server.raw(post(&whip, None, "application/sdp", "v=0\r\n").as_bytes()).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = server.raw(post(&whip, Some(TOKEN), "application/json", "{}").as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.json["data"]["content-type"].is_object(), "{}", r.text);
    let r = server.raw(post(&whip, Some(TOKEN), "application/sdp", "not sdp").as_bytes()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.json["data"]["sdp"].is_object(), "{}", r.text);
    let other = format!("/v2/accounts/{ACCOUNT}/conferences/nope/whip");
    let r = server.raw(post(&other, Some(TOKEN), "application/sdp", "v=0\r\n").as_bytes()).await;
    assert_eq!(r.status, 404, "{}", r.text);
    // Nothing joined on the way.
    let list = server
        .call(
            "GET",
            &format!("/v2/accounts/{ACCOUNT}/conferences/c1/participants"),
            Some(TOKEN),
            None,
        )
        .await;
    assert_eq!(list.json["data"], json!([]));
    let r = server.call("DELETE", &format!("{whip}/7"), Some(TOKEN), None).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let r = server.call("PATCH", &format!("{whip}/7"), Some(TOKEN), Some(b"{}")).await;
    assert_eq!(r.status, 405, "{}", r.text);
    registry.stop_all().await;
}
