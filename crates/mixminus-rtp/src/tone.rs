//! Entry and exit tones, mixed in through an internal source so every listener hears them
//! through the ordinary mix (and its groups).

use mixminus_core::{Conference, Event, Gain, JoinOptions, ParticipantId};

use crate::RuntimeError;

/// Peak amplitude of the tones: about −18 dBFS, audible without startling.
const AMPLITUDE: f32 = 4_000.0;

/// A hidden participant that says a short tone when asked.
pub(crate) struct TonePlayer {
    id: ParticipantId,
    rate: f32,
    /// (frequency Hz, frames) segments still to play; the last is played first.
    queue: Vec<(f32, u32)>,
    /// Samples of the current segment played so far.
    position: usize,
}

/// Each beep rises from and falls to silence over this long (a raised cosine), so it
/// starts and ends without a click; every beep starts at phase 0 and the gaps are true
/// silence, so no segment carries a DC offset.
const RAMP_SECONDS: f32 = 0.005;

impl TonePlayer {
    /// Joins the tone source: it can speak (gate off, so it is mixed exactly while it
    /// plays) and hears nothing. Allocates once, here.
    pub(crate) fn new(conference: &mut Conference) -> Result<Self, RuntimeError> {
        let id = conference.join(hidden_source())?;
        Ok(Self {
            id,
            rate: conference.config().sample_rate.hz() as f32,
            queue: Vec::with_capacity(8),
            position: 0,
        })
    }

    /// Two rising beeps.
    pub(crate) fn play_entry(&mut self) {
        self.queue.clear();
        self.position = 0;
        // Stored reversed: `render` pops from the end.
        self.queue.extend([(1_320.0, 4), (0.0, 2), (880.0, 4)]);
    }

    /// Two falling beeps.
    pub(crate) fn play_exit(&mut self) {
        self.queue.clear();
        self.position = 0;
        self.queue.extend([(440.0, 4), (0.0, 2), (660.0, 4)]);
    }

    /// Whether `event` is about the tone source itself (internal, not forwarded).
    pub(crate) fn is_source_of(&self, event: &Event) -> bool {
        matches!(event,
            Event::TalkingStarted(id) | Event::TalkingStopped(id) | Event::Joined(id) | Event::Left(id)
                if *id == self.id)
            || matches!(event, Event::FloorChanged { from, to }
                if *from == Some(self.id) || *to == Some(self.id))
    }

    /// Hands this tick's tone frame to the conference, if a tone is playing.
    pub(crate) fn render(&mut self, conference: &mut Conference) {
        let Some(&(freq, frames_left)) = self.queue.last() else { return };
        let rate = self.rate;
        let Ok(out) = conference.input_mut(self.id) else { return };
        let frame = out.len();
        // The segment's whole length: what is left plus what was played.
        let length = frames_left as usize * frame + self.position;
        let ramp = (RAMP_SECONDS * rate) as usize;
        write_beep(out, freq, rate, AMPLITUDE, self.position, length, ramp);
        self.position += frame;
        if frames_left <= 1 {
            self.queue.pop();
            self.position = 0;
        } else if let Some(segment) = self.queue.last_mut() {
            segment.1 -= 1;
        }
    }
}

/// How a source the bridge itself plays (tones, media files) joins: it speaks with the gate
/// off (mixed exactly while it plays), hears nothing, and is not a participant anyone sees.
pub(crate) fn hidden_source() -> JoinOptions {
    JoinOptions {
        muted: Some(false),
        deaf: Some(true),
        ghost: true,
        energy_threshold: Some(0),
        input_gain: Gain::UNITY,
        ..Default::default()
    }
}

/// Writes samples `position..position + out.len()` of a beep `length` samples long at `freq`
/// Hz and `rate` Hz: raised-cosine edges over `ramp` samples at both ends (no clicks, no DC
/// step), the phase counted from the beep's own start. `freq <= 0` writes silence.
pub fn write_beep(
    out: &mut [i16],
    freq: f32,
    rate: f32,
    amplitude: f32,
    position: usize,
    length: usize,
    ramp: usize,
) {
    let step = std::f32::consts::TAU * freq / rate;
    for (i, sample) in out.iter_mut().enumerate() {
        let n = position + i;
        if freq <= 0.0 {
            *sample = 0;
            continue;
        }
        let edge = n.min(length.saturating_sub(n + 1));
        let envelope = if edge >= ramp {
            1.0
        } else {
            0.5 - 0.5 * (std::f32::consts::PI * edge as f32 / ramp as f32).cos()
        };
        let phase = (step * n as f32) % std::f32::consts::TAU;
        *sample = (phase.sin() * amplitude * envelope) as i16;
    }
}

#[cfg(test)]
mod tests {
    use mixminus_core::{ConferenceConfig, TalkConfig};

    use super::*;

    #[test]
    fn beeps_start_and_end_on_ramps_with_no_dc() {
        let config = ConferenceConfig {
            talk: TalkConfig { energy_threshold: 0, ..Default::default() },
            ..Default::default()
        };
        let mut conference = Conference::new(config).unwrap();
        let listener = conference.join(JoinOptions::default()).unwrap();
        let mut tone = TonePlayer::new(&mut conference).unwrap();
        tone.play_entry();
        let mut heard = Vec::new();
        for _ in 0..12 {
            tone.render(&mut conference);
            conference.tick();
            heard.extend_from_slice(conference.output(listener).unwrap().pcm);
        }
        let frame = conference.frame_samples();
        // Beep, gap, beep: 4, 2 and 4 frames.
        let (first, gap, second) =
            (&heard[..4 * frame], &heard[4 * frame..6 * frame], &heard[6 * frame..10 * frame]);
        for beep in [first, second] {
            assert!(beep[0].abs() < 50 && beep[beep.len() - 1].abs() < 50, "edges start at 0");
            // No sample-to-sample jump larger than the sine's own steepest slope allows.
            let max_step = beep.windows(2).map(|w| (w[1] - w[0]).abs()).max().unwrap();
            assert!(max_step < 800, "a jump of {max_step}");
            let mean = beep.iter().map(|&s| f64::from(s)).sum::<f64>() / beep.len() as f64;
            assert!(mean.abs() < 20.0, "DC {mean}");
        }
        assert!(gap.iter().all(|&s| s == 0), "the gap is silence");
        assert!(heard[10 * frame..].iter().all(|&s| s == 0), "done");
    }
}
