//! Media files: clips decoded for playback into a conference, and recordings of a
//! conference's mix.
//!
//! - [`MediaClip::load`] decodes a WAV (hound) or Ogg/Opus (the `ogg` crate and libopus)
//!   file whole, downmixes it to mono and resamples it (rubato) to the conference rate. It
//!   runs off the conference task (the control plane calls it on a blocking thread); the
//!   tick only copies frames out of the decoded clip.
//! - A playback is a hidden source in the mixer (see `player`): the matrix, a listener's
//!   `deaf` flag and relationships naming the playback apply to it as to any source; a
//!   playback meant for one participant is muted toward everyone else with ordinary `mute`
//!   records, so the mix stays exactly the core's.
//! - A recording (see `recorder`) is a hidden listener that hears everyone: what it hears
//!   each tick is copied into a buffer from a fixed pool and handed over a bounded queue to
//!   a writer thread that encodes (Ogg/Opus or WAV) and writes. When the pool is empty (the
//!   disk is slow) the frame is dropped and counted; the tick never waits and allocates
//!   nothing.

mod ogg_opus;
mod player;
pub(crate) mod recorder;
pub(crate) mod state;

use std::io::{Cursor, Read};
use std::path::Path;
use std::sync::Arc;

use rubato::{FftFixedIn, Resampler};

pub use player::{PlaybackEnd, PlaybackSnapshot};
pub use recorder::{
    RecordingEnd, RecordingFormat, RecordingRequest, RecordingSnapshot, RecordingSummary,
};
pub use state::{MediaEvent, MAX_PLAYBACKS};

/// Bounds on a media file that is decoded for playback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MediaLimits {
    /// Largest file read, bytes.
    pub max_bytes: u64,
    /// Longest clip decoded, seconds.
    pub max_seconds: u32,
}

impl Default for MediaLimits {
    fn default() -> Self {
        Self { max_bytes: 16 * 1024 * 1024, max_seconds: 600 }
    }
}

/// Why a media file could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// Reading the file failed.
    #[error("reading the file: {0}")]
    Io(#[from] std::io::Error),
    /// The file is larger than [`MediaLimits::max_bytes`].
    #[error("the file is larger than {0} bytes")]
    TooLarge(u64),
    /// The audio is longer than [`MediaLimits::max_seconds`].
    #[error("the audio is longer than {0} s")]
    TooLong(u32),
    /// Neither WAV nor Ogg/Opus, or a variant of them not supported.
    #[error("unsupported media: {0}")]
    Unsupported(&'static str),
    /// The file claims a format but its content is broken.
    #[error("malformed media: {0}")]
    Malformed(String),
}

/// A decoded clip: mono samples at one conference rate, shared (cheap to clone).
#[derive(Debug, Clone)]
pub struct MediaClip {
    pcm: Arc<[i16]>,
    rate: u32,
}

impl MediaClip {
    /// A clip from samples already at `rate`.
    pub fn from_pcm(pcm: Vec<i16>, rate: u32) -> Self {
        Self { pcm: pcm.into(), rate }
    }

    /// Decodes `path` (WAV or Ogg/Opus, found by its first bytes, not its name) to mono at
    /// `rate` Hz, within `limits`. Blocking: call it off any tick.
    pub fn load(path: &Path, rate: u32, limits: &MediaLimits) -> Result<Self, MediaError> {
        let file = std::fs::File::open(path)?;
        if file.metadata()?.len() > limits.max_bytes {
            return Err(MediaError::TooLarge(limits.max_bytes));
        }
        let mut bytes = Vec::new();
        // The length was checked, but the file may grow while it is read.
        file.take(limits.max_bytes + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > limits.max_bytes {
            return Err(MediaError::TooLarge(limits.max_bytes));
        }
        Self::decode(&bytes, rate, limits)
    }

    /// Decodes a WAV or Ogg/Opus file held in memory (see [`MediaClip::load`]).
    pub fn decode(bytes: &[u8], rate: u32, limits: &MediaLimits) -> Result<Self, MediaError> {
        let (mono, file_rate) = if bytes.starts_with(b"RIFF") {
            decode_wav(bytes, limits)?
        } else if bytes.starts_with(b"OggS") {
            ogg_opus::decode(bytes, limits)?
        } else {
            return Err(MediaError::Unsupported("not a WAV or Ogg/Opus file"));
        };
        let pcm = resample(&mono, file_rate, rate)?;
        Ok(Self { pcm: pcm.into(), rate })
    }

    /// The samples.
    pub fn pcm(&self) -> &[i16] {
        &self.pcm
    }

    /// Its sample rate.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Its length in milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.pcm.len() as u64 * 1000 / u64::from(self.rate.max(1))
    }
}

/// WAV through hound: integer 8–32 bit or float 32, any channel count, downmixed.
fn decode_wav(bytes: &[u8], limits: &MediaLimits) -> Result<(Vec<f32>, u32), MediaError> {
    let reader = hound::WavReader::new(Cursor::new(bytes))
        .map_err(|e| MediaError::Malformed(e.to_string()))?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 || spec.sample_rate == 0 {
        return Err(MediaError::Malformed("no channels or no sample rate".into()));
    }
    if u64::from(reader.duration()) > u64::from(limits.max_seconds) * u64::from(spec.sample_rate) {
        return Err(MediaError::TooLong(limits.max_seconds));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            reader.into_samples::<f32>().map(|s| s.map(|v| v * 32_768.0)).collect::<Result<_, _>>()
        }
        (hound::SampleFormat::Int, bits @ 8..=32) => {
            let scale = 32_768.0 / (1u64 << (bits - 1)) as f32;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| v as f32 * scale))
                .collect::<Result<_, _>>()
        }
        _ => return Err(MediaError::Unsupported("WAV sample format")),
    }
    .map_err(|e| MediaError::Malformed(e.to_string()))?;
    Ok((downmix(&interleaved, channels), spec.sample_rate))
}

