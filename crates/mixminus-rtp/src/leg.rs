//! One participant's media leg: its sockets, latching, jitter buffer, decoder and the
//! continuity of its outbound stream.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mixminus_core::{Conference, ParticipantId};

use crate::codec::{new_decoder, AudioDecoder, CodecParams};
use crate::jitter::{FrameKind, InsertOutcome, JitterBuffer, JitterConfig, Pulled};
use crate::packet::{is_rtcp, write_rtp_header, RtpHeader, RtpPacket};
use crate::ports::PortPair;
use crate::receive::{Port, ReaderLink};
use crate::rtcp::{NtpClock, RtcpSession};
use crate::seq::SequenceExtender;
use crate::srtp::{SrtpKeys, SrtpSession};
use crate::stats::{DropReason, LegStats};
use crate::webrtc::{WebRtcEnd, WebRtcTransport};
use crate::RuntimeError;

/// Larger datagrams are dropped: no audio frame needs more.
pub(crate) const MAX_DATAGRAM: usize = 1500;

/// What every leg of a conference shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MediaFormat {
    pub(crate) conference_rate: u32,
    pub(crate) frame_samples: usize,
    pub(crate) frame_ms: u32,
    pub(crate) jitter: JitterConfig,
    pub(crate) audio_level_ext: Option<u8>,
    pub(crate) strict_source: bool,
    pub(crate) quiet_decode_interval: u32,
    pub(crate) rtcp_interval: Duration,
}

pub(crate) struct Leg {
    pub(crate) ports: PortPair,
    pub(crate) codec: CodecParams,
    /// Where the mix goes when the join named it.
    pub(crate) remote: Option<SocketAddr>,
    /// The source address fixed by the first valid RTP packet.
    pub(crate) latched: Option<SocketAddr>,
    /// Where RTCP goes: learned from the peer's RTCP, else the RTP destination's port + 1.
    rtcp_remote: Option<SocketAddr>,
    /// RTCP shares the RTP port (`a=rtcp-mux`).
    rtcp_mux: bool,
    decoder: Box<dyn AudioDecoder + Send>,
    jitter: JitterBuffer,
    /// One frame of played-out audio, before it goes to the mixer.
    pcm: Vec<i16>,
    seq: SequenceExtender,
    ssrc_in: Option<u32>,
    audio_level_ext: Option<u8>,
    /// Latch only onto the host the join named (when it named one).
    strict_source: bool,
    /// Decode only every n-th frame while the participant is quiet (1 = every frame).
    quiet_decode_interval: u32,
    /// Frames skipped since the last quiet decode.
    quiet_skipped_run: u32,
    /// Energy of the last decoded frame.
    last_energy: u32,
    pub(crate) last_audio_level: Option<u8>,
    pub(crate) out_ssrc: u32,
    out_seq: u16,
    out_ts: u32,
    out_marker: bool,
    out_ts_step: u32,
    pub(crate) joined_at: Instant,
    pub(crate) joined_wall: std::time::SystemTime,
    pub(crate) last_rx: Option<Instant>,
    pub(crate) bye: bool,
    /// Whether the peer was heard from recently enough to send to it.
    consent: bool,
    /// ICMP unreachable came back from the connected peer: the leg stops.
    pub(crate) unreachable: bool,
    /// The peer holds the call (SDP `sendonly` / `inactive`): nothing is sent to it.
    pub(crate) held: bool,
    /// SRTP (SDES) both ways, when the join had keys.
    srtp: Option<SrtpSession>,
    /// The negotiated RFC 4733 `telephone-event` payload type, if any.
    pub(crate) dtmf_pt: Option<u8>,
    /// The RTP timestamp of the last DTMF press counted (one press, one timestamp).
    dtmf_last: Option<u32>,
    /// RTCP: reception statistics, reports, the peer's reports about us.
    pub(crate) rtcp: RtcpSession,
    pub(crate) stats: LegStats,
    /// The readers of its sockets (the runtime starts them once the leg has an id);
    /// dropping the leg stops them.
    pub(crate) reader: Option<ReaderLink>,
    /// A WebRTC leg's transport (ICE, DTLS-SRTP, RTCP: str0m); `None` for RTP.
    pub(crate) webrtc: Option<Box<WebRtcTransport>>,
}

