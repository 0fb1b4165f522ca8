//! Recording a conference's mix: a hidden listener that hears everyone, a fixed pool of
//! frame buffers, and a writer thread that encodes and writes.
//!
//! Per tick the conference task copies the recorder's output (the full mix, what a
//! listener who hears every source hears) into a buffer taken from the pool and queues it
//! to the writer; both are `try_` calls on bounded channels, so the tick never waits and
//! never allocates. If the writer falls behind (a slow disk) the pool runs dry and frames
//! are dropped and counted (`dropped_frames`), never queued without bound. The writer
//! stops by itself at the byte budget; the task stops it at the duration bound.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use mixminus_core::{Conference, JoinOptions, ParticipantId};

use super::ogg_opus::OggOpusWriter;
use crate::RuntimeError;

/// Frames the pool holds: how far (2 s at 20 ms) the writer may fall behind the tick
/// before frames are dropped.
const POOL_FRAMES: usize = 100;

/// The container and codec of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordingFormat {
    /// Ogg/Opus (RFC 7845), mono, `bitrate` bits per second.
    OggOpus {
        /// Opus bitrate.
        bitrate: i32,
    },
    /// WAV, 16-bit PCM mono at the conference rate.
    Wav,
}

impl RecordingFormat {
    /// The file extension (`ogg`, `wav`).
    pub fn extension(self) -> &'static str {
        match self {
            Self::OggOpus { .. } => "ogg",
            Self::Wav => "wav",
        }
    }

    /// The media type (`audio/ogg`, `audio/wav`).
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OggOpus { .. } => "audio/ogg",
            Self::Wav => "audio/wav",
        }
    }
}

/// A callback run on the writer thread once a recording's file is complete.
pub type OnFinish = Box<dyn FnOnce(&RecordingSummary) + Send>;

/// A recording to start.
#[non_exhaustive]
pub struct RecordingRequest {
    /// The file to create (it must not exist).
    pub path: PathBuf,
    /// Its format.
    pub format: RecordingFormat,
    /// The recording stops by itself after this long.
    pub max_duration: Duration,
    /// The recording stops by itself when the file reaches this many bytes.
    pub max_bytes: u64,
    /// Called on the writer thread once the file is complete (to index it, say).
    pub on_finish: Option<OnFinish>,
}

impl RecordingRequest {
    /// A recording to `path` with these bounds and no completion callback.
    pub fn new(
        path: PathBuf,
        format: RecordingFormat,
        max_duration: Duration,
        max_bytes: u64,
    ) -> Self {
        Self { path, format, max_duration, max_bytes, on_finish: None }
    }

    /// With a callback run on the writer thread once the file is complete.
    pub fn on_finish(mut self, f: impl FnOnce(&RecordingSummary) + Send + 'static) -> Self {
        self.on_finish = Some(Box::new(f));
        self
    }
}

impl std::fmt::Debug for RecordingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingRequest")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("max_duration", &self.max_duration)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

/// Why a recording ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordingEnd {
    /// A stop command.
    Stopped,
    /// It reached its duration bound.
    MaxDuration,
    /// It reached its byte bound.
    MaxBytes,
    /// Writing failed (the summary's `error` says how).
    Failed,
    /// The conference ended.
    ConferenceEnded,
}

impl RecordingEnd {
    /// A word for events and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::MaxDuration => "max_duration",
            Self::MaxBytes => "max_bytes",
            Self::Failed => "failed",
            Self::ConferenceEnded => "conference_ended",
        }
    }
}

/// A recording, complete.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordingSummary {
    /// Its file.
    pub path: PathBuf,
    /// Its format.
    pub format: RecordingFormat,
    /// When it started.
    pub started_at: SystemTime,
    /// Audio written, milliseconds.
    pub duration_ms: u64,
    /// The file's size, bytes.
    pub bytes: u64,
    /// Frames the writer could not keep up with (dropped, not written).
    pub dropped_frames: u64,
    /// Why it ended.
    pub end: RecordingEnd,
    /// What failed, when it did.
    pub error: Option<String>,
}

/// A recording in progress, in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecordingSnapshot {
    /// Its file.
    pub path: PathBuf,
    /// Its format.
    pub format: RecordingFormat,
    /// When it started.
    pub started_at: SystemTime,
    /// Frames recorded so far (written or queued).
    pub frames: u64,
    /// Audio recorded so far, milliseconds.
    pub duration_ms: u64,
    /// Frames dropped so far because the writer fell behind.
    pub dropped_frames: u64,
}

