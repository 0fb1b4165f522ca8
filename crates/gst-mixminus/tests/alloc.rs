//! Steady state allocates nothing per buffer: a counting global allocator sees no Rust heap
//! allocation while four participants stream 200 frames through the element (chain
//! functions, the mixing thread, the conference tick), and the output buffers cycle through
//! a fixed set of GStreamer pool buffers instead of being allocated per frame.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use common::rig::{Rig, FRAME, FRAME_NS};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const FRAMES: u64 = 200;

#[test]
fn steady_state_streaming_allocates_nothing_per_buffer() {
    let mut rig = Rig::new();
    // Warm up: caps, pools, first events, talk detection settling.
    rig.run(20, [true; 4]);

    // Inputs made in advance (GStreamer's allocator, not Rust's), outputs' memory recorded
    // into space reserved in advance.
    let inputs: Vec<Vec<gst::Buffer>> = (20..20 + FRAMES)
        .map(|frame| {
            (0..4)
                .map(|i| {
                    let mut b = gst::Buffer::with_size(FRAME * 2).unwrap();
                    {
                        let b = b.get_mut().unwrap();
                        b.set_pts(gst::ClockTime::from_nseconds(frame * FRAME_NS));
                        let mut map = b.map_writable().unwrap();
                        for (k, c) in map.chunks_exact_mut(2).enumerate() {
                            c.copy_from_slice(
                                &(((k * (i + 1)) % 2000) as i16 - 1000).to_le_bytes(),
                            );
                        }
                    }
                    b
                })
                .collect()
        })
        .collect();
    let mut memory: Vec<usize> = Vec::with_capacity((FRAMES * 4) as usize);
    let mut nonzero = 0usize;

    let before = ALLOCATIONS.load(Ordering::SeqCst);
    assert!(before > 0, "the counter sees this binary's allocations");
    for frame in inputs {
        for (h, b) in rig.harnesses.iter_mut().zip(frame) {
            h.push(b).unwrap();
        }
        for h in rig.harnesses.iter_mut() {
            let out = h.pull().unwrap();
            let map = out.map_readable().unwrap();
            memory.push(map.as_ptr() as usize);
            nonzero += usize::from(map.iter().any(|&b| b != 0));
        }
    }
    let allocations = ALLOCATIONS.load(Ordering::SeqCst) - before;

    assert_eq!(nonzero, (FRAMES * 4) as usize, "every output carries the others' audio");
    assert_eq!(allocations, 0, "Rust heap allocations while streaming {FRAMES} frames × 4 pads");
    let distinct: HashSet<usize> = memory.iter().copied().collect();
    assert!(
        distinct.len() <= 16,
        "{} distinct output memories over {} buffers: not recycled by the pool",
        distinct.len(),
        memory.len()
    );
    println!(
        "{FRAMES} frames x 4 pads: {allocations} Rust allocations; outputs used {} pool buffers",
        distinct.len()
    );
}
