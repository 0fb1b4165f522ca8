//! The element under `gstreamer-check`'s harness: four participants, four tones, a test
//! clock; each output is checked with a Goertzel detector.

mod common;

use common::{assert_hears, init, others, AMPLITUDE, RATE};
use gst::prelude::*;
use gst_check::Harness;
use mixminus_rtp::dsp::SineGenerator;

const CAPS: &str = "audio/x-raw,format=S16LE,layout=interleaved,rate=48000,channels=1";
const FRAME: usize = 480; // the element's default 10 ms at 48 kHz
const FRAME_NS: u64 = 10_000_000;

struct Rig {
    element: gst::Element,
    harnesses: Vec<Harness>,
    tones: Vec<SineGenerator>,
    frame: u64,
}

impl Rig {
    fn new() -> Self {
        init();
        let element = gst::ElementFactory::make("mixminus").build().unwrap();
        let harnesses = (0..4)
            .map(|i| {
                let mut h = Harness::with_element(
                    &element,
                    Some(&format!("sink_{i}")),
                    Some(&format!("src_{i}")),
                );
                h.set_src_caps_str(CAPS);
                h.play();
                h
            })
            .collect();
        let tones = common::TONES.iter().map(|&f| SineGenerator::new(f, RATE, AMPLITUDE)).collect();
        Self { element, harnesses, tones, frame: 0 }
    }

    /// Runs `frames` frames; input `i` sends when `send[i]`. Returns each output's audio.
    fn run(&mut self, frames: usize, send: [bool; 4]) -> Vec<Vec<i16>> {
        let mut outs = vec![Vec::new(); 4];
        let mut pcm = [0i16; FRAME];
        for _ in 0..frames {
            for (i, h) in self.harnesses.iter_mut().enumerate() {
                self.tones[i].fill(&mut pcm);
                if send[i] {
                    h.push(buffer(&pcm, self.frame)).unwrap();
                }
            }
            if send.contains(&false) {
                // The missing input holds the frame until its deadline on the test clock.
                self.harnesses[3].crank_single_clock_wait().unwrap();
            }
            for (h, out) in self.harnesses.iter_mut().zip(&mut outs) {
                let b = h.pull().unwrap();
                assert_eq!(b.pts(), Some(gst::ClockTime::from_nseconds(self.frame * FRAME_NS)));
                let map = b.map_readable().unwrap();
                out.extend(map.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])));
            }
            self.frame += 1;
        }
        outs
    }

    fn relate(&self, p: &str, o: &str, what: &str) -> bool {
        self.element.emit_by_name::<bool>("relate", &[&p, &o, &what])
    }

    fn pad(&self, name: &str) -> gst::Pad {
        self.element.static_pad(name).unwrap()
    }
}

fn buffer(pcm: &[i16], frame: u64) -> gst::Buffer {
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut b = gst::Buffer::from_mut_slice(bytes);
    let b_mut = b.get_mut().unwrap();
    b_mut.set_pts(gst::ClockTime::from_nseconds(frame * FRAME_NS));
    b_mut.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
    b
}

/// The last 100 ms of `out`: a steady window for the detector, clear of any change.
fn tail(out: &[i16]) -> &[i16] {
    &out[out.len() - 10 * FRAME..]
}

#[test]
fn each_output_lacks_its_own_tone_and_the_related_ones_until_clear() {
    let mut rig = Rig::new();
    let outs = rig.run(12, [true; 4]);
    for (i, out) in outs.iter().enumerate() {
        assert_hears(&format!("start, out {i}"), tail(out), &others(i, &[]));
    }

    // 0 stops hearing 1; 3 stops hearing 2 (2 mutes itself towards 3).
    assert!(rig.relate("sink_0", "sink_1", "deaf"));
    assert!(rig.relate("src_2", "sink_3", "mute"));
    assert!(!rig.relate("sink_0", "sink_0", "deaf"), "a pad cannot relate to itself");
    assert!(!rig.relate("sink_0", "sink_9", "deaf"), "no such pad");
    assert!(!rig.relate("sink_0", "sink_1", "loud"), "no such relationship");
    assert_eq!(
        rig.element.property::<String>("relationships"),
        "sink_0 deaf sink_1; sink_2 mute sink_3"
    );
    let outs = rig.run(10, [true; 4]);
    assert_hears("related, out 0", &outs[0], &others(0, &[1]));
    assert_hears("related, out 1", &outs[1], &others(1, &[]));
    assert_hears("related, out 2", &outs[2], &others(2, &[]));
    assert_hears("related, out 3", &outs[3], &others(3, &[2]));

    assert!(rig.relate("sink_0", "sink_1", "clear"));
    assert!(rig.relate("sink_2", "sink_3", "clear"));
    assert_eq!(rig.element.property::<String>("relationships"), "");
    let outs = rig.run(10, [true; 4]);
    for (i, out) in outs.iter().enumerate() {
        assert_hears(&format!("cleared, out {i}"), out, &others(i, &[]));
    }
}

#[test]
fn a_missing_input_is_silence_for_its_frame_not_a_stall() {
    let mut rig = Rig::new();
    rig.run(10, [true; 4]);
    // Input 3 stops: every frame still comes out, at its deadline, without tone 3.
    let outs = rig.run(10, [true, true, true, false]);
    for (i, out) in outs.iter().enumerate() {
        assert_hears(&format!("input 3 missing, out {i}"), out, &others(i, &[3]));
    }
    // It comes back 100 ms later than it left off: placed by its timestamps, heard again.
    let outs = rig.run(12, [true; 4]);
    for (i, out) in outs.iter().enumerate() {
        assert_hears(&format!("input 3 back, out {i}"), tail(out), &others(i, &[]));
    }
}

#[test]
fn pad_properties_mute_deafen_and_scale() {
    let mut rig = Rig::new();
    rig.run(2, [true; 4]);
    rig.pad("sink_1").set_property("mute", true);
    rig.pad("sink_2").set_property("deaf", true);
    rig.pad("sink_3").set_property("volume-out", 0.5);
    let outs = rig.run(10, [true; 4]);
    assert_hears("out 0", &outs[0], &[2, 3]);
    assert!(outs[2].iter().all(|&s| s == 0), "a deaf pad's output is silence");
    let l3 = common::levels(&outs[3]);
    let sent = 20.0 * (f64::from(AMPLITUDE) / 32_768.0).log10();
    assert!((l3[0] - (sent - 6.02)).abs() < 0.3, "volume-out 0.5 is -6 dB: {l3:?}");
    assert!(l3[1] < sent - 60.0, "muted input is heard by nobody: {l3:?}");

    rig.pad("sink_1").set_property("mute", false);
    rig.pad("sink_2").set_property("deaf", false);
    let outs = rig.run(10, [true; 4]);
    assert_hears("out 0 again", &outs[0], &others(0, &[]));
    assert_hears("out 2 again", &outs[2], &others(2, &[]));
}
