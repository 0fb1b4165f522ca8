//! The glitch measure: how far a stream that should carry one steady tone strays from it,
//! 5 ms at a time.
//!
//! Windows of 5 ms start every 2.5 ms, so a discontinuity lands inside one of them wherever
//! it falls. For every window the expected tone is fitted by least squares (`a·cos ωn + b·sin ωn`)
//! over the window and [`FIT_CONTEXT`] on either side, which tracks the phase where the
//! bridge's latency moves. The expected tone in the window is that phase at the stream's
//! steady amplitude (the median of the local fits), so a window that went silent, jumped in
//! phase or carries anything else leaves a residual. The score of a window is the residual's
//! energy relative to the expected tone's, in dB: about the codec's noise floor where the
//! stream is clean (−35 to −45 dB), 0 dB where the tone vanished, above 0 dB for a click.

use std::time::Duration;

/// How much audio on either side of a window the tone's phase is fitted over.
pub const FIT_CONTEXT: Duration = Duration::from_millis(50);

/// The window the measurement uses.
pub const WINDOW: Duration = Duration::from_millis(5);

/// The per-window residual of one tone in one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneResidual {
    /// Each window's residual relative to the expected tone, dB (−200 for a perfect fit).
    pub windows_db: Vec<f64>,
    /// The tone's steady peak amplitude in the stream (median of the local fits).
    pub amplitude: f64,
    /// Samples per window.
    pub window_samples: usize,
    /// Samples from one window's start to the next (half a window).
    pub hop_samples: usize,
    /// Sample rate of the stream, Hz.
    pub rate: u32,
}

impl ToneResidual {
    /// Measures `tone_hz` in `pcm` (mono at `rate`) in windows of `window`.
    pub fn measure(pcm: &[i16], rate: u32, tone_hz: f64, window: Duration) -> Self {
        let w = ((rate as f64 * window.as_secs_f64()).round() as usize).max(1);
        let context = (rate as f64 * FIT_CONTEXT.as_secs_f64()).round() as usize;
        let omega = std::f64::consts::TAU * tone_hz / rate.max(1) as f64;
        let sums = PrefixSums::new(pcm, omega);
        let hop = (w / 2).max(1);
        let count = if pcm.len() < w { 0 } else { (pcm.len() - w) / hop + 1 };
        // Local least-squares fit of (a, b) around every window.
        let fits: Vec<(f64, f64)> = (0..count)
            .map(|k| {
                let lo = (k * hop).saturating_sub(context);
                let hi = (k * hop + w + context).min(pcm.len());
                sums.fit(lo, hi)
            })
            .collect();
        let mut amplitudes: Vec<f64> = fits.iter().map(|(a, b)| a.hypot(*b)).collect();
        let amplitude = median(&mut amplitudes).unwrap_or(0.0);
        let windows_db = fits
            .iter()
            .enumerate()
            .map(|(k, &(a, b))| {
                let local = a.hypot(b);
                // The local phase at the steady amplitude; with no tone at all (a silent
                // stretch) any phase will do: the whole expected tone is then the residual.
                let (ca, cb) = if local > 0.0 {
                    (a / local * amplitude, b / local * amplitude)
                } else {
                    (amplitude, 0.0)
                };
                let (mut residual, mut expected) = (0.0f64, 0.0f64);
                for (n, &x) in pcm.iter().enumerate().skip(k * hop).take(w) {
                    let phase = omega * n as f64;
                    let e = ca * phase.cos() + cb * phase.sin();
                    residual += (x as f64 - e).powi(2);
                    expected += e * e;
                }
                ratio_db(residual, expected)
            })
            .collect();
        Self { windows_db, amplitude, window_samples: w, hop_samples: hop, rate }
    }

    /// The median window, dB.
    pub fn median_db(&self) -> f64 {
        median(&mut self.windows_db.clone()).unwrap_or(f64::NAN)
    }

    /// The worst window: its start (seconds into the stream) and its residual, dB.
    pub fn worst(&self) -> Option<(f64, f64)> {
        self.windows_db
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(k, &db)| (self.window_start_secs(k), db))
    }

    /// Windows whose residual is above `db`.
    pub fn count_above(&self, db: f64) -> usize {
        self.windows_db.iter().filter(|&&x| x > db).count()
    }

    /// Where window `k` starts, seconds into the stream.
    pub fn window_start_secs(&self, k: usize) -> f64 {
        (k * self.hop_samples) as f64 / self.rate.max(1) as f64
    }

    /// The windows above `db` as `(start seconds, dB)`, in time order.
    pub fn windows_above(&self, db: f64) -> Vec<(f64, f64)> {
        self.windows_db
            .iter()
            .enumerate()
            .filter(|(_, &x)| x > db)
            .map(|(k, &x)| (self.window_start_secs(k), x))
            .collect()
    }
}

/// `10·log10(num/den)`, −200 for a zero numerator, +200 for a zero denominator.
fn ratio_db(num: f64, den: f64) -> f64 {
    if num <= 0.0 {
        -200.0
    } else if den <= 0.0 {
        200.0
    } else {
        (10.0 * (num / den).log10()).clamp(-200.0, 200.0)
    }
}

/// The median of `values` (reordered in place); `None` when empty.
pub(crate) fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 0 { (values[mid - 1] + values[mid]) / 2.0 } else { values[mid] })
}

