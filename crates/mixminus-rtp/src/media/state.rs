//! The media side of one conference task: its playbacks and its recording, and the events
//! they raise. The task calls in around each tick and on joins and leaves.

use std::collections::HashSet;

use mixminus_core::{Conference, Event, ParticipantId};
use tokio::sync::broadcast;

use super::player::{Playback, PlaybackEnd, PlaybackSnapshot};
use super::recorder::{Finishing, Recorder, RecordingEnd, RecordingRequest, RecordingSnapshot};
use super::{MediaClip, RecordingFormat};
use crate::RuntimeError;

/// Playbacks one conference runs at once.
pub const MAX_PLAYBACKS: usize = 16;

/// What playbacks and recordings tell their conference's subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MediaEvent {
    /// A playback started.
    PlaybackStarted {
        /// Its id.
        id: ParticipantId,
        /// The media, as the request named it.
        media: String,
        /// The one participant it plays to (`None`: everyone).
        target: Option<ParticipantId>,
    },
    /// A playback ended.
    PlaybackEnded {
        /// Its id.
        id: ParticipantId,
        /// The media.
        media: String,
        /// The one participant it played to (`None`: everyone).
        target: Option<ParticipantId>,
        /// Why.
        end: PlaybackEnd,
    },
    /// A recording started.
    RecordingStarted {
        /// Its file.
        path: std::path::PathBuf,
        /// Its format.
        format: RecordingFormat,
    },
    /// A recording stopped (the file is being closed; its summary follows from the stop).
    RecordingStopped {
        /// Its file.
        path: std::path::PathBuf,
        /// Audio recorded, milliseconds.
        duration_ms: u64,
        /// Frames dropped because the writer fell behind.
        dropped_frames: u64,
        /// Why.
        end: RecordingEnd,
    },
}

pub(crate) struct MediaState {
    playbacks: Vec<Playback>,
    recorder: Option<Recorder>,
    /// Ids of hidden sources and listeners whose `Left` event has not been seen yet: their
    /// core events are internal.
    hidden: HashSet<ParticipantId>,
    events: broadcast::Sender<MediaEvent>,
    ended: Vec<usize>,
}

impl MediaState {
    pub(crate) fn new(events: broadcast::Sender<MediaEvent>) -> Self {
        Self {
            playbacks: Vec::with_capacity(MAX_PLAYBACKS),
            recorder: None,
            hidden: HashSet::new(),
            events,
            ended: Vec::with_capacity(MAX_PLAYBACKS),
        }
    }

    /// Starts a playback to everyone (`target: None`) or to one participant; `listeners`
    /// are the conference's public participants.
    pub(crate) fn play(
        &mut self,
        conference: &mut Conference,
        clip: MediaClip,
        media: String,
        target: Option<ParticipantId>,
        listeners: impl Iterator<Item = ParticipantId>,
    ) -> Result<ParticipantId, RuntimeError> {
        if self.playbacks.len() >= MAX_PLAYBACKS {
            return Err(RuntimeError::Busy("playbacks"));
        }
        if clip.rate() != conference.config().sample_rate.hz() {
            return Err(RuntimeError::InvalidRequest("the clip is not at the conference rate"));
        }
        let mut others: Vec<ParticipantId> = Vec::new();
        if let Some(target) = target {
            let mut found = false;
            for id in listeners {
                if id == target {
                    found = true;
                } else {
                    others.push(id);
                }
            }
            if !found {
                return Err(mixminus_core::Error::UnknownParticipant(target).into());
            }
            others.extend(self.recorder.as_ref().map(|r| r.id));
        }
        let playback = Playback::start(conference, clip, media.clone(), target, &others)?;
        let id = playback.id;
        self.hidden.insert(id);
        self.playbacks.push(playback);
        let _ = self.events.send(MediaEvent::PlaybackStarted { id, media, target });
        Ok(id)
    }

    /// Stops one playback, or every playback when `id` is `None`; returns how many.
    pub(crate) fn stop_play(
        &mut self,
        conference: &mut Conference,
        id: Option<ParticipantId>,
    ) -> Result<usize, RuntimeError> {
        let before = self.playbacks.len();
        match id {
            Some(id) => {
                let index = self
                    .playbacks
                    .iter()
                    .position(|p| p.id == id)
                    .ok_or(mixminus_core::Error::UnknownParticipant(id))?;
                self.end_playback(conference, index, PlaybackEnd::Stopped);
            }
            None => {
                while !self.playbacks.is_empty() {
                    self.end_playback(conference, 0, PlaybackEnd::Stopped);
                }
            }
        }
        Ok(before - self.playbacks.len())
    }

    /// Whether `id` is a playback (relationships may name one as the other party).
    pub(crate) fn is_playback(&self, id: ParticipantId) -> bool {
        self.playbacks.iter().any(|p| p.id == id)
    }

