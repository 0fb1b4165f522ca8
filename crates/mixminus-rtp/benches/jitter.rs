//! The per-participant media hot path, one 20 ms frame at a time: the playout buffer
//! (insert + pull, decoding included), RTP parsing, and the codecs — Opus decode/encode at 48 kHz against
//! G.711 µ-law with rubato resampling to and from 48 kHz, and G.711 at its own 8 kHz as the
//! no-resampling baseline, all measured in the same run.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use mixminus_rtp::dsp::two_tone_frames;
use mixminus_rtp::{
    new_decoder, new_encoder, write_rtp_header, CodecKind, CodecParams, CodecSettings,
    JitterBuffer, JitterConfig, RtpHeader, RtpPacket,
};

const RATE: u32 = 48_000;

/// Real Opus payloads of speech-like audio, one per 20 ms frame.
fn opus_payloads(count: usize) -> Vec<Bytes> {
    let params = CodecParams::new(CodecKind::Opus);
    let mut encoder = new_encoder(&params, &CodecSettings::default(), RATE, 960).unwrap();
    let mut out = vec![0u8; 1500];
    two_tone_frames(RATE, 960, count)
        .iter()
        .map(|pcm| {
            let n = encoder.encode(pcm, &mut out).unwrap();
            Bytes::copy_from_slice(&out[..n])
        })
        .collect()
}

/// The playout buffer decodes, so its cost is measured against the bare Opus decode in the
/// same run: in order (nothing to stretch), and with 0–40 ms of arrival jitter (the
/// buffer stretches now and then).
fn jitter(c: &mut Criterion) {
    let mut group = c.benchmark_group("jitter");
    let payloads = opus_payloads(50);
    let params = CodecParams::new(CodecKind::Opus);
    let mut pcm = vec![0i16; 960];
    group.bench_function("opus_decode_only", |b| {
        let mut decoder = new_decoder(&params, RATE, 960).unwrap();
        let mut i = 0usize;
        b.iter(|| {
            i += 1;
            black_box(decoder.decode(&payloads[i % payloads.len()], &mut pcm).ok())
        });
    });
    group.bench_function("insert_pull_opus_in_order", |b| {
        let t0 = Instant::now();
        let mut decoder = new_decoder(&params, RATE, 960).unwrap();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 20, RATE, 960);
        let mut seq = 0u64;
        b.iter(|| {
            let now = t0 + Duration::from_millis(20 * seq);
            let payload = payloads[seq as usize % payloads.len()].clone();
            jb.insert(now, seq, (seq * 960) as u32, payload);
            seq += 1;
            black_box(jb.pull(now, decoder.as_mut(), false, &mut pcm))
        });
    });
    group.bench_function("insert_pull_opus_jittered", |b| {
        // Each packet arrives 0–40 ms late (a fixed pseudo-random pattern).
        let t0 = Instant::now();
        let mut decoder = new_decoder(&params, RATE, 960).unwrap();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 20, RATE, 960);
        let mut pending: std::collections::VecDeque<(u64, u64)> = Default::default();
        let mut tick = 0u64;
        b.iter(|| {
            let late = (tick.wrapping_mul(2_654_435_761) >> 7) % 40;
            pending.push_back((20 * tick + late, tick));
            let now_ms = 20 * tick;
            while let Some(&(arrival, seq)) = pending.front().filter(|(a, _)| *a <= now_ms) {
                pending.pop_front();
                let payload = payloads[seq as usize % payloads.len()].clone();
                let at = t0 + Duration::from_millis(arrival);
                jb.insert(at, seq, (seq * 960) as u32, payload);
            }
            tick += 1;
            black_box(jb.pull(
                t0 + Duration::from_millis(now_ms),
                decoder.as_mut(),
                false,
                &mut pcm,
            ))
        });
    });
    group.finish();
}

fn packet(c: &mut Criterion) {
    let mut datagram = Vec::new();
    let header =
        RtpHeader { payload_type: 111, marker: false, sequence: 1, timestamp: 960, ssrc: 7 };
    write_rtp_header(&mut datagram, &header);
    datagram.extend_from_slice(&[0x55; 80]);
    c.bench_function("rtp/parse", |b| {
        b.iter(|| {
            let p = RtpPacket::parse(black_box(&datagram)).map(|p| (p.sequence(), p.payload()));
            black_box(p.map(|(s, p)| (s, p.len())))
        })
    });
}

/// One second of a two-tone signal, in frames at `rate`.
fn frames(rate: u32) -> Vec<Vec<i16>> {
    two_tone_frames(rate, (rate / 50) as usize, 50)
}

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec_20ms");
    let settings = CodecSettings::default();
    for (name, kind, rate) in [
        ("opus_48k", CodecKind::Opus, RATE),
        ("pcmu_8k_resampled_48k", CodecKind::Pcmu, RATE),
        ("pcmu_8k_native", CodecKind::Pcmu, 8_000),
    ] {
        let params = CodecParams::new(kind);
        let frame = (rate / 50) as usize;
        let pcm = frames(rate);
        // Encoders and decoders are built once: construction cost is not per frame.
        let mut enc = new_encoder(&params, &settings, rate, frame).expect("valid parameters");
        let payloads: Vec<Vec<u8>> = pcm
            .iter()
            .map(|f| {
                let mut out = vec![0u8; 1500];
                let n = enc.encode(f, &mut out).expect("one frame");
                out.truncate(n);
                out
            })
            .collect();
        let mut out = vec![0u8; 1500];
        let mut i = 0;
        group.bench_function(format!("{name}/encode"), |b| {
            b.iter(|| {
                i = (i + 1) % pcm.len();
                black_box(enc.encode(&pcm[i], &mut out))
            })
        });
        let mut dec = new_decoder(&params, rate, frame).expect("valid parameters");
        let mut decoded = vec![0i16; frame];
        group.bench_function(format!("{name}/decode"), |b| {
            b.iter(|| {
                i = (i + 1) % payloads.len();
                black_box(dec.decode(&payloads[i], &mut decoded))
            })
        });
        if kind == CodecKind::Opus {
            group.bench_function(format!("{name}/conceal"), |b| {
                b.iter(|| {
                    dec.conceal(&mut decoded);
                    black_box(decoded[0])
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, jitter, packet, codec);
criterion_main!(benches);
