//! Opus through audiopus (libopus): mono at the conference rate (every conference rate is
//! a native Opus rate, so nothing is resampled), FEC and concealment.

use audiopus::coder::Decoder;
use audiopus::packet::Packet;
use audiopus::{Channels, MutSignals, SampleRate};
use audiopus_sys as ffi;

use super::{AudioDecoder, AudioEncoder, CodecError, CodecSettings};

pub(crate) struct OpusDecoder {
    decoder: Decoder,
    frame: usize,
}

impl OpusDecoder {
    pub(crate) fn new(rate: u32, frame: usize) -> Result<Self, CodecError> {
        check_frame(rate, frame)?;
        let decoder = Decoder::new(sample_rate(rate)?, Channels::Mono).map_err(library)?;
        Ok(Self { decoder, frame })
    }
}

impl AudioDecoder for OpusDecoder {
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let out = out
            .get_mut(..self.frame)
            .ok_or(CodecError::InvalidInput("output buffer shorter than a frame"))?;
        let packet = || {
            Packet::try_from(payload).map_err(|_| CodecError::InvalidPayload("empty Opus packet"))
        };
        // A peer may pack 2.5–120 ms into a packet; only exactly one frame fits our tick.
        // Checked from the TOC before decoding, so a longer packet cannot overrun `out`.
        let found = self
            .decoder
            .nb_samples(packet()?)
            .map_err(|_| CodecError::InvalidPayload("malformed Opus packet"))?;
        if found != self.frame {
            return Err(CodecError::FrameMismatch { expected: self.frame, found });
        }
        let signals = MutSignals::try_from(out).map_err(library)?;
        self.decoder.decode(Some(packet()?), signals, false).map_err(library)
    }

    fn conceal(&mut self, out: &mut [i16]) {
        let Some(out) = out.get_mut(..self.frame) else {
            out.fill(0);
            return;
        };
        let ok = MutSignals::try_from(&mut *out)
            .ok()
            .and_then(|signals| self.decoder.decode(None, signals, false).ok());
        if ok.is_none() {
            out.fill(0);
        }
    }

    fn decode_fec(&mut self, next_payload: &[u8], out: &mut [i16]) {
        let Some(frame) = out.get_mut(..self.frame) else {
            out.fill(0);
            return;
        };
        // With `fec = true` libopus rebuilds the frame *before* `next_payload` at the
        // length of `frame` (or conceals if the packet carries no FEC).
        let ok = Packet::try_from(next_payload).ok().and_then(|packet| {
            let signals = MutSignals::try_from(&mut *frame).ok()?;
            self.decoder.decode(Some(packet), signals, true).ok()
        });
        if ok.is_none() {
            self.conceal(out);
        }
    }
}

/// An Opus encoder whose whole libopus state lives in one buffer we own.
///
/// libopus keeps an encoder in a single flat, position-independent block
/// (`opus_encoder_get_size`, `opus_encoder_init`; its SILK and CELT parts are found by
/// offsets, not pointers). Owning that block lets a mix group that splits off start from a
/// byte copy of the encoder its listeners were decoding ([`AudioEncoder::copy_state_from`]),
/// so their decoders see one continuous stream. audiopus does not expose the block, hence
/// the few FFI calls here.
pub(crate) struct OpusEncoder {
    state: Vec<StateWord>,
    frame: usize,
}

/// One 16-byte-aligned unit of encoder state (libopus aligns its own allocations this way).
#[derive(Clone, Copy, Default)]
#[repr(C, align(16))]
struct StateWord([u8; 16]);

