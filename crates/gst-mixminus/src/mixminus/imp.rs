//! The element: pad pairs, the mixing thread, properties, the `relate` signal.
//!
//! One mutex guards [`State`]; the mixing thread holds it only to decide and to build a
//! frame, never while pushing downstream or posting messages. Streaming threads (the sink
//! pads' chain functions) copy their samples into their pair's [`InputQueue`] under the
//! same mutex and wait on the condition variable when the queue is full.

use std::sync::{Condvar, LazyLock, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use mixminus_core::{
    Conference, ConferenceConfig, Event, FrameDuration, ParticipantId, SampleRate, TalkConfig,
};

use super::pad::MixMinusSinkPad;
use crate::input::{InputQueue, Samples};
use crate::relations::{self, Records};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "mixminus",
        gst::DebugColorFlags::empty(),
        Some("Mix-minus conference mixer with a relationship matrix"),
    )
});

const RATES: [i32; 4] = [8_000, 16_000, 24_000, 48_000];
const DEFAULT_FRAME_MS: u32 = 10;
/// How long an input queue is: enough for one large upstream buffer and a few frames.
const QUEUE_MS: u64 = 200;
/// An input whose timestamps drift this far from its sample count is re-placed by its
/// timestamps (a gap of silence or dropped overlap); closer than this it is taken as
/// contiguous, as `audiobasesink`'s alignment threshold does.
const ALIGNMENT_THRESHOLD_MS: u64 = 40;

/// Element properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    frame_ms: u32,
    energy_threshold: u32,
    attack_frames: u32,
    hangover_frames: u32,
    max_active_speakers: u32,
    latency: gst::ClockTime,
}

impl Default for Settings {
    fn default() -> Self {
        let talk = TalkConfig::default();
        Self {
            frame_ms: DEFAULT_FRAME_MS,
            energy_threshold: 0,
            attack_frames: talk.attack_frames.into(),
            hangover_frames: talk.hangover_frames.into(),
            max_active_speakers: 0,
            latency: gst::ClockTime::ZERO,
        }
    }
}

impl Settings {
    fn config(&self, rate: u32) -> ConferenceConfig {
        ConferenceConfig {
            // Rates and durations come from caps and property ranges that allow only these.
            sample_rate: SampleRate::from_hz(rate).unwrap_or_default(),
            frame: FrameDuration::from_millis(self.frame_ms).unwrap_or_default(),
            talk: TalkConfig {
                energy_threshold: self.energy_threshold,
                attack_frames: self.attack_frames.clamp(1, u16::MAX.into()) as u16,
                hangover_frames: self.hangover_frames.clamp(1, u16::MAX.into()) as u16,
                ..TalkConfig::default()
            },
            max_active_speakers: self.max_active_speakers as usize,
            ..Default::default()
        }
    }
}

/// A pad's negotiated sample format; its output uses the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    S16,
    F32,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::S16 => "S16LE",
            Format::F32 => "F32LE",
        }
    }

    fn bytes(self) -> usize {
        match self {
            Format::S16 => 2,
            Format::F32 => 4,
        }
    }
}

/// One participant: `sink_N`, `src_N`, and what flows through them.
struct Pair {
    index: u32,
    /// `sink_N`, as named in bus messages.
    name: String,
    sinkpad: MixMinusSinkPad,
    srcpad: gst::Pad,
    id: ParticipantId,
    format: Option<Format>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    queue: InputQueue,
    /// Where the next input buffer continues when it is contiguous.
    next_pos: Option<u64>,
    eos: bool,
    flushing: bool,
    /// Output side: stream-start sent, caps and segment due.
    started: bool,
    caps_due: bool,
    segment_due: bool,
}

/// One output frame ready to go downstream.
struct Push {
    pad: gst::Pad,
    events: [Option<gst::Event>; 3],
    buffer: Option<gst::Buffer>,
}

struct State {
    settings: Settings,
    conf: Conference,
    rate: u32,
    /// The first caps fix the rate for every pad until all pads are gone.
    rate_fixed: bool,
    frame: usize,
    pairs: Vec<Pair>,
    relations: Records,
    next_index: u32,
    /// Start of the next output frame, once the first input has arrived.
    out_pos: Option<u64>,
    running: bool,
    flushing: bool,
    discont: bool,
    eos_sent: bool,
    flow_error: Option<gst::FlowError>,
    live: bool,
    upstream_latency: gst::ClockTime,
    upstream_max_latency: Option<gst::ClockTime>,
    latency_dirty: bool,
    clock_id: Option<(gst::Clock, gst::SingleShotClockId)>,
    clock_waiting: bool,
    pools: [Option<gst::BufferPool>; 2],
    scratch: Vec<i16>,
    group_id: gst::GroupId,
}

impl State {
    fn new() -> Self {
        let settings = Settings::default();
        let config = settings.config(48_000);
        let frame = config.frame_samples();
        Self {
            // The default configuration is valid.
            conf: Conference::new(config).expect("default conference configuration"),
            settings,
            rate: 48_000,
            rate_fixed: false,
            frame,
            pairs: Vec::new(),
            relations: Records::new(),
            next_index: 0,
            out_pos: None,
            running: false,
            flushing: true,
            discont: true,
            eos_sent: false,
            flow_error: None,
            live: false,
            upstream_latency: gst::ClockTime::ZERO,
            upstream_max_latency: None,
            latency_dirty: true,
            clock_id: None,
            clock_waiting: false,
            pools: [None, None],
            scratch: vec![0; frame],
            group_id: gst::GroupId::next(),
        }
    }

