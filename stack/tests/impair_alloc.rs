//! The fault device allocates nothing per frame once built: held frames live in the pool
//! it allocated up front. A test binary of its own, because it installs a counting global
//! allocator (counting per thread, so other tests in the binary cannot disturb it).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    time::Duration,
};

use fastpath::{
    phy::{
        FrameHandler, FrameSink, FrameWriter, TxResult,
        impair::{ImpairConfig, ImpairCounter, Impaired},
    },
    time::Instant,
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// Safety: forwards to the system allocator; only counts on the side.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // Safety: the caller's contract is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Safety: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // Safety: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Answers each frame in place and sends one new frame: no allocation of its own.
struct Answerer;

impl FrameHandler for Answerer {
    fn handle(
        &mut self,
        _now: Instant,
        frame: &mut [u8],
        len: usize,
        tx: &mut dyn FrameSink,
    ) -> Option<usize> {
        tx.send(&mut |buf: &mut [u8]| {
            buf[..len].copy_from_slice(&frame[..len]);
            Some(len)
        });
        Some(len)
    }
}

/// Writes every frame into one reused buffer and counts it.
struct CountingSink {
    buf: Vec<u8>,
    sent: u64,
}

impl FrameSink for CountingSink {
    fn send(&mut self, write: &mut FrameWriter<'_>) -> TxResult {
        match write(&mut self.buf) {
            Some(_) => {
                self.sent += 1;
                TxResult::Sent
            }
            None => TxResult::Declined,
        }
    }

    fn room(&self) -> usize {
        usize::MAX
    }
}

#[test]
fn no_allocation_per_frame_in_steady_state() {
    let config: ImpairConfig =
        "loss=2%,dup=5%,reorder=10%,corrupt=1%,delay=100us,jitter=50us,pool=64,seed=7"
            .parse()
            .unwrap();
    let mut device = Impaired::new(Answerer, config);
    let mut sink = CountingSink {
        buf: vec![0; 4096],
        sent: 0,
    };
    let mut frame = vec![0x5au8; 2048];
    let mut now = Instant::ZERO;
    let mut run = |device: &mut Impaired<Answerer>, frames: u32| {
        for _ in 0..frames {
            device.handle(now, &mut frame, 128, &mut sink);
            if device.wants_poll(now) {
                device.poll(now, &mut sink);
            }
            now += Duration::from_micros(7);
        }
    };
    // Warm up: every queue reaches the depth it keeps.
    run(&mut device, 10_000);
    let before = allocations();
    run(&mut device, 100_000);
    let after = allocations();
    assert_eq!(after - before, 0, "allocations in 100,000 frames");
    // Every fault happened (so every path was taken), and the counter counts.
    for c in [
        ImpairCounter::RxDropped,
        ImpairCounter::RxDuplicated,
        ImpairCounter::RxReordered,
        ImpairCounter::RxCorrupted,
        ImpairCounter::RxDelayed,
        ImpairCounter::TxDropped,
        ImpairCounter::TxDuplicated,
        ImpairCounter::TxReordered,
        ImpairCounter::TxDelayed,
    ] {
        assert!(device.counters().get(c) > 0, "{c:?} never happened");
    }
    let probe = std::hint::black_box(Vec::<u8>::with_capacity(1));
    assert_eq!(allocations() - after, 1, "the allocator counts");
    drop(probe);
    assert!(sink.sent > 100_000, "frames went out: {}", sink.sent);
}
