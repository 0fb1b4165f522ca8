//! The receive path: one reader task per socket reads datagrams **as they arrive**, stamps
//! each with its arrival time, charges it to its source's budget and hands
//! `(arrival time, source, datagram)` to the conference task, which feeds the leg
//! ([`Leg::handle_input`](crate::leg::Leg::handle_input)) at once, between ticks.
//!
//! Why a reader per socket: a flood on one port is drained by that port's reader alone, so
//! it can neither fill the kernel queue ahead of the peer's packets (they are read within
//! microseconds of arriving, not once per tick) nor delay another leg. What a reader
//! forwards is bounded by [`SourceBudget`]: the peer's host has a budget of its own that
//! strangers cannot spend, each stranger a small one, and all strangers together one more.
//! Once a leg latches, its socket is `connect()`ed to the peer, and the kernel drops every
//! other source before it costs anything.

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use mixminus_core::ParticipantId;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

use crate::leg::MAX_DATAGRAM;
use crate::stats::DropReason;

/// Which of a leg's sockets a datagram came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Port {
    /// The RTP port (RTCP too, when multiplexed).
    Rtp,
    /// The RTCP port.
    Rtcp,
}

/// What a reader hands the conference task.
#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) leg: ParticipantId,
    pub(crate) port: Port,
    pub(crate) what: Received,
}

/// A datagram, or the kernel's word that the peer is unreachable.
#[derive(Debug)]
pub(crate) enum Received {
    /// `(arrival time, source, datagram)`.
    Datagram(Instant, SocketAddr, Bytes),
    /// ICMP port/host unreachable came back for what we sent to the connected peer.
    Unreachable,
}

/// Drop counters a reader keeps for its leg (it drops before the leg sees anything).
#[derive(Debug, Default)]
pub(crate) struct ReaderCounters {
    over_budget: AtomicU64,
    oversized: AtomicU64,
    socket_errors: AtomicU64,
}

impl ReaderCounters {
    /// Adds what the readers dropped to `dropped` (indexed like `DropReason::ALL`).
    pub(crate) fn add_to(&self, dropped: &mut [u64]) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        dropped[DropReason::OverBudget as usize] += load(&self.over_budget);
        dropped[DropReason::Oversized as usize] += load(&self.oversized);
        dropped[DropReason::SocketError as usize] += load(&self.socket_errors);
    }
}

/// The runtime's end of a leg's readers: dropping it stops them.
#[derive(Debug)]
pub(crate) struct ReaderLink {
    /// The host whose datagrams have the reserved budget (the named or latched peer).
    peer: watch::Sender<Option<IpAddr>>,
    pub(crate) counters: Arc<ReaderCounters>,
}

impl ReaderLink {
    /// Starts one reader per socket on the current runtime. `peer` is the host the join
    /// named, if any.
    pub(crate) fn start(
        leg: ParticipantId,
        sockets: [(Port, Arc<UdpSocket>); 2],
        peer: Option<IpAddr>,
        to_conference: &mpsc::Sender<Inbound>,
    ) -> Self {
        let (peer_tx, peer_rx) = watch::channel(peer);
        let counters = Arc::new(ReaderCounters::default());
        for (port, socket) in sockets {
            let reader = Reader {
                leg,
                port,
                socket,
                budget: SourceBudget::new(peer),
                peer: peer_rx.clone(),
                out: to_conference.clone(),
                counters: counters.clone(),
                arena: BytesMut::new(),
            };
            tokio::spawn(reader.run());
        }
        Self { peer: peer_tx, counters }
    }

    /// From now on `host` is the peer (the leg latched onto it).
    pub(crate) fn set_peer(&self, host: IpAddr) {
        self.peer.send_replace(Some(host));
    }
}

/// Datagrams a reader takes from its socket before letting other tasks run.
const DRAIN_BATCH: usize = 64;
/// The reader's receive arena: datagrams are split off it, so one allocation serves many.
const ARENA_BYTES: usize = 64 * 1024;

struct Reader {
    leg: ParticipantId,
    port: Port,
    socket: Arc<UdpSocket>,
    budget: SourceBudget,
    peer: watch::Receiver<Option<IpAddr>>,
    out: mpsc::Sender<Inbound>,
    counters: Arc<ReaderCounters>,
    arena: BytesMut,
}

impl Reader {
    async fn run(mut self) {
        loop {
            tokio::select! {
                changed = self.peer.changed() => {
                    // The leg is gone: stop, releasing the socket.
                    if changed.is_err() {
                        return;
                    }
                    let peer = *self.peer.borrow_and_update();
                    self.budget.set_peer(peer);
                }
                ready = self.socket.readable() => {
                    if ready.is_err() || !self.drain() {
                        return;
                    }
                    // Let the other readers and the tick run between batches.
                    tokio::task::yield_now().await;
                }
            }
        }
    }

