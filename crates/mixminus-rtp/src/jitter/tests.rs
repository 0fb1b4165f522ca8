use proptest::prelude::*;

use super::*;

fn payload(seq: u64) -> Bytes {
    Bytes::copy_from_slice(&seq.to_be_bytes())
}

fn seq_of(p: &Playout) -> Option<u64> {
    match p {
        Playout::Packet(b) => Some(u64::from_be_bytes(b[..8].try_into().ok()?)),
        _ => None,
    }
}

fn at(t0: Instant, frame: u64) -> Instant {
    t0 + Duration::from_millis(20 * frame)
}

/// A buffer fed `seqs` at `t0`, for tests that only care about order. (Equal media
/// timestamps, so arriving together is not jitter.)
fn fed(config: JitterConfig, seqs: &[u64]) -> (JitterBuffer, Instant) {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(config, 20, 48_000);
    for &s in seqs {
        jb.insert(t0, s, 0, payload(s));
    }
    (jb, t0)
}

impl JitterBuffer {
    /// Payloads held at or after the playout point.
    fn buffered(&self) -> u64 {
        let Some(next) = self.next else { return 0 };
        (next..=self.highest).filter(|&s| self.slot(s).payload(s).is_some()).count() as u64
    }
}

#[test]
fn in_order_plays_in_order() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default(), 20, 48_000);
    assert_eq!(jb.pop(t0), Playout::Empty, "nothing yet");
    for s in 100..110 {
        let now = at(t0, s - 100);
        assert_eq!(jb.insert(now, s, s as u32 * 960, payload(s)), InsertOutcome::Accepted);
        assert_eq!(seq_of(&jb.pop(now)), Some(s));
    }
    let stats = jb.stats();
    assert_eq!((stats.received, stats.lost, stats.concealed, stats.depth), (10, 0, 0, 0));
    assert_eq!(stats.target_depth, 1, "no jitter: the minimum");
}

#[test]
fn waits_for_the_minimum_depth_before_playing() {
    let (mut jb, t0) = fed(JitterConfig::new(3, 10), &[1, 2]);
    assert_eq!(jb.pop(t0), Playout::Empty);
    jb.insert(t0, 3, 0, payload(3));
    assert_eq!(seq_of(&jb.pop(t0)), Some(1));
}

#[test]
fn reorder_duplicate_late_and_loss() {
    let (mut jb, t0) = fed(JitterConfig::new(3, 10), &[1, 3, 2]);
    assert_eq!(jb.insert(t0, 2, 0, payload(2)), InsertOutcome::Duplicate);
    assert_eq!(seq_of(&jb.pop(t0)), Some(1));
    assert_eq!(seq_of(&jb.pop(t0)), Some(2));
    jb.insert(t0, 5, 0, payload(5));
    jb.insert(t0, 6, 0, payload(6));
    assert_eq!(seq_of(&jb.pop(t0)), Some(3));
    // 4 is missing with the target depth behind it: lost. 5 is offered for FEC.
    assert_eq!(jb.pop(t0), Playout::Lost { fec_from: Some(payload(5)) });
    assert_eq!(jb.insert(t0, 4, 0, payload(4)), InsertOutcome::Late);
    assert_eq!(seq_of(&jb.pop(t0)), Some(5));
    assert_eq!(jb.insert(t0, 3, 0, payload(3)), InsertOutcome::Duplicate, "played already");
    let stats = jb.stats();
    assert_eq!((stats.duplicates, stats.late, stats.lost, stats.concealed), (2, 1, 1, 0));
}

#[test]
fn a_hole_below_the_target_is_waited_for_once() {
    let (mut jb, t0) = fed(JitterConfig::new(3, 10), &[1, 2, 3, 5]);
    assert_eq!(seq_of(&jb.pop(t0)), Some(1));
    assert_eq!(seq_of(&jb.pop(t0)), Some(2));
    assert_eq!(seq_of(&jb.pop(t0)), Some(3));
    // 4 is missing with only 5 behind it: probably late, so hold a frame for it.
    assert_eq!(jb.pop(t0), Playout::Lost { fec_from: None });
    // It never comes: skipped, not waited for again, and no latency is left behind.
    assert_eq!(seq_of(&jb.pop(t0)), Some(5));
    let stats = jb.stats();
    assert_eq!((stats.concealed, stats.lost, stats.depth), (1, 1, 0));

    // This time it comes a frame late: it plays, and the buffer is a frame deeper.
    let (mut jb, t0) = fed(JitterConfig::new(3, 10), &[1, 2, 3, 5]);
    for _ in 0..3 {
        jb.pop(t0);
    }
    assert_eq!(jb.pop(t0), Playout::Lost { fec_from: None });
    jb.insert(t0, 4, 0, payload(4));
    assert_eq!(seq_of(&jb.pop(t0)), Some(4));
    assert_eq!(seq_of(&jb.pop(t0)), Some(5));
    assert_eq!((jb.stats().concealed, jb.stats().lost), (1, 0));
}

