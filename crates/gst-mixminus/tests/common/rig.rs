//! Four participants on one `mixminus` under `gstreamer-check` harnesses, sharing the
//! element's test clock.

use gst::prelude::*;
use gst_check::Harness;
use mixminus_rtp::dsp::SineGenerator;

use super::{init, AMPLITUDE, RATE, TONES};

pub const CAPS: &str = "audio/x-raw,format=S16LE,layout=interleaved,rate=48000,channels=1";
pub const FRAME: usize = 480; // the element's default 10 ms at 48 kHz
pub const FRAME_NS: u64 = 10_000_000;

pub struct Rig {
    pub element: gst::Element,
    pub harnesses: Vec<Harness>,
    tones: Vec<SineGenerator>,
    frame: u64,
}

impl Rig {
    pub fn new() -> Self {
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
        let tones = TONES.iter().map(|&f| SineGenerator::new(f, RATE, AMPLITUDE)).collect();
        Self { element, harnesses, tones, frame: 0 }
    }

    /// Runs `frames` frames; input `i` sends when `send[i]`. Returns each output's audio.
    pub fn run(&mut self, frames: usize, send: [bool; 4]) -> Vec<Vec<i16>> {
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

    pub fn relate(&self, p: &str, o: &str, what: &str) -> bool {
        self.element.emit_by_name::<bool>("relate", &[&p, &o, &what])
    }

    pub fn pad(&self, name: &str) -> gst::Pad {
        self.element.static_pad(name).unwrap()
    }
}

pub fn buffer(pcm: &[i16], frame: u64) -> gst::Buffer {
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    let mut b = gst::Buffer::from_mut_slice(bytes);
    let b_mut = b.get_mut().unwrap();
    b_mut.set_pts(gst::ClockTime::from_nseconds(frame * FRAME_NS));
    b_mut.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
    b
}
