//! WebRTC participants: a browser's PeerConnection (ICE-lite, DTLS-SRTP, RTCP, Opus with
//! the RFC 6464 audio level) as a participant of a conference, on [`str0m`].
//!
//! [`WebRtcLeg::accept`] takes the browser's SDP offer, answers it (ICE-lite, one host
//! candidate, Opus only, `sendrecv`) and starts the leg. The browser's audio reaches the
//! conference and the participant's mix goes back on the same PeerConnection.
//!
//! ## Shape (and what comes next)
//!
//! Today the leg is a *front*: a task owning the str0m `Rtc` and two sockets. One UDP
//! socket per WebRTC leg faces the browser (an ephemeral port on the bridge's RTP address:
//! a leg takes one port each, no demultiplexing by ICE ufrag); the other is a loopback
//! socket that speaks plain RTP to an ordinary RTP leg of the conference, joined with the
//! browser's Opus and the audio level carried over on extension id
//! [`INNER_AUDIO_LEVEL_EXT`]. So the WebRTC participant *is* a participant like any other
//! (API fields, relate, mute, deaf, kick, events, quotas), and silent browser frames
//! (RFC 6464) are never decoded, as for any RTP leg. The cost is one loopback hop per packet
//! each way. Once the runtime's receive path takes legs of several kinds (issue 11), this
//! front becomes a second kind of leg there, fed datagrams by the runtime's reader, with no
//! loopback hop.
//!
//! The leg ends when [`WebRtcLeg::stop`] is called (WHIP `DELETE`), when the browser goes
//! away (ICE disconnects, DTLS closes), or when its participant leaves the conference
//! (kick, the conference ending): whichever comes first ends the other two.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mixminus_core::ParticipantId;
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::codec::{CodecKind, CodecParams};
use crate::packet::{is_rtcp, write_rtp_header_with_audio_level, AudioLevel, RtpHeader, RtpPacket};
use crate::runtime::{ConferenceHandle, JoinRequest};
use crate::RuntimeError;

/// The extension id on which the front hands the browser's RFC 6464 level to its RTP leg.
pub const INNER_AUDIO_LEVEL_EXT: u8 = 1;

/// The payload type of Opus on the loopback hop.
const INNER_OPUS_PT: u8 = 111;

/// How often the front checks that its participant is still in the conference.
const PRESENCE_CHECK: Duration = Duration::from_millis(500);

/// A leg that never completes ICE and DTLS within this is given up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// What can go wrong accepting an offer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebRtcError {
    /// The offer is not SDP str0m can read.
    #[error("the offer is not valid SDP: {0}")]
    Offer(String),
    /// The offer cannot be answered (no audio, no Opus, …).
    #[error("the offer cannot be answered: {0}")]
    Negotiation(String),
    /// The bridge's RTP address is a wildcard: there is no address to put in the answer.
    #[error("rtp_bind is {0}: WebRTC needs the address browsers reach (set rtp_bind)")]
    NoAddress(IpAddr),
    /// Sockets or the conference.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A running WebRTC participant.
