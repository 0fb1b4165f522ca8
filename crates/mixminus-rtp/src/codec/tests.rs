use proptest::prelude::*;

use super::*;
use crate::dsp::{tone_dbfs, SineGenerator};

const KINDS: [CodecKind; 4] = [CodecKind::Opus, CodecKind::Pcmu, CodecKind::Pcma, CodecKind::L16];

/// The codec's usual parameters, with L16 carried at the conference rate up to 16 kHz (20 ms
/// of L16 at 48 kHz does not fit a datagram).
fn params(kind: CodecKind, rate: u32) -> CodecParams {
    let mut params = CodecParams::new(kind);
    if kind == CodecKind::L16 {
        params.clock_rate = rate.min(16_000);
    }
    params
}

fn round_trip(kind: CodecKind, rate: u32) {
    let frame = (rate / 50) as usize;
    let params = params(kind, rate);
    let mut enc = new_encoder(&params, &CodecSettings::default(), rate, frame).unwrap();
    let mut dec = new_decoder(&params, rate, frame).unwrap();
    let mut sine = SineGenerator::new(1_000.0, rate, 8_000.0);
    let (mut pcm, mut out, mut payload) =
        (vec![0i16; frame], vec![0i16; frame], vec![0u8; MAX_PAYLOAD]);
    let mut heard = Vec::new();
    for _ in 0..25 {
        sine.fill(&mut pcm);
        let n = enc.encode(&pcm, &mut payload).unwrap();
        let m = dec.decode(&payload[..n], &mut out).unwrap();
        assert_eq!(m, frame);
        heard.extend_from_slice(&out);
    }
    // Skip the start: codec and resampler delay.
    let tail = &heard[heard.len() / 2..];
    let present = tone_dbfs(tail, rate, 1_000.0);
    let absent = tone_dbfs(tail, rate, 1_900.0);
    assert!(present > -16.0, "{kind:?} at {rate}: tone at {present} dBFS");
    assert!(present - absent >= 40.0, "{kind:?} at {rate}: {present} vs {absent}");
}

#[test]
fn every_codec_carries_a_tone_at_every_rate() {
    for kind in KINDS {
        for rate in [8_000, 16_000, 48_000] {
            round_trip(kind, rate);
        }
    }
}

#[test]
fn defaults_follow_the_rfcs() {
    let table: Vec<_> = KINDS
        .iter()
        .map(|&k| (k.default_payload_type(), k.default_clock_rate(), CodecParams::new(k).ptime_ms))
        .collect();
    assert_eq!(table, [(111, 48_000, 20), (0, 8_000, 20), (8, 8_000, 20), (96, 16_000, 20)]);
    for kind in KINDS {
        assert_eq!(CodecKind::from_name(&kind.name().to_uppercase()), Some(kind));
        CodecParams::new(kind).validate().unwrap();
    }
    let settings = CodecSettings::default();
    assert_eq!(
        (settings.bitrate, settings.complexity, settings.fec, settings.dtx),
        (40_000, 8, false, false)
    );
}

/// Reference values from the ITU-T G.711 tables (as in Sun's `g711.c`, 16-bit scaled).
#[test]
fn g711_matches_the_reference_tables() {
    use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};
    let ulaw = [(0x00, -32_124), (0x80, 32_124), (0x7e, -8), (0xfe, 8), (0xff, 0), (0x7f, 0)];
    for (byte, linear) in ulaw {
        assert_eq!(decode_ulaw(byte), linear, "µ-law {byte:#04x}");
    }
    let alaw = [(0x2a, -32_256), (0xaa, 32_256), (0x55, -8), (0xd5, 8)];
    for (byte, linear) in alaw {
        assert_eq!(decode_alaw(byte), linear, "A-law {byte:#04x}");
    }
    assert_eq!((encode_ulaw(0), encode_ulaw(i16::MAX), encode_ulaw(i16::MIN)), (0xff, 0x80, 0x00));
    assert_eq!((encode_alaw(0), encode_alaw(i16::MAX), encode_alaw(i16::MIN)), (0xd5, 0xaa, 0x2a));
    // Every codeword survives decode then encode (µ-law's negative zero becomes zero).
    for byte in 0..=255u8 {
        let expected = if byte == 0x7f { 0xff } else { byte };
        assert_eq!(encode_ulaw(decode_ulaw(byte)), expected, "µ-law {byte:#04x}");
        assert_eq!(encode_alaw(decode_alaw(byte)), byte, "A-law {byte:#04x}");
    }
}

