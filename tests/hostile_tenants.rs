//! One tenant cannot take another's share (issue 11): per-account quotas answered with a
//! 4xx naming the quota, bounded documents, empty conferences that expire, relate lists
//! deduplicated before any work, admission decided atomically in the conference, and no
//! control characters in names and ids. Real HTTP (axum on loopback), real conferences.

mod common;

use std::time::{Duration, Instant};

use common::http::{Response, Server};
use mixminus::control::config::AccountScope;
use mixminus::control::registry::Quotas;
use mixminus::control::{Auth, Registry};
use mixminus::rtp::{Bridge, BridgeConfig};
use serde_json::{json, Value};

const TOKEN: &str = "tenants-token";

fn quotas() -> Quotas {
    let mut q = Quotas::default();
    q.conferences_per_account = 2;
    q.participants_per_account = 4;
    q.relationships_per_conference = 3;
    q.empty_conference_ttl_secs = 1;
    q
}

async fn server(ports: (u16, u16), quotas: Quotas) -> Server {
    let mut config = BridgeConfig::default();
    config.rtp_ports = ports;
    let registry = Registry::with_quotas(Bridge::new(config).unwrap(), 100, quotas);
    Server::start(registry, Auth::default().with_token(TOKEN, AccountScope::All), 64 * 1024).await
}

async fn call(server: &Server, method: &str, path: &str, body: Value) -> Response {
    server.call(method, path, Some(TOKEN), Some(body.to_string().as_bytes())).await
}

async fn join(server: &Server, account: &str, conference: &str) -> Response {
    let body = json!({"data": {"action": "join", "data": {"rtp": {"codec": "pcmu"}}}});
    call(
        server,
        "PUT",
        &format!("/v2/accounts/{account}/conferences/{conference}/participants"),
        body,
    )
    .await
}

