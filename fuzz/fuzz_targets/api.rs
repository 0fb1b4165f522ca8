//! The control API's request bodies, through the real axum router in process (tower
//! `oneshot`) over a real conference runtime: a running conference with two media legs,
//! then a short sequence of requests whose method, route, token and body the fuzzer picks
//! (bodies are raw bytes, or JSON built from the API's own words so the parsers get past
//! `{"data": …}`).
//!
//! Checked for every request: no panic, no 5xx (but 501, Kazoo's `not_implemented` for
//! the actions mixminus does not run, which changes nothing), a Kazoo envelope (`status` success or
//! error; an error names `error` = the HTTP code), no token echoed, and a refused request
//! (4xx) changes nothing — the conferences, their documents, participants' flags and the
//! relationship matrix are compared before and after.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use axum::body::Body;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use mixminus_control::config::AccountScope;
use mixminus_control::doc::ConferenceDoc;
use mixminus_control::registry::ParticipantMeta;
use mixminus_control::{Api, Auth, Registry};
use mixminus_rtp::{Bridge, BridgeConfig, CodecKind, CodecParams, JoinRequest};
use serde_json::{json, Map, Value};
use tower::ServiceExt;

const ALL: &str = "fuzz-token-all-accounts";
const ACC1: &str = "fuzz-token-acc1-only";
const BODY_LIMIT: usize = 4096;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
    })
}

fn bridge() -> &'static Bridge {
    static BRIDGE: OnceLock<Bridge> = OnceLock::new();
    BRIDGE.get_or_init(|| {
        let mut config = BridgeConfig::default();
        config.rtp_ports = (10_000, 11_999);
        config.inactivity_timeout = None;
        Bridge::new(config).expect("valid bridge config")
    })
}

#[derive(Arbitrary, Debug)]
struct Call {
    method: Verb,
    route: Route,
    account: Account,
    token: Token,
    body: BodyKind,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Verb {
    Get,
    Put,
    Post,
    Patch,
    Delete,
}

#[derive(Arbitrary, Debug)]
enum Route {
    Conferences,
    Conference,
    OtherConference(String),
    Participants,
    Participant(u8),
    ParticipantRaw(String),
    Relationships,
    Channel(bool),
    ChannelRaw(String),
    Metrics,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Account {
    Acc1,
    Acc2,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Token {
    None,
    All,
    Acc1,
    Bearer,
    Wrong(String),
}

#[derive(Arbitrary, Debug)]
enum BodyKind {
    Empty,
    Raw(Vec<u8>),
    /// `{"data": {"action": A, "data": V, "value": W}}` — the participants actions.
    Action {
        action: Word,
        data: Json,
        value: Json,
    },
    /// `{"action": A, "data": V}` — conference actions and the channels metaflow.
    TopAction {
        action: Word,
        data: Json,
    },
    /// `{"action": "metaflow", "data": {"data": {"module": "relate", "data": V}}}`.
    Metaflow(Json),
    /// `{"data": V}` — a conference document.
    Doc(Json),
    /// Anything.
    Json(Json),
}

/// Words the API knows, so the fuzzer does not have to find them byte by byte.
const WORDS: &[&str] = &[
    "data", "action", "value", "relate", "join", "mute", "unmute", "deaf", "undeaf", "kick",
    "volume_in", "volume_out", "energy", "lock", "unlock", "play", "metaflow", "module",
    "participant_id", "other_participant", "relationship", "clear", "conference_id", "call-a",
    "call-b", "conf1", "rtp", "sdp", "codec", "opus", "pcmu", "pcma", "l16", "remote_ip",
    "remote_port", "payload_type", "rate", "ptime", "call_id", "caller_id_name",
    "caller_id_number", "participant_flags", "ghost", "is_moderator", "name", "id", "member",
    "moderator", "join_muted", "join_deaf", "numbers", "pins", "profile", "interval",
    "energy-level", "max-members", "max_participants", "conference_numbers", "127.0.0.1",
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n",
];

#[derive(Debug)]
struct Word(String);

impl<'a> Arbitrary<'a> for Word {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Word(if u.ratio(7, 8)? {
            (*u.choose(WORDS)?).to_owned()
        } else {
            String::arbitrary(u)?
        }))
    }
}

/// A JSON value built mostly from the API's words and small numbers.
#[derive(Debug)]
struct Json(Value);

impl<'a> Arbitrary<'a> for Json {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        json_value(u, 0).map(Json)
    }
}

