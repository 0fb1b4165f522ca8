//! A live pipeline in this process: live `audiotestsrc` inputs, `appsink` outputs. A pad is
//! added and released while playing, relate and clear are called while playing, and the
//! talk gate's messages arrive on the bus.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_hears, init, others, AMPLITUDE, RATE, TONES};
use gst::prelude::*;

type Capture = Arc<Mutex<Vec<i16>>>;

struct Live {
    pipeline: gst::Pipeline,
    mixer: gst::Element,
    captures: Vec<Option<Capture>>,
}

impl Live {
    fn new() -> Self {
        init();
        let pipeline = gst::Pipeline::new();
        let mixer = gst::ElementFactory::make("mixminus")
            .property("energy-threshold", 100u32)
            .property("attack-frames", 1u32)
            // Generous: a loaded CI machine must not turn scheduling delays into dropped
            // frames; this test is about what is mixed, not how soon.
            .property("latency", 200_000_000u64)
            .build()
            .unwrap();
        pipeline.add(&mixer).unwrap();
        let mut live = Self { pipeline, mixer, captures: vec![None; 4] };
        for i in 0..3 {
            live.add_participant(i);
        }
        live
    }

    /// A live tone source into `sink_i`, and `src_i` into an appsink that captures.
    fn add_participant(&mut self, i: usize) -> (gst::Element, gst::Element, gst::Element) {
        let src = gst::ElementFactory::make("audiotestsrc")
            .property("is-live", true)
            .property("freq", f64::from(TONES[i]))
            .property("volume", f64::from(AMPLITUDE) / 32_768.0)
            .property("samplesperbuffer", 480i32)
            .build()
            .unwrap();
        let caps = gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("rate", RATE as i32)
            .field("channels", 1i32)
            .build();
        let filter =
            gst::ElementFactory::make("capsfilter").property("caps", &caps).build().unwrap();
        let queue = gst::ElementFactory::make("queue").build().unwrap();
        let capture: Capture = Arc::default();
        let sink = gst_app::AppSink::builder()
            .sync(false)
            .callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample({
                        let capture = capture.clone();
                        move |sink| {
                            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                            let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                            let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
                            capture.lock().unwrap().extend(
                                map.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])),
                            );
                            Ok(gst::FlowSuccess::Ok)
                        }
                    })
                    .build(),
            )
            .build();
        let sink: gst::Element = sink.upcast();
        self.pipeline.add_many([&src, &filter, &queue, &sink]).unwrap();
        src.link(&filter).unwrap();
        let sinkpad = self.mixer.request_pad_simple("sink_%u").unwrap();
        assert_eq!(sinkpad.name(), format!("sink_{i}"));
        filter.static_pad("src").unwrap().link(&sinkpad).unwrap();
        let srcpad = self.mixer.static_pad(&format!("src_{i}")).unwrap();
        srcpad.link(&queue.static_pad("sink").unwrap()).unwrap();
        queue.link(&sink).unwrap();
        for e in [&sink, &queue, &filter, &src] {
            e.sync_state_with_parent().unwrap();
        }
        self.captures[i] = Some(capture);
        (src, filter, queue)
    }

    /// Clears the captures, lets `ms` of audio flow, and returns each output's last 100 ms.
    fn listen(&self, ms: u64) -> Vec<Option<Vec<i16>>> {
        for c in self.captures.iter().flatten() {
            c.lock().unwrap().clear();
        }
        std::thread::sleep(Duration::from_millis(ms));
        self.captures
            .iter()
            .map(|c| {
                let c = c.as_ref()?.lock().unwrap();
                assert!(c.len() >= 9_600, "output stalled: {} samples in {ms} ms", c.len());
                Some(c[c.len() - 4_800..].to_vec())
            })
            .collect()
    }

    fn relate(&self, p: &str, o: &str, what: &str) -> bool {
        self.mixer.emit_by_name::<bool>("relate", &[&p, &o, &what])
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

fn talking_messages(bus: &gst::Bus) -> Vec<(String, bool)> {
    std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Element]))
        .filter_map(|m| {
            let s = m.structure()?;
            if s.name() != "mixminus-talking" {
                return None;
            }
            Some((s.get::<String>("pad").ok()?, s.get::<bool>("talking").ok()?))
        })
        .collect()
}

#[test]
fn live_pipeline_adds_and_releases_a_pad_and_relates_while_playing() {
    let mut live = Live::new();
    let bus = live.pipeline.bus().unwrap();
    live.pipeline.set_state(gst::State::Playing).unwrap();

    let heard = live.listen(400);
    for (i, out) in heard.iter().take(3).enumerate() {
        assert_hears(&format!("3 live inputs, out {i}"), out.as_ref().unwrap(), &others(i, &[3]));
    }
    let talking = talking_messages(&bus);
    for i in 0..3 {
        assert!(talking.contains(&(format!("sink_{i}"), true)), "sink_{i} talking: {talking:?}");
    }

    // A fourth participant joins while playing.
    let (src, filter, queue) = live.add_participant(3);
    let heard = live.listen(400);
    for (i, out) in heard.iter().enumerate() {
        assert_hears(&format!("4 live inputs, out {i}"), out.as_ref().unwrap(), &others(i, &[]));
    }
    assert!(talking_messages(&bus).contains(&("sink_3".into(), true)));

    // relate while playing, then clear.
    assert!(live.relate("sink_0", "sink_3", "deaf"));
    let heard = live.listen(300);
    assert_hears("0 deaf to 3, out 0", heard[0].as_ref().unwrap(), &others(0, &[3]));
    assert_hears("0 deaf to 3, out 3", heard[3].as_ref().unwrap(), &others(3, &[]));
    assert!(live.relate("sink_0", "sink_3", "clear"));
    let heard = live.listen(300);
    assert_hears("cleared, out 0", heard[0].as_ref().unwrap(), &others(0, &[]));

    // ... and leaves while playing: its source stops, its pads go; the others go on.
    src.set_state(gst::State::Null).unwrap();
    filter.set_state(gst::State::Null).unwrap();
    let sinkpad = live.mixer.static_pad("sink_3").unwrap();
    let srcpad = live.mixer.static_pad("src_3").unwrap();
    srcpad.unlink(&queue.static_pad("sink").unwrap()).unwrap();
    live.mixer.release_request_pad(&sinkpad);
    assert!(live.mixer.static_pad("src_3").is_none(), "src_3 leaves with sink_3");
    live.pipeline.remove_many([&src, &filter]).unwrap();
    live.captures[3] = None;
    let heard = live.listen(400);
    for (i, out) in heard.iter().take(3).enumerate() {
        assert_hears(&format!("3 left, out {i}"), out.as_ref().unwrap(), &others(i, &[3]));
    }
    assert!(bus.pop_filtered(&[gst::MessageType::Error]).is_none());
}
