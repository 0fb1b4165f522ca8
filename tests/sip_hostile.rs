//! The SIP front against bad input and churn, with a hand-written UAC: malformed messages
//! are dropped (the server keeps answering), bad requests get their 4xx, an INVITE flood is
//! rate-limited per source, SIP INFO DTMF and offerless INVITEs work, and call cycles leak
//! no leg, no metadata and no port.
//!
//! RTP ports 16200-16299 (below the ephemeral range; see `common`).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::http::Server;
use common::sipua::{pcmu_offer, Uac};
use mixminus::control::{Auth, Registry};
use mixminus::rtp::{Bridge, BridgeConfig};
use mixminus::sip::{SipConfig, SipServer};
use serde_json::{json, Value};

/// A bridge, its API and a SIP front taking `invites_per_second` from one source.
async fn rig(ports: (u16, u16), invites_per_second: u32) -> (Server, SocketAddr) {
    let mut config = BridgeConfig::default();
    config.rtp_ports = ports;
    let registry = Registry::new(Bridge::new(config).unwrap(), 10);
    let api = Server::start(registry.clone(), Auth::default(), 64 * 1024).await;
    let mut sip = SipConfig::default();
    sip.listen = Some("127.0.0.1:0".parse().unwrap());
    sip.tcp = false;
    sip.invites_per_second = invites_per_second;
    let sip = SipServer::start(registry, sip).await.unwrap().local_addr();
    (api, sip)
}

