//! What the element's tests share: setup, the four tones and the Goertzel verdict.

#![allow(dead_code)] // each test binary uses its own part

pub mod rig;

use std::sync::Once;

use mixminus_rtp::dsp::tone_dbfs;

/// One tone per participant, far enough apart for a Goertzel window of 100 ms.
pub const TONES: [f32; 4] = [400.0, 700.0, 1_100.0, 1_700.0];
/// Each tone's peak amplitude (about −18 dBFS).
pub const AMPLITUDE: f32 = 4_000.0;
pub const RATE: u32 = 48_000;

/// `gst::init` and the plugin registered from this crate (no `.so` needed).
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        gst::init().expect("gst::init");
        gstmixminus::plugin_register_static().expect("register mixminus");
    });
}

/// The tone levels (dBFS) of `samples`, one per entry of [`TONES`].
pub fn levels(samples: &[i16]) -> [f64; 4] {
    TONES.map(|f| tone_dbfs(samples, RATE, f))
}

/// Asserts that `samples` carries exactly the tones of `heard` (at about their sent level)
/// and none of the others (at least 60 dB below).
pub fn assert_hears(what: &str, samples: &[i16], heard: &[usize]) {
    let sent = 20.0 * (f64::from(AMPLITUDE) / 32_768.0).log10();
    let l = levels(samples);
    for (i, level) in l.iter().enumerate() {
        if heard.contains(&i) {
            assert!(
                (level - sent).abs() < 1.5,
                "{what}: tone {i} at {level:.1} dBFS, sent {sent:.1}; all {l:.1?}"
            );
        } else {
            assert!(
                *level < sent - 60.0,
                "{what}: tone {i} should be gone, is {level:.1} dBFS; all {l:.1?}"
            );
        }
    }
}

/// Every participant but `me`, minus `removed`.
pub fn others(me: usize, removed: &[usize]) -> Vec<usize> {
    (0..4).filter(|&i| i != me && !removed.contains(&i)).collect()
}
