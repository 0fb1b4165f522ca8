//! Structure-aware fuzzing of the mixer: random sequences of join / leave / relate / mute /
//! deafen / gain / frames, checked after every tick against the naive reference mixer.
#![no_main]

use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mixminus_core::reference::{NaiveMixer, NaiveParticipant};
use mixminus_core::{
    Conference, ConferenceConfig, FrameDuration, Gain, JoinOptions, ParticipantId, Relationship,
    SampleRate, TalkConfig,
};

#[derive(Arbitrary, Debug)]
enum Op {
    Join { muted: bool, deaf: bool },
    Leave(u8),
    Relate { p: Vec<u8>, o: Vec<u8>, deaf: bool, mute: bool },
    Speak(u8, bool),
    Hear(u8, bool),
    InputGain(u8, i8),
    OutputGain(u8, i8),
    Frame { who: u8, level: i16, ramp: bool },
    Tick,
}

struct Model {
    speak: bool,
    hear: bool,
    input_gain: Gain,
    output_gain: Gain,
    frame: Option<Vec<i16>>,
}

fuzz_target!(|ops: Vec<Op>| {
    let config = ConferenceConfig {
        sample_rate: SampleRate::Hz8000,
        frame: FrameDuration::Ms10,
        talk: TalkConfig { energy_threshold: 0, ..Default::default() },
        max_participants: 24,
        ..Default::default()
    };
    let n = config.frame_samples();
    let mut conf = Conference::new(config).expect("valid config");
    let mut ids: Vec<ParticipantId> = Vec::new();
    let mut model: HashMap<ParticipantId, Model> = HashMap::new();
    let mut records: HashMap<(ParticipantId, ParticipantId), Relationship> = HashMap::new();
    let pick = |ids: &[ParticipantId], i: u8| -> ParticipantId {
        // Sometimes an id that is not in the conference: errors must change nothing.
        ids.get(i as usize % (ids.len() + 1))
            .copied()
            .unwrap_or(ParticipantId::new(10_000 + i as u32))
    };
    for op in ops.into_iter().take(400) {
        match op {
            Op::Join { muted, deaf } => {
                if let Ok(id) = conf.join(JoinOptions {
                    muted: Some(muted),
                    deaf: Some(deaf),
                    ..Default::default()
                }) {
                    ids.push(id);
                    model.insert(
                        id,
                        Model {
                            speak: !muted,
                            hear: !deaf,
                            input_gain: Gain::UNITY,
                            output_gain: Gain::UNITY,
                            frame: None,
                        },
                    );
                }
            }
            Op::Leave(i) => {
                let id = pick(&ids, i);
                let ok = conf.leave(id).is_ok();
                assert_eq!(ok, model.remove(&id).is_some());
                ids.retain(|&x| x != id);
                records.retain(|&(p, o), _| p != id && o != id);
            }
            Op::Relate { p, o, deaf, mute } => {
                let ps: Vec<_> = p.iter().take(4).map(|&i| pick(&ids, i)).collect();
                let os: Vec<_> = o.iter().take(4).map(|&i| pick(&ids, i)).collect();
                let rel = Relationship { deaf, mute };
                let valid = !ps.is_empty()
                    && !os.is_empty()
                    && ps.iter().chain(&os).all(|id| model.contains_key(id))
                    && ps.iter().all(|p| !os.contains(p));
                assert_eq!(conf.relate(&ps, &os, rel).is_ok(), valid);
                if valid {
                    for &p in &ps {
                        for &o in &os {
                            if rel.is_clear() {
                                records.remove(&(p, o));
                            } else {
                                records.insert((p, o), rel);
                            }
                        }
                    }
                }
            }
            Op::Speak(i, v) => {
                let id = pick(&ids, i);
                if conf.set_can_speak(id, v).is_ok() {
                    model.get_mut(&id).expect("known").speak = v;
                }
            }
            Op::Hear(i, v) => {
                let id = pick(&ids, i);
                if conf.set_can_hear(id, v).is_ok() {
                    model.get_mut(&id).expect("known").hear = v;
                }
            }
            Op::InputGain(i, level) => {
                let id = pick(&ids, i);
                if let Ok(g) = Gain::from_level(level) {
                    if conf.set_input_gain(id, g).is_ok() {
                        model.get_mut(&id).expect("known").input_gain = g;
                    }
                }
            }
            Op::OutputGain(i, level) => {
                let id = pick(&ids, i);
                if let Ok(g) = Gain::from_level(level) {
                    if conf.set_output_gain(id, g).is_ok() {
                        model.get_mut(&id).expect("known").output_gain = g;
                    }
                }
            }
            Op::Frame { who, level, ramp } => {
                let id = pick(&ids, who);
                let frame: Vec<i16> = (0..n)
                    .map(|k| if ramp { level.wrapping_add(k as i16 * 97) } else { level })
                    .collect();
                if conf.push_input(id, &frame).is_ok() {
                    model.get_mut(&id).expect("known").frame = Some(frame);
                }
            }
            Op::Tick => {
                conf.tick();
                let mut naive = NaiveMixer::new(Vec::new(), records.clone());
                for &id in &ids {
                    let m = &model[&id];
                    naive.participants.push(NaiveParticipant {
                        id,
                        can_speak: m.speak,
                        can_hear: m.hear,
                        active: m.frame.is_some() && m.speak,
                        onset: false, // the target runs without an onset fade
                        input_gain: m.input_gain,
                        output_gain: m.output_gain,
                        frame: m.frame.clone().unwrap_or_else(|| vec![0; n]),
                    });
                }
                naive.mix();
                for (k, &id) in ids.iter().enumerate() {
                    assert_eq!(
                        conf.output(id).expect("joined").unlimited,
                        naive.unlimited_output(k),
                        "listener {id}"
                    );
                }
                for m in model.values_mut() {
                    m.frame = None;
                }
                let mut expected: Vec<_> = records.iter().map(|(&(p, o), &r)| (p, o, r)).collect();
                expected.sort_unstable_by_key(|&(p, o, _)| (p, o));
                assert_eq!(conf.relationships(), expected);
                while conf.poll_event().is_some() {}
            }
        }
    }
});
