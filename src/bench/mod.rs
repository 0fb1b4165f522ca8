//! `mixminus bench`: N RTP participants over loopback against a conference bridge —
//! mixminus (a `mixminus serve` it starts, or one at a URL) and Janus AudioBridge — and what
//! each bridge costs: CPU per participant, memory, output packets against expected, late
//! and missing frames, tick timing and encodes per tick (mixminus), end-to-end latency.
//!
//! Every point is a fresh bridge process: start it, create the conference, join N
//! participants, set R random relationships (mixminus only), send for a warm-up, then
//! measure for `--duration` seconds and stop. Over a list of N, for each mode and target,
//! the sweep writes `bench.csv`, plots CPU against participants (`bench.svg`) and prints
//! participants per core for each target and their ratio.

mod generator;
mod janus;
mod media;
mod mixminus;
pub(crate) mod procstat;
mod quality;
mod report;
mod speech;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use std::sync::Arc;

use anyhow::{bail, Context};
use mixminus_rtp::webrtc_client::{WebRtcClientConfig, WebRtcToneClient};

use generator::{Generator, SendOptions, Sockets, Window};
use media::Payloads;
use procstat::CpuSample;
pub(crate) use report::RunResult;

/// `mixminus bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Bridges to measure, comma-separated: mixminus, janus.
    #[arg(long, value_delimiter = ',', default_value = "mixminus,janus")]
    targets: Vec<TargetKind>,
    /// Participant counts to sweep, comma-separated.
    #[arg(long, short = 'n', value_delimiter = ',', default_value = "50,100,200")]
    participants: Vec<usize>,
    /// Participants that talk (a tone each, far above the talk threshold); the rest send
    /// quiet noise.
    #[arg(long, default_value_t = 3)]
    talkers: usize,
    /// How listeners send, comma-separated: `plain` (every packet a normal Opus frame),
    /// `audio-level` (plus the RFC 6464 audio-level extension, as WebRTC sends it), `dtx`
    /// (Opus DTX: quiet participants send a frame every 400 ms).
    #[arg(long, value_delimiter = ',', default_value = "audio-level,plain")]
    modes: Vec<Mode>,
    /// Random relationships set through the API before measuring (mixminus only).
    #[arg(long, default_value_t = 0)]
    relationships: usize,
    /// Measured seconds per point.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of traffic before measuring.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// RMS of the quiet participants' noise, −dBov (75 = −75 dBov, a muted room with
    /// noise suppression; 70 or more is what RFC 6464 readers treat as silence).
    #[arg(long, default_value_t = 75)]
    quiet_dbov: u8,
    /// Redraw bench.svg and the table from this bench.csv (written by an earlier run)
    /// into --out, without measuring anything.
    #[arg(long)]
    from_csv: Option<PathBuf>,
    /// Directory for bench.csv, bench.svg and the bridges' logs.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// The mixminus binary to start (default: this one).
    #[arg(long)]
    mixminus_bin: Option<PathBuf>,
    /// Measure the mixminus bridge at this URL instead of starting one (`--targets
    /// mixminus`; needs --mixminus-token; --mixminus-pid to measure its CPU; for the
    /// audio-level mode start it with `serve --audio-level-ext 1`).
    #[arg(long)]
    mixminus_url: Option<String>,
    /// API token of the bridge at --mixminus-url (default: $MIXMINUS_AUTH_TOKEN).
    #[arg(long)]
    mixminus_token: Option<String>,
    /// Process id of the bridge at --mixminus-url.
    #[arg(long)]
    mixminus_pid: Option<u32>,
    /// HTTP port of the mixminus bridge the harness starts.
    #[arg(long, default_value_t = 18000)]
    mixminus_http_port: u16,
    /// RTP ports of the mixminus bridge the harness starts.
    #[arg(long, default_value = "20000-29999")]
    mixminus_rtp_ports: String,
    /// `--quiet-decode-interval` of the mixminus bridge the harness starts (1 = decode every
    /// frame, the bridge's default).
    #[arg(long, default_value_t = 1)]
    mixminus_quiet_decode_interval: u32,
    /// The janus binary.
    #[arg(long, default_value = "janus")]
    janus_bin: PathBuf,
    /// Janus's library directory (plugins/, transports/, …).
    #[arg(long, default_value = "/usr/lib/x86_64-linux-gnu/janus")]
    janus_lib_dir: PathBuf,
    /// HTTP port of the Janus the harness starts.
    #[arg(long, default_value_t = 18088)]
    janus_http_port: u16,
    /// Skip Janus at participant counts above this (0 = no limit): past its capacity
    /// it only shows that it is overloaded, and joining costs it O(N²) events.
    #[arg(long, default_value_t = 0)]
    janus_max_participants: usize,
    /// Janus AudioBridge plain-RTP port range.
    #[arg(long, default_value = "40000-49999")]
    janus_rtp_ports: String,
    /// Ports the generator's participants bind, LO-HI.
    #[arg(long, default_value = "50000-59999")]
    generator_ports: String,
    /// Measure sound quality instead of load: scripted espeak-ng speech through each
    /// bridge under each network condition, scored with PESQ wideband, plus the glitch
    /// scenario; writes quality.md, quality.csv and quality.svg into --out.
    #[arg(long)]
    quality: bool,
    /// Talkers in the conversation (1-4).
    #[arg(long, default_value_t = 3)]
    quality_talkers: usize,
    /// Lines of the script spoken (0 = all eight, about 33 s).
    #[arg(long, default_value_t = 0)]
    quality_lines: usize,
    /// Quiet participants besides the talkers.
    #[arg(long, default_value_t = 2)]
    quality_listeners: usize,
    /// Uplink conditions to run, comma-separated (default: all of clean, loss-5, loss-10,
    /// loss-20, burst-5, burst-10, burst-20, jitter-40, jitter-100, reorder-10,
    /// loss-5+jitter-40).
    #[arg(long, value_delimiter = ',')]
    quality_conditions: Vec<String>,
    /// Keep every phone's recording and ideal mix (WAV, 16 kHz) in --out/quality-work.
    #[arg(long)]
    quality_keep_audio: bool,
    /// Seconds of the glitch scenario per bridge (0 = skip it).
    #[arg(long, default_value_t = 20.0)]
    quality_glitch_secs: f64,
    /// mixminus conferences' Opus bit rates to sweep (profile key `opus-bitrate`, bit/s),
    /// comma-separated; with --opus-complexity the quality bench runs mixminus at every
    /// pair and adds a bitrate x complexity table.
    #[arg(long, value_delimiter = ',')]
    opus_bitrate: Vec<u32>,
    /// mixminus conferences' Opus complexities to sweep (`opus-complexity`, 0-10).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(0..=10))]
    opus_complexity: Vec<u8>,
    /// mixminus conferences' Opus in-band FEC (`opus-fec`).
    #[arg(long)]
    opus_fec: Option<bool>,
    /// mixminus conferences' Opus DTX (`opus-dtx`).
    #[arg(long)]
    opus_dtx: Option<bool>,
    /// mixminus conferences' expected loss for Opus FEC, % (`opus-loss-percent`).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    opus_loss_percent: Option<u8>,
    /// mixminus conferences' playout delay cap, ms (`jitter-max-delay-ms`, 20..=1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(20..=1000))]
    jitter_max_delay_ms: Option<u32>,
    /// The Python that has numpy and pesq (scripts/install-bench-deps.sh).
    #[arg(long, default_value = "python3")]
    python: PathBuf,
    /// Measure what a WebRTC participant costs the bridge next to an RTP one, instead of
    /// the sweep: for each N of --participants (mixminus, the first --modes), three fresh
    /// bridges: N RTP participants; N + W RTP; N RTP + W WebRTC (str0m clients in this
    /// process: WHIP, ICE, DTLS, then the quiet loop's pre-encoded Opus over SRTP). Writes
    /// webrtc.md into --out.
    #[arg(long, default_value_t = 0)]
    webrtc: usize,
}

