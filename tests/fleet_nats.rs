//! A fleet for real (issue 15): `nats-server -js` (Debian's package, with a user and
//! password) and `mixminus serve` processes joined to it. Conferences are placed by load,
//! read and changed through nodes that do not own them, related through one node and heard
//! (real Opus over UDP) by a participant joined through another; the owner is killed with
//! SIGKILL and its conferences are claimed once, within the liveness window, with their
//! matrix; a node cut off from NATS refuses changes and gives its conference up; NATS
//! restarts and the fleet recovers; a duplicate node name and a wrong NATS password are
//! refused.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::fleet::{
    free_port, node_config, start_nats, start_node, wait_for, Node, Proxy, TempDir, LIVENESS_SECS,
    NATS_PASSWORD, ONE_FLEET_AT_A_TIME,
};
use mixminus::rtp::client::{ToneClient, ToneClientConfig};
use mixminus::rtp::{CodecKind, CodecParams};
use serde_json::{json, Value};

const TONES: [f32; 3] = [440.0, 700.0, 1100.0];
const HEARD_DBFS: f64 = -40.0;

fn conference_doc(name: &str) -> Value {
    json!({"data": {"name": name, "member": {"join_muted": false}, "play_entry_tone": false,
        "play_exit_tone": false}})
}

/// Joins a tone participant through `via`; its client and its answer.
async fn join(via: &Node, conference: &str, call: &str, tone: f32) -> (ToneClient, Value) {
    let body =
        json!({"data": {"action": "join", "data": {"call_id": call, "rtp": {"codec": "opus"}}}});
    let envelope = via.ok("PUT", &format!("/conferences/{conference}/participants"), Some(body));
    let data = envelope["data"].clone();
    let target = common::http::local_rtp(&data);
    let codec = CodecParams::new(CodecKind::Opus);
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let client =
        ToneClient::start(ToneClientConfig::new(codec, Some(tone)), bind, target).await.unwrap();
    (client, envelope)
}