#[test]
fn a_late_packet_raises_the_target_for_a_while() {
    let (mut jb, t0) = fed(JitterConfig::new(1, 10), &[0, 1, 2, 3]);
    for _ in 0..4 {
        jb.pop(t0);
    }
    assert_eq!(jb.target_depth(), 1);
    // 4 went missing and was played as lost (5, 6 arrived); it shows up 2 frames late.
    for s in [5, 6, 7] {
        jb.insert(t0, s, 0, payload(s));
    }
    assert_eq!(jb.pop(t0), Playout::Lost { fec_from: Some(payload(5)) });
    jb.pop(t0);
    assert_eq!(jb.insert(t0, 4, 0, payload(4)), InsertOutcome::Late);
    assert_eq!(jb.target_depth(), 3, "1 + 2 frames late");
    for s in 8..8 + u64::from(LATE_BOOST_DECAY) * 2 {
        jb.insert(t0, s, 0, payload(s));
        jb.pop(t0);
    }
    assert_eq!(jb.target_depth(), 1, "decayed after 20 s without late packets");
}

#[test]
fn a_packet_reordered_ahead_of_the_first_one_still_plays() {
    let (mut jb, t0) = fed(JitterConfig::new(3, 10), &[11, 10, 12]);
    let played: Vec<_> = (0..3).map(|_| seq_of(&jb.pop(t0))).collect();
    assert_eq!(played, [Some(10), Some(11), Some(12)]);
    assert_eq!(jb.insert(t0, 9, 0, payload(9)), InsertOutcome::Late, "not once playing");
}

#[test]
fn burst_loss_offers_fec_only_for_the_frame_before_a_packet() {
    let (mut jb, t0) = fed(JitterConfig::new(1, 10), &[1, 5]);
    assert_eq!(seq_of(&jb.pop(t0)), Some(1));
    assert_eq!(jb.pop(t0), Playout::Lost { fec_from: None });
    assert_eq!(jb.pop(t0), Playout::Lost { fec_from: None });
    assert_eq!(jb.pop(t0), Playout::Lost { fec_from: Some(payload(5)) });
    assert_eq!(seq_of(&jb.pop(t0)), Some(5));
    assert_eq!(jb.stats().lost, 3);
    assert_eq!(jb.stats().concealed, 0);
}

#[test]
fn an_underrun_holds_the_playout_point_so_a_late_packet_still_plays() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default(), 20, 48_000);
    jb.insert(at(t0, 0), 0, 0, payload(0));
    assert_eq!(seq_of(&jb.pop(at(t0, 0))), Some(0));
    // Packet 1 is 30 ms late: one frame is concealed, the stream does not skip it.
    assert_eq!(jb.pop(at(t0, 1)), Playout::Lost { fec_from: None });
    assert_eq!(jb.insert(at(t0, 2), 1, 960, payload(1)), InsertOutcome::Accepted);
    assert_eq!(seq_of(&jb.pop(at(t0, 2))), Some(1));
    let stats = jb.stats();
    assert_eq!((stats.concealed, stats.lost, stats.late), (1, 0, 0));
}

#[test]
fn pause_then_resume_does_not_count_resumed_packets_late() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default(), 20, 48_000);
    for s in 0..5 {
        jb.insert(at(t0, s), s, s as u32 * 960, payload(s));
        jb.pop(at(t0, s));
    }
    // The sender pauses (DTX): a few concealed frames, then "not sending".
    let pops: Vec<_> = (5..11).map(|t| jb.pop(at(t0, t))).collect();
    assert!(matches!(pops[0], Playout::Lost { .. }));
    assert_eq!(pops[5], Playout::Empty);
    // It resumes with the next sequence number, much later: not late, played at once.
    assert_eq!(jb.insert(at(t0, 50), 5, 50 * 960, payload(5)), InsertOutcome::Accepted);
    assert_eq!(seq_of(&jb.pop(at(t0, 50))), Some(5));
    assert_eq!(jb.jitter(), Duration::ZERO, "a DTX pause is not jitter");
}

