//! WebRTC participants: a browser's PeerConnection (ICE-lite, DTLS-SRTP, RTCP, Opus with
//! the RFC 6464 audio level) as a participant of a conference, on [`str0m`].
//!
//! [`WebRtcLeg::accept`] takes the browser's SDP offer, answers it (ICE-lite, one host
//! candidate, Opus only, `sendrecv`) and joins the conference. The browser's audio reaches
//! the conference and the participant's mix goes back on the same PeerConnection.
//!
//! ## Shape: a second kind of leg in the runtime
//!
//! A WebRTC participant is a leg of the conference task like an RTP one, with a str0m
//! [`Rtc`] as its transport instead of plain (or SDES-SRTP) RTP:
//!
//! - **Port**: a pair from the bridge's pool (`rtp_ports`), like any leg; the RTP port
//!   carries everything (ICE, DTLS, SRTP, SRTCP: BUNDLE and `rtcp-mux`), the odd port above
//!   stays reserved and idle. One port per WebRTC leg, no demultiplexing by ICE ufrag.
//! - **In**: the port's reader task (the runtime's receive path) stamps each datagram's
//!   arrival and hands it to the conference task, which feeds it to the `Rtc` with that
//!   time. Each decrypted Opus frame str0m emits goes with its RFC 6464 level into the leg's
//!   jitter buffer, exactly where an RTP leg's payload goes (silent frames are not decoded).
//! - **Out**: the leg's share of its group's encoded mix is written to the `Rtc`, which
//!   encrypts it; str0m's datagrams leave from the leg's socket.
//! - **Time** is the runtime's: every `handle_input` carries the arrival time or the tick's
//!   `Instant`; str0m's timers (ICE, DTLS retransmits, RTCP) are served on the tick.
//! - **Consent**: the leg sends media only once str0m reports ICE and DTLS connected (the
//!   peer's STUN checks verified), and stops when ICE reports the peer disconnected;
//!   before that str0m itself sends only STUN answers and the DTLS handshake.
//!
//! The leg ends when its participant leaves (WHIP `DELETE` through [`WebRtcLeg::stop`], a
//! kick, the conference ending: the `Rtc` is closed, sending RTCP BYE and DTLS
//! `close_notify`), when the browser goes (ICE disconnected, DTLS closed), or when ICE and
//! DTLS have not completed within [`CONNECT_TIMEOUT`].

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mixminus_core::ParticipantId;
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{Frequency, MediaData, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};
use tokio::net::UdpSocket;

use crate::codec::{CodecKind, CodecParams};
use crate::runtime::{ConferenceHandle, JoinRequest};
use crate::RuntimeError;

/// A leg that has not completed ICE and DTLS within this is given up.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

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
    /// Ports or the conference.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A WebRTC participant of a conference: a handle on its leg, which runs in the
/// conference task.
#[derive(Debug)]
pub struct WebRtcLeg {
    id: ParticipantId,
    local: SocketAddr,
    conference: ConferenceHandle,
}

impl WebRtcLeg {
    /// Answers `offer` (SDP text) and joins the conference with `request`'s flags and
    /// admission rules (its codec and addresses are set here: Opus, no remote). `bind` is
    /// the bridge's RTP address (`rtp_bind`), which goes in the answer as the only
    /// candidate, so it must not be a wildcard. Returns the leg and the SDP answer.
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
        // The DTLS certificate (a key generation) is made here, off the conference task.
        let provider = str0m::crypto::from_feature_flags();
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .ok_or_else(|| WebRtcError::Negotiation("no DTLS certificate".into()))?;
        let config = Rtc::builder()
            .set_crypto_provider(Arc::new(provider))
            .set_dtls_cert(cert)
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false);
        let offer = WebRtcOffer { config: Box::new(config), offer: Box::new(offer) };
        // The transport is str0m's: Opus on one port, no signalled remote, no SDES.
        let mut request = request;
        request.codec = CodecParams::new(CodecKind::Opus);
        request.remote = None;
        request.rtcp_mux = true;
        request.srtp = None;
        let (joined, answer) =
            conference.join_webrtc(request, offer).await.map_err(|e| match e {
                RuntimeError::WebRtc(message) => WebRtcError::Negotiation(message),
                other => WebRtcError::Runtime(other),
            })?;
        tracing::info!(participant = %joined.id, local = %joined.local_rtp, "webrtc leg accepted");
        let leg =
            WebRtcLeg { id: joined.id, local: joined.local_rtp, conference: conference.clone() };
        Ok((leg, answer))
    }

    /// Its participant id.
    pub fn id(&self) -> ParticipantId {
        self.id
    }

    /// The UDP address the browser sends to (a port from the bridge's `rtp_ports`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether it has ended (browser gone, participant kicked, conference stopped).
    pub fn is_finished(&self) -> bool {
        !self.conference.is_running()
            || !self.conference.snapshot().participants.iter().any(|l| l.info.id == self.id)
    }

    /// Ends the leg: the participant leaves and the PeerConnection is closed (RTCP BYE and
    /// DTLS `close_notify` go out first). Ending an ended leg is fine.
    pub async fn stop(self) {
        let _ = self.conference.leave(self.id).await;
    }
}

