//! Playbacks: each one a hidden source in the mixer that says its clip once and leaves.
//!
//! A playback joins the core like the tone source: it can speak, hears nothing, is a ghost
//! and has the gate off, so it is mixed exactly while it plays. Being an ordinary source,
//! everything that removes a source from a listener's mix removes it: the listener's `deaf`
//! flag, and a relationship naming it (`relate(P, playback, deaf)`). A playback for one
//! participant is muted toward every other listener with `mute` records (`playback → X`),
//! kept up to date as participants and recorders join: the core's own matrix expresses
//! "only P hears this", so its exactness (the oracle) covers private playback too, and the
//! listeners who do not hear it keep sharing one group and one encoder.

use mixminus_core::{Conference, ParticipantId, Relationship};

use super::MediaClip;
use crate::RuntimeError;

/// Why a playback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PlaybackEnd {
    /// The clip played to its end.
    Finished,
    /// A stop command ended it.
    Stopped,
    /// The participant it played to left.
    TargetLeft,
    /// The conference ended.
    ConferenceEnded,
}

impl PlaybackEnd {
    /// A word for events and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Stopped => "stopped",
            Self::TargetLeft => "target_left",
            Self::ConferenceEnded => "conference_ended",
        }
    }
}

/// A playback now, in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PlaybackSnapshot {
    /// Its id: a participant id of the mixer, which relationships may name.
    pub id: ParticipantId,
    /// The media it plays (as the request named it).
    pub media: String,
    /// The one participant it plays to; `None` = the whole conference.
    pub target: Option<ParticipantId>,
    /// Milliseconds played so far.
    pub position_ms: u64,
    /// The clip's length, milliseconds.
    pub duration_ms: u64,
}

pub(crate) struct Playback {
    pub(crate) id: ParticipantId,
    pub(crate) media: String,
    pub(crate) target: Option<ParticipantId>,
    clip: MediaClip,
    position: usize,
}

impl Playback {
    /// Joins the playback's source and, for a private playback, mutes it toward every
    /// listener in `others` (everyone but the target). All or nothing.
    pub(crate) fn start(
        conference: &mut Conference,
        clip: MediaClip,
        media: String,
        target: Option<ParticipantId>,
        others: &[ParticipantId],
    ) -> Result<Self, RuntimeError> {
        let id = conference.join(crate::tone::hidden_source())?;
        if target.is_some() && !others.is_empty() {
            if let Err(e) = conference.relate(&[id], others, Relationship::MUTE) {
                let _ = conference.leave(id);
                return Err(e.into());
            }
        }
        Ok(Self { id, media, target, clip, position: 0 })
    }

    /// A listener joined: a private playback must not reach it.
    pub(crate) fn hide_from(&self, conference: &mut Conference, listener: ParticipantId) {
        if self.target.is_some_and(|t| t != listener) {
            // Both ids are in the conference: cannot fail.
            let _ = conference.relate(&[self.id], &[listener], Relationship::MUTE);
        }
    }

    /// Hands this tick's frame to the conference; false once the clip is over (the
    /// playback should then end).
    pub(crate) fn render(&mut self, conference: &mut Conference) -> bool {
        let pcm = self.clip.pcm();
        let Some(rest) = pcm.get(self.position..).filter(|r| !r.is_empty()) else {
            return false;
        };
        let Ok(out) = conference.input_mut(self.id) else { return false };
        let n = out.len().min(rest.len());
        out[..n].copy_from_slice(&rest[..n]);
        out[n..].fill(0);
        self.position += out.len();
        true
    }

    pub(crate) fn snapshot(&self) -> PlaybackSnapshot {
        let rate = u64::from(self.clip.rate().max(1));
        PlaybackSnapshot {
            id: self.id,
            media: self.media.clone(),
            target: self.target,
            position_ms: (self.position.min(self.clip.pcm().len()) as u64) * 1000 / rate,
            duration_ms: self.clip.duration_ms(),
        }
    }
}
