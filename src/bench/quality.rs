//! `mixminus bench --quality`: what callers hear, scored, one bridge after the other on the
//! same generator (mixminus, Janus AudioBridge).
//!
//! Per bridge and network condition: a fresh bridge, `--quality-talkers` phones saying a
//! scripted espeak-ng conversation ([`speech`](super::speech)) and `--quality-listeners`
//! quiet phones (noise far under the talk threshold), all Opus at 16 kHz, every phone's
//! uplink impaired by the condition (loss random or Gilbert–Elliott bursty, jitter,
//! reordering; downlinks clean). On mixminus the last listener is `deaf` to talker 1.
//! Every phone decodes its mix with one continuous libopus decoder, decode-on-arrival
//! (on the clean downlink: a fixed playout delay), and its recording is scored against its
//! ideal mix (the talkers it should hear, summed) with PESQ wideband
//! (`scripts/pesq_score.py`, PyPI `pesq`), which also finds the alignment; from that and
//! each frame's arrival time comes the path latency (talker's packet sent → listener's
//! packet carrying it received; the phones' own capture and playout buffers are not in it).
//! The `deaf` listener's output over talker 1's solo speech, relative to talker 1's speech,
//! shows the relationship holds (goal: ≥ 60 dB down). Then the glitch scenario of issue 10
//! (a steady tone, a talker's bursts, quiet noise; Opus 48 kHz) per bridge.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mixminus::quality::glitch::{ToneResidual, WINDOW};
use mixminus::quality::sources::{quiet_noise, recording, steady_tone, tone_bursts, TONE_HZ};
use mixminus::quality::{Impairment, Loss, Phone, PhoneConfig};
use mixminus_rtp::{CodecKind, CodecParams};
use serde_json::{json, Map, Value};

use super::procstat::CpuSample;
use super::speech::{self, Conversation};
use super::{BenchArgs, Target, TargetKind};

/// The PESQ scorer, written next to the results so the binary runs from anywhere.
const PESQ_SCRIPT: &str = include_str!("../../scripts/pesq_score.py");
/// Quiet listeners' noise seed base.
const NOISE_SEED: u64 = 0x51ab_1e5e_ed00_0001;
/// Phones start saying their tracks this long after they are all started.
const LEAD_IN: Duration = Duration::from_millis(600);
/// Phone `i`'s send phase: a fixed pseudo-random offset in 0..20 ms (the same in every run
/// and for every bridge). Without it every phone would start on the same mark, a whole
/// number of frames after the conference was created, and meet the bridge's mixing tick at
/// one phase: the latency measured would then be that phase, set by how long the joins
/// took, rather than the average over the phases real callers have.
fn send_phase(i: usize) -> Duration {
    // splitmix64 of the index: spread, not secret.
    let mut z = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    Duration::from_micros(z % 20_000)
}

/// Recording kept after the conversation ends (the slowest path's latency).
const TAIL: Duration = Duration::from_millis(800);
/// Left out at both ends of a solo span when measuring removed speech.
const SOLO_MARGIN: Duration = Duration::from_millis(250);
/// The glitch scenario's first second is left out (joins, the talk gate's attack).
const GLITCH_SETTLE_SECS: f64 = 1.0;

/// A network condition on every uplink.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Condition {
    pub(crate) name: &'static str,
    impairment: Impairment,
}

/// The conditions `--quality-conditions` picks from, in table order.
pub(crate) fn conditions() -> Vec<Condition> {
    let make = |name, loss, jitter_ms: u64, reorder: f64| {
        let mut impairment = Impairment::default();
        impairment.loss = loss;
        impairment.jitter = Duration::from_millis(jitter_ms);
        impairment.reorder = reorder;
        Condition { name, impairment }
    };
    vec![
        make("clean", Loss::None, 0, 0.0),
        make("loss-5", Loss::Random(0.05), 0, 0.0),
        make("loss-10", Loss::Random(0.10), 0, 0.0),
        make("loss-20", Loss::Random(0.20), 0, 0.0),
        make("burst-5", Loss::bursty(0.05, 3.0), 0, 0.0),
        make("burst-10", Loss::bursty(0.10, 3.0), 0, 0.0),
        make("burst-20", Loss::bursty(0.20, 3.0), 0, 0.0),
        make("jitter-40", Loss::None, 40, 0.0),
        make("jitter-100", Loss::None, 100, 0.0),
        make("reorder-10", Loss::None, 0, 0.10),
        make("loss-5+jitter-40", Loss::Random(0.05), 40, 0.0),
    ]
}

