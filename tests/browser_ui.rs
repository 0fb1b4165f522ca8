//! The moderator page (`/ui/`) in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` + `chromium-driver`, see scripts/install-deps.sh) by `fantoccini`.
//!
//! A conference with three RTP participants (real UDP, real Opus), each saying its own
//! tone. The test signs in on the page (a wrong token first: refused), opens the
//! conference, and clicks one cell of the relationship matrix: listener L deaf to talker T.
//! At L's RTP client (decoded audio, Goertzel levels) exactly T's tone disappears, and
//! nobody else's hearing changes. The next click turns the cell to `mute` (the T→L record:
//! still unheard), the third back to `hears`: the tone returns. Every step is read back
//! from the page (the cell's state, the API's answer shown) and from the API.
//!
//! Screenshots go to `$MIXMINUS_SCREENSHOTS` (default: cargo's test temp dir); the ones in
//! `docs/ui/` came from `MIXMINUS_SCREENSHOTS=docs/ui cargo test --test browser_ui`.

mod common;

use std::time::Duration;

use common::browser::{last_answer, screenshot, text, wait_attr, Driver};
use common::http::Server;
use fantoccini::Locator;
use mixminus::rtp::client::{ToneClient, ToneClientConfig};
use mixminus::rtp::{BridgeConfig, CodecKind, CodecParams};
use serde_json::{json, Value};

const TOKEN: &str = "browser-token";
const ACCOUNT: &str = "acc1";
const CONFERENCE: &str = "browser";
const TONES: [f32; 3] = [440.0, 700.0, 1100.0];
/// A tone at or above this level is heard; the clients send at about −12 dBFS.
const HEARD_DBFS: f64 = -40.0;

async fn put(server: &Server, path: &str, body: Value) -> Value {
    server.put_data(path, TOKEN, body).await
}

struct Party {
    id: u64,
    client: ToneClient,
}