    /// Whether a core event is about a hidden source or listener (not forwarded).
    pub(crate) fn is_internal(&mut self, event: &Event) -> bool {
        match event {
            Event::Left(id) => self.hidden.remove(id),
            Event::Joined(id) | Event::TalkingStarted(id) | Event::TalkingStopped(id) => {
                self.hidden.contains(id)
            }
            Event::FloorChanged { from, to } => {
                from.is_some_and(|id| self.hidden.contains(&id))
                    || to.is_some_and(|id| self.hidden.contains(&id))
            }
            // The matrix records that make a playback private.
            Event::RelationshipChanged { participant, .. } => self.hidden.contains(participant),
            _ => false,
        }
    }

    /// A participant joined: private playbacks stay private.
    pub(crate) fn on_join(&self, conference: &mut Conference, id: ParticipantId) {
        for playback in &self.playbacks {
            playback.hide_from(conference, id);
        }
    }

    /// A participant left: the playbacks meant for it end.
    pub(crate) fn on_leave(&mut self, conference: &mut Conference, id: ParticipantId) {
        while let Some(index) = self.playbacks.iter().position(|p| p.target == Some(id)) {
            self.end_playback(conference, index, PlaybackEnd::TargetLeft);
        }
    }

    /// Before the tick: every playback hands in its frame.
    pub(crate) fn render(&mut self, conference: &mut Conference) {
        self.ended.clear();
        for (index, playback) in self.playbacks.iter_mut().enumerate() {
            if !playback.render(conference) {
                self.ended.push(index);
            }
        }
    }

    /// After the tick: finished playbacks leave, the recorder takes its frame.
    pub(crate) fn after_tick(&mut self, conference: &mut Conference) {
        while let Some(index) = self.ended.pop() {
            self.end_playback(conference, index, PlaybackEnd::Finished);
        }
        if let Some(end) = self.recorder.as_mut().and_then(|r| r.capture(conference)) {
            // Nobody waits for this one: its thread finishes alone.
            let _ = self.stop_recording_with(conference, end);
        }
    }

    pub(crate) fn start_recording(
        &mut self,
        conference: &mut Conference,
        request: RecordingRequest,
        frame_ms: u32,
    ) -> Result<RecordingSnapshot, RuntimeError> {
        if self.recorder.is_some() {
            return Err(RuntimeError::Busy("recording"));
        }
        let (path, format) = (request.path.clone(), request.format);
        let recorder = Recorder::start(conference, request, frame_ms)?;
        self.hidden.insert(recorder.id);
        // Private playbacks already running must not reach the recording either.
        for playback in &self.playbacks {
            playback.hide_from(conference, recorder.id);
        }
        let snapshot = recorder.snapshot();
        self.recorder = Some(recorder);
        let _ = self.events.send(MediaEvent::RecordingStarted { path, format });
        Ok(snapshot)
    }

    pub(crate) fn stop_recording(
        &mut self,
        conference: &mut Conference,
    ) -> Result<Finishing, RuntimeError> {
        self.stop_recording_with(conference, RecordingEnd::Stopped)
            .ok_or(RuntimeError::InvalidRequest("the conference is not recording"))
    }

    fn stop_recording_with(
        &mut self,
        conference: &mut Conference,
        end: RecordingEnd,
    ) -> Option<Finishing> {
        let recorder = self.recorder.take()?;
        let snapshot = recorder.snapshot();
        let _ = self.events.send(MediaEvent::RecordingStopped {
            path: snapshot.path,
            duration_ms: snapshot.duration_ms,
            dropped_frames: snapshot.dropped_frames,
            end,
        });
        Some(recorder.stop(conference, end))
    }

    pub(crate) fn playbacks(&self) -> Vec<PlaybackSnapshot> {
        self.playbacks.iter().map(Playback::snapshot).collect()
    }

    pub(crate) fn recording(&self) -> Option<RecordingSnapshot> {
        self.recorder.as_ref().map(Recorder::snapshot)
    }

    /// The conference ends: playbacks end, the recording is closed.
    pub(crate) fn shutdown(&mut self, conference: &mut Conference) {
        while !self.playbacks.is_empty() {
            self.end_playback(conference, 0, PlaybackEnd::ConferenceEnded);
        }
        let _ = self.stop_recording_with(conference, RecordingEnd::ConferenceEnded);
    }

    fn end_playback(&mut self, conference: &mut Conference, index: usize, end: PlaybackEnd) {
        let playback = self.playbacks.remove(index);
        let _ = conference.leave(playback.id);
        let _ = self.events.send(MediaEvent::PlaybackEnded {
            id: playback.id,
            media: playback.media,
            target: playback.target,
            end,
        });
    }
}
