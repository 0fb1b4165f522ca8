//! Opus through audiopus (libopus): mono at the conference rate, FEC and concealment.

use audiopus::coder::{Decoder, Encoder};
use audiopus::packet::Packet;
use audiopus::{Application, Bitrate, Channels, MutSignals, SampleRate};

use super::{AudioDecoder, AudioEncoder, CodecError, CodecSettings};

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

fn library(e: audiopus::Error) -> CodecError {
    CodecError::Library(e.to_string())
}

pub(crate) struct OpusDecoder {
    decoder: Decoder,
}

impl OpusDecoder {
    pub(crate) fn new(rate: u32) -> Result<Self, CodecError> {
        Ok(Self { decoder: Decoder::new(sample_rate(rate)?, Channels::Mono).map_err(library)? })
    }
}

impl AudioDecoder for OpusDecoder {
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        let packet = Packet::try_from(payload)
            .map_err(|_| CodecError::InvalidPayload("empty Opus packet"))?;
        let signals = MutSignals::try_from(out).map_err(library)?;
        // libopus refuses (rather than overruns) packets longer than `out`.
        self.decoder.decode(Some(packet), signals, false).map_err(library)
    }

    fn conceal(&mut self, out: &mut [i16]) {
        let ok = MutSignals::try_from(&mut *out)
            .ok()
            .and_then(|signals| self.decoder.decode(None, signals, false).ok());
        if ok.is_none() {
            out.fill(0);
        }
    }

    fn decode_fec(&mut self, next_payload: &[u8], out: &mut [i16]) {
        let ok = Packet::try_from(next_payload).ok().and_then(|packet| {
            let signals = MutSignals::try_from(&mut *out).ok()?;
            self.decoder.decode(Some(packet), signals, true).ok()
        });
        if ok.is_none() {
            self.conceal(out);
        }
    }
}

pub(crate) struct OpusEncoder {
    encoder: Encoder,
}

impl OpusEncoder {
    pub(crate) fn new(rate: u32, settings: &CodecSettings) -> Result<Self, CodecError> {
        let mut encoder =
            Encoder::new(sample_rate(rate)?, Channels::Mono, Application::Voip).map_err(library)?;
        encoder
            .set_bitrate(Bitrate::BitsPerSecond(settings.bitrate.clamp(6_000, 510_000) as i32))
            .map_err(library)?;
        encoder.set_complexity(settings.complexity.min(10)).map_err(library)?;
        encoder.set_inband_fec(settings.fec).map_err(library)?;
        encoder.set_packet_loss_perc(settings.expected_loss_percent.min(100)).map_err(library)?;
        encoder.set_dtx(settings.dtx).map_err(library)?;
        Ok(Self { encoder })
    }
}

impl AudioEncoder for OpusEncoder {
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        self.encoder.encode(pcm, out).map_err(library)
    }
}
