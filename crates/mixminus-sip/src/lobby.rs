//! The PIN lobby: before a caller joins, its RTP ports (already in the SDP answer, reserved
//! from the bridge) carry a prompt tone out and RFC 4733 DTMF in; SIP INFO digits come in
//! beside. The same ports then become the caller's conference leg, so the media never moves.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mixminus_rtp::srtp::{SrtpKeys, SrtpSession};
use mixminus_rtp::{
    is_rtcp, new_encoder, write_rtp_header, AudioEncoder, CodecParams, CodecSettings,
    ReservedPorts, RtpHeader, RtpPacket, MAX_PAYLOAD,
};
use tokio::sync::mpsc;

use crate::dtmf::DtmfReceiver;
use crate::pin::{PinEntry, PinOutcome};

/// The rate prompts are synthesised at (the encoder resamples to the codec's).
const RATE: u32 = 48_000;
/// Prompt frames are 20 ms.
const FRAME_MS: u32 = 20;
const FRAME: usize = (RATE / 1000 * FRAME_MS) as usize;
/// About −14 dBFS: clearly audible, never clipping.
const AMPLITUDE: f32 = 6_000.0;

/// What the caller hears in the lobby: `(frequency Hz, frames)`, 0 Hz = silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// "Enter your PIN": two short 1 kHz beeps, repeated every 3 s.
    EnterPin,
    /// "Wrong PIN": one long 400 Hz tone, then the PIN prompt again.
    WrongPin,
    /// "Goodbye": a long 400 Hz tone before the call ends.
    Goodbye,
}

impl Prompt {
    /// The tone's segments.
    pub fn segments(self) -> &'static [(f32, u32)] {
        match self {
            Prompt::EnterPin => &[(1_000.0, 6), (0.0, 4), (1_000.0, 6), (0.0, 134)],
            Prompt::WrongPin => &[(400.0, 25), (0.0, 15)],
            Prompt::Goodbye => &[(400.0, 40), (0.0, 5)],
        }
    }

    /// The frequency of its tone (what a test listens for).
    pub fn frequency(self) -> f32 {
        self.segments()[0].0
    }
}

/// Why the lobby ended without a PIN decision.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LobbyError {
    /// The codec cannot be encoded.
    #[error("codec: {0}")]
    Codec(#[from] mixminus_rtp::CodecError),
    /// The SRTP key is unusable.
    #[error("unusable SRTP key")]
    Key,
}

/// Where the lobby's media goes.
#[derive(Debug, Clone, Copy)]
pub struct Lobby<'a> {
    /// The caller's reserved ports (its SDP answer names them).
    pub ports: &'a ReservedPorts,
    /// Where the caller receives RTP.
    pub remote: SocketAddr,
    /// The negotiated codec.
    pub codec: &'a CodecParams,
    /// The `telephone-event` payload type, if negotiated.
    pub dtmf_pt: Option<u8>,
    /// SRTP keys, when the call is SRTP.
    pub srtp: Option<&'a SrtpKeys>,
}