/// What the conference task needs to answer an offer: the `Rtc`'s configuration (with its
/// certificate already made) and the parsed offer.
#[derive(Debug)]
pub(crate) struct WebRtcOffer {
    pub(crate) config: Box<RtcConfig>,
    pub(crate) offer: Box<SdpOffer>,
}

/// Why a WebRTC leg ends by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WebRtcEnd {
    /// ICE disconnected, DTLS closed, or str0m failed.
    PeerGone,
    /// ICE and DTLS did not complete within [`CONNECT_TIMEOUT`].
    NeverConnected,
}

/// A leg's WebRTC transport: the str0m `Rtc`, sans-IO; the leg's socket and the time are
/// passed in.
pub(crate) struct WebRtcTransport {
    rtc: Rtc,
    /// The leg's socket address (the candidate in the answer).
    local: SocketAddr,
    mid: Option<Mid>,
    /// The Opus payload type to write with (the browser's, else the first negotiated).
    pt: Option<Pt>,
    connected: bool,
    /// The source of the last datagram str0m took (the peer once connected).
    last_source: Option<SocketAddr>,
    /// The peer str0m verified, reported once to the runtime.
    verified: Option<SocketAddr>,
    ended: Option<WebRtcEnd>,
    started: Instant,
    /// When str0m next wants `Input::Timeout`.
    next_timeout: Instant,
    /// The latest time passed in: str0m is never handed an earlier one (datagrams carry
    /// their arrival time, which may precede the tick that already ran).
    now: Instant,
    /// The 64-bit RTP time of the next frame written (str0m's media time must not wrap).
    media_time: u64,
}

impl WebRtcTransport {
    /// Builds the `Rtc` with `local` as its only candidate and answers the offer.
    pub(crate) fn answer(
        offer: WebRtcOffer,
        local: SocketAddr,
        now: Instant,
    ) -> Result<(Self, String), RuntimeError> {
        let mut rtc = offer.config.build(now);
        let candidate =
            Candidate::host(local, "udp").map_err(|e| RuntimeError::WebRtc(e.to_string()))?;
        if rtc.add_local_candidate(candidate).is_none() {
            return Err(RuntimeError::WebRtc(format!("no usable candidate at {local}")));
        }
        let answer = rtc
            .sdp_api()
            .accept_offer(*offer.offer)
            .map_err(|e| RuntimeError::WebRtc(e.to_string()))?;
        let transport = Self {
            rtc,
            local,
            mid: None,
            pt: None,
            connected: false,
            last_source: None,
            verified: None,
            ended: None,
            started: now,
            next_timeout: now,
            now,
            media_time: 0,
        };
        Ok((transport, answer.to_sdp_string()))
    }

    /// Feeds one datagram that arrived at `at` from `from`. False when str0m refused it
    /// (not STUN, DTLS, SRTP or SRTCP of this session): the caller counts the drop.
    pub(crate) fn receive(&mut self, at: Instant, from: SocketAddr, datagram: &[u8]) -> bool {
        self.now = self.now.max(at);
        let Ok(receive) = Receive::new(Protocol::Udp, from, self.local, datagram) else {
            return false;
        };
        let input = Input::Receive(self.now, receive);
        if !self.rtc.accepts(&input) {
            return false;
        }
        if self.rtc.handle_input(input).is_err() {
            return false;
        }
        self.last_source = Some(from);
        true
    }

