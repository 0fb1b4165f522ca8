//! Datagrams from the network into a participant's receive path, in the order the leg runs
//! it: parse, extend the sequence number, jitter-buffer, play out one frame per tick, decode
//! (Opus and PCMU). Never panics, never grows without bound.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mixminus_rtp::{
    new_decoder, CodecKind, CodecParams, JitterBuffer, JitterConfig, RtpPacket, SequenceExtender,
};

fuzz_target!(|datagrams: Vec<Vec<u8>>| {
    let t0 = Instant::now();
    let mut opus = new_decoder(&CodecParams::new(CodecKind::Opus), 48_000, 960).expect("opus");
    let mut pcmu = new_decoder(&CodecParams::new(CodecKind::Pcmu), 48_000, 960).expect("pcmu");
    let mut seq = SequenceExtender::new();
    let mut jitter = JitterBuffer::new(JitterConfig::default(), 20, 48_000, 960);
    let mut out = vec![0i16; 960];
    for (i, datagram) in datagrams.iter().take(512).enumerate() {
        let now = t0 + Duration::from_millis(7 * i as u64);
        if let Ok(packet) = RtpPacket::parse(datagram) {
            let _ = packet.audio_level(1);
            if let Some(ext) = seq.extend(packet.sequence()) {
                jitter.insert(
                    now,
                    ext,
                    packet.timestamp(),
                    Bytes::copy_from_slice(packet.payload()),
                );
            }
        }
        // Both decoders see the same stream of payloads, every other tick each.
        let decoder = if i % 2 == 0 { &mut opus } else { &mut pcmu };
        let _ = jitter.pull(now, decoder.as_mut(), i % 5 == 4, &mut out);
        assert!(jitter.depth() <= 2 * 200 / 20 + 32);
    }
});
