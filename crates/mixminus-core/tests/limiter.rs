//! The limiter against the clamp it replaced: four full-scale talkers.

use mixminus_core::{Conference, ConferenceConfig, JoinOptions, TalkConfig};

/// Power of `freq` in `x` (Goertzel, rectangular window over whole cycles).
fn power(x: &[f64], rate: f64, freq: f64) -> f64 {
    let coeff = 2.0 * (std::f64::consts::TAU * freq / rate).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &v in x {
        let s0 = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

/// Total harmonic distortion of a `freq` tone: harmonics 2..=15 over the fundamental, dB.
fn thd_db(x: &[i16], rate: f64, freq: f64) -> f64 {
    let x: Vec<f64> = x.iter().map(|&s| f64::from(s)).collect();
    let harmonics: f64 = (2..=15).map(|k| power(&x, rate, freq * k as f64)).sum();
    10.0 * (harmonics / power(&x, rate, freq)).log10()
}

#[test]
fn four_full_scale_talkers_are_not_clipped_and_distort_less_than_a_clamp() {
    let config = ConferenceConfig {
        talk: TalkConfig { energy_threshold: 0, ..Default::default() },
        ..Default::default()
    };
    let mut conf = Conference::new(config).unwrap();
    let talkers: Vec<_> = (0..4).map(|_| conf.join(JoinOptions::default()).unwrap()).collect();
    let listener = conf.join(JoinOptions::default()).unwrap();
    let n = conf.frame_samples();
    let (rate, freq) = (48_000.0, 300.0); // 300 Hz: whole cycles in every 20 ms frame
    let (mut heard, mut clamped) = (Vec::new(), Vec::new());
    for tick in 0..50 {
        let frame: Vec<i16> = (0..n)
            .map(|i| {
                let t = (tick * n + i) as f64 / rate;
                (32_767.0 * (std::f64::consts::TAU * freq * t).sin()).round() as i16
            })
            .collect();
        for &t in &talkers {
            conf.push_input(t, &frame).unwrap();
        }
        conf.tick();
        heard.extend_from_slice(conf.output(listener).unwrap().pcm);
        clamped.extend(frame.iter().map(|&s| (i32::from(s) * 4).clamp(-32_768, 32_767) as i16));
    }
    let peak = heard.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!(peak < 32_767, "a sample reached full scale: {peak}");
    let clipped = heard.iter().filter(|s| s.unsigned_abs() >= 32_767).count();
    assert_eq!(clipped, 0);
    let (soft, hard) = (thd_db(&heard, rate, freq), thd_db(&clamped, rate, freq));
    eprintln!("THD: limiter {soft:.1} dB, clamp {hard:.1} dB");
    assert!(soft < hard - 20.0, "limiter {soft:.1} dB vs clamp {hard:.1} dB");
}
