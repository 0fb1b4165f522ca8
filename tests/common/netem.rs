//! A netem-style UDP impairment proxy on loopback: loss, delay with jitter (which reorders),
//! duplication, from a seeded RNG so a failure replays.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What the proxy does to packets from the client to the bridge.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// Probability a packet is dropped.
    pub loss: f64,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay, uniform in 0..jitter (reorders packets when larger than the frame).
    pub jitter: Duration,
    /// Probability a packet is sent twice.
    pub duplicate: f64,
    /// RNG seed.
    pub seed: u64,
    /// Probability a packet is held back `reorder_by` more, so later packets overtake it.
    pub reorder: f64,
    /// How long a reordered packet is held back.
    pub reorder_by: Duration,
}

impl Default for Impairment {
    /// A clean path.
    fn default() -> Self {
        Self {
            loss: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            duplicate: 0.0,
            seed: 1,
            reorder: 0.0,
            reorder_by: Duration::from_millis(50),
        }
    }
}

/// Counters, for assertions.
#[derive(Debug, Default)]
pub struct Counters {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub reordered: AtomicU64,
}

/// A running proxy: the client sends to `client_facing`; replies come back to it.
pub struct Proxy {
    pub client_facing: SocketAddr,
    pub counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        // xorshift64*: plenty for test impairment.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Proxy {
    pub async fn start(bridge: SocketAddr, impairment: Impairment) -> Proxy {
        let front = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let client_facing = front.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let task = tokio::spawn(async move {
            let mut rng = Rng(impairment.seed | 1);
            let mut client: Option<SocketAddr> = None;
            let mut queue: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>> = BinaryHeap::new();
            let mut order = 0u64;
            let mut buf = vec![0u8; 2048];
            let mut back_buf = vec![0u8; 2048];
            loop {
                let next = queue.peek().map(|Reverse((at, _, _))| *at);
                tokio::select! {
                    r = front.recv_from(&mut buf) => {
                        let Ok((len, from)) = r else { continue };
                        client = Some(from);
                        if rng.next_f64() < impairment.loss {
                            c.dropped.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        let copies = if rng.next_f64() < impairment.duplicate { 2 } else { 1 };
                        if copies == 2 { c.duplicated.fetch_add(1, Ordering::Relaxed); }
                        for _ in 0..copies {
                            let mut extra = impairment.jitter.mul_f64(rng.next_f64());
                            if impairment.reorder > 0.0 && rng.next_f64() < impairment.reorder {
                                c.reordered.fetch_add(1, Ordering::Relaxed);
                                extra += impairment.reorder_by;
                            }
                            order += 1;
                            queue.push(Reverse((Instant::now() + impairment.delay + extra, order, buf[..len].to_vec())));
                        }
                    }
                    r = back.recv_from(&mut back_buf) => {
                        let Ok((len, _)) = r else { continue };
                        if let Some(client) = client {
                            let _ = front.send_to(&back_buf[..len], client).await;
                        }
                    }
                    _ = async { tokio::time::sleep_until(next.unwrap()).await }, if next.is_some() => {
                        let now = Instant::now();
                        while queue.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
                            let Reverse((_, _, packet)) = queue.pop().unwrap();
                            let _ = back.send_to(&packet, bridge).await;
                            c.forwarded.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        Proxy { client_facing, counters, task }
    }
}
