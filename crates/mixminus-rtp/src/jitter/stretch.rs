//! Time-stretching of decoded audio by whole pitch periods, in the manner of NetEq's
//! accelerate / preemptive expand / merge (a pitch-synchronous overlap-add, close to WSOLA).
//!
//! For a lag `L` at which the signal repeats itself (the pitch period of a voiced sound, a
//! multiple of a tone's period), two adjacent segments `x[0..L]` and `x[L..2L]` look alike:
//! - **accelerate** replaces both by their cross-fade (`x[0..L]` fading out, `x[L..2L]`
//!   fading in): `L` samples shorter, and continuous at both ends because the fade starts
//!   on `x[0]` and ends on `x[2L−1]`, whose successor `x[2L]` follows;
//! - **preemptive expand** keeps `x[0..L]` and adds, before `x[L..]`, the cross-fade of
//!   `x[L..2L]` (fading out) with `x[0..L]` (fading in): `L` samples longer, continuous the
//!   same way;
//! - **merge** joins concealment to the real audio after it: the end of the concealment is
//!   cross-faded with the best-aligned stretch of the new audio.
//!
//! The lag comes from a normalised cross-correlation, searched coarsely on a 4 kHz
//! decimation (as NetEq does), then refined at full rate around the best coarse lag.
//! Quiet audio (below about −50 dBFS) is stretched at any lag: nothing there to distort.
//! Everything works in place on the caller's buffer; the scratch is allocated once.

/// Pitch periods searched: 2.5 ms (400 Hz) to 15 ms (67 Hz).
const MIN_LAG_US: usize = 2_500;
const MAX_LAG_US: usize = 15_000;
/// Rate of the coarse search, Hz.
const COARSE_RATE: usize = 4_000;
/// Below this correlation a lag is not a period: no stretch (unless forced or quiet). High,
/// as NetEq's: a lag a tenth of a period off still correlates at 0.8, and cutting it would
/// shift the phase of everything after by 36° (heard as a 100 ms smear on a steady tone).
const MIN_CORRELATION: f32 = 0.9;
/// Coarse lags within this much of the best count as equally good; the longest wins (more
/// stretch per operation, so fewer seams).
const CORRELATION_SLACK: f32 = 0.03;
/// Mean absolute amplitude under which audio is quiet (−50 dBFS).
const QUIET: f32 = 104.0;
/// The longest cross-fade of a merge, µs.
const MERGE_US: usize = 5_000;

#[derive(Debug)]
pub(super) struct Stretcher {
    min_lag: usize,
    max_lag: usize,
    decimation: usize,
    coarse: Vec<f32>,
    coarse_b: Vec<f32>,
}

impl Stretcher {
    pub(super) fn new(rate: u32) -> Self {
        let rate = rate.max(8_000) as usize;
        let decimation = (rate / COARSE_RATE).max(1);
        let max_lag = rate * MAX_LAG_US / 1_000_000;
        let coarse_len = 2 * max_lag / decimation + 2;
        Self {
            min_lag: rate * MIN_LAG_US / 1_000_000,
            max_lag,
            decimation,
            coarse: vec![0.0; coarse_len],
            coarse_b: vec![0.0; coarse_len],
        }
    }

    /// The shortest lag a stretch uses, samples: less than this cannot be removed or added.
    pub(super) fn min_lag(&self) -> usize {
        self.min_lag
    }

    /// Removes one period of at most `max_remove` samples from the start of `buf[..len]`;
    /// returns how many went (0 when nothing periodic fits). `force` accepts a poorly
    /// correlated lag (noise: the cross-fade is then just a smooth splice).
    pub(super) fn accelerate(
        &mut self,
        buf: &mut [i16],
        len: usize,
        max_remove: usize,
        force: bool,
    ) -> usize {
        let Some(lag) = self.choose_lag(&buf[..len], max_remove, force) else { return 0 };
        for i in 0..lag {
            let w = fade(i, lag);
            buf[i] = mix(buf[i], buf[lag + i], w);
        }
        buf.copy_within(2 * lag..len, lag);
        lag
    }

    /// Inserts one period of at most `max_insert` samples near the start of `buf[..len]`;
    /// returns how many were added (`buf` must have room for them).
    pub(super) fn expand(
        &mut self,
        buf: &mut [i16],
        len: usize,
        max_insert: usize,
        force: bool,
    ) -> usize {
        let max_insert = max_insert.min(buf.len().saturating_sub(len));
        let Some(lag) = self.choose_lag(&buf[..len], max_insert, force) else { return 0 };
        buf.copy_within(lag..len, 2 * lag);
        // buf[lag..2lag] still holds x[lag..2lag]; x[0..lag] is untouched.
        for i in 0..lag {
            let w = fade(i, lag);
            buf[lag + i] = mix(buf[lag + i], buf[i], w);
        }
        lag
    }