    /// Serves str0m's timers when due (called every tick).
    pub(crate) fn on_tick(&mut self, now: Instant) {
        self.now = self.now.max(now);
        if !self.connected && self.ended.is_none() && now - self.started > CONNECT_TIMEOUT {
            self.ended = Some(WebRtcEnd::NeverConnected);
        }
        if self.now >= self.next_timeout && self.rtc.handle_input(Input::Timeout(self.now)).is_err()
        {
            self.ended.get_or_insert(WebRtcEnd::PeerGone);
        }
    }

    /// Drains str0m: sends what it has to send from `socket`, handles its events, and
    /// returns the next Opus frame it received, or `None` once it only waits for time.
    /// Call until `None` after every input and every write.
    pub(crate) fn poll(&mut self, socket: &UdpSocket) -> Option<MediaData> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(deadline)) => {
                    self.next_timeout = deadline;
                    return None;
                }
                Ok(Output::Transmit(t)) => {
                    // A full socket buffer loses this datagram as the network could.
                    let _ = socket.try_send_to(&t.contents, t.destination);
                }
                Ok(Output::Event(event)) => match event {
                    Event::MediaAdded(added) => self.mid = Some(added.mid),
                    Event::Connected => {
                        self.connected = true;
                        self.verified = self.last_source;
                    }
                    Event::Closed
                    | Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        self.connected = false;
                        self.ended.get_or_insert(WebRtcEnd::PeerGone);
                    }
                    Event::MediaData(data) if data.params.spec().codec == Codec::Opus => {
                        self.pt.get_or_insert(data.pt);
                        return Some(data);
                    }
                    _ => {}
                },
                Err(_) => {
                    self.ended.get_or_insert(WebRtcEnd::PeerGone);
                    return None;
                }
            }
            if !self.rtc.is_alive() {
                self.connected = false;
                self.ended.get_or_insert(WebRtcEnd::PeerGone);
                return None;
            }
        }
    }

    /// Writes one encoded Opus frame of `step` samples (48 kHz) at `now`, then
    /// [`Self::poll`]. Returns whether str0m took the frame.
    pub(crate) fn write(&mut self, now: Instant, payload: &[u8], step: u32) -> bool {
        self.now = self.now.max(now);
        let time = MediaTime::new(self.media_time, Frequency::FORTY_EIGHT_KHZ);
        self.media_time += u64::from(step);
        let Some(mid) = self.mid.filter(|_| self.connected) else { return false };
        let Some(writer) = self.rtc.writer(mid) else { return false };
        let pt = match self.pt {
            Some(pt) => pt,
            None => match writer.payload_params().find(|p| p.spec().codec == Codec::Opus) {
                Some(p) => p.pt(),
                None => return false,
            },
        };
        // str0m takes the frame as its own `Arc<[u8]>`: one copy per listener (the group's
        // payload is shared up to here).
        writer.write(pt, self.now, time, payload).is_ok()
    }

    /// Advances the media clock by one frame of `step` samples without sending, so the
    /// stream's timestamps stay continuous.
    pub(crate) fn skip(&mut self, step: u32) {
        self.media_time += u64::from(step);
    }

    /// Closes the PeerConnection: RTCP BYE and DTLS `close_notify` go out from `socket`.
    pub(crate) fn close(&mut self, socket: &UdpSocket) {
        if self.rtc.close().is_ok() {
            // Bounded: the close drain is a handful of datagrams.
            for _ in 0..64 {
                if !self.rtc.is_alive() {
                    break;
                }
                match self.rtc.poll_output() {
                    Ok(Output::Transmit(t)) => {
                        let _ = socket.try_send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Timeout(_)) | Err(_) => break,
                    Ok(Output::Event(_)) => {}
                }
            }
        }
        self.rtc.disconnect();
        self.connected = false;
    }

    /// Whether ICE and DTLS are up (the peer consents to media).
    pub(crate) fn connected(&self) -> bool {
        self.connected && self.ended.is_none()
    }

    /// The peer str0m verified, once: the runtime gives its host the reader's budget.
    pub(crate) fn take_verified(&mut self) -> Option<SocketAddr> {
        self.verified.take()
    }

    /// Whether (and why) the leg has ended by itself.
    pub(crate) fn ended(&self) -> Option<WebRtcEnd> {
        self.ended
    }
}