    fn pair_mut(&mut self, index: u32) -> Option<&mut Pair> {
        self.pairs.iter_mut().find(|p| p.index == index)
    }

    fn queue_capacity(&self) -> usize {
        (u64::from(self.rate) * QUEUE_MS / 1000) as usize
    }

    fn samples_to_time(&self, pos: u64) -> gst::ClockTime {
        gst::ClockTime::from_nseconds(
            pos.mul_div_floor(gst::ClockTime::SECOND.nseconds(), u64::from(self.rate))
                .unwrap_or(u64::MAX),
        )
    }

    fn frame_duration(&self) -> gst::ClockTime {
        gst::ClockTime::from_mseconds(self.settings.frame_ms.into())
    }

    /// Rebuilds the conference from the settings, the pads and the stored relationships:
    /// after a rate or property change, between two frames. Talk detection starts afresh.
    fn rebuild(&mut self) -> Result<(), mixminus_core::Error> {
        let config = self.settings.config(self.rate);
        let mut conf = Conference::new(config.clone())?;
        for pair in &mut self.pairs {
            pair.id = conf.join(pair.sinkpad.settings().join_options())?;
        }
        self.conf = conf;
        self.apply_relations(None);
        while self.conf.poll_event().is_some() {}
        self.frame = config.frame_samples();
        self.scratch = vec![0; self.frame];
        for pool in self.pools.iter_mut().filter_map(Option::take) {
            // A pool with buffers still downstream frees them when they come back.
            let _ = pool.set_active(false);
        }
        let capacity = self.queue_capacity();
        for pair in &mut self.pairs {
            if pair.queue.capacity() != capacity {
                pair.queue = InputQueue::new(capacity);
            }
        }
        Ok(())
    }

    /// Hands the stored records whose two pads exist to the conference; with `only`, just
    /// those naming that pad pair.
    fn apply_relations(&mut self, only: Option<u32>) {
        for (&(p, o), &rel) in &self.relations {
            if only.is_some_and(|i| i != p && i != o) {
                continue;
            }
            let id = |i| self.pairs.iter().find(|x| x.index == i).map(|x| x.id);
            if let (Some(p), Some(o)) = (id(p), id(o)) {
                // Both exist and differ (records never relate a pad to itself).
                let _ = self.conf.relate(&[p], &[o], rel);
            }
        }
    }

    fn name_of(&self, id: Option<ParticipantId>) -> Option<&str> {
        let id = id?;
        self.pairs.iter().find(|p| p.id == id).map(|p| p.name.as_str())
    }

    fn caps(&self, format: Option<Format>) -> gst::Caps {
        let builder = gst::Caps::builder("audio/x-raw")
            .field("layout", "interleaved")
            .field("rate", self.rate as i32)
            .field("channels", 1i32);
        match format {
            Some(f) => builder.field("format", f.name()).build(),
            None => builder.field("format", gst::List::new(["S16LE", "F32LE"])).build(),
        }
    }

    fn pool(&mut self, format: Format) -> Option<gst::BufferPool> {
        let slot = match format {
            Format::S16 => 0,
            Format::F32 => 1,
        };
        if self.pools[slot].is_none() {
            let pool = gst::BufferPool::new();
            let mut config = pool.config();
            config.set_params(
                Some(&self.caps(Some(format))),
                (self.frame * format.bytes()) as u32,
                0,
                0,
            );
            pool.set_config(config).ok()?;
            pool.set_active(true).ok()?;
            self.pools[slot] = Some(pool);
        }
        self.pools[slot].clone()
    }

    /// Wakes the mixing thread whether it waits on the condition variable or the clock.
    fn wake_clock(&self) {
        if self.clock_waiting {
            if let Some((_, id)) = &self.clock_id {
                id.unschedule();
            }
        }
    }
}

/// What the mixing thread does next.
enum Next {
    Produce(u64),
    Eos,
    WaitData,
    WaitClock(gst::Clock, gst::ClockTime),
}

pub struct MixMinus {
    state: Mutex<State>,
    /// The mixing thread waits here for input (chains notify it).
    mixer_cond: Condvar,
    /// Chains wait here for queue space (the mixing thread notifies them after a frame).
    space_cond: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Default for MixMinus {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::new()),
            mixer_cond: Condvar::new(),
            space_cond: Condvar::new(),
            thread: Mutex::new(None),
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for MixMinus {
    const NAME: &'static str = "GstMixMinus";
    type Type = super::MixMinus;
    type ParentType = gst::Element;
    type Interfaces = (gst::ChildProxy,);
}

impl MixMinus {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic inside the lock is a bug that GStreamer already reports as an error; the
        // state stays consistent enough to stop the element.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The mixing thread: waits for input to arrive.
    fn wait_input<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.mixer_cond.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    /// A chain function: waits for room in its queue.
    fn wait_space<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.space_cond.wait(guard).unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes everyone waiting: for flushing, stopping and pads going away.
    fn wake_all(&self, state: &State) {
        state.wake_clock();
        self.mixer_cond.notify_all();
        self.space_cond.notify_all();
    }

