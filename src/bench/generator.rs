//! The load generator: N RTP participants over loopback, kept cheap so the bridge under
//! test gets the cores.
//!
//! - One sender thread: at each 20 ms deadline it sends every participant's next
//!   pre-encoded packet in one burst (no per-participant timers or tasks, no encoding).
//! - One receiver thread: a single-threaded tokio runtime with one task per socket,
//!   counting what comes back (packets, sequence gaps, arrival lateness). One quiet
//!   participant, the *probe*, also decodes its mix: it times the marker talker 0 says
//!   (end-to-end latency) and checks which talkers it hears.
//!
//! Each participant sends from and listens on one socket (symmetric RTP), as a phone
//! would; both bridges are told to send the mix there.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use mixminus_rtp::{
    is_rtcp, new_decoder, write_rtp_header, write_rtp_header_with_audio_level, CodecKind,
    CodecParams, RtpHeader, RtpPacket, SequenceExtender,
};

use super::media::{
    talker_hz, Frame, Payloads, AUDIO_LEVEL_EXT, FRAME, LOOP_FRAMES, MARKER_HZ, PAYLOAD_TYPE, RATE,
};

const FRAME_DURATION: Duration = Duration::from_millis(20);

/// How participants mark their frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SendOptions {
    /// Attach the RFC 6464 audio level (extension id 1) to every packet.
    pub(crate) audio_level: bool,
}

/// The generator's sockets, bound before the bridge is told about them.
pub(crate) struct Sockets {
    sockets: Vec<UdpSocket>,
}

impl Sockets {
    /// Binds `n` UDP sockets on 127.0.0.1 at even ports of the range `lo..=hi` (skipping
    /// ports in use). The odd port above each is left free: bridges send RTCP there.
    pub(crate) fn bind(n: usize, lo: u16, hi: u16) -> anyhow::Result<Self> {
        let mut sockets = Vec::with_capacity(n);
        let mut port = u32::from(lo) + u32::from(lo % 2);
        while sockets.len() < n {
            let Some(p) = u16::try_from(port).ok().filter(|&p| p < hi) else {
                anyhow::bail!("generator port range {lo}-{hi} has fewer than {n} free port pairs");
            };
            if let Ok(socket) = UdpSocket::bind(("127.0.0.1", p)) {
                sockets.push(socket);
            }
            port += 2;
        }
        Ok(Self { sockets })
    }

    /// Each participant's address.
    pub(crate) fn addrs(&self) -> anyhow::Result<Vec<SocketAddr>> {
        self.sockets.iter().map(|s| Ok(s.local_addr()?)).collect()
    }
}

/// When the measurement window opens and closes: only arrivals inside it count.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: Instant,
    pub(crate) end: Instant,
}

/// What the participants received, summed, in the window.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReceiveStats {
    /// Output packets received.
    pub(crate) packets: u64,
    /// Output packets expected: one per participant per frame of the window.
    pub(crate) expected: u64,
    /// Sequence numbers skipped (frames the bridge never sent or the network lost).
    pub(crate) missing: u64,
    /// Packets that arrived more than one frame later than the stream's best case.
    pub(crate) late: u64,
    /// Participants that received nothing in the window.
    pub(crate) silent_participants: u64,
    /// End-to-end latencies of the marker, ms.
    pub(crate) latencies_ms: Vec<f64>,
    /// How many talkers the probe hears at the end (−40 dB re full-scale sine or louder).
    pub(crate) heard_talkers: Option<usize>,
    /// Packets the generator failed to send.
    pub(crate) send_errors: u64,
    /// Sender deadlines missed by more than one frame.
    pub(crate) sender_late: u64,
}

/// A running generator. Dropping it without [`stop`](Self::stop) (a run that failed
/// half-way) still stops both threads.
pub(crate) struct Generator {
    stop: Arc<AtomicBool>,
    sender: Option<JoinHandle<(u64, u64)>>,
    receiver: Option<JoinHandle<anyhow::Result<ReceiveStats>>>,
}

