//! Rate conversion between a codec's clock and the conference rate, with rubato's FFT
//! resampler (fixed 20 ms-style chunks in and out, buffers allocated once).

use rubato::{FftFixedInOut, Resampler};

use super::plc::Plc;
use super::{AudioDecoder, AudioEncoder, CodecError, SampleCodec};

/// Converts one fixed-size frame between two rates.
struct RateConverter {
    resampler: FftFixedInOut<f32>,
    input: Vec<Vec<f32>>,
    output: Vec<Vec<f32>>,
}

impl RateConverter {
    fn new(from: u32, to: u32, frame_in: usize, frame_out: usize) -> Result<Self, CodecError> {
        let resampler = FftFixedInOut::<f32>::new(from as usize, to as usize, frame_in, 1)
            .map_err(|e| CodecError::Library(e.to_string()))?;
        if resampler.input_frames_next() != frame_in || resampler.output_frames_next() != frame_out
        {
            return Err(CodecError::InvalidParams(
                "codec and conference frames do not resample evenly",
            ));
        }
        Ok(Self { resampler, input: vec![vec![0.0; frame_in]], output: vec![vec![0.0; frame_out]] })
    }

    fn convert(&mut self, pcm_in: &[i16], pcm_out: &mut [i16]) {
        for (f, &s) in self.input[0].iter_mut().zip(pcm_in) {
            *f = s as f32;
        }
        if self.resampler.process_into_buffer(&self.input, &mut self.output, None).is_err() {
            // Cannot happen with the sizes checked at construction; play silence if it does.
            pcm_out.fill(0);
            return;
        }
        for (o, &f) in pcm_out.iter_mut().zip(&self.output[0]) {
            *o = f.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16;
        }
    }
}

/// A sample codec at its own rate, presented at the conference rate.
pub(crate) struct Resampled<C> {
    codec: C,
    codec_pcm: Vec<i16>,
    /// `None` when the rates are equal.
    converter: Option<RateConverter>,
    payload_len: usize,
    /// Samples in one conference frame.
    frame: usize,
    codec_rate: u32,
    conference_rate: u32,
    /// Concealment for lost frames (decoders only).
    plc: Option<Plc>,
    /// The last frame the encoder converted. rubato's FFT resampler carries only the
    /// overlap of its last chunk, so replaying this frame into a fresh converter puts it in
    /// exactly this one's state: how an encoder is duplicated.
    last_input: Vec<i16>,
}

impl<C: SampleCodec> Resampled<C> {
    fn new(
        codec: C,
        codec_rate: u32,
        conference_rate: u32,
        frame_samples: usize,
        decoding: bool,
    ) -> Result<Self, CodecError> {
        let codec_frame = frame_samples as u64 * codec_rate as u64 / conference_rate.max(1) as u64;
        let codec_frame = codec_frame as usize;
        if codec_frame == 0 || codec_frame > 8192 {
            return Err(CodecError::InvalidParams("frame size out of range"));
        }
        let converter = if codec_rate == conference_rate {
            None
        } else if decoding {
            Some(RateConverter::new(codec_rate, conference_rate, codec_frame, frame_samples)?)
        } else {
            Some(RateConverter::new(conference_rate, codec_rate, frame_samples, codec_frame)?)
        };
        let last_input =
            if decoding || converter.is_none() { Vec::new() } else { vec![0; frame_samples] };
        Ok(Self {
            codec,
            codec_pcm: vec![0; codec_frame],
            converter,
            payload_len: codec_frame * C::BYTES_PER_SAMPLE,
            frame: frame_samples,
            codec_rate,
            conference_rate,
            plc: decoding.then(|| Plc::new(codec_rate)),
            last_input,
        })
    }

    /// `codec_pcm` out at the conference rate.
    fn play_codec_pcm(&mut self, out: &mut [i16]) {
        match self.converter.as_mut() {
            // Equal rates: the codec frame is the conference frame.
            None => out.copy_from_slice(&self.codec_pcm),
            Some(converter) => converter.convert(&self.codec_pcm, out),
        }
    }

