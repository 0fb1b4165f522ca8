//! Four participants each say a distinct tone; with relationships applied, a Goertzel
//! filter on each listener's output finds exactly the tones it should hear, at least 40 dB
//! above the ones it should not.

use std::f64::consts::PI;

use mixminus_core::{Conference, ConferenceConfig, JoinOptions, ParticipantId, Relationship};

const TONES_HZ: [f64; 4] = [440.0, 700.0, 1100.0, 1700.0];
const RATE: f64 = 48_000.0;
const MIN_SEPARATION_DB: f64 = 40.0;

/// Power of `freq` in `samples` (Goertzel), in dB relative to full scale.
fn tone_db(samples: &[i16], freq: f64) -> f64 {
    let coeff = 2.0 * (2.0 * PI * freq / RATE).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = x as f64 / 32768.0 + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let amplitude = 2.0 * power.sqrt() / samples.len() as f64;
    20.0 * amplitude.max(1e-12).log10()
}

/// Mixes `ticks` frames of everyone's tone and returns each listener's output, after a
/// warm-up long enough for talk detection's attack.
fn listen(conf: &mut Conference, ids: &[ParticipantId], ticks: usize) -> Vec<Vec<i16>> {
    let n = conf.frame_samples();
    let mut heard = vec![Vec::with_capacity(n * ticks); ids.len()];
    let mut phase = vec![0usize; ids.len()];
    for t in 0..ticks + 10 {
        for (i, &id) in ids.iter().enumerate() {
            let frame = conf.input_mut(id).unwrap();
            for s in frame.iter_mut() {
                *s = (6000.0 * (2.0 * PI * TONES_HZ[i] * phase[i] as f64 / RATE).sin()) as i16;
                phase[i] += 1;
            }
        }
        conf.tick();
        if t >= 10 {
            for (i, &id) in ids.iter().enumerate() {
                heard[i].extend_from_slice(conf.output(id).unwrap().pcm);
            }
        }
    }
    heard
}

/// Asserts listener `i` hears exactly the tones of `expected` (indices into the tones).
fn assert_hears(heard: &[i16], listener: usize, expected: &[usize]) {
    let levels: Vec<f64> = TONES_HZ.iter().map(|&f| tone_db(heard, f)).collect();
    let present = expected.iter().map(|&k| levels[k]).fold(f64::INFINITY, f64::min);
    let absent = (0..4).filter(|k| !expected.contains(k)).map(|k| levels[k]).fold(-300.0, f64::max);
    assert!(
        present - absent >= MIN_SEPARATION_DB,
        "listener {listener}: expected tones {expected:?}, levels {levels:.1?} dBFS"
    );
}

#[test]
fn each_listener_hears_exactly_the_expected_tones() {
    let mut conf = Conference::new(ConferenceConfig::default()).unwrap();
    let ids: Vec<_> = (0..4).map(|_| conf.join(JoinOptions::default()).unwrap()).collect();
    let [a, b, c, d] = [ids[0], ids[1], ids[2], ids[3]];

    // Plain mix-minus first.
    let heard = listen(&mut conf, &ids, 25);
    for (i, expected) in [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]].iter().enumerate() {
        assert_hears(&heard[i], i, expected);
    }

    // a stops hearing b; d stops hearing c (relate(c, d, mute)).
    conf.relate(&[a], &[b], Relationship::DEAF).unwrap();
    conf.relate(&[c], &[d], Relationship::MUTE).unwrap();
    let heard = listen(&mut conf, &ids, 25);
    assert_hears(&heard[0], 0, &[2, 3]);
    assert_hears(&heard[1], 1, &[0, 2, 3]);
    assert_hears(&heard[2], 2, &[0, 1, 3]);
    assert_hears(&heard[3], 3, &[0, 1]);

    // Clear brings both back.
    conf.relate(&[a], &[b], Relationship::CLEAR).unwrap();
    conf.relate(&[c], &[d], Relationship::CLEAR).unwrap();
    let heard = listen(&mut conf, &ids, 25);
    assert_hears(&heard[0], 0, &[1, 2, 3]);
    assert_hears(&heard[3], 3, &[0, 1, 2]);
}
