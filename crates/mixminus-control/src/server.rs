//! Serving the API over HTTP/1.1 with the limits a public endpoint needs (hyper directly,
//! since `axum::serve` sets none of them): a stranger who opens connections and sends
//! nothing, or sends a byte a minute, cannot hold the server's descriptors or its
//! attention.
//!
//! - **Header read timeout** ([`HttpLimits::header_timeout`]): a request's head must arrive
//!   in full within it. hyper starts this timer whenever it waits for a head, so it is also
//!   the **idle keep-alive timeout**: an idle connection closes after it.
//! - **Body read timeout** ([`HttpLimits::body_timeout`]): a body that trickles in slower is
//!   cut off (`tower_http`'s `RequestBodyTimeoutLayer`), and the request fails.
//! - **Connection limits**: at most [`HttpLimits::max_connections`] at once, and at most
//!   [`HttpLimits::max_connections_per_ip`] from one address, so one client (or one
//!   attacker) cannot take every slot. A connection over either limit is answered at once
//!   with `503` and a Kazoo error envelope saying why, and closed; the accept loop keeps
//!   running, so the refusal costs a descriptor for microseconds.
//! - **Out of descriptors** (`EMFILE`/`ENFILE` on accept): logged once a second at most, and
//!   the loop backs off 50 ms rather than spin.
//! - **Bounded graceful shutdown**: when `shutdown` resolves, the listener closes, idle
//!   connections close at once, requests in flight get [`HttpLimits::drain`] to finish, and
//!   whatever is left is dropped.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// Limits of the HTTP server.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HttpLimits {
    /// Time for a request's head to arrive, and for an idle keep-alive connection to send
    /// its next one.
    pub header_timeout: Duration,
    /// Time for a request's body to arrive.
    pub body_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one IP address.
    pub max_connections_per_ip: usize,
    /// Time requests in flight get to finish after shutdown begins.
    pub drain: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            max_connections: 4_096,
            max_connections_per_ip: 256,
            drain: Duration::from_secs(5),
        }
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` resolves, then drains
/// (bounded by `limits.drain`). Returns when every connection has closed or been dropped.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let router = router.layer(RequestBodyTimeoutLayer::new(limits.body_timeout));
    let slots = Slots::new(limits);
    let (closing_tx, closing) = watch::channel(false);
    let mut last_emfile_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of descriptors: say so (not too often), and let some close.
                    if last_emfile_log.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                        tracing::warn!(%error, "HTTP accept failed");
                        last_emfile_log = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let slot = match slots.take(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                refuse(&stream, why);
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        let mut closing = closing.clone();
        let drain = limits.drain;
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = async { let _ = closing.wait_for(|c| *c).await; } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(drain, connection).await;
                }
            }
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Connections close at once when idle, within `drain` otherwise.
    let deadline = tokio::time::Instant::now() + limits.drain + Duration::from_millis(100);
    while slots.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Answers a connection over a limit with 503 and closes it. Never waits: a client that
/// does not read its refusal just loses it.
fn refuse(stream: &TcpStream, why: &str) {
    let body = format!(
        "{{\"data\":{{\"message\":\"{why}\"}},\"error\":\"503\",\"message\":\"{why}\",\"status\":\"error\"}}"
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
    metrics::counter!("mixminus_http_connections_refused_total").increment(1);
}

/// Open connections, in total and per address.
#[derive(Clone)]
struct Slots {
    inner: Arc<Mutex<SlotCounts>>,
    limits: HttpLimits,
}

#[derive(Default)]
struct SlotCounts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One open connection; gives its slot back on drop.
struct Slot {
    slots: Slots,
    ip: IpAddr,
}

impl Slots {
    fn new(limits: HttpLimits) -> Self {
        Self { inner: Arc::default(), limits }
    }

    fn take(&self, ip: IpAddr) -> Result<Slot, &'static str> {
        let mut counts = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if counts.total >= self.limits.max_connections {
            return Err("too many connections: max_connections reached, retry later");
        }
        let mine = counts.per_ip.entry(ip).or_default();
        if *mine >= self.limits.max_connections_per_ip {
            return Err("too many connections from this address: max_connections_per_ip reached");
        }
        *mine += 1;
        counts.total += 1;
        Ok(Slot { slots: self.clone(), ip })
    }

    fn open(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.inner.lock().unwrap_or_else(|p| p.into_inner());
        counts.total -= 1;
        if let Some(n) = counts.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}