fn json_value(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<Value> {
    let kind = if depth >= 4 { u.int_in_range(0..=5)? } else { u.int_in_range(0..=7)? };
    Ok(match kind {
        0 => Value::Null,
        1 => Value::Bool(bool::arbitrary(u)?),
        2 => json!(u.int_in_range(-2i64..=5)?),
        3 => json!(i64::arbitrary(u)?),
        4 => serde_json::Number::from_f64(f64::arbitrary(u)?).map_or(Value::Null, Value::Number),
        5 => Value::String(Word::arbitrary(u)?.0),
        6 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array((0..n).map(|_| json_value(u, depth + 1)).collect::<Result<_, _>>()?)
        }
        _ => {
            let n = u.int_in_range(0..=5)?;
            let mut map = Map::new();
            for _ in 0..n {
                let key = Word::arbitrary(u)?.0;
                map.insert(key, json_value(u, depth + 1)?);
            }
            Value::Object(map)
        }
    })
}

#[derive(Arbitrary, Debug)]
struct Input {
    calls: Vec<Call>,
}

/// What a refused request must leave untouched.
#[derive(Debug, PartialEq)]
struct State {
    conferences: Vec<(String, String, Value, bool, String, Vec<Value>, Vec<Value>)>,
    ports: usize,
}

fn state(registry: &Registry) -> State {
    let mut conferences = Vec::new();
    for account in ["acc1", "acc2"] {
        for entry in registry.list(account) {
            let snapshot = entry.handle().snapshot();
            let participants = snapshot
                .participants
                .iter()
                .map(|p| {
                    let i = &p.info;
                    json!([
                        i.id.get(),
                        i.can_speak,
                        i.can_hear,
                        i.moderator,
                        i.ghost,
                        format!("{:?}/{:?}/{:?}", i.input_gain, i.output_gain, i.energy_threshold),
                        entry.member(i.id).map(|m| m.call_id)
                    ])
                })
                .collect();
            let relationships = snapshot
                .relationships
                .iter()
                .map(|(p, o, r)| json!([p.get(), o.get(), r.deaf, r.mute]))
                .collect();
            conferences.push((
                account.to_owned(),
                entry.id().to_owned(),
                entry.doc().to_json(entry.id()),
                entry.is_locked(),
                entry.revision(),
                participants,
                relationships,
            ));
        }
    }
    State { conferences, ports: registry.bridge().ports_in_use() }
}

fn path(call: &Call, ids: &[u32]) -> String {
    let account = match &call.account {
        Account::Acc1 => "acc1".to_owned(),
        Account::Acc2 => "acc2".to_owned(),
        Account::Raw(s) => s.clone(),
    };
    let base = format!("/v2/accounts/{account}");
    match &call.route {
        Route::Conferences => format!("{base}/conferences"),
        Route::Conference => format!("{base}/conferences/conf1"),
        Route::OtherConference(c) => format!("{base}/conferences/{c}"),
        Route::Participants => format!("{base}/conferences/conf1/participants"),
        Route::Participant(i) => {
            let id = ids.get(*i as usize % (ids.len() + 1)).copied().unwrap_or(*i as u32);
            format!("{base}/conferences/conf1/participants/{id}")
        }
        Route::ParticipantRaw(p) => format!("{base}/conferences/conf1/participants/{p}"),
        Route::Relationships => format!("{base}/conferences/conf1/relationships"),
        Route::Channel(a) => format!("{base}/channels/{}", if *a { "call-a" } else { "call-b" }),
        Route::ChannelRaw(c) => format!("{base}/channels/{c}"),
        Route::Metrics => "/metrics".to_owned(),
        Route::Raw(p) => p.clone(),
    }
}

