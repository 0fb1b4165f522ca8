//! The SIP endpoint: ezk's transports and transactions, the dialog and INVITE layers, and
//! ours in front of them (rate limits, OPTIONS, the calls).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytesstr::BytesStr;
use ezk_sip_core::{Endpoint, IncomingRequest, Layer, MayTake};
use ezk_sip_types::{Method, Name, StatusCode};
use ezk_sip_ua::dialog::DialogLayer;
use ezk_sip_ua::invite::InviteLayer;
use mixminus_control::registry::ConferenceEntry;
use mixminus_control::Registry;

use crate::auth::DigestAuth;
use crate::call::{self, Refusal};
use crate::config::SipConfig;
use crate::limit::RateLimiter;

/// Why the SIP front could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SipError {
    /// The configuration has no `listen` address.
    #[error("sip: no listen address")]
    NoListen,
    /// A value is out of range.
    #[error(transparent)]
    Config(#[from] crate::config::SipConfigError),
    /// Binding the UDP or TCP socket failed.
    #[error("sip: binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running SIP front. Dropping it does not stop it; calls run until they end.
#[derive(Debug, Clone)]
pub struct SipServer {
    local: SocketAddr,
}

impl SipServer {
    /// Binds `config.listen` (UDP, and TCP when configured) and starts answering calls into
    /// `registry`'s conferences. Must run inside a tokio runtime.
    pub async fn start(registry: Registry, config: SipConfig) -> Result<Self, SipError> {
        config.validate()?;
        let addr = config.listen.ok_or(SipError::NoListen)?;
        let mut builder = Endpoint::builder();
        builder.user_agent(concat!("mixminus/", env!("CARGO_PKG_VERSION")));
        builder.add_layer(DialogLayer::default());
        builder.add_layer(InviteLayer::default());
        let tcp = config.tcp;
        let limiter = RateLimiter::new(config.invites_per_second, config.invite_burst);
        let auth = (!config.auth_users.is_empty()).then(|| {
            DigestAuth::new(
                &config.auth_realm,
                config.auth_users.clone(),
                Duration::from_secs(config.auth_nonce_secs),
                config.auth_sha256,
            )
        });
        let shared_max_bytes = config.max_message_bytes;
        let shared = Arc::new(Shared { registry, auth, config, limiter: Mutex::new(limiter) });
        builder.add_layer(CallLayer(shared));
        let addr = if tcp && addr.port() == 0 { port_free_for_both(addr) } else { addr };
        let max_bytes = shared_max_bytes;
        let bind_error = |source| SipError::Bind { addr, source };
        let (udp, local) = match crate::udp::bind(addr).await {
            Ok(udp) => {
                let local = udp.bound();
                (Some(udp), local)
            }
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => {
                return Err(bind_error(error))
            }
            Err(error) => {
                tracing::warn!(%error, "SIP over UDP: ezk's own receive path, malformed not counted");
                crate::udp::fell_back();
                (None, ezk_bind_udp(&mut builder, addr).await.map_err(bind_error)?)
            }
        };
        if tcp {
            // The same port as UDP, so a port of 0 resolves to one address for both.
            builder
                .listen_tcp(local)
                .await
                .map_err(|source| SipError::Bind { addr: local, source })?;
        }
        // The transports' tasks hold the endpoint from here on.
        let endpoint = builder.build();
        if let Some(udp) = udp {
            crate::udp::spawn(endpoint, udp, max_bytes);
        }
        tracing::info!(%local, tcp, "SIP listening");
        Ok(Self { local })
    }

    /// The address SIP listens on (UDP, and TCP when on).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

/// ezk's own UDP transport on `addr`, retried while the socket [`crate::udp::bind`] gave
/// up is still held by ezk's idle task (it ends at its next poll).
async fn ezk_bind_udp(
    builder: &mut ezk_sip_core::EndpointBuilder,
    addr: SocketAddr,
) -> std::io::Result<SocketAddr> {
    let mut tries = 0;
    loop {
        match builder.bind_udp(addr).await {
            Ok(udp) => return Ok(udp.bound()),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse && tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// With port 0, UDP and TCP must still share one port: an ephemeral UDP port may be taken
/// for TCP by another socket, so try a few until one is free for both (else `addr` as is).
fn port_free_for_both(addr: SocketAddr) -> SocketAddr {
    for _ in 0..20 {
        let Ok(udp) = std::net::UdpSocket::bind(addr) else { break };
        let Ok(candidate) = udp.local_addr() else { break };
        if std::net::TcpListener::bind(candidate).is_ok() {
            return candidate;
        }
    }
    addr
}

/// What every call shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) registry: Registry,
    /// Digest authentication of callers, when configured.
    pub(crate) auth: Option<DigestAuth>,
    pub(crate) config: SipConfig,
    limiter: Mutex<RateLimiter>,
}

impl Shared {
    /// The conferences a call may reach.
    pub(crate) fn conferences(&self) -> Vec<Arc<ConferenceEntry>> {
        let all = self.registry.all();
        if self.config.accounts.is_empty() {
            return all;
        }
        all.into_iter()
            .filter(|e| self.config.accounts.iter().any(|a| a == e.account_id()))
            .collect()
    }
}

struct CallLayer(Arc<Shared>);

#[async_trait::async_trait]
impl Layer for CallLayer {
    fn name(&self) -> &'static str {
        "mixminus-calls"
    }

    fn init(&mut self, builder: &mut ezk_sip_core::EndpointBuilder) {
        builder.add_allow(Method::OPTIONS);
        builder.add_allow(Method::INFO);
    }

    async fn receive(&self, endpoint: &Endpoint, request: MayTake<'_, IncomingRequest>) {
        // In-dialog requests the dialog layer did not take belong to no call we know.
        if request.base_headers.to.tag.is_some() {
            return;
        }
        match request.line.method {
            Method::INVITE => {
                let source = request.tp_info.source.ip();
                let admitted = self
                    .0
                    .limiter
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .admit(source, Instant::now());
                let invite = request.take();
                if !admitted {
                    // Dropped unanswered: answering a flood would amplify it.
                    metrics::counter!("mixminus_sip_invites_dropped_total", "reason" => "rate")
                        .increment(1);
                    return;
                }
                metrics::counter!("mixminus_sip_invites_total").increment(1);
                tokio::spawn(call::run(self.0.clone(), endpoint.clone(), invite));
            }
            Method::OPTIONS => {
                let mut options = request.take();
                let mut response = endpoint.create_response(&options, StatusCode::OK, None);
                response.msg.headers.insert(Name::ACCEPT, BytesStr::from_static("application/sdp"));
                for allow in endpoint.allowed() {
                    response.msg.headers.insert_named(allow);
                }
                let _ = endpoint.create_server_tsx(&mut options).respond(response).await;
            }
            Method::ACK | Method::CANCEL | Method::BYE => {
                // Left to the endpoint (481 for BYE; CANCEL/ACK the INVITE layer matched).
            }
            _ => {
                let request = request.take();
                call::refuse(endpoint, request, Refusal(405, "Method Not Allowed")).await;
            }
        }
    }
}
