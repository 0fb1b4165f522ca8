//! The I/O shell: a [`Bridge`] owns the RTP port range; each conference runs in its own
//! tokio task that takes its legs' datagrams as they arrive (from one reader task per socket,
//! see `receive`), ticks every frame, mixes, encodes once per
//! group and sends. Commands reach the task through a bounded channel and apply between
//! ticks; reads come from a snapshot the task publishes. No lock is held across a tick.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ipnet::IpNet;
use mixminus_core::{
    Conference, ConferenceConfig, Event, Gain, JoinOptions, ParticipantId, ParticipantInfo,
    Relationship,
};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::codec::{CodecError, CodecParams, CodecSettings};
use crate::fanout::{EncoderKey, Fanout};
use crate::jitter::{JitterConfig, JitterStats};
use crate::leg::{Leg, LegOutput, MediaFormat, MAX_DATAGRAM};
use crate::media::recorder::{RecordingSnapshot, RecordingSummary};
use crate::media::state::{MediaEvent, MediaState};
use crate::media::{MediaClip, PlaybackSnapshot, RecordingRequest};
use crate::packet::is_one_byte_extension_id;
use crate::ports::{PortPair, PortPool};
use crate::receive::{Inbound, Port, ReaderLink, Received};
use crate::rtcp::RtcpStats;
use crate::stats::{ConferenceCounters, DropReason, LegStats};
use crate::tone::TonePlayer;
use crate::webrtc::{WebRtcOffer, WebRtcTransport};
use socket2::SockRef;

/// Why a runtime call failed. A failed command changes nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// The mixer refused it (unknown participant, self-relation, full, …).
    #[error(transparent)]
    Core(#[from] mixminus_core::Error),
    /// The conference task has stopped.
    #[error("the conference has stopped")]
    Closed,
    /// Every port pair in the range is taken.
    #[error("no free RTP port pair in the configured range")]
    NoFreePorts,
    /// A socket call failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// A codec could not be set up.
    #[error("codec: {0}")]
    Codec(#[from] CodecError),
    /// The bridge configuration is unusable; the message names the field.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// The request is unusable; the message names the field.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The conference is locked: nobody may join.
    #[error("the conference is locked")]
    Locked,
    /// The conference has this many participants (not counting ghosts) already.
    #[error("the conference is full ({0} participants)")]
    Full(usize),
    /// The conference already runs as many of these as it may (`playbacks`), or one
    /// already (`recording`).
    #[error("too many {0} at once")]
    Busy(&'static str),
    /// A WebRTC offer could not be answered (str0m's reason).
    #[error("webrtc: {0}")]
    WebRtc(String),
}

/// Settings of a bridge (shared by all its conferences).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BridgeConfig {
    /// Address the RTP sockets bind to.
    pub rtp_bind: IpAddr,
    /// Inclusive port range; each participant takes an even RTP port and the odd one above
    /// for RTCP.
    pub rtp_ports: (u16, u16),
    /// A participant that sends nothing (no RTP, no RTCP) for this long is removed;
    /// `None` keeps it forever.
    pub inactivity_timeout: Option<Duration>,
    /// Jitter buffer depth bounds.
    pub jitter: JitterConfig,
    /// Mean interval between a participant's RTCP reports; each interval is this times a
    /// random factor in 0.5..1.5 (RFC 3550 §6.3.1), the first one half of that.
    pub rtcp_interval: Duration,
    /// Commands queued per conference before callers wait.
    pub command_queue: usize,
    /// Ticks between periodic snapshots (commands and events publish one at once).
    pub snapshot_every: u32,
    /// RFC 8285 extension id on which participants send the RFC 6464 audio level, for
    /// conferences whose settings name none (a bridge behind a gateway that always uses
    /// one id, as WebRTC clients use 1). Frames it marks as silence are not decoded.
    pub audio_level_ext: Option<u8>,
    /// When a join names the peer's address, latch only onto RTP from that host (any port),
    /// so a stranger cannot take the leg over before the peer's first packet. Turn off for
    /// peers behind NAT whose signalled address is not the one their packets come from.
    pub strict_source: bool,
    /// Decode a quiet participant's frames (not talking, last decoded frame under half its
    /// talk threshold) only every n-th frame; 1 (the default) decodes every frame. Such a
    /// participant is not mixed, so only talk detection reads its audio: n = 4 cuts the
    /// decode cost of a large, mostly quiet conference about fourfold, and talk onset is seen
    /// up to n − 1 frames later. No effect with the gate off (threshold 0).
    pub quiet_decode_interval: u32,
    /// Threads of the bridge's own media runtime, on which every conference ticks and every
    /// socket is read, apart from the caller's runtime (which serves HTTP, say): a slow or
    /// busy control plane then cannot delay a tick. 0 runs conferences on the caller's
    /// runtime instead (an embedder that wants one runtime). Default: one per CPU.
    pub media_threads: usize,
    /// Remotes a join may name: when not empty, only addresses inside one of these ranges.
    pub remote_allow: Vec<IpNet>,
    /// Remotes a join may not name (checked after `remote_allow`), e.g. the bridge's own
    /// networks. Unspecified, multicast and broadcast addresses are always refused.
    pub remote_deny: Vec<IpNet>,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        Self {
            rtp_bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            rtp_ports: (20_000, 29_999),
            inactivity_timeout: Some(Duration::from_secs(60)),
            jitter: JitterConfig::default(),
            rtcp_interval: Duration::from_secs(5),
            command_queue: 256,
            snapshot_every: 10,
            audio_level_ext: None,
            strict_source: true,
            quiet_decode_interval: 1,
            media_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            remote_allow: Vec::new(),
            remote_deny: Vec::new(),
        }
    }
}

/// Settings of one conference.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConferenceSettings {
    /// The mixer's configuration.
    pub core: ConferenceConfig,
    /// Mix a short rising tone into everyone's audio when someone (not a ghost) joins.
    pub entry_tone: bool,
    /// Mix a short falling tone when someone (not a ghost) leaves.
    pub exit_tone: bool,
    /// Encoder settings for every group encoder.
    pub encoder: CodecSettings,
    /// RFC 8285 extension id on which participants send the RFC 6464 audio level.
    pub audio_level_ext: Option<u8>,
    /// A talker's first mixed frame is faded in over this long, so an onset that starts
    /// loud does not click (sets the core's `onset_fade_samples`); default 5 ms, 0 = off.
    pub onset_fade_ms: u32,
    /// Playout delay every leg's buffer keeps beyond one frame, ms; `None` = the bridge's
    /// [`BridgeConfig::jitter`].
    pub jitter_min_delay_ms: Option<u32>,
    /// The most playout delay a leg's buffer aims for, ms (at least one frame); `None` =
    /// the bridge's [`BridgeConfig::jitter`]. Lower trades late packets for latency.
    pub jitter_max_delay_ms: Option<u32>,
}

