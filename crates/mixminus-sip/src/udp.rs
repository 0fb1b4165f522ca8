//! The UDP receive path: ours, so that every datagram ezk would drop unseen is counted
//! (and answered `400` / `513` where it can be).
//!
//! Responses must leave from the port the client sent to, and ezk sends through a
//! [`TpHandle`] only it can make (`EndpointBuilder::bind_udp`). So ezk binds the public
//! socket, in a builder of its own that is never built: ezk's receive task for it waits for
//! that builder's endpoint and, the builder dropped, ends without reading a datagram (the
//! documented contract of `EndpointBuilder::subscribe`). The handle still sends from the
//! socket. We read the same socket through a duplicate of its descriptor, taken with
//! `pidfd_getfd(2)` on our own process (Linux ≥ 5.6; safe Rust through `rustix`, so the
//! crate keeps `forbid(unsafe_code)`), found by its type and local address. Each datagram
//! goes through [`crate::decide::frame`]: keep-alives answered, STUN and good SIP handed to
//! ezk (`Endpoint::receive_stun`, `Endpoint::receive` with the handle), the rest counted.
//!
//! Where the duplicate cannot be had (another OS, a seccomp policy that forbids the call),
//! [`bind`] says so and the server falls back to ezk's own receive path, uncounted.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use ezk_sip_core::transport::{ReceivedMessage, TpHandle};
use ezk_sip_core::{Endpoint, EndpointBuilder};
use tokio::net::UdpSocket;

use crate::decide::{frame, Datagram};

/// False once any SIP server in the process fell back to ezk's UDP receive path: then a
/// message without base headers that ezk drops may have come over UDP, not only TCP.
pub(crate) static UDP_CHECKED: AtomicBool = AtomicBool::new(true);

/// The public SIP socket twice: ezk's handle (sends) and our reader.
#[derive(Debug)]
pub(crate) struct Udp {
    handle: TpHandle,
    socket: Arc<UdpSocket>,
}

impl Udp {
    /// The bound address.
    pub(crate) fn bound(&self) -> SocketAddr {
        self.handle.bound()
    }
}

/// Binds `addr` for the receive path above; an error when the socket cannot be duplicated
/// (the socket is then closed once ezk's idle task has ended, shortly after).
pub(crate) async fn bind(addr: SocketAddr) -> io::Result<Udp> {
    let mut ezk = EndpointBuilder::new();
    let handle = ezk.bind_udp(addr).await?;
    // Never built: ezk's receive task for this socket ends without reading.
    drop(ezk);
    let socket = UdpSocket::from_std(duplicate(handle.bound())?)?;
    Ok(Udp { handle, socket: Arc::new(socket) })
}

/// Starts reading: datagrams go to `endpoint`, malformed ones are counted.
pub(crate) fn spawn(endpoint: Endpoint, udp: Udp, max_bytes: usize) {
    tokio::spawn(receive(endpoint, udp, max_bytes));
}

async fn receive(endpoint: Endpoint, udp: Udp, max_bytes: usize) {
    // One byte more than any UDP payload: nothing is ever cut short.
    let mut buffer = vec![0u8; 65_536];
    loop {
        let (len, source) = match udp.socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                // ICMP errors from earlier sends surface here; the socket is still good.
                tracing::debug!(%error, "SIP UDP receive");
                continue;
            }
        };
        let datagram = buffer.get(..len).unwrap_or_default();
        match frame(datagram, max_bytes) {
            Datagram::Ping => {
                let _ = udp.socket.send_to(b"\r\n", source).await;
            }
            Datagram::Pong => {}
            Datagram::Stun(message) => endpoint.receive_stun(message, source, udp.handle.clone()),
            Datagram::Sip(message) => {
                let m = *message;
                endpoint.receive(ReceivedMessage::new(
                    source,
                    m.buffer,
                    udp.handle.clone(),
                    m.line,
                    m.headers,
                    m.body,
                ));
            }
            Datagram::Malformed { reason, answer } => {
                crate::malformed::count("udp", reason.label(), answer.is_some());
                tracing::debug!(%source, reason = reason.label(), len, "malformed SIP datagram");
                if let Some(answer) = answer {
                    // To where it came from only, never a Via's address: no reflection.
                    let _ = udp.socket.send_to(&answer, source).await;
                }
            }
        }
    }
}

/// Our own descriptor for the UDP socket bound to `bound`.
#[cfg(target_os = "linux")]
fn duplicate(bound: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use rustix::net::sockopt::socket_type;
    use rustix::net::SocketType;
    use rustix::process::{getpid, pidfd_getfd, pidfd_open, PidfdFlags, PidfdGetfdFlags};

    let me = pidfd_open(getpid(), PidfdFlags::empty())?;
    for entry in std::fs::read_dir("/proc/self/fd")?.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else { continue };
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        if !is_socket {
            continue;
        }
        // Another thread may close or reuse `fd` meanwhile: the copy is checked below, and
        // closing a copy leaves the original open.
        let Ok(copy) = pidfd_getfd(&me, fd, PidfdGetfdFlags::empty()) else { continue };
        if socket_type(&copy).ok() != Some(SocketType::DGRAM) {
            continue;
        }
        let socket = std::net::UdpSocket::from(copy);
        // Only one UDP socket can hold an address (ezk sets no SO_REUSEPORT).
        if socket.local_addr().ok() == Some(bound) {
            socket.set_nonblocking(true)?;
            return Ok(socket);
        }
    }
    Err(io::Error::new(io::ErrorKind::NotFound, "the SIP UDP socket's descriptor"))
}

/// No `pidfd_getfd` here: the caller falls back to ezk's own receive path.
#[cfg(not(target_os = "linux"))]
fn duplicate(_bound: SocketAddr) -> io::Result<std::net::UdpSocket> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "pidfd_getfd is Linux only"))
}

/// Marks the process as having a SIP UDP socket whose malformed messages are not checked.
pub(crate) fn fell_back() {
    UDP_CHECKED.store(false, Ordering::Relaxed);
}
