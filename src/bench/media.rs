//! What the generator's participants say, encoded once before a run and replayed: a loop
//! of Opus packets per talker (a tone; talker 0 also carries the latency marker) and one
//! loop of quiet noise shared by every other participant, each frame with the RFC 6464
//! level a WebRTC client would attach to it.

use anyhow::Context;
use mixminus_rtp::dsp::SineGenerator;
use mixminus_rtp::{new_encoder, AudioLevel, CodecKind, CodecParams, CodecSettings};

/// Conference rate and frame: Opus 48 kHz, 20 ms.
pub(crate) const RATE: u32 = 48_000;
/// Samples per 20 ms frame.
pub(crate) const FRAME: usize = 960;
/// Frames per loop: one second, so every tone (integer Hz) loops without a seam.
pub(crate) const LOOP_FRAMES: usize = 50;
/// Talker 0 says the marker tone instead of its own at the start of every loop, for this
/// many frames: the probe listener times its arrival.
pub(crate) const MARKER_FRAMES: usize = 3;
/// The marker's frequency, above every talker tone.
pub(crate) const MARKER_HZ: f32 = 2_600.0;
/// Peak amplitude of the talkers' tones (about −18 dBFS): far above the talk threshold.
const TALK_AMPLITUDE: f32 = 4_000.0;
/// The talk threshold the bench configures (mean |sample|, mixminus's `energy-level`);
/// the generator's own voice-activity flag uses the same.
pub(crate) const ENERGY_LEVEL: u32 = 100;
/// Opus payload type.
pub(crate) const PAYLOAD_TYPE: u8 = 111;
/// RFC 8285 id of the audio-level extension (what WebRTC clients use).
pub(crate) const AUDIO_LEVEL_EXT: u8 = 1;

/// The tone talker `i` says (integer Hz below the marker; distinct for 15 talkers).
pub(crate) fn talker_hz(i: usize) -> f32 {
    300.0 + 100.0 * (i % 15) as f32
}

/// One frame of a loop.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// The Opus payload.
    pub(crate) payload: Vec<u8>,
    /// Its RFC 6464 level, computed from the PCM it encodes.
    pub(crate) level: AudioLevel,
    /// False for a frame Opus DTX leaves out (a payload of at most 2 bytes): not sent.
    pub(crate) send: bool,
}

/// Every participant's loops.
#[derive(Debug)]
pub(crate) struct Payloads {
    /// One loop per talker.
    pub(crate) talkers: Vec<Vec<Frame>>,
    /// The loop every quiet participant replays (each from its own offset).
    pub(crate) quiet: Vec<Frame>,
}

impl Payloads {
    /// Encodes `talkers` tone loops and the quiet loop: noise at `quiet_dbov` RMS (dBov,
    /// positive: 75 = −75 dBov), with Opus DTX when `dtx`.
    pub(crate) fn encode(talkers: usize, quiet_dbov: u8, dtx: bool) -> anyhow::Result<Self> {
        let talkers = (0..talkers)
            .map(|i| {
                let mut tone = SineGenerator::new(talker_hz(i), RATE, TALK_AMPLITUDE);
                let mut marker = SineGenerator::new(MARKER_HZ, RATE, TALK_AMPLITUDE);
                encode_loop(false, |k, pcm| {
                    if i == 0 && k % LOOP_FRAMES < MARKER_FRAMES {
                        marker.fill(pcm);
                    } else {
                        tone.fill(pcm);
                    }
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        // Uniform noise of the RMS asked for: RMS of uniform(−a, a) is a/√3.
        let rms = 32_768.0 * 10f64.powf(-f64::from(quiet_dbov) / 20.0);
        let amplitude = (rms * 3f64.sqrt()).max(1.0);
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let quiet = encode_loop(dtx, |_, pcm| {
            for s in pcm.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let unit = (seed >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
                *s = ((unit * 2.0 - 1.0) * amplitude).round() as i16;
            }
        })?;
        Ok(Self { talkers, quiet })
    }
}

/// Encodes three loops with one encoder (so its state has settled) and keeps the last.
fn encode_loop(dtx: bool, mut fill: impl FnMut(usize, &mut [i16])) -> anyhow::Result<Vec<Frame>> {
    let params = CodecParams::new(CodecKind::Opus);
    // What a WebRTC client sends (32 kbit/s, complexity 5), not the bridge's own defaults.
    let mut settings = CodecSettings::default();
    settings.bitrate = 32_000;
    settings.complexity = 5;
    settings.dtx = dtx;
    let mut encoder = new_encoder(&params, &settings, RATE, FRAME).context("Opus encoder")?;
    let mut pcm = vec![0i16; FRAME];
    let mut out = vec![0u8; mixminus_rtp::MAX_PAYLOAD];
    let mut frames = Vec::with_capacity(LOOP_FRAMES);
    for k in 0..3 * LOOP_FRAMES {
        fill(k, &mut pcm);
        let len = encoder.encode(&pcm, &mut out).context("Opus encode")?;
        if k >= 2 * LOOP_FRAMES {
            frames.push(Frame {
                payload: out[..len].to_vec(),
                level: audio_level(&pcm),
                send: !(dtx && len <= 2),
            });
        }
    }
    Ok(frames)
}

/// The RFC 6464 level of a frame as a WebRTC client computes it: RMS in −dBov, 0..=127;
/// the voice flag from the same energy measure as the talk threshold.
pub(crate) fn audio_level(pcm: &[i16]) -> AudioLevel {
    let n = pcm.len().max(1) as f64;
    let power = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum::<f64>() / n;
    let mean_abs = pcm.iter().map(|&s| f64::from(s).abs()).sum::<f64>() / n;
    let level_dbov = if power <= 0.0 {
        127
    } else {
        (-10.0 * (power / (32_768.0 * 32_768.0)).log10()).round().clamp(0.0, 127.0) as u8
    };
    AudioLevel { voice: mean_abs >= f64::from(ENERGY_LEVEL), level_dbov }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loops_have_the_levels_asked_for() {
        let p = Payloads::encode(3, 75, false).unwrap();
        assert_eq!(p.talkers.len(), 3);
        assert!(p.talkers.iter().all(|l| l.len() == LOOP_FRAMES));
        assert!(p.talkers[0].iter().all(|f| f.level.voice && f.level.level_dbov < 30 && f.send));
        assert!(p.quiet.iter().all(|f| !f.level.voice && (73..=77).contains(&f.level.level_dbov)));
        let dtx = Payloads::encode(1, 75, true).unwrap();
        assert!(dtx.quiet.iter().any(|f| !f.send), "DTX leaves frames out");
    }
}