impl Default for ConferenceSettings {
    fn default() -> Self {
        Self {
            core: ConferenceConfig::default(),
            entry_tone: false,
            exit_tone: false,
            encoder: CodecSettings::default(),
            audio_level_ext: None,
            onset_fade_ms: 5,
            jitter_min_delay_ms: None,
            jitter_max_delay_ms: None,
        }
    }
}

impl ConferenceSettings {
    /// Settings around a core configuration, everything else default.
    pub fn new(core: ConferenceConfig) -> Self {
        Self { core, ..Default::default() }
    }
}

/// A participant to add.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JoinRequest {
    /// Mixer flags.
    pub options: JoinOptions,
    /// The codec it sends and receives.
    pub codec: CodecParams,
    /// Where to send its mix; `None` = back to where its RTP comes from (symmetric RTP).
    pub remote: Option<SocketAddr>,
    /// RFC 8285 extension id on which this participant sends the RFC 6464 audio level (from
    /// its SDP `a=extmap`); `None` = the conference's or bridge's id, if any.
    pub audio_level_ext: Option<u8>,
    /// RTCP shares the RTP port (SDP `a=rtcp-mux`): reports go to the RTP destination.
    pub rtcp_mux: bool,
    /// Admission decided inside the conference task, atomically with every other join:
    /// refused ([`RuntimeError::Locked`]) while this flag is set.
    pub locked: Option<Arc<AtomicBool>>,
    /// Admission: refused ([`RuntimeError::Full`]) when this many participants that are not
    /// ghosts are in already (ghosts are not counted and not refused).
    pub max_members: Option<usize>,
    /// SRTP keys (SDES): the leg protects what it sends and drops what does not
    /// authenticate. `None`: plain RTP.
    pub srtp: Option<crate::srtp::SrtpKeys>,
    /// The RFC 4733 `telephone-event` payload type negotiated (SDP): its packets are
    /// counted as DTMF ([`LegStats::dtmf_digits`]), not dropped as a wrong payload type.
    pub dtmf_payload_type: Option<u8>,
}

impl JoinRequest {
    /// A join with default flags.
    pub fn new(codec: CodecParams, remote: Option<SocketAddr>) -> Self {
        Self {
            options: JoinOptions::default(),
            codec,
            remote,
            audio_level_ext: None,
            rtcp_mux: false,
            locked: None,
            max_members: None,
            srtp: None,
            dtmf_payload_type: None,
        }
    }
}

/// A participant added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Joined {
    /// Its id in the conference.
    pub id: ParticipantId,
    /// Where it must send RTP (RTCP goes to the port above).
    pub local_rtp: SocketAddr,
}

/// One participant in a [`Snapshot`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LegSnapshot {
    /// The mixer's view.
    pub info: ParticipantInfo,
    /// Its local RTP address.
    pub local_rtp: SocketAddr,
    /// The destination given at join.
    pub remote: Option<SocketAddr>,
    /// The source its RTP is latched to.
    pub latched: Option<SocketAddr>,
    /// Its codec.
    pub codec: CodecParams,
    /// When it joined.
    pub joined_at: SystemTime,
    /// Its counters.
    pub stats: LegStats,
    /// Playout buffer depth now, in packets (holes included).
    pub jitter_depth: u32,
    /// The playout buffer's counters (late, lost, concealed, overflow, accelerated and
    /// expanded samples) and its current and target delay.
    pub jitter: JitterStats,
    /// The last RFC 6464 level it sent (−dBov), if it sends them.
    pub audio_level: Option<u8>,
    /// RTCP: reports sent and received, our last report about its stream, its last report
    /// about ours (loss, jitter, round trip).
    pub rtcp: RtcpStats,
    /// Whether sending to it is stopped ([`ConferenceHandle::set_held`]).
    pub held: bool,
}

/// What a conference looks like, as of its last publication.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Snapshot {
    /// Every participant, by id.
    pub participants: Vec<LegSnapshot>,
    /// Every relationship record `(P, O, value)`, sorted. Shared between snapshots: it is
    /// rebuilt only when a command changed the matrix, never on the periodic publication.
    pub relationships: Arc<Vec<(ParticipantId, ParticipantId, Relationship)>>,
    /// Counters.
    pub counters: ConferenceCounters,
    /// The loudest talker.
    pub floor: Option<ParticipantId>,
    /// When the conference started.
    pub started_at: Option<SystemTime>,
    /// Whether the task has stopped.
    pub stopped: bool,
    /// Media files playing now.
    pub playbacks: Vec<PlaybackSnapshot>,
    /// The recording in progress.
    pub recording: Option<RecordingSnapshot>,
}

/// A bridge: the port range, the media threads and the conferences running on them.
///
/// Dropping the last clone stops the media threads, and with them every conference still
/// running on them (without BYEs: stop conferences first for a clean end).
#[derive(Debug, Clone)]
pub struct Bridge {
    shared: Shared,
    media: Option<Arc<MediaThreads>>,
}

/// What a conference task needs of its bridge (not the media runtime it runs on, so the
/// last task never drops its own runtime).
#[derive(Debug, Clone)]
struct Shared {
    ports: PortPool,
    config: Arc<BridgeConfig>,
}

/// The bridge's own tokio runtime; shut down without blocking when the bridge goes, since
/// a bridge may be dropped inside another runtime.
#[derive(Debug)]
struct MediaThreads(Option<tokio::runtime::Runtime>);

impl Drop for MediaThreads {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Bridge {
    /// A bridge; binds nothing until participants join.
    pub fn new(config: BridgeConfig) -> Result<Self, RuntimeError> {
        let ports = PortPool::new(config.rtp_bind, config.rtp_ports.0, config.rtp_ports.1)?;
        if config.command_queue == 0 || config.snapshot_every == 0 {
            return Err(RuntimeError::InvalidConfig(
                "command_queue and snapshot_every must be > 0",
            ));
        }
        if config.audio_level_ext.is_some_and(|id| !is_one_byte_extension_id(id)) {
            return Err(RuntimeError::InvalidConfig("audio_level_ext must be 1..=14"));
        }
        if !(1..=50).contains(&config.quiet_decode_interval) {
            return Err(RuntimeError::InvalidConfig("quiet_decode_interval must be 1..=50"));
        }
        let media = match config.media_threads {
            0 => None,
            n => Some(Arc::new(MediaThreads(Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n)
                    .thread_name("mixminus-media")
                    .enable_all()
                    .build()?,
            )))),
        };
        Ok(Self { shared: Shared { ports, config: Arc::new(config) }, media })
    }

    /// The bridge's settings.
    pub fn config(&self) -> &BridgeConfig {
        &self.shared.config
    }

    /// Starts a conference task on the bridge's media threads (on the current tokio runtime
    /// when `media_threads` is 0).
    pub fn start_conference(
        &self,
        settings: ConferenceSettings,
    ) -> Result<ConferenceHandle, RuntimeError> {
        let mut core = settings.core.clone();
        let settings_rate = core.sample_rate.hz();
        let fade = core.sample_rate.hz() as usize * settings.onset_fade_ms as usize / 1000;
        core.onset_fade_samples = fade.min(core.frame_samples());
        let conference = Conference::new(core)?;
        let (commands, command_rx) = mpsc::channel(self.shared.config.command_queue);
        let (snapshot_tx, snapshot) = watch::channel(Arc::new(Snapshot::default()));
        let (events, _) = broadcast::channel(1024);
        let (media_events, _) = broadcast::channel(256);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_QUEUE);
        let mut task = ConferenceTask::new(
            conference,
            settings,
            self.shared.clone(),
            snapshot_tx,
            events.clone(),
            inbound_tx,
        )?;
        task.media = MediaState::new(media_events.clone());
        match self.media.as_deref().and_then(|m| m.0.as_ref()) {
            Some(media) => drop(media.spawn(task.run(command_rx, inbound_rx))),
            None => drop(tokio::spawn(task.run(command_rx, inbound_rx))),
        }
        metrics::gauge!("mixminus_conferences").increment(1.0);
        let rate = settings_rate;
        Ok(ConferenceHandle { commands, snapshot, events, media_events, rate })
    }

    /// Takes a port pair ahead of a join, for a signalling front that must answer with its
    /// address before the call joins (a SIP call that first collects a PIN on it). Hand it to
    /// [`ConferenceHandle::join_reserved`]; dropping it releases the ports.
    pub fn reserve_ports(&self) -> Result<ReservedPorts, RuntimeError> {
        Ok(ReservedPorts(self.shared.ports.take()?))
    }

    /// Port pairs bound now, across all conferences.
    pub fn ports_in_use(&self) -> usize {
        self.shared.ports.in_use()
    }
}