fn body(kind: &BodyKind) -> Vec<u8> {
    let value = match kind {
        BodyKind::Empty => return Vec::new(),
        BodyKind::Raw(bytes) => return bytes.clone(),
        BodyKind::Action { action, data, value } => {
            json!({"data": {"action": action.0, "data": data.0, "value": value.0}})
        }
        BodyKind::TopAction { action, data } => json!({"action": action.0, "data": data.0}),
        BodyKind::Metaflow(v) => {
            json!({"action": "metaflow", "data": {"data": {"module": "relate", "data": v.0}}})
        }
        BodyKind::Doc(v) => json!({"data": v.0}),
        BodyKind::Json(v) => v.0.clone(),
    };
    value.to_string().into_bytes()
}

async fn run(input: Input) {
    let registry = Registry::new(bridge().clone(), 4);
    let auth = Auth::default()
        .with_token(ALL, AccountScope::All)
        .with_token(ACC1, AccountScope::Only(vec!["acc1".into()]));
    let app = Api::new(registry.clone(), auth).node("fuzz").body_limit(BODY_LIMIT).router();
    let doc = ConferenceDoc::parse(&json!({"id": "conf1", "member": {"join_muted": false}}))
        .expect("a valid document");
    let entry = registry.create("acc1", doc).expect("a conference");
    let mut ids = Vec::new();
    for call_id in ["call-a", "call-b"] {
        let joined = entry
            .handle()
            .join(JoinRequest::new(CodecParams::new(CodecKind::Pcmu), None))
            .await
            .expect("a free port pair");
        entry.add_member(joined.id, ParticipantMeta::new(call_id.into(), None, None));
        ids.push(joined.id.get());
    }
    drop(entry);

    for call in input.calls.iter().take(6) {
        let uri = path(call, &ids);
        let method = match call.method {
            Verb::Get => Method::GET,
            Verb::Put => Method::PUT,
            Verb::Post => Method::POST,
            Verb::Patch => Method::PATCH,
            Verb::Delete => Method::DELETE,
        };
        let mut request = Request::builder().method(method).uri(uri.as_str());
        match &call.token {
            Token::None => {}
            Token::All => request = request.header("x-auth-token", ALL),
            Token::Acc1 => request = request.header("x-auth-token", ACC1),
            Token::Bearer => request = request.header("authorization", format!("Bearer {ALL}")),
            Token::Wrong(t) => request = request.header("x-auth-token", t.as_str()),
        }
        // The fuzzer's strings may not make a valid URI or header: not our concern here.
        let Ok(request) = request.body(Body::from(body(&call.body))) else { continue };
        let before = state(&registry);
        let response = app.clone().oneshot(request).await.expect("the router is infallible");
        let status = response.status();
        assert!(
            !status.is_server_error() || status == axum::http::StatusCode::NOT_IMPLEMENTED,
            "{status} for {call:?}"
        );
        let streaming = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if streaming {
            continue; // an event stream never ends; its headers were enough
        }
        let bytes = tokio::time::timeout(Duration::from_secs(5), response.into_body().collect())
            .await
            .expect("a response body in time")
            .expect("a response body")
            .to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(ALL) && !text.contains(ACC1), "a token leaked: {text}");
        if uri == "/metrics" && status.is_success() {
            continue; // Prometheus text, not an envelope
        }
        let envelope: Value = serde_json::from_slice(&bytes).expect("a JSON envelope");
        if status.is_success() {
            assert_eq!(envelope["status"], "success", "{envelope}");
        } else {
            assert_eq!(envelope["status"], "error", "{envelope}");
            assert_eq!(envelope["error"], status.as_u16().to_string(), "{envelope}");
            assert_eq!(before, state(&registry), "a refused {call:?} changed something");
        }
    }
    registry.stop_all().await;
    assert_eq!(bridge().ports_in_use(), 0, "every port released");
}

fuzz_target!(|input: Input| {
    runtime().block_on(run(input));
});
