//! A synthetic WebRTC participant on str0m: makes an SDP offer (the caller posts it, e.g.
//! through WHIP), then does ICE, DTLS and SRTP with the bridge over real UDP, sends Opus
//! (a tone it encodes, or frames encoded once beforehand) and optionally decodes what comes
//! back. The WebRTC tests and the benchmark generator use it, as they use
//! [`ToneClient`](crate::client::ToneClient) for RTP.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::codec::{new_decoder, new_encoder, CodecKind, CodecParams, CodecSettings};
use crate::dsp::SineGenerator;
use crate::packet::AudioLevel;
use crate::RuntimeError;

/// Pre-encoded Opus frames with their RFC 6464 levels, shared by the clients that replay
/// them.
pub type OpusLoop = Arc<Vec<(Vec<u8>, AudioLevel)>>;

/// What a [`WebRtcToneClient`] sends and how it listens.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebRtcClientConfig {
    /// The tone it says (48 kHz Opus, 20 ms frames); `None` = silence.
    pub tone_hz: Option<f32>,
    /// Opus frames (20 ms each) with their RFC 6464 levels, sent in a loop instead of
    /// encoding: a load generator's way to cost little. Overrides `tone_hz`.
    pub frames: Option<OpusLoop>,
    /// Decode what comes back (for [`WebRtcToneClient::tone_levels`]); off, it only counts.
    pub decode: bool,
    /// How much decoded audio it keeps for analysis.
    pub keep: Duration,
}

impl WebRtcClientConfig {
    /// A client saying `tone_hz` at about −12 dBFS and decoding what it hears.
    pub fn new(tone_hz: Option<f32>) -> Self {
        Self { tone_hz, frames: None, decode: true, keep: Duration::from_millis(600) }
    }
}

/// A client that has made its offer and waits for the answer.
pub struct PendingWebRtcClient {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    mid: Mid,
    pending: SdpPendingOffer,
    config: WebRtcClientConfig,
}

/// A running WebRTC participant.
pub struct WebRtcToneClient {
    local: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    heard: Mutex<VecDeque<i16>>,
    received: AtomicU64,
    sent: AtomicU64,
    connected: AtomicBool,
    /// The bridge closed the PeerConnection (DTLS close_notify) or ICE disconnected.
    closed: AtomicBool,
}

const RATE: u32 = 48_000;
const FRAME: usize = 960;

impl WebRtcToneClient {
    /// Binds a UDP socket on `bind` (its address is the offer's only candidate) and makes a
    /// `sendrecv` Opus offer. Post the offer, then [`PendingWebRtcClient::start`] with the
    /// answer.
    pub async fn offer(
        config: WebRtcClientConfig,
        bind: SocketAddr,
    ) -> Result<(PendingWebRtcClient, String), RuntimeError> {
        let socket = UdpSocket::bind(bind).await?;
        let local = socket.local_addr()?;
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .clear_codecs()
            .enable_opus(true, false)
            .build(Instant::now());
        let candidate =
            Candidate::host(local, "udp").map_err(|e| RuntimeError::WebRtc(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) =
            api.apply().ok_or_else(|| RuntimeError::WebRtc("no offer to make".into()))?;
        let client = PendingWebRtcClient { rtc, socket, local, mid, pending, config };
        Ok((client, offer.to_sdp_string()))
    }

    /// The address it sends from.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether ICE and DTLS are up.
    pub fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }

    /// Whether the PeerConnection ended (the bridge closed it, or ICE disconnected).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Relaxed)
    }

    /// Opus frames received so far.
    pub fn packets_received(&self) -> u64 {
        self.shared.received.load(Ordering::Relaxed)
    }

    /// Opus frames written so far.
    pub fn packets_sent(&self) -> u64 {
        self.shared.sent.load(Ordering::Relaxed)
    }

    /// Forgets the audio heard so far.
    pub fn clear(&self) {
        self.shared.heard.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The level of each frequency in the audio heard, dB relative to a full scale sine
    /// (−∞ becomes −200).
    pub fn tone_levels(&self, freqs: &[f32]) -> Vec<f64> {
        let pcm: Vec<i16> =
            self.shared.heard.lock().unwrap_or_else(|p| p.into_inner()).iter().copied().collect();
        freqs.iter().map(|&f| crate::dsp::tone_dbfs(&pcm, RATE, f)).collect()
    }

    /// Stops the client without a goodbye (its socket closes).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for WebRtcToneClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PendingWebRtcClient {
    /// Takes the bridge's SDP answer and starts the client's task.
    pub fn start(mut self, answer: &str) -> Result<WebRtcToneClient, RuntimeError> {
        let answer =
            SdpAnswer::from_sdp_string(answer).map_err(|e| RuntimeError::WebRtc(e.to_string()))?;
        self.rtc
            .sdp_api()
            .accept_answer(self.pending, answer)
            .map_err(|e| RuntimeError::WebRtc(e.to_string()))?;
        let opus = CodecParams::new(CodecKind::Opus);
        let encoder = match self.config.frames {
            Some(_) => None,
            None => Some(new_encoder(&opus, &CodecSettings::default(), RATE, FRAME)?),
        };
        let decoder =
            if self.config.decode { Some(new_decoder(&opus, RATE, FRAME)?) } else { None };
        let shared = Arc::new(Shared::default());
        let run = Run {
            rtc: self.rtc,
            socket: self.socket,
            local: self.local,
            mid: self.mid,
            sine: self.config.tone_hz.map(|hz| SineGenerator::new(hz, RATE, 8_000.0)),
            frames: self.config.frames,
            encoder,
            decoder,
            keep: (RATE as u128 * self.config.keep.as_millis() / 1000) as usize,
            shared: shared.clone(),
        };
        let task = tokio::spawn(run.run());
        Ok(WebRtcToneClient { local: self.local, shared, task })
    }
}