    /// `buf[..len]` ends with concealment (`concealed` samples) followed by `fresh` newly
    /// decoded samples. Cross-fades the concealment's end into the best-aligned point of
    /// the fresh audio and drops what lies between (at most `max_remove` samples); returns
    /// how many samples went.
    pub(super) fn merge(
        &mut self,
        buf: &mut [i16],
        len: usize,
        concealed: usize,
        fresh: usize,
        max_remove: usize,
    ) -> usize {
        let fresh = fresh.min(len);
        let m = concealed.min(len - fresh).min(self.merge_len()).min(max_remove);
        if m < self.min_lag || fresh < m {
            return 0;
        }
        let seam = len - fresh;
        let max_shift = self.max_lag.min(fresh - m).min(max_remove - m);
        let tail = seam - m;
        let shift = self.align(&buf[tail..seam], &buf[seam..len], max_shift);
        for i in 0..m {
            let w = fade(i, m);
            buf[tail + i] = mix(buf[tail + i], buf[seam + shift + i], w);
        }
        buf.copy_within(seam + shift + m..len, seam);
        m + shift
    }

    fn merge_len(&self) -> usize {
        self.min_lag * MERGE_US / MIN_LAG_US
    }

    /// The lag in `min_lag..=hi` (with `hi ≤ max_lag` and `2·lag ≤ x.len()`) to stretch by.
    fn choose_lag(&mut self, x: &[i16], hi: usize, force: bool) -> Option<usize> {
        let hi = hi.min(self.max_lag).min(x.len() / 2);
        if hi < self.min_lag {
            return None;
        }
        let span = &x[..2 * hi];
        let mean_abs = span.iter().map(|&s| f32::from(s).abs()).sum::<f32>() / span.len() as f32;
        if mean_abs < QUIET {
            return Some(hi);
        }
        let d = self.decimation;
        let n = span.len() / d;
        for (j, c) in self.coarse[..n].iter_mut().enumerate() {
            *c = span[j * d..(j + 1) * d].iter().map(|&s| f32::from(s)).sum::<f32>() / d as f32;
        }
        let coarse = &self.coarse[..n];
        let (lo_c, hi_c) = (self.min_lag.div_ceil(d).max(1), hi / d);
        let mut best = (f32::MIN, 0usize);
        for lag in lo_c..=hi_c {
            let c = correlation(&coarse[..lag], &coarse[lag..2 * lag]);
            if c > best.0 {
                best = (c, lag);
            }
        }
        // The longest coarse lag about as good as the best.
        let mut chosen = best.1;
        for lag in (best.1..=hi_c).rev() {
            if correlation(&coarse[..lag], &coarse[lag..2 * lag]) >= best.0 - CORRELATION_SLACK {
                chosen = lag;
                break;
            }
        }
        // Refine at full rate around it.
        let (lo, hi_f) =
            ((chosen * d).saturating_sub(d).max(self.min_lag), (chosen * d + d).min(hi));
        let mut fine = (f32::MIN, chosen * d);
        for lag in lo..=hi_f.max(lo) {
            if 2 * lag > span.len() {
                break;
            }
            let c = correlation_i16(&span[..lag], &span[lag..2 * lag]);
            if c > fine.0 {
                fine = (c, lag);
            }
        }
        let lag = fine.1.clamp(self.min_lag, hi);
        (fine.0 >= MIN_CORRELATION || force).then_some(lag)
    }

    /// The shift in `0..=max_shift` at which `b[shift..]` best matches `a`.
    fn align(&mut self, a: &[i16], b: &[i16], max_shift: usize) -> usize {
        let d = self.decimation;
        let (na, nb) = (a.len() / d, (a.len() + max_shift) / d);
        if na == 0 || nb > self.coarse_b.len() || na > self.coarse.len() {
            return 0;
        }
        for (j, c) in self.coarse[..na].iter_mut().enumerate() {
            *c = a[j * d..(j + 1) * d].iter().map(|&s| f32::from(s)).sum::<f32>() / d as f32;
        }
        for (j, c) in self.coarse_b[..nb].iter_mut().enumerate() {
            *c = b[j * d..(j + 1) * d].iter().map(|&s| f32::from(s)).sum::<f32>() / d as f32;
        }
        let mut best = (f32::MIN, 0usize);
        for s in 0..=(nb - na) {
            let c = correlation(&self.coarse[..na], &self.coarse_b[s..s + na]);
            if c > best.0 {
                best = (c, s);
            }
        }
        let centre = best.1 * d;
        let mut fine = (f32::MIN, centre);
        for s in centre.saturating_sub(d)..=(centre + d).min(max_shift) {
            if s + a.len() > b.len() {
                break;
            }
            let c = correlation_i16(a, &b[s..s + a.len()]);
            if c > fine.0 {
                fine = (c, s);
            }
        }
        fine.1
    }
}

/// Normalised cross-correlation of two equal-length segments (0 when either is silent).
fn correlation(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0.0f32, 0.0f32, 0.0f32);
    for (&x, &y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa <= 0.0 || bb <= 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

fn correlation_i16(a: &[i16], b: &[i16]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0i64, 0i64, 0i64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (i64::from(x), i64::from(y));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0 || bb == 0 {
        0.0
    } else {
        (ab as f64 / ((aa as f64) * (bb as f64)).sqrt()) as f32
    }
}

/// The fade-in weight of sample `i` of an `n`-sample cross-fade (strictly inside 0..1, so
/// both ends stay continuous with their neighbours).
fn fade(i: usize, n: usize) -> f32 {
    (i + 1) as f32 / (n + 1) as f32
}

/// `out·(1 − w) + into·w`, rounded.
fn mix(out: i16, into: i16, w: f32) -> i16 {
    // Both inputs are i16 and the weights sum to 1: the result is within i16.
    (f32::from(out) * (1.0 - w) + f32::from(into) * w).round() as i16
}
