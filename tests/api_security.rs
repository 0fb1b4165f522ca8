//! The HTTP API against strangers and broken clients, over real HTTP on loopback: every
//! route refuses a missing or wrong token (401) and another account's token (403) before it
//! looks at anything else; every body route refuses an oversized body (413, with or without
//! a length), invalid JSON and a field of the wrong type (400, Kazoo's envelope naming the
//! field); after every refusal the conferences, participants, matrix, call metadata and
//! ports are exactly as before. No token ever reaches a response or the logs (captured at
//! TRACE for every crate).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::http::{Response, Server};
use mixminus::control::config::AccountScope;
use mixminus::control::{Auth, Registry};
use mixminus::rtp::{Bridge, BridgeConfig};
use serde_json::{json, Value};

const ALL: &str = "tok-ALL-7d1e0c4b9a2f";
const ACC1: &str = "tok-ACC1-5b3a8e6f01c2";
const WRONG: &str = "tok-WRONG-0000000000";
const LIMIT: usize = 4096;

/// Everything written to the logs by this test binary.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct World {
    server: Server,
    /// (account, conference, participant ids, a call id)
    confs: Vec<(&'static str, &'static str, Vec<u64>, String)>,
}

async fn world(ports: (u16, u16)) -> World {
    logs();
    let mut config = BridgeConfig::default();
    config.rtp_ports = ports;
    config.inactivity_timeout = None;
    let registry = Registry::new(Bridge::new(config).unwrap(), 10);
    let auth = Auth::default()
        .with_token(ALL, AccountScope::All)
        .with_token(ACC1, AccountScope::Only(vec!["acc1".into()]));
    let server = Server::start(registry, auth, LIMIT).await;
    let mut confs = Vec::new();
    for (account, conf) in [("acc1", "conf1"), ("acc2", "conf2")] {
        let base = format!("/v2/accounts/{account}/conferences");
        let doc = json!({"data": {"id": conf, "name": "sec", "member": {"join_muted": false}}});
        let r = server.call("PUT", &base, Some(ALL), Some(doc.to_string().as_bytes())).await;
        assert_eq!(r.status, 201, "{}", r.text);
        let mut ids = Vec::new();
        for n in 0..3 {
            let call = format!("{conf}-call-{n}");
            let body = json!({"data": {"action": "join", "data": {"call_id": call,
                "rtp": {"codec": "pcmu", "remote_ip": "127.0.0.1", "remote_port": 9}}}});
            let r = server
                .call(
                    "PUT",
                    &format!("{base}/{conf}/participants"),
                    Some(ALL),
                    Some(body.to_string().as_bytes()),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.text);
            ids.push(r.json["data"]["participant_id"].as_u64().unwrap());
        }
        let relate = json!({"data": {"action": "relate", "data": {"participant_id": ids[0],
            "other_participant": ids[1], "relationship": "deaf"}}});
        let r = server
            .call(
                "PUT",
                &format!("{base}/{conf}/participants"),
                Some(ALL),
                Some(relate.to_string().as_bytes()),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        confs.push((account, conf, ids, format!("{conf}-call-0")));
    }
    World { server, confs }
}

/// What no refused request may change.
fn fingerprint(registry: &Registry) -> Value {
    let mut all = Vec::new();
    for account in ["acc1", "acc2"] {
        for entry in registry.list(account) {
            let snapshot = entry.handle().snapshot();
            let participants: Vec<Value> = snapshot
                .participants
                .iter()
                .map(|p| {
                    let i = &p.info;
                    json!([
                        i.id.get(),
                        i.can_speak,
                        i.can_hear,
                        i.moderator,
                        format!("{:?} {:?} {:?}", i.input_gain, i.output_gain, i.energy_threshold),
                        entry.member(i.id).map(|m| m.call_id)
                    ])
                })
                .collect();
            let matrix: Vec<Value> = snapshot
                .relationships
                .iter()
                .map(|(p, o, r)| json!([p.get(), o.get(), r.deaf, r.mute]))
                .collect();
            all.push(json!({
                "account": account, "id": entry.id(), "doc": entry.doc().to_json(entry.id()),
                "locked": entry.is_locked(), "revision": entry.revision(),
                "participants": participants, "matrix": matrix, "members": entry.member_count(),
            }));
        }
    }
    json!({"conferences": all, "ports": registry.bridge().ports_in_use()})
}

/// Every route with a body that would succeed, for one conference.
fn routes(
    account: &str,
    conf: &str,
    ids: &[u64],
    call: &str,
) -> Vec<(&'static str, String, Value)> {
    let a = format!("/v2/accounts/{account}");
    let c = format!("{a}/conferences/{conf}");
    let (p, o) = (ids[0], ids[2]);
    vec![
        ("GET", format!("{a}/conferences"), Value::Null),
        ("PUT", format!("{a}/conferences"), json!({"data": {"name": "new"}})),
        ("GET", c.clone(), Value::Null),
        ("POST", c.clone(), json!({"data": {"name": "replaced"}})),
        ("PATCH", c.clone(), json!({"data": {"name": "patched"}})),
        ("PUT", c.clone(), json!({"action": "unlock", "data": {}})),
        ("GET", format!("{c}/participants"), Value::Null),
        ("PUT", format!("{c}/participants"), json!({"data": {"action": "mute", "data": {}}})),
        (
            "PUT",
            format!("{c}/participants"),
            json!({"data": {"action": "relate", "data": {"participant_id": p,
                "other_participant": o, "relationship": "mute"}}}),
        ),
        (
            "PUT",
            format!("{c}/participants"),
            json!({"data": {"action": "join", "data": {"rtp": {"codec": "pcmu"}}}}),
        ),
        ("GET", format!("{c}/participants/{p}"), Value::Null),
        (
            "PUT",
            format!("{c}/participants/{p}"),
            json!({"data": {"action": "volume_in", "value": 2}}),
        ),
        ("GET", format!("{c}/relationships"), Value::Null),
        ("GET", format!("{c}/events"), Value::Null),
        (
            "PUT",
            format!("{a}/channels/{call}"),
            json!({"action": "metaflow", "data": {"data": {"module": "relate", "data": {
                "conference_id": conf, "participant_id": p, "other_participant": o,
                "relationship": "deaf"}}}}),
        ),
        ("PUT", format!("{c}/participants/{p}"), json!({"data": {"action": "kick"}})),
        ("DELETE", c, Value::Null),
    ]
}

fn body_of(v: &Value) -> Option<Vec<u8>> {
    (!v.is_null()).then(|| v.to_string().into_bytes())
}

fn assert_error(r: &Response, status: u16, what: &str) {
    assert_eq!(r.status, status, "{what}: {}", r.text);
    assert_eq!(r.json["status"], "error", "{what}: {}", r.text);
    assert_eq!(r.json["error"], status.to_string(), "{what}: {}", r.text);
    assert!(r.json["request_id"].as_str().is_some_and(|s| !s.is_empty()), "{what}");
    for token in [ALL, ACC1, WRONG] {
        assert!(!r.head.contains(token) && !r.text.contains(token), "{what} echoed a token");
    }
}

/// The field a Kazoo error envelope names, and its rule.
fn named_field(r: &Response) -> (String, String) {
    let data = r.json["data"].as_object().unwrap_or_else(|| panic!("no data: {}", r.text));
    let (field, rules) = data
        .iter()
        .find(|(k, v)| *k != "id" && v.is_object())
        .unwrap_or_else(|| panic!("no field named: {}", r.text));
    (field.clone(), rules.as_object().unwrap().keys().next().unwrap().clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_get_401_and_other_accounts_403_and_change_nothing() {
    let w = world((12_000, 12_399)).await;
    let registry = &w.server.registry;
    let before = fingerprint(registry);
    let mut refusals = 0;
    for (account, conf, ids, call) in &w.confs {
        for (method, path, body) in routes(account, conf, ids, call) {
            let body = body_of(&body);
            let what = format!("{method} {path}");
            for token in [None, Some(WRONG), Some(""), Some(&ALL[..ALL.len() - 1])] {
                let r = w.server.call(method, &path, token, body.as_deref()).await;
                assert_error(&r, 401, &format!("{what} with {token:?}"));
                refusals += 1;
            }
            // A wrong bearer token, and a right token with a wrong scheme.
            for header in [format!("Bearer {WRONG}"), format!("Basic {ALL}")] {
                let mut raw = format!(
                    "{method} {path} HTTP/1.1\r\nhost: x\r\nauthorization: {header}\r\nconnection: close\r\n"
                );
                let bytes = body.clone().unwrap_or_default();
                raw.push_str(&format!("content-length: {}\r\n\r\n", bytes.len()));
                let mut raw = raw.into_bytes();
                raw.extend_from_slice(&bytes);
                assert_error(&w.server.raw(&raw).await, 401, &format!("{what} with {header:.6}"));
            }
            if *account == "acc2" {
                let r = w.server.call(method, &path, Some(ACC1), body.as_deref()).await;
                assert_error(&r, 403, &format!("{what} with acc1's token"));
                refusals += 1;
            }
        }
    }
    // Nothing about what exists leaks before authentication.
    let r = w.server.call("GET", "/v2/accounts/acc1/conferences/nope", None, None).await;
    assert_error(&r, 401, "unknown conference without a token");
    let r = w.server.call("GET", "/metrics", Some(WRONG), None).await;
    assert_error(&r, 401, "metrics with a wrong token");
    assert_eq!(fingerprint(registry), before, "a refused request changed something");
    assert!(refusals > 60);

    // The same requests with the right token do work (so the refusals above were not
    // refusals of broken requests), and another account's token is fine on its own account.
    let (account, conf, ids, call) = &w.confs[0];
    for (method, path, body) in routes(account, conf, ids, call) {
        if path.ends_with("/events") || method == "DELETE" {
            continue;
        }
        let r = w.server.call(method, &path, Some(ACC1), body_of(&body).as_deref()).await;
        assert!(r.status < 300, "{method} {path} with acc1's token: {}", r.text);
    }
    assert_ne!(fingerprint(registry), before);
    registry.stop_all().await;
    assert_no_token_logged();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_invalid_and_mistyped_bodies_are_refused_and_change_nothing() {
    let w = world((12_400, 12_799)).await;
    let registry = &w.server.registry;
    let before = fingerprint(registry);
    let (account, conf, ids, call) = &w.confs[0];
    let body_routes: Vec<_> = routes(account, conf, ids, call)
        .into_iter()
        .filter(|(_, _, body)| !body.is_null())
        .collect();
    assert_eq!(body_routes.len(), 10);
    for (method, path, _) in &body_routes {
        let what = format!("{method} {path}");
        // Over the limit with a content-length: refused before it is read.
        let big = format!("{{\"data\": {{\"name\": \"{}\"}}}}", "x".repeat(LIMIT));
        let r = w.server.call(method, path, Some(ALL), Some(big.as_bytes())).await;
        assert_error(&r, 413, &format!("{what} oversized"));
        assert_eq!(named_field(&r), ("data".into(), "maxLength".into()));
        // Over the limit without one (chunked): refused as it streams in.
        let mut raw = format!(
            "{method} {path} HTTP/1.1\r\nhost: x\r\nx-auth-token: {ALL}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        .into_bytes();
        for _ in 0..3 {
            raw.extend_from_slice(format!("{:x}\r\n{}\r\n", 2000, " ".repeat(2000)).as_bytes());
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        assert_error(&w.server.raw(&raw).await, 413, &format!("{what} chunked oversized"));
        // Not JSON, and JSON that is not an object. (No body at all is Kazoo's empty
        // request, `data` = `{}`: tests/kazoo_conformance.rs checks what each route does.)
        for bad in [&b"{\"data\": "[..], b"\xff\xfe{}", b"[1, 2]", b"\"data\""] {
            let r = w.server.call(method, path, Some(ALL), Some(bad)).await;
            assert_error(&r, 400, &format!("{what} with {:?}", String::from_utf8_lossy(bad)));
            named_field(&r);
        }
    }
    assert_eq!(fingerprint(registry), before, "a refused body changed something");

    // A field of the wrong type: 400 naming exactly that field, rule `type`.
    let c = format!("/v2/accounts/{account}/conferences/{conf}");
    let (p, o) = (ids[0], ids[2]);
    let cases: Vec<(&str, String, Value, &str)> = vec![
        (
            "PUT",
            format!("/v2/accounts/{account}/conferences"),
            json!({"data": {"name": 5}}),
            "name",
        ),
        (
            "POST",
            c.clone(),
            json!({"data": {"member": {"join_muted": "yes"}}}),
            "member.join_muted",
        ),
        (
            "PATCH",
            c.clone(),
            json!({"data": {"moderator": {"join_deaf": 1}}}),
            "moderator.join_deaf",
        ),
        ("PATCH", c.clone(), json!({"data": "everything"}), "data"),
        ("PUT", c.clone(), json!({"action": 7, "data": {}}), "action"),
        ("PUT", format!("{c}/participants"), json!({"data": {"action": ["relate"]}}), "action"),
        (
            "PUT",
            format!("{c}/participants"),
            json!({"data": {"action": "relate", "data": {
            "participant_id": true, "other_participant": o}}}),
            "participant_id",
        ),
        (
            "PUT",
            format!("{c}/participants"),
            json!({"data": {"action": "relate", "data": {
            "participant_id": p, "other_participant": {"id": o}}}}),
            "other_participant",
        ),
        (
            "PUT",
            format!("{c}/participants"),
            json!({"data": {"action": "relate", "data": {
            "participant_id": p, "other_participant": o, "relationship": 1}}}),
            "relationship",
        ),
        (
            "PUT",
            format!("{c}/participants"),
            json!({"data": {"action": "join", "data": {
            "rtp": {"codec": "pcmu", "remote_port": "high"}}}}),
            "rtp.remote_port",
        ),
        (
            "PUT",
            format!("{c}/participants"),
            json!({"data": {"action": "join", "data": {
            "call_id": 12, "rtp": {"codec": "pcmu"}}}}),
            "call_id",
        ),
        (
            "PUT",
            format!("{c}/participants/{p}"),
            json!({"data": {"action": "volume_out",
            "value": "loud"}}),
            "value",
        ),
        (
            "PUT",
            format!("{c}/participants/{p}"),
            json!({"data": {"action": "energy",
            "value": [1]}}),
            "value",
        ),
        (
            "PUT",
            format!("/v2/accounts/{account}/channels/{call}"),
            json!({"action": "metaflow",
            "data": {"data": {"module": "relate", "data": {"conference_id": 5,
            "participant_id": p, "other_participant": o}}}}),
            "conference_id",
        ),
    ];
    for (method, path, body, field) in cases {
        let what = format!("{method} {path} {body}");
        let r = w.server.call(method, &path, Some(ALL), Some(body.to_string().as_bytes())).await;
        assert_error(&r, 400, &what);
        assert_eq!(r.json["message"], "invalid data", "{what}: {}", r.text);
        assert_eq!(named_field(&r), (field.to_owned(), "type".to_owned()), "{what}");
        assert_eq!(fingerprint(registry), before, "{what} changed something");
    }

    // The limit is the limit: a body of exactly LIMIT bytes is read.
    let path = c;
    let head = "{\"data\": {\"ui_metadata\": {\"pad\": \"";
    let tail = "\"}}}";
    let exact = format!("{head}{}{tail}", "n".repeat(LIMIT - head.len() - tail.len()));
    assert_eq!(exact.len(), LIMIT);
    let r = w.server.call("PATCH", &path, Some(ALL), Some(exact.as_bytes())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    registry.stop_all().await;
    assert_no_token_logged();
}

/// A malformed request line or header gets a 4xx from the HTTP layer, never a crash, and
/// the server keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_http_is_refused_and_the_server_keeps_serving() {
    let w = world((12_800, 12_999)).await;
    let before = fingerprint(&w.server.registry);
    let garbage: [&[u8]; 6] = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", // a TLS hello
        b"PUT /v2/accounts/acc1/conferences HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n",
        b"PUT /v2/accounts/acc1/conferences HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello",
        b"GET /v2/accounts/acc1/conferences HTTP/1.1\r\nx-auth-token: a\xffb\r\n\r\n",
        b"GET /v2/accounts/%ff%fe/conferences HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"GET /v2/accounts/acc1/conferences/conf1/participants/99999999999999999999 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    ];
    for g in garbage {
        let r = w.server.raw(g).await;
        assert!(
            r.status == 0 || (400..500).contains(&r.status),
            "{:?} got {}",
            String::from_utf8_lossy(g),
            r.status
        );
    }
    let r = w.server.call("GET", "/v2/accounts/acc1/conferences", Some(ALL), None).await;
    assert_eq!(r.status, 200);
    assert_eq!(fingerprint(&w.server.registry), before);
    w.server.registry.stop_all().await;
}

fn assert_no_token_logged() {
    let logs = logs().lock().unwrap();
    let text = String::from_utf8_lossy(&logs);
    assert!(text.contains("request refused"), "the logs were captured at debug level");
    for token in [ALL, ACC1, WRONG] {
        assert!(!text.contains(token), "a token was logged");
    }
}