struct Run {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    mid: Mid,
    sine: Option<SineGenerator>,
    frames: Option<OpusLoop>,
    encoder: Option<Box<dyn crate::codec::AudioEncoder + Send>>,
    decoder: Option<Box<dyn crate::codec::AudioDecoder + Send>>,
    keep: usize,
    shared: Arc<Shared>,
}

impl Run {
    async fn run(mut self) {
        let mut incoming = vec![0u8; 2048];
        let mut pcm = vec![0i16; FRAME];
        let mut decoded = vec![0i16; FRAME];
        let mut payload = vec![0u8; 1500];
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut frame = 0u64;
        loop {
            let deadline = match self.drain(&mut decoded) {
                Some(deadline) => deadline,
                None => return,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let _ = self.rtc.handle_input(Input::Timeout(Instant::now()));
                }
                received = self.socket.recv_from(&mut incoming) => {
                    let Ok((n, from)) = received else { continue };
                    if let Ok(receive) = Receive::new(Protocol::Udp, from, self.local, &incoming[..n]) {
                        let _ = self.rtc.handle_input(Input::Receive(Instant::now(), receive));
                    }
                }
                _ = ticker.tick() => {
                    let time = MediaTime::new(frame * FRAME as u64, Frequency::FORTY_EIGHT_KHZ);
                    let index = frame;
                    frame += 1;
                    if !self.shared.connected.load(Ordering::Relaxed) {
                        continue;
                    }
                    // A tone is always voice, at the level a browser would give −12 dBFS.
                    let mut level = AudioLevel { level_dbov: 15, voice: true };
                    let data: &[u8] = match (&self.frames, self.encoder.as_mut()) {
                        (Some(frames), _) if !frames.is_empty() => {
                            let (payload, frame_level) = &frames[index as usize % frames.len()];
                            level = *frame_level;
                            payload
                        }
                        (_, Some(encoder)) => {
                            match self.sine.as_mut() {
                                Some(sine) => sine.fill(&mut pcm),
                                None => pcm.fill(0),
                            }
                            let Ok(len) = encoder.encode(&pcm, &mut payload) else { continue };
                            &payload[..len]
                        }
                        _ => continue,
                    };
                    let Some(writer) = self.rtc.writer(self.mid) else { continue };
                    let Some(pt) = writer.payload_params().find(|p| p.spec().codec == Codec::Opus).map(|p| p.pt()) else { continue };
                    if writer.audio_level(-(level.level_dbov.min(127) as i8), level.voice).write(pt, Instant::now(), time, data).is_ok() {
                        self.shared.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Sends what str0m has to send and handles its events; the next deadline, or `None`
    /// once the PeerConnection is gone.
    fn drain(&mut self, decoded: &mut [i16]) -> Option<Instant> {
        loop {
            if !self.rtc.is_alive() {
                self.shared.closed.store(true, Ordering::Relaxed);
                return None;
            }
            match self.rtc.poll_output() {
                Ok(Output::Timeout(deadline)) => return Some(deadline),
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(event)) => match event {
                    Event::Connected => self.shared.connected.store(true, Ordering::Relaxed),
                    Event::Closed
                    | Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        self.shared.connected.store(false, Ordering::Relaxed);
                        self.shared.closed.store(true, Ordering::Relaxed);
                    }
                    Event::MediaData(data) => {
                        self.shared.received.fetch_add(1, Ordering::Relaxed);
                        let Some(decoder) = self.decoder.as_mut() else { continue };
                        let Ok(n) = decoder.decode(&data.data, decoded) else { continue };
                        let mut heard = self.shared.heard.lock().unwrap_or_else(|p| p.into_inner());
                        heard.extend(&decoded[..n.min(decoded.len())]);
                        let excess = heard.len().saturating_sub(self.keep);
                        heard.drain(..excess);
                    }
                    _ => {}
                },
                Err(_) => {
                    self.shared.closed.store(true, Ordering::Relaxed);
                    return None;
                }
            }
        }
    }
}