/// What the runtime must do after [`Leg::handle_input`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LegOutput {
    /// The leg latched onto this source: connect the RTP socket to it, so the kernel drops
    /// every other source.
    Latched(SocketAddr),
    /// A WebRTC leg's peer passed ICE and DTLS: its host gets the reader's peer budget (the
    /// socket stays unconnected: ICE may move to another candidate pair).
    Verified(SocketAddr),
}

impl Leg {
    pub(crate) fn new(
        ports: PortPair,
        codec: CodecParams,
        remote: Option<SocketAddr>,
        rtcp_mux: bool,
        media: &MediaFormat,
        now: Instant,
        ssrc: u32,
    ) -> Result<Self, RuntimeError> {
        let MediaFormat {
            conference_rate,
            frame_samples,
            frame_ms,
            jitter,
            audio_level_ext,
            strict_source,
            quiet_decode_interval,
            rtcp_interval,
        } = *media;
        // Bridge::new refuses 0; a leg must never divide by it anyway.
        let quiet_decode_interval = quiet_decode_interval.max(1);
        let decoder = new_decoder(&codec, conference_rate, frame_samples)?;
        let joined_wall = std::time::SystemTime::now();
        let rtcp = RtcpSession::new(
            ssrc,
            RtcpSession::random_cname(),
            codec.clock_rate,
            NtpClock::new(now, joined_wall),
            rtcp_interval,
            rand::random(),
        );
        Ok(Self {
            ports,
            out_ts_step: codec.clock_rate / 1000 * frame_ms,
            codec,
            remote,
            latched: None,
            rtcp_remote: remote.map(|r| {
                if rtcp_mux {
                    r
                } else {
                    SocketAddr::new(r.ip(), r.port().wrapping_add(1))
                }
            }),
            rtcp_mux,
            decoder,
            jitter: JitterBuffer::new(jitter, frame_ms, codec.clock_rate, frame_samples),
            pcm: vec![0; frame_samples],
            seq: SequenceExtender::new(),
            ssrc_in: None,
            audio_level_ext,
            strict_source,
            quiet_decode_interval,
            // Stagger the legs' phases, so that the quiet decodes spread evenly over ticks
            // instead of all landing on every n-th one.
            quiet_skipped_run: ssrc % quiet_decode_interval,
            last_energy: 0,
            last_audio_level: None,
            out_ssrc: ssrc,
            out_seq: (ssrc >> 16) as u16,
            out_ts: ssrc.rotate_left(7),
            out_marker: true,
            joined_at: now,
            joined_wall,
            last_rx: None,
            bye: false,
            consent: false,
            unreachable: false,
            rtcp,
            stats: LegStats::default(),
            reader: None,
            held: false,
            srtp: None,
            dtmf_pt: None,
            dtmf_last: None,
            webrtc: None,
        })
    }

    /// Makes the leg SRTP (SDES keys): from now on it protects what it sends and drops
    /// what does not authenticate.
    pub(crate) fn use_srtp(&mut self, keys: &SrtpKeys) -> Result<(), RuntimeError> {
        let session = SrtpSession::new(keys)
            .map_err(|_| RuntimeError::InvalidRequest("srtp: unusable key"))?;
        self.srtp = Some(session);
        Ok(())
    }

    /// Switches the leg to `codec` (a re-INVITE's new offer): a new decoder and jitter
    /// buffer at its clock rate; the outbound stream keeps its SSRC and sequence, marks the
    /// change, and its timestamps step at the new rate. The tick picks the encoder by
    /// [`Self::codec`], so the mix follows on the next frame.
    pub(crate) fn change_codec(
        &mut self,
        codec: CodecParams,
        jitter: JitterConfig,
        conference_rate: u32,
        frame_ms: u32,
    ) -> Result<(), RuntimeError> {
        let frame_samples = self.pcm.len();
        self.decoder = new_decoder(&codec, conference_rate, frame_samples)?;
        self.jitter = JitterBuffer::new(jitter, frame_ms, codec.clock_rate, frame_samples);
        // The peer's packets at the old payload type are a new stream to the buffer.
        self.seq = SequenceExtender::new();
        self.ssrc_in = None;
        self.out_ts_step = codec.clock_rate / 1000 * frame_ms;
        self.out_marker = true;
        self.codec = codec;
        Ok(())
    }