/// A bridge under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum TargetKind {
    /// mixminus.
    Mixminus,
    /// Janus AudioBridge.
    Janus,
}

impl TargetKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            TargetKind::Mixminus => "mixminus",
            TargetKind::Janus => "janus",
        }
    }
}

/// How listeners send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub(crate) enum Mode {
    /// Plain Opus RTP, every frame sent.
    Plain,
    /// Plus the RFC 6464 audio-level extension (id 1).
    AudioLevel,
    /// Opus DTX, no extension.
    Dtx,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::AudioLevel => "audio-level",
            Mode::Dtx => "dtx",
        }
    }
}

/// What the harness needs from a bridge.
pub(crate) trait Target {
    /// The process to measure.
    fn pid(&self) -> Option<u32>;
    /// Joins a participant that sends from and listens on `local`; returns its id and the
    /// address to send its RTP to.
    fn join(&mut self, local: SocketAddr) -> anyhow::Result<(u64, SocketAddr)>;
    /// Sets one relationship record.
    fn relate(&mut self, participant: u64, other: u64, relationship: &str) -> anyhow::Result<()>;
    /// Whether [`relate`](Self::relate) exists.
    fn supports_relationships(&self) -> bool;
    /// The bridge's own counters, where it has them.
    fn metrics(&mut self) -> anyhow::Result<Option<BridgeMetrics>>;
    /// Joins a WebRTC participant through WHIP: its SDP offer in, the answer out.
    fn whip(&mut self, offer: &str) -> anyhow::Result<String> {
        let _ = offer;
        bail!("this bridge takes no WHIP participants")
    }
    /// Ends the conference and the process (if the harness started it).
    fn stop(&mut self) -> anyhow::Result<()>;
}

