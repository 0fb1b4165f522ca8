//! A synthetic RTP participant: sends a continuous tone (or silence) to a bridge over real
//! UDP with a real codec, and decodes what comes back. The demo, the end-to-end tests and
//! the benchmark generator use it; it is also a compact example of talking to the bridge.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::codec::{new_decoder, new_encoder, CodecParams, CodecSettings};
use crate::dsp::SineGenerator;
use crate::packet::{write_rtp_header, RtpHeader, RtpPacket};
use crate::RuntimeError;

/// What a [`ToneClient`] sends and how it listens.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ToneClientConfig {
    /// Its codec (the bridge leg must use the same).
    pub codec: CodecParams,
    /// The tone it says, Hz; `None` = it sends silence.
    pub tone_hz: Option<f32>,
    /// Peak amplitude of the tone (full scale is 32767).
    pub amplitude: f32,
    /// Rate at which it synthesises and decodes, Hz.
    pub pcm_rate: u32,
    /// How much decoded audio it keeps for analysis.
    pub keep: Duration,
}

impl ToneClientConfig {
    /// A client saying `tone_hz` with `codec` at about −12 dBFS.
    pub fn new(codec: CodecParams, tone_hz: Option<f32>) -> Self {
        Self {
            codec,
            tone_hz,
            amplitude: 8_000.0,
            pcm_rate: 48_000,
            keep: Duration::from_millis(600),
        }
    }
}

/// A running synthetic participant.
pub struct ToneClient {
    local: SocketAddr,
    heard: Arc<Mutex<Heard>>,
    task: JoinHandle<()>,
    rate: u32,
}

#[derive(Default)]
struct Heard {
    pcm: VecDeque<i16>,
    packets: u64,
    undecodable: u64,
}

impl ToneClient {
    /// Binds a socket on `bind` (port 0 = any) and starts sending to `target` every frame,
    /// reading and decoding whatever comes back to the same socket (symmetric RTP).
    pub async fn start(
        config: ToneClientConfig,
        bind: SocketAddr,
        target: SocketAddr,
    ) -> Result<Self, RuntimeError> {
        let socket = UdpSocket::bind(bind).await?;
        let local = socket.local_addr()?;
        let frame_samples = (config.pcm_rate / 1000 * config.codec.ptime_ms) as usize;
        let mut encoder =
            new_encoder(&config.codec, &CodecSettings::default(), config.pcm_rate, frame_samples)?;
        let mut decoder = new_decoder(&config.codec, config.pcm_rate, frame_samples)?;
        let heard = Arc::new(Mutex::new(Heard::default()));
        let keep = (config.pcm_rate as u128 * config.keep.as_millis() / 1000) as usize;
        let shared = heard.clone();
        let task = tokio::spawn(async move {
            let mut sine =
                config.tone_hz.map(|hz| SineGenerator::new(hz, config.pcm_rate, config.amplitude));
            let mut pcm = vec![0i16; frame_samples];
            let mut decoded = vec![0i16; frame_samples];
            let mut payload = vec![0u8; 1500];
            let mut datagram = Vec::with_capacity(1500);
            let mut incoming = vec![0u8; 2048];
            let ssrc = local.port() as u32 * 7919 + 1;
            let (mut seq, mut ts) = (local.port(), 0u32);
            let step = config.codec.clock_rate / 1000 * config.codec.ptime_ms;
            let mut ticker =
                tokio::time::interval(Duration::from_millis(config.codec.ptime_ms as u64));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {
                        match sine.as_mut() {
                            Some(sine) => sine.fill(&mut pcm),
                            None => pcm.fill(0),
                        }
                        let Ok(len) = encoder.encode(&pcm, &mut payload) else { continue };
                        datagram.clear();
                        write_rtp_header(&mut datagram, &RtpHeader {
                            payload_type: config.codec.payload_type,
                            marker: seq == local.port(),
                            sequence: seq,
                            timestamp: ts,
                            ssrc,
                        });
                        datagram.extend_from_slice(&payload[..len]);
                        let _ = socket.send_to(&datagram, target).await;
                        seq = seq.wrapping_add(1);
                        ts = ts.wrapping_add(step);
                    }
                    received = socket.recv_from(&mut incoming) => {
                        let Ok((len, _)) = received else { continue };
                        let Ok(packet) = RtpPacket::parse(&incoming[..len]) else { continue };
                        let result = decoder.decode(packet.payload(), &mut decoded);
                        let mut heard = shared.lock().unwrap_or_else(|p| p.into_inner());
                        heard.packets += 1;
                        match result {
                            Ok(n) => heard.pcm.extend(&decoded[..n.min(decoded.len())]),
                            Err(_) => heard.undecodable += 1,
                        }
                        let excess = heard.pcm.len().saturating_sub(keep);
                        heard.pcm.drain(..excess);
                    }
                }
            }
        });
        Ok(Self { local, heard, task, rate: config.pcm_rate })
    }

    /// The address it sends from and listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Packets received so far.
    pub fn packets_received(&self) -> u64 {
        self.heard.lock().unwrap_or_else(|p| p.into_inner()).packets
    }

    /// Forgets the audio heard so far (call after changing the conference, then wait).
    pub fn clear(&self) {
        self.heard.lock().unwrap_or_else(|p| p.into_inner()).pcm.clear();
    }

    /// The level of each frequency in the audio heard, dB relative to full scale sine
    /// (−∞ becomes −200).
    pub fn tone_levels(&self, freqs: &[f32]) -> Vec<f64> {
        let heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        let pcm: Vec<i16> = heard.pcm.iter().copied().collect();
        drop(heard);
        freqs.iter().map(|&f| crate::dsp::tone_dbfs(&pcm, self.rate, f)).collect()
    }

    /// Which of `freqs` are heard: at least `min_dbfs` loud.
    pub fn heard_tones(&self, freqs: &[f32], min_dbfs: f64) -> Vec<bool> {
        self.tone_levels(freqs).into_iter().map(|db| db >= min_dbfs).collect()
    }

    /// Stops sending.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for ToneClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}
