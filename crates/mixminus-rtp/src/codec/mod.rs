//! Codecs behind one trait pair, all speaking conference-rate mono PCM on our side.
//!
//! Decoders and encoders own their scratch buffers and write into the caller's buffer
//! (Symphonia's habit): no allocation per packet. A codec whose clock rate differs from the
//! conference's (G.711 at 8 kHz into a 48 kHz conference, say) goes through a rubato
//! resampler set up once, at construction.

/// The largest payload any encoder writes (a datagram minus RTP and UDP/IP headers).
pub const MAX_PAYLOAD: usize = 1400;

mod g711;
mod l16;
mod plc;
// The encoder owns libopus's state block so it can be copied (see `OpusEncoder`); that
// takes a handful of FFI calls, each with its SAFETY note.
#[allow(unsafe_code)]
mod opus;
mod resample;

use resample::Resampled;

/// The codecs we mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodecKind {
    /// Opus (RFC 7587), always 48 kHz RTP clock; FEC, DTX and concealment.
    Opus,
    /// G.711 µ-law, 8 kHz.
    Pcmu,
    /// G.711 A-law, 8 kHz.
    Pcma,
    /// Linear 16-bit big-endian PCM (RFC 3551), mono.
    L16,
}

impl CodecKind {
    /// The payload type used when SDP does not say otherwise: the static PCMU 0 and PCMA 8
    /// (RFC 3551), and the customary dynamic 111 for Opus and 96 for L16.
    pub const fn default_payload_type(self) -> u8 {
        match self {
            CodecKind::Opus => 111,
            CodecKind::Pcmu => 0,
            CodecKind::Pcma => 8,
            CodecKind::L16 => 96,
        }
    }

    /// The RTP clock rate used when SDP does not say otherwise (Opus is always 48 kHz on
    /// the wire, RFC 7587; L16 defaults to 16 kHz, which fits 20 ms in one datagram).
    pub const fn default_clock_rate(self) -> u32 {
        match self {
            CodecKind::Opus => 48_000,
            CodecKind::Pcmu | CodecKind::Pcma => 8_000,
            CodecKind::L16 => 16_000,
        }
    }

    /// The name used in SDP and in the control API (lowercase).
    pub const fn name(self) -> &'static str {
        match self {
            CodecKind::Opus => "opus",
            CodecKind::Pcmu => "pcmu",
            CodecKind::Pcma => "pcma",
            CodecKind::L16 => "l16",
        }
    }

    /// Parses a control-API codec name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "opus" => CodecKind::Opus,
            "pcmu" => CodecKind::Pcmu,
            "pcma" => CodecKind::Pcma,
            "l16" => CodecKind::L16,
            _ => return None,
        })
    }
}

/// How one leg's RTP carries audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecParams {
    /// Which codec.
    pub kind: CodecKind,
    /// RTP payload type.
    pub payload_type: u8,
    /// RTP clock rate (Opus: always 48000).
    pub clock_rate: u32,
    /// Channels signalled (Opus: 2 in SDP; we always decode and encode mono).
    pub channels: u8,
    /// Packet duration, ms (must equal the conference frame).
    pub ptime_ms: u32,
    /// What the peer's SDP says about the Opus it receives (`a=fmtp`); all `None` for a
    /// join without SDP, which then gets the conference's settings.
    pub opus_fmtp: OpusFmtp,
}

/// The Opus `a=fmtp` parameters of one side (RFC 7587 §6.1) that shape what we send it
/// or say in our answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct OpusFmtp {
    /// `maxaveragebitrate`: the most the receiver wants, bit/s.
    pub max_average_bitrate: Option<u32>,
    /// `useinbandfec`: whether the receiver can use in-band FEC (RFC default: no).
    pub use_inband_fec: Option<bool>,
    /// `usedtx`: whether the receiver prefers DTX.
    pub use_dtx: Option<bool>,
    /// `minptime`, ms.
    pub min_ptime: Option<u32>,
}

impl OpusFmtp {
    /// Parses the value of an `a=fmtp:<pt> …` line (`key=value;key=value`); unknown keys
    /// and malformed values are ignored, as RFC 7587 asks of receivers.
    pub fn parse(params: &str) -> Self {
        let mut fmtp = Self::default();
        for pair in params.split(';') {
            let Some((key, value)) = pair.split_once('=') else { continue };
            let value = value.trim();
            let flag = match value {
                "1" => Some(true),
                "0" => Some(false),
                _ => None,
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "maxaveragebitrate" => {
                    fmtp.max_average_bitrate =
                        value.parse::<u32>().ok().filter(|b| (6_000..=510_000).contains(b));
                }
                "useinbandfec" => fmtp.use_inband_fec = flag,
                "usedtx" => fmtp.use_dtx = flag,
                "minptime" => fmtp.min_ptime = value.parse::<u32>().ok().filter(|&p| p <= 120),
                _ => {}
            }
        }
        fmtp
    }