impl OpusEncoder {
    pub(crate) fn new(
        rate: u32,
        frame: usize,
        settings: &CodecSettings,
    ) -> Result<Self, CodecError> {
        check_frame(rate, frame)?;
        let hz = sample_rate(rate)? as i32;
        // SAFETY: a pure size query for one channel.
        let size = unsafe { ffi::opus_encoder_get_size(1) };
        if size <= 0 {
            return Err(CodecError::Library("opus_encoder_get_size failed".into()));
        }
        let words = (size as usize).div_ceil(std::mem::size_of::<StateWord>());
        let mut encoder = Self { state: vec![StateWord::default(); words], frame };
        // SAFETY: `state` holds at least `opus_encoder_get_size(1)` bytes, aligned to 16.
        let code =
            unsafe { ffi::opus_encoder_init(encoder.raw(), hz, 1, ffi::OPUS_APPLICATION_VOIP) };
        check(code)?;
        // Clamped to what libopus accepts; `as` cannot truncate after the clamp.
        encoder
            .ctl(ffi::OPUS_SET_BITRATE_REQUEST, settings.bitrate.clamp(6_000, 510_000) as i32)?;
        encoder.ctl(ffi::OPUS_SET_COMPLEXITY_REQUEST, i32::from(settings.complexity.min(10)))?;
        encoder.ctl(ffi::OPUS_SET_INBAND_FEC_REQUEST, i32::from(settings.fec))?;
        encoder.ctl(
            ffi::OPUS_SET_PACKET_LOSS_PERC_REQUEST,
            i32::from(settings.expected_loss_percent.min(100)),
        )?;
        encoder.ctl(ffi::OPUS_SET_DTX_REQUEST, i32::from(settings.dtx))?;
        encoder.ctl(ffi::OPUS_SET_SIGNAL_REQUEST, ffi::OPUS_SIGNAL_VOICE)?;
        Ok(encoder)
    }

    fn raw(&mut self) -> *mut ffi::OpusEncoder {
        self.state.as_mut_ptr().cast()
    }

    /// One `opus_encoder_ctl` setter with an `opus_int32` argument.
    fn ctl(&mut self, request: i32, value: i32) -> Result<(), CodecError> {
        // SAFETY: the state was initialised by `opus_encoder_init`; every request used here
        // is a setter taking exactly one `opus_int32`.
        check(unsafe { ffi::opus_encoder_ctl(self.raw(), request, value) })
    }
}

impl AudioEncoder for OpusEncoder {
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        if pcm.len() != self.frame {
            return Err(CodecError::InvalidInput("PCM is not one conference frame"));
        }
        let capacity = out.len().min(i32::MAX as usize) as i32;
        // SAFETY: `pcm` holds exactly `frame` mono samples (checked above) and `out` has
        // `capacity` writable bytes; libopus writes at most that many.
        let written = unsafe {
            ffi::opus_encode(
                self.raw(),
                pcm.as_ptr(),
                self.frame as i32,
                out.as_mut_ptr(),
                capacity,
            )
        };
        check(written)?;
        Ok(written as usize)
    }

    fn duplicate(&self) -> Result<Box<dyn AudioEncoder + Send>, CodecError> {
        // A byte copy is a complete, independent encoder (see the type's docs).
        Ok(Box::new(Self { state: self.state.clone(), frame: self.frame }))
    }

    fn copy_state_from(&mut self, source: &dyn AudioEncoder) -> bool {
        match source.as_any().downcast_ref::<Self>() {
            Some(source)
                if source.state.len() == self.state.len() && source.frame == self.frame =>
            {
                self.state.copy_from_slice(&source.state);
                true
            }
            _ => false,
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A libopus return code: negative is an error.
fn check(code: i32) -> Result<(), CodecError> {
    if code < 0 {
        Err(CodecError::Library(format!("libopus error {code}")))
    } else {
        Ok(())
    }
}

fn sample_rate(hz: u32) -> Result<SampleRate, CodecError> {
    Ok(match hz {
        8_000 => SampleRate::Hz8000,
        12_000 => SampleRate::Hz12000,
        16_000 => SampleRate::Hz16000,
        24_000 => SampleRate::Hz24000,
        48_000 => SampleRate::Hz48000,
        _ => return Err(CodecError::InvalidParams("Opus needs 8, 12, 16, 24 or 48 kHz")),
    })
}

/// Opus frames are 2.5, 5, 10, 20, 40 or 60 ms.
fn check_frame(rate: u32, frame: usize) -> Result<(), CodecError> {
    let per_2_5_ms = rate as usize / 400;
    let ok = frame > 0 && frame % per_2_5_ms.max(1) == 0 && {
        let units = frame / per_2_5_ms.max(1);
        matches!(units, 1 | 2 | 4 | 8 | 16 | 24)
    };
    if ok {
        Ok(())
    } else {
        Err(CodecError::InvalidParams("Opus frames are 2.5, 5, 10, 20, 40 or 60 ms"))
    }
}

fn library(e: audiopus::Error) -> CodecError {
    CodecError::Library(e.to_string())
}