#[derive(Debug)]
pub struct WebRtcLeg {
    id: ParticipantId,
    local: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl WebRtcLeg {
    /// Answers `offer` (SDP text) and joins the conference with `request`'s flags (its
    /// codec and addresses are the front's own). `bind` is the address the browser reaches
    /// (the bridge's RTP address). Returns the leg and the SDP answer.
    pub async fn accept(
        conference: &ConferenceHandle,
        offer: &str,
        bind: IpAddr,
        request: JoinRequest,
    ) -> Result<(WebRtcLeg, String), WebRtcError> {
        if bind.is_unspecified() {
            return Err(WebRtcError::NoAddress(bind));
        }
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| WebRtcError::Offer(e.to_string()))?;
        let media = UdpSocket::bind(SocketAddr::new(bind, 0)).await.map_err(RuntimeError::from)?;
        let local = media.local_addr().map_err(RuntimeError::from)?;
        let now = Instant::now();
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .build(now);
        let candidate =
            Candidate::host(local, "udp").map_err(|e| WebRtcError::Negotiation(e.to_string()))?;
        if rtc.add_local_candidate(candidate).is_none() {
            return Err(WebRtcError::Negotiation(format!("no usable candidate at {local}")));
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| WebRtcError::Negotiation(e.to_string()))?;

        let inner = UdpSocket::bind("127.0.0.1:0").await.map_err(RuntimeError::from)?;
        let mut join = request;
        join.codec = CodecParams::new(CodecKind::Opus);
        join.codec.payload_type = INNER_OPUS_PT;
        join.remote = Some(inner.local_addr().map_err(RuntimeError::from)?);
        join.audio_level_ext = Some(INNER_AUDIO_LEVEL_EXT);
        join.rtcp_mux = true;
        let joined = conference.join(join).await?;
        inner.connect(joined.local_rtp).await.map_err(RuntimeError::from)?;

        let (stop, stopped) = oneshot::channel();
        let front = Front {
            rtc,
            media,
            local,
            inner,
            conference: conference.clone(),
            id: joined.id,
            mid: None,
            pt: None,
            sequence: rand::random(),
            ssrc: rand::random(),
            started: now,
            connected: false,
            out: Vec::with_capacity(crate::packet::MAX_RTP_DATAGRAM),
        };
        let task = tokio::spawn(front.run(stopped));
        tracing::info!(participant = %joined.id, %local, "webrtc leg accepted");
        Ok((WebRtcLeg { id: joined.id, local, stop: Some(stop), task }, answer.to_sdp_string()))
    }

    /// Its participant id.
    pub fn id(&self) -> ParticipantId {
        self.id
    }

    /// The UDP address the browser sends to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether it has ended (browser gone, participant gone, or stopped).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Ends the leg: the PeerConnection is closed and the participant leaves. Waits for
    /// both.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for WebRtcLeg {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The task's state: the PeerConnection and the RTP leg it feeds.
struct Front {
    rtc: Rtc,
    media: UdpSocket,
    local: SocketAddr,
    inner: UdpSocket,
    conference: ConferenceHandle,
    id: ParticipantId,
    mid: Option<Mid>,
    pt: Option<Pt>,
    sequence: u16,
    ssrc: u32,
    started: Instant,
    connected: bool,
    /// The datagram being written to the bridge.
    out: Vec<u8>,
}

/// Why the loop ended.
#[derive(Debug)]
enum End {
    Stopped,
    BrowserGone,
    ParticipantGone,
    NeverConnected,
    Error(String),
}

impl Front {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) {
        let end = self.pump(&mut stopped).await;
        match &end {
            End::Error(e) => {
                tracing::warn!(participant = %self.id, error = %e, "webrtc leg failed")
            }
            other => tracing::info!(participant = %self.id, end = ?other, "webrtc leg ended"),
        }
        self.rtc.disconnect();
        // Whatever the close produced (DTLS close_notify) goes out before the socket closes.
        let _ = self.drain().await;
        if !matches!(end, End::ParticipantGone) {
            let _ = self.conference.leave(self.id).await;
        }
    }

