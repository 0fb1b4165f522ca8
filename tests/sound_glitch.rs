//! What a talker hears when it starts and stops talking (issue 10, item 1), end to end: a
//! bridge with its HTTP API served in-process on loopback (what `mixminus serve` runs),
//! three phones joined over HTTP and talking real RTP over UDP. B says a steady 440 Hz tone
//! (always talking), A says 1.2 s bursts of 1 kHz every 3 s, C sends quiet noise (below the
//! talk gate). A's own voice is never in A's mix, so A should hear B's tone and nothing
//! else, through every one of its own talk onsets and ends.
//!
//! A's incoming mix is decoded with one continuous decoder, as a phone does (libopus, or
//! G.711 at 8 kHz), and scored in 5 ms windows (every 2.5 ms) by [`ToneResidual`]: the
//! residual after fitting the expected tone, relative to the tone. Goal: the worst window at most −30 dB
//! and no window above −20 dB, with Opus and with PCMU.
//!
//! Each case records 7.5 s (A's talk onsets at 1.5 s and 4.5 s, its talk ends at 2.7 s
//! and 5.7 s plus the talk gate's hangover) and prints its numbers:
//! `cargo test --test sound_glitch -- --nocapture`. The two cases take turns, and a run in
//! which the bridge skipped ticks (a busy machine) is repeated, at most three times.

mod common;

use std::time::Duration;

use common::http::Server;
use mixminus::control::config::AccountScope;
use mixminus::control::{Auth, Registry};
use mixminus::quality::glitch::{ToneResidual, WINDOW};
use mixminus::quality::sources::{quiet_noise, steady_tone, tone_bursts, AMPLITUDE, TONE_HZ};
use mixminus::quality::{Phone, PhoneConfig};
use mixminus::rtp::{Bridge, BridgeConfig, CodecKind, CodecParams};
use serde_json::{json, Value};

const TOKEN: &str = "glitch-token";
const RECORD: Duration = Duration::from_millis(7_500);
/// The start of A's recording is left out: joins, the talk gate's attack, buffers filling.
const SETTLE: Duration = Duration::from_millis(1_000);
const WORST_DB: f64 = -30.0;
const NONE_ABOVE_DB: f64 = -20.0;

async fn put(server: &Server, path: &str, body: Value) -> Value {
    server.put_data(path, TOKEN, body).await
}

/// Runs the three phones through the bridge and scores what A heard; also says how many
/// ticks the bridge skipped (a machine too busy to keep time).
async fn what_a_hears(kind: CodecKind, ports: (u16, u16)) -> (ToneResidual, u64) {
    let mut config = BridgeConfig::default();
    config.rtp_ports = ports;
    let bridge = Bridge::new(config).unwrap();
    let registry = Registry::new(bridge, 1);
    let auth = Auth::default().with_token(TOKEN, AccountScope::All);
    let server = Server::start(registry.clone(), auth, 64 * 1024).await;
    // Everyone joins talking; no entry or exit tones (they would be in A's mix).
    let doc = json!({"data": {"id": "glitch", "member": {"join_muted": false},
        "play_entry_tone": false, "play_exit_tone": false}});
    put(&server, "/v2/accounts/acc1/conferences", doc).await;

    let codec = CodecParams::new(kind);
    // G.711 is decoded at its own 8 kHz, as a phone plays it.
    let rate = if kind == CodecKind::Opus { 48_000 } else { 8_000 };
    let mut phones = Vec::new();
    for source in [tone_bursts(rate), steady_tone(rate), quiet_noise(0x9e37_79b9_7f4a_7c15)] {
        let joined = put(
            &server,
            "/v2/accounts/acc1/conferences/glitch/participants",
            json!({"data": {"action": "join", "data": {"rtp": {"codec": kind.name()}}}}),
        )
        .await;
        let local = common::http::local_rtp(&joined);
        let mut phone = PhoneConfig::new(codec, rate, source);
        // A good phone's upstream, so what A hears is the bridge's own coding and nothing
        // of B's encoder's (two Opus encodes at 32 kbit/s in tandem leave ~3 dB less room).
        phone.settings.bitrate = 64_000;
        phones.push(Phone::start(phone, local).await.unwrap());
    }
    tokio::time::sleep(RECORD).await;
    let heard = phones[0].recording();
    let stats = phones[0].stats();
    let snapshot = registry.get("acc1", "glitch").unwrap().handle().snapshot();
    let counters = snapshot.counters;
    let jitter: Vec<String> =
        snapshot.participants.iter().map(|p| format!("{}: {:?}", p.info.id, p.jitter)).collect();
    println!("{}: the bridge's jitter buffers: {jitter:?}", kind.name());
    for phone in &phones {
        phone.stop();
    }
    registry.stop_all().await;

    let skip = (rate as f64 * SETTLE.as_secs_f64()) as usize;
    assert!(heard.len() > skip + rate as usize * 5, "A heard only {} samples", heard.len());
    let measured = ToneResidual::measure(&heard[skip..], rate, TONE_HZ as f64, WINDOW);
    let (worst_at, worst) = measured.worst().unwrap();
    println!(
        "{}: A hears B's tone at {:.0} (sent {AMPLITUDE}); {} windows of 5 ms (every 2.5 ms): \
         median {:.1} dB, worst {:.1} dB at {:.3} s, {} above {NONE_ABOVE_DB} dB, {} above {WORST_DB} dB; \
         A's phone: {stats:?}; bridge: {} late / {} skipped ticks",
        kind.name(),
        measured.amplitude,
        measured.windows_db.len(),
        measured.median_db(),
        worst,
        worst_at + SETTLE.as_secs_f64(),
        measured.count_above(NONE_ABOVE_DB),
        measured.count_above(WORST_DB),
        counters.late_ticks,
        counters.skipped_ticks,
    );
    let over: Vec<String> = measured
        .windows_above(WORST_DB)
        .iter()
        .map(|(t, db)| format!("{:.3}:{db:+.0}", t + SETTLE.as_secs_f64()))
        .collect();
    println!("{}: windows above {WORST_DB} dB (s:dB): {}", kind.name(), over.join(" "));
    (measured, counters.skipped_ticks)
}

