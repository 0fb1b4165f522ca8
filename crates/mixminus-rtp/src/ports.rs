//! The RTP port range shared by every conference of a bridge.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use crate::RuntimeError;

/// Hands out even RTP ports (RTCP on the odd port above) from a configured range, at random.
///
/// A pair is taken by binding both sockets; one that cannot be bound (another process has
/// it) is skipped. Pairs come back when their [`PortPair`] is dropped, so a participant
/// that leaves, however it leaves, releases its ports. Each take starts its scan at a random
/// pair, so a stranger cannot guess the next participant's port from the last one.
#[derive(Debug, Clone)]
pub(crate) struct PortPool {
    inner: Arc<Mutex<PoolState>>,
}

#[derive(Debug)]
struct PoolState {
    bind: IpAddr,
    range: PairRange,
    in_use: BTreeSet<u16>,
    rng: rand::rngs::SmallRng,
}

/// The even/odd pairs of an inclusive port range, numbered `0..len()`; arithmetic in `u32`
/// so a range ending at 65535 cannot wrap (it did: `port + 3` overflowed `u16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PairRange {
    first: u32,
    pairs: u32,
}

impl PairRange {
    /// The pairs of `low..=high`: `None` when there is none above port 0.
    pub(crate) fn new(low: u16, high: u16) -> Option<Self> {
        let first = u32::from(low.max(2)).next_multiple_of(2);
        let high = u32::from(high);
        // A pair needs its odd port inside the range too.
        let pairs = if high > first { (high - first).div_ceil(2) } else { 0 };
        (pairs > 0).then_some(Self { first, pairs })
    }

    /// Number of pairs.
    pub(crate) fn len(self) -> u32 {
        self.pairs
    }

    /// The RTP (even) port of pair `index`, `index < len()`.
    pub(crate) fn port(self, index: u32) -> u16 {
        // first + 2·(pairs − 1) + 1 <= high <= 65535 by construction.
        (self.first + 2 * (index % self.pairs)) as u16
    }
}

/// A bound RTP/RTCP socket pair; the ports return to the pool on drop.
#[derive(Debug)]
pub(crate) struct PortPair {
    pub(crate) rtp: Arc<tokio::net::UdpSocket>,
    pub(crate) rtcp: Arc<tokio::net::UdpSocket>,
    port: u16,
    pool: PortPool,
}

impl PortPool {
    pub(crate) fn new(bind: IpAddr, low: u16, high: u16) -> Result<Self, RuntimeError> {
        let range = PairRange::new(low, high).ok_or(RuntimeError::InvalidConfig(
            "rtp_ports needs at least one even/odd pair above 0",
        ))?;
        Ok(Self {
            inner: Arc::new(Mutex::new(PoolState {
                bind,
                range,
                in_use: BTreeSet::new(),
                rng: rand::SeedableRng::from_os_rng(),
            })),
        })
    }

    /// Binds a free pair, scanning the range once from a random pair. Must run inside a tokio
    /// runtime. Running out of descriptors is reported as such, not as a full range.
    pub(crate) fn take(&self) -> Result<PortPair, RuntimeError> {
        let mut state = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let range = state.range;
        let start = rand::Rng::random_range(&mut state.rng, 0..range.len());
        for k in 0..range.len() {
            let port = range.port(start.wrapping_add(k));
            if state.in_use.contains(&port) {
                continue;
            }
            let rtp = match bind(state.bind, port)? {
                Some(socket) => socket,
                None => continue,
            };
            let Some(rtcp) = bind(state.bind, port + 1)? else { continue };
            let (rtp, rtcp) = (into_tokio(rtp)?, into_tokio(rtcp)?);
            state.in_use.insert(port);
            return Ok(PortPair { rtp, rtcp, port, pool: self.clone() });
        }
        Err(RuntimeError::NoFreePorts)
    }

    pub(crate) fn in_use(&self) -> usize {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).in_use.len()
    }

    /// The address the pool binds.
    pub(crate) fn bind_address(&self) -> IpAddr {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).bind
    }
}

