use super::*;
use crate::dsp::{tone_dbfs, SineGenerator};

fn round_trip(kind: CodecKind, rate: u32) {
    let frame = (rate / 50) as usize;
    let mut params = CodecParams::new(kind);
    if kind == CodecKind::L16 {
        // 20 ms of L16 at 48 kHz does not fit a datagram: carry it at 16 kHz, resampled.
        params.clock_rate = rate.min(16_000);
    }
    let mut enc = new_encoder(&params, &CodecSettings::default(), rate, frame).unwrap();
    let mut dec = new_decoder(&params, rate, frame).unwrap();
    let mut sine = SineGenerator::new(1_000.0, rate, 8_000.0);
    let (mut pcm, mut out, mut payload) = (vec![0i16; frame], vec![0i16; frame], vec![0u8; 1500]);
    let mut heard = Vec::new();
    for _ in 0..25 {
        sine.fill(&mut pcm);
        let n = enc.encode(&pcm, &mut payload).unwrap();
        let m = dec.decode(&payload[..n], &mut out).unwrap();
        assert_eq!(m, frame);
        heard.extend_from_slice(&out);
    }
    let tail = &heard[heard.len() / 2..];
    let present = tone_dbfs(tail, rate, 1_000.0);
    let absent = tone_dbfs(tail, rate, 1_900.0);
    assert!(present > -16.0, "{kind:?} at {rate}: tone at {present} dBFS");
    assert!(present - absent >= 40.0, "{kind:?} at {rate}: {present} vs {absent}");
}

#[test]
fn every_codec_carries_a_tone_at_every_rate() {
    for kind in [CodecKind::Opus, CodecKind::Pcmu, CodecKind::Pcma, CodecKind::L16] {
        for rate in [8_000, 16_000, 48_000] {
            round_trip(kind, rate);
        }
    }
}

#[test]
fn g711_matches_known_values() {
    let mut dec = new_decoder(&CodecParams::new(CodecKind::Pcmu), 8_000, 160).unwrap();
    let mut out = vec![0i16; 160];
    dec.decode(&[0xff; 160], &mut out).unwrap();
    assert!(out.iter().all(|&s| s == 0), "µ-law 0xFF is zero");
    dec.decode(&[0x00; 160], &mut out).unwrap();
    assert_eq!(out[0], -32_124);
    let mut dec = new_decoder(&CodecParams::new(CodecKind::Pcma), 8_000, 160).unwrap();
    dec.decode(&[0xd5; 160], &mut out).unwrap();
    assert_eq!(out[0], 8, "A-law 0xD5 is the smallest positive step");
    assert!(dec.decode(&[0xd5; 159], &mut out).is_err(), "wrong length refused");
}

#[test]
fn opus_fec_recovers_a_lost_frame() {
    let params = CodecParams::new(CodecKind::Opus);
    let settings = CodecSettings { expected_loss_percent: 20, ..Default::default() };
    let mut enc = new_encoder(&params, &settings, 48_000, 960).unwrap();
    let mut dec = new_decoder(&params, 48_000, 960).unwrap();
    let mut sine = SineGenerator::new(700.0, 48_000, 8_000.0);
    let mut pcm = vec![0i16; 960];
    let mut packets = Vec::new();
    for _ in 0..30 {
        sine.fill(&mut pcm);
        let mut payload = vec![0u8; 1500];
        let n = enc.encode(&pcm, &mut payload).unwrap();
        payload.truncate(n);
        packets.push(payload);
    }
    let mut out = vec![0i16; 960];
    for p in &packets[..20] {
        dec.decode(p, &mut out).unwrap();
    }
    // Frame 20 is lost; frame 21 carries its FEC.
    dec.decode_fec(&packets[21], &mut out);
    assert!(tone_dbfs(&out, 48_000, 700.0) > -25.0, "FEC restores the tone");
    dec.decode(&packets[21], &mut out).unwrap();
}

proptest::proptest! {
    #[test]
    fn random_payloads_never_panic(payload in proptest::collection::vec(proptest::num::u8::ANY, 0..1500)) {
        let mut out = vec![0i16; 960];
        for kind in [CodecKind::Opus, CodecKind::Pcmu, CodecKind::Pcma, CodecKind::L16] {
            let mut dec = new_decoder(&CodecParams::new(kind), 48_000, 960).unwrap();
            if let Ok(n) = dec.decode(&payload, &mut out) {
                proptest::prop_assert!(n <= 960);
            }
            dec.conceal(&mut out);
            dec.decode_fec(&payload, &mut out);
        }
    }
}