impl Generator {
    /// Starts sending to `targets[i]` from socket `i`: participants `0..talkers` say their
    /// tones, the rest the quiet loop.
    pub(crate) fn start(
        sockets: Sockets,
        targets: Vec<SocketAddr>,
        payloads: Payloads,
        options: SendOptions,
        window: Window,
    ) -> anyhow::Result<Self> {
        let talkers = payloads.talkers.len();
        let n = sockets.sockets.len();
        anyhow::ensure!(targets.len() == n, "one target per socket");
        let stop = Arc::new(AtomicBool::new(false));
        let markers = Arc::new(Mutex::new(Vec::<Instant>::new()));

        let mut senders = Vec::with_capacity(n);
        let mut receivers = Vec::with_capacity(n);
        for socket in sockets.sockets {
            socket.set_nonblocking(true)?;
            senders.push(socket.try_clone().context("cloning a socket")?);
            receivers.push(socket);
        }
        let sender = {
            let stop = stop.clone();
            let markers = markers.clone();
            std::thread::Builder::new()
                .name("bench-send".into())
                .spawn(move || send_loop(senders, targets, payloads, options, stop, markers))?
        };
        let probe = (n > talkers).then_some(talkers);
        let receiver = {
            let stop = stop.clone();
            std::thread::Builder::new().name("bench-recv".into()).spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("generator runtime")?;
                runtime.block_on(receive_all(receivers, probe, talkers, window, stop, markers))
            })?
        };
        Ok(Self { stop, sender: Some(sender), receiver: Some(receiver) })
    }

    /// Stops sending and receiving; returns what was received in the window.
    pub(crate) fn stop(mut self) -> anyhow::Result<ReceiveStats> {
        self.stop.store(true, Ordering::Relaxed);
        let (sender, receiver) = (self.sender.take(), self.receiver.take());
        let (send_errors, sender_late) = sender
            .context("generator already stopped")?
            .join()
            .map_err(|_| anyhow::anyhow!("sender thread panicked"))?;
        let mut stats = receiver
            .context("generator already stopped")?
            .join()
            .map_err(|_| anyhow::anyhow!("receiver thread panicked"))??;
        stats.send_errors = send_errors;
        stats.sender_late = sender_late;
        Ok(stats)
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Joined so their sockets are closed before the next run binds the same ports.
        if let Some(sender) = self.sender.take() {
            let _ = sender.join();
        }
        if let Some(receiver) = self.receiver.take() {
            let _ = receiver.join();
        }
    }
}

/// Per-participant outbound RTP state.
struct Outbound {
    ssrc: u32,
    seq: u16,
    ts: u32,
    first: bool,
}

