//! Conference configuration: media format, talk detection, limits, join defaults.

use crate::Error;

/// The hard ceiling on participants per conference.
///
/// The mix accumulates in `i32`: 16,000 sources at full scale and the maximum input gain
/// (×4) still fit (16,000 · 32,768 · 4 < 2³¹), so the sum never wraps.
pub const MAX_PARTICIPANTS: usize = 16_000;

/// Conference sample rate. Mono throughout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SampleRate {
    /// 8 kHz (narrowband).
    Hz8000,
    /// 16 kHz (wideband).
    Hz16000,
    /// 24 kHz (super-wideband).
    Hz24000,
    /// 48 kHz (fullband), the default.
    #[default]
    Hz48000,
}

impl SampleRate {
    /// Samples per second.
    pub const fn hz(self) -> u32 {
        match self {
            SampleRate::Hz8000 => 8_000,
            SampleRate::Hz16000 => 16_000,
            SampleRate::Hz24000 => 24_000,
            SampleRate::Hz48000 => 48_000,
        }
    }

    /// Parses a rate in Hz (Kazoo's profile `rate`).
    pub fn from_hz(hz: u32) -> Result<Self, Error> {
        Ok(match hz {
            8_000 => SampleRate::Hz8000,
            16_000 => SampleRate::Hz16000,
            24_000 => SampleRate::Hz24000,
            48_000 => SampleRate::Hz48000,
            _ => return Err(Error::InvalidConfig("rate must be 8000, 16000, 24000 or 48000")),
        })
    }
}

/// Frame (tick) duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum FrameDuration {
    /// 10 ms.
    Ms10,
    /// 20 ms, the default and what nearly every VoIP endpoint sends.
    #[default]
    Ms20,
    /// 40 ms.
    Ms40,
    /// 60 ms.
    Ms60,
}

impl FrameDuration {
    /// Milliseconds per frame.
    pub const fn millis(self) -> u32 {
        match self {
            FrameDuration::Ms10 => 10,
            FrameDuration::Ms20 => 20,
            FrameDuration::Ms40 => 40,
            FrameDuration::Ms60 => 60,
        }
    }

    /// Parses a duration in ms (Kazoo's profile `interval`).
    pub fn from_millis(ms: u32) -> Result<Self, Error> {
        Ok(match ms {
            10 => FrameDuration::Ms10,
            20 => FrameDuration::Ms20,
            40 => FrameDuration::Ms40,
            60 => FrameDuration::Ms60,
            _ => return Err(Error::InvalidConfig("interval must be 10, 20, 40 or 60 ms")),
        })
    }
}

/// Talk detection: who is mixed this tick.
///
/// A participant's *energy* is the mean absolute sample value of its frame (0..=32768). It
/// starts talking after `attack_frames` consecutive frames at or above the threshold and
/// stops after `hangover_frames` consecutive frames below it. The defaults are FreeSWITCH's
/// (5 frames attack, 40 frames hangover). A threshold of 0 turns the gate off: everyone who
/// sends a frame is mixed, as FreeSWITCH does with energy 0.
///
/// Being *mixed* starts sooner than *talking*: after `onset_frames` frames above the
/// threshold (default 1), so the first 100 ms of every utterance are not cut, which is what
/// FreeSWITCH's rule (mix only after the attack) costs in speech quality. A burst that does
/// not last the attack stops being mixed after `attack_frames` frames below the threshold,
/// so a cough does not open the gate for a whole hangover. Talking events and the floor
/// keep FreeSWITCH's attack. `onset_frames = attack_frames` gives FreeSWITCH's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TalkConfig {
    /// Energy (mean |sample|) at or above which a frame counts as speech; 0 = gate off.
    pub energy_threshold: u32,
    /// Consecutive frames above the threshold before talking starts (at least 1).
    pub attack_frames: u16,
    /// Consecutive frames above the threshold before a source is mixed (1..=attack_frames).
    pub onset_frames: u16,
    /// Consecutive frames below the threshold before talking stops (at least 1).
    pub hangover_frames: u16,
}