    /// Brings the converter into the state it had after converting `frame` (see
    /// `last_input`).
    fn replay(&mut self, frame: &[i16]) {
        if let Some(converter) = self.converter.as_mut() {
            converter.convert(frame, &mut self.codec_pcm);
            self.last_input.copy_from_slice(frame);
        }
    }

    pub(crate) fn decoder(
        codec: C,
        codec_rate: u32,
        conference_rate: u32,
        frame_samples: usize,
    ) -> Result<Box<dyn AudioDecoder + Send>, CodecError> {
        Ok(Box::new(Self::new(codec, codec_rate, conference_rate, frame_samples, true)?))
    }

    pub(crate) fn encoder(
        codec: C,
        codec_rate: u32,
        conference_rate: u32,
        frame_samples: usize,
    ) -> Result<Box<dyn AudioEncoder + Send>, CodecError> {
        Ok(Box::new(Self::new(codec, codec_rate, conference_rate, frame_samples, false)?))
    }
}

impl<C: SampleCodec> AudioDecoder for Resampled<C> {
    fn decode(&mut self, payload: &[u8], out: &mut [i16]) -> Result<usize, CodecError> {
        if payload.len() != self.payload_len {
            return Err(CodecError::InvalidPayload(
                "payload length does not match the packet time",
            ));
        }
        let out = out
            .get_mut(..self.frame)
            .ok_or(CodecError::InvalidInput("output buffer shorter than a frame"))?;
        self.codec.decode_samples(payload, &mut self.codec_pcm);
        if let Some(plc) = self.plc.as_mut() {
            plc.good_frame(&mut self.codec_pcm);
        }
        self.play_codec_pcm(out);
        Ok(self.frame)
    }

    fn conceal(&mut self, out: &mut [i16]) {
        // G.711 and L16 have no concealment of their own: G.711 Appendix I style (see
        // `plc`), at the codec's rate, through the resampler so its history stays
        // continuous.
        let Some(frame) = out.get_mut(..self.frame) else {
            out.fill(0);
            return;
        };
        match self.plc.as_mut() {
            Some(plc) => plc.conceal(&mut self.codec_pcm),
            None => self.codec_pcm.fill(0),
        }
        self.play_codec_pcm(frame);
    }
}

impl<C: SampleCodec> AudioEncoder for Resampled<C> {
    fn encode(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, CodecError> {
        if out.len() < self.payload_len {
            return Err(CodecError::InvalidInput("output buffer too small"));
        }
        if pcm.len() != self.frame {
            return Err(CodecError::InvalidInput("PCM is not one conference frame"));
        }
        match self.converter.as_mut() {
            None => self.codec.encode_samples(pcm, &mut out[..self.payload_len]),
            Some(converter) => {
                converter.convert(pcm, &mut self.codec_pcm);
                self.last_input.copy_from_slice(pcm);
                self.codec.encode_samples(&self.codec_pcm, &mut out[..self.payload_len]);
            }
        }
        Ok(self.payload_len)
    }

    fn duplicate(&self) -> Result<Box<dyn AudioEncoder + Send>, CodecError> {
        let mut copy = Self::new(
            self.codec.clone(),
            self.codec_rate,
            self.conference_rate,
            self.frame,
            false,
        )?;
        copy.replay(&self.last_input);
        Ok(Box::new(copy))
    }

    fn copy_state_from(&mut self, source: &dyn AudioEncoder) -> bool {
        match source.as_any().downcast_ref::<Self>() {
            Some(source)
                if source.frame == self.frame
                    && source.codec_rate == self.codec_rate
                    && source.conference_rate == self.conference_rate
                    && source.codec == self.codec =>
            {
                // Equal rates: no converter, and the codec itself has no state.
                if !source.last_input.is_empty() {
                    self.replay(&source.last_input);
                }
                true
            }
            _ => false,
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