/// Averages interleaved channels into one.
fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels == 1 {
        return interleaved.to_vec();
    }
    interleaved.chunks_exact(channels).map(|f| f.iter().sum::<f32>() / channels as f32).collect()
}

/// Whole-clip rate conversion with rubato's FFT resampler, its delay trimmed, then to i16.
fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<i16>, MediaError> {
    let to_i16 = |v: &f32| v.round().clamp(i16::MIN as f32, i16::MAX as f32) as i16;
    if from == to || input.is_empty() {
        return Ok(input.iter().map(to_i16).collect());
    }
    const CHUNK: usize = 1024;
    let mut resampler = FftFixedIn::<f32>::new(from as usize, to as usize, CHUNK, 2, 1)
        .map_err(|_| MediaError::Unsupported("sample rate"))?;
    let expected = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let delay = resampler.output_delay();
    let mut out: Vec<f32> = Vec::with_capacity(expected + delay + 2 * CHUNK);
    let library = |e: rubato::ResampleError| MediaError::Malformed(e.to_string());
    let mut chunks = input.chunks_exact(CHUNK);
    for chunk in &mut chunks {
        out.extend_from_slice(&resampler.process(&[chunk], None).map_err(library)?[0]);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        out.extend_from_slice(&resampler.process_partial(Some(&[rest]), None).map_err(library)?[0]);
    }
    // Flush what the resampler still holds until the delayed tail is out.
    while out.len() < expected + delay {
        let tail = resampler.process_partial::<&[f32]>(None, None).map_err(library)?;
        if tail[0].is_empty() {
            break;
        }
        out.extend_from_slice(&tail[0]);
    }
    Ok(out.iter().skip(delay).take(expected).map(to_i16).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut cursor = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for &s in samples {
            writer.write_sample(s).unwrap();
        }
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    #[test]
    fn wav_at_8k_stereo_becomes_48k_mono_of_the_same_length_and_pitch() {
        let tone: Vec<i16> = (0..8000)
            .flat_map(|n| {
                let v = ((n as f32 * std::f32::consts::TAU * 500.0 / 8000.0).sin() * 8000.0) as i16;
                [v, v]
            })
            .collect();
        let clip =
            MediaClip::decode(&wav(8000, 2, &tone), 48_000, &MediaLimits::default()).unwrap();
        assert_eq!(clip.pcm().len(), 48_000);
        assert_eq!(clip.duration_ms(), 1000);
        // Zero crossings of a 500 Hz sine over the middle half second: about 500.
        let mid = &clip.pcm()[12_000..36_000];
        let crossings = mid.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count();
        assert!((490..=510).contains(&crossings), "{crossings}");
        let peak = mid.iter().map(|s| s.unsigned_abs()).max().unwrap();
        assert!((7000..=8800).contains(&peak), "{peak}");
    }

    #[test]
    fn refuses_what_it_cannot_or_must_not_decode() {
        let limits = MediaLimits { max_bytes: 1000, max_seconds: 1 };
        assert!(matches!(
            MediaClip::decode(b"ID3 an mp3", 48_000, &limits),
            Err(MediaError::Unsupported(_))
        ));
        assert!(matches!(
            MediaClip::decode(b"RIFF\0\0\0\0WAVEjunk", 48_000, &limits),
            Err(MediaError::Malformed(_))
        ));
        assert!(matches!(
            MediaClip::decode(b"OggSjunk", 48_000, &limits),
            Err(MediaError::Malformed(_))
        ));
        let long = wav(8000, 1, &vec![0; 8001]);
        assert!(matches!(MediaClip::decode(&long, 48_000, &limits), Err(MediaError::TooLong(1))));
    }
}
