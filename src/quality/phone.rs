//! A scripted phone: says whatever its source produces over real UDP with a real codec, and
//! decodes what comes back with one continuous decoder, as a handset does (a sequence gap is
//! concealed, a packet older than one already played is dropped).
//!
//! Its playout is decode-on-arrival: on a clean loopback downlink that is what a fixed,
//! generous playout delay gives, and it keeps each frame's arrival time, so latency is read
//! off the recording. Its uplink can be impaired ([`Impairment`]).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mixminus_rtp::{
    is_rtcp, new_decoder, new_encoder, write_rtp_header, CodecParams, CodecSettings, RtpHeader,
    RtpPacket, RuntimeError, SequenceExtender,
};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::network::{Channel, Impairment};

/// What a phone says: called once per frame to fill it (mono PCM at the phone's rate).
pub type Source = Box<dyn FnMut(&mut [i16]) + Send>;

/// The most audio a phone keeps (then it stops recording), so a forgotten phone cannot
/// grow without bound.
pub const MAX_RECORDING: Duration = Duration::from_secs(600);

/// Gaps longer than this many frames are concealed only up to it (a phone's decoder
/// fades to silence long before).
const MAX_CONCEAL_FRAMES: u64 = 50;

/// How a phone talks and listens.
#[non_exhaustive]
pub struct PhoneConfig {
    /// The codec both ways (the bridge leg must use the same).
    pub codec: CodecParams,
    /// Encoder settings of its own stream.
    pub settings: CodecSettings,
    /// The rate it synthesises and decodes at, Hz (8000 for G.711 means no resampling).
    pub rate: u32,
    /// What it says.
    pub source: Source,
    /// When it sends its first frame (phones given one start instant say their sources in
    /// step); `None` = at once.
    pub start: Option<std::time::Instant>,
    /// What its uplink does to its packets.
    pub uplink: Impairment,
}

impl PhoneConfig {
    /// A phone saying `source` with `codec` at `rate`, default encoder settings.
    pub fn new(codec: CodecParams, rate: u32, source: Source) -> Self {
        Self {
            codec,
            settings: CodecSettings::default(),
            rate,
            source,
            start: None,
            uplink: Impairment::default(),
        }
    }
}

/// What a phone received, so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PhoneStats {
    /// RTP packets received.
    pub packets: u64,
    /// Frames concealed for sequence gaps.
    pub concealed: u64,
    /// Packets dropped as older than one already played (or duplicates).
    pub late: u64,
    /// Packets the decoder refused (each concealed instead).
    pub undecodable: u64,
    /// RTP payload bytes received.
    pub payload_bytes: u64,
    /// Packets it sent (before the uplink's impairment).
    pub sent: u64,
    /// Packets its uplink lost.
    pub uplink_lost: u64,
}

/// A running phone.
pub struct Phone {
    local: SocketAddr,
    heard: Arc<Mutex<Heard>>,
    task: JoinHandle<()>,
    rate: u32,
}

#[derive(Default)]
struct Heard {
    pcm: Vec<i16>,
    /// When each recorded frame arrived (concealed frames: with the packet after them).
    arrivals: Vec<std::time::Instant>,
    stats: PhoneStats,
}

