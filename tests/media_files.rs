//! Playback and recording end to end (issue 14 item 11): real HTTP, real UDP on loopback,
//! real Opus participants; recordings decoded by GStreamer (`oggdemux ! opusdec`) and
//! hound, not by the code that wrote them.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::http::Server;
use mixminus::control::config::AccountScope;
use mixminus::control::media::{MediaConfig, MediaSettings, RecordingsConfig};
use mixminus::control::{Api, Auth, Registry};
use mixminus::rtp::client::{ToneClient, ToneClientConfig};
use mixminus::rtp::{Bridge, BridgeConfig, CodecKind, CodecParams};
use serde_json::{json, Value};

const TOKEN: &str = "media-token";
const HEARD_DBFS: f64 = -40.0;

struct Setup {
    server: Server,
    media: PathBuf,
    recordings: PathBuf,
    base: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

async fn setup(name: &str, ports: (u16, u16)) -> Setup {
    let base = std::env::temp_dir().join(format!("mixminus-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let (media, recordings) = (base.join("media"), base.join("recordings"));
    std::fs::create_dir_all(&media).unwrap();
    let mut config = BridgeConfig::default();
    config.rtp_ports = ports;
    let registry = Registry::new(Bridge::new(config).unwrap(), 8);
    let auth = Auth::default().with_token(TOKEN, AccountScope::All);
    let mut media_config = MediaConfig::default();
    media_config.dir = Some(media.clone());
    let mut recordings_config = RecordingsConfig::default();
    recordings_config.dir = Some(recordings.clone());
    let settings = MediaSettings { media: media_config, recordings: recordings_config };
    let app = Api::new(registry.clone(), auth).media(settings).router();
    Setup { server: Server::serve(registry, app).await, media, recordings, base }
}

/// One request; a play waits for its file's decode (slow in a debug build on a loaded
/// machine), so the answer is awaited up to 20 s, not the helper's usual 3 s. An event
/// stream is read for 3 s.
async fn call(
    setup: &Setup,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> common::http::Response {
    let body = body.map(|b| b.to_string());
    let request =
        setup.server.request(method, path, Some(TOKEN), body.as_deref().map(str::as_bytes));
    let patience = if path.ends_with("/events") { 3 } else { 20 };
    setup.server.raw_within(&request, Duration::from_secs(patience)).await
}

async fn ok(setup: &Setup, method: &str, path: &str, body: Value) -> Value {
    let r = call(setup, method, path, Some(body.clone())).await;
    assert!(
        r.status < 300 && !r.json["data"].is_null(),
        "{method} {path} {body}: {} {} {}",
        r.status,
        r.head,
        r.text
    );
    r.json["data"].clone()
}

fn write_tone(path: &Path, rate: u32, channels: u16, hz: f32, seconds: f32) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    for n in 0..(rate as f32 * seconds) as usize {
        let v = ((n as f32 * std::f32::consts::TAU * hz / rate as f32).sin() * 8000.0) as i16;
        for _ in 0..channels {
            writer.write_sample(v).unwrap();
        }
    }
    writer.finalize().unwrap();
}

/// Level of `hz` in `pcm` (Goertzel), dB re a full-scale sine.
fn level_dbfs(pcm: &[i16], rate: u32, hz: f32) -> f64 {
    let w = std::f64::consts::TAU * f64::from(hz) / f64::from(rate);
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s = f64::from(x) + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    let amplitude = 2.0 * power.sqrt() / pcm.len().max(1) as f64;
    20.0 * (amplitude / 32_768.0).max(1e-9).log10()
}

struct Party {
    id: u64,
    client: ToneClient,
}

async fn join(setup: &Setup, conference: &str, call_id: &str, tone: Option<f32>) -> Party {
    let joined = ok(
        setup,
        "PUT",
        &format!("/v2/accounts/acc1/conferences/{conference}/participants"),
        json!({"data": {"action": "join", "data": {"call_id": call_id, "rtp": {"codec": "opus"}}}}),
    )
    .await;
    let local = common::http::local_rtp(&joined);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let codec = CodecParams::new(CodecKind::Opus);
    let client = ToneClient::start(ToneClientConfig::new(codec, tone), any, local).await.unwrap();
    Party { id: joined["participant_id"].as_u64().unwrap(), client }
}

/// Waits (up to 6 s, window after window) until every party hears `hz` as `expected`
/// says; fails with what each heard.
async fn assert_hears(parties: &[&Party], hz: f32, expected: &[bool]) {
    let mut heard = Vec::new();
    for _ in 0..12 {
        for p in parties {
            p.client.clear();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        heard = parties.iter().map(|p| p.client.heard_tones(&[hz], HEARD_DBFS)[0]).collect();
        if heard == expected {
            return;
        }
    }
    let levels: Vec<f64> = parties.iter().map(|p| p.client.tone_levels(&[hz])[0]).collect();
    panic!("{hz} Hz: heard {heard:?}, expected {expected:?} (levels {levels:?} dBFS)");
}

async fn create(setup: &Setup, id: &str) {
    ok(
        setup,
        "PUT",
        "/v2/accounts/acc1/conferences",
        json!({"data": {"id": id, "member": {"join_muted": false}}}),
    )
    .await;
}

async fn read_only(setup: &Setup, conference: &str) -> Value {
    let r = call(setup, "GET", &format!("/v2/accounts/acc1/conferences/{conference}"), None).await;
    r.json["data"]["_read_only"].clone()
}

/// A WAV tone played into the conference reaches every listener the matrix lets it reach
/// (not one related `deaf` to the playback); a play to one participant reaches only it;
/// playbacks end by themselves; hostile requests change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_obeys_the_matrix_and_reaches_only_its_target() {
    let setup = setup("play", (11_600, 11_649)).await;
    // The long clips at the conference rate; the short one 8 kHz stereo, downmixed and
    // resampled (a debug build resamples slowly, and a request waits for its decode).
    write_tone(&setup.media.join("tone.wav"), 48_000, 1, 1_000.0, 20.0);
    write_tone(&setup.media.join("private.wav"), 48_000, 1, 1_500.0, 12.0);
    write_tone(&setup.media.join("short.wav"), 8_000, 2, 700.0, 0.5);
    create(&setup, "play").await;
    let base = "/v2/accounts/acc1/conferences/play";
    let a = join(&setup, "play", "a", None).await;
    let b = join(&setup, "play", "b", None).await;
    let c = join(&setup, "play", "c", None).await;

    // Hostile first: nothing may start.
    let refusals = [
        (json!({"action": "play"}), 400, "data"),
        (json!({"action": "play", "data": {}}), 400, "data.media_id"),
        (json!({"action": "play", "data": {"media_id": 5}}), 400, "data.media_id"),
        (json!({"action": "play", "data": {"media_id": "missing.wav"}}), 404, "media_id"),
        (json!({"action": "play", "data": {"media_id": "../media/tone.wav"}}), 404, "media_id"),
        (json!({"action": "play", "data": {"media_id": "/etc/passwd"}}), 404, "media_id"),
        (json!({"action": "play", "data": {"media_id": "..%2Ftone.wav"}}), 404, "media_id"),
        (json!({"action": "record", "data": {"action": "pause"}}), 400, "data.action"),
        (json!({"action": "record", "data": {}}), 400, "data.action"),
        (json!({"action": "record", "data": {"action": "stop"}}), 409, "action"),
        (json!({"action": "dial", "data": {"endpoints": ["1000"]}}), 501, "action"),
    ];
    for (body, status, field) in refusals {
        let r = call(&setup, "PUT", base, Some(body.clone())).await;
        assert_eq!(r.status, status, "{body}: {}", r.text);
        assert!(r.json["data"].get(field).is_some(), "{body}: names {field}: {}", r.text);
    }
    let r = call(
        &setup,
        "PUT",
        &format!("{base}/participants/999"),
        Some(json!({"action": "play", "data": {"media_id": "tone.wav"}})),
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    let ro = read_only(&setup, "play").await;
    assert_eq!(ro["playbacks"], json!([]), "nothing plays after refusals");
    assert!(ro.get("recording").is_none());

    // Into the conference; b stops hearing the playback through the matrix.
    let played =
        ok(&setup, "PUT", base, json!({"action": "play", "data": {"media_id": "tone"}})).await;
    assert_eq!(played["duration_ms"], 20_000, "{played}");
    let playback = played["playback_id"].as_u64().unwrap();
    ok(
        &setup,
        "PUT",
        &format!("{base}/participants"),
        json!({"data": {"action": "relate",
        "data": {"participant_id": b.id, "other_participant": playback, "relationship": "deaf"}}}),
    )
    .await;
    assert_hears(&[&a, &b, &c], 1_000.0, &[true, false, true]).await;

    // To c only (Kazoo's participant play): a and b do not hear it, c does, with the
    // conference's playback still there.
    let private = ok(
        &setup,
        "PUT",
        &format!("{base}/participants/{}", c.id),
        json!({"action": "play", "data": {"media_id": "private.wav"}}),
    )
    .await;
    assert_eq!(private["participant_id"], c.id);
    assert_hears(&[&a, &b, &c], 1_500.0, &[false, false, true]).await;
    assert_hears(&[&a, &b, &c], 1_000.0, &[true, false, true]).await;
    // A participant who joins during a private playback does not hear it either.
    let d = join(&setup, "play", "d", None).await;
    assert_hears(&[&d, &c], 1_500.0, &[false, true]).await;
    assert_hears(&[&d], 1_000.0, &[true]).await;
    // The private playback's matrix records are internal; b's relate is listed.
    let r = call(&setup, "GET", &format!("{base}/relationships"), None).await;
    assert_eq!(r.json["data"].as_array().map(Vec::len), Some(1), "{}", r.text);

    // A short clip ends by itself, the others keep playing; its start and end are events
    // (FreeSWITCH's `play-file` / `play-file-done`, read here from the SSE stream, which the
    // helper reads for 3 s).
    let events = format!("{base}/events");
    let (sse, playing) = tokio::join!(call(&setup, "GET", &events, None), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let played =
            ok(&setup, "PUT", base, json!({"action": "play", "data": {"media_id": "short.wav"}}))
                .await;
        (played, read_only(&setup, "play").await["playbacks"].as_array().unwrap().len())
    });
    assert_eq!(playing.1, 3);
    let short = playing.0["playback_id"].as_u64().unwrap();
    for name in ["play-file", "play-file-done"] {
        let found = sse.text.split("\n\n").any(|e| {
            e.contains(&format!("event: {name}\n"))
                && e.contains(&format!("\"playback_id\":{short}"))
        });
        assert!(found, "no {name} event for playback {short} in {}", sse.text);
    }
    let mut left = 3;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = read_only(&setup, "play").await["playbacks"].as_array().unwrap().len();
        if left == 2 {
            break;
        }
    }
    assert_eq!(left, 2, "the 0.5 s clip ended by itself");
    // The private playback ends when its listener leaves.
    ok(&setup, "PUT", &format!("{base}/participants/{}", c.id), json!({"action": "kick"})).await;
    let ro = read_only(&setup, "play").await;
    assert_eq!(ro["playbacks"].as_array().unwrap().len(), 1, "{ro}");
    assert_eq!(ro["playbacks"][0]["playback_id"], playback);
}

/// Records while two participants say tones, stops, downloads, and decodes the Ogg/Opus
/// file with GStreamer and the WAV file with hound: both tones are in each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_holds_the_whole_mix() {
    let setup = setup("record", (11_650, 11_699)).await;
    create(&setup, "rec").await;
    let base = "/v2/accounts/acc1/conferences/rec";
    let _low = join(&setup, "rec", "low", Some(440.0)).await;
    let high = join(&setup, "rec", "high", Some(1_300.0)).await;
    // Both talking before the recording starts.
    assert_hears(&[&high], 440.0, &[true]).await;

    for format in ["ogg", "wav"] {
        let started = ok(
            &setup,
            "PUT",
            base,
            json!({"action": "record", "data": {"action": "start", "format": format}}),
        )
        .await;
        let id = started["recording"]["id"].as_str().unwrap().to_owned();
        let again = call(
            &setup,
            "PUT",
            base,
            Some(json!({"action": "record", "data": {"action": "start"}})),
        )
        .await;
        assert_eq!(again.status, 409, "a second recording: {}", again.text);
        assert_eq!(read_only(&setup, "rec").await["recording"]["id"], id.as_str());
        let path = format!("/v2/accounts/acc1/recordings/{id}");
        let early = call(&setup, "GET", &format!("{path}?accept=audio"), None).await;
        assert_eq!(early.status, 409, "the file is not served while it is written");
        assert_eq!(call(&setup, "DELETE", &path, None).await.status, 409);
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let stopped =
            ok(&setup, "PUT", base, json!({"action": "record", "data": {"action": "stop"}})).await;
        let doc = &stopped["recording"];
        assert_eq!(doc["status"], "complete", "{stopped}");
        let ms = doc["duration_ms"].as_u64().unwrap();
        assert!((2_000..=5_000).contains(&ms), "{ms} ms recorded");

        let list = call(&setup, "GET", "/v2/accounts/acc1/recordings", None).await;
        assert!(list.json["data"].as_array().unwrap().iter().any(|r| r["id"] == id.as_str()));
        let mine = call(&setup, "GET", &format!("{base}/recordings"), None).await;
        assert!(mine.json["data"].as_array().unwrap().iter().any(|r| r["id"] == id.as_str()));
        let r =
            call(&setup, "GET", &format!("/v2/accounts/acc1/recordings/{id}?accept=audio"), None)
                .await;
        assert_eq!(r.status, 200);
        let pcm = match format {
            "ogg" => {
                assert!(
                    r.head.to_ascii_lowercase().contains("content-type: audio/ogg"),
                    "{}",
                    r.head
                );
                gstreamer_decode(&setup.base, &r.body)
            }
            _ => {
                let mut reader = hound::WavReader::new(std::io::Cursor::new(&r.body)).unwrap();
                assert_eq!(reader.spec().sample_rate, 48_000);
                reader.samples::<i16>().map(Result::unwrap).collect()
            }
        };
        // The middle second: both talkers, nothing else.
        assert!(pcm.len() >= 96_000, "{format}: {} samples", pcm.len());
        let mid = &pcm[pcm.len() / 2 - 24_000..pcm.len() / 2 + 24_000];
        let (low_db, high_db, absent_db) = (
            level_dbfs(mid, 48_000, 440.0),
            level_dbfs(mid, 48_000, 1_300.0),
            level_dbfs(mid, 48_000, 2_000.0),
        );
        // Each talker sends about -12 dBFS; concealed losses on a loaded machine lower the
        // average, so "present" is a generous -35 dBFS and "absent" 25 dB below the weaker.
        assert!(
            low_db > -35.0 && high_db > -35.0,
            "{format}: 440 Hz {low_db:.1}, 1300 Hz {high_db:.1} dBFS"
        );
        assert!(absent_db < low_db.min(high_db) - 25.0, "{format}: 2000 Hz at {absent_db:.1} dBFS");
        println!("{format}: {ms} ms, 440 Hz {low_db:.1} dBFS, 1300 Hz {high_db:.1} dBFS, 2000 Hz {absent_db:.1} dBFS");
    }

    // The WAV one deleted: gone from the listing, the file and its metadata removed.
    let wav = call(&setup, "GET", "/v2/accounts/acc1/recordings", None).await.json["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["media_type"] == "wav")
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .unwrap();
    let path = format!("/v2/accounts/acc1/recordings/{wav}");
    assert_eq!(call(&setup, "DELETE", &path, None).await.status, 200);
    assert_eq!(call(&setup, "GET", &path, None).await.status, 404);
    // Hostile recording ids: none resolves, nothing is deleted.
    for bad in ["..%2F..%2Fetc%2Fpasswd", "nothere", "a.b"] {
        let r =
            call(&setup, "GET", &format!("/v2/accounts/acc1/recordings/{bad}?accept=audio"), None)
                .await;
        assert_eq!(r.status, 404, "{bad}: {}", r.text);
    }
    // Another account sees none of them.
    let r = call(&setup, "GET", "/v2/accounts/acc2/recordings", None).await;
    assert_eq!(r.json["data"], json!([]));
    assert_eq!(std::fs::read_dir(setup.recordings.join("acc1")).unwrap().count(), 2);
}

/// Decodes an Ogg/Opus file with GStreamer (a real counterpart), to 48 kHz mono samples.
fn gstreamer_decode(dir: &Path, ogg: &[u8]) -> Vec<i16> {
    let input = dir.join("download.ogg");
    let output = dir.join("decoded.wav");
    std::fs::write(&input, ogg).unwrap();
    let status = std::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args([
            "filesrc",
            &format!("location={}", input.display()),
            "!",
            "oggdemux",
            "!",
            "opusdec",
            "!",
            "audioconvert",
            "!",
            "audioresample",
            "!",
            "audio/x-raw,format=S16LE,rate=48000,channels=1",
            "!",
            "wavenc",
            "!",
            "filesink",
            &format!("location={}", output.display()),
        ])
        .status()
        .expect("gst-launch-1.0 (scripts/install-deps.sh installs GStreamer)");
    assert!(status.success(), "GStreamer could not decode the recording");
    let mut reader = hound::WavReader::open(&output).unwrap();
    reader.samples::<i16>().map(Result::unwrap).collect()
}
