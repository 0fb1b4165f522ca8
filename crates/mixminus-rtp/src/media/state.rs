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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mixminus_core::{ConferenceConfig, JoinOptions, Relationship, TalkConfig};

    use super::*;

    fn conference() -> Conference {
        let config = ConferenceConfig {
            talk: TalkConfig { energy_threshold: 0, ..Default::default() },
            ..Default::default()
        };
        Conference::new(config).unwrap()
    }

    fn tick(media: &mut MediaState, conference: &mut Conference) {
        media.render(conference);
        conference.tick();
        media.after_tick(conference);
    }

    #[test]
    fn a_private_playback_reaches_its_target_exactly_and_nobody_else() {
        let mut conf = conference();
        let (a, b) = (
            conf.join(JoinOptions::default()).unwrap(),
            conf.join(JoinOptions::default()).unwrap(),
        );
        let (events, mut rx) = broadcast::channel(16);
        let mut media = MediaState::new(events);
        let n = conf.frame_samples();
        let clip =
            MediaClip::from_pcm((0..3 * n).map(|i| (i % 200) as i16 - 100).collect(), 48_000);
        let id =
            media.play(&mut conf, clip.clone(), "c".into(), Some(a), [a, b].into_iter()).unwrap();
        let c = conf.join(JoinOptions::default()).unwrap();
        media.on_join(&mut conf, c);
        for frame in 0..3 {
            tick(&mut media, &mut conf);
            // The mix before the limiter is exactly the clip for a, nothing for b and c.
            let want: Vec<i32> =
                clip.pcm()[frame * n..(frame + 1) * n].iter().map(|&s| s.into()).collect();
            assert_eq!(conf.output(a).unwrap().unlimited, want.as_slice());
            assert!(conf.output(b).unwrap().unlimited.iter().all(|&s| s == 0));
            assert!(conf.output(c).unwrap().unlimited.iter().all(|&s| s == 0));
        }
        tick(&mut media, &mut conf);
        assert!(media.playbacks().is_empty(), "ended by itself");
        assert!(conf.participant(id).is_none(), "its source left the mixer");
        assert_eq!(conf.relationship_count(), 0, "its records went with it");
        assert!(matches!(rx.try_recv(), Ok(MediaEvent::PlaybackStarted { .. })));
        assert!(matches!(
            rx.try_recv(),
            Ok(MediaEvent::PlaybackEnded { end: PlaybackEnd::Finished, .. })
        ));
        // Its core events (join, leave, relationships) are internal.
        let mut forwarded = 0;
        while let Some(event) = conf.poll_event() {
            forwarded += usize::from(!media.is_internal(&event));
        }
        assert_eq!(forwarded, 3, "a, b and c joined; nothing of the playback");
    }

    #[test]
    fn the_matrix_applies_to_a_conference_playback() {
        let mut conf = conference();
        let (a, b) = (
            conf.join(JoinOptions::default()).unwrap(),
            conf.join(JoinOptions::default()).unwrap(),
        );
        let mut media = MediaState::new(broadcast::channel(16).0);
        let n = conf.frame_samples();
        let clip = MediaClip::from_pcm(vec![300; 10 * n], 48_000);
        let id = media.play(&mut conf, clip, "c".into(), None, [a, b].into_iter()).unwrap();
        conf.relate(&[b], &[id], Relationship::DEAF).unwrap();
        tick(&mut media, &mut conf);
        assert!(conf.output(a).unwrap().unlimited.iter().all(|&s| s == 300));
        assert!(conf.output(b).unwrap().unlimited.iter().all(|&s| s == 0));
        conf.set_can_hear(a, false).unwrap();
        tick(&mut media, &mut conf);
        assert!(conf.output(a).unwrap().unlimited.iter().all(|&s| s == 0), "a deaf listener");
        // A target that is not here: refused, nothing changes.
        let before = conf.len();
        let clip = MediaClip::from_pcm(vec![1; n], 48_000);
        let missing = ParticipantId::new(999);
        assert!(media
            .play(&mut conf, clip, "x".into(), Some(missing), [a, b].into_iter())
            .is_err());
        assert_eq!((conf.len(), media.playbacks().len()), (before, 1));
    }

    #[test]
    fn a_recording_stops_at_its_bounds_and_its_file_holds_what_was_heard() {
        let dir = std::env::temp_dir().join(format!("mixminus-rec-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut conf = conference();
        let talker = conf.join(JoinOptions::default()).unwrap();
        let mut media = MediaState::new(broadcast::channel(16).0);
        let n = conf.frame_samples();
        // Duration bound: 10 frames of 20 ms.
        let path = dir.join("bounded.wav");
        let request = RecordingRequest::new(
            path.clone(),
            RecordingFormat::Wav,
            Duration::from_millis(200),
            1 << 20,
        );
        let recorder = media.start_recording(&mut conf, request, 20).unwrap();
        assert_eq!(recorder.frames, 0);
        let again = RecordingRequest::new(
            dir.join("second.wav"),
            RecordingFormat::Wav,
            Duration::from_secs(1),
            1 << 20,
        );
        assert!(matches!(media.start_recording(&mut conf, again, 20), Err(RuntimeError::Busy(_))));
        for _ in 0..15 {
            conf.push_input(talker, &vec![1000; n]).unwrap();
            tick(&mut media, &mut conf);
        }
        assert!(media.recording().is_none(), "stopped itself after 200 ms");
        // The writer finishes alone; wait for its file.
        let mut samples = Vec::new();
        for _ in 0..100 {
            if let Ok(mut reader) = hound::WavReader::open(&path) {
                samples = reader.samples::<i16>().map(Result::unwrap).collect();
                if samples.len() == 10 * n {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(samples.len(), 10 * n);
        // The talker's level through the limiter (1000 is far below its threshold).
        assert!(
            samples[n..].iter().all(|&s| s == 1000),
            "the full mix, limited as listeners hear it"
        );
        // An existing file is never overwritten.
        let request = RecordingRequest::new(
            path.clone(),
            RecordingFormat::Wav,
            Duration::from_secs(1),
            1 << 20,
        );
        assert!(matches!(media.start_recording(&mut conf, request, 20), Err(RuntimeError::Io(_))));
        // Byte bound: Ogg stops itself once the file passes 2 kB.
        let path = dir.join("small.ogg");
        let format = RecordingFormat::OggOpus { bitrate: 64_000 };
        let request = RecordingRequest::new(path.clone(), format, Duration::from_secs(60), 2_000);
        media.start_recording(&mut conf, request, 20).unwrap();
        let mut ticks = 0;
        while media.recording().is_some() && ticks < 500 {
            conf.push_input(talker, &(0..n).map(|i| ((i * 37) % 4000) as i16).collect::<Vec<_>>())
                .unwrap();
            tick(&mut media, &mut conf);
            ticks += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(media.recording().is_none() && ticks < 500, "stopped at its byte bound");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
