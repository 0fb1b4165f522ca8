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

#[test]
fn the_first_caps_fix_the_rate_for_every_pad() {
    common::init();
    let element = gst::ElementFactory::make("mixminus").build().unwrap();
    let caps16 = "audio/x-raw,format=S16LE,layout=interleaved,rate=16000,channels=1";
    let mut hs: Vec<gst_check::Harness> = (0..2)
        .map(|i| {
            let mut h = gst_check::Harness::with_element(
                &element,
                Some(&format!("sink_{i}")),
                Some(&format!("src_{i}")),
            );
            h.play();
            h
        })
        .collect();
    hs[0].set_src_caps_str(caps16);
    // sink_1 is now offered 16 kHz only, so an audioresample upstream would convert.
    let offered = element.static_pad("sink_1").unwrap().query_caps(None);
    let rates: Vec<i32> = offered.iter().filter_map(|s| s.get::<i32>("rate").ok()).collect();
    assert_eq!(rates, vec![16_000], "{offered}");
    hs[1].set_src_caps_str(caps16);

    // 100 ms of a 400 Hz tone on sink_0 at 16 kHz: src_1 carries it in 160-sample frames.
    let mut tone = mixminus_rtp::dsp::SineGenerator::new(400.0, 16_000, AMPLITUDE);
    let mut heard = Vec::new();
    for frame in 0..10u64 {
        let mut pcm = [0i16; 160];
        tone.fill(&mut pcm);
        hs[0].push(common::rig::buffer(&pcm, frame)).unwrap();
        hs[1].push(common::rig::buffer(&[0; 160], frame)).unwrap();
        hs[0].pull().unwrap();
        let out = hs[1].pull().unwrap();
        assert_eq!(out.size(), 320);
        let map = out.map_readable().unwrap();
        heard.extend(map.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])));
    }
    let sent = 20.0 * (f64::from(AMPLITUDE) / 32_768.0).log10();
    let level = mixminus_rtp::dsp::tone_dbfs(&heard, 16_000, 400.0);
    assert!((level - sent).abs() < 1.0, "400 Hz in src_1 at {level:.1} dBFS");
}
