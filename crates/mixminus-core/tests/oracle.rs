//! The mixer against the naive per-listener reference, sample for sample.
//!
//! proptest drives random conferences (1–64 participants, flags, gains, thresholds, top-N)
//! through random sequences of join / leave / relate / mute / deafen / gain changes and
//! ticks with random frames (full scale included). After every tick each listener's output
//! must equal [`NaiveMixer`]'s, which sums exactly the sources the listener may hear and
//! applies the same limiter. Talk detection is modelled independently here, so the oracle
//! does not trust the mixer's own idea of who is active.
//!
//! Group sharing is checked both ways: two listeners share a group exactly when they must
//! hear the same thing (same audible sources and output gain), and everyone who must hear
//! nothing is on the silence group.

use std::collections::{BTreeSet, HashMap};

use mixminus_core::reference::{NaiveMixer, NaiveParticipant};
use mixminus_core::{
    Conference, ConferenceConfig, FrameDuration, Gain, GroupId, JoinOptions, ParticipantId,
    Relationship, SampleRate, TalkConfig,
};
use proptest::prelude::*;

// ---- the generated scenario ------------------------------------------------------------

#[derive(Debug, Clone)]
struct Scenario {
    rate: SampleRate,
    frame: FrameDuration,
    talk: TalkConfig,
    max_active_speakers: usize,
    onset_fade_samples: usize,
    initial: Vec<JoinSpec>,
    ops: Vec<Op>,
}

#[derive(Debug, Clone, Copy)]
struct JoinSpec {
    muted: bool,
    deaf: bool,
    input_gain: Gain,
    output_gain: Gain,
    threshold: Option<u32>,
}

/// Participants are named by an index into every id ever handed out plus one id never
/// handed out, so operations on departed and unknown participants are exercised too.
#[derive(Debug, Clone)]
enum Op {
    Join(JoinSpec),
    Leave(usize),
    Relate(Vec<usize>, Vec<usize>, Relationship),
    SetSpeak(usize, bool),
    SetHear(usize, bool),
    InputGain(usize, Gain),
    OutputGain(usize, Gain),
    Tick(Vec<Frame>),
}

/// What one participant sends in a tick (cycled over participants by position).
#[derive(Debug, Clone, Copy)]
enum Frame {
    Nothing,
    Constant(i16),
    /// Alternating `i16::MAX` / `i16::MIN`: the limiter's worst case.
    FullScale,
    /// Full-range pseudo-random samples.
    Noise(u64),
    /// Below the default threshold.
    Quiet(u64),
}

fn gain() -> impl Strategy<Value = Gain> {
    prop_oneof![
        4 => Just(Gain::UNITY),
        1 => Just(Gain::MUTE),
        1 => Just(Gain::MAX),
        2 => (-4i8..=4).prop_map(|l| Gain::from_level(l).unwrap()),
        1 => (0u16..=16384).prop_map(|q| Gain::from_q12(q).unwrap()),
    ]
}

fn join_spec() -> impl Strategy<Value = JoinSpec> {
    (
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
        gain(),
        gain(),
        prop_oneof![6 => Just(None), 1 => Just(Some(0)), 1 => (1u32..2000).prop_map(Some)],
    )
        .prop_map(|(muted, deaf, input_gain, output_gain, threshold)| JoinSpec {
            muted,
            deaf,
            input_gain,
            output_gain,
            threshold,
        })
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        2 => Just(Frame::Nothing),
        2 => any::<i16>().prop_map(Frame::Constant),
        1 => Just(Frame::FullScale),
        3 => any::<u64>().prop_map(Frame::Noise),
        1 => any::<u64>().prop_map(Frame::Quiet),
    ]
}