/// The control side of a running conference. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ConferenceHandle {
    commands: mpsc::Sender<Command>,
    snapshot: watch::Receiver<Arc<Snapshot>>,
    events: broadcast::Sender<Event>,
    media_events: broadcast::Sender<MediaEvent>,
    rate: u32,
}

impl ConferenceHandle {
    /// The conference's sample rate (what a clip for [`ConferenceHandle::play`] must have).
    pub fn sample_rate(&self) -> u32 {
        self.rate
    }

    /// Plays `clip` (decoded at the conference rate, see [`MediaClip::load`]) into the
    /// conference, or to the one participant `target`. The playback is a source in the mixer
    /// (muted toward everyone but `target` for a private one); it ends by itself.
    /// `media` names it in events and snapshots. Returns the playback's id.
    pub async fn play(
        &self,
        clip: MediaClip,
        media: String,
        target: Option<ParticipantId>,
    ) -> Result<ParticipantId, RuntimeError> {
        self.call(|reply| Command::Play { clip, media, target, reply }).await
    }

    /// Stops the playback `id`, or every playback (`None`); returns how many stopped.
    pub async fn stop_play(&self, id: Option<ParticipantId>) -> Result<usize, RuntimeError> {
        self.call(|reply| Command::StopPlay(id, reply)).await
    }

    /// Starts recording the conference's full mix into a new file.
    pub async fn start_recording(
        &self,
        request: RecordingRequest,
    ) -> Result<RecordingSnapshot, RuntimeError> {
        self.call(|reply| Command::StartRecording(Box::new(request), reply)).await
    }

    /// Stops the recording and waits (off the conference task) until its file is closed.
    pub async fn stop_recording(&self) -> Result<RecordingSummary, RuntimeError> {
        let finishing = self.call(Command::StopRecording).await?;
        tokio::task::spawn_blocking(move || finishing.0.join())
            .await
            .map_err(|_| RuntimeError::Closed)?
            .map_err(|_| RuntimeError::Io(std::io::Error::other("the recording writer failed")))
    }

    /// Playback and recording events. A receiver more than 256 behind loses the oldest.
    pub fn subscribe_media(&self) -> broadcast::Receiver<MediaEvent> {
        self.media_events.subscribe()
    }

    /// Adds a participant: binds its ports, sets up its codec.
    pub async fn join(&self, request: JoinRequest) -> Result<Joined, RuntimeError> {
        self.call(|reply| Command::Join(Box::new(request), reply)).await
    }

    /// Adds a participant on ports taken with [`Bridge::reserve_ports`] (the leg reads the
    /// sockets from now on). A refused join drops them, releasing the ports.
    pub async fn join_reserved(
        &self,
        request: JoinRequest,
        ports: ReservedPorts,
    ) -> Result<Joined, RuntimeError> {
        self.call(|reply| Command::JoinOn(Box::new(request), ports.0, reply)).await
    }

    /// Adds a WebRTC participant: takes a port pair from the pool, answers the offer on it
    /// and joins. Returns the participant and the SDP answer.
    pub(crate) async fn join_webrtc(
        &self,
        request: JoinRequest,
        offer: WebRtcOffer,
    ) -> Result<(Joined, String), RuntimeError> {
        self.call(|reply| Command::JoinWebRtc(Box::new(request), offer, reply)).await
    }

    /// Removes a participant (it gets an RTCP BYE).
    pub async fn leave(&self, id: ParticipantId) -> Result<(), RuntimeError> {
        self.call(|reply| Command::Leave(id, reply)).await
    }

    /// Sets the records `p → o` for the cross product, all or nothing. Repeated ids are
    /// removed here, before the conference task sees the lists: `[a]×1000 by [b]×1000` is
    /// one pair, not a million set operations on the task.
    pub async fn relate(
        &self,
        mut participants: Vec<ParticipantId>,
        mut others: Vec<ParticipantId>,
        relationship: Relationship,
    ) -> Result<(), RuntimeError> {
        for list in [&mut participants, &mut others] {
            list.sort_unstable();
            list.dedup();
        }
        self.call(|reply| Command::Relate { participants, others, relationship, reply }).await
    }

    /// Mute (`false`) / unmute (`true`); returns whether it changed.
    pub async fn set_can_speak(
        &self,
        id: ParticipantId,
        can_speak: bool,
    ) -> Result<bool, RuntimeError> {
        self.call(|reply| Command::Speak(id, can_speak, reply)).await
    }

    /// Deafen (`false`) / undeafen (`true`); returns whether it changed.
    pub async fn set_can_hear(
        &self,
        id: ParticipantId,
        can_hear: bool,
    ) -> Result<bool, RuntimeError> {
        self.call(|reply| Command::Hear(id, can_hear, reply)).await
    }

    /// Gain on what `id` says.
    pub async fn set_input_gain(&self, id: ParticipantId, gain: Gain) -> Result<(), RuntimeError> {
        self.call(|reply| Command::InputGain(id, gain, reply)).await
    }

    /// Gain on what `id` hears.
    pub async fn set_output_gain(&self, id: ParticipantId, gain: Gain) -> Result<(), RuntimeError> {
        self.call(|reply| Command::OutputGain(id, gain, reply)).await
    }

    /// `id`'s own energy threshold (`None` = the conference's; 0 = gate off).
    pub async fn set_energy_threshold(
        &self,
        id: ParticipantId,
        threshold: Option<u32>,
    ) -> Result<(), RuntimeError> {
        self.call(|reply| Command::Energy(id, threshold, reply)).await
    }