async fn create(api: &Server, doc: Value) {
    let r = api
        .call(
            "PUT",
            "/v2/accounts/acc/conferences",
            None,
            Some(json!({"data": doc}).to_string().as_bytes()),
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
}

async fn participants(api: &Server, conference: &str) -> Vec<Value> {
    let r = api
        .call("GET", &format!("/v2/accounts/acc/conferences/{conference}/participants"), None, None)
        .await;
    r.json["data"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sip_is_dropped_bad_requests_are_refused_and_nothing_panics() {
    let (api, sip) = rig((16_200, 16_229), 10).await;
    create(&api, json!({"id": "room"})).await;
    let mut uac = Uac::new("127.0.0.1:0", sip).await;
    let junk: Vec<Vec<u8>> = vec![
        vec![],
        b"\r\n\r\n".to_vec(),
        b"INVITE\r\n\r\n".to_vec(),
        b"INVITE sip:room@x SIP/2.0\r\n\r\n".to_vec(),
        b"INVITE sip:room@x SIP/2.0\r\nVia: nonsense\r\nCSeq: x\r\n\r\n".to_vec(),
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n\r\n".to_vec(),
        b"INVITE sip:room@x SIP/2.0\r\nContent-Length: 999999\r\n\r\nv=0".to_vec(),
        vec![0xff; 1500],
        vec![b'A'; 60_000],
        (0..=255u8).cycle().take(4000).collect(),
    ];
    for datagram in &junk {
        if !datagram.is_empty() {
            uac.send_raw(datagram).await;
        }
    }
    let ok = uac.options().await.expect("OPTIONS after junk");
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert!(ok.header("Allow").is_some_and(|a| a.contains("INVITE")), "{}", ok.text);

    let (r, _) =
        uac.invite("nobody", "c-404", &pcmu_offer("127.0.0.1:4000".parse().unwrap())).await;
    assert_eq!(
        (r.status, r.text.lines().next().unwrap()),
        (404, "SIP/2.0 404 Conference Not Found")
    );
    let (r, _) = uac
        .invite("room", "c-488", "v=0\r\nm=audio 4000 RTP/AVP 18\r\nc=IN IP4 127.0.0.1\r\n")
        .await;
    assert_eq!(r.status, 488, "no common codec: {}", r.text);
    let (r, _) = uac.invite("room", "c-488b", "this is not SDP").await;
    assert_eq!(r.status, 488, "{}", r.text);
    let raw = uac.socket.local_addr().unwrap();
    let message = format!(
        "MESSAGE sip:room@{sip} SIP/2.0\r\nVia: SIP/2.0/UDP {raw};branch=z9hG4bKm1\r\n\
        From: <sip:t@{raw}>;tag=1\r\nTo: <sip:room@{sip}>\r\nCall-ID: m1\r\nCSeq: 1 MESSAGE\r\n\
        Content-Length: 0\r\n\r\n"
    );
    uac.send_raw(message.as_bytes()).await;
    assert_eq!(uac.final_response(Duration::from_secs(3)).await.map(|r| r.status), Some(405));
    assert!(participants(&api, "room").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_flood_is_rate_limited_per_source() {
    let (_api, sip) = rig((16_230, 16_239), 10).await;
    let mut flood = Uac::new("127.0.0.1:0", sip).await;
    let start = Instant::now();
    let offer = pcmu_offer("127.0.0.1:4000".parse().unwrap());
    for i in 0..300 {
        let (from, uri) = (flood.local(), format!("sip:nobody@{sip}"));
        let invite = format!("INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {from};branch=z9hG4bKf{i}\r\n\
            From: <sip:f@{from}>;tag=f{i}\r\nTo: <{uri}>\r\nCall-ID: flood-{i}\r\nCSeq: 1 INVITE\r\n\
            Contact: <sip:f@{from}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}", offer.len());
        flood.send_raw(invite.as_bytes()).await;
    }
    let mut answered = 0;
    while flood.final_response(Duration::from_millis(1_500)).await.is_some() {
        answered += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Burst 20, then 10 a second (a retransmitted 404 may come twice).
    let bound = (20.0 + 10.0 * elapsed) * 2.0;
    assert!(
        answered >= 20 && f64::from(answered) <= bound,
        "{answered} answered in {elapsed:.1} s"
    );
    // Another source is answered at once.
    let mut other = Uac::new("127.0.0.2:0", sip).await;
    let (r, _) = other.invite("nobody", "other-1", &offer).await;
    assert_eq!(r.status, 404);
    let _ = &mut flood;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_pins_offerless_invites_hold_kick_and_call_cycles_that_leak_nothing() {
    let (api, sip) = rig((16_240, 16_299), 100_000).await;
    create(&api, json!({"id": "open", "member": {"join_muted": false}})).await;
    create(&api, json!({"id": "pin", "member": {"pins": ["42"]}})).await;
    let registry = api.registry.clone();
    let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let offer = pcmu_offer(rtp.local_addr().unwrap());
    let mut uac = Uac::new("127.0.0.1:0", sip).await;

    // A PIN by SIP INFO (application/dtmf-relay).
    let mut call = uac.call("pin", "info-1", &offer).await.map_err(|r| r.text).unwrap();
    for digit in ["4", "2"] {
        let r = uac
            .in_dialog(
                &mut call,
                "INFO",
                &format!("Signal={digit}\r\nDuration=160\r\n"),
                "application/dtmf-relay",
            )
            .await;
        assert_eq!(r.map(|r| r.status), Some(200));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while participants(&api, "pin").await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = participants(&api, "pin").await;
    assert_eq!(list.len(), 1, "the INFO PIN let the caller in");
    assert_eq!(list[0]["call_id"], "info-1");
    assert_eq!(list[0]["caller_id_name"], "Tester");
    assert_eq!(uac.in_dialog(&mut call, "BYE", "", "").await.map(|r| r.status), Some(200));

    // Offerless: our offer in the 200, the answer in the ACK.
    let answer = offer.clone();
    let mut call =
        uac.call_with_ack("open", "offerless-1", "", &answer).await.map_err(|r| r.text).unwrap();
    assert!(call.answer.contains("PCMU/8000"), "{}", call.answer);
    let deadline = Instant::now() + Duration::from_secs(5);
    while participants(&api, "open").await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let list = participants(&api, "open").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["rtp"]["codec"], "pcmu", "{}", list[0]);
    assert_eq!(uac.in_dialog(&mut call, "BYE", "", "").await.map(|r| r.status), Some(200));

    // Hold: a sendonly re-INVITE stops the mix coming; sendrecv brings it back. The UAC
    // sends RTP all along (the bridge sends only to a peer it hears: consent).
    let mut call = uac.call("open", "held-1", &offer).await.map_err(|r| r.text).unwrap();
    let bridge_rtp: SocketAddr = {
        let port = call
            .answer
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split(' ').next())
            .unwrap();
        format!("127.0.0.1:{port}").parse().unwrap()
    };
    let rtp = std::sync::Arc::new(rtp);
    let talker = {
        let rtp = rtp.clone();
        tokio::spawn(async move {
            let mut packet = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
            packet.extend_from_slice(&[0xff; 160]);
            for seq in 0u16.. {
                packet[2..4].copy_from_slice(&seq.to_be_bytes());
                packet[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
                let _ = rtp.send_to(&packet, bridge_rtp).await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let received = |socket: &tokio::net::UdpSocket| {
        let mut buf = [0u8; 2048];
        let mut n = 0;
        while socket.try_recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(received(&rtp) > 10, "the mix comes");
    let r = uac.reinvite(&mut call, &offer.replace("a=sendrecv", "a=sendonly")).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body().contains("a=recvonly") && r.body().contains(" 2 IN IP4"), "{}", r.body());
    tokio::time::sleep(Duration::from_millis(100)).await;
    received(&rtp);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(received(&rtp), 0, "held: nothing is sent");
    let r = uac.reinvite(&mut call, &offer).await.unwrap();
    assert!(r.body().contains("a=sendrecv"), "{}", r.body());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(received(&rtp) > 10, "resumed");
    talker.abort();
    assert_eq!(uac.in_dialog(&mut call, "BYE", "", "").await.map(|r| r.status), Some(200));

    // A kick through the API sends the caller a BYE in its dialog.
    let _call = uac.call("open", "kicked-1", &offer).await.map_err(|r| r.text).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let id = loop {
        if let Some(p) = participants(&api, "open").await.first() {
            break p["participant_id"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "the call did not join");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let kick = json!({"action": "kick", "data": {}}).to_string();
    let r = api
        .call(
            "PUT",
            &format!("/v2/accounts/acc/conferences/open/participants/{id}"),
            None,
            Some(kick.as_bytes()),
        )
        .await;
    assert!(r.status < 300, "{}", r.text);
    let bye = uac.server_request(Duration::from_secs(5)).await.expect("a BYE after the kick");
    assert!(bye.starts_with("BYE sip:tester@"), "{bye}");
    assert!(bye.contains("Call-ID: kicked-1"), "{bye}");

    // Call cycles: INVITE, 200, ACK, BYE, 200.
    let cycles = 300;
    let start = Instant::now();
    for i in 0..cycles {
        let mut call =
            uac.call("open", &format!("cycle-{i}"), &offer).await.map_err(|r| r.text).unwrap();
        let bye = uac.in_dialog(&mut call, "BYE", "", "").await;
        assert_eq!(bye.map(|r| r.status), Some(200), "cycle {i}");
    }
    let per_cycle_ms = start.elapsed().as_secs_f64() * 1000.0 / f64::from(cycles);
    let deadline = Instant::now() + Duration::from_secs(5);
    while (registry.bridge().ports_in_use() > 0 || !participants(&api, "open").await.is_empty())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(participants(&api, "open").await.is_empty(), "no leg left");
    assert_eq!(registry.bridge().ports_in_use(), 0, "no port left");
    let entry = registry.get("acc", "open").unwrap();
    assert_eq!(entry.member_count(), 0, "no call metadata left");
    println!("{cycles} SIP call cycles, {per_cycle_ms:.1} ms each");
}
