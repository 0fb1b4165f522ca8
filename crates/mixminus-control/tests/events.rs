//! Conference events as a Kazoo client reads them: server-sent events and Kazoo's
//! blackhole websocket, over a real TCP server, with every participant event carrying
//! `call_id`, `participant_id` and the participant's fields.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use mixminus_control::config::AccountScope;
use mixminus_control::{Api, Auth, Registry};
use mixminus_rtp::{Bridge, BridgeConfig};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tower::ServiceExt;

const TOKEN: &str = "events-token";
const ACC1: &str = "acc1-only-token";
const A: &str = "/v2/accounts/acc1";

async fn server(ports: (u16, u16)) -> (Router, SocketAddr) {
    let mut config = BridgeConfig::default();
    config.rtp_bind = "127.0.0.1".parse().unwrap();
    config.rtp_ports = ports;
    config.inactivity_timeout = None;
    let registry = Registry::new(Bridge::new(config).unwrap(), 10);
    let auth = Auth::default()
        .with_token(TOKEN, AccountScope::All)
        .with_token(ACC1, AccountScope::Only(vec!["acc1".into()]));
    let app = Api::new(registry, auth).router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = app.clone();
    tokio::spawn(async move { axum::serve(listener, serving).await.unwrap() });
    (app, addr)
}

async fn call(app: &Router, method: Method, path: &str, body: Value) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("x-auth-token", TOKEN)
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn conference(app: &Router) -> String {
    let (status, body) =
        call(app, Method::PUT, &format!("{A}/conferences"), json!({"data": {}})).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

async fn join(app: &Router, conf: &str, call_id: &str) -> u64 {
    let data = json!({"data": {"action": "join", "data": {"call_id": call_id,
        "caller_id_name": format!("name of {call_id}"), "custom_channel_vars": {"tag": call_id},
        "rtp": {"codec": "opus"}}}});
    let (status, body) =
        call(app, Method::PUT, &format!("{A}/conferences/{conf}/participants"), data).await;
    assert_eq!(status, 201, "{body}");
    body["data"]["participant_id"].as_u64().unwrap()
}

/// Reads SSE `data:` lines until `count` events named in `names` arrived.
async fn sse_events(body: &mut Body, names: &[&str]) -> Vec<Value> {
    let mut text = String::new();
    let mut found = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while found.len() < names.len() {
            let frame = body.frame().await.expect("stream open").expect("frame");
            let Ok(data) = frame.into_data() else { continue };
            text.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = text.find("\n\n") {
                let block: String = text.drain(..end + 2).collect();
                if let Some(line) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                    if let Ok(v) = serde_json::from_str::<Value>(line) {
                        if names.contains(&v["event"].as_str().unwrap_or("")) {
                            found.push(v);
                        }
                    }
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("events {names:?} in time; got {found:?}"));
    found
}

#[tokio::test]
async fn sse_events_carry_the_call_and_the_participant() {
    let (app, _) = server((46_000, 46_199)).await;
    let conf = conference(&app).await;
    let request = Request::get(format!("{A}/conferences/{conf}/events"))
        .header("x-auth-token", TOKEN)
        .body(Body::empty())
        .unwrap();
    let mut body = app.clone().oneshot(request).await.unwrap().into_body();
    let p = join(&app, &conf, "call-1").await;
    let mut events = sse_events(&mut body, &["add-member"]).await;
    assert_eq!(events[0]["conference_channel_vars"]["member_id"], p, "the seed's fields");
    let one = format!("{A}/conferences/{conf}/participants/{p}");
    call(&app, Method::PUT, &one, json!({"data": {"action": "unmute"}})).await;
    call(&app, Method::PUT, &one, json!({"data": {"action": "kick"}})).await;
    events.extend(sse_events(&mut body, &["unmute-member", "del-member"]).await);
    assert_eq!(events.len(), 3);
    for event in &events {
        assert_eq!(event["call_id"], "call-1", "{event}");
        assert_eq!(event["participant_id"], p, "{event}");
        assert_eq!(event["conference_id"], conf.as_str(), "{event}");
        assert_eq!(event["caller_id_name"], "name of call-1", "{event}");
        assert_eq!(event["custom_channel_vars"]["tag"], "call-1", "{event}");
        assert_eq!(event["conference_name"], conf.as_str(), "{event}");
    }
}

#[tokio::test]
async fn blackhole_websocket_subscribes_and_filters_by_call() {
    let (app, addr) = server((46_200, 46_399)).await;
    let conf = conference(&app).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/websocket")).await.expect("upgrade");

    let send = |v: Value| Message::Text(v.to_string().into());
    // A token that does not grant the account is refused, and nothing is subscribed.
    ws.send(send(json!({"action": "subscribe", "auth_token": ACC1, "request_id": "r0",
        "data": {"account_id": "acc2", "binding": format!("conference.event.{conf}.*")}})))
        .await
        .unwrap();
    let reply = read(&mut ws).await;
    assert_eq!(reply["action"], "reply");
    assert_eq!(reply["status"], "error", "{reply}");
    assert_eq!(reply["request_id"], "r0");
    // Kazoo's subscribe, only call-2's events.
    let binding = format!("conference.event.{conf}.call-2");
    ws.send(send(json!({"action": "subscribe", "auth_token": TOKEN, "request_id": "r1",
        "data": {"account_id": "acc1", "binding": binding}})))
        .await
        .unwrap();
    let reply = read(&mut ws).await;
    assert_eq!(reply["status"], "success", "{reply}");
    assert_eq!(reply["data"]["subscribed"], json!([binding]));
    join(&app, &conf, "call-1").await;
    let p2 = join(&app, &conf, "call-2").await;
    let event = read(&mut ws).await;
    assert_eq!(event["action"], "event", "{event}");
    assert_eq!(event["name"], "add-member");
    assert_eq!(event["subscribed_key"], binding.as_str());
    assert_eq!(event["routing_key"], format!("conference.event.{conf}.call-2"));
    assert_eq!(event["data"]["call_id"], "call-2", "call-1's add-member was filtered out");
    assert_eq!(event["data"]["participant_id"], p2);
    assert_eq!(event["data"]["caller_id_name"], "name of call-2");
}

async fn read(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("a frame");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}
