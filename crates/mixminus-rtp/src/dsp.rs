//! Small signal tools shared by the tests, the demo and the benchmark: a continuous-phase
//! sine source, speech-like test frames, a Goertzel tone detector and the glitch measure
//! (what is left of a window once the tone it should hold is fitted out).

/// A continuous-phase sine, frame after frame.
#[derive(Debug, Clone)]
pub struct SineGenerator {
    phase: f64,
    step: f64,
    amplitude: f64,
}

impl SineGenerator {
    /// A sine of `freq_hz` at `rate_hz` with peak `amplitude` (full scale is 32767).
    pub fn new(freq_hz: f32, rate_hz: u32, amplitude: f32) -> Self {
        Self {
            phase: 0.0,
            step: std::f64::consts::TAU * freq_hz as f64 / rate_hz.max(1) as f64,
            amplitude: amplitude.clamp(0.0, 32_767.0) as f64,
        }
    }

    /// Writes the next `out.len()` samples.
    pub fn fill(&mut self, out: &mut [i16]) {
        for sample in out {
            *sample = (self.phase.sin() * self.amplitude).round() as i16;
            self.phase = (self.phase + self.step) % std::f64::consts::TAU;
        }
    }
}

/// `count` consecutive frames of `frame_samples` of a speech-like two-tone signal (220 Hz at
/// 6000 plus 1370 Hz at 2000 peak), for benchmarks that need realistic codec input.
pub fn two_tone_frames(rate_hz: u32, frame_samples: usize, count: usize) -> Vec<Vec<i16>> {
    let mut low = SineGenerator::new(220.0, rate_hz, 6_000.0);
    let mut high = SineGenerator::new(1_370.0, rate_hz, 2_000.0);
    let mut scratch = vec![0i16; frame_samples];
    (0..count)
        .map(|_| {
            let mut frame = vec![0i16; frame_samples];
            low.fill(&mut frame);
            high.fill(&mut scratch);
            for (out, &add) in frame.iter_mut().zip(&scratch) {
                *out = out.saturating_add(add);
            }
            frame
        })
        .collect()
}

/// Goertzel power of `freq_hz` in `samples`, normalised so that a full-scale sine at that
/// frequency gives 1.0.
pub fn goertzel_power(samples: &[i16], rate_hz: u32, freq_hz: f32) -> f64 {
    if samples.is_empty() || rate_hz == 0 {
        return 0.0;
    }
    let n = samples.len() as f64;
    let coeff = 2.0 * (std::f64::consts::TAU * freq_hz as f64 / rate_hz as f64).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    // A Hann window keeps a strong neighbouring tone from leaking 40 dB into this bin.
    for (i, &x) in samples.iter().enumerate() {
        let w = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n).cos();
        let s0 = x as f64 / 32_768.0 * w + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // A full-scale sine windowed by Hann has amplitude n/4 in its bin: power (n/4)².
    power / (n * n / 16.0)
}

/// The level of `freq_hz` in `samples`, dB relative to a full-scale sine; silence gives
/// −200.
pub fn tone_dbfs(samples: &[i16], rate_hz: u32, freq_hz: f32) -> f64 {
    let p = goertzel_power(samples, rate_hz, freq_hz);
    if p <= 1e-20 {
        -200.0
    } else {
        10.0 * p.log10()
    }
}

/// How far `window` is from holding only a sine of `freq_hz`: the sine (any amplitude and
/// phase, plus a DC offset) is fitted by least squares and the residual's energy is returned
/// relative to the fitted sine's, in dB. A clean tone gives a strongly negative value
/// (codec noise, about −40 dB for Opus at 32 kbit/s); a click, a dropout or another
/// sound in the window gives a value near or above 0. Silence gives +200, since the
/// tone that should be there is missing.
///
/// This is the glitch measure of the sound-quality tests: 5 ms windows of a listener's
/// decoded stream against the tone it should hear.
pub fn tone_residual_db(window: &[i16], rate_hz: u32, freq_hz: f32) -> f64 {
    if window.is_empty() || rate_hz == 0 {
        return 200.0;
    }
    let step = std::f64::consts::TAU * freq_hz as f64 / rate_hz as f64;
    // Normal equations of x ≈ a·sin + b·cos + c over the window (3×3, solved directly).
    let mut m = [[0.0f64; 3]; 3];
    let mut v = [0.0f64; 3];
    for (i, &x) in window.iter().enumerate() {
        let basis = [(step * i as f64).sin(), (step * i as f64).cos(), 1.0];
        for r in 0..3 {
            v[r] += basis[r] * x as f64;
            for c in 0..3 {
                m[r][c] += basis[r] * basis[c];
            }
        }
    }
    let Some([a, b, c]) = solve3(m, v) else { return 200.0 };
    let (mut tone, mut residual) = (0.0f64, 0.0f64);
    for (i, &x) in window.iter().enumerate() {
        let fitted = a * (step * i as f64).sin() + b * (step * i as f64).cos();
        tone += fitted * fitted;
        let r = x as f64 - fitted - c;
        residual += r * r;
    }
    if tone < 1e-3 {
        return 200.0;
    }
    10.0 * (residual.max(1e-12) / tone).log10()
}

/// Gaussian elimination with partial pivoting; `None` when the system is singular.
fn solve3(mut m: [[f64; 3]; 3], mut v: [f64; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let pivot = (col..3).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-9 {
            return None;
        }
        m.swap(col, pivot);
        v.swap(col, pivot);
        for row in col + 1..3 {
            let f = m[row][col] / m[col][col];
            let pivot_row = m[col];
            for (cell, &p) in m[row].iter_mut().zip(&pivot_row).skip(col) {
                *cell -= f * p;
            }
            v[row] -= f * v[col];
        }
    }
    let mut x = [0.0f64; 3];
    for row in (0..3).rev() {
        let tail: f64 = (row + 1..3).map(|k| m[row][k] * x[k]).sum();
        x[row] = (v[row] - tail) / m[row][row];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_present_and_absent_tones() {
        let mut sine = SineGenerator::new(1_000.0, 48_000, 8_000.0);
        let mut buf = vec![0i16; 9_600];
        sine.fill(&mut buf);
        let level = tone_dbfs(&buf, 48_000, 1_000.0);
        assert!((level - 20.0 * (8_000.0f64 / 32_768.0).log10()).abs() < 0.5, "{level}");
        assert!(tone_dbfs(&buf, 48_000, 1_300.0) < level - 60.0);
        assert_eq!(tone_dbfs(&[0; 960], 48_000, 1_000.0), -200.0);
    }

    #[test]
    fn residual_of_a_clean_tone_is_low_and_of_a_click_high() {
        let mut sine = SineGenerator::new(440.0, 48_000, 8_000.0);
        let mut window = vec![0i16; 240];
        sine.fill(&mut window);
        assert!(tone_residual_db(&window, 48_000, 440.0) < -60.0);
        for s in &mut window[100..104] {
            *s = s.saturating_add(8_000);
        }
        assert!(tone_residual_db(&window, 48_000, 440.0) > -20.0);
        window[120..].fill(0); // a dropout
        assert!(tone_residual_db(&window, 48_000, 440.0) > -10.0);
        assert_eq!(tone_residual_db(&[0; 240], 48_000, 440.0), 200.0);
    }
}
