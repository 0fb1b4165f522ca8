//! The element under `gstreamer-check`'s harness: four participants, four tones, a test
//! clock; each output is checked with a Goertzel detector.

mod common;

use common::rig::{Rig, FRAME};
use common::{assert_hears, others, AMPLITUDE};
use gst::prelude::*;

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
