//! A steady-state tick allocates nothing: a counting global allocator proves it.
//!
//! Steady state means a stable participant set whose talkers and relationships have all been
//! seen once (so every mix group exists); talkers may start and stop, and listeners may move
//! between groups, without a single allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use mixminus_core::{Conference, ConferenceConfig, JoinOptions, Relationship, TalkConfig};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Per thread, so the test harness and other tests running in parallel are not counted.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn counting() -> bool {
    COUNTING.with(Cell::get)
}

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

// SAFETY: defers every call to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One period of the talk pattern: which of the talkers send a loud frame at each tick.
const PATTERN: usize = 12;

fn run_tick(conf: &mut Conference, ids: &[mixminus_core::ParticipantId], t: usize, loud: &[i16]) {
    // Talkers 0..4 take turns in pairs; everyone else hands in a quiet frame.
    for (i, &id) in ids.iter().enumerate() {
        let frame = conf.input_mut(id).unwrap();
        let talking = i < 4 && (i + t / 3) % 4 < 2;
        if talking {
            frame.copy_from_slice(loud);
        } else {
            frame.fill(3);
        }
    }
    conf.tick();
    let mut checksum = 0i64;
    for group in conf.groups() {
        checksum += group.pcm[0] as i64;
    }
    for (listener, group) in conf.listener_groups() {
        checksum += conf.output(listener).unwrap().pcm[1] as i64 + group.is_silence() as i64;
    }
    std::hint::black_box(checksum);
    while conf.poll_event().is_some() {}
}

#[test]
fn steady_state_tick_allocates_nothing() {
    let mut conf = Conference::new(ConferenceConfig {
        talk: TalkConfig {
            energy_threshold: 100,
            attack_frames: 1,
            onset_frames: 1,
            hangover_frames: 2,
        },
        max_active_speakers: 3,
        ..Default::default()
    })
    .unwrap();
    let ids: Vec<_> = (0..200).map(|_| conf.join(JoinOptions::default()).unwrap()).collect();
    conf.relate(&[ids[10], ids[11]], &[ids[0]], Relationship::DEAF).unwrap();
    conf.relate(&[ids[1]], &[ids[12], ids[13]], Relationship::MUTE).unwrap();
    conf.relate(&[ids[2]], &[ids[3]], Relationship { deaf: true, mute: true }).unwrap();
    let loud: Vec<i16> =
        (0..conf.frame_samples()).map(|i| ((i as f32 * 0.05).sin() * 8000.0) as i16).collect();

    // Warm up over whole periods so every group key and event has been seen once.
    for t in 0..4 * PATTERN {
        run_tick(&mut conf, &ids, t, &loud);
    }
    let groups_before = conf.group_count();

    let allocations = allocations_in(|| {
        for t in 0..20 * PATTERN {
            run_tick(&mut conf, &ids, t, &loud);
        }
    });

    assert!(groups_before > 3, "the pattern should exercise several groups");
    assert_eq!(allocations, 0, "steady-state ticks allocated");
}

/// The counter works: the same window with a join in it does count.
#[test]
fn counter_sees_a_join() {
    let mut conf = Conference::new(ConferenceConfig::default()).unwrap();
    assert!(
        allocations_in(|| {
            conf.join(JoinOptions::default()).unwrap();
        }) > 0
    );
}
