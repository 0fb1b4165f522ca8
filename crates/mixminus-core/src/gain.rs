//! Gains in fixed point, so that the mixer and its reference agree to the sample.

use crate::Error;

/// A linear gain in Q12 fixed point (4096 = unity), between mute (0) and +12 dB (16384).
///
/// Fixed point keeps the mix exact and reproducible: the same arithmetic runs in the mixer
/// and in the reference it is tested against. The +12 dB ceiling bounds the `i32` sum (see
/// [`MAX_PARTICIPANTS`](crate::MAX_PARTICIPANTS)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gain(u16);

impl Gain {
    /// Unity gain (0 dB).
    pub const UNITY: Gain = Gain(Self::ONE);
    /// Silence (−∞ dB).
    pub const MUTE: Gain = Gain(0);
    /// The largest gain, +12 dB (×4).
    pub const MAX: Gain = Gain(4 * Self::ONE);

    const ONE: u16 = 1 << Self::SHIFT;
    const SHIFT: u32 = 12;

    /// A gain from its raw Q12 value (4096 = unity); at most [`Gain::MAX`].
    pub fn from_q12(raw: u16) -> Result<Self, Error> {
        if raw > Self::MAX.0 {
            return Err(Error::GainOutOfRange);
        }
        Ok(Gain(raw))
    }

    /// The raw Q12 value.
    pub const fn q12(self) -> u16 {
        self.0
    }

    /// A FreeSWITCH-style volume step, −4..=+4, 3 dB per step (−4 is −12 dB, +4 is +12 dB).
    ///
    /// FreeSWITCH's `volume_in` / `volume_out` take these steps; Kazoo passes them through.
    pub fn from_level(level: i8) -> Result<Self, Error> {
        // 4096 · 10^(3k/20), rounded; +4 is clamped to exactly ×4 so it stays representable.
        const TABLE: [u16; 9] = [1030, 1453, 2052, 2899, 4096, 5786, 8173, 11544, 16384];
        if !(-4..=4).contains(&level) {
            return Err(Error::GainOutOfRange);
        }
        Ok(Gain(TABLE[(level + 4) as usize]))
    }

    /// Whether this is exactly unity, so the multiply can be skipped.
    pub const fn is_unity(self) -> bool {
        self.0 == Self::ONE
    }

    /// Scales one input sample; exact and total (`i16::MIN · MAX` fits easily in `i32`).
    #[inline]
    pub fn scale_sample(self, sample: i16) -> i32 {
        (sample as i32 * self.0 as i32) >> Self::SHIFT
    }

    /// Applies this (output) gain to a mixed `i32` sample (saturating at the `i32` range,
    /// which no real mix reaches).
    #[inline]
    pub fn apply(self, mixed: i32) -> i32 {
        let scaled = (mixed as i64 * self.0 as i64) >> Self::SHIFT;
        scaled.clamp(i32::MIN as i64, i32::MAX as i64) as i32
    }

    /// Applies this (output) gain to a mixed `i32` sample and brings it into `i16` through
    /// [`soft_limit`]: the single limiter at the end of every mix.
    #[inline]
    pub fn apply_and_limit(self, mixed: i32) -> i16 {
        let scaled = if self.is_unity() {
            mixed as i64
        } else {
            (mixed as i64 * self.0 as i64) >> Self::SHIFT
        };
        soft_limit(scaled)
    }
}

/// Where the limiter's knee starts: −2.5 dBFS. Below it samples pass unchanged.
pub const LIMITER_KNEE: i64 = 24_576;

/// The limiter at the end of every mix: a static soft-knee curve from a mixed sample of
/// any size to `i16`. Up to [`LIMITER_KNEE`] a sample passes unchanged; above it the
/// excess is bent by `atan` towards full scale, with slope 1 at the knee, and never
/// reaches it. `atan` approaches its limit slowly, so even four full-scale talkers in
/// phase (a sum of 4× full scale) land below 32,520: their peaks are rounded, not flattened
/// at a rail, and the distortion is far lower than a clamp's.
///
/// Stateless on purpose: a listener that moves between mix groups never hears one group's
/// limiter gain give way to another's, and the reference mixer applies exactly this rule.
#[inline]
pub fn soft_limit(mixed: i64) -> i16 {
    let magnitude = mixed.unsigned_abs();
    if magnitude <= LIMITER_KNEE as u64 {
        // Within ±24576: fits i16 exactly.
        return mixed as i16;
    }
    let range = (i16::MAX as i64 - LIMITER_KNEE) as f64;
    let excess = (magnitude - LIMITER_KNEE as u64) as f64 / range;
    let half_pi = std::f64::consts::FRAC_PI_2;
    // (2/π)·atan(π/2·e) has slope 1 at 0 and stays below 1; `as` truncates toward zero,
    // and the cap keeps astronomically large sums off the rail too.
    let bent = LIMITER_KNEE + ((range * (excess * half_pi).atan() / half_pi) as i64).min(8_190);
    (if mixed < 0 { -bent } else { bent }) as i16
}

impl Default for Gain {
    fn default() -> Self {
        Self::UNITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_three_db_steps() {
        assert_eq!(Gain::from_level(0).unwrap(), Gain::UNITY);
        assert_eq!(Gain::from_level(4).unwrap(), Gain::MAX);
        assert!(Gain::from_level(5).is_err());
        assert!(Gain::from_level(-5).is_err());
        for l in -4..4 {
            let ratio = Gain::from_level(l + 1).unwrap().q12() as f64
                / Gain::from_level(l).unwrap().q12() as f64;
            let db = 20.0 * ratio.log10();
            assert!((db - 3.0).abs() < 0.05, "step {l}: {db} dB");
        }
    }

    #[test]
    fn limiter_is_transparent_below_the_knee_and_never_reaches_full_scale() {
        assert_eq!(Gain::UNITY.apply_and_limit(1_000), 1_000);
        assert_eq!(Gain::UNITY.apply_and_limit(-24_576), -24_576);
        assert!((24_576..i16::MAX).contains(&Gain::UNITY.apply_and_limit(40_000)));
        assert!((-i16::MAX..-24_576).contains(&Gain::UNITY.apply_and_limit(-40_000)));
        assert!(Gain::MAX.apply_and_limit(i32::MAX) < i16::MAX);
        assert!(Gain::MAX.apply_and_limit(i32::MIN) > -i16::MAX);
        // Monotonic, and continuous at the knee.
        let curve: Vec<i16> = (0..200_000).step_by(7).map(soft_limit).collect();
        assert!(curve.windows(2).all(|w| w[0] <= w[1]));
        assert!(soft_limit(24_577) - soft_limit(24_576) <= 1);
        assert_eq!(Gain::MAX.scale_sample(i16::MIN), -131072);
        assert!(Gain::from_q12(16385).is_err());
    }
}
