//! Media hot paths: the jitter buffer, encode fan-out (one encoder per mix group against one
//! per listener, in the same run), and a full tick with codecs (decode the talkers, mix,
//! encode once per group, packetise for every listener).

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mixminus::core::{
    Conference, ConferenceConfig, GroupId, JoinOptions, ParticipantId, TalkConfig,
};
use mixminus::rtp::dsp::two_tone_frames;
use mixminus::rtp::{
    new_decoder, new_encoder, write_rtp_header, AudioDecoder, AudioEncoder, CodecKind, CodecParams,
    CodecSettings, JitterBuffer, JitterConfig, RtpHeader,
};

const FRAME: usize = 960;

fn jitter(c: &mut Criterion) {
    let mut group = c.benchmark_group("jitter");
    let payload = Bytes::new();
    group.bench_function("insert_pull_silence", |b| {
        // Silence-marked (empty) payloads: the buffer's own cost, no decoding.
        let t0 = Instant::now();
        let mut decoder = new_decoder(&CodecParams::new(CodecKind::Opus), 48_000, FRAME).unwrap();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 20, 48_000, FRAME);
        let mut pcm = vec![0i16; FRAME];
        let mut seq = 0u64;
        b.iter(|| {
            let now = t0 + Duration::from_millis(20 * seq);
            jb.insert(now, seq, (seq * 960) as u32, payload.clone());
            seq += 1;
            jb.pull(now, decoder.as_mut(), false, &mut pcm)
        });
    });
    group.finish();
}

fn opus_encoder() -> Box<dyn AudioEncoder + Send> {
    new_encoder(&CodecParams::new(CodecKind::Opus), &CodecSettings::default(), 48_000, FRAME)
        .unwrap()
}

fn speech_like_frames(count: usize) -> Vec<Vec<i16>> {
    two_tone_frames(48_000, FRAME, count)
}

/// 1000 listeners hear 3 talkers: encode once per group (4 encodes) versus once per
/// listener (1003 encodes), the way a mixer without groups must.
fn fanout(c: &mut Criterion) {
    let mut group = c.benchmark_group("fanout");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    let frames = speech_like_frames(4);
    let listeners = 1_000;
    let mut out = vec![0u8; 1500];
    let mut shared: Vec<_> = (0..4).map(|_| opus_encoder()).collect();
    group.bench_function("shared/1000", |b| {
        b.iter(|| {
            let mut payloads: Vec<Bytes> = Vec::with_capacity(4);
            for (enc, pcm) in shared.iter_mut().zip(&frames) {
                let n = enc.encode(pcm, &mut out).unwrap();
                payloads.push(Bytes::copy_from_slice(&out[..n]));
            }
            // Fan out: every listener gets a handle to its group's bytes.
            let mut total = 0;
            for l in 0..listeners {
                total += payloads[l % 4].clone().len();
            }
            total
        });
    });
    let mut per_listener: Vec<_> = (0..listeners).map(|_| opus_encoder()).collect();
    group.bench_function("per_listener/1000", |b| {
        b.iter(|| {
            let mut total = 0;
            for (l, enc) in per_listener.iter_mut().enumerate() {
                total += enc.encode(&frames[l % 4], &mut out).unwrap();
            }
            total
        });
    });
    group.finish();
}

struct Media {
    conference: Conference,
    ids: Vec<ParticipantId>,
    decoders: Vec<Box<dyn AudioDecoder + Send>>,
    talker_packets: Vec<Vec<u8>>,
    encoders: std::collections::HashMap<GroupId, Box<dyn AudioEncoder + Send>>,
    encoded: std::collections::HashMap<GroupId, Bytes>,
    datagram: Vec<u8>,
}

impl Media {
    fn new(n: usize, talkers: usize) -> Self {
        let config = ConferenceConfig {
            talk: TalkConfig { energy_threshold: 0, ..Default::default() },
            ..Default::default()
        };
        let mut conference = Conference::new(config).unwrap();
        let ids: Vec<_> =
            (0..n).map(|_| conference.join(JoinOptions::default()).unwrap()).collect();
        let mut enc = opus_encoder();
        let mut out = vec![0u8; 1500];
        let talker_packets = speech_like_frames(talkers)
            .iter()
            .map(|pcm| {
                let len = enc.encode(pcm, &mut out).unwrap();
                out[..len].to_vec()
            })
            .collect();
        let decoders = (0..talkers)
            .map(|_| new_decoder(&CodecParams::new(CodecKind::Opus), 48_000, FRAME).unwrap())
            .collect();
        Self {
            conference,
            ids,
            decoders,
            talker_packets,
            encoders: Default::default(),
            encoded: Default::default(),
            datagram: Vec::with_capacity(1500),
        }
    }

    /// One tick as the runtime runs it, minus the sockets.
    fn tick(&mut self) -> usize {
        for (i, dec) in self.decoders.iter_mut().enumerate() {
            let input = self.conference.input_mut(self.ids[i]).unwrap();
            dec.decode(&self.talker_packets[i], input).unwrap();
        }
        self.conference.tick();
        self.encoded.clear();
        let mut out = vec![0u8; 1500];
        let mut bytes_out = 0;
        for (seq, (_, group)) in self.conference.listener_groups().enumerate() {
            let payload = match self.encoded.get(&group) {
                Some(p) => p.clone(),
                None => {
                    let enc = self.encoders.entry(group).or_insert_with(opus_encoder);
                    let n =
                        enc.encode(self.conference.group_pcm(group).unwrap(), &mut out).unwrap();
                    let p = Bytes::copy_from_slice(&out[..n]);
                    self.encoded.insert(group, p.clone());
                    p
                }
            };
            self.datagram.clear();
            write_rtp_header(
                &mut self.datagram,
                &RtpHeader {
                    payload_type: 111,
                    marker: false,
                    sequence: seq as u16,
                    timestamp: 0,
                    ssrc: 1,
                },
            );
            self.datagram.extend_from_slice(&payload);
            bytes_out += self.datagram.len();
        }
        bytes_out
    }
}

fn media_tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("media_tick");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    for n in [100, 1_000] {
        let mut media = Media::new(n, 3);
        media.tick();
        group.bench_with_input(BenchmarkId::new("opus", format!("{n}_3")), &n, |b, _| {
            b.iter(|| media.tick())
        });
    }
    group.finish();
}

criterion_group!(benches, jitter, fanout, media_tick);
criterion_main!(benches);