    /// Stops (`true`) or resumes sending `id` its mix, as when a SIP peer holds the call
    /// (SDP `sendonly` / `inactive`); its RTP clock keeps running, so the stream resumes
    /// continuous. Returns whether it changed.
    pub async fn set_held(&self, id: ParticipantId, held: bool) -> Result<bool, RuntimeError> {
        self.call(|reply| Command::Hold(id, held, reply)).await
    }

    /// Switches `id`'s leg to `codec` (a SIP re-INVITE that offers another codec): its
    /// decoder, jitter buffer and the encoder its mix comes from change; it stays the same
    /// participant on the same ports. `codec.ptime_ms` must be the conference's frame
    /// interval. Returns whether it changed (`false`: it had that codec already).
    pub async fn set_codec(
        &self,
        id: ParticipantId,
        codec: CodecParams,
    ) -> Result<bool, RuntimeError> {
        self.call(|reply| Command::Codec(id, codec, reply)).await
    }

    /// The last published snapshot (after every command, every event, and every few ticks).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// The conference's events (join, leave, talking, floor, mute/deaf, relationships).
    /// A receiver that falls more than 1024 events behind loses the oldest.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Ends the conference: every participant gets an RTCP BYE, every port is released.
    /// Stopping a stopped conference is fine.
    pub async fn stop(&self) -> Result<(), RuntimeError> {
        match self.call(Command::Stop).await {
            Ok(()) | Err(RuntimeError::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Whether the task is still running.
    pub fn is_running(&self) -> bool {
        !self.commands.is_closed()
    }

    async fn call<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, RuntimeError> {
        let (reply, response) = oneshot::channel();
        self.commands.send(command(reply)).await.map_err(|_| RuntimeError::Closed)?;
        response.await.map_err(|_| RuntimeError::Closed)?
    }
}

type Reply<T> = oneshot::Sender<Result<T, RuntimeError>>;

/// A bound RTP/RTCP port pair taken ahead of a join ([`Bridge::reserve_ports`]).
#[derive(Debug)]
pub struct ReservedPorts(PortPair);

impl ReservedPorts {
    /// The RTP socket's address (RTCP is on the port above).
    pub fn local_rtp(&self) -> SocketAddr {
        self.0.rtp.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], self.0.port())))
    }

    /// The RTP socket, for whoever holds the pair until the join (to play a prompt and read
    /// DTMF on it).
    pub fn rtp_socket(&self) -> &tokio::net::UdpSocket {
        &self.0.rtp
    }
}

enum Command {
    Join(Box<JoinRequest>, Reply<Joined>),
    JoinOn(Box<JoinRequest>, PortPair, Reply<Joined>),
    JoinWebRtc(Box<JoinRequest>, WebRtcOffer, Reply<(Joined, String)>),
    Leave(ParticipantId, Reply<()>),
    Relate {
        participants: Vec<ParticipantId>,
        others: Vec<ParticipantId>,
        relationship: Relationship,
        reply: Reply<()>,
    },
    Speak(ParticipantId, bool, Reply<bool>),
    Hear(ParticipantId, bool, Reply<bool>),
    InputGain(ParticipantId, Gain, Reply<()>),
    OutputGain(ParticipantId, Gain, Reply<()>),
    Energy(ParticipantId, Option<u32>, Reply<()>),
    Play {
        clip: MediaClip,
        media: String,
        target: Option<ParticipantId>,
        reply: Reply<ParticipantId>,
    },
    StopPlay(Option<ParticipantId>, Reply<usize>),
    StartRecording(Box<RecordingRequest>, Reply<RecordingSnapshot>),
    StopRecording(Reply<crate::media::recorder::Finishing>),
    Hold(ParticipantId, bool, Reply<bool>),
    Codec(ParticipantId, CodecParams, Reply<bool>),
    Stop(Reply<()>),
}

/// Metrics handles, registered once so the tick does no registry look-ups.
struct Metrics {
    ticks: metrics::Counter,
    late_ticks: metrics::Counter,
    tick_seconds: metrics::Histogram,
    encodes: metrics::Counter,
    decodes: metrics::Counter,
    encodes_per_tick: metrics::Gauge,
    decodes_per_tick: metrics::Gauge,
    packets_in: metrics::Counter,
    packets_out: metrics::Counter,
    dropped: Vec<metrics::Counter>,
    participants: metrics::Gauge,
    encoder_forks: metrics::Counter,
    encoder_merges: metrics::Counter,
    silent_switches: metrics::Counter,
    discontinuities: metrics::Counter,
    in_transition: metrics::Gauge,
    rtcp: crate::rtcp::RtcpMetrics,
    playout: PlayoutMetrics,
}

/// Playout buffer metrics: stretch counters per tick, delay histograms over every leg at
/// each snapshot (no label per participant).
struct PlayoutMetrics {
    accelerated: metrics::Counter,
    expanded: metrics::Counter,
    delay: metrics::Histogram,
    target: metrics::Histogram,
}

impl PlayoutMetrics {
    fn register() -> Self {
        Self {
            accelerated: metrics::counter!("mixminus_playout_accelerated_samples_total"),
            expanded: metrics::counter!("mixminus_playout_expanded_samples_total"),
            delay: metrics::histogram!("mixminus_playout_delay_seconds"),
            target: metrics::histogram!("mixminus_playout_target_delay_seconds"),
        }
    }

    fn on_pull(&self, pulled: &crate::jitter::Pulled) {
        if pulled.accelerated > 0 {
            self.accelerated.increment(u64::from(pulled.accelerated));
        }
        if pulled.expanded > 0 {
            self.expanded.increment(u64::from(pulled.expanded));
        }
    }

    fn on_snapshot(&self, stats: &JitterStats) {
        self.delay.record(f64::from(stats.delay_ms) / 1000.0);
        self.target.record(f64::from(stats.target_ms) / 1000.0);
    }
}

impl Metrics {
    fn register() -> Self {
        Self {
            ticks: metrics::counter!("mixminus_ticks_total"),
            late_ticks: metrics::counter!("mixminus_late_ticks_total"),
            tick_seconds: metrics::histogram!("mixminus_tick_duration_seconds"),
            encodes: metrics::counter!("mixminus_encodes_total"),
            decodes: metrics::counter!("mixminus_decodes_total"),
            encodes_per_tick: metrics::gauge!("mixminus_encodes_per_tick"),
            decodes_per_tick: metrics::gauge!("mixminus_decodes_per_tick"),
            packets_in: metrics::counter!("mixminus_packets_in_total"),
            packets_out: metrics::counter!("mixminus_packets_out_total"),
            dropped: DropReason::ALL
                .iter()
                .map(|r| metrics::counter!("mixminus_packets_dropped_total", "reason" => r.label()))
                .collect(),
            participants: metrics::gauge!("mixminus_participants"),
            encoder_forks: metrics::counter!("mixminus_encoder_forks_total"),
            encoder_merges: metrics::counter!("mixminus_encoder_merges_total"),
            silent_switches: metrics::counter!("mixminus_silent_encoder_switches_total"),
            discontinuities: metrics::counter!("mixminus_stream_discontinuities_total"),
            in_transition: metrics::gauge!("mixminus_listeners_in_transition"),
            rtcp: crate::rtcp::RtcpMetrics::register(),
            playout: PlayoutMetrics::register(),
        }
    }
}

