//! Talk detection: energy per frame, attack and hangover.

use crate::TalkConfig;

/// Mean absolute sample value of a frame (0..=32768): cheap, and what the threshold means.
pub fn frame_energy(frame: &[i16]) -> u32 {
    if frame.is_empty() {
        return 0;
    }
    // u32 lanes vectorise twice as wide as u64; a chunk of 65,536 samples of at most 32,768
    // each sums to at most 2^31, so a chunk's sum cannot overflow.
    let sum: u64 = frame
        .chunks(1 << 16)
        .map(|chunk| chunk.iter().map(|&s| u32::from(s.unsigned_abs())).sum::<u32>() as u64)
        .sum();
    (sum / frame.len() as u64) as u32
}

/// One participant's detector state.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TalkState {
    pub(crate) talking: bool,
    /// Mixed (see [`TalkConfig`]): from the onset, before talking is confirmed.
    pub(crate) mixing: bool,
    above: u16,
    below: u16,
}

/// What a frame did to the detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TalkChange {
    None,
    Started,
    Stopped,
}

impl TalkState {
    /// Feeds one tick. `energy` is `None` when nothing was sent this tick.
    pub(crate) fn update(
        &mut self,
        config: &TalkConfig,
        threshold: u32,
        energy: Option<u32>,
    ) -> TalkChange {
        let was = self.talking;
        if threshold == 0 {
            // Gate off: sending is talking, no attack or hangover.
            self.talking = energy.is_some();
            self.mixing = self.talking;
        } else if energy.is_some_and(|e| e >= threshold) {
            self.below = 0;
            self.above = self.above.saturating_add(1);
            self.talking |= self.above >= config.attack_frames;
            self.mixing |= self.above >= config.onset_frames;
        } else {
            self.above = 0;
            self.below = self.below.saturating_add(1);
            if self.below >= config.hangover_frames {
                self.talking = false;
                self.mixing = false;
            } else if !self.talking && self.below >= config.attack_frames {
                // An onset that never became talking: a short release, not a hangover.
                self.mixing = false;
            }
        }
        match (was, self.talking) {
            (false, true) => TalkChange::Started,
            (true, false) => TalkChange::Stopped,
            _ => TalkChange::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_and_hangover() {
        let config = TalkConfig {
            energy_threshold: 100,
            attack_frames: 5,
            onset_frames: 1,
            hangover_frames: 40,
        };
        let mut t = TalkState::default();
        for i in 1..5 {
            assert_eq!(t.update(&config, 100, Some(500)), TalkChange::None, "frame {i}");
            assert!(t.mixing, "mixed from the onset, frame {i}");
        }
        assert_eq!(t.update(&config, 100, Some(500)), TalkChange::Started);
        for _ in 1..40 {
            assert_eq!(t.update(&config, 100, Some(10)), TalkChange::None);
        }
        assert_eq!(t.update(&config, 100, None), TalkChange::Stopped);
        // A blip shorter than the attack does not start talking.
        for _ in 0..4 {
            t.update(&config, 100, Some(500));
        }
        assert_eq!(t.update(&config, 100, Some(0)), TalkChange::None);
        assert!(!t.talking);
        // It was mixed from its first frame, and is released after the attack's length.
        assert!(t.mixing);
        for _ in 1..5 {
            t.update(&config, 100, Some(0));
        }
        assert!(!t.mixing);
    }

    #[test]
    fn gate_off_follows_sending() {
        let config = TalkConfig { energy_threshold: 0, ..Default::default() };
        let mut t = TalkState::default();
        assert_eq!(t.update(&config, 0, Some(0)), TalkChange::Started);
        assert_eq!(t.update(&config, 0, None), TalkChange::Stopped);
    }

    #[test]
    fn energy_is_mean_abs() {
        assert_eq!(frame_energy(&[100, -100, 300, -300]), 200);
        assert_eq!(frame_energy(&[i16::MIN; 4]), 32768);
        assert_eq!(frame_energy(&[]), 0);
        // Longer than one summing chunk, all at full scale.
        assert_eq!(frame_energy(&vec![i16::MIN; 200_000]), 32768);
    }
}