/// One phone's scores in one run.
#[derive(Debug, Clone)]
pub(crate) struct Scored {
    pub(crate) role: String,
    pub(crate) pesq: Option<f64>,
    pub(crate) latency_ms: Option<f64>,
    pub(crate) kbps: f64,
    /// Frames it received and played, % of one per 20 ms while it listened.
    pub(crate) received_pct: f64,
    pub(crate) error: Option<String>,
}

/// One bridge under one condition.
#[derive(Debug, Clone)]
pub(crate) struct RunScore {
    pub(crate) target: TargetKind,
    /// The mixminus Opus settings (Janus: its defaults).
    pub(crate) settings: String,
    pub(crate) condition: &'static str,
    pub(crate) phones: Vec<Scored>,
    /// The `deaf` listener's output over the removed talker's solo speech, dB relative to
    /// that speech (None where the bridge has no relationships).
    pub(crate) removed_db: Option<f64>,
    /// The same measure at a listener that does hear that talker (≈ 0 dB when the measure
    /// works).
    pub(crate) control_db: Option<f64>,
    pub(crate) cpu_cores: Option<f64>,
    pub(crate) uplink_loss: f64,
}

impl RunScore {
    pub(crate) fn median_pesq(&self) -> Option<f64> {
        median(self.phones.iter().filter_map(|p| p.pesq).collect())
    }
    pub(crate) fn median_latency(&self) -> Option<f64> {
        median(self.phones.iter().filter_map(|p| p.latency_ms).collect())
    }
    pub(crate) fn median_kbps(&self) -> Option<f64> {
        median(self.phones.iter().map(|p| p.kbps).collect())
    }
    pub(crate) fn min_received(&self) -> Option<f64> {
        self.phones.iter().map(|p| p.received_pct).reduce(f64::min)
    }
}

/// The glitch scenario on one bridge.
#[derive(Debug, Clone)]
pub(crate) struct GlitchScore {
    pub(crate) target: TargetKind,
    pub(crate) median_db: f64,
    pub(crate) worst_db: f64,
    pub(crate) worst_at: f64,
    pub(crate) above_20: usize,
    pub(crate) windows: usize,
    pub(crate) level_db: f64,
}

/// What each run needs to start a bridge.
pub(crate) trait Bridges {
    /// Starts `target`; `profile` holds extra conference profile keys (mixminus only).
    fn start(
        &mut self,
        target: TargetKind,
        profile: &Map<String, Value>,
        tag: &str,
    ) -> anyhow::Result<Box<dyn Target>>;
}

/// One mixminus Opus configuration of the sweep (`--opus-*`).
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) label: String,
    profile: Map<String, Value>,
    bitrate: Option<u32>,
}

/// Every bitrate × complexity pair asked for, with the FEC/DTX/loss flags; one "default"
/// (the conference profile's defaults) when none is.
fn settings(args: &BenchArgs) -> Vec<Settings> {
    let bitrates: Vec<Option<u32>> = if args.opus_bitrate.is_empty() {
        vec![None]
    } else {
        args.opus_bitrate.iter().copied().map(Some).collect()
    };
    let complexities: Vec<Option<u8>> = if args.opus_complexity.is_empty() {
        vec![None]
    } else {
        args.opus_complexity.iter().copied().map(Some).collect()
    };
    let mut all = Vec::new();
    for &bitrate in &bitrates {
        for &complexity in &complexities {
            let mut profile = Map::new();
            let mut label = Vec::new();
            if let Some(b) = bitrate {
                profile.insert("opus-bitrate".into(), json!(b));
                label.push(format!("{} kbit/s", b / 1000));
            }
            if let Some(c) = complexity {
                profile.insert("opus-complexity".into(), json!(c));
                label.push(format!("complexity {c}"));
            }
            if let Some(fec) = args.opus_fec {
                profile.insert("opus-fec".into(), json!(fec));
                label.push(format!("fec {fec}"));
            }
            if let Some(dtx) = args.opus_dtx {
                profile.insert("opus-dtx".into(), json!(dtx));
                label.push(format!("dtx {dtx}"));
            }
            if let Some(loss) = args.opus_loss_percent {
                profile.insert("opus-loss-percent".into(), json!(loss));
                label.push(format!("loss {loss} %"));
            }
            if let Some(ms) = args.jitter_max_delay_ms {
                profile.insert("jitter-max-delay-ms".into(), json!(ms));
                label.push(format!("playout ≤ {ms} ms"));
            }
            let label = if label.is_empty() { "default".to_owned() } else { label.join(" / ") };
            all.push(Settings { label, profile, bitrate });
        }
    }
    all
}