#[test]
fn resuming_after_a_pause_starts_with_audio_not_holes() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default(), 20, 48_000);
    jb.insert(t0, 0, 0, payload(0));
    jb.pop(t0);
    for _ in 0..5 {
        jb.pop(t0);
    }
    // 1 and 2 were lost on the way; 3 arrives.
    jb.insert(t0, 3, 3 * 960, payload(3));
    assert_eq!(seq_of(&jb.pop(t0)), Some(3));
    assert_eq!(jb.stats().lost, 2);
}

#[test]
fn overflow_drops_the_oldest_and_bounds_the_depth() {
    let (mut jb, t0) = fed(JitterConfig::new(1, 5), &[0, 1, 2, 3, 4]);
    assert_eq!(jb.insert(t0, 7, 0, payload(7)), InsertOutcome::Overflow { dropped: 3 });
    assert_eq!(jb.depth(), 5);
    let played: Vec<_> = (0..5).map(|_| jb.pop(t0)).collect();
    assert_eq!(seq_of(&played[0]), Some(3));
    assert_eq!(seq_of(&played[1]), Some(4));
    assert_eq!(played[2], Playout::Lost { fec_from: None });
    assert_eq!(played[3], Playout::Lost { fec_from: Some(payload(7)) });
    assert_eq!(seq_of(&played[4]), Some(7));
    let stats = jb.stats();
    assert_eq!((stats.overflow, stats.lost), (3, 2));
}

#[test]
fn a_gap_past_everything_buffered_restarts_without_playing_holes() {
    let (mut jb, t0) = fed(JitterConfig::new(2, 5), &[0, 1]);
    assert_eq!(seq_of(&jb.pop(t0)), Some(0));
    assert_eq!(jb.insert(t0, 40, 0, payload(40)), InsertOutcome::Overflow { dropped: 1 });
    assert_eq!(jb.depth(), 1);
    assert_eq!(jb.pop(t0), Playout::Empty, "refilling to the minimum depth");
    jb.insert(t0, 41, 0, payload(41));
    assert_eq!(seq_of(&jb.pop(t0)), Some(40));
    assert_eq!(jb.stats().lost, 38, "2..40 never arrived");
}

#[test]
fn a_far_jump_resyncs() {
    let (mut jb, t0) = fed(JitterConfig::default(), &[0, 1, 2]);
    jb.pop(t0);
    assert_eq!(jb.insert(t0, 1 << 20, 0, payload(1 << 20)), InsertOutcome::Resync);
    assert_eq!(jb.depth(), 1);
    assert_eq!(seq_of(&jb.pop(t0)), Some(1 << 20));
    let stats = jb.stats();
    assert_eq!((stats.resyncs, stats.lost), (1, 0), "a new stream is not loss");
}

#[test]
fn a_flood_of_distinct_sequence_numbers_stays_bounded() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::default(), 20, 48_000);
    let mut rng = Rng(7);
    for s in 0..100_000u64 {
        let seq = s * 7 + rng.below(5_000);
        jb.insert(t0, seq, 0, payload(seq));
        assert!(jb.depth() <= 10, "depth {}", jb.depth());
        if s % 3 == 0 {
            jb.pop(t0);
        }
    }
    assert!(jb.buffered() <= 10);
    assert_eq!(jb.slots.len(), SLOTS, "no growth");
}

#[test]
fn reset_forgets_packets_but_keeps_counters() {
    let (mut jb, t0) = fed(JitterConfig::default(), &[5, 6]);
    jb.reset();
    assert_eq!((jb.depth(), jb.pop(t0)), (0, Playout::Empty));
    assert_eq!(jb.insert(t0, 6, 0, payload(6)), InsertOutcome::Accepted, "not a duplicate");
    assert_eq!(jb.stats().received, 3);
}

