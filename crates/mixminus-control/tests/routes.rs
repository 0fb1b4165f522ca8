//! Every route, in process (tower `oneshot`), with a real conference runtime on loopback:
//! success and each error class, and that a refused request changes nothing.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use mixminus_control::config::AccountScope;
use mixminus_control::{Api, Auth, Registry};
use mixminus_rtp::{Bridge, BridgeConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

const ALL: &str = "token-for-all-accounts";
const ACC1: &str = "token-for-acc1";
const BASE: &str = "/v2/accounts/acc1";

struct Harness {
    app: Router,
    registry: Registry,
}

fn harness() -> Harness {
    let mut config = BridgeConfig::default();
    config.rtp_bind = "127.0.0.1".parse().unwrap();
    // Each test binary gets ports from the OS-free high range; the pool skips taken ones.
    config.rtp_ports = (42_000, 43_999);
    let bridge = Bridge::new(config).unwrap();
    let registry = Registry::new(bridge, 10);
    let auth = Auth::default()
        .with_token(ALL, AccountScope::All)
        .with_token(ACC1, AccountScope::Only(vec!["acc1".into()]));
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle();
    let app = Api::new(registry.clone(), auth)
        .node("test-node")
        .body_limit(4096)
        .metrics(metrics)
        .router();
    Harness { app, registry }
}

impl Harness {
    async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.raw(method, uri, token, body.map(|b| b.to_string())).await
    }

    async fn raw(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            request = request.header("x-auth-token", token);
        }
        let request = request.body(body.map(Body::from).unwrap_or_else(Body::empty)).unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        assert!(!text.contains(ALL) && !text.contains(ACC1), "a token leaked: {text}");
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn create(&self, doc: Value) -> String {
        let (status, body) = self
            .call(
                Method::PUT,
                &format!("{BASE}/conferences"),
                Some(ALL),
                Some(json!({"data": doc})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["data"]["id"].as_str().unwrap().to_owned()
    }

    async fn join(&self, conf: &str, data: Value) -> Value {
        let (status, body) = self
            .call(
                Method::PUT,
                &format!("{BASE}/conferences/{conf}/participants"),
                Some(ALL),
                Some(json!({"data": {"action": "join", "data": data}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["data"].clone()
    }

    async fn relationships(&self, conf: &str) -> Value {
        let (status, body) = self
            .call(Method::GET, &format!("{BASE}/conferences/{conf}/relationships"), Some(ALL), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        body["data"].clone()
    }

    async fn participants(&self, conf: &str) -> Vec<Value> {
        let (status, body) = self
            .call(Method::GET, &format!("{BASE}/conferences/{conf}/participants"), Some(ALL), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        body["data"].as_array().unwrap().clone()
    }
}

fn rtp() -> Value {
    json!({"rtp": {"codec": "opus"}})
}

fn error_field(body: &Value) -> (String, String) {
    assert_eq!(body["status"], "error", "{body}");
    let data = body["data"].as_object().unwrap();
    let (field, rules) = data.iter().find(|(k, v)| *k != "id" && v.is_object()).expect("a field");
    let rule = rules.as_object().unwrap().keys().next().unwrap().clone();
    (field.clone(), rule)
}

#[tokio::test]
async fn auth_classes() {
    let h = harness();
    let uri = format!("{BASE}/conferences");
    let (status, body) = h.call(Method::GET, &uri, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "401");
    assert_eq!(body["status"], "error");
    assert_eq!(h.call(Method::GET, &uri, Some("nope"), None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.call(Method::GET, "/v2/accounts/acc2/conferences", Some(ACC1), None).await.0,
        StatusCode::FORBIDDEN
    );
    // A refused create creates nothing.
    let (status, _) = h
        .call(Method::PUT, "/v2/accounts/acc2/conferences", Some(ACC1), Some(json!({"data": {}})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(h.registry.is_empty());
    let (status, body) = h.call(Method::GET, &uri, Some(ACC1), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["auth_token"], "");
    assert_eq!(body["node"], "test-node");
    assert!(body["request_id"].as_str().is_some_and(|r| !r.is_empty()));
}

#[tokio::test]
async fn conference_lifecycle() {
    let h = harness();
    let id = h.create(json!({"name": "standup", "ui_metadata": {"ui": "monster-ui"}})).await;
    let (status, body) = h.call(Method::GET, &format!("{BASE}/conferences"), Some(ALL), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"][0]["id"], id.as_str());
    assert_eq!(body["data"][0]["_read_only"]["is_locked"], false);
    assert_eq!(body["data"][0]["_read_only"]["members"], 0);
    assert_eq!(body["data"][0]["flags"], json!([]));
    assert_eq!(body["page_size"], 1);

    let uri = format!("{BASE}/conferences/{id}");
    let (status, body) = h.call(Method::GET, &uri, Some(ALL), None).await;
    assert_eq!(status, StatusCode::OK);
    let doc = &body["data"];
    assert_eq!(doc["member"]["join_muted"], true, "Kazoo's default");
    assert_eq!(doc["ui_metadata"]["ui"], "monster-ui");
    assert_eq!(doc["_read_only"]["members"], 0);
    assert_eq!(doc["_read_only"]["is_locked"], false);
    assert!(body["revision"].as_str().unwrap().starts_with("1-"));

    // PATCH merges, POST replaces; what cannot change live is kept and reported pending.
    let (status, body) = h
        .call(
            Method::PATCH,
            &uri,
            Some(ALL),
            Some(json!({"data": {"member": {"join_muted": false}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["member"]["join_muted"], false);
    assert_eq!(body["data"]["name"], "standup");
    let (status, body) =
        h.call(Method::POST, &uri, Some(ALL), Some(json!({"data": {"name": "retro"}}))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["name"], "retro");
    assert_eq!(body["data"]["member"]["join_muted"], true);
    let (status, body) = h
        .call(
            Method::POST,
            &uri,
            Some(ALL),
            Some(json!({"data": {"name": "x", "profile": {"rate": 16000}}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["profile"]["rate"], 16000);
    assert_eq!(
        body["data"]["_read_only"]["pending"]["profile.rate"],
        json!({"requested": 16000, "running": 48000})
    );
    let (_, body) = h.call(Method::GET, &uri, Some(ALL), None).await;
    assert_eq!(body["data"]["name"], "x");

    // Another account does not see it: Kazoo's ad-hoc conference, nobody in it.
    let (status, body) =
        h.call(Method::GET, &format!("/v2/accounts/acc2/conferences/{id}"), Some(ALL), None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["data"].get("name").is_none(), "{body}");
    assert_eq!(body["data"]["_read_only"]["participants"], json!([]));

    h.join(&id, rtp()).await;
    assert_eq!(h.registry.bridge().ports_in_use(), 1);
    let (status, _) = h.call(Method::DELETE, &uri, Some(ALL), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(h.registry.bridge().ports_in_use(), 0, "every port released");
    let (status, body) = h.call(Method::GET, &uri, Some(ALL), None).await;
    assert_eq!(status, StatusCode::OK, "an ended conference reads as an empty ad-hoc one");
    assert_eq!(body["data"]["_read_only"]["members"], 0);
    assert_eq!(h.call(Method::DELETE, &uri, Some(ALL), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        h.call(Method::POST, &uri, Some(ALL), Some(json!({"data": {}}))).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_bodies_name_the_field_and_change_nothing() {
    let h = harness();
    let uri = format!("{BASE}/conferences");
    let (status, body) = h
        .call(
            Method::PUT,
            &uri,
            Some(ALL),
            Some(json!({"data": {"member": {"join_muted": "yes"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "400");
    assert_eq!(body["message"], "invalid data");
    assert_eq!(error_field(&body), ("member.join_muted".into(), "type".into()));
    let (status, body) = h.raw(Method::PUT, &uri, Some(ALL), Some("{not json".into())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["status"], "error");
    let (status, body) =
        h.call(Method::PUT, &uri, Some(ALL), Some(json!({"name": "no data wrapper"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_field(&body), ("data".into(), "required".into()));
    let big = json!({"data": {"name": "x", "pad": "y".repeat(10_000)}});
    let (status, body) = h.call(Method::PUT, &uri, Some(ALL), Some(big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"], "413");
    assert!(h.registry.is_empty(), "nothing was created");
}

#[tokio::test]
async fn join_and_participants() {
    let h = harness();
    let id = h.create(json!({"name": "c"})).await;
    let alice = h
        .join(
            &id,
            json!({"call_id": "call-alice", "caller_id_name": "Alice", "caller_id_number": "1001",
            "rtp": {"remote_ip": "127.0.0.1", "remote_port": 5004, "codec": "pcmu"}}),
        )
        .await;
    assert_eq!(alice["call_id"], "call-alice");
    assert_eq!(alice["rtp"]["local_ip"], "127.0.0.1");
    assert!(alice["rtp"]["local_port"].as_u64().unwrap() >= 42_000);
    assert_eq!(alice["conference_channel_vars"]["speak"], false, "members join muted by default");
    assert!(alice["join_time"].as_u64().unwrap() > 63_000_000_000, "Gregorian seconds");
    let mod_ =
        h.join(&id, json!({"participant_flags": ["is_moderator"], "rtp": {"codec": "opus"}})).await;
    assert_eq!(mod_["conference_channel_vars"]["is_moderator"], true);
    assert_eq!(mod_["conference_channel_vars"]["speak"], true);

    let list = h.participants(&id).await;
    assert_eq!(list.len(), 2);
    let (_, body) = h.call(Method::GET, &format!("{BASE}/conferences/{id}"), Some(ALL), None).await;
    assert_eq!(body["data"]["_read_only"]["members"], 1);
    assert_eq!(body["data"]["_read_only"]["moderators"], 1);
    assert_eq!(body["data"]["_read_only"]["participants"][0]["caller_id_name"], "Alice");

    let p = alice["participant_id"].as_u64().unwrap();
    let (status, body) = h
        .call(Method::GET, &format!("{BASE}/conferences/{id}/participants/{p}"), Some(ALL), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["caller_id_number"], "1001");
    let (status, body) = h
        .call(Method::GET, &format!("{BASE}/conferences/{id}/participants/999"), Some(ALL), None)
        .await;
    assert_eq!(status, StatusCode::OK, "Kazoo answers {{}} for a participant not there");
    assert_eq!(body["data"], json!({}));

    // Bad joins name the field and add nobody.
    let path = format!("{BASE}/conferences/{id}/participants");
    for (data, field) in [
        (json!({"rtp": {"codec": "g729"}}), "rtp.codec"),
        (json!({"rtp": {"codec": "opus", "remote_ip": "1.2.3.4"}}), "rtp.remote_port"),
        (
            json!({"rtp": {"codec": "opus"}, "participant_flags": ["shouting"]}),
            "participant_flags.0",
        ),
        (json!({}), "rtp"),
    ] {
        let (status, body) = h
            .call(
                Method::PUT,
                &path,
                Some(ALL),
                Some(json!({"data": {"action": "join", "data": data}})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_field(&body).0, field);
    }
    let (status, body) =
        h.call(Method::PUT, &path, Some(ALL), Some(json!({"data": {"action": "dance"}}))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "Kazoo's faulty_request");
    assert_eq!(body["message"], "faulty request");
    assert_eq!(h.participants(&id).await.len(), 2);
}

#[tokio::test]
async fn sdp_join_gets_an_answer() {
    let h = harness();
    let id = h.create(json!({})).await;
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5006 RTP/AVP 111\r\na=rtpmap:111 opus/48000/2\r\n";
    let joined = h.join(&id, json!({"sdp": offer})).await;
    let answer = joined["sdp"].as_str().unwrap();
    assert!(answer.contains(&format!("m=audio {} ", joined["rtp"]["local_port"])), "{answer}");
}

#[tokio::test]
async fn locked_conference_refuses_joins() {
    let h = harness();
    let id = h.create(json!({})).await;
    let uri = format!("{BASE}/conferences/{id}");
    let (status, body) =
        h.call(Method::PUT, &uri, Some(ALL), Some(json!({"action": "lock", "data": {}}))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["is_locked"], true);
    let (status, body) = h
        .call(
            Method::PUT,
            &format!("{uri}/participants"),
            Some(ALL),
            Some(json!({"data": {"action": "join", "data": rtp()}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_field(&body), ("is_locked".into(), "locked".into()));
    assert!(h.participants(&id).await.is_empty());
    assert_eq!(h.registry.bridge().ports_in_use(), 0);
    let (status, body) =
        h.call(Method::PUT, &uri, Some(ALL), Some(json!({"action": "dial", "data": {}}))).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(error_field(&body), ("action".into(), "not_implemented".into()));
    h.call(Method::PUT, &uri, Some(ALL), Some(json!({"action": "unlock", "data": {}}))).await;
    h.join(&id, rtp()).await;
}

#[tokio::test]
async fn max_participants_is_enforced() {
    let h = harness();
    let id = h.create(json!({"max_participants": 1})).await;
    h.join(&id, rtp()).await;
    let (status, body) = h
        .call(
            Method::PUT,
            &format!("{BASE}/conferences/{id}/participants"),
            Some(ALL),
            Some(json!({"data": {"action": "join", "data": rtp()}})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(error_field(&body).1, "max_participants");
    // Ghosts are not counted.
    h.join(&id, json!({"participant_flags": ["ghost"], "rtp": {"codec": "opus"}})).await;
}

#[tokio::test]
async fn relate_sets_the_matrix_and_names_bad_ids() {
    let h = harness();
    let id = h.create(json!({"member": {"join_muted": false}})).await;
    let a = h.join(&id, rtp()).await["participant_id"].as_u64().unwrap();
    let b = h.join(&id, rtp()).await["participant_id"].as_u64().unwrap();
    let c = h.join(&id, rtp()).await["participant_id"].as_u64().unwrap();
    let path = format!("{BASE}/conferences/{id}/participants");
    let relate = |data: Value| json!({"data": {"action": "relate", "data": data}});

    let (status, body) = h.call(Method::PUT, &path, Some(ALL), Some(relate(json!({"participant_id": a, "other_participant": b.to_string(), "relationship": "deaf"})))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"], "relating participants");
    assert_eq!(
        h.relationships(&id).await,
        json!([{"participant_id": a, "other_participant": b, "deaf": true, "mute": false, "relationship": "deaf"}])
    );

    // An unknown id: bad_identifier naming it and its field; nothing changes (not even the
    // pairs that were valid).
    let (status, body) = h.call(Method::PUT, &path, Some(ALL), Some(relate(json!({"participant_id": [a, c], "other_participant": [b, 77], "relationship": "mute"})))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "bad identifier");
    assert_eq!(body["data"]["id"], 77);
    assert_eq!(error_field(&body), ("other_participant".into(), "bad_identifier".into()));
    let (status, body) = h
        .call(
            Method::PUT,
            &path,
            Some(ALL),
            Some(relate(json!({"participant_id": "abc", "other_participant": b}))),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["data"]["id"], "abc");
    let (status, body) = h
        .call(
            Method::PUT,
            &path,
            Some(ALL),
            Some(relate(
                json!({"participant_id": a, "other_participant": a, "relationship": "deaf"}),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = h
        .call(
            Method::PUT,
            &path,
            Some(ALL),
            Some(relate(
                json!({"participant_id": a, "other_participant": b, "relationship": "nohear"}),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_field(&body), ("relationship".into(), "enum".into()));
    assert_eq!(
        h.relationships(&id).await.as_array().unwrap().len(),
        1,
        "refused relates changed nothing"
    );

    // Lists and both flags at once, then clear (the default).
    let (status, _) = h.call(Method::PUT, &path, Some(ALL), Some(relate(json!({"participant_id": [b, c], "other_participant": a, "relationship": ["deaf", "mute"]})))).await;
    assert_eq!(status, StatusCode::CREATED);
    let rels = h.relationships(&id).await;
    assert_eq!(rels.as_array().unwrap().len(), 3);
    assert!(rels
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["participant_id"] == c && r["deaf"] == true && r["mute"] == true));
    for (p, o) in [(a, b), (b, a), (c, a)] {
        let (status, _) = h
            .call(
                Method::PUT,
                &path,
                Some(ALL),
                Some(relate(json!({"participant_id": p, "other_participant": o}))),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    assert_eq!(h.relationships(&id).await, json!([]));
}

#[tokio::test]
async fn channels_metaflow_relates() {
    let h = harness();
    let id = h.create(json!({})).await;
    let a = h.join(&id, json!({"call_id": "call-a", "rtp": {"codec": "opus"}})).await
        ["participant_id"]
        .as_u64()
        .unwrap();
    let b = h.join(&id, json!({"call_id": "call-b", "rtp": {"codec": "opus"}})).await
        ["participant_id"]
        .as_u64()
        .unwrap();
    let flow = |conf: &str| {
        json!({"action": "metaflow", "data": {"data": {"module": "relate", "data":
        {"conference_id": conf, "participant_id": a, "other_participant": b, "relationship": "mute"}}}})
    };
    let (status, body) =
        h.call(Method::PUT, &format!("{BASE}/channels/call-a"), Some(ALL), Some(flow(&id))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"], "metaflow sent");
    assert_eq!(h.relationships(&id).await[0]["mute"], true);
    // The shape Kazoo's code validates: the node is `data` itself.
    let code_shape = json!({"action": "metaflow", "data": {"module": "relate", "data":
        {"conference_id": id, "participant_id": a, "other_participant": b, "relationship": "deaf"}}});
    let (status, body) =
        h.call(Method::PUT, &format!("{BASE}/channels/call-a"), Some(ALL), Some(code_shape)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(h.relationships(&id).await[0]["deaf"], true);
    let (status, body) =
        h.call(Method::PUT, &format!("{BASE}/channels/call-zzz"), Some(ALL), Some(flow(&id))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_field(&body).0, "call_id");
    let (status, _) = h
        .call(Method::PUT, &format!("{BASE}/channels/call-a"), Some(ALL), Some(flow("nope")))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut no_conf = flow(&id);
    no_conf["data"]["data"]["data"].as_object_mut().unwrap().remove("conference_id");
    let (status, body) =
        h.call(Method::PUT, &format!("{BASE}/channels/call-a"), Some(ALL), Some(no_conf)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_field(&body), ("conference_id".into(), "required".into()));
    let mut other_module = flow(&id);
    other_module["data"]["data"]["module"] = json!("transfer");
    let (status, body) = h
        .call(Method::PUT, &format!("{BASE}/channels/call-a"), Some(ALL), Some(other_module))
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
    assert_eq!(error_field(&body).0, "module");
}

#[tokio::test]
async fn participant_actions() {
    let h = harness();
    let id = h.create(json!({"member": {"join_muted": false}})).await;
    let a = h.join(&id, rtp()).await["participant_id"].as_u64().unwrap();
    let m = h
        .join(&id, json!({"participant_flags": ["is_moderator"], "rtp": {"codec": "opus"}}))
        .await["participant_id"]
        .as_u64()
        .unwrap();
    let one = |p: u64| format!("{BASE}/conferences/{id}/participants/{p}");
    let act = |action: &str| json!({"data": {"action": action}});

    let (status, body) = h.call(Method::PUT, &one(a), Some(ALL), Some(act("mute"))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["changed"], true);
    let (_, body) = h.call(Method::GET, &one(a), Some(ALL), None).await;
    assert_eq!(body["data"]["conference_channel_vars"]["speak"], false);
    let (status, _) = h.call(Method::PUT, &one(a), Some(ALL), Some(act("deaf"))).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = h
        .call(
            Method::PUT,
            &one(a),
            Some(ALL),
            Some(json!({"data": {"action": "volume_in", "value": -2}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = h
        .call(
            Method::PUT,
            &one(a),
            Some(ALL),
            Some(json!({"data": {"action": "energy", "value": 0}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, body) = h.call(Method::GET, &one(a), Some(ALL), None).await;
    assert_eq!(body["data"]["conference_channel_vars"]["energy_level"], 0);
    let (status, body) = h
        .call(
            Method::PUT,
            &one(a),
            Some(ALL),
            Some(json!({"data": {"action": "volume_out", "value": 9}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_field(&body), ("value".into(), "maximum".into()));
    let (status, body) = h.call(Method::PUT, &one(a), Some(ALL), Some(act("sing"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "faulty request");
    let (status, _) = h.call(Method::PUT, &one(999), Some(ALL), Some(act("mute"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = h
        .call(
            Method::PUT,
            &format!("{BASE}/conferences/{id}/participants/x"),
            Some(ALL),
            Some(act("mute")),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bulk: moderators are skipped, only changes are reported.
    let all = format!("{BASE}/conferences/{id}/participants");
    let (status, body) = h.call(Method::PUT, &all, Some(ALL), Some(act("unmute"))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(body["data"]["participants"], json!([a]));
    let (_, body) = h.call(Method::PUT, &all, Some(ALL), Some(act("mute"))).await;
    assert_eq!(body["data"]["participants"], json!([a]), "the moderator {m} is skipped");
    let (_, body) = h.call(Method::PUT, &all, Some(ALL), Some(act("undeaf"))).await;
    assert_eq!(body["data"]["participants"], json!([a]));

    let (status, _) = h.call(Method::PUT, &one(a), Some(ALL), Some(act("kick"))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(h.participants(&id).await.len(), 1);
    let (_, body) = h.call(Method::PUT, &all, Some(ALL), Some(act("kick"))).await;
    assert_eq!(body["data"]["participants"], json!([m]));
    assert!(h.participants(&id).await.is_empty());
    assert_eq!(h.registry.bridge().ports_in_use(), 0);
}

#[tokio::test]
async fn events_stream() {
    let h = harness();
    let id = h.create(json!({})).await;
    let request = Request::get(format!("{BASE}/conferences/{id}/events"))
        .header("x-auth-token", ALL)
        .body(Body::empty())
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();
    h.join(&id, rtp()).await;
    let text = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let mut text = String::new();
        while !text.contains("add-member") {
            let frame = body.frame().await.expect("stream open").expect("frame");
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
        text
    })
    .await
    .expect("an add-member event");
    assert!(text.contains("event: add-member"), "{text}");
    assert!(text.contains(&format!("\"conference_id\":\"{id}\"")), "{text}");
}

#[tokio::test]
async fn metrics_and_unknown_routes() {
    let h = harness();
    assert_eq!(h.call(Method::GET, "/metrics", None, None).await.0, StatusCode::UNAUTHORIZED);
    let request = Request::get("/metrics")
        .header("authorization", format!("Bearer {ALL}"))
        .body(Body::empty())
        .unwrap();
    let response = h.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));

    let (status, body) = h.call(Method::GET, "/v2/nothing", Some(ALL), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["status"], "error");
    let (status, body) =
        h.call(Method::DELETE, &format!("{BASE}/conferences"), Some(ALL), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"], "405");
}

#[tokio::test]
async fn cors_origins_are_configurable() {
    let mut config = BridgeConfig::default();
    config.rtp_bind = "127.0.0.1".parse().unwrap();
    config.rtp_ports = (42_000, 43_999);
    let registry = Registry::new(Bridge::new(config).unwrap(), 10);
    let auth = Auth::default().with_token(ALL, AccountScope::All);
    let listed = Api::new(registry.clone(), auth.clone())
        .cors_origins(vec!["https://ui.example.com".into()])
        .router();
    let send = |app: Router, origin: &'static str, method: Method| async move {
        let request = Request::builder()
            .method(method)
            .uri(format!("{BASE}/conferences"))
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header("x-auth-token", ALL)
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        (response.status(), response.headers().get("access-control-allow-origin").cloned())
    };
    let (status, allowed) = send(listed.clone(), "https://ui.example.com", Method::OPTIONS).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(allowed.unwrap(), "https://ui.example.com");
    let (_, allowed) = send(listed.clone(), "https://evil.example.com", Method::GET).await;
    assert!(allowed.is_none(), "an origin not listed gets no CORS header");
    let off = Api::new(registry, auth).cors_origins(Vec::new()).router();
    let (status, allowed) = send(off, "https://ui.example.com", Method::OPTIONS).await;
    assert_eq!(status, StatusCode::OK, "OPTIONS still answers");
    assert!(allowed.is_none());
}

#[tokio::test]
async fn verbs_tunnel_through_post() {
    let h = harness();
    let id = h.create(json!({"name": "t"})).await;
    let uri = format!("{BASE}/conferences/{id}");
    let (status, body) = h.call(Method::POST, &format!("{uri}?verb=DELETE"), Some(ALL), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(h.registry.is_empty(), "the tunnelled DELETE ended it");
    let (status, body) = h
        .call(
            Method::POST,
            &format!("{BASE}/conferences"),
            Some(ALL),
            Some(json!({"verb": "put", "data": {"name": "via body"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "a create tunnelled through POST answers 200, as Kazoo's");
    assert_eq!(body["data"]["name"], "via body");
    assert_eq!(h.registry.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_joins_once_even_concurrently() {
    let h = harness();
    let id = h.create(json!({})).await;
    let path = format!("{BASE}/conferences/{id}/participants");
    let body =
        json!({"data": {"action": "join", "data": {"call_id": "same", "rtp": {"codec": "opus"}}}});
    let calls = (0..8).map(|_| h.call(Method::PUT, &path, Some(ALL), Some(body.clone())));
    let statuses: Vec<StatusCode> =
        futures_util::future::join_all(calls).await.into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT));
    assert_eq!(h.participants(&id).await.len(), 1);
    // Once it has left, the call may join again.
    let p = h.participants(&id).await[0]["participant_id"].as_u64().unwrap();
    h.call(
        Method::PUT,
        &format!("{path}/{p}"),
        Some(ALL),
        Some(json!({"data": {"action": "kick"}})),
    )
    .await;
    let (status, _) = h.call(Method::PUT, &path, Some(ALL), Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
}

/// `rtp.audio_level_ext` reaches the leg: frames the participant marks silent on that id
/// are not decoded (Janus's `audiolevel_ext`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtp_join_names_its_audio_level_extension() {
    use mixminus_rtp::{write_rtp_header_with_audio_level, AudioLevel, RtpHeader};
    let h = harness();
    let id = h.create(json!({"name": "c"})).await;
    let joined = h.join(&id, json!({"rtp": {"codec": "pcmu", "audio_level_ext": 3}})).await;
    let port = joined["rtp"]["local_port"].as_u64().unwrap() as u16;
    let participant = joined["participant_id"].as_u64().unwrap() as u32;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for seq in 0..25u16 {
        let mut packet = Vec::new();
        let header = RtpHeader {
            payload_type: 0,
            marker: false,
            sequence: seq,
            timestamp: u32::from(seq) * 160,
            ssrc: 9,
        };
        let silent = AudioLevel { voice: false, level_dbov: 127 };
        write_rtp_header_with_audio_level(&mut packet, &header, 3, silent).unwrap();
        packet.extend([0x00u8; 160]); // loud µ-law, marked silent
        sock.send_to(&packet, ("127.0.0.1", port)).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let entry = h.registry.get("acc1", &id).unwrap();
    let snapshot = entry.handle().snapshot();
    let leg = snapshot.participants.iter().find(|l| l.info.id.get() == participant).unwrap();
    assert!(leg.stats.silent_skipped >= 15, "{:?}", leg.stats);
    assert_eq!(leg.stats.decodes, leg.stats.concealed, "a frame marked silent was decoded");
}
