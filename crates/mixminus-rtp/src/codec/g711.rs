//! G.711 µ-law and A-law through the audio-codec-algorithms crate.

use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};

use super::SampleCodec;

#[derive(Clone, PartialEq)]
pub(crate) struct G711 {
    ulaw: bool,
}

impl G711 {
    pub(crate) fn new(ulaw: bool) -> Self {
        Self { ulaw }
    }
}

impl SampleCodec for G711 {
    const BYTES_PER_SAMPLE: usize = 1;

    fn decode_samples(&self, payload: &[u8], out: &mut [i16]) {
        let decode = if self.ulaw { decode_ulaw } else { decode_alaw };
        for (o, &b) in out.iter_mut().zip(payload) {
            *o = decode(b);
        }
    }

    fn encode_samples(&self, pcm: &[i16], out: &mut [u8]) {
        let encode = if self.ulaw { encode_ulaw } else { encode_alaw };
        for (o, &s) in out.iter_mut().zip(pcm) {
            *o = encode(s);
        }
    }
}