fn names(r: &Response, rule: &str) -> bool {
    r.text.contains(rule)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_are_per_account_and_named_when_refused() {
    let mut q = quotas();
    q.empty_conference_ttl_secs = 0;
    let s = server((18_000, 18_099), q).await;
    for id in ["a1", "a2"] {
        let r = call(&s, "PUT", "/v2/accounts/acc1/conferences", json!({"data": {"id": id}})).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = call(&s, "PUT", "/v2/accounts/acc1/conferences", json!({"data": {"id": "a3"}})).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(names(&r, "conferences_per_account"), "{}", r.text);
    // Another account is not affected by acc1's use.
    let r = call(&s, "PUT", "/v2/accounts/acc2/conferences", json!({"data": {"id": "b1"}})).await;
    assert_eq!(r.status, 201, "{}", r.text);

    // Participants across the account's conferences.
    let mut ids = Vec::new();
    for conference in ["a1", "a1", "a2", "a2"] {
        let r = join(&s, "acc1", conference).await;
        assert!(r.status < 300, "{}", r.text);
        ids.push(r.json["data"]["participant_id"].as_u64().unwrap());
    }
    let r = join(&s, "acc1", "a2").await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(names(&r, "participants_per_account"), "{}", r.text);
    assert!(join(&s, "acc2", "b1").await.status < 300, "acc2 may still join");

    // Relationship records per conference: 2 + 2 > 3.
    let mut a2 = Vec::new();
    for _ in 0..3 {
        let r = join(&s, "acc2", "b1").await;
        assert!(r.status < 300, "{}", r.text);
        a2.push(r.json["data"]["participant_id"].as_u64().unwrap());
    }
    let path = "/v2/accounts/acc2/conferences/b1/participants";
    let relate = |p: Value, o: Value| json!({"data": {"action": "relate", "data": {"participant_id": p, "other_participant": o, "relationship": "deaf"}}});
    let r = call(&s, "PUT", path, relate(json!([a2[0], a2[1]]), json!([a2[2]]))).await;
    assert!(r.status < 300, "2 records are within the quota: {}", r.text);
    let r = call(&s, "PUT", path, relate(json!([a2[2]]), json!([a2[0], a2[1]]))).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(names(&r, "relationships_per_conference"), "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_bounded_and_names_are_clean() {
    let s = server((18_100, 18_199), quotas()).await;
    let r = call(&s, "PUT", "/v2/accounts/acc1/conferences", json!({"data": {"id": "doc"}})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // PATCH keeps unknown keys: 20 KB at a time, the fourth would pass 64 KiB.
    let mut refused_at = None;
    for i in 0..6 {
        let patch = json!({"data": {format!("junk{i}"): "x".repeat(20_000)}});
        let r = call(&s, "PATCH", "/v2/accounts/acc1/conferences/doc", patch).await;
        if r.status >= 400 {
            assert_eq!(r.status, 400, "{}", r.text);
            assert!(names(&r, "maxSize"), "{}", r.text);
            refused_at = Some(i);
            break;
        }
    }
    assert_eq!(refused_at, Some(3), "the document grew past 64 KiB");
    let doc = s.call("GET", "/v2/accounts/acc1/conferences/doc", Some(TOKEN), None).await;
    assert!(doc.text.len() < 70_000, "{} bytes", doc.text.len());

    for (path, method, body) in [
        ("/v2/accounts/acc1/conferences/doc", "PATCH", json!({"data": {"name": "line\nbreak"}})),
        (
            "/v2/accounts/acc1/conferences/doc/participants",
            "PUT",
            json!({"data": {"action": "join", "data": {"call_id": "nul\u{0}id", "rtp": {"codec": "pcmu"}}}}),
        ),
        (
            "/v2/accounts/acc1/conferences/doc/participants",
            "PUT",
            json!({"data": {"action": "join", "data": {"caller_id_name": "\u{1b}[31mred", "rtp": {"codec": "pcmu"}}}}),
        ),
    ] {
        let r = call(&s, method, path, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(names(&r, "pattern"), "{}", r.text);
    }
    let r =
        s.call("GET", "/v2/accounts/acc1/conferences/doc/participants", Some(TOKEN), None).await;
    assert_eq!(
        r.json["data"].as_array().map(Vec::len),
        Some(0),
        "a refused join joined: {}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_conferences_expire() {
    let s = server((18_200, 18_299), quotas()).await;
    let r = call(&s, "PUT", "/v2/accounts/acc1/conferences", json!({"data": {"id": "idle"}})).await;
    assert_eq!(r.status, 201);
    let r = call(&s, "PUT", "/v2/accounts/acc1/conferences", json!({"data": {"id": "busy"}})).await;
    assert_eq!(r.status, 201);
    assert!(join(&s, "acc1", "busy").await.status < 300);
    let started = Instant::now();
    // (A GET would answer an ad-hoc conference, as Kazoo does: ask the registry.)
    while s.registry.get("acc1", "idle").is_ok() {
        assert!(started.elapsed() < Duration::from_secs(5), "the empty conference never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("an empty conference (ttl 1 s) ended after {:?}", started.elapsed());
    assert!(s.registry.get("acc1", "busy").is_ok(), "a conference with a participant expired");
}

/// `[a]×3000 by [b]×3000`: main did 9 million set operations on the conference task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_ids_in_a_relate_are_one_pair() {
    let mut q = quotas();
    q.empty_conference_ttl_secs = 0;
    let s = server((18_300, 18_399), q).await;
    let r = call(&s, "PUT", "/v2/accounts/acc1/conferences", json!({"data": {"id": "dup"}})).await;
    assert_eq!(r.status, 201);
    let a = join(&s, "acc1", "dup").await.json["data"]["participant_id"].clone();
    let b = join(&s, "acc1", "dup").await.json["data"]["participant_id"].clone();
    let body = json!({"data": {"action": "relate", "data": {
        "participant_id": vec![a.clone(); 3000], "other_participant": vec![b.clone(); 3000],
        "relationship": "deaf"}}});
    let started = Instant::now();
    let r = call(&s, "PUT", "/v2/accounts/acc1/conferences/dup/participants", body).await;
    let took = started.elapsed();
    println!("relate [a]x3000 by [b]x3000 answered {} in {took:?}", r.status);
    assert!(r.status < 300, "{}", r.text);
    assert!(took < Duration::from_millis(500), "{took:?}");
    let r =
        s.call("GET", "/v2/accounts/acc1/conferences/dup/relationships", Some(TOKEN), None).await;
    assert_eq!(r.json["data"].as_array().map(Vec::len), Some(1), "{}", r.text);
}

/// Main checked `max_participants` on a snapshot before the join: 60 concurrent joins
/// against a limit of 3 admitted up to 25. Now the conference decides, one join at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_joins_respect_the_limit_exactly() {
    let mut q = quotas();
    q.participants_per_account = 1_000;
    q.empty_conference_ttl_secs = 0;
    let s = std::sync::Arc::new(server((18_400, 18_599), q).await);
    for round in 0..3 {
        let id = format!("limit{round}");
        let r = call(
            &s,
            "PUT",
            "/v2/accounts/acc1/conferences",
            json!({"data": {"id": id, "max_participants": 3}}),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let joins: Vec<_> = (0..30)
            .map(|_| {
                let (s, id) = (s.clone(), id.clone());
                tokio::spawn(async move { join(&s, "acc1", &id).await.status })
            })
            .collect();
        let mut admitted = 0;
        for j in joins {
            let status = j.await.unwrap();
            assert!(status < 300 || status == 409, "{status}");
            admitted += usize::from(status < 300);
        }
        assert_eq!(admitted, 3, "round {round}: {admitted} admitted against a limit of 3");
        let r = call(&s, "DELETE", &format!("/v2/accounts/acc1/conferences/{id}"), json!({})).await;
        assert!(r.status < 300, "{}", r.text);
    }
}