#[test]
fn the_target_follows_jitter_within_bounds() {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::new(2, 6), 20, 48_000);
    let mut rng = Rng(3);
    for s in 0..500u64 {
        let arrival = t0 + Duration::from_micros(s * 20_000 + rng.below(60_000));
        jb.insert(arrival, s, s as u32 * 960, payload(s));
    }
    // Uniform 0..60 ms jitter: |D| averages 20 ms, so the target is 1 + 2 = 3 frames.
    assert!((15..25).contains(&jb.jitter().as_millis()), "{:?}", jb.jitter());
    assert_eq!(jb.target_depth(), 3);
    let wild =
        JitterBuffer { jitter_us: 10e6, ..JitterBuffer::new(JitterConfig::new(2, 6), 20, 1) };
    assert_eq!(wild.target_depth(), 6, "clamped to the maximum");
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A deterministic netem in simulated time: the sender emits a frame every 20 ms of *its*
/// clock (skewed), the network delays, jitters, loses (in bursts), duplicates and reorders,
/// the receiver ticks every 20 ms of its clock.
#[derive(Clone, Copy)]
struct Netem {
    latency_ms: f64,
    jitter_ms: f64,
    /// Loss probability, and loss probability right after a loss (bursts).
    loss: f64,
    burst: f64,
    duplicate: f64,
    /// Probability that a packet is held back an extra 1–3 frames.
    reorder: f64,
    /// Sender clock rate relative to the receiver's, minus one (+0.001: 0.1 % fast).
    skew: f64,
    seed: u64,
}

impl Default for Netem {
    fn default() -> Self {
        Self {
            latency_ms: 30.0,
            jitter_ms: 0.0,
            loss: 0.0,
            burst: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            skew: 0.0,
            seed: 1,
        }
    }
}

struct Run {
    jb: JitterBuffer,
    frames: u64,
    inserts: u64,
    played: u64,
    network_lost: u64,
    max_depth: usize,
    /// The highest depth over the last tenth of the run.
    late_max_depth: usize,
    lowest_next: u64,
}

fn simulate(net: Netem, config: JitterConfig, seconds: u64) -> Run {
    let t0 = Instant::now();
    let mut rng = Rng(net.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let jb = JitterBuffer::new(config, 20, 48_000);
    let frames = seconds * 50;
    let (mut arrivals, mut network_lost, mut lost_last) = (Vec::new(), 0, false);
    for seq in 0..frames {
        let sent_us = seq as f64 * 20_000.0 / (1.0 + net.skew);
        let lost = rng.chance(if lost_last { net.burst } else { net.loss });
        lost_last = lost;
        if lost {
            network_lost += 1;
            continue;
        }
        let copies = if rng.chance(net.duplicate) { 2 } else { 1 };
        for _ in 0..copies {
            let mut delay = net.latency_ms + rng.unit() * net.jitter_ms;
            if rng.chance(net.reorder) {
                delay += 20.0 * (1 + rng.below(3)) as f64;
            }
            arrivals.push(((sent_us + delay * 1_000.0) as u64, seq));
        }
    }
    arrivals.sort_unstable();
    let mut run = Run {
        frames,
        inserts: 0,
        played: 0,
        network_lost,
        max_depth: 0,
        late_max_depth: 0,
        lowest_next: u64::MAX,
        jb,
    };
    let mut pending = arrivals.into_iter().peekable();
    let ticks = frames + 50;
    for tick in 0..ticks {
        let now_us = tick * 20_000;
        while let Some(&(arrival, seq)) = pending.peek().filter(|(a, _)| *a <= now_us) {
            let ts = (seq as u32).wrapping_mul(960);
            run.jb.insert(t0 + Duration::from_micros(arrival), seq, ts, payload(seq));
            run.inserts += 1;
            pending.next();
        }
        run.lowest_next = run.lowest_next.min(run.jb.next.unwrap_or(u64::MAX));
        let depth = run.jb.depth();
        run.max_depth = run.max_depth.max(depth);
        if tick > ticks * 9 / 10 {
            run.late_max_depth = run.late_max_depth.max(depth);
        }
        if let Playout::Packet(_) = run.jb.pop(t0 + Duration::from_micros(now_us)) {
            run.played += 1;
        }
    }
    run
}

/// Every insert, every received packet and every frame passed is accounted for once.
fn assert_accounting(run: &Run) {
    let s = run.jb.stats();
    assert_eq!(run.inserts, s.received + s.duplicates + s.late, "inserts: {s:?}");
    assert_eq!(
        s.received,
        run.played + s.overflow + s.drift_dropped + run.jb.buffered(),
        "received: {s:?}"
    );
    let passed = run.jb.next.unwrap_or(0) - run.lowest_next;
    assert_eq!(passed, run.played + s.lost + s.overflow + s.drift_dropped, "frames: {s:?}");
}

#[test]
fn netem_loss_jitter_duplicates_and_reordering() {
    let net = Netem {
        jitter_ms: 40.0,
        loss: 0.05,
        burst: 0.3,
        duplicate: 0.05,
        reorder: 0.05,
        ..Netem::default()
    };
    for seed in 1..=5 {
        let run = simulate(Netem { seed, ..net }, JitterConfig::new(1, 10), 60);
        let s = run.jb.stats();
        assert!(run.max_depth <= 10, "seed {seed}: depth {}", run.max_depth);
        assert!(s.duplicates > 0 && s.lost > 0, "seed {seed}: {s:?}");
        assert_accounting(&run);
        // Everything the network lost is reported lost; beyond that only late arrivals.
        assert!(s.lost >= run.network_lost, "seed {seed}: {s:?} vs {}", run.network_lost);
        assert!(s.lost <= run.network_lost + s.late + 10, "seed {seed}: {s:?}");
        // Late packets stay rare (under 0.5 %): the buffer adapted to jitter and reordering.
        assert!(s.late * 200 <= run.frames, "seed {seed}: {} late of {}", s.late, run.frames);
        // Every frame the network delivered in time plays; drift drops stay a handful.
        assert!(s.drift_dropped <= 10, "seed {seed}: {s:?}");
        let missing = run.network_lost + s.late + s.drift_dropped;
        assert!(run.played + missing + 5 >= run.frames, "seed {seed}: played {}", run.played);
        assert!((2..=6).contains(&s.target_depth), "seed {seed}: {s:?}");
    }
}

#[test]
fn sender_clock_drift_neither_grows_nor_starves() {
    for skew in [0.001, -0.001, 0.01, -0.01] {
        let net = Netem { jitter_ms: 10.0, skew, ..Netem::default() };
        let run = simulate(net, JitterConfig::new(1, 10), 120);
        let s = run.jb.stats();
        assert_accounting(&run);
        assert!(run.max_depth <= 6, "skew {skew}: depth {}", run.max_depth);
        assert!(run.late_max_depth <= 4, "skew {skew}: settles, depth {}", run.late_max_depth);
        // A sender 0.1 % off gains or loses 6 frames in 2 minutes: the buffer drops or
        // conceals about that many, no more than a few times over.
        let drift = (run.frames as f64 * skew.abs()) as u64;
        if skew > 0.0 {
            assert!(s.drift_dropped >= drift / 2, "skew {skew}: {s:?}");
            assert!(s.drift_dropped <= drift * 2 + 5, "skew {skew}: {s:?}");
        } else {
            assert!(s.concealed >= drift / 2, "skew {skew}: {s:?}");
            assert!(s.concealed <= drift * 2 + 10, "skew {skew}: {s:?}");
        }
        let expected = run.frames as f64;
        assert!(run.played as f64 >= expected * 0.985, "skew {skew}: played {}", run.played);
        assert_eq!(s.lost + s.late, 0, "skew {skew}: nothing lost: {s:?}");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert { seq: u64, dt_ms: u64 },
    Pop,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u64..400, 0u64..60).prop_map(|(seq, dt_ms)| Op::Insert { seq, dt_ms }),
        Just(Op::Pop),
    ]
}