    /// Wakes the mixing thread: new input, EOS, a new pad.
    fn wake_mixer(&self, state: &State) {
        state.wake_clock();
        self.mixer_cond.notify_one();
    }

    pub(super) fn apply_pad_settings(&self, pad: &MixMinusSinkPad) {
        let s = pad.settings();
        let mut state = self.state();
        let Some(id) = state.pairs.iter().find(|p| &p.sinkpad == pad).map(|p| p.id) else {
            return;
        };
        let join = s.join_options();
        let conf = &mut state.conf;
        // The participant exists (it is in `pairs`) and gains are clamped into range.
        let _ = conf.set_can_speak(id, !s.mute);
        let _ = conf.set_can_hear(id, !s.deaf);
        let _ = conf.set_input_gain(id, join.input_gain);
        let _ = conf.set_output_gain(id, join.output_gain);
        let _ = conf.set_moderator(id, s.moderator);
    }

    /// `relate(P, O, what)`: the action signal.
    fn relate(&self, p: &str, o: &str, what: &str) -> bool {
        let parsed = (|| {
            Ok::<_, relations::ParseError>((
                relations::pad_index(p)?,
                relations::pad_index(o)?,
                relations::parse_relationship(what)?,
            ))
        })();
        let (pi, oi, rel) = match parsed {
            Ok(v) => v,
            Err(e) => {
                gst::warning!(CAT, imp = self, "relate refused: {e}");
                return false;
            }
        };
        let mut state = self.state();
        let id = |i| state.pairs.iter().find(|x| x.index == i).map(|x| x.id);
        let (Some(pid), Some(oid)) = (id(pi), id(oi)) else {
            gst::warning!(CAT, imp = self, "relate refused: no pad pair named {p} or {o}");
            return false;
        };
        match state.conf.relate(&[pid], &[oid], rel) {
            Ok(()) => {
                if rel.is_clear() {
                    state.relations.remove(&(pi, oi));
                } else {
                    state.relations.insert((pi, oi), rel);
                }
                gst::debug!(CAT, imp = self, "relate({p}, {o}, {what})");
                true
            }
            Err(e) => {
                gst::warning!(CAT, imp = self, "relate refused: {e}");
                false
            }
        }
    }

    // ---- sink pads ---------------------------------------------------------------------

    fn sink_chain(
        &self,
        pad: &MixMinusSinkPad,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        let index = pad.index();
        let mut state = self.state();
        if let Some(err) = state.flow_error {
            return Err(err);
        }
        let rate = u64::from(state.rate);
        let threshold = rate * ALIGNMENT_THRESHOLD_MS / 1000;
        let Some(pair) = state.pair_mut(index) else {
            return Err(gst::FlowError::Flushing);
        };
        let Some(format) = pair.format else {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ["buffer before caps"]);
            return Err(gst::FlowError::NotNegotiated);
        };
        let samples = match format {
            Format::S16 => Samples::S16(&map),
            Format::F32 => Samples::F32(&map),
        };
        let by_time = buffer
            .pts()
            .and_then(|pts| pair.segment.to_running_time(pts))
            .and_then(|rt| rt.nseconds().mul_div_round(rate, gst::ClockTime::SECOND.nseconds()));
        let pos = match (pair.next_pos, by_time) {
            (Some(next), Some(t)) if next.abs_diff(t) < threshold => next,
            (_, Some(t)) => t,
            (Some(next), None) => next,
            // Before the segment, or untimed from the start: nowhere to put it.
            (None, None) => return Ok(gst::FlowSuccess::Ok),
        };
        pair.next_pos = Some(pos + samples.len() as u64);
        self.queue(state, index, pos, samples).map(|()| gst::FlowSuccess::Ok)
    }

    fn queue(
        &self,
        mut state: MutexGuard<'_, State>,
        index: u32,
        pos: u64,
        samples: Samples<'_>,
    ) -> Result<(), gst::FlowError> {
        let total = samples.len();
        let mut done = 0;
        loop {
            if state.flushing {
                return Err(gst::FlowError::Flushing);
            }
            let first = state.out_pos.is_none();
            let out = *state.out_pos.get_or_insert(pos);
            let until = out + state.frame as u64;
            let Some(pair) = state.pair_mut(index) else {
                return Err(gst::FlowError::Flushing);
            };
            if pair.flushing {
                return Err(gst::FlowError::Flushing);
            }
            let was_ready = pair.queue.covers(until);
            done += pair.queue.write(pos + done as u64, out, &samples, done);
            // The mixer waits for each input to cover the frame: wake it only when this
            // input just did (or started the timeline), not for every buffer.
            if first || (!was_ready && pair.queue.covers(until)) {
                self.wake_mixer(&state);
            }
            if done >= total {
                return Ok(());
            }
            state = self.wait_space(state);
        }
    }
}

