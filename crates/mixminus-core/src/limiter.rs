//! The limiter at the end of every mix group: gain riding with a short attack and a slow
//! release, then a static soft knee for whatever the attack lets through.
//!
//! A conference mix can exceed full scale (four loud talkers sum to 4×). A clamp flattens
//! the peaks, which sounds like a crackle. This limiter instead lowers the group's gain as
//! soon as a frame's peak would exceed [`LIMITER_THRESHOLD`] (reaching the needed gain
//! within 1/20 of a frame, 1 ms at 20 ms frames), holds it while the overload lasts, and
//! releases it over about 200 ms, so the waveform keeps its shape. Samples that the attack
//! leaves above the knee go through [`soft_limit`](crate::soft_limit), which never reaches
//! full scale. State is one gain per group; processing allocates nothing.
//!
//! The mixer's exactness (every listener's mix equals the naive per-listener sum) is stated
//! and tested on the mix before the limiter ([`Output::unlimited`](crate::Output)).

use crate::gain::soft_limit;

/// Peaks above this (−1 dBFS) make the limiter lower the gain.
pub const LIMITER_THRESHOLD: i64 = 29_204;

/// Fraction of the way from the current gain to unity recovered per frame (≈ 200 ms time
/// constant at 20 ms frames).
const RELEASE_PER_FRAME: f32 = 0.1;

/// One group's limiter state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limiter {
    gain: f32,
}

impl Default for Limiter {
    fn default() -> Self {
        Self { gain: 1.0 }
    }
}

impl Limiter {
    /// Limits one frame of `mix` into `out` (same length).
    pub(crate) fn process(&mut self, mix: &[i32], out: &mut [i16]) {
        let peak = mix.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0) as i64;
        let target =
            if peak > LIMITER_THRESHOLD { LIMITER_THRESHOLD as f32 / peak as f32 } else { 1.0 };
        let start = self.gain;
        if target >= 1.0 && start >= 1.0 {
            // The common case: nothing to do but the safety knee (a no-op below it).
            for (o, &m) in out.iter_mut().zip(mix) {
                *o = soft_limit(i64::from(m));
            }
            return;
        }
        let (end, ramp) = if target < start {
            // Attack: reach the needed gain within 1/20 of the frame, then hold it.
            (target, (mix.len() / 20).max(1))
        } else {
            // Release: part of the way back towards the frame's own target, over the frame.
            let end = start + (target - start) * RELEASE_PER_FRAME;
            (if end > 0.999 { 1.0 } else { end }, mix.len().max(1))
        };
        for (i, (o, &m)) in out.iter_mut().zip(mix).enumerate() {
            let gain =
                if i >= ramp { end } else { start + (end - start) * (i + 1) as f32 / ramp as f32 };
            *o = soft_limit((m as f32 * gain) as i64);
        }
        self.gain = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_threshold_it_is_transparent() {
        let mut limiter = Limiter::default();
        let mix: Vec<i32> = (0..960).map(|i| (i * 30) - 14_000).collect();
        let mut out = vec![0i16; 960];
        limiter.process(&mix, &mut out);
        assert!(out.iter().zip(&mix).all(|(&o, &m)| i32::from(o) == m));
    }

    #[test]
    fn an_overload_is_brought_under_full_scale_and_released_slowly() {
        let mut limiter = Limiter::default();
        let loud = vec![120_000i32; 960];
        let mut out = vec![0i16; 960];
        limiter.process(&loud, &mut out);
        assert!(out.iter().all(|&o| o < i16::MAX));
        assert!(out[100..].iter().all(|&o| i64::from(o) <= LIMITER_THRESHOLD + 1), "held");
        let quiet = vec![10_000i32; 960];
        limiter.process(&quiet, &mut out);
        assert!(out[959] < 10_000, "released slowly, not at once: {}", out[959]);
        for _ in 0..100 {
            limiter.process(&quiet, &mut out);
        }
        assert_eq!(out[959], 10_000, "back to unity");
    }
}