impl Default for TalkConfig {
    fn default() -> Self {
        Self { energy_threshold: 100, attack_frames: 5, onset_frames: 1, hangover_frames: 40 }
    }
}

/// The flags a participant joins with unless the join says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JoinFlags {
    /// Join unable to speak (Kazoo's `join_muted`).
    pub muted: bool,
    /// Join unable to hear (Kazoo's `join_deaf`).
    pub deaf: bool,
}

/// Everything a [`Conference`](crate::Conference) is built from.
///
/// ```
/// use mixminus_core::{ConferenceConfig, SampleRate};
/// let config = ConferenceConfig { sample_rate: SampleRate::Hz16000, ..Default::default() };
/// assert_eq!(config.frame_samples(), 320);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceConfig {
    /// Mixing sample rate (mono).
    pub sample_rate: SampleRate,
    /// Tick length.
    pub frame: FrameDuration,
    /// Who counts as talking.
    pub talk: TalkConfig,
    /// Mix only the N loudest talkers; 0 = no limit.
    pub max_active_speakers: usize,
    /// At most this many participants (at most [`MAX_PARTICIPANTS`]).
    pub max_participants: usize,
    /// At most this many directed relationship records.
    pub max_relationships: usize,
    /// Ticks a mix group is kept after its last listener left it, so a talker who pauses
    /// briefly keeps its group (and downstream encoder state).
    pub group_idle_ticks: u32,
    /// Join flags of ordinary members. Kazoo's schema defaults `member.join_muted` to true;
    /// we default to false and let the control plane apply Kazoo's default where a Kazoo
    /// document says so.
    pub member_join: JoinFlags,
    /// Join flags of moderators.
    pub moderator_join: JoinFlags,
    /// A source's first mixed frame after it was not mixed is faded in over this many
    /// samples (linear), so a talk onset that starts loud (a tone, a word cut by the gate)
    /// does not click. 0 (the default) mixes frames exactly as they come; the RTP bridge
    /// sets 5 ms.
    pub onset_fade_samples: usize,
}

impl Default for ConferenceConfig {
    fn default() -> Self {
        Self {
            sample_rate: SampleRate::default(),
            frame: FrameDuration::default(),
            talk: TalkConfig::default(),
            max_active_speakers: 0,
            max_participants: 10_000,
            max_relationships: 1_000_000,
            group_idle_ticks: 50,
            member_join: JoinFlags::default(),
            moderator_join: JoinFlags::default(),
            onset_fade_samples: 0,
        }
    }
}

impl ConferenceConfig {
    /// Samples in one frame at this rate and duration.
    pub const fn frame_samples(&self) -> usize {
        (self.sample_rate.hz() / 1000 * self.frame.millis()) as usize
    }

    /// Checks the values a type cannot rule out.
    pub fn validate(&self) -> Result<(), Error> {
        if self.max_participants == 0 || self.max_participants > MAX_PARTICIPANTS {
            return Err(Error::InvalidConfig("max_participants must be 1..=16000"));
        }
        if self.talk.attack_frames == 0 || self.talk.hangover_frames == 0 {
            return Err(Error::InvalidConfig(
                "attack_frames and hangover_frames must be at least 1",
            ));
        }
        if self.talk.onset_frames == 0 || self.talk.onset_frames > self.talk.attack_frames {
            return Err(Error::InvalidConfig("onset_frames must be 1..=attack_frames"));
        }
        if self.onset_fade_samples > self.frame_samples() {
            return Err(Error::InvalidConfig("onset_fade_samples must be at most one frame"));
        }
        if self.talk.energy_threshold > 32_768 {
            return Err(Error::InvalidConfig("energy_threshold must be at most 32768"));
        }
        Ok(())
    }
}
