use super::*;

fn payload(seq: u64) -> Bytes {
    Bytes::copy_from_slice(&seq.to_be_bytes())
}

fn seq_of(p: &Playout) -> Option<u64> {
    match p {
        Playout::Packet(b) => Some(u64::from_be_bytes(b[..8].try_into().unwrap())),
        _ => None,
    }
}

#[test]
fn in_order_plays_in_order() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default(), 20, 48_000);
    assert_eq!(jb.pop(t0), Playout::Empty, "nothing yet");
    for s in 100..110 {
        let now = t0 + Duration::from_millis(20 * (s - 100));
        assert_eq!(jb.insert(now, s, s as u32 * 960, payload(s)), InsertOutcome::Accepted);
        assert_eq!(seq_of(&jb.pop(now)), Some(s));
    }
}

#[test]
fn reorder_duplicate_late_and_loss() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::new(3, 10), 20, 48_000);
    for s in [1, 3, 2] {
        jb.insert(t0, s, 0, payload(s));
    }
    assert_eq!(jb.insert(t0, 2, 0, payload(2)), InsertOutcome::Duplicate);
    assert_eq!(seq_of(&jb.pop(t0)), Some(1));
    assert_eq!(seq_of(&jb.pop(t0)), Some(2));
    jb.insert(t0, 5, 0, payload(5));
    assert_eq!(seq_of(&jb.pop(t0)), Some(3));
    // 4 is missing, 5 is buffered: its payload is offered for FEC.
    assert_eq!(jb.pop(t0), Playout::Lost { fec_from: Some(payload(5)) });
    assert_eq!(jb.insert(t0, 4, 0, payload(4)), InsertOutcome::Late);
    assert_eq!(seq_of(&jb.pop(t0)), Some(5));
    let stats = jb.stats();
    assert_eq!((stats.duplicates, stats.late, stats.lost), (1, 1, 1));
}

#[test]
fn pause_then_resume_does_not_count_resumed_packets_late() {
    let t0 = Instant::now();
    let at = |frame: u64| t0 + Duration::from_millis(20 * frame);
    let mut jb = JitterBuffer::new(JitterConfig::default(), 20, 48_000);
    for s in 0..5 {
        jb.insert(at(s), s, s as u32 * 960, payload(s));
        jb.pop(at(s));
    }
    // The sender pauses (DTX): a few concealed frames, then "not sending".
    let pops: Vec<_> = (5..11).map(|t| jb.pop(at(t))).collect();
    assert!(matches!(pops[0], Playout::Lost { .. }));
    assert_eq!(pops[5], Playout::Empty);
    // It resumes with the next sequence number, much later: not late, played at once.
    assert_eq!(jb.insert(at(50), 5, 50 * 960, payload(5)), InsertOutcome::Accepted);
    assert_eq!(seq_of(&jb.pop(at(50))), Some(5));
}

#[test]
fn a_flood_of_far_sequence_numbers_stays_bounded() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default(), 20, 48_000);
    for s in 0..100_000u64 {
        jb.insert(t0, s * 7, 0, payload(s));
        assert!(jb.depth() <= CAPACITY * 7);
    }
    for _ in 0..200 {
        jb.pop(t0);
    }
    assert!(jb.depth() <= CAPACITY * 7);
    assert_eq!(jb.slots.len(), CAPACITY);
}

/// A deterministic netem: latency, jitter, loss, duplication and a skewed sender clock,
/// in simulated time.
fn simulate(
    loss: f64,
    jitter_ms: f64,
    duplicate: f64,
    clock_skew: f64,
    seconds: u64,
) -> (JitterBuffer, usize, u64) {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::new(1, 10), 20, 48_000);
    let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
    let mut rand = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng >> 11) as f64 / (1u64 << 53) as f64
    };
    // (arrival µs, seq)
    let mut arrivals: Vec<(u64, u64)> = Vec::new();
    let frames = seconds * 50;
    for seq in 0..frames {
        let sent = (seq as f64 * 20_000.0 / (1.0 + clock_skew)) as u64;
        if rand() < loss {
            continue;
        }
        let copies = if rand() < duplicate { 2 } else { 1 };
        for _ in 0..copies {
            arrivals.push((sent + 30_000 + (rand() * jitter_ms * 1000.0) as u64, seq));
        }
    }
    arrivals.sort_unstable();
    let (mut played, mut max_depth, mut i) = (0usize, 0usize, 0usize);
    let mut tick = 0u64;
    while tick * 20_000 < seconds * 1_000_000 + 500_000 {
        let now_us = tick * 20_000;
        while i < arrivals.len() && arrivals[i].0 <= now_us {
            let (at, seq) = arrivals[i];
            jb.insert(t0 + Duration::from_micros(at), seq, seq as u32 * 960, payload(seq));
            i += 1;
        }
        if let Playout::Packet(_) = jb.pop(t0 + Duration::from_micros(now_us)) {
            played += 1;
        }
        max_depth = max_depth.max(jb.depth());
        tick += 1;
    }
    (jb, max_depth, played as u64)
}

#[test]
fn netem_loss_jitter_duplicates() {
    let (jb, max_depth, played) = simulate(0.10, 40.0, 0.05, 0.0, 20);
    let s = jb.stats();
    assert!(max_depth <= 10 + 1, "bounded by max_depth: {max_depth}");
    assert!(s.duplicates > 0 && s.lost > 0, "{s:?}");
    // Every frame is played, lost, late or dropped: the accounting adds up.
    assert!(played + s.lost + s.late + s.dropped >= 1000 * 85 / 100, "{played} {s:?}");
    assert!(played >= 800, "most frames play: {played}");
}

#[test]
fn sender_clock_drift_neither_grows_nor_starves() {
    for skew in [0.001, -0.001, 0.01, -0.01] {
        let (jb, max_depth, played) = simulate(0.0, 10.0, 0.0, skew, 60);
        assert!(max_depth <= 10, "skew {skew}: depth {max_depth}");
        assert!(jb.depth() <= 4, "skew {skew}: settles near target, depth {}", jb.depth());
        let expected = 3000.0 * (1.0 + skew);
        assert!((played as f64) > expected * 0.97, "skew {skew}: played {played} of {expected}");
    }
}