/// Datagrams queued from a conference's readers to its task. The task drains them as they
/// come, so the queue is short unless the task stalls; the readers' budgets bound what each
/// source can put in it.
const INBOUND_QUEUE: usize = 4096;
/// Datagrams handled in one go before the task looks at its timer and commands again.
const INBOUND_BATCH: usize = 256;

struct ConferenceTask {
    conference: Conference,
    inbound_tx: mpsc::Sender<Inbound>,
    settings: ConferenceSettings,
    bridge: Shared,
    legs: HashMap<ParticipantId, Leg>,
    fanout: Fanout,
    tone: Option<TonePlayer>,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    events: broadcast::Sender<Event>,
    counters: ConferenceCounters,
    metrics: Metrics,
    send_buf: Vec<u8>,
    started_at: SystemTime,
    frame: Duration,
    ticks_since_snapshot: u32,
    ssrc_seed: u64,
    leaving: Vec<ParticipantId>,
    /// The last relationship list published, and whether the matrix changed since.
    relationships: Arc<Vec<(ParticipantId, ParticipantId, Relationship)>>,
    relationships_changed: bool,
    /// The matrix's record count when the list was built (the list leaves internal ones out).
    relationships_total: usize,
    dropped_reported: [u64; 11],
    media: MediaState,
}

impl ConferenceTask {
    fn new(
        mut conference: Conference,
        settings: ConferenceSettings,
        bridge: Shared,
        snapshot_tx: watch::Sender<Arc<Snapshot>>,
        events: broadcast::Sender<Event>,
        inbound_tx: mpsc::Sender<Inbound>,
    ) -> Result<Self, RuntimeError> {
        let rate = settings.core.sample_rate.hz();
        let frame_samples = conference.frame_samples();
        let tone = if settings.entry_tone || settings.exit_tone {
            Some(TonePlayer::new(&mut conference)?)
        } else {
            None
        };
        // The tone source's join is internal: nobody needs to hear about it.
        while conference.poll_event().is_some() {}
        let now = SystemTime::now();
        let seed = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Ok(Self {
            fanout: Fanout::new(settings.encoder, rate, frame_samples),
            frame: Duration::from_millis(settings.core.frame.millis() as u64),
            conference,
            inbound_tx,
            settings,
            bridge,
            legs: HashMap::new(),
            tone,
            snapshot_tx,
            events,
            counters: ConferenceCounters::default(),
            metrics: Metrics::register(),
            send_buf: Vec::with_capacity(MAX_DATAGRAM),
            started_at: now,
            ticks_since_snapshot: 0,
            ssrc_seed: seed | 1,
            leaving: Vec::new(),
            relationships: Arc::default(),
            relationships_changed: false,
            relationships_total: 0,
            dropped_reported: [0; 11],
            media: MediaState::new(broadcast::channel(1).0),
        })
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut inbound: mpsc::Receiver<Inbound>,
    ) {
        self.publish();
        let start = tokio::time::Instant::now();
        let mut k: u32 = 0;
        loop {
            // Deadline k is start + k·frame: computed, never accumulated, so no drift.
            let deadline = start + self.frame * (k + 1);
            tokio::select! {
                // Datagrams are handled as they arrive (the readers stamped them), so the
                // jitter buffer sees real arrival times, not the tick's.
                Some(first) = inbound.recv() => {
                    self.handle_inbound(first);
                    for _ in 1..INBOUND_BATCH {
                        let Ok(next) = inbound.try_recv() else { break };
                        self.handle_inbound(next);
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Stop(reply)) => {
                        self.shutdown();
                        let _ = reply.send(Ok(()));
                        break;
                    }
                    Some(command) => self.apply(command),
                    None => {
                        self.shutdown();
                        break;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    // What the readers handed over before the deadline belongs to this
                    // tick: `select!` may have picked the deadline first.
                    for _ in 0..INBOUND_QUEUE {
                        let Ok(next) = inbound.try_recv() else { break };
                        self.handle_inbound(next);
                    }
                    let now = tokio::time::Instant::now();
                    let lateness = now.saturating_duration_since(deadline);
                    k += 1;
                    if lateness > self.frame {
                        self.counters.late_ticks += 1;
                        self.metrics.late_ticks.increment(1);
                        if lateness > self.frame * 5 {
                            // A long stall (the machine was suspended?): skip ahead rather
                            // than burst-tick to catch up.
                            let skip = (lateness.as_micros() / self.frame.as_micros().max(1)) as u32;
                            k += skip;
                            self.counters.skipped_ticks += skip as u64;
                        }
                    }
                    self.tick(now.into_std(), deadline.into_std());
                }
            }
        }
        self.publish_stopped();
    }

    /// Hands one datagram to its leg and does the socket work the leg asks for.
    fn handle_inbound(&mut self, inbound: Inbound) {
        let Some(leg) = self.legs.get_mut(&inbound.leg) else { return };
        match inbound.what {
            Received::Datagram(at, from, datagram) => {
                let (before, digits) = (leg.stats.packets_in, leg.stats.dtmf_digits);
                let output = leg.handle_input(at, inbound.port, from, &datagram);
                self.metrics.packets_in.increment(leg.stats.packets_in - before);
                if leg.stats.dtmf_digits > digits {
                    metrics::counter!("mixminus_dtmf_digits_total").increment(1);
                }
                match output {
                    Some(LegOutput::Latched(peer)) => {
                        // From now on the kernel drops every other source before it costs
                        // anything; the peer's host keeps its reserved budget.
                        if let Err(error) = SockRef::from(&*leg.ports.rtp).connect(&peer.into()) {
                            tracing::debug!(%error, participant = %inbound.leg, "connect failed");
                        }
                        if let Some(reader) = &leg.reader {
                            reader.set_peer(peer.ip());
                        }
                    }
                    Some(LegOutput::Verified(peer)) => {
                        if let Some(reader) = &leg.reader {
                            reader.set_peer(peer.ip());
                        }
                    }
                    None => {}
                }
            }
            Received::Unreachable => leg.unreachable = true,
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Join(request, reply) => {
                let result = self.join(*request, None, None).map(|(joined, _)| joined);
                self.answer(reply, result);
            }
            Command::JoinOn(request, ports, reply) => {
                let result = self.join(*request, Some(ports), None).map(|(joined, _)| joined);
                self.answer(reply, result);
            }
            Command::JoinWebRtc(request, offer, reply) => {
                let result = self
                    .join(*request, None, Some(offer))
                    .map(|(joined, answer)| (joined, answer.unwrap_or_default()));
                self.answer(reply, result);
            }
            Command::Leave(id, reply) => {
                let result = self.remove(id, true);
                self.answer(reply, result);
            }
            Command::Relate { participants, others, relationship, reply } => {
                self.relationships_changed = true;
                // A playback may be the other party (`relate(P, playback, deaf)`).
                let others_known = others
                    .iter()
                    .find(|id| !self.legs.contains_key(id) && !self.media.is_playback(**id))
                    .map_or(Ok(()), |&id| Err(mixminus_core::Error::UnknownParticipant(id).into()));
                let result = self.check_public(&participants).and(others_known).and_then(|()| {
                    Ok(self.conference.relate(&participants, &others, relationship)?)
                });
                self.answer(reply, result);
            }
            Command::Play { clip, media, target, reply } => {
                let result = self.media.play(
                    &mut self.conference,
                    clip,
                    media,
                    target,
                    self.legs.keys().copied(),
                );
                self.answer(reply, result);
            }
            Command::StopPlay(id, reply) => {
                let result = self.media.stop_play(&mut self.conference, id);
                self.answer(reply, result);
            }
            Command::StartRecording(request, reply) => {
                let frame_ms = self.settings.core.frame.millis();
                let result = self.media.start_recording(&mut self.conference, *request, frame_ms);
                self.answer(reply, result);
            }
            Command::StopRecording(reply) => {
                let result = self.media.stop_recording(&mut self.conference);
                self.answer(reply, result);
            }
            Command::Speak(id, v, reply) => {
                let r = self
                    .check_public([&id])
                    .and_then(|()| Ok(self.conference.set_can_speak(id, v)?));
                self.answer(reply, r);
            }
            Command::Hear(id, v, reply) => {
                let r = self
                    .check_public([&id])
                    .and_then(|()| Ok(self.conference.set_can_hear(id, v)?));
                self.answer(reply, r);
            }
            Command::InputGain(id, g, reply) => {
                let r = self
                    .check_public([&id])
                    .and_then(|()| Ok(self.conference.set_input_gain(id, g)?));
                self.answer(reply, r);
            }
            Command::OutputGain(id, g, reply) => {
                let r = self
                    .check_public([&id])
                    .and_then(|()| Ok(self.conference.set_output_gain(id, g)?));
                self.answer(reply, r);
            }
            Command::Hold(id, held, reply) => {
                let r = self.check_public([&id]).map(|()| match self.legs.get_mut(&id) {
                    Some(leg) if leg.held != held => {
                        leg.held = held;
                        true
                    }
                    _ => false,
                });
                self.answer(reply, r);
            }
            Command::Codec(id, codec, reply) => {
                let core = &self.settings.core;
                let (rate, frame_ms) = (core.sample_rate.hz(), core.frame.millis());
                let jitter = self.bridge.config.jitter;
                let r = self.check_public([&id]).and_then(|()| match self.legs.get_mut(&id) {
                    _ if codec.ptime_ms != frame_ms => Err(RuntimeError::InvalidRequest(
                        "ptime must equal the conference's frame interval",
                    )),
                    Some(leg) if leg.codec != codec => {
                        leg.change_codec(codec, jitter, rate, frame_ms).map(|()| true)
                    }
                    _ => Ok(false),
                });
                self.answer(reply, r);
            }
            Command::Energy(id, t, reply) => {
                let r = self
                    .check_public([&id])
                    .and_then(|()| Ok(self.conference.set_energy_threshold(id, t)?));
                self.answer(reply, r);
            }
            Command::Stop(reply) => {
                // Handled in `run`; here only for completeness.
                self.answer(reply, Ok(()));
            }
        }
    }

    /// Replies to a command only after its events are out and its snapshot is published,
    /// so a caller that reads the snapshot right after the reply sees its own change.
    fn answer<T>(&mut self, reply: Reply<T>, result: Result<T, RuntimeError>) {
        self.forward_events();
        self.publish();
        let _ = reply.send(result);
    }

    /// The internal tone source is not a participant anyone may address.
    fn check_public<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a ParticipantId>,
    ) -> Result<(), RuntimeError> {
        for &id in ids {
            if !self.legs.contains_key(&id) {
                return Err(mixminus_core::Error::UnknownParticipant(id).into());
            }
        }
        Ok(())
    }

