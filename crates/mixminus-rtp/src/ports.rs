//! The RTP port range shared by every conference of a bridge.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

use crate::RuntimeError;

/// Hands out even RTP ports (RTCP on the odd port above) from a configured range.
///
/// A pair is taken by binding both sockets; one that cannot be bound (another process has
/// it) is skipped. Pairs come back when their [`PortPair`] is dropped, so a participant
/// that leaves, however it leaves, releases its ports.
#[derive(Debug, Clone)]
pub(crate) struct PortPool {
    inner: Arc<Mutex<PoolState>>,
}

#[derive(Debug)]
struct PoolState {
    bind: IpAddr,
    low: u16,
    high: u16,
    next: u16,
    in_use: BTreeSet<u16>,
}

/// A bound RTP/RTCP socket pair; the ports return to the pool on drop.
#[derive(Debug)]
pub(crate) struct PortPair {
    pub(crate) rtp: tokio::net::UdpSocket,
    pub(crate) rtcp: tokio::net::UdpSocket,
    port: u16,
    pool: PortPool,
}

impl PortPool {
    pub(crate) fn new(bind: IpAddr, low: u16, high: u16) -> Result<Self, RuntimeError> {
        let low = low + low % 2;
        if low == 0 || high <= low {
            return Err(RuntimeError::InvalidConfig(
                "rtp_ports needs at least one even/odd pair above 0",
            ));
        }
        Ok(Self {
            inner: Arc::new(Mutex::new(PoolState {
                bind,
                low,
                high,
                next: low,
                in_use: BTreeSet::new(),
            })),
        })
    }

    /// Binds the next free pair, scanning the range once. Must run inside a tokio runtime.
    pub(crate) fn take(&self) -> Result<PortPair, RuntimeError> {
        let mut state = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let pairs = (state.high - state.low).div_ceil(2) as usize;
        for _ in 0..pairs {
            let port = state.next;
            state.next = if port + 3 > state.high { state.low } else { port + 2 };
            if state.in_use.contains(&port) {
                continue;
            }
            let Ok(rtp) = UdpSocket::bind(SocketAddr::new(state.bind, port)) else { continue };
            let Ok(rtcp) = UdpSocket::bind(SocketAddr::new(state.bind, port + 1)) else { continue };
            let (rtp, rtcp) = (into_tokio(rtp)?, into_tokio(rtcp)?);
            state.in_use.insert(port);
            return Ok(PortPair { rtp, rtcp, port, pool: self.clone() });
        }
        Err(RuntimeError::NoFreePorts)
    }

    pub(crate) fn in_use(&self) -> usize {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).in_use.len()
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

fn into_tokio(socket: UdpSocket) -> Result<tokio::net::UdpSocket, RuntimeError> {
    socket.set_nonblocking(true)?;
    Ok(tokio::net::UdpSocket::from_std(socket)?)
}
