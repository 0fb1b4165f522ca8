//! Dial in with a real SIP client: baresip calls conferences through `mixminus-sip`
//! beside RTP participants joined over HTTP. Tones in, who hears whom (and relate), PINs
//! (right, wrong, moderator, three wrong), BYE both ways, kick → BYE, refusals with their
//! reason phrases, TCP, and an SRTP (SDES) call with its PIN.
//!
//! RTP ports 16000-16199 and 16400-16449 (below the ephemeral range; see `common`).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use common::baresip::Baresip;
use common::http::Server;
use mixminus::control::{Auth, Registry};
use mixminus::quality::phone::{Phone, PhoneConfig};
use mixminus::rtp::dsp::tone_dbfs;
use mixminus::rtp::{Bridge, BridgeConfig, CodecKind, CodecParams};
use mixminus::sip::{SipConfig, SipServer};
use serde_json::{json, Value};

struct Rig {
    api: Server,
    sip: SocketAddr,
    tmp: PathBuf,
}

async fn rig(name: &str, ports: (u16, u16)) -> Rig {
    rig_with(name, ports, SipConfig::default()).await
}

/// [`rig`] with this SIP configuration (`listen` and the PIN digit timeout set here).
async fn rig_with(name: &str, ports: (u16, u16), mut sip: SipConfig) -> Rig {
    let mut config = BridgeConfig::default();
    config.rtp_ports = ports;
    config.inactivity_timeout = Some(Duration::from_secs(10));
    let registry = Registry::new(Bridge::new(config).unwrap(), 10);
    let api = Server::start(registry.clone(), Auth::default(), 64 * 1024).await;
    sip.listen = Some("127.0.0.1:0".parse().unwrap());
    sip.pin_digit_timeout_secs = 2;
    let sip = SipServer::start(registry, sip).await.unwrap().local_addr();
    let tmp = std::env::temp_dir().join(format!("mixminus-sip-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).unwrap();
    Rig { api, sip, tmp }
}

impl Rig {
    async fn put(&self, path: &str, body: Value) -> Value {
        let r = self
            .api
            .call(
                "PUT",
                &format!("/v2/accounts/acc{path}"),
                None,
                Some(body.to_string().as_bytes()),
            )
            .await;
        assert!(r.status < 300, "{path}: {} {}", r.status, r.text);
        r.json["data"].clone()
    }

    async fn participants(&self, conference: &str) -> Vec<Value> {
        let r = self
            .api
            .call(
                "GET",
                &format!("/v2/accounts/acc/conferences/{conference}/participants"),
                None,
                None,
            )
            .await;
        r.json["data"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until `conference` has `n` participants; returns them.
    async fn until_participants(
        &self,
        conference: &str,
        n: usize,
        patience: Duration,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let list = self.participants(conference).await;
            if list.len() == n || tokio::time::Instant::now() > deadline {
                return list;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An RTP participant saying a `hz` tone in PCMU, joined through the HTTP API.
    async fn rtp_phone(&self, conference: &str, hz: f32) -> (Phone, u64) {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let me = socket.local_addr().unwrap();
        let joined = self
            .put(
                &format!("/conferences/{conference}/participants"),
                json!({"action": "join", "data": {"call_id": format!("rtp-{hz}"),
                    "participant_flags": [],
                    "rtp": {"remote_ip": "127.0.0.1", "remote_port": me.port(), "codec": "pcmu"}}}),
            )
            .await;
        let mut n = 0u64;
        let source = Box::new(move |out: &mut [i16]| {
            for s in out.iter_mut() {
                *s = (8_000.0 * (std::f32::consts::TAU * hz * n as f32 / 8_000.0).sin()) as i16;
                n += 1;
            }
        });
        let config = PhoneConfig::new(CodecParams::new(CodecKind::Pcmu), 8_000, source);
        let phone = Phone::start_on(socket, config, common::http::local_rtp(&joined)).unwrap();
        (phone, joined["participant_id"].as_u64().unwrap())
    }

    fn uri(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.sip)
    }
}

/// The level of `hz` in the last `secs` of an 8 kHz recording, dBFS (−200 when too short).
fn tone_db(pcm: &[i16], hz: f32, secs: f32) -> f64 {
    let n = (8_000.0 * secs) as usize;
    if pcm.len() < n {
        return -200.0;
    }
    tone_dbfs(&pcm[pcm.len() - n..], 8_000, hz)
}

/// The loudest 100 ms of `hz` anywhere in an 8 kHz recording, dBFS.
fn loudest_db(pcm: &[i16], hz: f32) -> f64 {
    pcm.chunks_exact(800).map(|w| tone_dbfs(w, 8_000, hz)).fold(-200.0, f64::max)
}

fn conference(id: &str, extra: Value) -> Value {
    let mut doc = json!({"id": id, "member": {"join_muted": false}, "moderator": {"join_muted": false},
        "play_entry_tone": false, "play_exit_tone": false});
    if let (Value::Object(doc), Value::Object(extra)) = (&mut doc, extra) {
        for (k, v) in extra {
            doc.insert(k, v);
        }
    }
    json!({"data": doc})
}

/// A tone said at −12 dBFS is heard above this (G.711 and the mix take a few dB).
const HEARD_DB: f64 = -30.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sip_caller_hears_and_is_heard_relate_applies_and_bye_removes_it() {
    let rig = rig("mix", (16_000, 16_049)).await;
    rig.put("/conferences", conference("open", json!({"conference_numbers": ["7000"]}))).await;
    let (rtp, rtp_id) = rig.rtp_phone("open", 440.0).await;
    let mut bob = Baresip::start(&rig.tmp, "bob", 660.0, "").await;
    bob.command("dial", &rig.uri("7000")).await;
    assert!(bob.wait_event("CALL_ESTABLISHED", Duration::from_secs(10)).await, "{}", bob.log());
    let list = rig.until_participants("open", 2, Duration::from_secs(5)).await;
    let sip =
        list.iter().find(|p| p["participant_id"].as_u64() != Some(rtp_id)).expect("the SIP leg");
    let sip_id = sip["participant_id"].as_u64().unwrap();
    assert_eq!(sip["caller_id_number"], "bob", "{sip}");
    assert!(
        sip["call_id"].as_str().is_some_and(|c| !c.is_empty() && !c.starts_with("rtp-")),
        "{sip}"
    );

    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let (rtp_hears_bob, bob_hears_rtp) =
        (tone_db(&rtp.recording(), 660.0, 1.0), tone_db(&bob.heard(), 440.0, 1.0));
    assert!(
        rtp_hears_bob > HEARD_DB,
        "the RTP participant hears the SIP caller: {rtp_hears_bob:.1} dB"
    );
    assert!(
        bob_hears_rtp > HEARD_DB,
        "the SIP caller hears the RTP participant: {bob_hears_rtp:.1} dB\n{}",
        bob.log()
    );
    assert!(tone_db(&rtp.recording(), 440.0, 1.0) < rtp_hears_bob - 30.0, "mix-minus: not itself");

    // relate: the RTP participant stops hearing the SIP caller; the other way is untouched.
    rig.put(
        "/conferences/open/participants",
        json!({"action": "relate",
        "data": {"participant_id": rtp_id, "other_participant": sip_id, "relationship": "deaf"}}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let after = tone_db(&rtp.recording(), 660.0, 1.0);
    assert!(after < rtp_hears_bob - 30.0, "deaf: {after:.1} dB against {rtp_hears_bob:.1} dB");
    let still = tone_db(&bob.heard(), 440.0, 1.0);
    assert!(still > HEARD_DB, "the caller still hears: {still:.1} dB");

    // The caller hangs up: its leg goes.
    bob.command("hangup", "").await;
    let list = rig.until_participants("open", 1, Duration::from_secs(5)).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["participant_id"].as_u64(), Some(rtp_id));

    // Again over TCP; this time the conference hangs up (DELETE ends it: BYE).
    bob.events.clear();
    bob.command("dial", &format!("{};transport=tcp", rig.uri("7000"))).await;
    assert!(
        bob.wait_event("CALL_ESTABLISHED", Duration::from_secs(10)).await,
        "TCP\n{}",
        bob.log()
    );
    assert_eq!(rig.until_participants("open", 2, Duration::from_secs(5)).await.len(), 2);
    let r = rig.api.call("DELETE", "/v2/accounts/acc/conferences/open", None, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(
        bob.wait_event("CALL_CLOSED", Duration::from_secs(5)).await,
        "the end of the conference sends BYE\n{}",
        bob.log()
    );
    rtp.stop();
    bob.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_prompt_refuse_a_wrong_one_admit_a_moderator_and_kick_sends_bye() {
    let rig = rig("pin", (16_050, 16_099)).await;
    rig.put(
        "/conferences",
        conference(
            "pinned",
            json!({"member": {"pins": ["1234"], "join_muted": false},
        "moderator": {"pins": ["9999"], "join_muted": false}}),
        ),
    )
    .await;
    let mut carol = Baresip::start(&rig.tmp, "carol", 660.0, "").await;
    carol.command("dial", &rig.uri("pinned")).await;
    assert!(carol.wait_event("CALL_ESTABLISHED", Duration::from_secs(10)).await, "{}", carol.log());
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let prompt = loudest_db(&carol.heard(), 1_000.0);
    assert!(prompt > HEARD_DB - 10.0, "the PIN prompt: {prompt:.1} dB\n{}", carol.log());
    assert!(rig.participants("pinned").await.is_empty(), "not in before the PIN");

    carol.type_digits("1111").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(rig.participants("pinned").await.is_empty(), "a wrong PIN lets nobody in");
    carol.type_digits("9999").await;
    let list = rig.until_participants("pinned", 1, Duration::from_secs(5)).await;
    assert_eq!(list.len(), 1, "the moderator PIN lets the caller in\n{}", carol.log());
    assert_eq!(list[0]["conference_channel_vars"]["is_moderator"], true, "{}", list[0]);
    let id = list[0]["participant_id"].as_u64().unwrap();

    // Kick: the caller gets a BYE.
    rig.put(
        &format!("/conferences/pinned/participants/{id}"),
        json!({"action": "kick", "data": {}}),
    )
    .await;
    assert!(
        carol.wait_event("CALL_CLOSED", Duration::from_secs(5)).await,
        "kick sends BYE\n{}",
        carol.log()
    );
    carol.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_wrong_pins_end_the_call_and_refusals_say_why() {
    let rig = rig("refuse", (16_100, 16_149)).await;
    rig.put("/conferences", conference("guarded", json!({"member": {"pins": ["1234"]}}))).await;
    let mut dave = Baresip::start(&rig.tmp, "dave", 660.0, "").await;
    dave.command("dial", &rig.uri("guarded")).await;
    assert!(dave.wait_event("CALL_ESTABLISHED", Duration::from_secs(10)).await, "{}", dave.log());
    for _ in 0..3 {
        dave.type_digits("0000").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        dave.wait_event("CALL_CLOSED", Duration::from_secs(8)).await,
        "three wrong PINs: BYE\n{}",
        dave.log()
    );
    assert!(rig.participants("guarded").await.is_empty());

    // Unknown number, then a locked conference: refused with the reason phrase.
    dave.events.clear();
    dave.command("dial", &rig.uri("no-such-conference")).await;
    assert!(dave.wait_event("CALL_CLOSED", Duration::from_secs(5)).await);
    rig.put("/conferences/guarded", json!({"action": "lock", "data": {}})).await;
    dave.events.clear();
    dave.command("dial", &rig.uri("guarded")).await;
    assert!(dave.wait_event("CALL_CLOSED", Duration::from_secs(5)).await);
    let log = dave.log();
    assert!(log.contains("404 Conference Not Found"), "{log}");
    assert!(log.contains("403 Conference Locked"), "{log}");
    dave.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_srtp_caller_hears_the_prompt_types_its_pin_and_is_mixed() {
    let rig = rig("srtp", (16_150, 16_199)).await;
    rig.put(
        "/conferences",
        conference("secret", json!({"member": {"pins": ["2468"], "join_muted": false}})),
    )
    .await;
    let (rtp, _) = rig.rtp_phone("secret", 440.0).await;
    // `srtp-mand`: baresip offers RTP/SAVP with SDES keys and refuses plain RTP.
    let mut erin = Baresip::start(&rig.tmp, "erin", 660.0, ";mediaenc=srtp-mand").await;
    erin.command("dial", &rig.uri("secret")).await;
    assert!(erin.wait_event("CALL_ESTABLISHED", Duration::from_secs(10)).await, "{}", erin.log());
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let prompt = loudest_db(&erin.heard(), 1_000.0);
    assert!(prompt > HEARD_DB - 10.0, "the prompt over SRTP: {prompt:.1} dB\n{}", erin.log());
    erin.type_digits("2468").await;
    let list = rig.until_participants("secret", 2, Duration::from_secs(5)).await;
    assert_eq!(list.len(), 2, "the PIN over SRTP lets the caller in\n{}", erin.log());
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let (rtp_hears, erin_hears) =
        (tone_db(&rtp.recording(), 660.0, 1.0), tone_db(&erin.heard(), 440.0, 1.0));
    assert!(rtp_hears > HEARD_DB, "SRTP in: {rtp_hears:.1} dB");
    assert!(erin_hears > HEARD_DB, "SRTP out: {erin_hears:.1} dB\n{}", erin.log());
    erin.command("hangup", "").await;
    assert_eq!(rig.until_participants("secret", 1, Duration::from_secs(5)).await.len(), 1);
    rtp.stop();
    erin.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_authentication_with_baresip_admits_the_right_password_only() {
    let mut sip = SipConfig::default();
    sip.auth_users = std::collections::BTreeMap::from([(
        "frank".to_owned(),
        mixminus::sip::config::Password::new("s3cret"),
    )]);
    let rig = rig_with("auth", (16_400, 16_449), sip).await;
    rig.put("/conferences", conference("guarded", json!({}))).await;
    // MD5 only (the default): baresip 1.0 ends the call on a SHA-256 challenge.
    let mut frank = Baresip::start(&rig.tmp, "frank", 660.0, ";auth_pass=s3cret").await;
    frank.command("dial", &rig.uri("guarded")).await;
    assert!(frank.wait_event("CALL_ESTABLISHED", Duration::from_secs(10)).await, "{}", frank.log());
    assert_eq!(rig.until_participants("guarded", 1, Duration::from_secs(5)).await.len(), 1);
    frank.command("hangup", "").await;
    assert!(rig.until_participants("guarded", 0, Duration::from_secs(5)).await.is_empty());
    frank.quit().await;

    let mut eve =
        Baresip::start(&rig.tmp, "frank-wrong", 660.0, ";auth_user=frank;auth_pass=guess").await;
    eve.command("dial", &rig.uri("guarded")).await;
    assert!(eve.wait_event("CALL_CLOSED", Duration::from_secs(10)).await, "{}", eve.log());
    assert!(rig.participants("guarded").await.is_empty(), "a wrong password joins nobody");
    assert!(eve.log().contains("401"), "{}", eve.log());
    eve.quit().await;
}
