//! A compound RTCP packet from the network. Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(summary) = mixminus_rtp::parse_rtcp(data) {
        assert!(summary.bye.len() <= 32 * data.len());
    }
});