/// What the writer and the task share.
#[derive(Debug, Default)]
struct Shared {
    dropped: AtomicU64,
    /// Set by the writer when it stopped by itself (byte bound, error).
    done: AtomicBool,
    end: std::sync::Mutex<Option<(RecordingEnd, Option<String>)>>,
}

/// The recording side in the conference task.
pub(crate) struct Recorder {
    pub(crate) id: ParticipantId,
    frames_tx: Option<SyncSender<Vec<i16>>>,
    pool: Receiver<Vec<i16>>,
    shared: Arc<Shared>,
    thread: JoinHandle<RecordingSummary>,
    frames: u64,
    max_frames: u64,
    frame_ms: u64,
    path: PathBuf,
    format: RecordingFormat,
    started_at: SystemTime,
}

/// A stopped recording's writer: join it (off the conference task) for the summary.
pub(crate) struct Finishing(pub(crate) JoinHandle<RecordingSummary>);

impl Recorder {
    /// Creates the file (refusing one that exists), joins the hidden listener and starts
    /// the writer thread.
    pub(crate) fn start(
        conference: &mut Conference,
        request: RecordingRequest,
        frame_ms: u32,
    ) -> Result<Self, RuntimeError> {
        let rate = conference.config().sample_rate.hz();
        let frame_samples = conference.frame_samples();
        let file = File::options().write(true).create_new(true).open(&request.path)?;
        let out = BufWriter::new(file);
        let sink = match request.format {
            RecordingFormat::OggOpus { bitrate } => {
                let serial = rand::random::<u32>();
                Sink::Ogg(Box::new(OggOpusWriter::new(out, rate, frame_samples, bitrate, serial)?))
            }
            RecordingFormat::Wav => {
                let spec = hound::WavSpec {
                    channels: 1,
                    sample_rate: rate,
                    bits_per_sample: 16,
                    sample_format: hound::SampleFormat::Int,
                };
                Sink::Wav(
                    hound::WavWriter::new(out, spec)
                        .map_err(|e| std::io::Error::other(e.to_string()))?,
                )
            }
        };
        let id = match conference.join(JoinOptions {
            muted: Some(true),
            deaf: Some(false),
            ghost: true,
            ..Default::default()
        }) {
            Ok(id) => id,
            Err(e) => {
                let _ = std::fs::remove_file(&request.path);
                return Err(e.into());
            }
        };
        let (frames_tx, frames_rx) = mpsc::sync_channel::<Vec<i16>>(POOL_FRAMES);
        let (pool_tx, pool) = mpsc::sync_channel::<Vec<i16>>(POOL_FRAMES);
        for _ in 0..POOL_FRAMES {
            // The pool has room for every buffer: cannot fail.
            let _ = pool_tx.try_send(vec![0; frame_samples]);
        }
        let shared = Arc::new(Shared::default());
        let started_at = SystemTime::now();
        let writer = Writer {
            sink: Some(sink),
            frames_rx,
            pool_tx,
            shared: shared.clone(),
            max_bytes: request.max_bytes,
            bytes: 0,
            frames: 0,
            frame_ms: u64::from(frame_ms),
            summary: RecordingSummary {
                path: request.path.clone(),
                format: request.format,
                started_at,
                duration_ms: 0,
                bytes: 0,
                dropped_frames: 0,
                end: RecordingEnd::Stopped,
                error: None,
            },
            on_finish: request.on_finish,
        };
        let thread = std::thread::Builder::new()
            .name("mixminus-recorder".into())
            .spawn(move || writer.run())
            .inspect_err(|_| {
                let _ = conference.leave(id);
                let _ = std::fs::remove_file(&request.path);
            })?;
        let max_frames = request.max_duration.as_millis() as u64 / u64::from(frame_ms.max(1));
        Ok(Self {
            id,
            frames_tx: Some(frames_tx),
            pool,
            shared,
            thread,
            frames: 0,
            max_frames: max_frames.max(1),
            frame_ms: u64::from(frame_ms),
            path: request.path,
            format: request.format,
            started_at,
        })
    }

