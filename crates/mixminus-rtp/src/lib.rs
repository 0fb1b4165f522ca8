//! # mixminus-rtp: RTP media and the conference runtime
//!
//! Everything between a UDP datagram and [`mixminus_core`]'s PCM frames, and the tokio
//! shell that drives a conference in real time.
//!
//! The media pieces are sans-IO, driven with time passed in: [`RtpPacket`] (parse, don't
//! validate), [`SequenceExtender`], [`JitterBuffer`], the codecs behind [`AudioDecoder`] /
//! [`AudioEncoder`] (Opus, PCMU, PCMA, L16, resampled with rubato), [`sdp`] offers and
//! answers. The runtime is a thin layer over them: a [`Bridge`] owns the RTP port range and
//! starts conferences; each conference is one tokio task that every frame reads every
//! participant's socket, plays one frame out of each jitter buffer, ticks the mixer, encodes
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
//! Choices made where the spec is silent: each participant gets an even RTP port and the odd
//! RTCP port above it; inbound RTP latches to the first valid source; sockets are read at
//! the tick (tokio's readiness cache makes an idle socket free), so arrival times are
//! quantised to the frame; a frame that RFC 6464 marks as silence is not decoded; the silence
//! group is encoded like any other, so every listener receives a continuous stream.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod client;
mod codec;
pub mod dsp;
mod fanout;
mod jitter;
mod leg;
mod packet;
mod ports;
mod rtcp;
mod runtime;
pub mod sdp;
mod seq;
mod stats;
mod tone;

pub use codec::{
    new_decoder, new_encoder, AudioDecoder, AudioEncoder, CodecError, CodecKind, CodecParams,
    CodecSettings,
};
pub use jitter::{InsertOutcome, JitterBuffer, JitterConfig, JitterStats, Playout};
pub use packet::{
    is_rtcp, write_rtp_header, write_rtp_header_with_audio_level, AudioLevel, HeaderExtensions,
    PacketError, RtpHeader, RtpPacket, MAX_RTP_DATAGRAM,
};
pub use rtcp::{parse_rtcp, RtcpError, RtcpSummary};
pub use runtime::{
    Bridge, BridgeConfig, ConferenceHandle, ConferenceSettings, JoinRequest, Joined, LegSnapshot,
    RuntimeError, Snapshot,
};
pub use seq::SequenceExtender;
pub use stats::{ConferenceCounters, DropReason, LegStats};