/// mixminus's Prometheus counters that the bench reads.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BridgeMetrics {
    ticks: f64,
    late_ticks: f64,
    encodes: f64,
    decodes: f64,
    tick_seconds_sum: f64,
    tick_seconds_count: f64,
    tick_p99_seconds: f64,
    tick_max_seconds: f64,
}

impl BridgeMetrics {
    /// Reads the counters out of Prometheus text (missing ones stay 0).
    pub(crate) fn parse(text: &str) -> Self {
        let mut m = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((key, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.trim().parse::<f64>() else { continue };
            let (name, labels) = key.split_once('{').unwrap_or((key, ""));
            match name {
                "mixminus_ticks_total" => m.ticks += value,
                "mixminus_late_ticks_total" => m.late_ticks += value,
                "mixminus_encodes_total" => m.encodes += value,
                "mixminus_decodes_total" => m.decodes += value,
                "mixminus_tick_duration_seconds_sum" => m.tick_seconds_sum += value,
                "mixminus_tick_duration_seconds_count" => m.tick_seconds_count += value,
                "mixminus_tick_duration_seconds" if labels.contains("quantile=\"0.99\"") => {
                    m.tick_p99_seconds = m.tick_p99_seconds.max(value)
                }
                "mixminus_tick_duration_seconds" if labels.contains("quantile=\"1\"") => {
                    m.tick_max_seconds = m.tick_max_seconds.max(value)
                }
                _ => {}
            }
        }
        m
    }
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    if let Some(csv) = &args.from_csv {
        let results = report::read_csv(csv)?;
        let talkers = results.first().map_or(args.talkers, |r| r.talkers);
        write_outputs(&args, &results, talkers)?;
        return Ok(ExitCode::SUCCESS);
    }
    let plan = Plan::new(&args)?;
    if args.quality {
        let mut bridges = QualityBridges { args: &args, plan: &plan };
        return quality::run(&args, &mut bridges);
    }
    if args.webrtc > 0 {
        return webrtc_cost(&args, &plan);
    }
    let total = plan.points.len();
    eprintln!(
        "mixminus bench: {total} runs ({} s warm-up + {} s measured each), {} talkers, \
         results in {}",
        args.warmup,
        args.duration,
        args.talkers,
        args.out.display()
    );
    let mut results = Vec::new();
    let started = Instant::now();
    for (i, &(mode, n, target)) in plan.points.iter().enumerate() {
        let tag = format!("[{}/{total}] {} {} N={n}", i + 1, target.name(), mode.name());
        eprintln!("{tag}: starting (elapsed {:.0} s)", started.elapsed().as_secs_f64());
        match run_point(&args, &plan, target, mode, n, &tag) {
            Ok(result) => {
                eprintln!("{tag}: {}", result.one_line());
                results.push(result);
            }
            Err(e) => eprintln!("{tag}: FAILED: {e:#}"),
        }
        report::write_csv(&args.out.join("bench.csv"), &results)?;
    }
    if results.is_empty() {
        bail!("no run succeeded");
    }
    write_outputs(&args, &results, args.talkers)?;
    Ok(if results.len() == total { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The plot, the printed table and summary.md.
fn write_outputs(args: &BenchArgs, results: &[RunResult], talkers: usize) -> anyhow::Result<()> {
    report::plot(&args.out.join("bench.svg"), results, talkers)?;
    let table = report::summary(results);
    println!("{table}");
    std::fs::write(args.out.join("summary.md"), &table)?;
    eprintln!(
        "wrote {} and {}",
        args.out.join("bench.svg").display(),
        args.out.join("summary.md").display()
    );
    Ok(())
}

/// The validated sweep: (mode, N, target) in the order they run. Targets alternate at each
/// N so both see the same machine conditions.
struct Plan {
    points: Vec<(Mode, usize, TargetKind)>,
    generator_ports: (u16, u16),
    mixminus_bin: PathBuf,
}

impl Plan {
    fn new(args: &BenchArgs) -> anyhow::Result<Self> {
        if args.participants.is_empty() || args.participants.contains(&0) {
            bail!("--participants needs counts above 0");
        }
        if args.talkers == 0 || args.participants.iter().any(|&n| n < args.talkers) {
            bail!("--talkers must be at least 1 and at most every participant count");
        }
        if !(args.duration >= 1.0 && args.warmup >= 0.5) {
            bail!("--duration must be at least 1 s and --warmup at least 0.5 s");
        }
        if args.mixminus_url.is_some() && token(args).is_none() {
            bail!("--mixminus-url needs --mixminus-token (or MIXMINUS_AUTH_TOKEN)");
        }
        let generator_ports = parse_range(&args.generator_ports)?;
        let largest = args.participants.iter().max().copied().unwrap_or(0);
        if usize::from(generator_ports.1 - generator_ports.0) / 2 < largest {
            bail!("--generator-ports needs a port pair per participant: {largest} pairs");
        }
        let mut targets = args.targets.clone();
        targets.sort();
        targets.dedup();
        let mut modes = args.modes.clone();
        modes.dedup();
        let mut participants = args.participants.clone();
        participants.sort_unstable();
        participants.dedup();
        let mut points = Vec::new();
        for &mode in &modes {
            for &n in &participants {
                for &target in &targets {
                    let skip = target == TargetKind::Janus
                        && args.janus_max_participants > 0
                        && n > args.janus_max_participants;
                    if !skip {
                        points.push((mode, n, target));
                    }
                }
            }
        }
        let mixminus_bin = match &args.mixminus_bin {
            Some(bin) => bin.clone(),
            None => std::env::current_exe().context("locating this binary")?,
        };
        Ok(Self { points, generator_ports, mixminus_bin })
    }
}

/// The token for --mixminus-url: the flag, else the environment.
fn token(args: &BenchArgs) -> Option<String> {
    args.mixminus_token.clone().or_else(|| std::env::var("MIXMINUS_AUTH_TOKEN").ok())
}

fn parse_range(text: &str) -> anyhow::Result<(u16, u16)> {
    let (lo, hi) = text.split_once('-').context("a port range is LO-HI")?;
    let (lo, hi): (u16, u16) = (lo.trim().parse()?, hi.trim().parse()?);
    if lo == 0 || lo > hi {
        bail!("port range {text}: need 0 < LO <= HI");
    }
    Ok((lo, hi))
}

/// Starts the bridges the quality bench runs against, as the load sweep does (plain mode).
struct QualityBridges<'a> {
    args: &'a BenchArgs,
    plan: &'a Plan,
}

impl quality::Bridges for QualityBridges<'_> {
    fn start(
        &mut self,
        kind: TargetKind,
        profile: &serde_json::Map<String, serde_json::Value>,
        tag: &str,
    ) -> anyhow::Result<Box<dyn Target>> {
        let stem = quality::file_stem(tag);
        start_target(self.args, self.plan, kind, Mode::Plain, &stem, profile.clone())
    }
}

/// Starts (or attaches to) one bridge; its log goes to `--out/<log_stem>.log`.
fn start_target(
    args: &BenchArgs,
    plan: &Plan,
    kind: TargetKind,
    mode: Mode,
    log_stem: &str,
    profile: serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<Box<dyn Target>> {
    let log = args.out.join(format!("{log_stem}.log"));
    Ok(match kind {
        TargetKind::Mixminus => {
            let launch = match &args.mixminus_url {
                Some(url) => mixminus::Launch::Attach {
                    url: url.clone(),
                    token: token(args).unwrap_or_default(),
                    pid: args.mixminus_pid,
                },
                None => mixminus::Launch::Spawn {
                    bin: &plan.mixminus_bin,
                    http_port: args.mixminus_http_port,
                    rtp_ports: &args.mixminus_rtp_ports,
                    audio_level_ext: (mode == Mode::AudioLevel).then_some(media::AUDIO_LEVEL_EXT),
                    quiet_decode_interval: args.mixminus_quiet_decode_interval,
                    log: &log,
                },
            };
            Box::new(mixminus::Mixminus::start(launch, profile)?)
        }
        TargetKind::Janus => Box::new(janus::Janus::start(janus::JanusSetup {
            bin: &args.janus_bin,
            lib_dir: &args.janus_lib_dir,
            http_port: args.janus_http_port,
            rtp_ports: &args.janus_rtp_ports,
            audio_level: mode == Mode::AudioLevel,
            log: &log,
        })?),
    })
}

fn run_point(
    args: &BenchArgs,
    plan: &Plan,
    kind: TargetKind,
    mode: Mode,
    n: usize,
    tag: &str,
) -> anyhow::Result<RunResult> {
    let payloads = Payloads::encode(args.talkers, args.quiet_dbov, mode == Mode::Dtx)?;
    let stem = format!("{}-{}-{n}", kind.name(), mode.name());
    let mut target = start_target(args, plan, kind, mode, &stem, serde_json::Map::new())?;
    let outcome = measure(args, plan, target.as_mut(), kind, mode, (n, 0), payloads, tag);
    let stopped = target.stop();
    let result = outcome?;
    stopped.context("stopping the bridge")?;
    Ok(result)
}

#[allow(clippy::too_many_arguments)] // one call site; a struct would only rename these
fn measure(
    args: &BenchArgs,
    plan: &Plan,
    target: &mut dyn Target,
    kind: TargetKind,
    mode: Mode,
    (n, webrtc): (usize, usize),
    payloads: Payloads,
    tag: &str,
) -> anyhow::Result<RunResult> {
    // The WebRTC participants say the quiet loop, as the RTP listeners do.
    let quiet: mixminus_rtp::webrtc_client::OpusLoop =
        Arc::new(payloads.quiet.iter().map(|f| (f.payload.clone(), f.level)).collect());
    let sockets = Sockets::bind(n, plan.generator_ports.0, plan.generator_ports.1)?;
    let locals = sockets.addrs()?;
    let mut ids = Vec::with_capacity(n);
    let mut remotes = Vec::with_capacity(n);
    let mut last_progress = Instant::now();
    let joining = Instant::now();
    for (i, local) in locals.iter().enumerate() {
        let (id, remote) =
            target.join(*local).with_context(|| format!("joining participant {i}"))?;
        ids.push(id);
        remotes.push(remote);
        if last_progress.elapsed() > Duration::from_secs(5) {
            eprintln!("{tag}: joined {}/{n}", i + 1);
            last_progress = Instant::now();
        }
    }
    // Their own runtime in this process (one thread): each client a task with its `Rtc`.
    let clients_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("bench-webrtc")
        .enable_all()
        .build()?;
    let mut clients = Vec::with_capacity(webrtc);
    for i in 0..webrtc {
        let mut config = WebRtcClientConfig::new(None);
        config.frames = Some(quiet.clone());
        config.decode = false;
        let bind: SocketAddr = "127.0.0.1:0".parse()?;
        let (pending, offer) = clients_runtime.block_on(WebRtcToneClient::offer(config, bind))?;
        let answer = target.whip(&offer).with_context(|| format!("WHIP for client {i}"))?;
        let _entered = clients_runtime.enter();
        clients.push(pending.start(&answer)?);
    }
    let connecting = Instant::now() + Duration::from_secs(20);
    while clients.iter().any(|c| !c.is_connected()) {
        if Instant::now() > connecting {
            let up = clients.iter().filter(|c| c.is_connected()).count();
            bail!("{up} of {webrtc} WebRTC clients connected within 20 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let join_seconds = joining.elapsed().as_secs_f64();
    let mut related = 0;
    if args.relationships > 0 && target.supports_relationships() && n >= 2 {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |m: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % m as u64) as usize
        };
        while related < args.relationships {
            let (p, o) = (next(n), next(n));
            if p == o {
                continue;
            }
            let word = if next(2) == 0 { "deaf" } else { "mute" };
            target.relate(ids[p], ids[o], word)?;
            related += 1;
        }
    }
    let start = Instant::now();
    let window = Window {
        start: start + Duration::from_secs_f64(args.warmup),
        end: start + Duration::from_secs_f64(args.warmup + args.duration),
    };
    let options = SendOptions { audio_level: mode == Mode::AudioLevel };
    let generator = Generator::start(sockets, remotes, payloads, options, window)?;
    let sleep_until = |t: Instant| std::thread::sleep(t.saturating_duration_since(Instant::now()));
    sleep_until(window.start);
    let pid = target.pid();
    let cpu0 = pid.map(|p| CpuSample::read(Some(p))).transpose()?;
    let gen0 = CpuSample::read(None)?;
    let metrics0 = target.metrics()?;
    let load0 = procstat::load_average();
    let mut next_progress = window.start + Duration::from_secs(5);
    while Instant::now() < window.end {
        sleep_until(next_progress.min(window.end));
        if Instant::now() < window.end {
            eprintln!(
                "{tag}: measuring, {:.0}/{:.0} s",
                (Instant::now() - window.start).as_secs_f64(),
                args.duration
            );
        }
        next_progress += Duration::from_secs(5);
    }
    let cpu1 = pid.map(|p| CpuSample::read(Some(p))).transpose()?;
    let gen1 = CpuSample::read(None)?;
    let metrics1 = target.metrics()?;
    let rss = pid.map(procstat::rss_mib).transpose()?;
    // Let the last frames in flight arrive before stopping.
    std::thread::sleep(Duration::from_millis(200));
    let received = generator.stop()?;
    let webrtc_sent: u64 = clients.iter().map(|c| c.packets_sent()).sum();
    let webrtc_heard: u64 = clients.iter().map(|c| c.packets_received()).sum();
    if webrtc > 0 {
        eprintln!("{tag}: WebRTC clients sent {webrtc_sent} frames and heard {webrtc_heard}");
        if clients.iter().any(|c| c.packets_received() == 0 || c.is_closed()) {
            bail!("a WebRTC client heard nothing or was closed");
        }
    }
    drop(clients);
    clients_runtime.shutdown_background();
    let cores = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(a.cores_until(&b)),
        _ => None,
    };
    let load = (load0 + procstat::load_average()) / 2.0;
    Ok(RunResult::new(report::RunInput {
        target: kind,
        mode,
        participants: n,
        talkers: args.talkers,
        relationships: related,
        duration: args.duration,
        join_seconds,
        cores,
        generator_cores: gen0.cores_until(&gen1),
        rss,
        metrics: metrics0.zip(metrics1),
        received,
        load,
    }))
}

/// `--webrtc W`: per N, the bridge's CPU with N RTP participants, with N + W RTP, and with
/// N RTP + W WebRTC, each a fresh bridge; the marginal cost of one more RTP participant and
/// of one more WebRTC participant, measured in the same run.
fn webrtc_cost(args: &BenchArgs, plan: &Plan) -> anyhow::Result<ExitCode> {
    let w = args.webrtc;
    let mode = args.modes.first().copied().unwrap_or(Mode::AudioLevel);
    let kind = TargetKind::Mixminus;
    let mut table = format!(
        "Bridge CPU (% of one core), mode {}, {} talkers, {} s measured per point; W = {w}\n\n\
         | N | N RTP | N + W RTP | N RTP + W WebRTC | one more RTP | one more WebRTC | \
         WebRTC / RTP | late ticks | load average |\n|---|---|---|---|---|---|---|---|---|\n",
        mode.name(),
        args.talkers,
        args.duration
    );
    let mut participants = args.participants.clone();
    participants.sort_unstable();
    participants.dedup();
    for &n in &participants {
        let mut cpu = Vec::new();
        let mut late = 0.0;
        let mut load = 0.0;
        for (rtp, webrtc, name) in [(n, 0, "rtp"), (n + w, 0, "rtp+w"), (n, w, "webrtc+w")] {
            let tag = format!("webrtc-cost N={n} {name}");
            eprintln!("{tag}: starting");
            let payloads = Payloads::encode(args.talkers, args.quiet_dbov, mode == Mode::Dtx)?;
            let stem = format!("webrtc-cost-{n}-{name}");
            let mut target = start_target(args, plan, kind, mode, &stem, serde_json::Map::new())?;
            let outcome =
                measure(args, plan, target.as_mut(), kind, mode, (rtp, webrtc), payloads, &tag);
            let stopped = target.stop();
            let result = outcome?;
            stopped.context("stopping the bridge")?;
            eprintln!("{tag}: {}", result.one_line());
            cpu.push(result.cpu_cores * 100.0);
            late += result.late_ticks();
            load += result.load / 3.0;
        }
        let more_rtp = (cpu[1] - cpu[0]) / w as f64;
        let more_webrtc = (cpu[2] - cpu[0]) / w as f64;
        table.push_str(&format!(
            "| {n} | {:.1} | {:.1} | {:.1} | {more_rtp:.3} | {more_webrtc:.3} | {:.1}× | {late:.0} | {load:.2} |\n",
            cpu[0],
            cpu[1],
            cpu[2],
            more_webrtc / more_rtp.max(1e-9),
        ));
    }
    println!("{table}");
    std::fs::write(args.out.join("webrtc.md"), &table)?;
    eprintln!("wrote {}", args.out.join("webrtc.md").display());
    Ok(ExitCode::SUCCESS)
}

/// Polls `probe` every `poll` until it succeeds, failing if the bridge process it started
/// (`child`, when it started one) exits first or `patience` runs out.
fn wait_until_answering(
    mut child: Option<&mut Child>,
    what: &str,
    patience: Duration,
    poll: Duration,
    mut probe: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(child) = child.as_deref_mut() {
            if let Some(status) = child.try_wait()? {
                bail!("{what} exited at start ({status}); see its log");
            }
        }
        if probe() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} did not answer within {} s", patience.as_secs());
        }
        std::thread::sleep(poll);
    }
}

/// Sends SIGTERM (graceful shutdown) and waits; SIGKILL after `grace`.
fn terminate(child: &mut Child, grace: Duration) -> anyhow::Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prometheus_text() {
        let text = "# TYPE mixminus_ticks_total counter\nmixminus_ticks_total 500\n\
            mixminus_late_ticks_total 2\nmixminus_encodes_total 2000\n\
            mixminus_tick_duration_seconds{quantile=\"0.99\"} 0.0004\n\
            mixminus_tick_duration_seconds{quantile=\"1\"} 0.0009\n\
            mixminus_tick_duration_seconds_sum 0.05\nmixminus_tick_duration_seconds_count 500\n";
        let m = BridgeMetrics::parse(text);
        assert_eq!((m.ticks, m.late_ticks, m.encodes), (500.0, 2.0, 2000.0));
        assert_eq!((m.tick_p99_seconds, m.tick_max_seconds), (0.0004, 0.0009));
        assert_eq!(m.tick_seconds_count, 500.0);
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_range("50000-50010").unwrap(), (50000, 50010));
        assert!(parse_range("5-1").is_err());
        assert!(parse_range("x").is_err());
    }
}