/// Waits (up to ~6 s of 700 ms windows) until every client hears exactly `expected`.
async fn assert_hearing(clients: &[&ToneClient], expected: &[[u8; 3]]) {
    let expected: Vec<Vec<bool>> =
        expected.iter().map(|row| row.iter().map(|&x| x == 1).collect()).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut heard = Vec::new();
    for _ in 0..8 {
        for c in clients {
            c.clear();
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        heard = clients.iter().map(|c| c.heard_tones(&TONES, HEARD_DBFS)).collect();
        if heard == expected {
            return;
        }
    }
    assert_eq!(heard, expected, "rows: listener; columns: tone heard");
}

fn fleet_info(node: &Node, conference: &str) -> Option<(String, Value)> {
    let (status, envelope) = node.call("GET", &format!("/conferences/{conference}"), None);
    let fleet = envelope["data"]["_read_only"]["fleet"].clone();
    (status == 200 && fleet.is_object())
        .then(|| (envelope["node"].as_str().unwrap_or_default().to_owned(), fleet))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_place_forward_relate_and_fail_over() {
    let _alone = ONE_FLEET_AT_A_TIME.lock().await;
    let dir = TempDir::new("fleet-three");
    let nats_port = free_port();
    let _nats = start_nats(&dir.0, nats_port);
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let config =
                node_config(&dir.0, name, nats_port, 16_100 + 100 * i as u16, NATS_PASSWORD);
            start_node(&dir.0, &config, name).unwrap_or_else(|log| panic!("{name}: {log}"))
        })
        .collect();
    // Every node hears the others' heartbeats (one a second) before placement is asked.
    std::thread::sleep(Duration::from_millis(1500));

    // Placement by load: three creates, each through another node, land on three nodes.
    let mut conferences = Vec::new();
    for (i, via) in nodes.iter().enumerate() {
        let envelope = via.ok("PUT", "/conferences", Some(conference_doc(&format!("c{i}"))));
        conferences.push((
            envelope["data"]["id"].as_str().unwrap().to_owned(),
            envelope["node"].as_str().unwrap().to_owned(),
        ));
        // The new conference shows in its owner's next heartbeat.
        std::thread::sleep(Duration::from_millis(1500));
    }
    let owners: std::collections::HashSet<&str> =
        conferences.iter().map(|(_, o)| o.as_str()).collect();
    assert_eq!(owners.len(), 3, "placement by load spreads three conferences: {conferences:?}");

    // One API: every node lists the whole fleet's conferences of the account.
    for via in &nodes {
        let list = via.ok("GET", "/conferences", None);
        let ids: Vec<&str> =
            list["data"].as_array().unwrap().iter().filter_map(|c| c["id"].as_str()).collect();
        for (id, _) in &conferences {
            assert!(ids.contains(&id.as_str()), "{} lists {ids:?}, missing {id}", via.name);
        }
    }

    let (conference, owner) = conferences[0].clone();
    let owner_at = nodes.iter().position(|n| n.name == owner).unwrap();
    let others: Vec<usize> = (0..3).filter(|&i| i != owner_at).collect();

    // Reads and changes through non-owners are answered by the owner.
    for &i in &others {
        let read = nodes[i].ok("GET", &format!("/conferences/{conference}"), None);
        assert_eq!(read["node"], owner.as_str());
        assert_eq!(read["data"]["name"], "c0");
    }
    let patched = nodes[others[0]].ok(
        "PATCH",
        &format!("/conferences/{conference}"),
        Some(json!({"data": {"name": "renamed"}})),
    );
    assert_eq!(patched["node"], owner.as_str());
    assert_eq!(
        nodes[others[1]].ok("GET", &format!("/conferences/{conference}"), None)["data"]["name"],
        "renamed"
    );

    // Three participants, each joined through a different node: every join answers with
    // the owner's media address.
    let owner_rtp_low = 16_100 + 100 * owner_at as u16;
    let mut clients = Vec::new();
    let mut ids = Vec::new();
    for (k, via) in nodes.iter().enumerate() {
        let (client, envelope) = join(via, &conference, &format!("call-{k}"), TONES[k]).await;
        assert_eq!(envelope["node"], owner.as_str());
        let port = envelope["data"]["rtp"]["local_port"].as_u64().unwrap() as u16;
        assert!(
            (owner_rtp_low..owner_rtp_low + 100).contains(&port),
            "port {port} is not {owner}'s"
        );
        ids.push(envelope["data"]["participant_id"].as_u64().unwrap());
        clients.push(client);
    }
    // Through one non-owner: participant 0 stops hearing participant 1; participant 1 is
    // deafened. Heard at participant 0, which joined through another node.
    let relate = json!({"data": {"action": "relate", "data": {"participant_id": ids[0],
        "other_participant": ids[1], "relationship": "deaf"}}});
    nodes[others[0]].ok("PUT", &format!("/conferences/{conference}/participants"), Some(relate));
    let deafen = json!({"data": {"action": "deaf"}});
    nodes[others[1]].ok(
        "PUT",
        &format!("/conferences/{conference}/participants/{}", ids[1]),
        Some(deafen),
    );
    let refs: Vec<&ToneClient> = clients.iter().collect();
    assert_hearing(&refs, &[[0, 0, 1], [0, 0, 0], [1, 1, 0]]).await;

    // The owner dies. A survivor's event stream (relayed from the owner) is open.
    let events = nodes[others[0]].events(&conference);
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    nodes[owner_at].proc.kill();
    drop(clients);

    let claimed = wait_for(Duration::from_secs(LIVENESS_SECS + 8), || {
        let (node, fleet) = fleet_info(&nodes[others[0]], &conference)?;
        (node != owner).then_some((node, fleet))
    });
    let (new_owner, fleet) = claimed.unwrap_or_else(|| {
        panic!("not claimed in time; survivor log:\n{}", nodes[others[0]].proc.tail())
    });
    let took = killed.elapsed();
    println!("claimed by {new_owner} {took:?} after the kill (liveness window {LIVENESS_SECS} s)");
    assert!(took < Duration::from_secs(LIVENESS_SECS + 3), "claim took {took:?}");
    // Claimed once: both survivors agree, and the record holds one move.
    for &i in &others {
        let (node, fleet) = fleet_info(&nodes[i], &conference).unwrap();
        assert_eq!(node, new_owner);
        assert_eq!(fleet["moves"].as_array().unwrap().len(), 1, "{fleet}");
        assert_eq!(fleet["moves"][0]["from"], owner.as_str());
    }
    let read = nodes[others[1]].ok("GET", &format!("/conferences/{conference}"), None);
    assert_eq!(read["data"]["name"], "renamed", "the document survives the move");
    // The matrix and the roles wait for the calls to come back.
    let pending = fleet["awaiting_relationships"].as_array().unwrap();
    assert_eq!(
        pending,
        &vec![json!({"participant": "call-0", "other": "call-1", "deaf": true, "mute": false})]
    );
    assert_eq!(fleet["awaiting"].as_array().unwrap().len(), 3);
    let moved = wait_for(Duration::from_secs(3), || {
        let list = events.lock().unwrap();
        let moved: Vec<Value> =
            list.iter().filter(|e| e["event"] == "conference-moved").cloned().collect();
        (!moved.is_empty()).then_some(moved)
    })
    .expect("a conference-moved event on the stream");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        events.lock().unwrap().iter().filter(|e| e["event"] == "conference-moved").count(),
        1
    );
    assert_eq!(moved[0]["to"], new_owner.as_str());
    assert_eq!(moved[0]["from"], owner.as_str());

    // The calls re-join (through either survivor) and hear exactly what they did.
    let mut clients = Vec::new();
    for k in 0..3 {
        let via = &nodes[others[k % 2]];
        let (client, envelope) = join(via, &conference, &format!("call-{k}"), TONES[k]).await;
        assert_eq!(envelope["node"], new_owner.as_str());
        clients.push(client);
    }
    let refs: Vec<&ToneClient> = clients.iter().collect();
    assert_hearing(&refs, &[[0, 0, 1], [0, 0, 0], [1, 1, 0]]).await;
    let (_, fleet) = fleet_info(&nodes[others[1]], &conference).unwrap();
    assert_eq!(fleet["awaiting"].as_array().unwrap().len(), 0);
    assert_eq!(fleet["awaiting_relationships"].as_array().unwrap().len(), 0);
    // The other conferences of the dead node moved too; the survivors' stayed put.
    for (id, was) in &conferences[1..] {
        let (node, _) = fleet_info(&nodes[others[0]], id).unwrap();
        if *was == owner {
            assert_ne!(node, owner);
        } else {
            assert_eq!(node, *was);
        }
    }
    nodes.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_node_is_fenced_and_nats_restarts() {
    let _alone = ONE_FLEET_AT_A_TIME.lock().await;
    let dir = TempDir::new("fleet-partition");
    let nats_port = free_port();
    let mut nats = start_nats(&dir.0, nats_port);
    let proxy = Proxy::start(nats_port);
    let n1 = start_node(&dir.0, &node_config(&dir.0, "n1", nats_port, 16_400, NATS_PASSWORD), "n1")
        .unwrap_or_else(|log| panic!("n1: {log}"));
    let n2 =
        start_node(&dir.0, &node_config(&dir.0, "n2", proxy.port, 16_500, NATS_PASSWORD), "n2")
            .unwrap_or_else(|log| panic!("n2: {log}"));

    // Bad input: a wrong NATS password, and a live node's name, are refused at start.
    let bad = node_config(&dir.0, "n9", nats_port, 16_600, "wrong-password");
    let log = start_node(&dir.0, &bad, "n9").err().expect("a wrong NATS password is refused");
    assert!(log.to_lowercase().contains("authorization"), "{log}");
    let twin = node_config(&dir.0, "n1", nats_port, 16_700, NATS_PASSWORD);
    let log = start_node(&dir.0, &twin, "n1-twin").err().expect("a duplicate node name is refused");
    assert!(log.contains("in use"), "{log}");

    std::thread::sleep(Duration::from_millis(1500));
    // Placed by load (participants, conferences, CPU): one on each node.
    let a = n1.ok("PUT", "/conferences", Some(conference_doc("one")));
    std::thread::sleep(Duration::from_millis(1500));
    let b = n1.ok("PUT", "/conferences", Some(conference_doc("two")));
    let mut placed = [a, b];
    placed.sort_by_key(|c| c["node"].as_str().unwrap_or_default().to_owned());
    assert_eq!((placed[0]["node"].as_str(), placed[1]["node"].as_str()), (Some("n1"), Some("n2")));
    let c1_id = placed[0]["data"]["id"].as_str().unwrap().to_owned();
    let c2_id = placed[1]["data"]["id"].as_str().unwrap().to_owned();
    let lock = |locked: bool| json!({"action": if locked { "lock" } else { "unlock" }, "data": {}});

    // n2 is cut off from NATS. Watched at once from both sides: when n2 starts refusing
    // changes (fenced), and when n1 claims its conference; the first must come first.
    let claim_url = n1.url(&format!("/conferences/{c2_id}"));
    let probe = "/conferences/no-such-conference";
    proxy.cut();
    let cut = Instant::now();
    // Only the order is claimed here; the limit stops a hung test (a CI run took 10 s).
    let claim_watch = std::thread::spawn(move || {
        wait_for(Duration::from_secs(LIVENESS_SECS + 25), || {
            let read: Value = ureq::get(&claim_url).call().ok()?.into_json().ok()?;
            let fleet = &read["data"]["_read_only"]["fleet"];
            (read["node"] == "n1" && fleet.is_object()).then(|| (cut.elapsed(), fleet.clone()))
        })
    });
    // A change to a conference nobody has: 404 while n2 is in touch, 503 once fenced.
    let fenced = wait_for(Duration::from_secs(LIVENESS_SECS + 3), || {
        let (status, _) = n2.call("PUT", probe, Some(lock(true)));
        (status == 503).then(|| cut.elapsed())
    });
    let fenced = fenced.unwrap_or_else(|| panic!("n2 never fenced:\n{}", n2.proc.tail()));
    let (status, _) = n2.call("PUT", &format!("/conferences/{c2_id}"), Some(lock(true)));
    assert_eq!(status, 503, "a fenced node refuses changes to its own conference");
    assert_eq!(n2.call("GET", &format!("/conferences/{c2_id}"), None).0, 200, "it still reads");
    let (claimed_after, fleet) =
        claim_watch.join().unwrap().unwrap_or_else(|| panic!("never claimed:\n{}", n1.proc.tail()));
    println!(
        "n2 fenced {fenced:?} after the cut, its conference claimed by n1 {claimed_after:?} after"
    );
    assert!(fenced < claimed_after, "fenced {fenced:?}, claimed {claimed_after:?}");
    assert_eq!(fleet["moves"][0]["from"], "n2");
    let (status, _) = n2.call("PUT", &format!("/conferences/{c2_id}"), Some(lock(true)));
    assert_eq!(status, 503, "still fenced while cut off");

    // Healed: n2 sees the conference is n1's, ends its copy, and forwards to n1.
    proxy.heal();
    // No deadline is claimed for this (NATS client reconnect back-off, a fresh registry
    // entry and a new watch): the limit only stops a hung test.
    let back = wait_for(Duration::from_secs(45), || {
        let (status, envelope) = n2.call("PUT", &format!("/conferences/{c2_id}"), Some(lock(true)));
        (status == 201 && envelope["node"] == "n1").then_some(())
    });
    back.unwrap_or_else(|| {
        panic!("n2 did not come back:\nn2:\n{}\nn1:\n{}", n2.proc.tail(), n1.proc.tail())
    });
    assert_eq!(n2.ok("GET", &format!("/conferences/{c2_id}"), None)["node"], "n1");

    // NATS restarts: while it is down the nodes refuse changes; then everything works
    // again, and nothing moved.
    nats.kill();
    std::thread::sleep(Duration::from_secs(LIVENESS_SECS) + Duration::from_millis(500));
    let (status, _) = n1.call("PUT", &format!("/conferences/{c1_id}"), Some(lock(true)));
    assert_eq!(status, 503, "fenced while NATS is down");
    let _nats = start_nats(&dir.0, nats_port);
    let recovered = wait_for(Duration::from_secs(45), || {
        let (status, envelope) = n2.call("PUT", &format!("/conferences/{c1_id}"), Some(lock(true)));
        (status == 201 && envelope["node"] == "n1").then_some(())
    });
    recovered.unwrap_or_else(|| panic!("no recovery:\n{}\n{}", n1.proc.tail(), n2.proc.tail()));
    std::thread::sleep(Duration::from_secs(LIVENESS_SECS + 1));
    let (node, fleet) = fleet_info(&n1, &c1_id).unwrap();
    assert_eq!(node, "n1");
    assert_eq!(fleet["moves"].as_array().unwrap().len(), 0, "no claim after the outage: {fleet}");
    let (node, fleet) = fleet_info(&n2, &c2_id).unwrap();
    assert_eq!(node, "n1");
    assert_eq!(fleet["moves"].as_array().unwrap().len(), 1);
}
