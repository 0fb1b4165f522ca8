//! Opus through audiopus (libopus): mono at the conference rate (every conference rate is
//! a native Opus rate, so nothing is resampled), FEC and concealment.

use audiopus::coder::{Decoder, Encoder};
use audiopus::packet::Packet;
use audiopus::{Application, Bitrate, Channels, MutSignals, SampleRate, Signal};

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

pub(crate) struct OpusEncoder {
    encoder: Encoder,
    frame: usize,
}

impl OpusEncoder {
    pub(crate) fn new(
        rate: u32,
        frame: usize,
        settings: &CodecSettings,
    ) -> Result<Self, CodecError> {
        check_frame(rate, frame)?;
        let mut encoder =
            Encoder::new(sample_rate(rate)?, Channels::Mono, Application::Voip).map_err(library)?;
        // Clamped to what libopus accepts; `as` cannot truncate after the clamp.
        let bitrate = settings.bitrate.clamp(6_000, 510_000) as i32;
        encoder.set_bitrate(Bitrate::BitsPerSecond(bitrate)).map_err(library)?;
        encoder.set_complexity(settings.complexity.min(10)).map_err(library)?;
        encoder.set_inband_fec(settings.fec).map_err(library)?;
        encoder.set_packet_loss_perc(settings.expected_loss_percent.min(100)).map_err(library)?;
        encoder.set_dtx(settings.dtx).map_err(library)?;
        encoder.set_signal(Signal::Voice).map_err(library)?;
        Ok(Self { encoder, frame })
    }
}

impl AudioEncoder for OpusEncoder {
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        if pcm.len() != self.frame {
            return Err(CodecError::InvalidInput("PCM is not one conference frame"));
        }
        self.encoder.encode(pcm, out).map_err(library)
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
