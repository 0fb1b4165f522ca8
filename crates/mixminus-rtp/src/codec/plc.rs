//! Packet loss concealment for codecs that have none of their own (G.711, L16), after
//! ITU-T G.711 Appendix I: a lost frame is rebuilt by repeating the last pitch period of
//! what was heard, cross-faded at every repetition, attenuated after the first 10 ms and
//! silent after 60 ms; the first good frame after a loss is cross-faded with the
//! continuing synthetic signal, so neither the loss nor the recovery clicks.
//!
//! It works at the codec's own rate, on the samples the codec decoded, before any
//! resampling; buffers are allocated once, at construction.

/// Pitch periods searched: 2.5 ms to 15 ms (66–400 Hz fundamentals, and tones up to their
/// multiples).
const MIN_PITCH_HALF_MS: usize = 5; // 2.5 ms
const MAX_PITCH_MS: usize = 15;
/// Concealment fades to silence between 10 and 60 ms of consecutive loss.
const FADE_START_MS: usize = 10;
const FADE_END_MS: usize = 60;

/// One stream's concealment state.
pub(crate) struct Plc {
    rate: usize,
    /// The most recent samples heard (or played), newest last: `MAX_PITCH` × 3.
    history: Vec<i16>,
    /// The pitch period chosen at the start of the current loss, samples.
    pitch: usize,
    /// Samples concealed in the current loss (0: not in a loss).
    concealed: usize,
    /// Where the next synthetic sample comes from, within the last pitch period.
    offset: usize,
}

impl Plc {
    pub(crate) fn new(rate: u32) -> Self {
        let rate = rate as usize;
        let max_pitch = rate * MAX_PITCH_MS / 1000;
        Self { rate, history: vec![0; max_pitch * 3], pitch: max_pitch, concealed: 0, offset: 0 }
    }

    /// A frame decoded normally: cross-fades it with the synthetic signal if it ends a
    /// loss, then remembers it.
    pub(crate) fn good_frame(&mut self, pcm: &mut [i16]) {
        if self.concealed > 0 {
            // 4 ms, plus 4 ms per 10 ms of loss beyond the first (Appendix I), within the frame.
            let extra = self.concealed.saturating_sub(self.ms(10)) / self.ms(10).max(1);
            let len = (self.ms(4) * (1 + extra)).min(pcm.len());
            let gain = self.gain();
            for (i, sample) in pcm.iter_mut().take(len).enumerate() {
                let synthetic = f32::from(self.next_synthetic()) * gain;
                let w = (i + 1) as f32 / (len + 1) as f32;
                *sample = (synthetic * (1.0 - w) + f32::from(*sample) * w) as i16;
            }
            self.concealed = 0;
        }
        self.remember(pcm);
    }

    /// Fills `out` for a lost frame.
    pub(crate) fn conceal(&mut self, out: &mut [i16]) {
        if self.concealed == 0 {
            self.pitch = self.find_pitch();
            self.offset = 0;
        }
        for sample in out.iter_mut() {
            let gain = self.gain();
            *sample = (f32::from(self.next_synthetic()) * gain) as i16;
            self.concealed += 1;
        }
    }

    /// The next sample of the last pitch period repeated; each repetition's first quarter
    /// period is cross-faded with the period before it, so the seam does not click.
    fn next_synthetic(&mut self) -> i16 {
        let n = self.history.len();
        let p = self.pitch;
        let k = self.offset;
        let current = self.history[n - p + k];
        let overlap = (p / 4).max(1);
        let value = if self.concealed >= p && k < overlap {
            // The seam between repetitions: fade from the previous period's continuation.
            let previous = self.history[n - 2 * p + k];
            let w = (k + 1) as f32 / (overlap + 1) as f32;
            (f32::from(current) * w + f32::from(previous) * (1.0 - w)) as i16
        } else {
            current
        };
        self.offset = (k + 1) % p;
        value
    }

    /// The attenuation after `concealed` samples of loss.
    fn gain(&self) -> f32 {
        let (start, end) = (self.ms(FADE_START_MS), self.ms(FADE_END_MS));
        if self.concealed <= start {
            1.0
        } else if self.concealed >= end {
            0.0
        } else {
            1.0 - (self.concealed - start) as f32 / (end - start) as f32
        }
    }

    /// The lag in the pitch range whose normalised autocorrelation over the last 20 ms of
    /// history is largest.
    fn find_pitch(&self) -> usize {
        let n = self.history.len();
        let min = (self.rate * MIN_PITCH_HALF_MS / 2000).max(1);
        let max = (self.rate * MAX_PITCH_MS / 1000).min(n / 3);
        let window = &self.history[n - max..];
        let mut best = (f64::MIN, max);
        for lag in min..=max {
            let past = &self.history[n - max - lag..n - lag];
            let (mut dot, mut energy) = (0.0f64, 0.0f64);
            for (&a, &b) in window.iter().zip(past) {
                dot += f64::from(a) * f64::from(b);
                energy += f64::from(b) * f64::from(b);
            }
            let score = if energy > 0.0 { dot / energy.sqrt() } else { 0.0 };
            if score > best.0 {
                best = (score, lag);
            }
        }
        best.1
    }

    fn remember(&mut self, pcm: &[i16]) {
        let n = self.history.len();
        if pcm.len() >= n {
            self.history.copy_from_slice(&pcm[pcm.len() - n..]);
        } else {
            self.history.copy_within(pcm.len().., 0);
            self.history[n - pcm.len()..].copy_from_slice(pcm);
        }
    }

    fn ms(&self, ms: usize) -> usize {
        self.rate * ms / 1000
    }
}