    /// Reads up to a batch; false when the conference has gone.
    fn drain(&mut self) -> bool {
        for _ in 0..DRAIN_BATCH {
            if self.arena.capacity() - self.arena.len() <= MAX_DATAGRAM {
                self.arena.reserve(ARENA_BYTES);
            }
            let what = match self.socket.try_recv_buf_from(&mut self.arena) {
                Ok((len, from)) => {
                    let at = Instant::now();
                    let datagram = self.arena.split().freeze();
                    if len > MAX_DATAGRAM {
                        self.counters.oversized.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if !self.budget.admit(at, from) {
                        self.counters.over_budget.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Received::Datagram(at, from, datagram)
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if is_unreachable(&e) => Received::Unreachable,
                Err(_) => {
                    self.counters.socket_errors.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
            };
            match self.out.try_send(Inbound { leg: self.leg, port: self.port, what }) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.counters.over_budget.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    }
}

/// ICMP port or host unreachable, as a connected UDP socket reports it.
pub(crate) fn is_unreachable(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable
    )
}

/// Per-source budgets of one socket, sans-IO: token buckets refilled by the time passed in.
///
/// The peer's host (named at join, or latched) has a bucket of its own; every other source
/// gets a small bucket in a table of [`STRANGER_SLOTS`], and all of them share one more. A
/// stranger is charged its own bucket first, so one flooding source cannot spend what the
/// others (among them, before latching, the real peer) share.
#[derive(Debug)]
pub(crate) struct SourceBudget {
    peer: Option<IpAddr>,
    peer_bucket: Bucket,
    strangers: Bucket,
    slots: [(Option<SocketAddr>, Bucket); STRANGER_SLOTS],
}

/// Stranger sources tracked per socket; a new one replaces the one seen longest ago.
pub(crate) const STRANGER_SLOTS: usize = 8;
/// The peer's budget: ten times a 10 ms stream, RTCP included.
const PEER_RATE: (f64, f64) = (1_000.0, 200.0);
/// One stranger's budget: room for a peer's first packets before it latches.
const STRANGER_RATE: (f64, f64) = (100.0, 25.0);
/// All strangers of one socket together.
const STRANGERS_RATE: (f64, f64) = (400.0, 100.0);

impl SourceBudget {
    pub(crate) fn new(peer: Option<IpAddr>) -> Self {
        Self {
            peer,
            peer_bucket: Bucket::new(PEER_RATE),
            strangers: Bucket::new(STRANGERS_RATE),
            slots: [(None, Bucket::new(STRANGER_RATE)); STRANGER_SLOTS],
        }
    }

    pub(crate) fn set_peer(&mut self, peer: Option<IpAddr>) {
        self.peer = peer;
    }

    /// Whether a datagram from `from` arriving at `now` is within budget (and charges it).
    pub(crate) fn admit(&mut self, now: Instant, from: SocketAddr) -> bool {
        if self.peer == Some(from.ip()) {
            return self.peer_bucket.take(now);
        }
        let slot = match self.slots.iter().position(|(source, _)| *source == Some(from)) {
            Some(i) => i,
            None => {
                // A free slot, else the one refilled longest ago; a fresh bucket starts
                // full, so evicting never helps a flooder more than a new address does.
                let i = self
                    .slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (source, bucket))| (source.is_some(), bucket.last))
                    .map_or(0, |(i, _)| i);
                self.slots[i] = (Some(from), Bucket::new(STRANGER_RATE));
                i
            }
        };
        self.slots[slot].1.take(now) && self.strangers.take(now)
    }
}

/// A token bucket: `rate` tokens a second up to `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Option<Instant>,
}

impl Bucket {
    fn new((rate, burst): (f64, f64)) -> Self {
        Self { tokens: burst, rate, burst, last: None }
    }

    fn take(&mut self, now: Instant) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Simulated time: a peer at 50 pps and one stranger at 20,000 pps on the same socket.
    /// The peer loses nothing; the stranger gets its small budget.
    #[test]
    fn a_flooding_stranger_cannot_spend_the_peers_budget() {
        let peer = addr("10.0.0.1:4000");
        let mut budget = SourceBudget::new(Some(peer.ip()));
        let start = Instant::now();
        let (mut peer_in, mut junk_in) = (0, 0);
        for us in (0..2_000_000u64).step_by(50) {
            let now = start + Duration::from_micros(us);
            junk_in += u32::from(budget.admit(now, addr("10.0.0.9:1")));
            if us % 20_000 == 0 {
                peer_in += u32::from(budget.admit(now, peer));
            }
        }
        assert_eq!(peer_in, 100);
        assert!(junk_in <= 25 + 200 + 1, "{junk_in}");
    }

    /// Before latching (no peer known), one flooding stranger cannot starve another source:
    /// it spends its own bucket, not the strangers' shared one.
    #[test]
    fn one_flooder_leaves_room_for_the_first_real_packet() {
        let mut budget = SourceBudget::new(None);
        let start = Instant::now();
        let mut real = 0;
        for us in (0..1_000_000u64).step_by(50) {
            let now = start + Duration::from_micros(us);
            budget.admit(now, addr("10.0.0.9:1"));
            if us % 20_000 == 0 {
                real += u32::from(budget.admit(now, addr("10.0.0.1:4000")));
            }
        }
        assert_eq!(real, 50);
    }

    /// Many stranger addresses together are capped by the shared budget.
    #[test]
    fn many_strangers_share_one_budget() {
        let mut budget = SourceBudget::new(Some("10.0.0.1".parse().unwrap()));
        let start = Instant::now();
        let mut admitted = 0;
        for k in 0..20_000u64 {
            let now = start + Duration::from_micros(k * 50);
            let from = SocketAddr::from(([10, 1, (k % 200) as u8, 1], 5000));
            admitted += u32::from(budget.admit(now, from));
        }
        assert!(admitted <= 100 + 400 + 1, "{admitted}");
        assert!(budget.admit(start + Duration::from_secs(1), addr("10.0.0.1:9")));
    }
}