fn send_loop(
    sockets: Vec<UdpSocket>,
    targets: Vec<SocketAddr>,
    payloads: Payloads,
    options: SendOptions,
    stop: Arc<AtomicBool>,
    markers: Arc<Mutex<Vec<Instant>>>,
) -> (u64, u64) {
    let talkers = payloads.talkers.len();
    let mut out: Vec<Outbound> = (0..sockets.len())
        .map(|i| Outbound {
            ssrc: 0x5EED_0000 ^ (i as u32).wrapping_mul(2_654_435_761),
            seq: (i as u16).wrapping_mul(7),
            ts: (i as u32).wrapping_mul(960 * 13),
            first: true,
        })
        .collect();
    let mut datagram = Vec::with_capacity(1500);
    let (mut errors, mut late) = (0u64, 0u64);
    let start = Instant::now();
    let mut k: u32 = 0;
    while !stop.load(Ordering::Relaxed) {
        // Deadline k is start + k·frame: computed, never accumulated.
        let deadline = start + FRAME_DURATION * k;
        let now = Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        } else if now - deadline > FRAME_DURATION {
            late += 1;
        }
        for (i, ((socket, target), state)) in
            sockets.iter().zip(&targets).zip(out.iter_mut()).enumerate()
        {
            let frame_index;
            let frame: &Frame = if i < talkers {
                frame_index = k as usize % LOOP_FRAMES;
                &payloads.talkers[i][frame_index]
            } else {
                // Quiet participants start their loop at different points.
                frame_index = (k as usize + i * 7) % payloads.quiet.len();
                &payloads.quiet[frame_index]
            };
            if frame.send {
                datagram.clear();
                let header = RtpHeader {
                    payload_type: PAYLOAD_TYPE,
                    marker: state.first,
                    sequence: state.seq,
                    timestamp: state.ts,
                    ssrc: state.ssrc,
                };
                if options.audio_level {
                    // The id is a constant in 1..=14: this cannot fail.
                    let _ = write_rtp_header_with_audio_level(
                        &mut datagram,
                        &header,
                        AUDIO_LEVEL_EXT,
                        frame.level,
                    );
                } else {
                    write_rtp_header(&mut datagram, &header);
                }
                datagram.extend_from_slice(&frame.payload);
                if i == 0 && frame_index == 0 {
                    markers.lock().unwrap_or_else(|p| p.into_inner()).push(Instant::now());
                }
                if socket.send_to(&datagram, target).is_err() {
                    errors += 1;
                }
                state.seq = state.seq.wrapping_add(1);
                state.first = false;
            }
            state.ts = state.ts.wrapping_add(FRAME as u32);
        }
        k += 1;
    }
    (errors, late)
}

/// One participant's receive counters.
#[derive(Default)]
struct Inbound {
    packets: u64,
    min_seq: Option<u64>,
    max_seq: u64,
    late: u64,
    /// The earliest arrival relative to the stream's schedule seen so far.
    best: Option<f64>,
    origin: Option<(Instant, u64)>,
}

async fn receive_all(
    sockets: Vec<UdpSocket>,
    probe: Option<usize>,
    talkers: usize,
    window: Window,
    stop: Arc<AtomicBool>,
    markers: Arc<Mutex<Vec<Instant>>>,
) -> anyhow::Result<ReceiveStats> {
    let n = sockets.len() as u64;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::with_capacity(sockets.len());
    for (i, socket) in sockets.into_iter().enumerate() {
        let socket = tokio::net::UdpSocket::from_std(socket)?;
        let mut stop_rx = stop_rx.clone();
        let probe = (probe == Some(i)).then(|| Probe::new(talkers, markers.clone())).transpose()?;
        tasks.push(tokio::spawn(async move {
            let mut inbound = Inbound::default();
            let mut probe = probe;
            let mut seq = SequenceExtender::new();
            let mut buf = vec![0u8; 2048];
            loop {
                tokio::select! {
                    received = socket.recv_from(&mut buf) => {
                        let Ok((len, _)) = received else { continue };
                        let now = Instant::now();
                        if is_rtcp(&buf[..len]) {
                            continue;
                        }
                        let Ok(packet) = RtpPacket::parse(&buf[..len]) else { continue };
                        if packet.payload_type() != PAYLOAD_TYPE {
                            continue;
                        }
                        let Some(ext) = seq.extend_ssrc(packet.ssrc(), packet.sequence()) else {
                            continue;
                        };
                        inbound.record(now, ext, window);
                        if let Some(probe) = probe.as_mut() {
                            probe.hear(now, packet.payload(), window);
                        }
                    }
                    _ = stop_rx.changed() => break,
                }
            }
            (inbound, probe)
        }));
    }
    // The sender owns the clock; poll its stop flag.
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_tx.send(true);
    let frames =
        ((window.end - window.start).as_secs_f64() / FRAME_DURATION.as_secs_f64()).round() as u64;
    let mut stats = ReceiveStats { expected: frames * n, ..Default::default() };
    for task in tasks {
        let (inbound, probe) = task.await?;
        stats.packets += inbound.packets;
        stats.late += inbound.late;
        if let Some(min) = inbound.min_seq {
            stats.missing += (inbound.max_seq - min + 1).saturating_sub(inbound.packets);
        } else {
            stats.silent_participants += 1;
        }
        if let Some(probe) = probe {
            stats.heard_talkers = Some(probe.heard_talkers());
            stats.latencies_ms = probe.latencies_ms;
        }
    }
    Ok(stats)
}

