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

    /// Applies this (output) gain to a mixed `i32` sample and clamps to `i16`: the single
    /// limiter at the end of every mix.
    #[inline]
    pub fn apply_and_clamp(self, mixed: i32) -> i16 {
        let scaled = if self.is_unity() {
            mixed as i64
        } else {
            (mixed as i64 * self.0 as i64) >> Self::SHIFT
        };
        scaled.clamp(i16::MIN as i64, i16::MAX as i64) as i16
    }
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
    fn clamp_saturates() {
        assert_eq!(Gain::UNITY.apply_and_clamp(40_000), i16::MAX);
        assert_eq!(Gain::UNITY.apply_and_clamp(-40_000), i16::MIN);
        assert_eq!(Gain::MAX.apply_and_clamp(i32::MAX), i16::MAX);
        assert_eq!(Gain::MAX.scale_sample(i16::MIN), -131072);
        assert!(Gain::from_q12(16385).is_err());
    }
}