/// Which tones each party hears over one 600 ms window.
async fn hearing(parties: &[Party]) -> Vec<Vec<bool>> {
    for p in parties {
        p.client.clear();
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    parties.iter().map(|p| p.client.heard_tones(&TONES, HEARD_DBFS)).collect()
}

/// Waits (up to ~6 s, window after window) for everyone to hear what `expected` says;
/// a wrong mix never matches and fails with what was heard.
async fn assert_hearing(parties: &[Party], expected: &[[u8; 3]], step: &str) {
    let expected: Vec<Vec<bool>> =
        expected.iter().map(|row| row.iter().map(|&x| x == 1).collect()).collect();
    let mut heard = Vec::new();
    for _ in 0..10 {
        heard = hearing(parties).await;
        if heard == expected {
            let levels: Vec<Vec<String>> = parties
                .iter()
                .map(|p| p.client.tone_levels(&TONES).iter().map(|d| format!("{d:.0}")).collect())
                .collect();
            println!("{step}: heard as expected; tone levels dBFS per listener: {levels:?}");
            return;
        }
    }
    assert_eq!(heard, expected, "{step}: rows listener, columns tone heard");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_click_removes_exactly_that_tone() {
    let mut config = BridgeConfig::default();
    config.rtp_ports = (11_600, 11_699);
    let server = Server::with_bridge(config, TOKEN).await;
    let registry = server.registry.clone();
    let conferences = format!("/v2/accounts/{ACCOUNT}/conferences");
    put(
        &server,
        &conferences,
        json!({"data": {"id": CONFERENCE, "name": "Browser test", "member": {"join_muted": false},
            "play_entry_tone": false, "play_exit_tone": false}}),
    )
    .await;
    let participants = format!("{conferences}/{CONFERENCE}/participants");
    let mut parties = Vec::new();
    for (i, tone) in TONES.iter().enumerate() {
        let joined = put(
            &server,
            &participants,
            json!({"data": {"action": "join", "data": {"call_id": format!("tone-{i}"),
                "caller_id_name": format!("Tone {tone} Hz"), "rtp": {"codec": "opus"}}}}),
        )
        .await;
        let codec = CodecParams::new(CodecKind::Opus);
        let client = ToneClient::start(
            ToneClientConfig::new(codec, Some(*tone)),
            "127.0.0.1:0".parse().unwrap(),
            common::http::local_rtp(&joined),
        )
        .await
        .unwrap();
        parties.push(Party { id: joined["participant_id"].as_u64().unwrap(), client });
    }
    assert_hearing(&parties, &[[0, 1, 1], [1, 0, 1], [1, 1, 0]], "before").await;

    let driver = Driver::start().await;
    let browser = driver.browser(&[]).await;
    let page = format!("http://{}/ui/", server.addr);
    browser.goto(&page).await.unwrap();

    // A wrong token is refused on the page, and no token ever reaches the URL.
    browser.find(Locator::Id("signin-account")).await.unwrap().send_keys(ACCOUNT).await.unwrap();
    let token_field = browser.find(Locator::Id("signin-token")).await.unwrap();
    token_field.send_keys("not-the-token").await.unwrap();
    browser.find(Locator::Id("signin-submit")).await.unwrap().click().await.unwrap();
    let mut refused = String::new();
    for _ in 0..100 {
        refused = text(&browser, "signin-error").await;
        if refused.contains("401") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused.contains("401"), "the page says the token was refused: {refused:?}");
    token_field.clear().await.unwrap();
    token_field.send_keys(TOKEN).await.unwrap();
    browser.find(Locator::Id("signin-submit")).await.unwrap().click().await.unwrap();
    let open =
        browser.wait().for_element(Locator::Id(&format!("open-{CONFERENCE}"))).await.unwrap();
    screenshot(&browser, "ui-conferences.png").await;
    open.click().await.unwrap();

    let (l, t) = (parties[0].id, parties[1].id);
    let cell = format!("cell-{l}-{t}");
    wait_attr(&browser, &cell, "data-state", "hears").await;
    wait_attr(&browser, "live", "class", "live on").await;
    // The levels and talking indicators come live: every tone is talking.
    for p in &parties {
        let row = format!("p-{}", p.id);
        for _ in 0..50 {
            if text(&browser, &row).await.contains("talking") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(text(&browser, &row).await.contains("talking"), "#{row} shows talking");
    }
    let url = browser.current_url().await.unwrap();
    assert!(!url.as_str().contains(TOKEN), "the token is not in the URL {url}");

    // hears → deaf: L stops hearing T's tone, and only that.
    browser.find(Locator::Id(&cell)).await.unwrap().click().await.unwrap();
    wait_attr(&browser, &cell, "data-state", "deaf").await;
    let (status, answer) = last_answer(&browser).await;
    assert_eq!(status, "201", "{answer}");
    assert!(answer.contains("relating participants"), "{answer}");
    assert_hearing(&parties, &[[0, 0, 1], [1, 0, 1], [1, 1, 0]], "deaf").await;
    screenshot(&browser, "ui-matrix-deaf.png").await;
    let matrix = server
        .call("GET", &format!("{conferences}/{CONFERENCE}/relationships"), Some(TOKEN), None)
        .await;
    assert_eq!(
        matrix.json["data"],
        json!([{"participant_id": l, "other_participant": t, "deaf": true, "mute": false, "relationship": "deaf"}])
    );

    // deaf → mute: the T→L record now keeps T from L; still unheard.
    browser.find(Locator::Id(&cell)).await.unwrap().click().await.unwrap();
    wait_attr(&browser, &cell, "data-state", "mute").await;
    assert_hearing(&parties, &[[0, 0, 1], [1, 0, 1], [1, 1, 0]], "mute").await;
    let matrix = server
        .call("GET", &format!("{conferences}/{CONFERENCE}/relationships"), Some(TOKEN), None)
        .await;
    assert_eq!(
        matrix.json["data"],
        json!([{"participant_id": t, "other_participant": l, "deaf": false, "mute": true, "relationship": "mute"}])
    );

    // mute → hears: the tone comes back.
    browser.find(Locator::Id(&cell)).await.unwrap().click().await.unwrap();
    wait_attr(&browser, &cell, "data-state", "hears").await;
    assert_eq!(last_answer(&browser).await.0, "201");
    assert_hearing(&parties, &[[0, 1, 1], [1, 0, 1], [1, 1, 0]], "clear").await;
    let matrix = server
        .call("GET", &format!("{conferences}/{CONFERENCE}/relationships"), Some(TOKEN), None)
        .await;
    assert_eq!(matrix.json["data"], json!([]));

    // Mute on the participant's row: nobody hears its tone; unmute: everyone does again.
    let m = parties[2].id;
    browser.find(Locator::Id(&format!("mute-{m}"))).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Id(&format!("unmute-{m}"))).await.unwrap();
    assert_eq!(last_answer(&browser).await.0, "201");
    assert!(text(&browser, &format!("p-{m}")).await.contains("muted"));
    assert_hearing(&parties, &[[0, 1, 0], [1, 0, 0], [1, 1, 0]], "muted").await;
    browser.find(Locator::Id(&format!("unmute-{m}"))).await.unwrap().click().await.unwrap();
    browser.wait().for_element(Locator::Id(&format!("mute-{m}"))).await.unwrap();
    assert_hearing(&parties, &[[0, 1, 1], [1, 0, 1], [1, 1, 0]], "unmuted").await;

    // The page ran under its Content-Security-Policy without a violation.
    let violations =
        browser.execute("return document.body.dataset.cspViolations || ''", vec![]).await.unwrap();
    assert_eq!(violations, json!(""), "CSP violations on the page");
    screenshot(&browser, "ui-conference.png").await;

    // Kick: the participant leaves the list and the matrix.
    browser.find(Locator::Id(&format!("kick-{m}"))).await.unwrap().click().await.unwrap();
    for _ in 0..50 {
        if browser.find(Locator::Id(&format!("p-{m}"))).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(browser.find(Locator::Id(&format!("p-{m}"))).await.is_err(), "kicked row gone");
    assert!(browser.find(Locator::Id(&format!("cell-{l}-{m}"))).await.is_err(), "column gone");
    let left = server.call("GET", &participants, Some(TOKEN), None).await;
    assert_eq!(left.json["data"].as_array().unwrap().len(), 2);

    browser.close().await.unwrap();
    for p in &parties {
        p.client.stop();
    }
    registry.stop_all().await;
}