    /// The bridge's playout bounds with the conference's own in place of them.
    fn playout_bounds(&self) -> JitterConfig {
        let mut bounds = self.bridge.config.jitter;
        if let Some(ms) = self.settings.jitter_min_delay_ms {
            bounds.min_delay_ms = ms;
        }
        if let Some(ms) = self.settings.jitter_max_delay_ms {
            bounds.max_delay_ms = ms;
        }
        bounds
    }

    /// Admits and adds a participant; with `offer`, a WebRTC one, and the SDP answer.
    fn join(
        &mut self,
        request: JoinRequest,
        reserved: Option<PortPair>,
        offer: Option<WebRtcOffer>,
    ) -> Result<(Joined, Option<String>), RuntimeError> {
        let core = &self.settings.core;
        if request.codec.ptime_ms != core.frame.millis() {
            return Err(RuntimeError::InvalidRequest(
                "ptime must equal the conference's frame interval",
            ));
        }
        if self.conference.len() >= core.max_participants {
            return Err(mixminus_core::Error::ConferenceFull(core.max_participants).into());
        }
        if request.locked.as_ref().is_some_and(|locked| locked.load(Ordering::Acquire)) {
            return Err(RuntimeError::Locked);
        }
        if let Some(limit) = request.max_members.filter(|_| !request.options.ghost) {
            let counted = self
                .legs
                .keys()
                .filter(|&&id| self.conference.participant(id).is_some_and(|p| !p.ghost))
                .count();
            if counted >= limit {
                return Err(RuntimeError::Full(limit));
            }
        }
        if request.audio_level_ext.is_some_and(|id| !is_one_byte_extension_id(id)) {
            return Err(RuntimeError::InvalidRequest("audio_level_ext must be 1..=14"));
        }
        if let Some(remote) = request.remote {
            check_remote(remote, self.bridge.ports.bind_address(), &self.bridge.config)?;
        }
        let ports = match reserved {
            Some(ports) => ports,
            None => self.bridge.ports.take()?,
        };
        // SSRCs from a per-conference xorshift: distinct per leg, unpredictable enough for
        // loop detection (not a security property).
        self.ssrc_seed ^= self.ssrc_seed << 13;
        self.ssrc_seed ^= self.ssrc_seed >> 7;
        self.ssrc_seed ^= self.ssrc_seed << 17;
        let media = MediaFormat {
            conference_rate: core.sample_rate.hz(),
            frame_samples: self.conference.frame_samples(),
            frame_ms: core.frame.millis(),
            jitter: self.playout_bounds(),
            audio_level_ext: request
                .audio_level_ext
                .or(self.settings.audio_level_ext)
                .or(self.bridge.config.audio_level_ext),
            strict_source: self.bridge.config.strict_source,
            quiet_decode_interval: self.bridge.config.quiet_decode_interval,
            rtcp_interval: self.bridge.config.rtcp_interval,
        };
        let mut leg = Leg::new(
            ports,
            request.codec,
            request.remote,
            request.rtcp_mux,
            &media,
            Instant::now(),
            self.ssrc_seed as u32,
        )?;
        if let Some(keys) = &request.srtp {
            leg.use_srtp(keys)?;
        }
        leg.dtmf_pt = request.dtmf_payload_type;
        let answer = match offer {
            Some(offer) => {
                let (transport, answer) =
                    WebRtcTransport::answer(offer, leg.local_rtp(), Instant::now())?;
                leg.webrtc = Some(Box::new(transport));
                Some(answer)
            }
            None => None,
        };
        let id = self.conference.join(request.options)?;
        let mut leg = leg;
        let sockets = [(Port::Rtp, leg.ports.rtp.clone()), (Port::Rtcp, leg.ports.rtcp.clone())];
        let peer = request.remote.filter(|_| self.bridge.config.strict_source).map(|r| r.ip());
        leg.reader = Some(ReaderLink::start(id, sockets, peer, &self.inbound_tx));
        self.media.on_join(&mut self.conference, id);
        let local_rtp = leg.local_rtp();
        self.legs.insert(id, leg);
        self.metrics.participants.increment(1.0);
        if !request.options.ghost {
            if let Some(tone) = self.tone.as_mut().filter(|_| self.settings.entry_tone) {
                tone.play_entry();
            }
        }
        tracing::debug!(participant = %id, %local_rtp, webrtc = answer.is_some(), "joined");
        Ok((Joined { id, local_rtp }, answer))
    }