pub(crate) fn run(args: &BenchArgs, bridges: &mut dyn Bridges) -> anyhow::Result<ExitCode> {
    let out = args.out.clone();
    let work = out.join("quality-work");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let script = out.join("pesq_score.py");
    std::fs::write(&script, PESQ_SCRIPT)?;
    check_python(&args.python)?;
    let conversation = Conversation::synthesize(args.quality_talkers, args.quality_lines, &work)?;
    let chosen: Vec<Condition> = if args.quality_conditions.is_empty() {
        conditions()
    } else {
        let all = conditions();
        let mut chosen = Vec::new();
        for name in &args.quality_conditions {
            let found = all.iter().find(|c| c.name == name.as_str());
            chosen.push(*found.with_context(|| {
                let names: Vec<&str> = all.iter().map(|c| c.name).collect();
                format!("unknown condition {name}; known: {}", names.join(", "))
            })?);
        }
        chosen
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the phones' runtime")?;
    eprintln!(
        "mixminus bench --quality: {} talkers ({}), {} listeners, {:.1} s of conversation, \
         {} conditions x {} bridges; results in {}",
        args.quality_talkers,
        conversation.voices.join(", "),
        args.quality_listeners,
        conversation.seconds(),
        chosen.len(),
        args.targets.len(),
        out.display()
    );
    let load_before = super::procstat::load_average();
    let sweep = settings(args);
    let janus_settings =
        [Settings { label: "Janus defaults".into(), profile: Map::new(), bitrate: None }];
    let mut scores = Vec::new();
    for condition in &chosen {
        for &target in &args.targets {
            let runs = if target == TargetKind::Mixminus { &sweep[..] } else { &janus_settings };
            for setting in runs {
                let tag = if runs.len() > 1 {
                    format!("{} {} {}", target.name(), condition.name, setting.label)
                } else {
                    format!("{} {}", target.name(), condition.name)
                };
                eprintln!("{tag}: running");
                let bridge = bridges.start(target, &setting.profile, &tag)?;
                let run = speech_run(&runtime, args, bridge, target, condition, &conversation);
                match run.and_then(|raw| score(args, &script, &conversation, raw, &work, &tag)) {
                    Ok(mut s) => {
                        s.settings = setting.label.clone();
                        if let (Some(asked), Some(got)) = (setting.bitrate, s.median_kbps()) {
                            // Opus VBR on speech with pauses sends less than the target; far
                            // more, or no change at all, means the key was not applied.
                            if got > f64::from(asked) / 1000.0 * 1.3 {
                                eprintln!("{tag}: WARNING: {got:.1} kbit/s received for {asked} bit/s asked: is opus-bitrate honoured?");
                            }
                        }
                        eprintln!(
                            "{tag}: PESQ median {}, latency {}, {} kbit/s, removed {}",
                            fmt(s.median_pesq(), 2),
                            fmt(s.median_latency(), 0),
                            fmt(s.median_kbps(), 1),
                            fmt(s.removed_db, 1)
                        );
                        scores.push(s);
                    }
                    Err(e) => eprintln!("{tag}: FAILED: {e:#}"),
                }
            }
        }
    }
    let mut glitches = Vec::new();
    if args.quality_glitch_secs > 0.0 {
        for &target in &args.targets {
            let tag = format!("{} glitch", target.name());
            eprintln!("{tag}: running {} s", args.quality_glitch_secs);
            let bridge = bridges.start(target, &sweep[0].profile, &tag)?;
            match glitch_run(&runtime, args, bridge, target) {
                Ok(g) => {
                    eprintln!(
                        "{tag}: median {:.1} dB, worst {:.1} dB at {:.2} s, {} windows above -20 dB",
                        g.median_db, g.worst_db, g.worst_at, g.above_20
                    );
                    glitches.push(g);
                }
                Err(e) => eprintln!("{tag}: FAILED: {e:#}"),
            }
        }
    }
    if scores.is_empty() {
        bail!("no quality run succeeded");
    }
    let load = (load_before + super::procstat::load_average()) / 2.0;
    let table = summary(args, &conversation, &scores, &glitches, load);
    println!("{table}");
    std::fs::write(out.join("quality.md"), &table)?;
    write_csv(&out.join("quality.csv"), &scores)?;
    plot(&out.join("quality.svg"), &scores, &chosen)?;
    eprintln!("wrote quality.md, quality.csv and quality.svg in {}", out.display());
    let per_condition: usize =
        args.targets.iter().map(|&t| if t == TargetKind::Mixminus { sweep.len() } else { 1 }).sum();
    let complete = scores.len() == chosen.len() * per_condition;
    Ok(if complete { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn check_python(python: &Path) -> anyhow::Result<()> {
    let ok = Command::new(python)
        .args(["-c", "import numpy, pesq"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        bail!(
            "{} cannot import numpy and pesq: run scripts/install-bench-deps.sh \
             (pip install numpy pesq)",
            python.display()
        );
    }
    Ok(())
}

/// What one run recorded, before scoring.
struct Raw {
    target: TargetKind,
    condition: &'static str,
    /// Per phone: role, what it should hear (by talker), recording, frame arrivals, bytes.
    phones: Vec<RawPhone>,
    start: Instant,
    deaf: Option<(usize, usize)>,
    cpu_cores: Option<f64>,
    uplink_loss: f64,
}

struct RawPhone {
    role: String,
    hears: Vec<bool>,
    pcm: Vec<i16>,
    arrivals: Vec<Instant>,
    payload_bytes: u64,
    /// Frames it would have played at one per 20 ms since it started.
    expected_frames: f64,
}

fn speech_run(
    runtime: &tokio::runtime::Runtime,
    args: &BenchArgs,
    mut bridge: Box<dyn Target>,
    target: TargetKind,
    condition: &Condition,
    conversation: &Conversation,
) -> anyhow::Result<Raw> {
    let result = (|| -> anyhow::Result<_> {
        let talkers = conversation.tracks.len();
        let total = talkers + args.quality_listeners;
        let _guard = runtime.enter();
        let sockets: Vec<tokio::net::UdpSocket> = runtime.block_on(async {
            let mut v = Vec::new();
            for _ in 0..total {
                v.push(tokio::net::UdpSocket::bind("127.0.0.1:0").await?);
            }
            anyhow::Ok(v)
        })?;
        let mut ids = Vec::new();
        let mut remotes = Vec::new();
        for socket in &sockets {
            let (id, remote) = bridge.join(socket.local_addr()?)?;
            ids.push(id);
            remotes.push(remote);
        }
        // The last listener stops hearing talker 1 (talker 0 when there is only one).
        let deaf = (bridge.supports_relationships() && args.quality_listeners > 0).then(|| {
            let removed = usize::from(talkers > 1);
            (total - 1, removed)
        });
        if let Some((listener, talker)) = deaf {
            bridge.relate(ids[listener], ids[talker], "deaf")?;
        }
        let codec = CodecParams::new(CodecKind::Opus);
        let start = Instant::now() + LEAD_IN;
        let mut phones = Vec::new();
        for (i, (socket, remote)) in sockets.into_iter().zip(remotes).enumerate() {
            let source = if i < talkers {
                recording(Arc::new(conversation.tracks[i].clone()))
            } else {
                quiet_noise(NOISE_SEED + i as u64)
            };
            let mut config = PhoneConfig::new(codec, speech::RATE, source);
            // The phones send as a WebRTC client does, whatever the bridge's own defaults:
            // 32 kbit/s, complexity 5, in-band FEC tuned for 5 % loss, no DTX.
            config.settings.bitrate = 32_000;
            config.settings.complexity = 5;
            config.settings.fec = true;
            config.settings.dtx = false;
            config.settings.expected_loss_percent = 5;
            config.start = Some(start + send_phase(i));
            config.uplink = condition.impairment;
            config.uplink.seed = 1 + i as u64;
            phones.push(Phone::start_on(socket, config, remote)?);
        }
        let listening = Instant::now();
        let pid = bridge.pid();
        std::thread::sleep(LEAD_IN);
        let cpu0 = pid.map(|p| CpuSample::read(Some(p))).transpose()?;
        std::thread::sleep(Duration::from_secs_f64(conversation.seconds()) + TAIL);
        let cpu1 = pid.map(|p| CpuSample::read(Some(p))).transpose()?;
        let (mut sent, mut lost) = (0u64, 0u64);
        let expected_frames = listening.elapsed().as_secs_f64() * 50.0;
        let raw_phones = phones
            .iter()
            .enumerate()
            .map(|(i, phone)| {
                let stats = phone.stats();
                sent += stats.sent;
                lost += stats.uplink_lost;
                let hears = (0..talkers)
                    .map(|t| t != i && deaf.is_none_or(|(l, removed)| !(l == i && removed == t)))
                    .collect();
                let role = if i < talkers {
                    format!("talker {i}")
                } else if deaf.is_some_and(|(l, _)| l == i) {
                    format!("listener {} (deaf to talker {})", i - talkers, deaf.map_or(0, |d| d.1))
                } else {
                    format!("listener {}", i - talkers)
                };
                RawPhone {
                    role,
                    hears,
                    pcm: phone.recording(),
                    arrivals: phone.arrivals(),
                    payload_bytes: stats.payload_bytes,
                    expected_frames,
                }
            })
            .collect();
        for phone in &phones {
            phone.stop();
        }
        let cpu_cores = cpu0.zip(cpu1).map(|(a, b)| a.cores_until(&b));
        Ok(Raw {
            target,
            condition: condition.name,
            phones: raw_phones,
            start,
            deaf,
            cpu_cores,
            uplink_loss: lost as f64 / sent.max(1) as f64,
        })
    })();
    let stopped = bridge.stop();
    let raw = result?;
    stopped.context("stopping the bridge")?;
    Ok(raw)
}

fn score(
    args: &BenchArgs,
    script: &Path,
    conversation: &Conversation,
    raw: Raw,
    work: &Path,
    tag: &str,
) -> anyhow::Result<RunScore> {
    let stem = file_stem(tag);
    let rate = f64::from(speech::RATE);
    let talkers = conversation.tracks.len();
    let shifts: Vec<usize> =
        (0..talkers).map(|t| (send_phase(t).as_secs_f64() * rate).round() as usize).collect();
    let mut jobs = Vec::new();
    for (i, phone) in raw.phones.iter().enumerate() {
        let ideal = conversation.mix(|t| phone.hears[t], &shifts);
        let reference = work.join(format!("{stem}-{i}-ideal.wav"));
        let degraded = work.join(format!("{stem}-{i}-heard.wav"));
        speech::write_wav(&reference, &ideal)?;
        speech::write_wav(&degraded, &phone.pcm)?;
        jobs.push(serde_json::json!({"ref": reference, "deg": degraded}));
    }
    let answers = run_scorer(&args.python, script, &Value::Array(jobs.clone()))?;
    if !args.quality_keep_audio {
        // About 2 MB per phone per run: a full run would leave a quarter of a gigabyte.
        for job in &jobs {
            for key in ["ref", "deg"] {
                if let Some(path) = job[key].as_str() {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
    let frame = (speech::RATE / 50) as usize;
    let seconds = conversation.seconds() + TAIL.as_secs_f64();
    let mut phones = Vec::new();
    let mut removed_db = None;
    let mut control_db = None;
    for (i, (phone, answer)) in raw.phones.iter().zip(answers).enumerate() {
        let kbps = phone.payload_bytes as f64 * 8.0 / seconds / 1000.0;
        let received_pct = 100.0 * phone.arrivals.len() as f64 / phone.expected_frames.max(1.0);
        if let Some(error) = answer.get("error").and_then(Value::as_str) {
            phones.push(Scored {
                role: phone.role.clone(),
                pesq: None,
                latency_ms: None,
                kbps,
                received_pct,
                error: Some(error.to_owned()),
            });
            continue;
        }
        let lag = answer["lag"].as_i64().context("lag in the scorer's answer")?;
        let pesq = answer["pesq"].as_f64();
        // Recording frame j holds ideal samples from j·frame − lag. Where talker t speaks
        // there, they left t's phone in its packet of frame (j·frame − lag − shift_t)/frame,
        // sent at start + t's phase + that × 20 ms. Frames nobody heard speaks in are left
        // out: they carry no sample to time.
        let mut latencies: Vec<f64> = phone
            .arrivals
            .iter()
            .enumerate()
            .filter_map(|(j, arrived)| {
                let ideal = usize::try_from((j * frame) as i64 - lag).ok()?;
                let t = conversation.speaker_at(ideal, |t| phone.hears[t], &shifts)?;
                let packet = (ideal - shifts[t].min(ideal)) / frame;
                let sent = raw.start + send_phase(t) + Duration::from_millis(20 * packet as u64);
                Some(signed_ms(*arrived, sent))
            })
            .collect();
        let latency_ms = median(std::mem::take(&mut latencies));
        if raw.deaf.is_some_and(|(l, _)| l == i) {
            let removed = raw.deaf.map_or(0, |d| d.1);
            let lag = lag + shifts[removed] as i64;
            removed_db = Some(removed_level(conversation, removed, &phone.pcm, lag));
        } else if raw.deaf.is_some() && i == talkers {
            let removed = raw.deaf.map_or(0, |d| d.1);
            let lag = lag + shifts[removed] as i64;
            control_db = Some(removed_level(conversation, removed, &phone.pcm, lag));
        }
        phones.push(Scored {
            role: phone.role.clone(),
            pesq,
            latency_ms,
            kbps,
            received_pct,
            error: None,
        });
    }
    Ok(RunScore {
        target: raw.target,
        settings: String::new(),
        condition: raw.condition,
        phones,
        removed_db,
        control_db,
        cpu_cores: raw.cpu_cores,
        uplink_loss: raw.uplink_loss,
    })
}

/// How much of `talker`'s speech is in the listener's output over that talker's solo
/// spans, dB relative to the speech: the median 20 ms block energy of the output against
/// the median of the talker's own, over the blocks where the talker is voiced, so a click
/// or a few ms of noise that happens to fall there does not count as the talker's speech
/// while a real leak (present all along) does. Each span loses [`SOLO_MARGIN`] at both
/// ends, against a recording that slipped a few frames.
fn removed_level(conversation: &Conversation, talker: usize, heard: &[i16], lag: i64) -> f64 {
    let rate = speech::RATE as usize;
    let margin = (SOLO_MARGIN.as_secs_f64() * rate as f64) as usize;
    let block = rate / 50;
    let track = &conversation.tracks[talker];
    let energy = |samples: &mut dyn Iterator<Item = i16>| -> f64 {
        samples.map(|x| f64::from(x).powi(2)).sum::<f64>() / block as f64
    };
    let (mut spoken, mut leaked) = (Vec::new(), Vec::new());
    for (start, end) in conversation.solo(talker) {
        let mut n = start + margin;
        while n + block <= end.saturating_sub(margin) {
            let said = energy(&mut track[n..n + block].iter().copied());
            // Voiced: above −40 dBFS (RMS 330); the lines are normalised to about −24.
            if said > 330.0 * 330.0 {
                let from = n as i64 + lag;
                let got = energy(&mut (from..from + block as i64).map(|m| {
                    usize::try_from(m).ok().and_then(|m| heard.get(m)).copied().unwrap_or(0)
                }));
                spoken.push(said);
                leaked.push(got);
            }
            n += block;
        }
    }
    match (median(spoken), median(leaked)) {
        (Some(said), Some(got)) if said > 0.0 => 10.0 * (got.max(1e-3) / said).log10(),
        _ => f64::NAN,
    }
}

fn run_scorer(python: &Path, script: &Path, jobs: &Value) -> anyhow::Result<Vec<Value>> {
    use std::io::Write as _;
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} {}", python.display(), script.display()))?;
    child.stdin.take().context("scorer stdin")?.write_all(jobs.to_string().as_bytes())?;
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!("the PESQ scorer failed: {}", output.status);
    }
    let answers: Vec<Value> =
        serde_json::from_slice(&output.stdout).context("reading the PESQ scorer's answer")?;
    Ok(answers)
}

fn glitch_run(
    runtime: &tokio::runtime::Runtime,
    args: &BenchArgs,
    mut bridge: Box<dyn Target>,
    target: TargetKind,
) -> anyhow::Result<GlitchScore> {
    let result = (|| -> anyhow::Result<_> {
        let _guard = runtime.enter();
        let rate = 48_000;
        let sockets: Vec<tokio::net::UdpSocket> = runtime.block_on(async {
            let mut v = Vec::new();
            for _ in 0..3 {
                v.push(tokio::net::UdpSocket::bind("127.0.0.1:0").await?);
            }
            anyhow::Ok(v)
        })?;
        let mut remotes = Vec::new();
        for socket in &sockets {
            remotes.push(bridge.join(socket.local_addr()?)?.1);
        }
        let codec = CodecParams::new(CodecKind::Opus);
        let sources = [tone_bursts(rate), steady_tone(rate), quiet_noise(NOISE_SEED)];
        let mut phones = Vec::new();
        for ((socket, remote), source) in sockets.into_iter().zip(remotes).zip(sources) {
            let mut config = PhoneConfig::new(codec, rate, source);
            config.settings.bitrate = 64_000;
            phones.push(Phone::start_on(socket, config, remote)?);
        }
        std::thread::sleep(Duration::from_secs_f64(args.quality_glitch_secs));
        let heard = phones[0].recording();
        for phone in &phones {
            phone.stop();
        }
        let bridge_ticks = bridge.metrics().ok().flatten();
        let skip = (rate as f64 * GLITCH_SETTLE_SECS) as usize;
        if heard.len() < skip + rate as usize {
            bail!("A heard only {} samples", heard.len());
        }
        let m = ToneResidual::measure(&heard[skip..], rate, f64::from(TONE_HZ), WINDOW);
        let (at, worst) = m.worst().context("no windows")?;
        // Where it failed, and what A's phone saw, so a failing run can be told apart
        // from a machine that could not keep time.
        let over: Vec<String> = m
            .windows_above(-20.0)
            .iter()
            .take(40)
            .map(|(s, db)| format!("{:.3}:{db:.0}", s + GLITCH_SETTLE_SECS))
            .collect();
        eprintln!(
            "{} glitch: A's phone {:?}; bridge ticks late/total {}; windows above -20 dB \
             (s:dB): {}",
            target.name(),
            phones[0].stats(),
            bridge_ticks.map_or("–".to_owned(), |t| format!("{}/{}", t.late_ticks, t.ticks)),
            over.join(" ")
        );
        Ok(GlitchScore {
            target,
            median_db: m.median_db(),
            worst_db: worst,
            worst_at: at + GLITCH_SETTLE_SECS,
            above_20: m.count_above(-20.0),
            windows: m.windows_db.len(),
            level_db: 20.0
                * (m.amplitude / f64::from(mixminus::quality::sources::AMPLITUDE)).log10(),
        })
    })();
    let stopped = bridge.stop();
    let score = result?;
    stopped.context("stopping the bridge")?;
    Ok(score)
}

/// `tag` as a file name: letters, digits, `+`, `.` and `-` kept, anything else a `-`.
pub(crate) fn file_stem(tag: &str) -> String {
    tag.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "+.-".contains(c) { c } else { '-' })
        .collect()
}

/// `later − earlier` in ms, negative when `later` is the earlier one.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1000.0,
        None => -(earlier.duration_since(later).as_secs_f64() * 1000.0),
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 0 { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] })
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "–".to_owned(), |x| format!("{x:.digits$}"))
}

/// The markdown tables.
fn summary(
    args: &BenchArgs,
    conversation: &Conversation,
    scores: &[RunScore],
    glitches: &[GlitchScore],
    load: f64,
) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Speech: {} espeak-ng talkers ({}), {} quiet listeners, {:.1} s; Opus 16 kHz phones; \
         uplinks impaired, downlinks clean. PESQ WB (1–4.64), median over every phone of \
         the run; latency = talker's packet sent → listener's packet received, median. \
         Machine load average during the run: {load:.1}; a phone that received under ~99 % \
         of its frames heard a bridge that could not keep time.\n",
        conversation.tracks.len(),
        conversation.voices.join(", "),
        args.quality_listeners,
        conversation.seconds()
    );
    let _ = writeln!(
        t,
        "| condition | bridge | settings | PESQ median | PESQ min | latency ms | listener kbit/s | \
         uplink loss | removed speech dB (heard: control) | bridge CPU % | frames received (min) |"
    );
    let _ = writeln!(t, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in scores {
        let min = s.phones.iter().filter_map(|p| p.pesq).fold(f64::INFINITY, f64::min);
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} % | {} | {} | {} % |",
            s.condition,
            s.target.name(),
            s.settings,
            fmt(s.median_pesq(), 2),
            fmt(min.is_finite().then_some(min), 2),
            fmt(s.median_latency(), 0),
            fmt(s.median_kbps(), 1),
            s.uplink_loss * 100.0,
            match (s.removed_db, s.control_db) {
                (Some(r), Some(c)) => format!("{r:.1} ({c:+.1})"),
                (r, _) => fmt(r, 1),
            },
            fmt(s.cpu_cores.map(|c| c * 100.0), 1),
            fmt(s.min_received(), 1),
        );
    }
    let errors: Vec<String> = scores
        .iter()
        .flat_map(|s| {
            s.phones.iter().filter_map(move |p| {
                p.error
                    .as_ref()
                    .map(|e| format!("{} {} {}: {e}", s.target.name(), s.condition, p.role))
            })
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(t, "\nNot scored: {}", errors.join("; "));
    }
    let mut labels: Vec<&str> = scores
        .iter()
        .filter(|s| s.target == TargetKind::Mixminus)
        .map(|s| s.settings.as_str())
        .collect();
    labels.dedup();
    if labels.len() > 1 {
        let _ = writeln!(
            t,
            "\nmixminus Opus settings (profile keys), per condition: PESQ WB median, the \
             listeners' received kbit/s (median), bridge CPU % of one core.\n"
        );
        let _ = writeln!(t, "| settings | condition | PESQ median | kbit/s | CPU % |");
        let _ = writeln!(t, "|---|---|---:|---:|---:|");
        let mut rows: Vec<&RunScore> =
            scores.iter().filter(|s| s.target == TargetKind::Mixminus).collect();
        rows.sort_by(|a, b| a.condition.cmp(b.condition).then(a.settings.cmp(&b.settings)));
        for s in rows {
            let _ = writeln!(
                t,
                "| {} | {} | {} | {} | {} |",
                s.settings,
                s.condition,
                fmt(s.median_pesq(), 2),
                fmt(s.median_kbps(), 1),
                fmt(s.cpu_cores.map(|c| c * 100.0), 1)
            );
        }
    }
    if !glitches.is_empty() {
        let _ = writeln!(
            t,
            "\nGlitch scenario (issue 10): what the bursting talker hears of the steady tone, \
             5 ms windows every 2.5 ms, {} s.\n",
            args.quality_glitch_secs
        );
        let _ = writeln!(
            t,
            "| bridge | tone level dB | median window dB | worst window dB (at s) | windows above −20 dB | windows |"
        );
        let _ = writeln!(t, "|---|---:|---:|---:|---:|---:|");
        for g in glitches {
            let _ = writeln!(
                t,
                "| {} | {:+.1} | {:.1} | {:.1} ({:.2}) | {} | {} |",
                g.target.name(),
                g.level_db,
                g.median_db,
                g.worst_db,
                g.worst_at,
                g.above_20,
                g.windows
            );
        }
    }
    t
}

