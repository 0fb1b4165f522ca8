//! Three live tones into `mixminus`; while the pipeline plays, `sink_0` stops hearing
//! `sink_1` (relate … deaf), then hears it again (clear). Prints the level of each tone in
//! `src_0` every half second, and the talking/floor messages from the bus.
//!
//! `cargo run -p gst-mixminus --example relate`

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::prelude::*;
use mixminus_rtp::dsp::tone_dbfs;

const TONES: [f64; 3] = [440.0, 660.0, 990.0];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    gst::init()?;
    gstmixminus::plugin_register_static()?;

    let mut desc = String::from("mixminus name=m energy-threshold=100 ");
    for (i, f) in TONES.iter().enumerate() {
        desc += &format!(
            "audiotestsrc is-live=true freq={f} volume={v} samplesperbuffer=480 \
             ! audio/x-raw,rate=48000,channels=1,format=S16LE ! m.sink_{i} \
             m.src_{i} ! queue ! appsink name=out{i} sync=false ",
            // Different levels, so the floor (the loudest talker) is clear-cut.
            v = 0.1 - 0.02 * i as f64,
        );
    }
    let pipeline =
        gst::parse::launch(&desc)?.downcast::<gst::Pipeline>().map_err(|_| "not a pipeline")?;
    let mixer = pipeline.by_name("m").ok_or("no mixer")?;

    // What participant 0 hears: src_0's samples, kept for the level readout.
    let heard: Arc<Mutex<Vec<i16>>> = Arc::default();
    let out0 = pipeline
        .by_name("out0")
        .ok_or("no out0")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "not an appsink")?;
    out0.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample({
                let heard = heard.clone();
                move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let map = sample
                        .buffer()
                        .ok_or(gst::FlowError::Error)?
                        .map_readable()
                        .map_err(|_| gst::FlowError::Error)?;
                    heard
                        .lock()
                        .unwrap()
                        .extend(map.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])));
                    Ok(gst::FlowSuccess::Ok)
                }
            })
            .build(),
    );

    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().ok_or("no bus")?;
    for step in 0..6 {
        match step {
            2 => {
                let ok = mixer.emit_by_name::<bool>("relate", &[&"sink_0", &"sink_1", &"deaf"]);
                println!("relate(sink_0, sink_1, deaf) -> {ok}");
            }
            4 => {
                let ok = mixer.emit_by_name::<bool>("relate", &[&"sink_0", &"sink_1", &"clear"]);
                println!("relate(sink_0, sink_1, clear) -> {ok}");
            }
            _ => {}
        }
        heard.lock().unwrap().clear();
        std::thread::sleep(Duration::from_millis(500));
        while let Some(msg) =
            bus.pop_filtered(&[gst::MessageType::Element, gst::MessageType::Error])
        {
            match msg.view() {
                gst::MessageView::Error(e) => return Err(e.error().into()),
                _ => {
                    if let Some(s) = msg.structure() {
                        println!("  bus: {s}");
                    }
                }
            }
        }
        let pcm = heard.lock().unwrap().clone();
        let levels: Vec<String> = TONES
            .iter()
            .map(|&f| format!("{f} Hz {:6.1} dBFS", tone_dbfs(&pcm, 48_000, f as f32)))
            .collect();
        println!(
            "t={:.1}s relationships=\"{}\" src_0 hears: {}",
            (step + 1) as f64 * 0.5,
            mixer.property::<String>("relationships"),
            levels.join(", ")
        );
    }
    pipeline.set_state(gst::State::Null)?;
    Ok(())
}