fn relationship() -> impl Strategy<Value = Relationship> {
    prop_oneof![
        Just(Relationship::DEAF),
        Just(Relationship::MUTE),
        Just(Relationship { deaf: true, mute: true }),
        Just(Relationship::CLEAR),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let who = || 0usize..1000;
    let list = || prop::collection::vec(0usize..1000, 0..4);
    prop_oneof![
        2 => join_spec().prop_map(Op::Join),
        1 => who().prop_map(Op::Leave),
        5 => (list(), list(), relationship()).prop_map(|(p, o, r)| Op::Relate(p, o, r)),
        1 => (who(), any::<bool>()).prop_map(|(w, b)| Op::SetSpeak(w, b)),
        1 => (who(), any::<bool>()).prop_map(|(w, b)| Op::SetHear(w, b)),
        1 => (who(), gain()).prop_map(|(w, g)| Op::InputGain(w, g)),
        1 => (who(), gain()).prop_map(|(w, g)| Op::OutputGain(w, g)),
        6 => prop::collection::vec(frame(), 1..8).prop_map(Op::Tick),
    ]
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        prop_oneof![Just(SampleRate::Hz8000), Just(SampleRate::Hz16000)],
        prop_oneof![Just(FrameDuration::Ms10), Just(FrameDuration::Ms20)],
        prop_oneof![Just(0u32), Just(100), 1u32..3000],
        (1u16..4, 1u16..4, 1u16..4),
        prop_oneof![2 => Just(0usize), 1 => 1usize..4],
        // Up to the shortest frame (8 kHz, 10 ms).
        prop_oneof![Just(0usize), 1usize..=80],
        prop::collection::vec(join_spec(), 1..=64),
        prop::collection::vec(op(), 1..40),
    )
        .prop_map(
            |(rate, frame, threshold, (attack, onset, hangover), top, fade, initial, ops)| {
                Scenario {
                    rate,
                    frame,
                    talk: TalkConfig {
                        energy_threshold: threshold,
                        attack_frames: attack,
                        onset_frames: onset.min(attack),
                        hangover_frames: hangover,
                    },
                    max_active_speakers: top,
                    onset_fade_samples: fade,
                    initial,
                    ops,
                }
            },
        )
}

// ---- the independent model -------------------------------------------------------------

/// Talk detection as DESIGN.md states it, written out again from the spec: talking after
/// the attack, mixed from the onset, released after the hangover (or after the attack's
/// length for an onset that never became talking).
#[derive(Debug, Clone, Default)]
struct ModelTalk {
    talking: bool,
    mixing: bool,
    above: u32,
    below: u32,
    /// Mixed in the previous tick.
    was_active: bool,
}

#[derive(Debug, Clone)]
struct ModelParticipant {
    id: ParticipantId,
    spec: JoinSpec,
    talk: ModelTalk,
}

struct Harness {
    conf: Conference,
    talk: TalkConfig,
    max_active: usize,
    onset_fade_samples: usize,
    frame_samples: usize,
    /// Every id ever handed out, in order; departed ones stay so ops can name them.
    ever: Vec<ParticipantId>,
    live: Vec<ModelParticipant>,
    relationships: HashMap<(ParticipantId, ParticipantId), Relationship>,
    ticks: usize,
}

impl Harness {
    fn new(s: &Scenario) -> Self {
        let config = ConferenceConfig {
            sample_rate: s.rate,
            frame: s.frame,
            talk: s.talk,
            max_active_speakers: s.max_active_speakers,
            onset_fade_samples: s.onset_fade_samples,
            ..Default::default()
        };
        let conf = Conference::new(config).unwrap();
        let frame_samples = conf.frame_samples();
        let mut h = Harness {
            conf,
            talk: s.talk,
            max_active: s.max_active_speakers,
            onset_fade_samples: s.onset_fade_samples,
            frame_samples,
            ever: Vec::new(),
            live: Vec::new(),
            relationships: HashMap::new(),
            ticks: 0,
        };
        for spec in &s.initial {
            h.join(*spec);
        }
        h
    }

