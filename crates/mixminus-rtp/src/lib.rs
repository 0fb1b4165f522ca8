//! # mixminus-rtp: RTP media and the conference runtime
//!
//! Everything between a UDP datagram and [`mixminus_core`]'s PCM frames, and the tokio
//! shell that drives a conference in real time.
//!
//! The media pieces are sans-IO, driven with time passed in: [`RtpPacket`] (parse, don't
//! validate), [`SequenceExtender`], [`JitterBuffer`] (the playout buffer: packets in,
//! one frame of decoded, time-stretched audio out per tick), the codecs behind [`AudioDecoder`] /
//! [`AudioEncoder`] (Opus, PCMU, PCMA, L16, resampled with rubato), [`sdp`] offers and
//! answers. The runtime is a thin layer over them: a [`Bridge`] owns the RTP port range and
//! starts conferences; each conference is one tokio task that takes each participant's
//! datagrams as they arrive and every frame plays one frame out of each playout buffer, ticks the mixer, encodes
//! **once per mix group and codec**, and sends each listener its group's payload behind its
//! own RTP header.
//!
//! ```no_run
//! use mixminus_rtp::{Bridge, BridgeConfig, CodecKind, CodecParams, ConferenceSettings, JoinRequest};
//! # async fn run() -> Result<(), mixminus_rtp::RuntimeError> {
//! let bridge = Bridge::new(BridgeConfig::default())?;
//! let conference = bridge.start_conference(ConferenceSettings::default())?;
//! // A participant that sends Opus; its mix goes back where its RTP comes from.
//! let joined = conference.join(JoinRequest::new(CodecParams::new(CodecKind::Opus), None)).await?;
//! println!("send RTP to {}", joined.local_rtp);
//! let snapshot = conference.snapshot();
//! println!("{} participants", snapshot.participants.len());
//! conference.stop().await?;
//! # Ok(()) }
//! ```
//!
//! The media pieces on their own, one participant's inbound path (what the runtime does per
//! packet and per tick), with time passed in:
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use mixminus_rtp::{
//!     new_decoder, new_encoder, write_rtp_header, CodecKind, CodecParams, CodecSettings,
//!     FrameKind, JitterBuffer, JitterConfig, RtpHeader, RtpPacket, SequenceExtender,
//! };
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (rate, frame) = (48_000, 960); // 20 ms conference frames
//! let params = CodecParams::new(CodecKind::Pcmu);
//! let mut decoder = new_decoder(&params, rate, frame)?; // 8 kHz G.711, resampled to 48 kHz
//! let mut seq = SequenceExtender::new();
//! let mut jitter = JitterBuffer::new(JitterConfig::default(), 20, params.clock_rate, frame);
//!
//! // A peer's datagram (made here with our own writer and encoder).
//! let mut encoder = new_encoder(&params, &CodecSettings::default(), rate, frame)?;
//! let mut datagram = Vec::new();
//! let header = RtpHeader { payload_type: 0, marker: true, sequence: 7, timestamp: 0, ssrc: 42 };
//! write_rtp_header(&mut datagram, &header);
//! let mut payload = [0u8; 160];
//! let n = encoder.encode(&[0i16; 960], &mut payload)?;
//! datagram.extend_from_slice(&payload[..n]);
//!
//! // On arrival: parse once at the edge, extend the sequence number, buffer.
//! let now = Instant::now();
//! let packet = RtpPacket::parse(&datagram)?;
//! if let Some(ext) = seq.extend_ssrc(packet.ssrc(), packet.sequence()) {
//!     jitter.insert(now, ext, packet.timestamp(), Bytes::copy_from_slice(packet.payload()));
//! }
//!
//! // Every conference tick: exactly one pull. The buffer decodes, rebuilds from FEC or
//! // conceals as it needs, and time-stretches to follow the jitter.
//! let mut pcm = vec![0i16; frame];
//! let pulled = jitter.pull(now, decoder.as_mut(), false, &mut pcm);
//! match pulled.frame {
//!     FrameKind::Audio => {} // mix `pcm`
//!     _ => {}                // silence, or not sending: leave this participant out
//! }
//! # Ok(()) }
//! ```
//!
//! Choices made where the spec is silent: each participant gets an even RTP port and the odd
//! RTCP port above it, the pair chosen at random in the range; inbound RTP latches to the
//! first valid source (or the host the join named), and the latch `connect()`s the socket so
//! the kernel drops every other source; one reader task per socket reads datagrams as they
//! arrive, stamps each with its arrival time and charges it to its source's budget before
//! the leg sees it (`handle_input(now, from, datagram)`, sans-IO), so the jitter buffer sees
//! real arrival times; a frame that RFC 6464 marks as silence is not decoded; the silence
//! group is encoded like any other, so every listener receives a continuous stream.

// Only the Opus encoder (which owns libopus's state block) opts out, with SAFETY notes.
#![deny(unsafe_code)]
#![deny(missing_docs)]

// Media building blocks: sans-IO, no clock reads, no allocation per packet.
mod codec;
pub mod dsp;
mod jitter;
mod packet;
mod rtcp;
pub mod sdp;
mod seq;
pub mod srtp;

// Runtime (tokio): ports, legs, the tick loop, encode fan-out and the test client. Owned by
// the runtime side; runtime modules are added here.
pub mod client;
mod fanout;
mod leg;
pub mod media;
mod ports;
mod receive;
mod runtime;
mod stats;
mod tone;
pub mod webrtc;
pub mod webrtc_client;

pub use codec::{
    new_decoder, new_encoder, AudioDecoder, AudioEncoder, CodecError, CodecKind, CodecParams,
    CodecSettings, OpusFmtp, MAX_PAYLOAD,
};
pub use ipnet::IpNet;
pub use jitter::{FrameKind, InsertOutcome, JitterBuffer, JitterConfig, JitterStats, Pulled};
pub use packet::{
    is_one_byte_extension_id, is_rtcp, write_rtp_header, write_rtp_header_with_audio_level,
    AudioLevel, HeaderExtensions, PacketError, RtpHeader, RtpPacket, MAX_RTP_DATAGRAM,
};
pub use rtcp::{
    parse_rtcp, PeerReport, ReportBlock, RtcpError, RtcpStats, RtcpSummary, SenderInfo,
};
pub use runtime::{
    Bridge, BridgeConfig, ConferenceHandle, ConferenceSettings, JoinRequest, Joined, LegSnapshot,
    ReservedPorts, RuntimeError, Snapshot,
};
pub use seq::SequenceExtender;
pub use stats::{ConferenceCounters, DropReason, LegStats};
pub use tone::write_beep;
