//! `mixminus serve`: configuration, logs, metrics, the HTTP API and graceful shutdown.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use mixminus_control::{Api, Auth, Config, Registry};
use mixminus_rtp::{Bridge, BridgeConfig};
use mixminus_sip::{SipConfig, SipServer};

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
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.logging.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(config.logging.ansi).init();
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
    let app = Api::new(registry.clone(), auth)
        .node(config.node.clone())
        .body_limit(config.max_body_bytes)
        .cors_origins(config.cors_origins.clone())
        .media(mixminus_control::media::MediaSettings {
            media: config.media.clone(),
            recordings: config.recordings.clone(),
        })
        .metrics(metrics)
        .router();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    tracing::info!(listen = %config.listen, rtp_bind = %config.rtp_bind,
        rtp_ports = %config.rtp_ports, "mixminus serving");

    let stopping = registry.clone();
    let shutdown = async move {
        shutdown_signal().await;
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
