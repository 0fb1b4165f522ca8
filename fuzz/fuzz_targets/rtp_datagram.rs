//! Datagrams from the network into a participant's receive path, in the order the leg runs
//! it: parse, extend the sequence number, jitter-buffer, play out one frame per tick, decode
//! (Opus and PCMU). Never panics, never grows without bound.
#![no_main]

use std::time::{Duration, Instant};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mixminus_rtp::{
    new_decoder, CodecKind, CodecParams, JitterBuffer, JitterConfig, Playout, RtpPacket,
    SequenceExtender,
};

fuzz_target!(|datagrams: Vec<Vec<u8>>| {
    let t0 = Instant::now();
    let mut opus = new_decoder(&CodecParams::new(CodecKind::Opus), 48_000, 960).expect("opus");
    let mut pcmu = new_decoder(&CodecParams::new(CodecKind::Pcmu), 48_000, 960).expect("pcmu");
    let mut seq = SequenceExtender::new();
    let mut jitter = JitterBuffer::new(JitterConfig::default(), 20, 48_000);
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
        match jitter.pop(now) {
            Playout::Packet(payload) => {
                let decoder =
                    if payload.first().is_some_and(|b| b & 1 == 0) { &mut opus } else { &mut pcmu };
                if let Ok(n) = decoder.decode(&payload, &mut out) {
                    assert!(n <= out.len());
                }
            }
            Playout::Lost { fec_from: Some(next) } => opus.decode_fec(&next, &mut out),
            Playout::Lost { fec_from: None } => opus.conceal(&mut out),
            Playout::Empty => {}
        }
        assert!(jitter.depth() <= 128 + 1);
    }
});
