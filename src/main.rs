//! The `mixminus` binary: the standalone bridge (`serve`), its demo (`demo`) and the
//! benchmark harness (`bench`).

mod bench;
mod demo;
mod serve;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mixminus_control::config::PortRange;

/// mixminus: an audio conference bridge with a per-pair relationship matrix.
#[derive(Debug, Parser)]
#[command(name = "mixminus", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the standalone RTP conference bridge with its Kazoo-shaped HTTP API.
    Serve(ServeArgs),
    /// Starts a bridge in-process, joins four synthetic RTP participants each saying a
    /// tone, relates them through the HTTP API and checks what each one hears.
    Demo(DemoArgs),
    /// Measures a bridge under N RTP participants (mixminus, Janus AudioBridge, or both):
    /// CPU per participant, output packets, late frames, latency; sweeps N and plots.
    Bench(Box<bench::BenchArgs>),
}

/// `mixminus serve`: flags override the configuration file.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// TOML configuration file (see the README).
    #[arg(long)]
    config: Option<PathBuf>,
    /// HTTP API address [default: 127.0.0.1:8000].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address the RTP sockets bind to [default: 127.0.0.1].
    #[arg(long)]
    rtp_bind: Option<IpAddr>,
    /// RTP port range, LO-HI [default: 20000-29999].
    #[arg(long)]
    rtp_ports: Option<PortRange>,
    /// RFC 8285 extension id (1-14) on which participants send the RFC 6464 audio level;
    /// frames it marks as silence are not decoded.
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=14))]
    audio_level_ext: Option<u8>,
    /// Decode quiet (not talking) participants only every N-th frame (1-50; 1 = every
    /// frame) [default: the config file's, else 1].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=50))]
    quiet_decode_interval: Option<u32>,
    /// Answer SIP calls on this address (UDP and TCP), e.g. 127.0.0.1:5060 [default: the
    /// config file's `[sip] listen`, else off].
    #[arg(long)]
    sip: Option<SocketAddr>,
    /// Join a fleet through this NATS server (`nats://host:port`, JetStream on); see
    /// docs/FLEET.md [default: the config's `[fleet] nats`, else no fleet].
    #[arg(long)]
    nats: Option<String>,
    /// This server's node name: `node` in every response, and its name in the fleet
    /// [default: the config's `node`].
    #[arg(long)]
    node: Option<String>,
}

/// `mixminus demo`.
#[derive(Debug, clap::Args)]
struct DemoArgs {
    /// RTP port range the demo's bridge uses.
    #[arg(long, default_value = "31000-31999")]
    rtp_ports: PortRange,
    /// How long each step listens before measuring, ms.
    #[arg(long, default_value_t = 1200)]
    settle_ms: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Bench(args) => bench::run(*args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mixminus: {e:#}");
            ExitCode::FAILURE
        }
    }
}
