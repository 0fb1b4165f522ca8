//! An SDP offer from the network: parse and, when it parses, answer. Never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mixminus_rtp::sdp::AudioOffer;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(offer) = AudioOffer::parse(text, 20) {
        let answer = offer.answer("127.0.0.1:20000".parse().expect("literal"), 1);
        assert!(answer.starts_with("v=0\r\n"));
        assert_eq!(
            AudioOffer::parse(&answer, 20).map(|a| a.codec.kind).ok(),
            Some(offer.codec.kind)
        );
    }
});