    fn remove(&mut self, id: ParticipantId, send_bye: bool) -> Result<(), RuntimeError> {
        self.check_public([&id])?;
        let ghost = self.conference.participant(id).is_some_and(|p| p.ghost);
        self.conference.leave(id)?;
        self.media.on_leave(&mut self.conference, id);
        self.fanout.forget(id);
        self.relationships_changed = true;
        if let Some(mut leg) = self.legs.remove(&id) {
            if leg.webrtc.is_some() {
                // However it leaves (kick, WHIP DELETE, the conference ending), the
                // browser is told: RTCP BYE and DTLS close_notify.
                leg.close_webrtc();
            } else if send_bye {
                crate::rtcp::send_bye(&mut leg, Instant::now());
            }
            for (total, leg_count) in self.counters.dropped.iter_mut().zip(leg.stats_now().dropped)
            {
                *total += leg_count;
            }
        }
        self.metrics.participants.decrement(1.0);
        if !ghost {
            if let Some(tone) = self.tone.as_mut().filter(|_| self.settings.exit_tone) {
                tone.play_exit();
            }
        }
        Ok(())
    }

    /// One frame: `deadline` is when it was due, `now` when the task got to it.
    fn tick(&mut self, now: Instant, deadline: Instant) {
        let started = Instant::now();
        let ConferenceTask { legs, conference, .. } = self;
        let mut decodes = 0u32;
        for (&id, leg) in legs.iter_mut() {
            leg.webrtc_tick(now);
            leg.refresh_consent(now);
            // The playout buffer measures the delay heard against when the frame was due:
            // a tick the machine made late is not a late packet, and stretching every leg
            // to make up for it would cost CPU at the worst moment and give nothing back.
            let pulled = leg.playout(deadline, conference, id);
            decodes += pulled.decoder_calls();
            self.metrics.playout.on_pull(&pulled);
        }
        if let Some(tone) = self.tone.as_mut() {
            tone.render(conference);
        }
        self.media.render(conference);
        let summary = self.conference.tick();
        self.media.after_tick(&mut self.conference);
        self.send_mix(now);
        self.housekeeping(now);
        self.forward_events();

        let c = &mut self.counters;
        c.ticks += 1;
        c.decodes_last_tick = decodes;
        c.decodes_total += decodes as u64;
        c.encodes_last_tick = self.fanout.encodes_this_tick();
        c.max_encodes_per_tick = c.max_encodes_per_tick.max(c.encodes_last_tick);
        c.encodes_total += c.encodes_last_tick as u64;
        c.encoders = self.fanout.encoder_count() as u32;
        let lineage = self.fanout.stats();
        let m = &self.metrics;
        m.encoder_forks.increment(lineage.forks - c.encoder_forks);
        m.encoder_merges.increment(lineage.merges - c.encoder_merges);
        m.silent_switches.increment(lineage.silent_switches - c.silent_switches);
        m.discontinuities.increment(lineage.discontinuities - c.discontinuities);
        m.in_transition.set(f64::from(lineage.in_transition));
        c.encoder_forks = lineage.forks;
        c.encoder_merges = lineage.merges;
        c.silent_switches = lineage.silent_switches;
        c.discontinuities = lineage.discontinuities;
        c.listeners_in_transition = lineage.in_transition;
        c.groups = summary.groups as u32;
        c.active = summary.active as u32;
        let took = started.elapsed();
        c.last_tick_us = took.as_micros() as u64;
        c.max_tick_us = c.max_tick_us.max(c.last_tick_us);
        self.metrics.ticks.increment(1);
        self.metrics.tick_seconds.record(took.as_secs_f64());
        self.metrics.encodes.increment(c.encodes_last_tick as u64);
        self.metrics.decodes.increment(decodes as u64);
        self.metrics.encodes_per_tick.set(c.encodes_last_tick as f64);
        self.metrics.decodes_per_tick.set(decodes as f64);

        self.ticks_since_snapshot += 1;
        if self.ticks_since_snapshot >= self.bridge.config.snapshot_every {
            self.publish();
        }
    }

    /// Encodes once per encoder (see `fanout`: once per group and codec, plus listeners in
    /// transition) and sends each listener its encoder's payload.
    fn send_mix(&mut self, now: Instant) {
        let ConferenceTask { legs, conference, fanout, .. } = self;
        let settings = *fanout.settings();
        let listeners = conference.listener_groups().filter_map(|(id, group)| {
            // Nowhere to send yet (no remote given, nothing latched): not planned, and the
            // leg keeps its clock below.
            let leg = legs.get(&id).filter(|leg| leg.destination().is_some() && !leg.held)?;
            Some((id, group, EncoderKey::of(&leg.codec, &settings)))
        });
        if let Err(error) = fanout.plan(conference, listeners) {
            tracing::warn!(%error, "encoder planning failed");
        }
        let mut sent = 0u64;
        for index in 0..self.fanout.planned() {
            let Some(id) = self.fanout.listener(index) else { continue };
            let Some(leg) = self.legs.get_mut(&id) else { continue };
            let Some(destination) = leg.destination() else { continue };
            let payload: Bytes = match self.fanout.payload(&self.conference, index) {
                Ok(payload) => payload,
                Err(error) => {
                    tracing::warn!(%error, participant = %id, "encode failed");
                    leg.skip_frame();
                    continue;
                }
            };
            if leg.webrtc.is_some() {
                // str0m packetises, encrypts and sends (from the leg's socket).
                if leg.send_webrtc(now, &payload) {
                    leg.stats.packets_out += 1;
                    leg.stats.bytes_out += payload.len() as u64;
                    sent += 1;
                }
                continue;
            }
            leg.packetise(&payload, &mut self.send_buf);
            match leg.send_rtp(&self.send_buf, destination) {
                Ok(n) => {
                    leg.rtcp.on_rtp_sent(payload.len());
                    leg.stats.packets_out += 1;
                    leg.stats.bytes_out += n as u64;
                    sent += 1;
                }
                Err(error) => leg.on_send_error(&error),
            }
        }
        for leg in self.legs.values_mut().filter(|leg| leg.destination().is_none() || leg.held) {
            leg.skip_frame();
        }
        self.counters.packets_out += sent;
        self.metrics.packets_out.increment(sent);
    }