    async fn pump(&mut self, stopped: &mut oneshot::Receiver<()>) -> End {
        let mut from_browser = vec![0u8; 2048];
        let mut from_bridge = vec![0u8; 2048];
        let mut presence = tokio::time::interval(PRESENCE_CHECK);
        loop {
            let deadline = match self.drain().await {
                Ok(deadline) => deadline,
                Err(end) => return end,
            };
            if !self.rtc.is_alive() {
                return End::BrowserGone;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if let Err(e) = self.rtc.handle_input(Input::Timeout(Instant::now())) {
                        return End::Error(e.to_string());
                    }
                }
                received = self.media.recv_from(&mut from_browser) => {
                    let Ok((n, source)) = received else { continue };
                    // Junk that is neither STUN, DTLS nor SRTP is dropped here.
                    if let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, &from_browser[..n]) {
                        if let Err(e) = self.rtc.handle_input(Input::Receive(Instant::now(), receive)) {
                            tracing::debug!(participant = %self.id, error = %e, "webrtc input refused");
                        }
                    }
                }
                received = self.inner.recv(&mut from_bridge) => {
                    let Ok(n) = received else { continue };
                    self.forward_to_browser(&from_bridge[..n]);
                }
                _ = presence.tick() => {
                    let here = self.conference.snapshot().participants.iter().any(|l| l.info.id == self.id);
                    if !here || !self.conference.is_running() {
                        return End::ParticipantGone;
                    }
                    if !self.connected && self.started.elapsed() > CONNECT_TIMEOUT {
                        return End::NeverConnected;
                    }
                }
                _ = &mut *stopped => return End::Stopped,
            }
        }
    }

    /// Sends what the `Rtc` has to send and handles its events, until it asks for time.
    async fn drain(&mut self) -> Result<Instant, End> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(deadline)) => return Ok(deadline),
                Ok(Output::Transmit(t)) => {
                    let _ = self.media.send_to(&t.contents, t.destination).await;
                }
                Ok(Output::Event(event)) => match event {
                    Event::MediaAdded(added) => self.mid = Some(added.mid),
                    Event::Connected => self.connected = true,
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        return Err(End::BrowserGone)
                    }
                    Event::MediaData(data) if data.params.spec().codec == Codec::Opus => {
                        self.pt.get_or_insert(data.pt);
                        self.forward_to_bridge(&data);
                    }
                    _ => {}
                },
                Err(e) => return Err(End::Error(e.to_string())),
            }
        }
    }

    /// The browser's Opus frame as plain RTP to the conference's leg, with its level.
    fn forward_to_bridge(&mut self, data: &str0m::media::MediaData) {
        let header = RtpHeader {
            payload_type: INNER_OPUS_PT,
            marker: data.audio_start_of_talk_spurt,
            sequence: self.sequence,
            // Opus's RTP clock is 48 kHz, str0m's audio time base; the low 32 bits of the
            // extended time are the RTP timestamp.
            timestamp: data.time.numer() as u32,
            ssrc: self.ssrc,
        };
        self.sequence = self.sequence.wrapping_add(1);
        // Browsers always send the level; a frame without one is taken as talking.
        let level = AudioLevel {
            level_dbov: data.ext_vals.audio_level.map_or(0, |l| l.unsigned_abs()),
            voice: data.ext_vals.voice_activity.unwrap_or(true),
        };
        // One buffer for every packet: the copy to the bridge allocates nothing. (str0m
        // itself hands each frame over in its own `Arc<[u8]>`, and takes one to send.)
        self.out.clear();
        // The id is a constant in 1..=14, so this cannot fail.
        if write_rtp_header_with_audio_level(&mut self.out, &header, INNER_AUDIO_LEVEL_EXT, level)
            .is_ok()
        {
            self.out.extend_from_slice(&data.data);
            let _ = self.inner.try_send(&self.out);
        }
    }

    /// The participant's mix (Opus RTP from its leg) onto the PeerConnection.
    fn forward_to_browser(&mut self, datagram: &[u8]) {
        // RTCP from the leg is not for the browser: str0m reports on the PeerConnection.
        if is_rtcp(datagram) {
            return;
        }
        let Ok(packet) = RtpPacket::parse(datagram) else { return };
        if packet.payload_type() != INNER_OPUS_PT {
            return;
        }
        let Some(mid) = self.mid else { return };
        let Some(writer) = self.rtc.writer(mid) else { return };
        let pt = match self.pt {
            Some(pt) => pt,
            None => match writer.payload_params().find(|p| p.spec().codec == Codec::Opus) {
                Some(p) => p.pt(),
                None => return,
            },
        };
        let time = MediaTime::new(u64::from(packet.timestamp()), Frequency::FORTY_EIGHT_KHZ);
        if let Err(e) = writer.write(pt, Instant::now(), time, packet.payload()) {
            tracing::debug!(participant = %self.id, error = %e, "webrtc write refused");
        }
    }
}