    /// After a tick: queues what the recorder heard. Returns why the recording must end
    /// now, if it must (bounds reached, the writer gave up).
    pub(crate) fn capture(&mut self, conference: &Conference) -> Option<RecordingEnd> {
        if self.shared.done.load(Ordering::Acquire) {
            return Some(RecordingEnd::MaxBytes);
        }
        let pcm = conference.output(self.id)?.pcm;
        self.frames += 1;
        match self.pool.try_recv() {
            Ok(mut buffer) => {
                buffer.copy_from_slice(pcm);
                if let Some(tx) = &self.frames_tx {
                    if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                        tx.try_send(buffer)
                    {
                        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        (self.frames >= self.max_frames).then_some(RecordingEnd::MaxDuration)
    }

    /// Ends the recording: the hidden listener leaves, the writer drains its queue and
    /// closes the file. Never blocks; join the returned writer for the summary.
    pub(crate) fn stop(mut self, conference: &mut Conference, end: RecordingEnd) -> Finishing {
        let _ = conference.leave(self.id);
        if let Ok(mut slot) = self.shared.end.lock() {
            // The writer's own reason (byte bound, failure) wins over ours.
            slot.get_or_insert((end, None));
        }
        // Dropping the sender ends the writer's loop once it has drained the queue.
        drop(self.frames_tx.take());
        Finishing(self.thread)
    }

    pub(crate) fn snapshot(&self) -> RecordingSnapshot {
        RecordingSnapshot {
            path: self.path.clone(),
            format: self.format,
            started_at: self.started_at,
            frames: self.frames,
            duration_ms: self.frames * self.frame_ms,
            dropped_frames: self.shared.dropped.load(Ordering::Relaxed),
        }
    }
}

enum Sink {
    Ogg(Box<OggOpusWriter<BufWriter<File>>>),
    Wav(hound::WavWriter<BufWriter<File>>),
}

struct Writer {
    sink: Option<Sink>,
    frames_rx: Receiver<Vec<i16>>,
    pool_tx: SyncSender<Vec<i16>>,
    shared: Arc<Shared>,
    max_bytes: u64,
    bytes: u64,
    frames: u64,
    frame_ms: u64,
    summary: RecordingSummary,
    on_finish: Option<OnFinish>,
}

impl Writer {
    fn run(mut self) -> RecordingSummary {
        while let Ok(frame) = self.frames_rx.recv() {
            if self.sink.is_some() {
                if let Err(error) = self.write(&frame) {
                    self.give_up(RecordingEnd::Failed, Some(error.to_string()));
                } else if self.bytes >= self.max_bytes {
                    self.give_up(RecordingEnd::MaxBytes, None);
                }
            }
            // The pool has room for every buffer it handed out: cannot fail while the task
            // holds the pool, and after that nobody needs the buffer.
            let _ = self.pool_tx.try_send(frame);
        }
        let closed = match self.sink.take() {
            Some(Sink::Ogg(ogg)) => ogg.finish().and_then(|mut out| {
                std::io::Write::flush(&mut out)?;
                out.into_inner().map_err(|e| e.into_error())?.sync_all()
            }),
            Some(Sink::Wav(wav)) => {
                wav.finalize().map_err(|e| std::io::Error::other(e.to_string()))
            }
            None => Ok(()),
        };
        if let Err(error) = closed {
            self.give_up(RecordingEnd::Failed, Some(error.to_string()));
        }
        let mut summary = self.summary;
        summary.duration_ms = self.frames * self.frame_ms;
        summary.bytes = std::fs::metadata(&summary.path).map_or(self.bytes, |m| m.len());
        summary.dropped_frames = self.shared.dropped.load(Ordering::Relaxed);
        if let Some((end, error)) = self.shared.end.lock().ok().and_then(|mut e| e.take()) {
            summary.end = end;
            summary.error = error;
        }
        if let Some(on_finish) = self.on_finish.take() {
            on_finish(&summary);
        }
        summary
    }

    fn write(&mut self, frame: &[i16]) -> Result<(), std::io::Error> {
        match &mut self.sink {
            Some(Sink::Ogg(ogg)) => self.bytes += ogg.write_frame(frame)? as u64,
            Some(Sink::Wav(wav)) => {
                let mut samples = wav.get_i16_writer(frame.len() as u32);
                for &s in frame {
                    samples.write_sample(s);
                }
                samples.flush().map_err(|e| std::io::Error::other(e.to_string()))?;
                self.bytes += 2 * frame.len() as u64;
            }
            None => return Ok(()),
        }
        self.frames += 1;
        Ok(())
    }

    /// Stops writing (the file is still closed properly) and tells the task to end it.
    fn give_up(&mut self, end: RecordingEnd, error: Option<String>) {
        if let Ok(mut slot) = self.shared.end.lock() {
            slot.get_or_insert((end, error));
        }
        if let Some(sink) = self.sink.take() {
            // Close now; the loop keeps draining (and returning) buffers until the task stops.
            let closed = match sink {
                Sink::Ogg(ogg) => ogg.finish().and_then(|mut out| std::io::Write::flush(&mut out)),
                Sink::Wav(wav) => wav.finalize().map_err(|e| std::io::Error::other(e.to_string())),
            };
            if let Err(e) = closed {
                tracing::warn!(error = %e, "closing a recording failed");
            }
        }
        self.shared.done.store(true, Ordering::Release);
    }
}