impl MixMinus {
    fn sink_event(&self, pad: &MixMinusSinkPad, event: gst::Event) -> bool {
        use gst::EventView;
        let index = pad.index();
        match event.view() {
            EventView::Caps(c) => self.set_caps(index, c.caps()),
            EventView::Segment(s) => {
                let Ok(segment) = s.segment().clone().downcast::<gst::ClockTime>() else {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        ["need a TIME segment"]
                    );
                    return false;
                };
                let mut state = self.state();
                if let Some(pair) = state.pair_mut(index) {
                    pair.segment = segment;
                }
                true
            }
            EventView::Gap(g) => {
                let (ts, duration) = g.get();
                let mut state = self.state();
                let rate = u64::from(state.rate);
                let Some(pair) = state.pair_mut(index) else { return false };
                let Some(rt) = pair.segment.to_running_time(ts) else { return true };
                let to_samples = |t: gst::ClockTime| {
                    t.nseconds().mul_div_round(rate, gst::ClockTime::SECOND.nseconds())
                };
                let (Some(pos), Some(n)) = (to_samples(rt), duration.and_then(to_samples)) else {
                    return true;
                };
                pair.next_pos = Some(pos + n);
                self.queue(state, index, pos, Samples::Silence(n as usize)).is_ok()
            }
            EventView::Eos(_) => {
                let mut state = self.state();
                if let Some(pair) = state.pair_mut(index) {
                    pair.eos = true;
                }
                self.wake_mixer(&state);
                true
            }
            EventView::FlushStart(_) => {
                let srcpad = {
                    let mut state = self.state();
                    let Some(pair) = state.pair_mut(index) else { return false };
                    pair.flushing = true;
                    let srcpad = pair.srcpad.clone();
                    self.wake_all(&state);
                    srcpad
                };
                srcpad.push_event(event)
            }
            EventView::FlushStop(_) => {
                let srcpad = {
                    let mut state = self.state();
                    let Some(pair) = state.pair_mut(index) else { return false };
                    pair.flushing = false;
                    pair.eos = false;
                    pair.queue.clear();
                    pair.next_pos = None;
                    pair.segment = gst::FormattedSegment::new();
                    pair.segment_due = true;
                    let srcpad = pair.srcpad.clone();
                    state.eos_sent = false;
                    srcpad
                };
                srcpad.push_event(event)
            }
            EventView::StreamStart(_) => {
                // Each src pad starts its own stream; upstream may have changed: re-query.
                self.state().latency_dirty = true;
                true
            }
            _ if event.is_serialized() => true,
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    fn set_caps(&self, index: u32, caps: &gst::CapsRef) -> bool {
        let Ok(info) = gst_audio::AudioInfo::from_caps(caps) else { return false };
        let format = match info.format() {
            gst_audio::AudioFormat::S16le => Format::S16,
            gst_audio::AudioFormat::F32le => Format::F32,
            _ => return false,
        };
        if info.channels() != 1 || SampleRate::from_hz(info.rate()).is_err() {
            return false;
        }
        let mut state = self.state();
        if state.rate_fixed && state.rate != info.rate() {
            gst::warning!(
                CAT,
                imp = self,
                "sink_{index}: {} Hz refused, the conference runs at {} Hz",
                info.rate(),
                state.rate
            );
            return false;
        }
        if !state.rate_fixed {
            state.rate_fixed = true;
            if state.rate != info.rate() {
                state.rate = info.rate();
                if let Err(e) = state.rebuild() {
                    gst::error!(CAT, imp = self, "rebuilding the conference: {e}");
                    return false;
                }
            }
        }
        let Some(pair) = state.pair_mut(index) else { return false };
        if pair.format != Some(format) {
            pair.format = Some(format);
            pair.caps_due = true;
        }
        state.latency_dirty = true;
        true
    }

    fn sink_query(&self, pad: &MixMinusSinkPad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Caps(q) => {
                let state = self.state();
                let caps =
                    if state.rate_fixed { state.caps(None) } else { pad.pad_template_caps() };
                drop(state);
                let caps = match q.filter() {
                    Some(f) => f.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
                    None => caps,
                };
                q.set_result(&caps);
                true
            }
            gst::QueryViewMut::AcceptCaps(q) => {
                let ok = {
                    let state = self.state();
                    let caps =
                        if state.rate_fixed { state.caps(None) } else { pad.pad_template_caps() };
                    q.caps().is_subset(&caps)
                };
                q.set_result(ok);
                true
            }
            gst::QueryViewMut::Allocation(_) => false,
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    // ---- src pads ----------------------------------------------------------------------

    fn src_event(&self, _pad: &gst::Pad, event: gst::Event) -> bool {
        match event.view() {
            // The element mixes live conversations: no input is seekable through it.
            gst::EventView::Seek(_) => false,
            _ => true,
        }
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Latency(q) => {
                let (live, min, max) = self.query_upstream_latency();
                let state = self.state();
                let ours = state.frame_duration() + state.settings.latency;
                q.set(live, min + ours, max.map(|m| m + ours));
                true
            }
            gst::QueryViewMut::Caps(q) => {
                let state = self.state();
                let format = state.pairs.iter().find(|p| &p.srcpad == pad).and_then(|p| p.format);
                let caps = if state.rate_fixed || format.is_some() {
                    state.caps(format)
                } else {
                    pad.pad_template_caps()
                };
                drop(state);
                let caps = match q.filter() {
                    Some(f) => f.intersect_with_mode(&caps, gst::CapsIntersectMode::First),
                    None => caps,
                };
                q.set_result(&caps);
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    /// Asks every input's upstream for its latency: live when any is live; the largest
    /// minimum; the smallest maximum. Stores the answer for the mixing thread's deadlines.
    fn query_upstream_latency(&self) -> (bool, gst::ClockTime, Option<gst::ClockTime>) {
        let pads: Vec<MixMinusSinkPad> =
            self.state().pairs.iter().map(|p| p.sinkpad.clone()).collect();
        let (mut live, mut min, mut max) = (false, gst::ClockTime::ZERO, None);
        for pad in pads {
            let mut q = gst::query::Latency::new();
            if pad.peer_query(&mut q) {
                let (l, lmin, lmax) = q.result();
                if l {
                    live = true;
                    min = min.max(lmin);
                    max = match (max, lmax) {
                        (Some(a), Some(b)) => Some(std::cmp::min(a, b)),
                        (a, b) => a.or(b),
                    };
                }
            }
        }
        let mut state = self.state();
        state.live = live;
        state.upstream_latency = min;
        state.upstream_max_latency = max;
        (live, min, max)
    }
}

impl MixMinus {
    // ---- the mixing thread -------------------------------------------------------------

    fn next(&self, state: &State) -> Next {
        let Some(pos) = state.out_pos else { return Next::WaitData };
        let until = pos + state.frame as u64;
        let (mut waiting, mut ready, mut queued, mut eos) = (0, 0, false, false);
        for p in &state.pairs {
            queued |= p.queue.covers(pos + 1);
            if p.eos {
                eos = true;
                continue;
            }
            // An input with nothing upstream is not waited for.
            if !p.sinkpad.is_linked() {
                continue;
            }
            waiting += 1;
            ready += usize::from(p.queue.covers(until));
        }
        if waiting == 0 {
            return if queued {
                Next::Produce(pos)
            } else if eos && !state.eos_sent {
                Next::Eos
            } else {
                Next::WaitData
            };
        }
        if ready == waiting {
            return Next::Produce(pos);
        }
        if !state.live {
            return Next::WaitData;
        }
        let obj = self.obj();
        let (Some(clock), Some(base)) = (obj.clock(), obj.base_time()) else {
            return Next::WaitData;
        };
        let deadline =
            base + state.samples_to_time(until) + state.upstream_latency + state.settings.latency;
        if clock.time().is_some_and(|now| now >= deadline) {
            Next::Produce(pos)
        } else {
            Next::WaitClock(clock, deadline)
        }
    }

    fn run(&self) {
        let mut pushes: Vec<Push> = Vec::new();
        let mut messages: Vec<gst::Message> = Vec::new();
        let mut state = self.state();
        while state.running {
            if state.latency_dirty {
                state.latency_dirty = false;
                drop(state);
                self.query_upstream_latency();
                state = self.state();
                continue;
            }
            match self.next(&state) {
                Next::Produce(pos) => self.produce(&mut state, pos, &mut pushes, &mut messages),
                Next::Eos => {
                    state.eos_sent = true;
                    let pads: Vec<gst::Pad> =
                        state.pairs.iter().map(|p| p.srcpad.clone()).collect();
                    drop(state);
                    for pad in pads {
                        pad.push_event(gst::event::Eos::new());
                    }
                    state = self.state();
                    continue;
                }
                Next::WaitData => {
                    state = self.wait_input(state);
                    continue;
                }
                Next::WaitClock(clock, deadline) => {
                    // Reused frame after frame; a new one only when the clock changes.
                    let id = match state.clock_id.take() {
                        Some((c, id))
                            if c == clock && clock.single_shot_id_reinit(&id, deadline).is_ok() =>
                        {
                            id
                        }
                        _ => clock.new_single_shot_id(deadline),
                    };
                    state.clock_id = Some((clock, id.clone()));
                    state.clock_waiting = true;
                    drop(state);
                    let _ = id.wait();
                    state = self.state();
                    state.clock_waiting = false;
                    continue;
                }
            }
            // The frame freed room in every queue.
            self.space_cond.notify_all();
            drop(state);
            let mut failed = None;
            for push in pushes.drain(..) {
                let _lock = push.pad.stream_lock();
                for event in push.events.into_iter().flatten() {
                    push.pad.push_event(event);
                }
                if let Some(buffer) = push.buffer {
                    match push.pad.push(buffer) {
                        Ok(_)
                        | Err(gst::FlowError::NotLinked)
                        | Err(gst::FlowError::Flushing)
                        | Err(gst::FlowError::Eos) => {}
                        Err(e) => failed = Some((e, push.pad.name())),
                    }
                }
            }
            let obj = self.obj();
            for message in messages.drain(..) {
                let _ = obj.post_message(message);
            }
            state = self.state();
            if let Some((err, pad)) = failed {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Failed,
                    ["pushing on {} failed: {:?}", pad, err]
                );
                state.flow_error = Some(err);
                state.running = false;
                self.wake_all(&state);
            }
        }
    }

    /// Builds one output frame for every pair from the frame of input at `pos`.
    fn produce(
        &self,
        state: &mut State,
        pos: u64,
        pushes: &mut Vec<Push>,
        messages: &mut Vec<gst::Message>,
    ) {
        let frame = state.frame;
        {
            let State { pairs, conf, scratch, .. } = &mut *state;
            for pair in pairs.iter_mut() {
                if pair.queue.take(pos, scratch) {
                    // Pair ids are conference members and `scratch` is one frame long.
                    let _ = conf.push_input(pair.id, scratch);
                }
            }
            conf.tick();
        }
        while let Some(event) = state.conf.poll_event() {
            let s = match event {
                Event::TalkingStarted(id) | Event::TalkingStopped(id) => {
                    gst::Structure::builder("mixminus-talking")
                        .field("pad", state.name_of(Some(id)).unwrap_or(""))
                        .field("talking", matches!(event, Event::TalkingStarted(_)))
                        .build()
                }
                Event::FloorChanged { from, to } => gst::Structure::builder("mixminus-floor")
                    .field("from", state.name_of(from).unwrap_or(""))
                    .field("to", state.name_of(to).unwrap_or(""))
                    .build(),
                _ => continue,
            };
            messages.push(gst::message::Element::builder(s).src(&*self.obj()).build());
        }
        let pts = state.samples_to_time(pos);
        let duration = state.samples_to_time(pos + frame as u64) - pts;
        let discont = std::mem::take(&mut state.discont);
        for i in 0..state.pairs.len() {
            let format = state.pairs[i].format.unwrap_or(Format::S16);
            let Some(pool) = state.pool(format) else { continue };
            let caps = state.pairs[i].caps_due.then(|| state.caps(Some(format)));
            let pair = &mut state.pairs[i];
            let Some(out) = state.conf.output(pair.id) else { continue };
            let Ok(mut buffer) = pool.acquire_buffer(None) else { continue };
            {
                // A freshly acquired pool buffer has no other owner.
                let Some(b) = buffer.get_mut() else { continue };
                b.set_pts(pts);
                b.set_duration(duration);
                b.set_offset(pos);
                b.set_offset_end(pos + frame as u64);
                if discont || !pair.started {
                    b.set_flags(gst::BufferFlags::DISCONT);
                }
                let Ok(mut map) = b.map_writable() else { continue };
                write_samples(format, out.pcm, &mut map);
            }
            let mut events = [None, None, None];
            if !pair.started {
                // Unique in the pipeline: element names are unique within their bin.
                let stream_id = format!("{}/{}", self.obj().path_string(), pair.srcpad.name());
                events[0] = Some(
                    gst::event::StreamStart::builder(&stream_id).group_id(state.group_id).build(),
                );
                pair.started = true;
                pair.segment_due = true;
            }
            if let Some(caps) = caps {
                events[1] = Some(gst::event::Caps::new(&caps));
                pair.caps_due = false;
            }
            if std::mem::take(&mut pair.segment_due) {
                events[2] =
                    Some(gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()));
            }
            pushes.push(Push { pad: pair.srcpad.clone(), events, buffer: Some(buffer) });
        }
        state.out_pos = Some(pos + frame as u64);
    }
}

fn write_samples(format: Format, pcm: &[i16], out: &mut [u8]) {
    match format {
        Format::S16 => {
            for (o, s) in out.chunks_exact_mut(2).zip(pcm) {
                o.copy_from_slice(&s.to_le_bytes());
            }
        }
        Format::F32 => {
            for (o, &s) in out.chunks_exact_mut(4).zip(pcm) {
                o.copy_from_slice(&(f32::from(s) / 32_768.0).to_le_bytes());
            }
        }
    }
}

impl ObjectImpl for MixMinus {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            let d = Settings::default();
            vec![
                glib::ParamSpecUInt::builder("frame-duration")
                    .nick("Frame duration")
                    .blurb("Mix frame length in ms: 10, 20, 40 or 60 (other values round to the next)")
                    .minimum(10)
                    .maximum(60)
                    .default_value(d.frame_ms)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("energy-threshold")
                    .nick("Energy threshold")
                    .blurb("Talk gate: mean |sample| (0..32768) at or above which a frame is speech; 0 = gate off, every input is mixed")
                    .maximum(32_768)
                    .default_value(d.energy_threshold)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("attack-frames")
                    .nick("Attack frames")
                    .blurb("Frames at or above the threshold before an input counts as talking")
                    .minimum(1)
                    .maximum(u16::MAX.into())
                    .default_value(d.attack_frames)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("hangover-frames")
                    .nick("Hangover frames")
                    .blurb("Frames below the threshold before an input stops talking")
                    .minimum(1)
                    .maximum(u16::MAX.into())
                    .default_value(d.hangover_frames)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("max-active-speakers")
                    .nick("Max active speakers")
                    .blurb("Mix only the N loudest talkers; 0 = no limit")
                    .default_value(d.max_active_speakers)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("latency")
                    .nick("Latency")
                    .blurb("Live pipelines: extra time (ns) to wait for a late input before its frame is mixed as silence")
                    .maximum(10 * gst::ClockTime::SECOND.nseconds())
                    .default_value(d.latency.nseconds())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("relationships")
                    .nick("Relationships")
                    .blurb("The relationship matrix: records `P deaf|mute|deaf,mute O` separated by `;` (deaf: P stops hearing O; mute: O stops hearing P); pads are sink_N or src_N; writing replaces all records, and records naming pads not yet requested wait for them")
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            vec![glib::subclass::Signal::builder("relate")
                .param_types([String::static_type(), String::static_type(), String::static_type()])
                .return_type::<bool>()
                .action()
                .class_handler(|_, args| {
                    let element = args[0].get::<super::MixMinus>().ok()?;
                    let arg = |i: usize| args[i].get::<Option<String>>().ok().flatten();
                    let ok = match (arg(1), arg(2), arg(3)) {
                        (Some(p), Some(o), Some(what)) => element.imp().relate(&p, &o, &what),
                        _ => false,
                    };
                    Some(ok.to_value())
                })
                .build()]
        });
        SIGNALS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut state = self.state();
        let mut settings = state.settings;
        // GObject checked each value's type against its param spec.
        match pspec.name() {
            "frame-duration" => {
                let ms = value.get::<u32>().unwrap_or(DEFAULT_FRAME_MS);
                settings.frame_ms = [10, 20, 40, 60].into_iter().find(|&m| m >= ms).unwrap_or(60);
            }
            "energy-threshold" => settings.energy_threshold = value.get().unwrap_or(0),
            "attack-frames" => settings.attack_frames = value.get().unwrap_or(1),
            "hangover-frames" => settings.hangover_frames = value.get().unwrap_or(1),
            "max-active-speakers" => settings.max_active_speakers = value.get().unwrap_or(0),
            "latency" => {
                settings.latency = gst::ClockTime::from_nseconds(value.get().unwrap_or(0));
            }
            "relationships" => {
                let text = value.get::<Option<String>>().ok().flatten().unwrap_or_default();
                match relations::parse(&text) {
                    Ok(records) => {
                        state.relations = records;
                        if let Err(e) = state.rebuild() {
                            gst::error!(CAT, imp = self, "rebuilding the conference: {e}");
                        }
                    }
                    Err(e) => gst::warning!(CAT, imp = self, "relationships refused: {e}"),
                }
                return;
            }
            _ => return,
        }
        if settings != state.settings {
            state.settings = settings;
            if let Err(e) = state.rebuild() {
                gst::error!(CAT, imp = self, "rebuilding the conference: {e}");
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let state = self.state();
        let s = &state.settings;
        match pspec.name() {
            "frame-duration" => s.frame_ms.to_value(),
            "energy-threshold" => s.energy_threshold.to_value(),
            "attack-frames" => s.attack_frames.to_value(),
            "hangover-frames" => s.hangover_frames.to_value(),
            "max-active-speakers" => s.max_active_speakers.to_value(),
            "latency" => s.latency.nseconds().to_value(),
            "relationships" => relations::format(&state.relations).to_value(),
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }
}

impl GstObjectImpl for MixMinus {}

/// The sink pads are the element's children, so `gst-launch-1.0 mixminus sink_1::mute=true`
/// sets a pad property (gst-launch waits for `child-added` when the pad comes later).
impl ChildProxyImpl for MixMinus {
    fn child_by_index(&self, index: u32) -> Option<glib::Object> {
        self.obj().sink_pads().into_iter().nth(index as usize).map(|p| p.upcast())
    }

    fn children_count(&self) -> u32 {
        self.obj().num_sink_pads() as u32
    }

    fn child_by_name(&self, name: &str) -> Option<glib::Object> {
        self.obj()
            .static_pad(name)
            .filter(|p| p.direction() == gst::PadDirection::Sink)
            .map(|p| p.upcast())
    }
}

impl ElementImpl for MixMinus {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Mix-minus conference mixer",
                "Filter/Audio/Mixer",
                "Every sink_N gets its own mix on src_N: the mix of every other input (mix-minus), \
                 less what the relationship matrix removes (relate P deaf O: P stops hearing O; \
                 relate P mute O: O stops hearing P). Mono S16LE/F32LE at 8, 16, 24 or 48 kHz; \
                 inputs aligned by running time, a late input is silence for its frame. \
                 Put a queue after each src pad.",
                "mixminus developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst::Caps::builder("audio/x-raw")
                .field("format", gst::List::new(["S16LE", "F32LE"]))
                .field("layout", "interleaved")
                .field("rate", gst::List::new(RATES))
                .field("channels", 1i32)
                .build();
            vec![
                gst::PadTemplate::with_gtype(
                    "sink_%u",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Request,
                    &caps,
                    MixMinusSinkPad::static_type(),
                )
                .expect("sink pad template"),
                gst::PadTemplate::new(
                    "src_%u",
                    gst::PadDirection::Src,
                    gst::PadPresence::Sometimes,
                    &caps,
                )
                .expect("src pad template"),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        match transition {
            gst::StateChange::ReadyToPaused => {
                let mut state = self.state();
                state.running = true;
                state.flushing = false;
                state.out_pos = None;
                state.discont = true;
                state.eos_sent = false;
                state.flow_error = None;
                state.latency_dirty = true;
                for pair in &mut state.pairs {
                    pair.queue.clear();
                    pair.next_pos = None;
                    pair.eos = false;
                    pair.flushing = false;
                    pair.started = false;
                    pair.caps_due = true;
                    pair.segment = gst::FormattedSegment::new();
                }
            }
            gst::StateChange::PausedToReady => {
                let mut state = self.state();
                state.running = false;
                state.flushing = true;
                self.wake_all(&state);
            }
            _ => {}
        }
        let result = self.parent_change_state(transition)?;
        match transition {
            gst::StateChange::ReadyToPaused => {
                let element = self.obj().clone();
                let handle = std::thread::Builder::new()
                    .name(format!("{}:mix", element.name()))
                    .spawn(move || element.imp().run())
                    .map_err(|_| gst::StateChangeError)?;
                *self.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
            }
            gst::StateChange::PausedToReady => {
                let handle = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
                if let Some(handle) = handle {
                    let _ = handle.join();
                }
                let mut state = self.state();
                for pool in state.pools.iter_mut().filter_map(Option::take) {
                    let _ = pool.set_active(false);
                }
                if state.pairs.is_empty() {
                    state.rate_fixed = false;
                }
            }
            _ => {}
        }
        Ok(result)
    }

    fn request_new_pad(
        &self,
        templ: &gst::PadTemplate,
        name: Option<&str>,
        _caps: Option<&gst::Caps>,
    ) -> Option<gst::Pad> {
        if templ.direction() != gst::PadDirection::Sink {
            return None;
        }
        let mut state = self.state();
        let index = match name {
            Some(n) if n.starts_with("sink_") => relations::pad_index(n).ok()?,
            Some(_) => return None,
            None => state.next_index,
        };
        if state.pairs.iter().any(|p| p.index == index) {
            gst::warning!(CAT, imp = self, "sink_{index} exists already");
            return None;
        }
        let sinkpad = gst::PadBuilder::<MixMinusSinkPad>::from_template(templ)
            .name(format!("sink_{index}"))
            .chain_function(|pad, parent, buffer| {
                MixMinus::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |imp| imp.sink_chain(pad, buffer),
                )
            })
            .event_function(|pad, parent, event| {
                MixMinus::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                MixMinus::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.sink_query(pad, query),
                )
            })
            .build();
        sinkpad.set_index(index);
        let src_templ = self.obj().class().pad_template("src_%u")?;
        let srcpad = gst::Pad::builder_from_template(&src_templ)
            .name(format!("src_{index}"))
            .event_function(|pad, parent, event| {
                MixMinus::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                MixMinus::catch_panic_pad_function(
                    parent,
                    || false,
                    |imp| imp.src_query(pad, query),
                )
            })
            .build();
        let id = match state.conf.join(sinkpad.settings().join_options()) {
            Ok(id) => id,
            Err(e) => {
                gst::warning!(CAT, imp = self, "sink_{index} refused: {e}");
                return None;
            }
        };
        let capacity = state.queue_capacity();
        state.next_index = state.next_index.max(index + 1);
        state.pairs.push(Pair {
            index,
            name: format!("sink_{index}"),
            sinkpad: sinkpad.clone(),
            srcpad: srcpad.clone(),
            id,
            format: None,
            segment: gst::FormattedSegment::new(),
            queue: InputQueue::new(capacity),
            next_pos: None,
            eos: false,
            flushing: false,
            started: false,
            caps_due: true,
            segment_due: true,
        });
        state.apply_relations(Some(index));
        state.latency_dirty = true;
        self.wake_mixer(&state);
        drop(state);
        // Adding a pad to a PAUSED or PLAYING element activates it.
        let obj = self.obj();
        obj.add_pad(&sinkpad).ok()?;
        obj.add_pad(&srcpad).ok()?;
        obj.child_added(sinkpad.upcast_ref::<glib::Object>(), &sinkpad.name());
        Some(sinkpad.upcast())
    }

    fn release_pad(&self, pad: &gst::Pad) {
        let Ok(index) = relations::pad_index(&pad.name()) else { return };
        let mut state = self.state();
        let Some(at) = state.pairs.iter().position(|p| p.index == index) else { return };
        let pair = state.pairs.remove(at);
        // It is a member: it was joined with its pair.
        let _ = state.conf.leave(pair.id);
        state.relations.retain(|&(p, o), _| p != index && o != index);
        if state.pairs.is_empty() {
            state.out_pos = None;
            state.eos_sent = false;
            if !state.running {
                state.rate_fixed = false;
            }
        }
        self.wake_all(&state);
        drop(state);
        let obj = self.obj();
        let _ = pair.sinkpad.set_active(false);
        let _ = pair.srcpad.set_active(false);
        let _ = obj.remove_pad(&pair.sinkpad);
        let _ = obj.remove_pad(&pair.srcpad);
        obj.child_removed(pair.sinkpad.upcast_ref::<glib::Object>(), &pair.name);
    }
}
