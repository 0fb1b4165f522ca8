//! One mix tick: mixminus's shared mix groups against the naive per-listener mixer, in the
//! same run.
//!
//! Group `tick`, ids `mixminus/N_T_R` and `naive/N_T_R`: N participants, T talkers, R
//! relationships. Talkers hand in a tone frame every tick; the others send nothing this tick
//! (what the RTP layer hands the core for DTX or an RFC 6464 "silent" frame). Half the
//! relationships have a listener deafen a talker, the rest are random pairs, deaf or mute.
//!
//! Group `tick_all_sending`: the same, but every non-talker hands in a quiet frame (below
//! the talk threshold), so both mixers pay for talk detection on every participant.
//!
//! The naive mixer is [`mixminus::core::reference::NaiveMixer`], the oracle the property
//! tests use: every listener loops over every source and checks the pair's relationship
//! (FreeSWITCH's approach), O(N² + N·T·F). It gets the same talk detection (energy against
//! the threshold) so the two do the same job.
//!
//! Run: `cargo bench --bench tick` (add `-- tick/` or `-- tick_all_sending` to pick one).

use std::collections::HashMap;
use std::f64::consts::PI;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mixminus::core::reference::{NaiveMixer, NaiveParticipant};
use mixminus::core::{
    frame_energy, Conference, ConferenceConfig, Gain, JoinOptions, ParticipantId, Relationship,
    TalkConfig,
};

const THRESHOLD: u32 = 100;

/// (N, T, R) as the issue names them.
const SIZES: [(usize, usize, usize); 4] =
    [(10, 3, 0), (100, 3, 10), (1000, 3, 100), (10_000, 3, 1000)];

/// Above this N the naive mixer's N² loop takes seconds per sample: skipped.
const NAIVE_MAX_N: usize = 1000;

struct Scenario {
    talker_frames: Vec<Vec<i16>>,
    quiet_frame: Option<Vec<i16>>,
    /// (P, O, value) records.
    relationships: Vec<(usize, usize, Relationship)>,
    n: usize,
}

impl Scenario {
    fn new(n: usize, t: usize, r: usize, all_sending: bool) -> Self {
        let frame = 960;
        let talker_frames = (0..t)
            .map(|k| {
                let hz = 300.0 + 170.0 * k as f64;
                (0..frame)
                    .map(|i| (7000.0 * (2.0 * PI * hz * i as f64 / 48_000.0).sin()) as i16)
                    .collect()
            })
            .collect();
        let quiet_frame =
            all_sending.then(|| (0..frame).map(|i| ((i % 7) as i16 - 3) * 5).collect());
        // A fixed LCG: the same relationships in every run.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |bound: usize| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((state >> 33) as usize) % bound
        };
        let mut relationships = Vec::with_capacity(r);
        let mut seen = std::collections::HashSet::new();
        while relationships.len() < r {
            let k = relationships.len();
            let p = t + next(n - t);
            let (o, value) = if k % 2 == 0 {
                (k / 2 % t, Relationship::DEAF)
            } else {
                (next(n), if k % 4 == 1 { Relationship::MUTE } else { Relationship::DEAF })
            };
            if p != o && seen.insert((p, o)) {
                relationships.push((p, o, value));
            }
        }
        Scenario { talker_frames, quiet_frame, relationships, n }
    }

    fn talkers(&self) -> usize {
        self.talker_frames.len()
    }

    fn mixminus(&self) -> (Conference, Vec<ParticipantId>) {
        let mut conf = Conference::new(ConferenceConfig {
            talk: TalkConfig { energy_threshold: THRESHOLD, ..Default::default() },
            ..Default::default()
        })
        .unwrap();
        let ids: Vec<_> = (0..self.n).map(|_| conf.join(JoinOptions::default()).unwrap()).collect();
        for &(p, o, value) in &self.relationships {
            conf.relate(&[ids[p]], &[ids[o]], value).unwrap();
        }
        // Past the talk detector's attack, and every group created.
        for _ in 0..20 {
            self.mixminus_tick(&mut conf, &ids);
        }
        assert_eq!(conf.last_tick().active, self.talkers());
        (conf, ids)
    }

    fn mixminus_tick(&self, conf: &mut Conference, ids: &[ParticipantId]) -> i64 {
        for (k, frame) in self.talker_frames.iter().enumerate() {
            conf.push_input(ids[k], frame).unwrap();
        }
        if let Some(quiet) = &self.quiet_frame {
            for &id in &ids[self.talkers()..] {
                conf.push_input(id, quiet).unwrap();
            }
        }
        conf.tick();
        // Touch every group once (what an encoder would read).
        conf.groups().map(|g| g.pcm[0] as i64).sum()
    }

    fn naive(&self) -> NaiveMixer {
        let ids: Vec<_> = (1..=self.n as u32).map(ParticipantId::new).collect();
        let participants = ids
            .iter()
            .map(|&id| NaiveParticipant {
                id,
                can_speak: true,
                can_hear: true,
                active: false,
                onset: false,
                input_gain: Gain::UNITY,
                output_gain: Gain::UNITY,
                frame: vec![0; 960],
            })
            .collect();
        let relationships: HashMap<_, _> =
            self.relationships.iter().map(|&(p, o, v)| ((ids[p], ids[o]), v)).collect();
        NaiveMixer::new(participants, relationships)
    }

    fn naive_tick(&self, naive: &mut NaiveMixer) -> i64 {
        let t = self.talkers();
        for (i, p) in naive.participants.iter_mut().enumerate() {
            let frame =
                if i < t { Some(&self.talker_frames[i]) } else { self.quiet_frame.as_ref() };
            p.active = match frame {
                Some(frame) => {
                    p.frame.copy_from_slice(frame);
                    frame_energy(&p.frame) >= THRESHOLD
                }
                None => false,
            };
        }
        naive.mix();
        naive.output(0)[0] as i64
    }
}

fn bench_group(c: &mut Criterion, name: &str, all_sending: bool) {
    let mut group = c.benchmark_group(name);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    for (n, t, r) in SIZES {
        let id = format!("{n}_{t}_{r}");
        let scenario = Scenario::new(n, t, r, all_sending);
        let (mut conf, ids) = scenario.mixminus();
        group.bench_function(BenchmarkId::new("mixminus", &id), |b| {
            b.iter(|| black_box(scenario.mixminus_tick(&mut conf, &ids)))
        });
        if n <= NAIVE_MAX_N {
            let mut naive = scenario.naive();
            // The two must agree before either is timed.
            scenario.naive_tick(&mut naive);
            scenario.mixminus_tick(&mut conf, &ids);
            for (i, &id) in ids.iter().enumerate() {
                assert_eq!(conf.output(id).unwrap().pcm, naive.output(i), "listener {i}");
            }
            group.bench_function(BenchmarkId::new("naive", &id), |b| {
                b.iter(|| black_box(scenario.naive_tick(&mut naive)))
            });
        }
    }
    group.finish();
}

fn tick(c: &mut Criterion) {
    bench_group(c, "tick", false);
}

fn tick_all_sending(c: &mut Criterion) {
    bench_group(c, "tick_all_sending", true);
}

criterion_group!(benches, tick, tick_all_sending);
criterion_main!(benches);
