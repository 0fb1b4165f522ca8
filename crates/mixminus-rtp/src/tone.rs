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
    phase: f32,
}

impl TonePlayer {
    /// Joins the tone source: it can speak (gate off, so it is mixed exactly while it
    /// plays) and hears nothing. Allocates once, here.
    pub(crate) fn new(conference: &mut Conference) -> Result<Self, RuntimeError> {
        let id = conference.join(JoinOptions {
            muted: Some(false),
            deaf: Some(true),
            ghost: true,
            energy_threshold: Some(0),
            input_gain: Gain::UNITY,
            ..Default::default()
        })?;
        Ok(Self {
            id,
            rate: conference.config().sample_rate.hz() as f32,
            queue: Vec::with_capacity(8),
            phase: 0.0,
        })
    }

    /// Two rising beeps.
    pub(crate) fn play_entry(&mut self) {
        self.queue.clear();
        // Stored reversed: `render` pops from the end.
        self.queue.extend([(1_320.0, 4), (0.0, 2), (880.0, 4)]);
    }

    /// Two falling beeps.
    pub(crate) fn play_exit(&mut self) {
        self.queue.clear();
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
        let Some(segment) = self.queue.last_mut() else { return };
        let freq = segment.0;
        segment.1 -= 1;
        if segment.1 == 0 {
            self.queue.pop();
        }
        let Ok(out) = conference.input_mut(self.id) else { return };
        let step = std::f32::consts::TAU * freq / self.rate;
        for sample in out.iter_mut() {
            *sample = (self.phase.sin() * AMPLITUDE) as i16;
            self.phase = (self.phase + step) % std::f32::consts::TAU;
        }
    }
}