    /// RTCP reports, BYEs received, inactivity.
    fn housekeeping(&mut self, now: Instant) {
        let timeout = self.bridge.config.inactivity_timeout;
        for (&id, leg) in self.legs.iter_mut() {
            let last = leg.last_rx.unwrap_or(leg.joined_at);
            if leg.bye
                || leg.unreachable
                || timeout.is_some_and(|t| now.saturating_duration_since(last) > t)
            {
                self.leaving.push(id);
                continue;
            }
            if let Some(end) = leg.webrtc_ended() {
                tracing::info!(participant = %id, ?end, "webrtc leg ended");
                self.leaving.push(id);
                continue;
            }
            // A WebRTC leg's RTCP is str0m's, on the PeerConnection.
            if leg.webrtc.is_none() {
                crate::rtcp::maybe_send_report(leg, now, &self.metrics.rtcp);
            }
        }
        while let Some(id) = self.leaving.pop() {
            let bye = self.legs.get(&id).is_some_and(|l| !l.bye && !l.unreachable);
            tracing::info!(participant = %id, "removing participant (RTCP BYE, ICMP unreachable or inactivity)");
            let _ = self.remove(id, bye);
        }
    }

    fn forward_events(&mut self) {
        let mut any = false;
        while let Some(event) = self.conference.poll_event() {
            if let Event::GroupClosed(_) = event {
                // Encoders follow listeners, not groups (see `fanout`): nothing to close.
                continue;
            }
            if let Some(tone) = &self.tone {
                if tone.is_source_of(&event) {
                    continue;
                }
            }
            if self.media.is_internal(&event) {
                continue;
            }
            any = true;
            // No receivers is normal.
            let _ = self.events.send(event);
        }
        if any {
            self.publish();
        }
    }

    fn publish(&mut self) {
        self.ticks_since_snapshot = 0;
        let mut participants: Vec<LegSnapshot> = self
            .legs
            .iter()
            .filter_map(|(&id, leg)| {
                Some(LegSnapshot {
                    info: self.conference.participant(id)?,
                    local_rtp: leg.local_rtp(),
                    remote: leg.remote,
                    latched: leg.latched,
                    codec: leg.codec,
                    joined_at: leg.joined_wall,
                    stats: leg.stats_now(),
                    jitter_depth: leg.jitter().depth() as u32,
                    jitter: leg.jitter().stats(),
                    audio_level: leg.last_audio_level,
                    rtcp: leg.rtcp.stats().clone(),
                    held: leg.held,
                })
            })
            .collect();
        participants.sort_unstable_by_key(|p| p.info.id);
        for leg in participants.iter().filter(|p| p.jitter.received > 0) {
            self.metrics.playout.on_snapshot(&leg.jitter);
        }
        let mut counters = self.counters;
        counters.legs = self.legs.len() as u32;
        counters.mixer_participants = self.conference.len() as u32;
        counters.mixer_groups = self.conference.group_count() as u32;
        counters.relationships = self.conference.relationship_count() as u32;
        for leg in self.legs.values() {
            for (total, leg_count) in counters.dropped.iter_mut().zip(leg.stats_now().dropped) {
                *total += leg_count;
            }
        }
        // Prometheus counters move by what changed since the last publication.
        for ((counter, reported), &now) in
            self.metrics.dropped.iter().zip(self.dropped_reported.iter_mut()).zip(&counters.dropped)
        {
            counter.increment(now.saturating_sub(*reported));
            *reported = now;
        }
        let snapshot = Snapshot {
            playbacks: self.media.playbacks(),
            recording: self.media.recording(),
            participants,
            relationships: self.relationships(),
            counters,
            floor: self.conference.floor(),
            started_at: Some(self.started_at),
            stopped: false,
        };
        self.snapshot_tx.send_replace(Arc::new(snapshot));
    }

    /// The relationship records for a snapshot: the last list while the matrix is
    /// unchanged (a relate or a leave marks it changed), so the periodic publication costs
    /// nothing per record.
    fn relationships(&mut self) -> Arc<Vec<(ParticipantId, ParticipantId, Relationship)>> {
        let count = self.conference.relationship_count();
        if self.relationships_changed || self.relationships_total != count {
            self.relationships_total = count;
            // The records that make a playback private are internal (a playback's id is
            // only ever the other party of a public record).
            let mut all = self.conference.relationships();
            all.retain(|(p, _, _)| self.legs.contains_key(p));
            self.relationships = Arc::new(all);
            self.relationships_changed = false;
        }
        self.relationships.clone()
    }

    fn shutdown(&mut self) {
        self.media.shutdown(&mut self.conference);
        let ids: Vec<_> = self.legs.keys().copied().collect();
        for id in ids {
            let _ = self.remove(id, true);
        }
        self.forward_events();
        metrics::gauge!("mixminus_conferences").decrement(1.0);
    }

    fn publish_stopped(&mut self) {
        let mut snapshot = (**self.snapshot_tx.borrow()).clone();
        snapshot.stopped = true;
        snapshot.participants.clear();
        snapshot.relationships = Arc::default();
        snapshot.playbacks.clear();
        snapshot.recording = None;
        self.snapshot_tx.send_replace(Arc::new(snapshot));
    }
}

/// A remote the bridge will send to: not unspecified, multicast or broadcast (the bridge
/// must not be pointed at a whole network), and of the bind address's family (an IPv6 peer
/// on an IPv4 bind would only ever fail to send).
fn check_remote(
    remote: SocketAddr,
    bind: IpAddr,
    config: &BridgeConfig,
) -> Result<(), RuntimeError> {
    let ip = remote.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast || remote.port() == 0 {
        return Err(RuntimeError::InvalidRequest(
            "remote must be a unicast address with a port (not unspecified, multicast or broadcast)",
        ));
    }
    let dual_stack = matches!(bind, IpAddr::V6(v6) if v6.is_unspecified());
    if ip.is_ipv4() != bind.is_ipv4() && !dual_stack {
        return Err(RuntimeError::InvalidRequest(
            "remote's address family differs from the RTP bind address's",
        ));
    }
    let allowed =
        config.remote_allow.is_empty() || config.remote_allow.iter().any(|net| net.contains(&ip));
    if !allowed || config.remote_deny.iter().any(|net| net.contains(&ip)) {
        return Err(RuntimeError::InvalidRequest("remote is outside the allowed address ranges"));
    }
    Ok(())
}
