//! 64 participants at 48 kHz / 10 ms: one `mixminus` against the only way to build 64
//! mix-minus feeds from stock GStreamer, 64 `audiomixer`s each fed by 63 of the inputs
//! (every input goes through a `tee` to the 63 mixers of the others), in the same run.
//!
//! Every pipeline runs 64 non-live `audiotestsrc` (480-sample buffers, 1 s of audio each)
//! into 64 `fakesink sync=false async=false`; one iteration is one run from PLAYING to EOS,
//! pipeline construction excluded. A third pipeline, the 64 sources straight into the 64
//! sinks, is the floor both mixers stand on.
//!
//! Two inputs: `tones` (all 64 send a tone: mixminus with its gate off mixes all 64, its
//! worst case) and `3talk` (3 send a tone, 61 send digital silence; mixminus's talk gate at
//! energy 100 mixes only the 3 talkers).
//!
//! Run: `cargo bench -p gst-mixminus --bench pads64`. Besides criterion's wall time, each
//! case prints the process CPU time per second of audio.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use gst::prelude::*;

const PADS: usize = 64;
const BUFFERS: u32 = 100; // 1 s of audio in 10 ms buffers
const CAPS: &str = "audio/x-raw,format=S16LE,rate=48000,channels=1,layout=interleaved";

#[derive(Clone, Copy)]
enum Mixer {
    MixMinus,
    AudioMixers,
    SourcesOnly,
}

fn source(i: usize, talkers: usize) -> String {
    let wave = if i < talkers { "sine" } else { "silence" };
    format!(
        "audiotestsrc num-buffers={BUFFERS} samplesperbuffer=480 wave={wave} freq={} volume=0.05 ! {CAPS}",
        200 + 20 * i
    )
}

fn description(mixer: Mixer, talkers: usize) -> String {
    let sink = "fakesink sync=false async=false";
    let mut d = String::new();
    match mixer {
        Mixer::MixMinus => {
            let gate = if talkers < PADS { 100 } else { 0 };
            d += &format!("mixminus name=m energy-threshold={gate} attack-frames=1 ");
            for i in 0..PADS {
                d += &format!("{} ! m.sink_{i} m.src_{i} ! {sink} ", source(i, talkers));
            }
        }
        Mixer::AudioMixers => {
            for i in 0..PADS {
                d += &format!("audiomixer name=a{i} ! {CAPS} ! {sink} ");
            }
            // The tees are linked to the mixers in `run` (gst-launch syntax cannot link a tee
            // request pad straight to an aggregator request pad); no queues, so no extra
            // threads: the cheapest way to build it.
            for i in 0..PADS {
                d += &format!("{} ! tee name=t{i} ", source(i, talkers));
            }
        }
        Mixer::SourcesOnly => {
            for i in 0..PADS {
                d += &format!("{} ! {sink} ", source(i, talkers));
            }
        }
    }
    d
}

/// One run to EOS: (wall time, process CPU time).
fn run(desc: &str, mixer: Mixer) -> (Duration, Duration) {
    let pipeline = gst::parse::launch(desc).expect("pipeline");
    if let Mixer::AudioMixers = mixer {
        let bin = pipeline.downcast_ref::<gst::Bin>().expect("a bin");
        for i in 0..PADS {
            let tee = bin.by_name(&format!("t{i}")).expect("tee");
            for j in (0..PADS).filter(|&j| j != i) {
                let mixer = bin.by_name(&format!("a{j}")).expect("audiomixer");
                let src = tee.request_pad_simple("src_%u").expect("tee pad");
                let sink = mixer.request_pad_simple("sink_%u").expect("mixer pad");
                src.link(&sink).expect("tee to audiomixer");
            }
        }
    }
    let bus = pipeline.bus().expect("bus");
    let (wall0, cpu0) = (Instant::now(), cpu_time());
    pipeline.set_state(gst::State::Playing).expect("playing");
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS within 120 s");
    let (wall, cpu) = (wall0.elapsed(), cpu_time() - cpu0);
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    pipeline.set_state(gst::State::Null).expect("null");
    (wall, cpu)
}

/// User + system time of this process, from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are the 12th and 13th after the name.
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

fn pads64(c: &mut Criterion) {
    gst::init().expect("gst::init");
    gstmixminus::plugin_register_static().expect("register mixminus");
    let mut group = c.benchmark_group("pads64");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    for (input, talkers) in [("tones", PADS), ("3talk", 3)] {
        for (name, mixer) in [
            ("mixminus", Mixer::MixMinus),
            ("audiomixer_x64", Mixer::AudioMixers),
            ("sources_only", Mixer::SourcesOnly),
        ] {
            let desc = description(mixer, talkers);
            let mut cpu = (Duration::ZERO, 0u32);
            group.bench_function(format!("{name}/{input}"), |b| {
                b.iter_custom(|iters| {
                    let mut wall = Duration::ZERO;
                    for _ in 0..iters {
                        let (w, c) = run(&desc, mixer);
                        wall += w;
                        cpu.0 += c;
                        cpu.1 += 1;
                    }
                    wall
                })
            });
            println!(
                "pads64/{name}/{input}: CPU {:.3} s per 1 s of audio (64 pads, mean of {} runs)",
                cpu.0.as_secs_f64() / f64::from(cpu.1.max(1)),
                cpu.1
            );
        }
    }
    group.finish();
}

criterion_group!(benches, pads64);
criterion_main!(benches);