    /// The encoder settings for a receiver with these parameters: the conference's,
    /// capped at its `maxaveragebitrate`; FEC as the receiver asks (`useinbandfec`), or
    /// the conference's choice when it says nothing (a join without SDP); DTX only where
    /// both the conference and the receiver want it.
    pub fn applied_to(&self, conference: &CodecSettings) -> CodecSettings {
        let mut settings = *conference;
        if let Some(max) = self.max_average_bitrate {
            settings.bitrate = settings.bitrate.min(max);
        }
        if let Some(fec) = self.use_inband_fec {
            settings.fec = fec;
        }
        if self.use_dtx == Some(false) {
            settings.dtx = false;
        }
        settings
    }
}

impl CodecParams {
    /// The usual parameters: Opus PT 111 / 48 kHz, PCMU PT 0, PCMA PT 8, L16 PT 96 / 16 kHz
    /// (20 ms of L16 at 48 kHz would not fit a 1500-byte datagram); 20 ms packets.
    pub const fn new(kind: CodecKind) -> Self {
        // Opus is signalled as 2 channels in SDP whatever is sent (RFC 7587 §7).
        let channels = if matches!(kind, CodecKind::Opus) { 2 } else { 1 };
        Self {
            kind,
            payload_type: kind.default_payload_type(),
            clock_rate: kind.default_clock_rate(),
            channels,
            ptime_ms: 20,
            opus_fmtp: OpusFmtp {
                max_average_bitrate: None,
                use_inband_fec: None,
                use_dtx: None,
                min_ptime: None,
            },
        }
    }

    /// Checks what a type cannot: payload type 0..=127, a supported clock rate, a ptime.
    pub fn validate(&self) -> Result<(), CodecError> {
        if self.payload_type > 127 {
            return Err(CodecError::InvalidParams("payload_type must be 0..=127"));
        }
        let rate_ok = match self.kind {
            CodecKind::Opus => self.clock_rate == 48_000,
            CodecKind::Pcmu | CodecKind::Pcma => self.clock_rate == 8_000,
            CodecKind::L16 => {
                matches!(self.clock_rate, 8_000 | 16_000 | 24_000 | 32_000 | 44_100 | 48_000)
            }
        };
        if !rate_ok {
            return Err(CodecError::InvalidParams("unsupported clock rate for this codec"));
        }
        if !matches!(self.ptime_ms, 10 | 20 | 40 | 60) {
            return Err(CodecError::InvalidParams("ptime must be 10, 20, 40 or 60 ms"));
        }
        if self.kind == CodecKind::L16
            && self.clock_rate * self.ptime_ms * 2 / 1000 > MAX_PAYLOAD as u32
        {
            return Err(CodecError::InvalidParams(
                "L16 at this rate and ptime does not fit a datagram",
            ));
        }
        Ok(())
    }
}

/// Encoder settings, shared by every group encoder of a conference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CodecSettings {
    /// Opus bitrate, bit/s.
    pub bitrate: u32,
    /// Opus complexity 0..=10.
    pub complexity: u8,
    /// Opus in-band FEC for receivers whose SDP says nothing (one that says
    /// `useinbandfec=1` gets it anyway, one that says `0` never: see [`OpusFmtp`]).
    pub fec: bool,
    /// Opus discontinuous transmission.
    pub dtx: bool,
    /// Expected packet loss, % (tunes Opus FEC).
    pub expected_loss_percent: u8,
}

impl Default for CodecSettings {
    /// 40 kbit/s, complexity 8, FEC only for receivers that ask for it, no DTX: chosen from
    /// the bitrate × complexity × FEC table in `docs/QUALITY.md` (PESQ wideband 4.08 at
    /// 39 kbit/s of payload, above Janus AudioBridge's 3.99 at 43.8 kbit/s; complexity 10
    /// scores the same, FEC costs 0.2 on a clean network). Encodes are per mix group, not
    /// per listener, so a high complexity costs little.
    fn default() -> Self {
        Self { bitrate: 40_000, complexity: 8, fec: false, dtx: false, expected_loss_percent: 5 }
    }
}