impl PortPair {
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortPair {
    fn drop(&mut self) {
        let mut state = self.pool.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.in_use.remove(&self.port);
    }
}

/// Binds one port: `Ok(None)` when it is taken (skip it), an error when the process is out
/// of descriptors or memory (no other port would do better).
fn bind(ip: IpAddr, port: u16) -> Result<Option<UdpSocket>, RuntimeError> {
    match UdpSocket::bind(SocketAddr::new(ip, port)) {
        Ok(socket) => Ok(Some(socket)),
        Err(e) if is_resource_exhaustion(&e) => Err(RuntimeError::Io(e)),
        Err(_) => Ok(None),
    }
}

/// EMFILE, ENFILE, ENOBUFS, ENOMEM: the process or the system is out of something.
pub(crate) fn is_resource_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12))
}

fn into_tokio(socket: UdpSocket) -> Result<Arc<tokio::net::UdpSocket>, RuntimeError> {
    socket.set_nonblocking(true)?;
    Ok(Arc::new(tokio::net::UdpSocket::from_std(socket)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every pair lies inside the range (odd port included), is even, and the pairs are
        /// distinct; ranges ending at 65535 included.
        #[test]
        fn pairs_stay_inside_the_range(low in 0u16..=65535, width in 0u16..=400, top in proptest::bool::ANY) {
            let (low, high) = if top { (65535 - width, 65535) } else { (low, low.saturating_add(width)) };
            match PairRange::new(low, high) {
                None => prop_assert!(u32::from(high) < u32::from(low.max(2)).next_multiple_of(2) + 1),
                Some(range) => {
                    let mut seen = BTreeSet::new();
                    for i in 0..range.len() {
                        let port = range.port(i);
                        prop_assert!(port % 2 == 0 && port >= low && port > 0);
                        prop_assert!(u32::from(port) < u32::from(high));
                        prop_assert!(seen.insert(port));
                    }
                    // Indices wrap inside the range, never past 65535.
                    prop_assert_eq!(range.port(range.len()), range.port(0));
                    prop_assert_eq!(range.port(u32::MAX), range.port(u32::MAX % range.len()));
                }
            }
        }
    }

    #[test]
    fn the_top_of_the_port_space() {
        assert_eq!(PairRange::new(65530, 65535).map(PairRange::len), Some(3));
        assert_eq!(PairRange::new(65534, 65535).map(|r| r.port(0)), Some(65534));
        assert_eq!(PairRange::new(65535, 65535), None);
        assert_eq!(PairRange::new(0, 1), None);
        assert_eq!(PairRange::new(0, 3).map(|r| (r.len(), r.port(0))), Some((1, 2)));
    }

    /// With `65530-65535` exactly three pairs are handed out, all inside the range, and the
    /// fourth take fails (main handed out an ephemeral port and then RTCP port 1).
    #[tokio::test]
    async fn a_range_ending_at_65535_never_wraps() {
        let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), 65530, 65535).unwrap();
        let mut taken = Vec::new();
        while let Ok(pair) = pool.take() {
            taken.push(pair);
            assert!(taken.len() <= 3, "more pairs than the range holds");
        }
        let mut ports: Vec<u16> = taken.iter().map(PortPair::port).collect();
        ports.sort_unstable();
        assert_eq!(ports, [65530, 65532, 65534]);
        for pair in &taken {
            assert_eq!(pair.rtcp.local_addr().unwrap().port(), pair.port() + 1);
        }
        drop(taken);
        assert_eq!(pool.in_use(), 0);
    }

    /// Successive takes do not walk the range in order.
    #[tokio::test]
    async fn ports_are_handed_out_at_random() {
        let pool = PortPool::new(IpAddr::from([127, 0, 0, 1]), 16_400, 16_599).unwrap();
        let pairs: Vec<PortPair> = (0..8).map(|_| pool.take().unwrap()).collect();
        let ports: Vec<u16> = pairs.iter().map(PortPair::port).collect();
        let sequential = ports.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(sequential < 4, "ports handed out in order: {ports:?}");
    }
}