/// The measurement, repeated (at most three runs) while the bridge skipped ticks: a skipped
/// tick is a 20 ms hole in every stream, caused by a machine too busy to run the tick loop
/// in time (other builds and tests), not by the mixing under test. A run without skipped
/// ticks is the verdict; after three busy runs the last one is, whatever it shows.
async fn measured_on_time(kind: CodecKind, ports: (u16, u16)) -> ToneResidual {
    // The two codecs' cases take turns, so they do not make each other late.
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = TURN.lock().await;
    let mut attempt = 1;
    loop {
        let (measured, skipped) = what_a_hears(kind, ports).await;
        if skipped == 0 || attempt == 3 {
            return measured;
        }
        println!(
            "{}: the bridge skipped {skipped} ticks (busy machine): measuring again",
            kind.name()
        );
        attempt += 1;
    }
}

fn check(kind: CodecKind, measured: &ToneResidual) {
    let name = kind.name();
    // The tone must be there at its level, or the residual would be measured against nothing.
    let level_db = 20.0 * (measured.amplitude / AMPLITUDE as f64).log10();
    assert!(level_db.abs() < 3.0, "{name}: B's tone reaches A at {level_db:+.1} dB");
    let (at, worst) = measured.worst().unwrap();
    let above: Vec<String> = measured
        .windows_above(NONE_ABOVE_DB)
        .iter()
        .map(|(t, db)| format!("{:.3} s: {db:+.1} dB", t + SETTLE.as_secs_f64()))
        .collect();
    assert!(
        above.is_empty(),
        "{name}: {} windows above {NONE_ABOVE_DB} dB (A's talk onsets at 1.5 and 4.5 s, \
         ends at 2.7 and 5.7 s): {above:?}",
        above.len()
    );
    assert!(
        worst <= WORST_DB,
        "{name}: worst window {worst:+.1} dB at {:.3} s (limit {WORST_DB} dB)",
        at + SETTLE.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_talker_hears_no_glitch_when_it_starts_or_stops_talking() {
    let measured = measured_on_time(CodecKind::Opus, (11_000, 11_099)).await;
    check(CodecKind::Opus, &measured);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pcmu_talker_hears_no_glitch_when_it_starts_or_stops_talking() {
    let measured = measured_on_time(CodecKind::Pcmu, (11_100, 11_199)).await;
    check(CodecKind::Pcmu, &measured);
}
