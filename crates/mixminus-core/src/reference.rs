//! The naive reference mixer: what the mix must equal, computed the obvious way.
//!
//! Every listener loops over every source and checks the relationship of each pair, as
//! FreeSWITCH's mod_conference does once relationships exist: O(N² + N·T·F) per tick. It is
//! the oracle for the property tests and the baseline in the benchmarks; never use it to mix.

use std::collections::HashMap;

use crate::{Gain, ParticipantId, Relationship};

/// One participant as the reference sees it.
#[derive(Debug, Clone)]
pub struct NaiveParticipant {
    /// Its id.
    pub id: ParticipantId,
    /// Not muted.
    pub can_speak: bool,
    /// Not deaf.
    pub can_hear: bool,
    /// Mixed this tick (talking and sent a frame); decided by the caller.
    pub active: bool,
    /// Mixed this tick but not the last: its frame is faded in over
    /// [`NaiveMixer::onset_fade_samples`] samples.
    pub onset: bool,
    /// Gain on what it says.
    pub input_gain: Gain,
    /// Gain on what it hears.
    pub output_gain: Gain,
    /// Its frame this tick.
    pub frame: Vec<i16>,
}

/// The reference mixer.
#[derive(Debug, Clone, Default)]
pub struct NaiveMixer {
    /// Everyone in the conference.
    pub participants: Vec<NaiveParticipant>,
    /// Directed records `(P, O) → value`.
    pub relationships: HashMap<(ParticipantId, ParticipantId), Relationship>,
    /// The conference's [`onset_fade_samples`](crate::ConferenceConfig::onset_fade_samples).
    pub onset_fade_samples: usize,
    outputs: Vec<Vec<i16>>,
    unlimited: Vec<Vec<i32>>,
}

impl NaiveMixer {
    /// A reference over these participants (listener order = output index) and records.
    /// The fields are public; this constructor exists because `outputs` is not, so code
    /// outside the crate (the fuzz targets) can build one without `..Default::default()`.
    pub fn new(
        participants: Vec<NaiveParticipant>,
        relationships: HashMap<(ParticipantId, ParticipantId), Relationship>,
    ) -> Self {
        Self {
            participants,
            relationships,
            onset_fade_samples: 0,
            outputs: Vec::new(),
            unlimited: Vec::new(),
        }
    }

    /// Mixes every listener's output from scratch.
    pub fn mix(&mut self) {
        let frame_len = self.participants.first().map_or(0, |p| p.frame.len());
        self.outputs.resize_with(self.participants.len(), Vec::new);
        self.unlimited.resize_with(self.participants.len(), Vec::new);
        let mut acc = vec![0i32; frame_len];
        for (o, listener) in self.participants.iter().enumerate() {
            acc.fill(0);
            for source in &self.participants {
                if self.hears(listener, source) {
                    for (i, (a, &s)) in acc.iter_mut().zip(&source.frame).enumerate() {
                        let scaled = source.input_gain.scale_sample(s);
                        *a += if source.onset && i < self.onset_fade_samples {
                            crate::onset_fade(scaled, i, self.onset_fade_samples)
                        } else {
                            scaled
                        };
                    }
                }
            }
            let unlimited = &mut self.unlimited[o];
            unlimited.clear();
            unlimited.extend(acc.iter().map(|&a| listener.output_gain.apply(a)));
            let out = &mut self.outputs[o];
            out.clear();
            out.extend(acc.iter().map(|&a| listener.output_gain.apply_and_limit(a)));
        }
    }

    /// Listener `index`'s mix of the last [`NaiveMixer::mix`] before any limiting, output
    /// gain applied: what [`Output::unlimited`](crate::Output) must equal.
    pub fn unlimited_output(&self, index: usize) -> &[i32] {
        &self.unlimited[index]
    }

    /// Listener `index`'s output of the last [`NaiveMixer::mix`], through the static soft
    /// knee only (no gain riding): equal to the conference's output whenever no mix came
    /// near full scale recently.
    pub fn output(&self, index: usize) -> &[i16] {
        &self.outputs[index]
    }

    /// DESIGN.md's rule: `o` hears `s` exactly when all of these hold.
    fn hears(&self, o: &NaiveParticipant, s: &NaiveParticipant) -> bool {
        let rel = |p: ParticipantId, q: ParticipantId| {
            self.relationships.get(&(p, q)).copied().unwrap_or_default()
        };
        s.id != o.id
            && o.can_hear
            && s.can_speak
            && s.active
            && !rel(o.id, s.id).deaf
            && !rel(s.id, o.id).mute
    }
}