impl Phone {
    /// Binds a loopback socket and starts sending to `target` every frame (deadlines kept
    /// from the start, as a sound card's clock would), decoding whatever comes back to the
    /// same socket (symmetric RTP).
    pub async fn start(config: PhoneConfig, target: SocketAddr) -> Result<Self, RuntimeError> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        Self::start_on(socket, config, target)
    }

    /// Like [`start`](Self::start), on a socket bound already (a bridge that must be told
    /// the phone's address before the phone knows the bridge's).
    pub fn start_on(
        socket: UdpSocket,
        mut config: PhoneConfig,
        target: SocketAddr,
    ) -> Result<Self, RuntimeError> {
        let local = socket.local_addr()?;
        let frame = (config.rate / 1000 * config.codec.ptime_ms) as usize;
        let mut encoder = new_encoder(&config.codec, &config.settings, config.rate, frame)?;
        let mut decoder = new_decoder(&config.codec, config.rate, frame)?;
        let heard = Arc::new(Mutex::new(Heard::default()));
        let shared = heard.clone();
        let keep = (config.rate as u64 * MAX_RECORDING.as_secs()) as usize;
        let task = tokio::spawn(async move {
            let ptime = Duration::from_millis(u64::from(config.codec.ptime_ms));
            let step = config.codec.clock_rate / 1000 * config.codec.ptime_ms;
            let ssrc = u32::from(local.port()) * 7919 + 3;
            let mut pcm = vec![0i16; frame];
            let mut decoded = vec![0i16; frame];
            let mut payload = vec![0u8; 1500];
            let mut datagram = Vec::with_capacity(1500);
            let mut incoming = vec![0u8; 2048];
            let mut sequence = SequenceExtender::new();
            let mut played: Option<u64> = None;
            let start = config.start.map_or_else(Instant::now, Instant::from_std);
            let mut uplink = Channel::new(config.uplink);
            let mut in_flight: BinaryHeap<Reverse<(Instant, u32, Vec<u8>)>> = BinaryHeap::new();
            let mut k = 0u32;
            loop {
                let due = in_flight.peek().map(|Reverse((at, _, _))| *at);
                tokio::select! {
                    _ = async { tokio::time::sleep_until(due.unwrap_or_else(Instant::now)).await },
                        if due.is_some() =>
                    {
                        let now = Instant::now();
                        while in_flight.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
                            if let Some(Reverse((_, _, packet))) = in_flight.pop() {
                                let _ = socket.send_to(&packet, target).await;
                            }
                        }
                    }
                    _ = tokio::time::sleep_until(start + ptime * k) => {
                        (config.source)(&mut pcm);
                        let Ok(len) = encoder.encode(&pcm, &mut payload) else { continue };
                        datagram.clear();
                        write_rtp_header(&mut datagram, &RtpHeader {
                            payload_type: config.codec.payload_type,
                            marker: k == 0,
                            sequence: (k as u16).wrapping_add(local.port()),
                            timestamp: k.wrapping_mul(step),
                            ssrc,
                        });
                        datagram.extend_from_slice(&payload[..len]);
                        let fate = uplink.next_packet();
                        {
                            let mut heard = shared.lock().unwrap_or_else(|p| p.into_inner());
                            heard.stats.sent += 1;
                            heard.stats.uplink_lost += u64::from(fate.is_none());
                        }
                        match fate {
                            Some(delay) if delay.is_zero() && in_flight.is_empty() => {
                                let _ = socket.send_to(&datagram, target).await;
                            }
                            Some(delay) => {
                                in_flight.push(Reverse((Instant::now() + delay, k, datagram.clone())));
                            }
                            None => {}
                        }
                        k += 1;
                    }
                    received = socket.recv_from(&mut incoming) => {
                        let Ok((len, _)) = received else { continue };
                        let bytes = &incoming[..len];
                        if is_rtcp(bytes) {
                            continue;
                        }
                        let Ok(packet) = RtpPacket::parse(bytes) else { continue };
                        let Some(ext) = sequence.extend_ssrc(packet.ssrc(), packet.sequence()) else {
                            continue;
                        };
                        let arrived = std::time::Instant::now();
                        let mut heard = shared.lock().unwrap_or_else(|p| p.into_inner());
                        heard.stats.packets += 1;
                        heard.stats.payload_bytes += packet.payload().len() as u64;
                        if played.is_some_and(|p| ext <= p) {
                            heard.stats.late += 1;
                            continue;
                        }
                        let gap = played.map_or(0, |p| ext - p - 1).min(MAX_CONCEAL_FRAMES);
                        for _ in 0..gap {
                            decoder.conceal(&mut decoded);
                            heard.stats.concealed += 1;
                            record(&mut heard, &decoded, keep, arrived);
                        }
                        played = Some(ext);
                        if decoder.decode(packet.payload(), &mut decoded).is_err() {
                            heard.stats.undecodable += 1;
                            decoder.conceal(&mut decoded);
                        }
                        record(&mut heard, &decoded, keep, arrived);
                    }
                }
            }
        });
        Ok(Self { local, heard, task, rate: config.rate })
    }

    /// The address it sends from and listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The rate of its recording, Hz.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Everything it decoded so far, in play order.
    pub fn recording(&self) -> Vec<i16> {
        self.heard.lock().unwrap_or_else(|p| p.into_inner()).pcm.clone()
    }

    /// When each recorded frame arrived (frame `j` holds recording samples
    /// `j·frame..(j+1)·frame`).
    pub fn arrivals(&self) -> Vec<std::time::Instant> {
        self.heard.lock().unwrap_or_else(|p| p.into_inner()).arrivals.clone()
    }

    /// Its receive counters.
    pub fn stats(&self) -> PhoneStats {
        self.heard.lock().unwrap_or_else(|p| p.into_inner()).stats
    }

    /// Hangs up (stops sending and listening).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn record(heard: &mut Heard, frame: &[i16], keep: usize, arrived: std::time::Instant) {
    if heard.pcm.len() + frame.len() <= keep {
        heard.pcm.extend_from_slice(frame);
        heard.arrivals.push(arrived);
    }
}