proptest! {
    #[test]
    fn any_sequence_numbers_never_panic(seqs in prop::collection::vec(any::<u64>(), 0..200)) {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::default(), 20, 48_000);
        for (i, seq) in seqs.into_iter().enumerate() {
            jb.insert(t0, seq, i as u32, payload(seq));
            jb.pop(t0);
            prop_assert!(jb.depth() <= 10);
        }
    }

    #[test]
    fn any_operations_stay_bounded_and_accounted(
        min in 1u16..5, max in 1u16..20, ops in prop::collection::vec(op(), 0..600)
    ) {
        let t0 = Instant::now();
        let mut run = Run {
            jb: JitterBuffer::new(JitterConfig::new(min, max), 20, 48_000),
            frames: 0, inserts: 0, played: 0, network_lost: 0, max_depth: 0,
            late_max_depth: 0, lowest_next: u64::MAX,
        };
        let mut now = t0;
        let max = run.jb.config().max_depth as usize;
        for op in ops {
            match op {
                Op::Insert { seq, dt_ms } => {
                    now += Duration::from_millis(dt_ms);
                    run.jb.insert(now, seq, seq as u32 * 960, payload(seq));
                    run.inserts += 1;
                }
                Op::Pop => {
                    if let Playout::Packet(_) = run.jb.pop(now) {
                        run.played += 1;
                    }
                }
            }
            run.lowest_next = run.lowest_next.min(run.jb.next.unwrap_or(u64::MAX));
            prop_assert!(run.jb.depth() <= max, "depth {} > {max}", run.jb.depth());
        }
        if run.jb.next.is_some() {
            assert_accounting(&run);
        }
    }
}