/// Plays prompts on the reserved ports and collects the PIN (RTP `telephone-event` on
/// `dtmf_pt`, plus digits from `info`) until `entry` decides. `Failed` has played the
/// goodbye tone already.
pub async fn collect_pin(
    lobby: Lobby<'_>,
    mut entry: PinEntry,
    info: &mut mpsc::Receiver<char>,
) -> Result<PinOutcome, LobbyError> {
    let Lobby { ports, remote, codec, dtmf_pt, srtp } = lobby;
    let mut srtp = match srtp {
        Some(keys) => Some(SrtpSession::new(keys).map_err(|_| LobbyError::Key)?),
        None => None,
    };
    let mut player = Player::new(ports, remote, codec)?;
    let mut dtmf = DtmfReceiver::default();
    let mut buf = vec![0u8; 2048];
    player.play(Prompt::EnterPin);
    let mut ticker = tokio::time::interval(Duration::from_millis(u64::from(FRAME_MS)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut info_open = true;
    // Consent before sending (as the legs): no prompt goes anywhere until the caller's own
    // RTP came from the address its SDP names, so an INVITE cannot aim a stream at a victim.
    let mut consent = false;
    loop {
        let digit = tokio::select! {
            _ = ticker.tick() => None,
            d = info.recv(), if info_open => {
                info_open = d.is_some();
                d
            }
        };
        let now = Instant::now();
        let mut digits: Vec<char> = digit.into_iter().collect();
        // What the socket holds (bounded: a flood waits in the kernel).
        for _ in 0..64 {
            let Ok((len, from)) = ports.rtp_socket().try_recv_from(&mut buf) else { break };
            consent |= from.ip() == remote.ip();
            let plain = match srtp.as_mut() {
                Some(srtp) if !is_rtcp(&buf[..len]) => match srtp.unprotect_rtp(&buf[..len]) {
                    Ok(plain) => plain,
                    Err(_) => continue,
                },
                _ => bytes::Bytes::copy_from_slice(&buf[..len]),
            };
            let Ok(packet) = RtpPacket::parse(&plain) else { continue };
            if Some(packet.payload_type()) == dtmf_pt {
                digits.extend(dtmf.on_packet(packet.timestamp(), packet.payload()));
            }
        }
        let mut outcome = entry.poll(now);
        for d in digits {
            if outcome != PinOutcome::Pending {
                break;
            }
            tracing::debug!(digit = %d, "PIN digit");
            outcome = entry.on_digit(now, d);
        }
        match outcome {
            PinOutcome::Pending => {}
            PinOutcome::Wrong { left } => {
                tracing::info!(left, "wrong PIN");
                player.play(Prompt::WrongPin);
                player.then(Prompt::EnterPin);
            }
            PinOutcome::Failed => {
                player.play(Prompt::Goodbye);
                while player.busy() {
                    ticker.tick().await;
                    player.send_frame(srtp.as_mut());
                }
                return Ok(outcome);
            }
            accepted => return Ok(accepted),
        }
        if consent {
            player.send_frame(srtp.as_mut());
        }
    }
}

/// A tone player on the lobby's socket: one encoder, its own RTP stream.
struct Player<'a> {
    ports: &'a ReservedPorts,
    remote: SocketAddr,
    encoder: Box<dyn AudioEncoder + Send>,
    header: RtpHeader,
    ts_step: u32,
    segments: Vec<(f32, u32)>,
    next: Option<Prompt>,
    position: usize,
    pcm: Vec<i16>,
    payload: Vec<u8>,
    datagram: Vec<u8>,
}

impl<'a> Player<'a> {
    fn new(
        ports: &'a ReservedPorts,
        remote: SocketAddr,
        codec: &CodecParams,
    ) -> Result<Self, LobbyError> {
        let mut params = *codec;
        params.ptime_ms = FRAME_MS;
        let encoder = new_encoder(&params, &CodecSettings::default(), RATE, FRAME)?;
        let ssrc = rand::random::<u32>();
        Ok(Self {
            ports,
            remote,
            encoder,
            header: RtpHeader {
                payload_type: codec.payload_type,
                marker: true,
                sequence: (ssrc >> 16) as u16,
                timestamp: ssrc.rotate_left(9),
                ssrc,
            },
            ts_step: codec.clock_rate / 1000 * FRAME_MS,
            segments: Vec::new(),
            next: None,
            position: 0,
            pcm: vec![0; FRAME],
            payload: vec![0; MAX_PAYLOAD],
            datagram: Vec::with_capacity(MAX_PAYLOAD + 12),
        })
    }

    fn play(&mut self, prompt: Prompt) {
        self.segments = prompt.segments().iter().rev().copied().collect();
        self.position = 0;
        // The PIN prompt repeats until something else is played.
        self.next = (prompt == Prompt::EnterPin).then_some(prompt);
    }

    fn then(&mut self, prompt: Prompt) {
        self.next = Some(prompt);
    }

    fn busy(&self) -> bool {
        !self.segments.is_empty()
    }

    /// Sends one frame: the prompt's, or silence between prompts.
    fn send_frame(&mut self, srtp: Option<&mut SrtpSession>) {
        if self.segments.is_empty() {
            if let Some(next) = self.next {
                self.play(next);
            }
        }
        let freq = self.segments.last().map_or(0.0, |s| s.0);
        let ramp = (RATE / 200) as usize; // 5 ms raised-cosine edges: no clicks
        let length = self.segments.last().map_or(0, |s| s.1 as usize * FRAME + self.position);
        mixminus_rtp::write_beep(
            &mut self.pcm,
            freq,
            RATE as f32,
            AMPLITUDE,
            self.position,
            length,
            ramp,
        );
        if let Some(segment) = self.segments.last_mut() {
            self.position += FRAME;
            segment.1 = segment.1.saturating_sub(1);
            if segment.1 == 0 {
                self.segments.pop();
                self.position = 0;
            }
        }
        let Ok(n) = self.encoder.encode(&self.pcm, &mut self.payload) else { return };
        self.datagram.clear();
        write_rtp_header(&mut self.datagram, &self.header);
        self.datagram.extend_from_slice(&self.payload[..n]);
        // A lost prompt frame is only a gap in a tone.
        match srtp {
            Some(srtp) => {
                if let Ok(protected) = srtp.protect_rtp(&self.datagram) {
                    let _ = self.ports.rtp_socket().try_send_to(&protected, self.remote);
                }
            }
            None => {
                let _ = self.ports.rtp_socket().try_send_to(&self.datagram, self.remote);
            }
        }
        self.header.marker = false;
        self.header.sequence = self.header.sequence.wrapping_add(1);
        self.header.timestamp = self.header.timestamp.wrapping_add(self.ts_step);
    }
}