impl Inbound {
    fn record(&mut self, now: Instant, ext_seq: u64, window: Window) {
        // Arrival relative to the stream's schedule (first packet + k frames): its minimum
        // is the best case; an arrival a frame later than that is a late frame.
        let (t0, s0) = *self.origin.get_or_insert((now, ext_seq));
        let scheduled = (ext_seq as f64 - s0 as f64) * FRAME_DURATION.as_secs_f64();
        let offset = now.saturating_duration_since(t0).as_secs_f64() - scheduled;
        let best = self.best.map_or(offset, |b: f64| b.min(offset));
        self.best = Some(best);
        if now < window.start || now >= window.end {
            return;
        }
        self.packets += 1;
        if offset - best > FRAME_DURATION.as_secs_f64() {
            self.late += 1;
        }
        self.min_seq = Some(self.min_seq.map_or(ext_seq, |m| m.min(ext_seq)));
        self.max_seq = self.max_seq.max(ext_seq);
    }
}

/// The listener that decodes: marker timing and which talkers are heard.
struct Probe {
    decoder: Box<dyn mixminus_rtp::AudioDecoder + Send>,
    pcm: Vec<i16>,
    recent: Vec<i16>,
    talkers: usize,
    markers: Arc<Mutex<Vec<Instant>>>,
    marker_on: bool,
    latencies_ms: Vec<f64>,
}

/// Marker detection works on 5 ms blocks.
const BLOCK: usize = 240;
/// The marker (said at about −18 dB) counts as on above this level in a block…
const MARKER_ON_DB: f64 = -30.0;
/// …and off again below this one (well above the talkers' leakage into its bin).
const MARKER_OFF_DB: f64 = -40.0;

impl Probe {
    fn new(talkers: usize, markers: Arc<Mutex<Vec<Instant>>>) -> anyhow::Result<Self> {
        let decoder = new_decoder(&CodecParams::new(CodecKind::Opus), RATE, FRAME)?;
        Ok(Self {
            decoder,
            pcm: vec![0; FRAME],
            recent: Vec::with_capacity(RATE as usize),
            talkers,
            markers,
            marker_on: false,
            latencies_ms: Vec::new(),
        })
    }

    fn hear(&mut self, arrival: Instant, payload: &[u8], window: Window) {
        if self.decoder.decode(payload, &mut self.pcm).is_err() {
            return;
        }
        for (b, block) in self.pcm.chunks(BLOCK).enumerate() {
            let level = mixminus_rtp::dsp::tone_dbfs(block, RATE, MARKER_HZ);
            if !self.marker_on && level > MARKER_ON_DB {
                self.marker_on = true;
                // The onset sits `b` blocks into a frame that arrived whole at `arrival`.
                let offset = Duration::from_secs_f64((b * BLOCK) as f64 / f64::from(RATE));
                let markers = self.markers.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(sent) = markers.iter().rev().find(|&&t| t <= arrival) {
                    let latency = arrival + offset - *sent;
                    if arrival >= window.start
                        && arrival < window.end
                        && latency < Duration::from_secs(1)
                    {
                        self.latencies_ms.push(latency.as_secs_f64() * 1e3);
                    }
                }
            } else if self.marker_on && level < MARKER_OFF_DB {
                self.marker_on = false;
            }
        }
        if self.recent.len() + FRAME > self.recent.capacity() {
            self.recent.drain(..FRAME);
        }
        self.recent.extend_from_slice(&self.pcm);
    }

    fn heard_talkers(&self) -> usize {
        let tail = &self.recent[self.recent.len().saturating_sub(RATE as usize / 2)..];
        (0..self.talkers)
            .filter(|&i| mixminus_rtp::dsp::tone_dbfs(tail, RATE, talker_hz(i)) > -40.0)
            .count()
    }
}