    /// An id by position among every id ever handed out, or one never handed out.
    fn pick(&self, i: usize) -> ParticipantId {
        let n = self.ever.len() + 1;
        match self.ever.get(i % n) {
            Some(&id) => id,
            // Ids count up from 1 and are never reused, so this one does not exist.
            None => ParticipantId::new(u32::MAX),
        }
    }

    fn is_live(&self, id: ParticipantId) -> bool {
        self.live.iter().any(|p| p.id == id)
    }

    fn model_mut(&mut self, id: ParticipantId) -> Option<&mut ModelParticipant> {
        self.live.iter_mut().find(|p| p.id == id)
    }

    fn join(&mut self, spec: JoinSpec) {
        let id = self
            .conf
            .join(JoinOptions {
                muted: Some(spec.muted),
                deaf: Some(spec.deaf),
                input_gain: spec.input_gain,
                output_gain: spec.output_gain,
                energy_threshold: spec.threshold,
                ..Default::default()
            })
            .unwrap();
        assert!(!self.ever.contains(&id), "id {id:?} reused");
        self.ever.push(id);
        self.live.push(ModelParticipant { id, spec, talk: ModelTalk::default() });
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Join(spec) => self.join(*spec),
            Op::Leave(i) => {
                let id = self.pick(*i);
                let result = self.conf.leave(id);
                prop_assert_eq!(result.is_ok(), self.is_live(id));
                self.live.retain(|p| p.id != id);
                self.relationships.retain(|&(p, o), _| p != id && o != id);
            }
            Op::Relate(ps, os, rel) => {
                let ps: Vec<_> = ps.iter().map(|&i| self.pick(i)).collect();
                let os: Vec<_> = os.iter().map(|&i| self.pick(i)).collect();
                let valid = !ps.is_empty()
                    && !os.is_empty()
                    && ps.iter().chain(&os).all(|&id| self.is_live(id))
                    && ps.iter().all(|p| !os.contains(p));
                let before = self.conf.relationships();
                let result = self.conf.relate(&ps, &os, *rel);
                prop_assert_eq!(result.is_ok(), valid, "relate {:?} {:?} {:?}", ps, os, rel);
                if valid {
                    for &p in &ps {
                        for &o in &os {
                            if *rel == Relationship::CLEAR {
                                self.relationships.remove(&(p, o));
                            } else {
                                self.relationships.insert((p, o), *rel);
                            }
                        }
                    }
                } else {
                    prop_assert_eq!(
                        before,
                        self.conf.relationships(),
                        "rejected relate changed state"
                    );
                }
            }
            Op::SetSpeak(i, b) => {
                let id = self.pick(*i);
                prop_assert_eq!(self.conf.set_can_speak(id, *b).is_ok(), self.is_live(id));
                if let Some(p) = self.model_mut(id) {
                    p.spec.muted = !b;
                }
            }
            Op::SetHear(i, b) => {
                let id = self.pick(*i);
                prop_assert_eq!(self.conf.set_can_hear(id, *b).is_ok(), self.is_live(id));
                if let Some(p) = self.model_mut(id) {
                    p.spec.deaf = !b;
                }
            }
            Op::InputGain(i, g) => {
                let id = self.pick(*i);
                prop_assert_eq!(self.conf.set_input_gain(id, *g).is_ok(), self.is_live(id));
                if let Some(p) = self.model_mut(id) {
                    p.spec.input_gain = *g;
                }
            }
            Op::OutputGain(i, g) => {
                let id = self.pick(*i);
                prop_assert_eq!(self.conf.set_output_gain(id, *g).is_ok(), self.is_live(id));
                if let Some(p) = self.model_mut(id) {
                    p.spec.output_gain = *g;
                }
            }
            Op::Tick(frames) => self.tick(frames)?,
        }
        self.check_matrix()
    }

    fn check_matrix(&self) -> Result<(), TestCaseError> {
        let mut expected: Vec<_> =
            self.relationships.iter().map(|(&(p, o), &r)| (p, o, r)).collect();
        expected.sort_by_key(|&(p, o, _)| (p, o));
        prop_assert_eq!(self.conf.relationships(), expected);
        prop_assert_eq!(self.conf.relationship_count(), self.relationships.len());
        Ok(())
    }

    fn tick(&mut self, frames: &[Frame]) -> Result<(), TestCaseError> {
        self.ticks += 1;
        let n = self.frame_samples;
        let mut inputs: Vec<Option<Vec<i16>>> = Vec::with_capacity(self.live.len());
        for (k, p) in self.live.iter().enumerate() {
            let samples = render(frames[k % frames.len()], n, k as u64 + self.ticks as u64);
            if let Some(samples) = &samples {
                self.conf.push_input(p.id, samples).unwrap();
            }
            inputs.push(samples);
        }
        self.conf.tick();

        // The model's talk detection and top-N selection.
        let talk = self.talk;
        let mut candidates = Vec::new();
        for (p, input) in self.live.iter_mut().zip(&inputs) {
            let energy = input.as_ref().map(|f| mixminus_core::frame_energy(f));
            let threshold = p.spec.threshold.unwrap_or(talk.energy_threshold);
            let t = &mut p.talk;
            if threshold == 0 {
                t.talking = energy.is_some();
                t.mixing = t.talking;
            } else if energy.is_some_and(|e| e >= threshold) {
                t.below = 0;
                t.above += 1;
                t.talking |= t.above >= u32::from(talk.attack_frames);
                t.mixing |= t.above >= u32::from(talk.onset_frames);
            } else {
                t.above = 0;
                t.below += 1;
                t.talking &= t.below < u32::from(talk.hangover_frames);
                let release = if t.talking { talk.hangover_frames } else { talk.attack_frames };
                t.mixing &= t.below < u32::from(release.min(talk.hangover_frames));
            }
            if t.mixing && !p.spec.muted && input.is_some() {
                candidates.push((std::cmp::Reverse(energy.unwrap_or(0)), p.id, t.talking));
            }
        }
        candidates.sort();
        if self.max_active > 0 {
            candidates.truncate(self.max_active);
        }
        let active: BTreeSet<ParticipantId> = candidates.iter().map(|&(_, id, _)| id).collect();
        // The floor: the loudest mixed source that is talking.
        let floor = candidates.iter().find(|&&(_, _, talking)| talking).map(|&(_, id, _)| id);
        prop_assert_eq!(self.conf.floor(), floor);
        let mut reported: Vec<_> = self.conf.active_talkers().collect();
        reported.sort();
        prop_assert_eq!(reported, active.iter().copied().collect::<Vec<_>>());

        // The reference mix.
        let mut naive = NaiveMixer::new(
            self.live
                .iter()
                .zip(&inputs)
                .map(|(p, input)| NaiveParticipant {
                    id: p.id,
                    can_speak: !p.spec.muted,
                    can_hear: !p.spec.deaf,
                    active: active.contains(&p.id),
                    onset: active.contains(&p.id) && !p.talk.was_active,
                    input_gain: p.spec.input_gain,
                    output_gain: p.spec.output_gain,
                    frame: input.clone().unwrap_or_else(|| vec![0; n]),
                })
                .collect(),
            self.relationships.clone(),
        );
        naive.onset_fade_samples = self.onset_fade_samples;
        naive.mix();
        for p in &mut self.live {
            p.talk.was_active = active.contains(&p.id);
        }

        // What each listener must hear: its audible sources and gain (None = silence).
        let must_hear = |o: &ModelParticipant| -> Option<(BTreeSet<ParticipantId>, Gain)> {
            let rel = |p, q| self.relationships.get(&(p, q)).copied().unwrap_or_default();
            let heard: BTreeSet<_> = active
                .iter()
                .copied()
                .filter(|&s| s != o.id && !rel(o.id, s).deaf && !rel(s, o.id).mute)
                .collect();
            let silent = o.spec.deaf || heard.is_empty() || o.spec.output_gain == Gain::MUTE;
            (!silent).then_some((heard, o.spec.output_gain))
        };

        let mut by_group: HashMap<GroupId, Option<(BTreeSet<ParticipantId>, Gain)>> =
            HashMap::new();
        let mut by_content: HashMap<Option<(BTreeSet<ParticipantId>, Gain)>, GroupId> =
            HashMap::new();
        for (i, p) in self.live.iter().enumerate() {
            let out = self.conf.output(p.id).unwrap();
            prop_assert_eq!(
                out.unlimited,
                naive.unlimited_output(i),
                "listener {:?} differs",
                p.id
            );
            // The limiter only ever lowers a sample, never past full scale.
            for (&o, &m) in out.pcm.iter().zip(out.unlimited) {
                prop_assert!(i32::from(o).abs() <= m.abs() && o != i16::MIN && o != i16::MAX);
            }
            let content = must_hear(p);
            prop_assert_eq!(out.group.is_silence(), content.is_none(), "{:?}", p.id);
            let g = by_group.entry(out.group).or_insert_with(|| content.clone());
            prop_assert_eq!(&*g, &content, "group {:?} mixes different content", out.group);
            let c = by_content.entry(content).or_insert(out.group);
            prop_assert_eq!(*c, out.group, "equal content split over groups");
        }
        while self.conf.poll_event().is_some() {}
        Ok(())
    }
}

