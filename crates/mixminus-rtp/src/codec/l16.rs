//! L16: 16-bit linear PCM, network byte order (RFC 3551 §4.5.11).

use super::SampleCodec;

#[derive(Clone, PartialEq)]
pub(crate) struct L16;

impl SampleCodec for L16 {
    const BYTES_PER_SAMPLE: usize = 2;

    fn decode_samples(&self, payload: &[u8], out: &mut [i16]) {
        for (o, pair) in out.iter_mut().zip(payload.chunks_exact(2)) {
            *o = i16::from_be_bytes([pair[0], pair[1]]);
        }
    }

    fn encode_samples(&self, pcm: &[i16], out: &mut [u8]) {
        for (pair, &s) in out.chunks_exact_mut(2).zip(pcm) {
            pair.copy_from_slice(&s.to_be_bytes());
        }
    }
}