    pub(crate) fn local_rtp(&self) -> SocketAddr {
        // A bound socket always has a local address; fall back to the port for display.
        self.ports
            .rtp
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], self.ports.port())))
    }

    /// Where the mix is sent: the address given at join, else the latched source — and
    /// only while the peer consents (see [`refresh_consent`](Self::refresh_consent)).
    pub(crate) fn destination(&self) -> Option<SocketAddr> {
        self.remote.or(self.latched).filter(|_| self.consent)
    }

    /// Consent to send, in the spirit of RFC 7675: a leg sends (media, reports, BYE) only
    /// while it has received RTP or RTCP from its peer within [`CONSENT_WINDOW`]. Before the
    /// peer's first packet it sends nothing, so a join naming a third party's address makes
    /// the bridge send that party nothing at all. Called every tick, before sending.
    pub(crate) fn refresh_consent(&mut self, now: Instant) {
        if let Some(webrtc) = &self.webrtc {
            // WebRTC: ICE consent (RFC 7675, kept by str0m) is the rule.
            self.consent = webrtc.connected();
            return;
        }
        self.consent =
            self.last_rx.is_some_and(|last| now.saturating_duration_since(last) < CONSENT_WINDOW);
    }

    /// Takes one datagram that arrived at `now` from `from` on `port`: RTP goes through
    /// latching to the jitter buffer (stamped with its arrival time), RTCP to
    /// [`crate::rtcp::on_rtcp`]. Sans-IO: returns what the runtime must do with the sockets.
    pub(crate) fn handle_input(
        &mut self,
        now: Instant,
        port: Port,
        from: SocketAddr,
        datagram: &Bytes,
    ) -> Option<LegOutput> {
        if datagram.len() > MAX_DATAGRAM {
            self.stats.drop(DropReason::Oversized);
            return None;
        }
        if self.webrtc.is_some() {
            return self.webrtc_input(now, port, from, datagram);
        }
        // SRTP: authenticated and decrypted before anything else reads it.
        let plain;
        let datagram = match self.srtp.as_mut() {
            Some(srtp) => {
                let unprotected = if port == Port::Rtcp || is_rtcp(datagram) {
                    srtp.unprotect_rtcp(datagram)
                } else {
                    srtp.unprotect_rtp(datagram)
                };
                match unprotected {
                    Ok(bytes) => {
                        plain = bytes;
                        &plain
                    }
                    Err(_) => {
                        self.stats.drop(DropReason::Malformed);
                        return None;
                    }
                }
            }
            None => datagram,
        };
        if port == Port::Rtcp || is_rtcp(datagram) {
            crate::rtcp::on_rtcp(self, now, datagram, from, port == Port::Rtp);
            return None;
        }
        let latched = self.latched.is_none();
        self.on_rtp(datagram, from, now);
        match self.latched {
            Some(peer) if latched => Some(LegOutput::Latched(peer)),
            _ => None,
        }
    }

    /// A WebRTC leg's datagram: to str0m, and the Opus frames it yields to the jitter buffer.
    fn webrtc_input(
        &mut self,
        now: Instant,
        port: Port,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Option<LegOutput> {
        let webrtc = self.webrtc.as_mut()?;
        // Everything is multiplexed on the RTP port; the odd port is reserved, not used.
        if port == Port::Rtcp {
            self.stats.drop(DropReason::WrongSource);
            return None;
        }
        if !webrtc.receive(now, from, datagram) {
            self.stats.drop(DropReason::Malformed);
            return None;
        }
        self.last_rx = Some(now);
        self.pump_webrtc();
        let webrtc = self.webrtc.as_mut()?;
        let verified = webrtc.take_verified()?;
        self.latched = Some(verified);
        Some(LegOutput::Verified(verified))
    }

    /// Drains the WebRTC transport: its datagrams out, its Opus frames into the jitter
    /// buffer.
    fn pump_webrtc(&mut self) {
        loop {
            let (Some(webrtc), socket) = (self.webrtc.as_mut(), &self.ports.rtp) else { return };
            let Some(data) = webrtc.poll(socket) else { return };
            self.on_webrtc_frame(data);
        }
    }

    /// One decrypted Opus frame from str0m, with its arrival time and RFC 6464 level: the
    /// same path as an RTP leg's payload from here.
    fn on_webrtc_frame(&mut self, data: str0m::media::MediaData) {
        self.stats.packets_in += 1;
        self.stats.bytes_in += data.data.len() as u64;
        // str0m's sequence numbers are already extended to 64 bits.
        let ext_seq = **data.seq_range.start();
        // Browsers always send the level; a frame without one is taken as talking.
        let level = data.ext_vals.audio_level.map(|l| l.unsigned_abs());
        self.last_audio_level = level;
        let silent = level.is_some_and(|l| l >= SILENT_DBOV)
            && !data.ext_vals.voice_activity.unwrap_or(true);
        // str0m hands the frame over in its own `Arc<[u8]>`: kept, not copied.
        let payload = if silent { Bytes::new() } else { Bytes::from_owner(data.data) };
        // Opus's RTP clock is 48 kHz, str0m's audio time base: the low 32 bits of the
        // extended media time are the RTP timestamp.
        let timestamp = data.time.numer() as u32;
        match self.jitter.insert(data.network_time, ext_seq, timestamp, payload) {
            InsertOutcome::Accepted | InsertOutcome::Resync => {}
            InsertOutcome::Duplicate => self.stats.drop(DropReason::Duplicate),
            InsertOutcome::Late => self.stats.drop(DropReason::Late),
            InsertOutcome::Overflow { .. } => self.stats.drop(DropReason::Overflow),
        }
    }

    /// A WebRTC leg's share of the tick: str0m's timers, then what they produced.
    pub(crate) fn webrtc_tick(&mut self, now: Instant) {
        if let Some(webrtc) = self.webrtc.as_mut() {
            webrtc.on_tick(now);
            self.pump_webrtc();
        }
    }

    /// Sends `payload` (this tick's encoded mix) on a WebRTC leg; false when str0m did not
    /// take it.
    pub(crate) fn send_webrtc(&mut self, now: Instant, payload: &[u8]) -> bool {
        let step = self.out_ts_step;
        let Some(webrtc) = self.webrtc.as_mut() else { return false };
        let sent = webrtc.write(now, payload, step);
        self.pump_webrtc();
        sent
    }

    /// Why a WebRTC leg has ended by itself (peer gone, never connected); `None` for RTP.
    pub(crate) fn webrtc_ended(&self) -> Option<WebRtcEnd> {
        self.webrtc.as_ref().and_then(|w| w.ended())
    }

    /// Closes a WebRTC leg's PeerConnection (RTCP BYE, DTLS `close_notify`).
    pub(crate) fn close_webrtc(&mut self) {
        if let Some(webrtc) = self.webrtc.as_mut() {
            webrtc.close(&self.ports.rtp);
        }
    }

    /// The leg's counters, with what its readers dropped before it saw anything.
    pub(crate) fn stats_now(&self) -> LegStats {
        let mut stats = self.stats;
        if let Some(reader) = &self.reader {
            reader.counters.add_to(&mut stats.dropped);
        }
        stats
    }

    fn on_rtp(&mut self, datagram: &Bytes, from: SocketAddr, now: Instant) {
        if self.latched.is_some_and(|latched| latched != from) {
            self.stats.drop(DropReason::WrongSource);
            return;
        }
        // Before the first packet, a stranger must not win the latch: when the join named
        // the peer, only its host may (any port: clients often send from another one).
        if self.latched.is_none()
            && self.strict_source
            && self.remote.is_some_and(|remote| remote.ip() != from.ip())
        {
            self.stats.drop(DropReason::WrongSource);
            return;
        }
        let packet = match RtpPacket::parse(datagram) {
            Ok(packet) => packet,
            Err(_) => {
                self.stats.drop(DropReason::Malformed);
                return;
            }
        };
        if Some(packet.payload_type()) == self.dtmf_pt {
            // DTMF on a joined leg: counted as such, not as junk; the mix has no use for it.
            self.stats.dtmf_packets += 1;
            let is_key = packet.payload().first().is_some_and(|&event| event <= 15)
                && packet.payload().len() >= 4;
            if is_key && self.dtmf_last != Some(packet.timestamp()) {
                self.dtmf_last = Some(packet.timestamp());
                self.stats.dtmf_digits += 1;
            }
            return;
        }
        if packet.payload_type() != self.codec.payload_type {
            self.stats.drop(DropReason::PayloadType);
            return;
        }
        if self.latched.is_none() {
            self.latched = Some(from);
        }
        if self.ssrc_in != Some(packet.ssrc()) {
            // A new source (first packet, or the peer restarted): new sequence space.
            if self.ssrc_in.is_some() {
                self.stats.ssrc_changes += 1;
                self.jitter.reset();
                self.rtcp.on_new_source();
            }
            self.ssrc_in = Some(packet.ssrc());
            self.seq = SequenceExtender::new();
        }
        self.last_rx = Some(now);
        self.stats.packets_in += 1;
        self.stats.bytes_in += datagram.len() as u64;
        let Some(ext_seq) = self.seq.extend(packet.sequence()) else {
            self.stats.drop(DropReason::Malformed);
            return;
        };
        self.rtcp.on_rtp_received(now, ext_seq, packet.timestamp());
        let level = self.audio_level_ext.and_then(|id| packet.audio_level(id));
        self.last_audio_level = level.as_ref().map(|l| l.level_dbov);
        // RFC 6464 says this frame is silence: keep its place in the stream but skip the
        // decode (an empty payload is the marker for "silent frame").
        let silent = level.is_some_and(|l| !l.voice && l.level_dbov >= SILENT_DBOV);
        // The payload is a slice of the reader's arena: no copy.
        let payload = if silent { Bytes::new() } else { datagram.slice_ref(packet.payload()) };
        match self.jitter.insert(now, ext_seq, packet.timestamp(), payload) {
            InsertOutcome::Accepted | InsertOutcome::Resync => {}
            InsertOutcome::Duplicate => self.stats.drop(DropReason::Duplicate),
            InsertOutcome::Late => self.stats.drop(DropReason::Late),
            InsertOutcome::Overflow { .. } => self.stats.drop(DropReason::Overflow),
        }
    }

    /// Plays out one frame into the conference as `id`'s input (a silent frame, or nothing
    /// to play, leaves the participant not sending). Returns what the playout buffer did.
    pub(crate) fn playout(
        &mut self,
        now: Instant,
        conference: &mut Conference,
        id: ParticipantId,
    ) -> Pulled {
        let skip = self.skip_quiet_frame(conference, id);
        let pulled = self.jitter.pull(now, self.decoder.as_mut(), skip, &mut self.pcm);
        self.stats.concealed += u64::from(pulled.concealed);
        self.stats.fec_recovered += u64::from(pulled.fec);
        self.stats.silent_skipped += u64::from(pulled.silent);
        self.stats.quiet_skipped += u64::from(pulled.skipped);
        for _ in 0..pulled.undecodable {
            self.stats.drop(DropReason::Undecodable);
        }
        let calls = pulled.decoder_calls();
        self.stats.decodes += u64::from(calls);
        if pulled.frame != FrameKind::Audio {
            return pulled;
        }
        if self.quiet_decode_interval > 1 && calls > 0 {
            self.last_energy = mixminus_core::frame_energy(&self.pcm);
        }
        if let Ok(out) = conference.input_mut(id) {
            out.copy_from_slice(&self.pcm);
        }
        pulled
    }

    /// Whether to skip decoding this frame: with a quiet decode interval n > 1, a
    /// participant that is not talking and whose last decoded frame was under half its talk
    /// threshold is decoded only every n-th frame (it is not mixed, so only talk detection
    /// reads its audio). A sampled frame at or above half the threshold brings back
    /// every-frame decoding, so onset is seen at most n − 1 frames late.
    fn skip_quiet_frame(&mut self, conference: &Conference, id: ParticipantId) -> bool {
        if self.quiet_decode_interval <= 1 {
            return false;
        }
        let Some(info) = conference.participant(id) else { return false };
        let threshold = info.energy_threshold.unwrap_or(conference.config().talk.energy_threshold);
        let quiet =
            !info.talking && threshold > 0 && self.last_energy.saturating_mul(2) < threshold;
        if quiet && self.quiet_skipped_run + 1 < self.quiet_decode_interval {
            self.quiet_skipped_run += 1;
            return true;
        }
        self.quiet_skipped_run = 0;
        false
    }

    /// A send failed: ICMP unreachable from the peer (reported on the connected socket)
    /// ends the leg; anything else is counted.
    pub(crate) fn on_send_error(&mut self, error: &std::io::Error) {
        if crate::receive::is_unreachable(error) {
            self.unreachable = true;
        } else {
            self.stats.drop(DropReason::SocketError);
        }
    }

    /// Writes this leg's next RTP packet carrying `payload` into `buf`.
    pub(crate) fn packetise(&mut self, payload: &[u8], buf: &mut Vec<u8>) {
        buf.clear();
        write_rtp_header(
            buf,
            &RtpHeader {
                payload_type: self.codec.payload_type,
                marker: self.out_marker,
                sequence: self.out_seq,
                timestamp: self.out_ts,
                ssrc: self.out_ssrc,
            },
        );
        buf.extend_from_slice(payload);
        self.out_marker = false;
        self.out_seq = self.out_seq.wrapping_add(1);
        self.out_ts = self.out_ts.wrapping_add(self.out_ts_step);
    }

    /// Advances the outbound clock without sending, so timestamps stay continuous.
    pub(crate) fn skip_frame(&mut self) {
        if let Some(webrtc) = self.webrtc.as_mut() {
            webrtc.skip(self.out_ts_step);
        }
        self.out_ts = self.out_ts.wrapping_add(self.out_ts_step);
        self.out_marker = true;
    }

    /// Sends one RTP packet to `destination`, protected when the leg is SRTP.
    pub(crate) fn send_rtp(
        &mut self,
        packet: &[u8],
        destination: SocketAddr,
    ) -> std::io::Result<usize> {
        match self.srtp.as_mut() {
            Some(srtp) => match srtp.protect_rtp(packet) {
                Ok(protected) => self.ports.rtp.try_send_to(&protected, destination),
                Err(e) => Err(std::io::Error::other(e)),
            },
            None => self.ports.rtp.try_send_to(packet, destination),
        }
    }

    /// Sends one RTCP compound to `destination`, protected (SRTCP) when the leg is SRTP.
    pub(crate) fn send_rtcp(
        &mut self,
        packet: &[u8],
        destination: SocketAddr,
    ) -> std::io::Result<usize> {
        match self.srtp.as_mut() {
            Some(srtp) => match srtp.protect_rtcp(packet) {
                Ok(protected) => self.rtcp_socket().try_send_to(&protected, destination),
                Err(e) => Err(std::io::Error::other(e)),
            },
            None => self.rtcp_socket().try_send_to(packet, destination),
        }
    }

    pub(crate) fn rtcp_destination(&self) -> Option<SocketAddr> {
        if !self.consent {
            return None;
        }
        self.rtcp_remote.or_else(|| {
            let rtp = self.destination()?;
            Some(if self.rtcp_mux {
                rtp
            } else {
                SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
            })
        })
    }

    /// The socket RTCP leaves from: the RTP socket when multiplexed, so the peer sees one
    /// port (RFC 5761).
    pub(crate) fn rtcp_socket(&self) -> &tokio::net::UdpSocket {
        if self.rtcp_mux {
            &self.ports.rtp
        } else {
            &self.ports.rtcp
        }
    }

    /// Where RTCP goes, consent or not (the address RTCP from the peer may come from).
    pub(crate) fn rtcp_destination_any(&self) -> Option<SocketAddr> {
        self.rtcp_remote
    }

    pub(crate) fn learn_rtcp_source(&mut self, from: SocketAddr) {
        if self.rtcp_remote.is_none() {
            self.rtcp_remote = Some(from);
        }
    }

    /// The RTP timestamp of this tick's frame (the last one sent or skipped), which an SR
    /// sent this tick pairs with the tick's NTP time.
    pub(crate) fn rtp_time_now(&self) -> u32 {
        self.out_ts.wrapping_sub(self.out_ts_step)
    }

    pub(crate) fn ssrc_in(&self) -> Option<u32> {
        self.ssrc_in
    }

    pub(crate) fn jitter(&self) -> &JitterBuffer {
        &self.jitter
    }
}

/// How long consent lasts after the peer's last packet (RFC 7675's consent expiry).
pub(crate) const CONSENT_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);

/// RFC 6464 levels at or below −this dBov count as silence (level 127 is digital silence).
const SILENT_DBOV: u8 = 70;