/// Deterministic samples for a frame kind; `salt` varies them between participants/ticks.
fn render(frame: Frame, n: usize, salt: u64) -> Option<Vec<i16>> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move |seed: u64| {
        state ^= seed.wrapping_add(salt).wrapping_mul(0x2545_F491_4F6C_DD1D);
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    Some(match frame {
        Frame::Nothing => return None,
        Frame::Constant(v) => vec![v; n],
        Frame::FullScale => (0..n).map(|i| if i % 2 == 0 { i16::MAX } else { i16::MIN }).collect(),
        Frame::Noise(seed) => (0..n).map(|_| next(seed) as i16).collect(),
        Frame::Quiet(seed) => (0..n).map(|_| (next(seed) % 101) as i16 - 50).collect(),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn mixer_equals_naive_reference(s in scenario()) {
        let mut h = Harness::new(&s);
        for op in &s.ops {
            h.apply(op)?;
        }
        // Always end on a tick so every scenario mixes at least once.
        h.apply(&Op::Tick(vec![Frame::Noise(1), Frame::FullScale, Frame::Constant(-7)]))?;
    }
}

/// The oracle catches a wrong mix: a tampered reference (one relationship forgotten)
/// disagrees with the mixer. Guards against an oracle that compares nothing.
#[test]
fn oracle_detects_a_forgotten_relationship() {
    let mut conf = Conference::new(ConferenceConfig {
        talk: TalkConfig { energy_threshold: 0, ..Default::default() },
        ..Default::default()
    })
    .unwrap();
    let a = conf.join(JoinOptions::default()).unwrap();
    let b = conf.join(JoinOptions::default()).unwrap();
    conf.relate(&[a], &[b], Relationship::DEAF).unwrap();
    let n = conf.frame_samples();
    conf.push_input(a, &vec![10; n]).unwrap();
    conf.push_input(b, &vec![20; n]).unwrap();
    conf.tick();
    let participant = |id, v| NaiveParticipant {
        id,
        can_speak: true,
        can_hear: true,
        active: true,
        onset: true,
        input_gain: Gain::UNITY,
        output_gain: Gain::UNITY,
        frame: vec![v; n],
    };
    let mut naive = NaiveMixer::new(vec![participant(a, 10), participant(b, 20)], HashMap::new());
    naive.mix();
    assert_ne!(conf.output(a).unwrap().unlimited, naive.unlimited_output(0));
    assert_eq!(conf.output(b).unwrap().unlimited, naive.unlimited_output(1));
}