#[test]
fn g711_through_the_trait_is_exact_at_8_khz() {
    let mut out = vec![0i16; 160];
    let mut dec = new_decoder(&CodecParams::new(CodecKind::Pcmu), 8_000, 160).unwrap();
    dec.decode(&[0xff; 160], &mut out).unwrap();
    assert!(out.iter().all(|&s| s == 0), "µ-law 0xFF is zero");
    dec.decode(&[0x00; 160], &mut out).unwrap();
    assert!(out.iter().all(|&s| s == -32_124));
    let mut dec = new_decoder(&CodecParams::new(CodecKind::Pcma), 8_000, 160).unwrap();
    dec.decode(&[0xd5; 160], &mut out).unwrap();
    assert!(out.iter().all(|&s| s == 8), "A-law 0xD5 is the smallest positive step");
    assert!(matches!(dec.decode(&[0xd5; 159], &mut out), Err(CodecError::InvalidPayload(_))));
    let mut enc =
        new_encoder(&CodecParams::new(CodecKind::Pcma), &Default::default(), 8_000, 160).unwrap();
    let mut payload = [0u8; 160];
    assert_eq!(enc.encode(&[-32_256; 160], &mut payload), Ok(160));
    assert!(payload.iter().all(|&b| b == 0x2a));
}

#[test]
fn l16_is_big_endian_and_lossless_at_its_own_rate() {
    let params = CodecParams { clock_rate: 8_000, ..CodecParams::new(CodecKind::L16) };
    let mut enc = new_encoder(&params, &CodecSettings::default(), 8_000, 160).unwrap();
    let mut dec = new_decoder(&params, 8_000, 160).unwrap();
    let pcm: Vec<i16> = (0..160).map(|i| (i * 409 - 32_768) as i16).collect();
    let mut payload = [0u8; 320];
    assert_eq!(enc.encode(&pcm, &mut payload), Ok(320));
    assert_eq!(&payload[..4], &[0x80, 0x00, 0x81, 0x99]);
    let mut out = [0i16; 160];
    assert_eq!(dec.decode(&payload, &mut out), Ok(160));
    assert_eq!(&out[..], &pcm[..]);
}

#[test]
fn opus_fec_recovers_a_lost_frame() {
    let params = CodecParams::new(CodecKind::Opus);
    let settings = CodecSettings { fec: true, expected_loss_percent: 20, ..Default::default() };
    let mut enc = new_encoder(&params, &settings, 48_000, 960).unwrap();
    let mut sine = SineGenerator::new(700.0, 48_000, 8_000.0);
    let mut pcm = vec![0i16; 960];
    let mut packets = Vec::new();
    for _ in 0..30 {
        sine.fill(&mut pcm);
        let mut payload = vec![0u8; MAX_PAYLOAD];
        let n = enc.encode(&pcm, &mut payload).unwrap();
        payload.truncate(n);
        packets.push(payload);
    }
    let mut out = vec![0i16; 960];
    let mut dec = new_decoder(&params, 48_000, 960).unwrap();
    for p in &packets[..20] {
        dec.decode(p, &mut out).unwrap();
    }
    let before = tone_dbfs(&out, 48_000, 700.0);
    // Frame 20 is lost; frame 21 carries its FEC.
    dec.decode_fec(&packets[21], &mut out);
    let recovered = tone_dbfs(&out, 48_000, 700.0);
    assert!((recovered - before).abs() < 3.0, "FEC restores the tone: {recovered} vs {before}");
    assert_eq!(dec.decode(&packets[21], &mut out), Ok(960), "then the next frame decodes");
    assert!((tone_dbfs(&out, 48_000, 700.0) - before).abs() < 3.0);
}

#[test]
fn fec_on_a_packet_without_fec_still_fills_the_frame() {
    let params = CodecParams::new(CodecKind::Opus);
    let settings = CodecSettings { fec: false, ..Default::default() };
    let mut enc = new_encoder(&params, &settings, 48_000, 960).unwrap();
    let mut dec = new_decoder(&params, 48_000, 960).unwrap();
    let (mut pcm, mut payload, mut out) = (vec![0i16; 960], [0u8; MAX_PAYLOAD], [1i16; 960]);
    SineGenerator::new(500.0, 48_000, 4_000.0).fill(&mut pcm);
    let n = enc.encode(&pcm, &mut payload).unwrap();
    dec.decode_fec(&payload[..n], &mut out);
    dec.decode_fec(&[], &mut out);
    assert_eq!(dec.decode(&payload[..n], &mut out), Ok(960));
}

#[test]
fn opus_refuses_packets_of_another_duration() {
    let params = CodecParams::new(CodecKind::Opus);
    let mut dec = new_decoder(&params, 48_000, 960).unwrap();
    let mut out = vec![0i16; 960];
    for frame in [480, 2_880] {
        let mut enc = new_encoder(&params, &CodecSettings::default(), 48_000, frame).unwrap();
        let mut payload = [0u8; MAX_PAYLOAD];
        let n = enc.encode(&vec![0i16; frame], &mut payload).unwrap();
        assert_eq!(
            dec.decode(&payload[..n], &mut out),
            Err(CodecError::FrameMismatch { expected: 960, found: frame })
        );
    }
    // 120 ms by hand: TOC config 3 (SILK NB 60 ms), code 3, two frames.
    let long = [(3 << 3) | 3, 2, 0, 0];
    assert_eq!(
        dec.decode(&long, &mut out),
        Err(CodecError::FrameMismatch { expected: 960, found: 5_760 })
    );
    // Code 3 with a frame count of zero holds nothing.
    assert!(dec.decode(&[3, 0], &mut out).is_err());
    assert!(matches!(dec.decode(&[], &mut out), Err(CodecError::InvalidPayload(_))));
}