/// A codec failure. The frame is concealed or dropped; nothing panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The codec library refused the payload or the call.
    #[error("codec library error: {0}")]
    Library(String),
    /// The payload cannot be decoded (wrong size, empty, …).
    #[error("invalid payload: {0}")]
    InvalidPayload(&'static str),
    /// The payload holds a different duration than one conference frame (an Opus peer may
    /// send anything from 2.5 to 120 ms per packet).
    #[error("payload holds {found} samples per channel, the conference frame is {expected}")]
    FrameMismatch {
        /// Samples in one conference frame.
        expected: usize,
        /// Samples the payload holds, at the conference rate.
        found: usize,
    },
    /// The input PCM is not one frame, or the output buffer is too small.
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The codec parameters are unusable.
    #[error("invalid codec parameters: {0}")]
    InvalidParams(&'static str),
}

/// Turns one payload into one frame of conference-rate mono PCM.
///
/// A decoder is made for one frame size (`frame_samples` in [`new_decoder`]); `out` must
/// hold at least that many samples, and exactly that many are written. Decoders own their
/// scratch memory: nothing is allocated per packet. Nothing a peer sends makes one panic.
pub trait AudioDecoder {
    /// Decodes `payload` into `out[..frame]`; returns the samples written (one frame).
    /// A payload that is malformed, or holds another duration than one frame, is an error
    /// and leaves the decoder ready for the next packet (conceal the frame instead).
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError>;
    /// Fills `out[..frame]` for a lost frame (decoder concealment where the codec has it,
    /// else silence); a shorter `out` is filled with silence.
    fn conceal(&mut self, out: &mut [i16]);
    /// Recovers a lost frame from the next packet's in-band FEC (Opus), else conceals. Call
    /// it *instead of* [`conceal`](Self::conceal) for the lost frame, then decode
    /// `next_payload` normally for its own frame.
    fn decode_fec(&mut self, next_payload: &[u8], out: &mut [i16]) {
        let _ = next_payload;
        self.conceal(out);
    }
}

/// Turns one frame of conference-rate mono PCM into one payload.
///
/// Encoders can be duplicated with their whole state (codec and resampler history), so a
/// stream can fork: a listener that leaves a mix group keeps receiving from a copy of the
/// encoder its decoder has been tracking, and never hears a state discontinuity.
pub trait AudioEncoder: std::any::Any {
    /// Encodes `pcm` (exactly one conference frame) into `out`; returns the payload
    /// length. [`MAX_PAYLOAD`] bytes of `out` are always enough.
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError>;
    /// A new encoder in exactly this one's state: both produce the same payloads for the
    /// same input from here on. Allocates; see [`copy_state_from`](Self::copy_state_from).
    fn duplicate(&self) -> Result<Box<dyn AudioEncoder + Send>, CodecError>;
    /// Puts this encoder into `source`'s exact state without allocating, when both were
    /// made with the same codec, rates and frame size; returns false (and changes
    /// nothing) otherwise.
    fn copy_state_from(&mut self, source: &dyn AudioEncoder) -> bool;
    /// `self` as [`Any`](std::any::Any), for [`copy_state_from`](Self::copy_state_from).
    fn as_any(&self) -> &dyn std::any::Any;
}

/// A decoder for `params` producing `frame_samples` samples at `conference_rate`.
pub fn new_decoder(
    params: &CodecParams,
    conference_rate: u32,
    frame_samples: usize,
) -> Result<Box<dyn AudioDecoder + Send>, CodecError> {
    params.validate()?;
    Ok(match params.kind {
        // Opus decodes at any of its native rates, which include every conference rate.
        CodecKind::Opus => Box::new(opus::OpusDecoder::new(conference_rate, frame_samples)?),
        CodecKind::Pcmu | CodecKind::Pcma => Resampled::decoder(
            g711::G711::new(params.kind == CodecKind::Pcmu),
            params.clock_rate,
            conference_rate,
            frame_samples,
        )?,
        _ => Resampled::decoder(l16::L16, params.clock_rate, conference_rate, frame_samples)?,
    })
}

/// An encoder for `params` taking `frame_samples` samples at `conference_rate`.
pub fn new_encoder(
    params: &CodecParams,
    settings: &CodecSettings,
    conference_rate: u32,
    frame_samples: usize,
) -> Result<Box<dyn AudioEncoder + Send>, CodecError> {
    params.validate()?;
    Ok(match params.kind {
        CodecKind::Opus => {
            Box::new(opus::OpusEncoder::new(conference_rate, frame_samples, settings)?)
        }
        CodecKind::Pcmu | CodecKind::Pcma => Resampled::encoder(
            g711::G711::new(params.kind == CodecKind::Pcmu),
            params.clock_rate,
            conference_rate,
            frame_samples,
        )?,
        _ => Resampled::encoder(l16::L16, params.clock_rate, conference_rate, frame_samples)?,
    })
}

/// A sample-per-sample codec at its own rate (G.711, L16), wrapped by [`Resampled`].
pub(crate) trait SampleCodec: Clone + PartialEq + Send + 'static {
    /// Bytes per sample in the payload.
    const BYTES_PER_SAMPLE: usize;
    fn decode_samples(&self, payload: &[u8], out: &mut [i16]);
    fn encode_samples(&self, pcm: &[i16], out: &mut [u8]);
}

#[cfg(test)]
mod tests;