/// Running sums of the normal equations' terms, so a fit over any span is O(1).
struct PrefixSums {
    /// Per sample prefix: Σcos², Σsin², Σcos·sin, Σx·cos, Σx·sin.
    terms: Vec<[f64; 5]>,
}

impl PrefixSums {
    fn new(pcm: &[i16], omega: f64) -> Self {
        let mut terms = Vec::with_capacity(pcm.len() + 1);
        let mut acc = [0.0f64; 5];
        terms.push(acc);
        for (n, &x) in pcm.iter().enumerate() {
            let (s, c) = (omega * n as f64).sin_cos();
            let x = x as f64;
            acc[0] += c * c;
            acc[1] += s * s;
            acc[2] += c * s;
            acc[3] += x * c;
            acc[4] += x * s;
            terms.push(acc);
        }
        Self { terms }
    }

    /// Least-squares `(a, b)` of `a·cos + b·sin` over samples `lo..hi`.
    fn fit(&self, lo: usize, hi: usize) -> (f64, f64) {
        let (h, l) = (self.terms[hi], self.terms[lo]);
        let (cc, ss, cs, xc, xs) =
            (h[0] - l[0], h[1] - l[1], h[2] - l[2], h[3] - l[3], h[4] - l[4]);
        let det = cc * ss - cs * cs;
        if det.abs() < 1e-9 {
            return (0.0, 0.0);
        }
        ((xc * ss - xs * cs) / det, (xs * cc - xc * cs) / det)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, hz: f64, amp: f64, len: usize, phase: f64) -> Vec<i16> {
        (0..len)
            .map(|n| {
                (amp * (std::f64::consts::TAU * hz * n as f64 / rate as f64 + phase).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn a_clean_tone_scores_at_the_quantisation_floor() {
        let pcm = tone(48_000, 440.0, 8000.0, 48_000, 0.3);
        let r = ToneResidual::measure(&pcm, 48_000, 440.0, WINDOW);
        assert_eq!(r.windows_db.len(), 399);
        assert!((r.amplitude - 8000.0).abs() < 2.0, "{}", r.amplitude);
        assert!(r.worst().unwrap().1 < -60.0, "{:?}", r.worst());
    }

    #[test]
    fn a_dropout_a_click_and_a_phase_jump_are_caught() {
        let rate = 8_000;
        let mut pcm = tone(rate, 440.0, 8000.0, 16_000, 0.0);
        // 5 ms of silence at 0.5 s.
        pcm[4000..4040].fill(0);
        // One click at 1.0 s.
        pcm[8020] = 32_000;
        // Half a period of phase from 1.5 s on.
        let shifted = tone(rate, 440.0, 8000.0, 16_000, std::f64::consts::PI);
        pcm[12_000..].copy_from_slice(&shifted[12_000..]);
        let r = ToneResidual::measure(&pcm, rate, 440.0, WINDOW);
        let above = r.windows_above(-20.0);
        let at = |t: f64| above.iter().any(|&(s, _)| s <= t && t < s + 0.005);
        assert!(at(0.5) && at(1.0025) && at(1.5), "{above:?}");
        // Nothing else: each event spoils at most the windows that contain it.
        assert!(above.len() <= 3 + 2 + 2, "{above:?}");
        assert!(r.median_db() < -40.0, "{}", r.median_db());
        // A stream without the tone has no amplitude: callers check it against what was sent.
        let r = ToneResidual::measure(&vec![0i16; 8000], rate, 440.0, WINDOW);
        assert_eq!(r.amplitude, 0.0);
    }
}

#[cfg(test)]
mod codec_floor {
    use super::*;
    use mixminus_rtp::dsp::SineGenerator;
    use mixminus_rtp::{new_decoder, new_encoder, CodecKind, CodecParams, CodecSettings};

    /// The measure's floor with nothing but the codec in the path: one encoder, one decoder.
    fn through_codec(kind: CodecKind, rate: u32, settings: CodecSettings) -> ToneResidual {
        let params = CodecParams::new(kind);
        let frame = (rate / 50) as usize;
        let mut enc = new_encoder(&params, &settings, rate, frame).unwrap();
        let mut dec = new_decoder(&params, rate, frame).unwrap();
        let mut sine = SineGenerator::new(440.0, rate, 8000.0);
        let (mut pcm, mut out, mut payload) = (vec![0i16; frame], vec![0i16; frame], [0u8; 1500]);
        let mut heard = Vec::new();
        for _ in 0..300 {
            sine.fill(&mut pcm);
            let n = enc.encode(&pcm, &mut payload).unwrap();
            dec.decode(&payload[..n], &mut out).unwrap();
            heard.extend_from_slice(&out);
        }
        ToneResidual::measure(&heard[rate as usize..], rate, 440.0, WINDOW)
    }

    /// The codecs alone leave room under the glitch test's −30 dB limit (a tandem of two
    /// Opus encodes, phone and bridge, sits about 3 dB higher than one).
    #[test]
    fn the_codecs_alone_stay_under_the_limits() {
        let opus = through_codec(CodecKind::Opus, 48_000, CodecSettings::default());
        let pcmu = through_codec(CodecKind::Pcmu, 8_000, CodecSettings::default());
        for (name, r) in [("opus", &opus), ("pcmu", &pcmu)] {
            println!("{name}: median {:.1} dB, worst {:?}", r.median_db(), r.worst());
            assert!(r.median_db() < -35.0 && r.worst().unwrap().1 < -30.0, "{name}: {r:?}");
        }
    }
}
