//! The sources of the glitch scenario (issue 10): B's steady tone, A's tone bursts, C's
//! quiet noise. The end-to-end test and the quality bench say the same.

use mixminus_rtp::dsp::SineGenerator;

use super::phone::Source;

/// B's steady tone, Hz.
pub const TONE_HZ: f32 = 440.0;
/// A's bursts, Hz.
pub const BURST_HZ: f32 = 1_000.0;
/// Peak amplitude of both tones (about −12 dBFS).
pub const AMPLITUDE: f32 = 8_000.0;
/// A's bursts: on from this far into every period, seconds…
pub const BURST_ON_SECS: f64 = 1.5;
/// …for this long…
pub const BURST_LEN_SECS: f64 = 1.2;
/// …every this many seconds.
pub const BURST_PERIOD_SECS: f64 = 3.0;
/// C's noise peak: mean |x| about 30, under the default talk threshold (100).
pub const NOISE_PEAK: i32 = 60;

/// B: a steady tone at `rate`.
pub fn steady_tone(rate: u32) -> Source {
    let mut sine = SineGenerator::new(TONE_HZ, rate, AMPLITUDE);
    Box::new(move |out| sine.fill(out))
}

/// A: [`BURST_LEN_SECS`] of [`BURST_HZ`] every [`BURST_PERIOD_SECS`], the first
/// [`BURST_ON_SECS`] into the call; silence between.
pub fn tone_bursts(rate: u32) -> Source {
    let mut sine = SineGenerator::new(BURST_HZ, rate, AMPLITUDE);
    let at = |secs: f64| (secs * rate as f64).round() as u64;
    let (period, on, off) =
        (at(BURST_PERIOD_SECS), at(BURST_ON_SECS), at(BURST_ON_SECS + BURST_LEN_SECS));
    let mut n = 0u64;
    Box::new(move |out| {
        sine.fill(out);
        for s in out.iter_mut() {
            if !(on..off).contains(&(n % period)) {
                *s = 0;
            }
            n += 1;
        }
    })
}

/// C: quiet white noise from a fixed seed, peak [`NOISE_PEAK`].
pub fn quiet_noise(seed: u64) -> Source {
    let mut state = seed | 1;
    Box::new(move |out| {
        for s in out.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *s = ((state >> 33) as i32 % (2 * NOISE_PEAK + 1) - NOISE_PEAK) as i16;
        }
    })
}

/// Says `pcm` once from its start, then silence.
pub fn recording(pcm: std::sync::Arc<Vec<i16>>) -> Source {
    let mut at = 0usize;
    Box::new(move |out| {
        let from = at.min(pcm.len());
        let n = (pcm.len() - from).min(out.len());
        out[..n].copy_from_slice(&pcm[from..from + n]);
        out[n..].fill(0);
        at += out.len();
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_start_and_stop_on_time() {
        let rate = 8_000;
        let mut source = tone_bursts(rate);
        let mut pcm = vec![0i16; rate as usize * 4];
        source(&mut pcm);
        let on = |t: f64| pcm[(t * rate as f64) as usize..][..80].iter().any(|&s| s != 0);
        assert!(!on(1.4) && on(1.6) && on(2.6) && !on(2.8) && !on(3.5));
        let mut said = recording(std::sync::Arc::new(vec![7i16; 100]));
        let mut frame = [1i16; 80];
        said(&mut frame);
        said(&mut frame);
        assert_eq!((frame[19], frame[20]), (7, 0));
        said(&mut frame);
        assert!(frame.iter().all(|&s| s == 0));
        let mut noise = quiet_noise(3);
        noise(&mut pcm);
        let mean = pcm.iter().map(|&s| (s as f64).abs()).sum::<f64>() / pcm.len() as f64;
        assert!((25.0..35.0).contains(&mean), "{mean}");
    }
}