#[test]
fn short_buffers_and_wrong_frames_are_errors() {
    for kind in KINDS {
        for rate in [8_000, 16_000, 48_000] {
            let frame = (rate / 50) as usize;
            let params = params(kind, rate);
            let mut enc = new_encoder(&params, &CodecSettings::default(), rate, frame).unwrap();
            let mut dec = new_decoder(&params, rate, frame).unwrap();
            let mut payload = [0u8; MAX_PAYLOAD];
            let n = enc.encode(&vec![100; frame], &mut payload).unwrap();
            let mut short = vec![0i16; frame - 1];
            let err = dec.decode(&payload[..n], &mut short);
            assert!(matches!(err, Err(CodecError::InvalidInput(_))), "{kind:?} {rate}: {err:?}");
            dec.conceal(&mut short);
            dec.decode_fec(&payload[..n], &mut short);
            let err = enc.encode(&vec![0; frame + 1], &mut payload);
            assert!(matches!(err, Err(CodecError::InvalidInput(_))), "{kind:?} {rate}: {err:?}");
        }
    }
}

#[test]
fn unusable_parameters_are_refused() {
    let opus = CodecParams::new(CodecKind::Opus);
    assert!(new_decoder(&opus, 44_100, 882).is_err(), "not an Opus rate");
    assert!(new_decoder(&opus, 48_000, 1_000).is_err(), "not an Opus frame");
    assert!(new_encoder(&opus, &CodecSettings::default(), 48_000, 0).is_err());
    let bad_pt = CodecParams { payload_type: 128, ..opus };
    assert!(new_decoder(&bad_pt, 48_000, 960).is_err());
    let pcmu_16k = CodecParams { clock_rate: 16_000, ..CodecParams::new(CodecKind::Pcmu) };
    assert!(new_decoder(&pcmu_16k, 48_000, 960).is_err());
    let l16_48k = CodecParams { clock_rate: 48_000, ..CodecParams::new(CodecKind::L16) };
    assert!(new_encoder(&l16_48k, &CodecSettings::default(), 48_000, 960).is_err());
}

proptest! {
    #[test]
    fn random_payloads_never_panic(
        payload in prop::collection::vec(any::<u8>(), 0..MAX_PAYLOAD),
        rate in prop::sample::select(vec![8_000u32, 16_000, 48_000]),
    ) {
        let frame = (rate / 50) as usize;
        let mut out = vec![0i16; frame + 7];
        for kind in KINDS {
            let mut dec = new_decoder(&params(kind, rate), rate, frame).unwrap();
            out[frame..].fill(42);
            if let Ok(n) = dec.decode(&payload, &mut out) {
                prop_assert_eq!(n, frame);
            }
            dec.conceal(&mut out);
            dec.decode_fec(&payload, &mut out);
            prop_assert!(out[frame..].iter().all(|&s| s == 42), "wrote past the frame");
        }
    }
}

/// A lost G.711 frame in a steady tone: concealed by repeating the pitch, not by silence,
/// and the recovery does not click. (Before concealment, the frame was silence: its
/// residual against the tone was +200 dB.)
#[test]
fn g711_loss_is_concealed_by_pitch_repetition() {
    use crate::dsp::{tone_residual_db, SineGenerator};
    for kind in [CodecKind::Pcmu, CodecKind::Pcma] {
        let params = CodecParams::new(kind);
        let mut enc = new_encoder(&params, &CodecSettings::default(), 48_000, 960).unwrap();
        let mut dec = new_decoder(&params, 48_000, 960).unwrap();
        let mut tone = SineGenerator::new(440.0, 48_000, 8_000.0);
        let (mut frame, mut out, mut payload) = (vec![0i16; 960], vec![0i16; 960], [0u8; 200]);
        let mut heard = Vec::new();
        for i in 0..12 {
            tone.fill(&mut frame);
            let n = enc.encode(&frame, &mut payload).unwrap();
            if i == 8 {
                dec.conceal(&mut out); // frame 8 is lost
            } else {
                dec.decode(&payload[..n], &mut out).unwrap();
            }
            heard.extend_from_slice(&out);
        }
        // 5 ms windows from frame 7 to frame 10: the loss and both its edges.
        let worst = heard[7 * 960..10 * 960]
            .chunks_exact(240)
            .map(|w| tone_residual_db(w, 48_000, 440.0))
            .fold(f64::MIN, f64::max);
        eprintln!("{kind:?}: worst window around the loss {worst:.1} dB");
        assert!(worst < -15.0, "{kind:?}: worst window around the loss {worst:.1} dB");
    }
}