fn write_csv(path: &Path, scores: &[RunScore]) -> anyhow::Result<()> {
    let mut text = String::from(
        "condition,bridge,settings,phone,pesq,latency_ms,kbps,received_pct,removed_talker_db,\
         cpu_cores,uplink_loss\n",
    );
    for s in scores {
        for p in &s.phones {
            // The removed talker's level at the deaf listener, and at listener 0 (control).
            let removed = if p.role.contains("deaf") {
                fmt(s.removed_db, 1)
            } else if p.role == "listener 0" {
                fmt(s.control_db, 1)
            } else {
                String::new()
            };
            let _ = writeln!(
                text,
                "{},{},{},{},{},{},{:.2},{:.1},{},{},{:.4}",
                s.condition,
                s.target.name(),
                s.settings,
                p.role,
                p.pesq.map_or(String::new(), |x| format!("{x:.3}")),
                p.latency_ms.map_or(String::new(), |x| format!("{x:.1}")),
                p.kbps,
                p.received_pct,
                removed.replace('–', ""),
                s.cpu_cores.map_or(String::new(), |x| format!("{x:.4}")),
                s.uplink_loss
            );
        }
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

fn plot(path: &Path, scores: &[RunScore], conditions: &[Condition]) -> anyhow::Result<()> {
    use plotters::prelude::*;

    let root = SVGBackend::new(path, (1040, 560)).into_drawing_area();
    let draw = |e: &dyn std::fmt::Display| anyhow::anyhow!("plotting: {e}");
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let n = conditions.len().max(1);
    let names: Vec<&'static str> = conditions.iter().map(|c| c.name).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Speech quality by uplink condition (PESQ WB, median over phones)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(60)
        .y_label_area_size(56)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 1.0f64..4.64)
        .map_err(|e| draw(&e))?;
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                names.get(i as usize).copied().unwrap_or("").to_owned()
            } else {
                String::new()
            }
        })
        .y_desc("PESQ WB")
        .draw()
        .map_err(|e| draw(&e))?;
    let palette = [RGBColor(200, 40, 30), RGBColor(30, 80, 200)];
    for (k, target) in [TargetKind::Mixminus, TargetKind::Janus].into_iter().enumerate() {
        let color = palette[k];
        let xy: Vec<(f64, f64)> = conditions
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                scores
                    .iter()
                    .find(|s| s.target == target && s.condition == c.name)
                    .and_then(RunScore::median_pesq)
                    .map(|p| (i as f64, p))
            })
            .collect();
        if xy.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))
            .map_err(|e| draw(&e))?
            .label(target.name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(xy.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| draw(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| draw(&e))?;
    root.present().map_err(|e| draw(&e))?;
    Ok(())
}
