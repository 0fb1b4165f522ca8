//! `mixminus serve`: configuration, logs, metrics, the HTTP API and graceful shutdown.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use std::sync::Arc;

use mixminus_control::fleet::Cluster;
use mixminus_control::{Api, Auth, Config, Registry};
use mixminus_fleet::{Credentials, Nats, NatsConfig};
use mixminus_rtp::{Bridge, BridgeConfig};
use mixminus_sip::{SipConfig, SipServer};

use crate::bench::procstat::CpuSample;

use crate::ServeArgs;

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(bind) = args.rtp_bind {
        config.rtp_bind = bind;
    }
    if let Some(ports) = args.rtp_ports {
        config.rtp_ports = ports;
    }
    if let Some(nats) = args.nats {
        config.fleet.nats = Some(nats);
    }
    if let Some(node) = args.node {
        config.node = node;
    }
    config.validate()?;
    let mut sip: SipConfig = match config.sip.clone() {
        Some(table) => toml::Value::Table(table).try_into().context("config [sip]")?,
        None => SipConfig::default(),
    };
    if let Some(addr) = args.sip {
        sip.listen = Some(addr);
    }
    sip.validate()?;
    init_logs(&config);

    let auth = Auth::new(&config.tokens).with_env();
    if auth.is_open() {
        if !config.listen.ip().is_loopback() {
            bail!(
                "no API token configured (config `[[tokens]]` or MIXMINUS_AUTH_TOKEN): \
                 refusing to listen on {} without one; listen on loopback or add a token",
                config.listen
            );
        }
        tracing::warn!("no API token configured: the API is open to anyone on this machine");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    if let Some(n) = args.quiet_decode_interval {
        config.quiet_decode_interval = n;
    }
    runtime.block_on(serve(config, sip, auth, args.audio_level_ext))?;
    Ok(ExitCode::SUCCESS)
}

fn init_logs(config: &Config) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.logging.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // The filter is the log's only: the SIP layer counts ezk's malformed-message warnings
    // whatever is logged.
    let log = tracing_subscriber::fmt::layer().with_ansi(config.logging.ansi).with_filter(filter);
    tracing_subscriber::registry().with(log).with(mixminus_sip::ezk_warnings()).init();
}

async fn serve(
    config: Config,
    sip: SipConfig,
    auth: Auth,
    audio_level_ext: Option<u8>,
) -> anyhow::Result<()> {
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the Prometheus recorder")?;
    let mut bridge_config = BridgeConfig::default();
    bridge_config.rtp_bind = config.rtp_bind;
    bridge_config.rtp_ports = (config.rtp_ports.low, config.rtp_ports.high);
    bridge_config.audio_level_ext = audio_level_ext;
    bridge_config.strict_source = config.strict_source;
    bridge_config.quiet_decode_interval = config.quiet_decode_interval;
    // Conferences never tick on the threads that serve HTTP.
    bridge_config.media_threads = config.media_threads.max(1);
    bridge_config.remote_allow = config.remote_allow.clone();
    bridge_config.remote_deny = config.remote_deny.clone();
    bridge_config.inactivity_timeout = (config.inactivity_timeout_secs > 0)
        .then(|| Duration::from_secs(config.inactivity_timeout_secs));
    bridge_config.rtcp_interval = Duration::from_millis(config.rtcp_interval_ms);
    let bridge = Bridge::new(bridge_config).context("setting up the RTP port range")?;
    let registry = Registry::with_quotas(bridge, config.max_conferences, config.quotas);
    // Off unless `--sip` or `[sip] listen` names an address.
    let _sip = match sip.listen {
        Some(_) => Some(SipServer::start(registry.clone(), sip).await.context("starting SIP")?),
        None => None,
    };
    let cluster = match &config.fleet.nats {
        Some(url) => {
            Some(Cluster::new(Arc::new(join_fleet(&config, url).await?), registry.clone()))
        }
        None => None,
    };
    let mut api = Api::new(registry.clone(), auth)
        .node(config.node.clone())
        .body_limit(config.max_body_bytes)
        .cors_origins(config.cors_origins.clone())
        .media(mixminus_control::media::MediaSettings {
            media: config.media.clone(),
            recordings: config.recordings.clone(),
        })
        .metrics(metrics);
    if let Some(cluster) = &cluster {
        api = api.cluster(cluster.clone());
    }
    let app = api.router();
    if let Some(cluster) = &cluster {
        let mut last = CpuSample::read(None).ok();
        let cpu = move || {
            let now = CpuSample::read(None).ok();
            let cores = last.zip(now).map_or(0.0, |(a, b)| a.cores_until(&b));
            last = now;
            cores
        };
        cluster.start(app.clone(), cpu).await.context("starting the fleet")?;
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %config.listen, rtp_bind = %config.rtp_bind,
        rtp_ports = %config.rtp_ports, "mixminus serving");

    let stopping = registry.clone();
    let shutdown = async move {
        shutdown_signal().await;
        if let Some(cluster) = &cluster {
            // Our conferences keep their records: the other nodes take them over.
            cluster.stop();
        }
        tracing::info!("shutting down: ending every conference");
        // Ending the conferences sends every participant an RTCP BYE and closes the event
        // streams, so the server can drain (for at most `HttpLimits::drain`).
        stopping.stop_all().await;
    };
    mixminus_control::server::serve(listener, app, config.http_limits(), shutdown).await;
    registry.stop_all().await;
    tracing::info!("stopped");
    Ok(())
}

/// Connects to the fleet's NATS server as this node (refused if a live node has its name).
async fn join_fleet(config: &Config, url: &str) -> anyhow::Result<Nats> {
    let fleet = &config.fleet;
    let mut nats = NatsConfig::new(url, config.node.clone());
    nats.cluster = fleet.cluster.clone();
    nats.liveness = Duration::from_secs(fleet.liveness_secs);
    nats.credentials = match (&fleet.user, &fleet.password, &fleet.token) {
        (Some(user), Some(password), _) => {
            Credentials::UserPassword { user: user.clone(), password: password.expose().into() }
        }
        (_, _, Some(token)) => Credentials::Token(token.expose().into()),
        _ => {
            // Unauthenticated fleet messages are acceptable only where no one else can
            // send any: a NATS server on this machine.
            let host = url.split("://").last().unwrap_or(url).rsplit_once(':').map_or(url, |h| h.0);
            let local = ["127.0.0.1", "localhost", "[::1]"].contains(&host);
            if !local {
                bail!(
                    "no NATS credentials ([fleet] user and password, or token): refusing to \
                     join a fleet at {url} unauthenticated"
                );
            }
            tracing::warn!("no NATS credentials: fleet messages are not authenticated");
            Credentials::None
        }
    };
    let node = Nats::connect(nats).await.with_context(|| format!("joining the fleet at {url}"))?;
    tracing::info!(node = %config.node, nats = %url, liveness_secs = fleet.liveness_secs,
        "joined the fleet");
    Ok(node)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
