//! The rows of `docs/KAZOO.md`, walked: every route and verb, called as a Kazoo client
//! calls it, against a running conference with two media legs (real runtime, loopback
//! RTP). Each row names the same id as its line in the document, and the first test checks
//! that the document and this suite list the same rows.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use http_body_util::BodyExt;
use mixminus_control::config::AccountScope;
use mixminus_control::media::MediaSettings;
use mixminus_control::{Api, Auth, Registry};
use mixminus_rtp::{Bridge, BridgeConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

const TOKEN: &str = "conformance-token";
const A: &str = "/v2/accounts/acc1";

/// One row: a request, Kazoo's answer, and what to check after.
struct Row {
    id: &'static str,
    method: &'static str,
    /// `{C}` is the conference, `{P}` / `{Q}` its two participants, `{CALL}` P's call.
    path: &'static str,
    body: Option<&'static str>,
    /// `None`: no token at all; else sent as `X-Auth-Token` unless the path carries it.
    token: bool,
    headers: &'static [(&'static str, &'static str)],
    status: u16,
    /// `(JSON pointer, value)`; `Value::Null` means absent (or null).
    expect: &'static [(&'static str, &'static str)],
    /// Response headers that must be present with these values.
    expect_headers: &'static [(&'static str, &'static str)],
    /// A follow-up GET and what it must show, proving the row's effect.
    after: Option<(&'static str, &'static [(&'static str, &'static str)])>,
}

const fn row(id: &'static str, method: &'static str, path: &'static str, status: u16) -> Row {
    Row {
        id,
        method,
        path,
        body: None,
        token: true,
        headers: &[],
        status,
        expect: &[],
        expect_headers: &[],
        after: None,
    }
}

impl Row {
    const fn body(mut self, body: &'static str) -> Self {
        self.body = Some(body);
        self
    }
    const fn expect(mut self, expect: &'static [(&'static str, &'static str)]) -> Self {
        self.expect = expect;
        self
    }
    const fn headers(mut self, headers: &'static [(&'static str, &'static str)]) -> Self {
        self.headers = headers;
        self
    }
    const fn expect_headers(mut self, h: &'static [(&'static str, &'static str)]) -> Self {
        self.expect_headers = h;
        self
    }
    const fn no_token(mut self) -> Self {
        self.token = false;
        self
    }
    const fn after(
        mut self,
        path: &'static str,
        expect: &'static [(&'static str, &'static str)],
    ) -> Self {
        self.after = Some((path, expect));
        self
    }
}

const RELATE_PQ: &str = r#"{"data": {"action": "relate", "data": {"participant_id": "{P}", "other_participant": "{Q}", "relationship": "deaf"}}}"#;

fn rows() -> Vec<Row> {
    vec![
        // ---- conferences collection
        row("K01", "GET", "{A}/conferences", 200).expect(&[
            ("/data/0/id", "\"{C}\""),
            ("/data/0/flags", "[]"),
            ("/data/0/conference_numbers", "[]"),
            ("/data/0/_read_only/members", "1"),
            ("/data/0/_read_only/moderators", "1"),
            ("/page_size", "1"),
        ]),
        row("K02", "GET", "{A}/conferences?filter_name=nomatch", 200)
            .expect(&[("/data", "[]"), ("/page_size", "0")]),
        row("K03", "GET", "{A}/conferences?paginate=false", 200)
            .expect(&[("/data/0/id", "\"{C}\""), ("/page_size", "null")]),
        row("K04", "PUT", "{A}/conferences", 201)
            .expect(&[("/data/member/join_muted", "true"), ("/data/moderator/join_muted", "false")]),
        row("K05", "PUT", "{A}/conferences", 201)
            .body(r#"{"data": {"name": "js", "max_participants": "5", "play_name": "true"}}"#)
            .expect(&[("/data/max_participants", "5"), ("/data/play_name", "true")]),
        row("K06", "PUT", "{A}/conferences", 400)
            .body(r#"{"data": {"name": 5}}"#)
            .expect(&[("/message", "\"invalid data\""), ("/data/name/type/value", "5")]),
        row("K07", "PUT", "{A}/conferences/", 201).body(r#"{"data": {"name": "slash"}}"#),
        row("K08", "POST", "{A}/conferences?verb=PUT", 200)
            .body(r#"{"data": {"name": "tunnelled"}}"#)
            .expect(&[("/data/name", "\"tunnelled\"")]),
        row("K09", "PUT", "{A}/conferences", 400).body("{}").expect(&[("/data/data/required/message", "\"Field is required but missing\"")]),
        // ---- one conference
        row("K10", "GET", "{A}/conferences/{C}", 200).expect(&[
            ("/data/id", "\"{C}\""),
            ("/data/_read_only/members", "1"),
            ("/data/_read_only/moderators", "1"),
            ("/data/_read_only/participants/0/call_id", "\"call-p\""),
        ]),
        row("K11", "GET", "{A}/conferences/nobody-here", 200).expect(&[
            ("/data/id", "\"nobody-here\""),
            ("/data/_read_only/participants", "[]"),
        ]),
        row("K12", "POST", "{A}/conferences/{C}", 200)
            .body(r#"{"data": {"name": "r", "play_entry_tone": true, "profile": {"interval": 40}}}"#)
            .expect(&[
                ("/data/name", "\"r\""),
                ("/data/_read_only/pending/profile.interval", r#"{"requested": 40, "running": 20}"#),
            ]),
        row("K13", "POST", "{A}/conferences/{C}?verb=patch", 200)
            .body(r#"{"data": {"name": "p"}}"#)
            .expect(&[("/data/name", "\"p\""), ("/data/member/join_muted", "false")]),
        row("K14", "PATCH", "{A}/conferences/{C}", 200)
            .body(r#"{"data": {"profile": {"energy-level": 0}, "member": {"join_deaf": "true"}}}"#)
            .expect(&[("/data/member/join_deaf", "true"), ("/data/_read_only/pending", "null")])
            .after("{A}/conferences/{C}/participants/{P}", &[("/data/conference_channel_vars/energy_level", "0")]),
        row("K15", "POST", "{A}/conferences/nobody-here", 404).body(r#"{"data": {}}"#),
        row("K16", "DELETE", "{A}/conferences/{C}", 200)
            .expect(&[("/data/_read_only/deleted", "true")])
            .after("{A}/conferences/{C}", &[("/data/_read_only/members", "0")]),
        row("K17", "DELETE", "{A}/conferences/nobody-here", 404)
            .expect(&[("/message", "\"bad identifier\"")]),
        row("K18", "PUT", "{A}/conferences/{C}", 201)
            .body(r#"{"action": "lock", "data": {}}"#)
            .expect(&[("/data/is_locked", "true")]),
        row("K19", "PUT", "{A}/conferences/{C}", 201)
            .body(r#"{"data": {"action": "unlock"}}"#)
            .expect(&[("/data/is_locked", "false")]),
        row("K20", "PUT", "{A}/conferences/{C}", 201)
            .body(r#"{"action": "record", "data": {"action": "start"}}"#)
            .expect(&[("/data/action", "\"start\""), ("/data/recording/status", "\"recording\"")])
            .after("{A}/conferences/{C}", &[("/data/_read_only/recording/media_type", "\"ogg\"")]),
        row("K21", "PUT", "{A}/conferences/{C}", 404)
            .body(r#"{"data": {}}"#)
            .expect(&[("/message", "\"faulty request\"")]),
        // ---- participants collection
        row("K22", "GET", "{A}/conferences/{C}/participants", 200).expect(&[
            ("/data/0/conference_name", "\"{C}\""),
            ("/data/0/call_id", "\"call-p\""),
            ("/data/0/caller_id_name", "\"Alice\""),
            ("/data/0/custom_channel_vars/x", "\"1\""),
            ("/data/1/caller_id_name", "null"),
            ("/data/1/custom_channel_vars", "null"),
        ]),
        row("K23", "GET", "{A}/conferences/nobody-here/participants", 200)
            .expect(&[("/data", "[]")]),
        row("K24", "PUT", "{A}/conferences/{C}/participants", 201)
            .body(RELATE_PQ)
            .expect(&[("/data", "\"relating participants\"")])
            .after("{A}/conferences/{C}/relationships", &[("/data/0/deaf", "true")]),
        row("K25", "PUT", "{A}/conferences/{C}/participants", 201)
            .body(r#"{"action": "relate", "data": {"participant_id": "{P}", "other_participant": "{Q}", "relationship": "mute"}}"#)
            .after("{A}/conferences/{C}/relationships", &[("/data/0/mute", "true")]),
        row("K26", "PUT", "{A}/conferences/{C}/participants?action=relate", 201)
            .body(r#"{"data": {"participant_id": "{Q}", "other_participant": "{P}", "relationship": "deaf"}}"#)
            .after("{A}/conferences/{C}/relationships", &[("/data/0/participant_id", "{Q}")]),
        row("K27", "PUT", "{A}/conferences/{C}/participants", 404)
            .body(r#"{"data": {"action": "relate", "data": {"participant_id": "{P}", "other_participant": 99}}}"#)
            .expect(&[("/message", "\"bad identifier\""), ("/data/id", "99")]),
        row("K28", "PUT", "{A}/conferences/{C}/participants", 400)
            .body(r#"{"data": {"action": "relate", "data": {"participant_id": "{P}", "other_participant": "{Q}", "relationship": "nohear"}}}"#)
            .expect(&[("/data/relationship/enum/value", "\"nohear\"")]),
        row("K29", "PUT", "{A}/conferences/{C}/participants", 201)
            .body(r#"{"data": {"action": "mute"}}"#)
            .expect(&[("/data/participants", "[{P}]")]),
        row("K30", "PUT", "{A}/conferences/{C}/participants", 404)
            .body(r#"{"data": {"action": "dance"}}"#)
            .expect(&[("/message", "\"faulty request\"")]),
        row("K31", "PUT", "{A}/conferences/{C}/participants", 201)
            .body(r#"{"data": {"action": "join", "data": {"call_id": "call-r", "custom_channel_vars": {"k": "v"}, "rtp": {"codec": "opus"}}}}"#)
            .expect(&[("/data/call_id", "\"call-r\""), ("/data/custom_channel_vars/k", "\"v\""), ("/data/caller_id_number", "null")]),
        row("K32", "PUT", "{A}/conferences/{C}/participants", 409)
            .body(r#"{"data": {"action": "join", "data": {"call_id": "call-p", "rtp": {"codec": "opus"}}}}"#)
            .expect(&[("/data/call_id/unique/message", "\"call call-p is already in the conference\"")]),
        row("K33", "PUT", "{A}/conferences/nobody-here/participants", 404)
            .body(r#"{"data": {"action": "mute"}}"#),
        // ---- one participant
        row("K34", "GET", "{A}/conferences/{C}/participants/{P}", 200).expect(&[
            ("/data/participant_id", "{P}"),
            ("/data/conference_name", "\"{C}\""),
            ("/data/conference_channel_vars/member_id", "{P}"),
        ]),
        row("K35", "GET", "{A}/conferences/{C}/participants/999", 200).expect(&[("/data", "{}")]),
        row("K36", "PUT", "{A}/conferences/{C}/participants/{P}", 201)
            .body(r#"{"data": {"action": "mute"}}"#)
            .expect(&[("/data/changed", "true")])
            .after("{A}/conferences/{C}/participants/{P}", &[("/data/conference_channel_vars/speak", "false")]),
        row("K37", "PUT", "{A}/conferences/{C}/participants/{P}?action=deaf", 201)
            .after("{A}/conferences/{C}/participants/{P}", &[("/data/conference_channel_vars/hear", "false")]),
        row("K38", "PUT", "{A}/conferences/{C}/participants/{P}", 201)
            .body(r#"{"data": {"action": "volume_in", "value": "2"}}"#),
        row("K39", "PUT", "{A}/conferences/{C}/participants/999", 404)
            .body(r#"{"data": {"action": "mute"}}"#),
        row("K40", "PUT", "{A}/conferences/{C}/participants/{P}", 201)
            .body(r#"{"data": {"action": "play", "data": {"media_id": "m"}}}"#)
            .expect(&[("/data/participant_id", "{P}")])
            .after("{A}/conferences/{C}", &[("/data/_read_only/playbacks/0/participant_id", "{P}")]),
        // ---- channels metaflow
        row("K41", "PUT", "{A}/channels/{CALL}", 201)
            .body(r#"{"action": "metaflow", "data": {"module": "relate", "data": {"conference_id": "{C}", "participant_id": "{P}", "other_participant": "{Q}", "relationship": "mute"}}}"#)
            .expect(&[("/data", "\"metaflow sent\"")])
            .after("{A}/conferences/{C}/relationships", &[("/data/0/mute", "true")]),
        row("K42", "PUT", "{A}/channels/{CALL}", 201)
            .body(r#"{"action": "metaflow", "data": {"data": {"module": "relate", "data": {"conference_id": "{C}", "participant_id": "{P}", "other_participant": "{Q}", "relationship": "deaf"}}}}"#)
            .after("{A}/conferences/{C}/relationships", &[("/data/0/deaf", "true")]),
        row("K43", "PUT", "{A}/channels/no-such-call", 404)
            .body(r#"{"action": "metaflow", "data": {"module": "relate", "data": {}}}"#),
        row("K44", "PUT", "{A}/channels/{CALL}", 501)
            .body(r#"{"action": "metaflow", "data": {"module": "transfer", "data": {}}}"#),
        // ---- relationships, events
        row("K45", "GET", "{A}/conferences/{C}/relationships", 200).expect(&[("/data", "[]")]),
        row("K46", "GET", "{A}/conferences/{C}/events", 200)
            .expect_headers(&[("content-type", "text/event-stream")]),
        // ---- tokens, CORS, OPTIONS
        row("K47", "GET", "{A}/conferences?auth_token={T}", 200).no_token(),
        row("K48", "GET", "{A}/conferences", 401).no_token(),
        row("K49", "OPTIONS", "{A}/conferences", 200)
            .no_token()
            .headers(&[("origin", "https://ui.example.com"), ("access-control-request-method", "PUT")])
            .expect_headers(&[("access-control-allow-origin", "*")]),
        row("K50", "GET", "{A}/conferences", 200)
            .headers(&[("origin", "https://ui.example.com")])
            .expect_headers(&[("access-control-allow-origin", "*")]),
        row("K51", "OPTIONS", "{A}/conferences/{C}", 200).no_token(),
        // ---- play, record, recordings (issue 14 item 11)
        row("K52", "PUT", "{A}/conferences/{C}", 201)
            .body(r#"{"action": "play", "data": {"media_id": "m.wav"}}"#)
            .expect(&[("/data/media_id", "\"m.wav\""), ("/data/duration_ms", "2000")])
            .after("{A}/conferences/{C}", &[("/data/_read_only/playbacks/0/media_id", "\"m.wav\"")]),
        row("K53", "PUT", "{A}/conferences/{C}", 501)
            .body(r#"{"action": "dial", "data": {"endpoints": ["1000"]}}"#)
            .expect(&[("/message", "\"not implemented\"")]),
        row("K54", "PUT", "{A}/conferences/{C}", 400)
            .body(r#"{"action": "play", "data": {}}"#)
            .expect(&[("/data/data.media_id/required/message", "\"action 'play' requires a media ID or URL\"")])
            .after("{A}/conferences/{C}", &[("/data/_read_only/playbacks", "[]")]),
        row("K55", "PUT", "{A}/conferences/{C}", 404)
            .body(r#"{"action": "play", "data": {"media_id": "../m.wav"}}"#)
            .expect(&[("/message", "\"bad identifier\"")])
            .after("{A}/conferences/{C}", &[("/data/_read_only/playbacks", "[]")]),
        row("K56", "PUT", "{A}/conferences/{C}", 400)
            .body(r#"{"action": "record", "data": {"action": "pause"}}"#)
            .expect(&[("/data/data.action/enum/value", "\"pause\"")])
            .after("{A}/conferences/{C}", &[("/data/_read_only/recording", "null")]),
        row("K57", "PUT", "{A}/conferences/{C}", 409)
            .body(r#"{"action": "record", "data": {"action": "stop"}}"#),
        row("K58", "PUT", "{A}/conferences/{C}/participants", 201)
            .body(r#"{"action": "play", "data": {"media_id": "m"}}"#)
            .after("{A}/conferences/{C}", &[("/data/_read_only/playbacks/0/participant_id", "null")]),
        row("K59", "GET", "{A}/recordings", 200),
        row("K60", "GET", "{A}/recordings/0123456789abcdef0123456789abcdef", 404)
            .expect(&[("/message", "\"bad identifier\"")]),
    ]
}

struct World {
    app: Router,
    registry: Registry,
    conference: String,
    p: u64,
    q: u64,
}

async fn world() -> World {
    let mut config = BridgeConfig::default();
    config.rtp_bind = "127.0.0.1".parse().unwrap();
    config.rtp_ports = (44_000, 45_999);
    config.inactivity_timeout = None;
    let registry = Registry::new(Bridge::new(config).unwrap(), 10);
    let app = Api::new(registry.clone(), Auth::default().with_token(TOKEN, AccountScope::All))
        .media(media_settings())
        .router();
    let mut w = World { app, registry, conference: "conf1".into(), p: 0, q: 0 };
    let create = json!({"data": {"id": "conf1", "name": "c", "member": {"join_muted": false}}});
    let (status, _, _) =
        w.send("PUT", &format!("{A}/conferences"), Some(create.to_string()), true, &[]).await;
    assert_eq!(status, 201);
    let join = |data: Value| json!({"data": {"action": "join", "data": data}}).to_string();
    let path = format!("{A}/conferences/conf1/participants");
    let (_, p, _) = w
        .send(
            "PUT",
            &path,
            Some(join(json!({"call_id": "call-p", "caller_id_name": "Alice",
            "custom_channel_vars": {"x": "1"}, "rtp": {"codec": "opus"}}))),
            true,
            &[],
        )
        .await;
    let (_, q, _) = w
        .send(
            "PUT",
            &path,
            Some(join(json!({"call_id": "call-q", "participant_flags": ["is_moderator"],
            "rtp": {"codec": "opus"}}))),
            true,
            &[],
        )
        .await;
    w.p = p["data"]["participant_id"].as_u64().expect("p joined");
    w.q = q["data"]["participant_id"].as_u64().expect("q joined");
    w
}

impl World {
    fn fill(&self, text: &str) -> String {
        text.replace("{A}", A)
            .replace("{C}", &self.conference)
            .replace("{P}", &self.p.to_string())
            .replace("{Q}", &self.q.to_string())
            .replace("{CALL}", "call-p")
            .replace("{T}", TOKEN)
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        token: bool,
        headers: &[(&str, &str)],
    ) -> (u16, Value, axum::http::HeaderMap) {
        let mut request =
            Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(path);
        if token {
            request = request.header("x-auth-token", TOKEN);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"))
        {
            return (status, Value::Null, headers);
        }
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        assert!(!text.contains(TOKEN), "a token leaked: {text}");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::String(text)), headers)
    }

    fn check(&self, id: &str, body: &Value, expect: &[(&str, &str)]) {
        for (pointer, want) in expect {
            let want: Value = serde_json::from_str(&self.fill(want))
                .unwrap_or_else(|e| panic!("{id}: bad expectation {want}: {e}"));
            let got = body.pointer(pointer).cloned().unwrap_or(Value::Null);
            assert_eq!(got, want, "{id}: {pointer} in {body}");
        }
    }
}

/// A media directory with `m.wav` (2 s) and an empty recordings directory, per process.
fn media_settings() -> MediaSettings {
    let base = std::env::temp_dir().join(format!("mixminus-conformance-{}", std::process::id()));
    let media = base.join("media");
    std::fs::create_dir_all(&media).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    if !media.join("m.wav").exists() {
        let mut wav = hound::WavWriter::create(media.join("m.wav"), spec).unwrap();
        for n in 0..32_000 {
            wav.write_sample(((n as f32 * 0.3).sin() * 4000.0) as i16).unwrap();
        }
        wav.finalize().unwrap();
    }
    let mut settings = MediaSettings::default();
    settings.media.dir = Some(media);
    settings.recordings.dir = Some(base.join("recordings"));
    settings
}

fn document_rows() -> BTreeSet<String> {
    let doc = include_str!("../../../docs/KAZOO.md");
    doc.lines()
        .filter_map(|l| l.strip_prefix("| K"))
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| format!("K{n}"))
        .collect()
}

#[test]
fn the_document_and_the_suite_list_the_same_rows() {
    let suite: BTreeSet<String> = rows().iter().map(|r| r.id.to_owned()).collect();
    assert_eq!(suite.len(), rows().len(), "duplicate row ids");
    assert_eq!(document_rows(), suite);
}

#[tokio::test]
async fn every_row_answers_as_documented() {
    for row in rows() {
        // A fresh conference per row: no row depends on another's effects.
        let w = world().await;
        let path = w.fill(row.path);
        let body = row.body.map(|b| w.fill(b));
        let (status, response, headers) =
            w.send(row.method, &path, body, row.token, row.headers).await;
        assert_eq!(status, row.status, "{}: {} {path} → {response}", row.id, row.method);
        w.check(row.id, &response, row.expect);
        for (name, value) in row.expect_headers {
            let got = headers.get(*name).and_then(|v| v.to_str().ok()).unwrap_or("");
            assert!(got.starts_with(value), "{}: header {name} = {got:?}", row.id);
        }
        if let Some((after, expect)) = row.after {
            let (status, response, _) = w.send("GET", &w.fill(after), None, true, &[]).await;
            assert_eq!(status, 200, "{}: follow-up {after}", row.id);
            w.check(row.id, &response, expect);
        }
        w.registry.stop_all().await;
    }
    let base = std::env::temp_dir().join(format!("mixminus-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(base);
}
