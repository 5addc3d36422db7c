//! The four AF_XDP rings as typed single-producer/single-consumer queues over
//! memory shared with the kernel (Documentation/networking/af_xdp.rst).
//!
//! We produce into Fill and Tx and consume from Rx and Completion. Producer and
//! consumer indices are free-running `u32`s; a slot is `index & mask`. Each side
//! caches the other's index and re-reads it (Acquire) only when the cache says the
//! ring looks full or empty, so a batch costs two atomic loads at most. Publishing
//! is a Release store after the descriptors are written or read.
//!
//! `testing::pair` builds a producer and a consumer over ordinary memory, so the
//! ring logic is tested without root or a kernel.

use std::sync::{
    Arc,
    atomic::{AtomicU32, Ordering},
};

/// Who owns the memory behind a ring: a kernel mapping (unmapped on drop) or a heap block (tests).
pub(crate) enum Backing {
    Mmap {
        ptr: *mut libc::c_void,
        len: usize,
    },
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "only testing::pair builds heap rings")
    )]
    Heap(
        #[cfg_attr(
            test,
            expect(dead_code, reason = "held only to keep the ring memory alive")
        )]
        Box<[u64]>,
    ),
}

// Safety: the mapping is only unmapped in Drop; the raw pointer is not aliased mutably
// outside the ring that owns the Arc.
unsafe impl Send for Backing {}
// Safety: as above; shared access goes through atomics or the single ring owner.
unsafe impl Sync for Backing {}

impl Drop for Backing {
    fn drop(&mut self) {
        if let Backing::Mmap { ptr, len } = *self {
            // Safety: ptr/len are exactly what mmap returned; nothing uses the ring after drop.
            unsafe { libc::munmap(ptr, len) };
        }
    }
}

/// The pointers into one ring's memory.
struct RawRing<T> {
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    descs: *mut T,
    mask: u32,
    size: u32,
    _backing: Arc<Backing>,
}

// Safety: a RawRing is owned by exactly one side (producer or consumer) on one thread at a
// time; the shared indices are atomics.
unsafe impl<T: Send> Send for RawRing<T> {}

impl<T: Copy> RawRing<T> {
    /// # Safety
    /// `base + producer/consumer/flags` must point at aligned `u32`s and `base + descs` at
    /// `size` slots of `T`, all inside `backing`, and `size` must be a power of two.
    unsafe fn new(
        backing: Arc<Backing>,
        base: *mut u8,
        offsets: &libc::xdp_ring_offset,
        size: u32,
    ) -> Self {
        debug_assert!(size.is_power_of_two());
        // Safety: the caller guarantees every offset is inside the mapping.
        unsafe {
            Self {
                producer: base.add(offsets.producer as usize).cast(),
                consumer: base.add(offsets.consumer as usize).cast(),
                flags: base.add(offsets.flags as usize).cast(),
                descs: base.add(offsets.desc as usize).cast(),
                mask: size - 1,
                size,
                _backing: backing,
            }
        }
    }

    fn producer(&self) -> &AtomicU32 {
        // Safety: valid for the ring's lifetime (RawRing::new's contract; _backing keeps it mapped).
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // Safety: as in producer().
        unsafe { &*self.consumer }
    }

    fn slot(&self, index: u32) -> *mut T {
        // Safety: `index & mask` < size, inside the descriptor array.
        unsafe { self.descs.add((index & self.mask) as usize) }
    }
}

/// The side of a ring that we fill: Fill (frame addresses) and Tx (descriptors).
pub struct ProducerRing<T> {
    raw: RawRing<T>,
    cached_producer: u32,
    cached_consumer: u32,
}

/// The side of a ring that we drain: Rx (descriptors) and Completion (frame addresses).
pub struct ConsumerRing<T> {
    raw: RawRing<T>,
    cached_producer: u32,
    cached_consumer: u32,
}

/// Frames given to the kernel to receive into.
pub type FillRing = ProducerRing<u64>;
/// Frames the kernel has finished transmitting.
pub type CompletionRing = ConsumerRing<u64>;
/// Received frames.
pub type RxRing = ConsumerRing<libc::xdp_desc>;
/// Frames to transmit.
pub type TxRing = ProducerRing<libc::xdp_desc>;

impl<T: Copy> ProducerRing<T> {
    fn new(raw: RawRing<T>) -> Self {
        let cached_producer = raw.producer().load(Ordering::Relaxed);
        let cached_consumer = raw.consumer().load(Ordering::Acquire);
        Self {
            raw,
            cached_producer,
            cached_consumer,
        }
    }

    /// Free slots, at most `want`. Re-reads the consumer only when the cache is short.
    pub fn reserve(&mut self, want: u32) -> u32 {
        let mut free = self.raw.size - self.cached_producer.wrapping_sub(self.cached_consumer);
        if free < want {
            self.cached_consumer = self.raw.consumer().load(Ordering::Acquire);
            free = self.raw.size - self.cached_producer.wrapping_sub(self.cached_consumer);
        }
        free.min(want)
    }

    /// Writes the `i`-th reserved slot. `i` must be below what `reserve` returned.
    pub fn write(&mut self, i: u32, value: T) {
        debug_assert!(i < self.raw.size - self.cached_producer.wrapping_sub(self.cached_consumer));
        // Safety: the slot is inside the ring and, being reserved, not read by the consumer.
        unsafe {
            self.raw
                .slot(self.cached_producer.wrapping_add(i))
                .write(value)
        };
    }

    /// Publishes `n` written slots to the consumer (nothing is written for `n == 0`: the
    /// index shares a cache line with the kernel).
    pub fn submit(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_producer = self.cached_producer.wrapping_add(n);
        self.raw
            .producer()
            .store(self.cached_producer, Ordering::Release);
    }

    /// Whether the kernel asks to be woken (XDP_USE_NEED_WAKEUP) to make progress.
    pub fn needs_wakeup(&self) -> bool {
        // Safety: the flags word is valid for the ring's lifetime.
        let flags = unsafe { &*self.raw.flags };
        flags.load(Ordering::Relaxed) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    /// Slots published but not yet taken by the consumer.
    pub fn pending(&self) -> u32 {
        self.cached_producer
            .wrapping_sub(self.raw.consumer().load(Ordering::Acquire))
    }

    pub fn size(&self) -> u32 {
        self.raw.size
    }
}

impl<T: Copy> ConsumerRing<T> {
    fn new(raw: RawRing<T>) -> Self {
        let cached_consumer = raw.consumer().load(Ordering::Relaxed);
        let cached_producer = raw.producer().load(Ordering::Acquire);
        Self {
            raw,
            cached_producer,
            cached_consumer,
        }
    }

    /// Entries ready to read, at most `want`. Re-reads the producer only when the cache is short.
    pub fn peek(&mut self, want: u32) -> u32 {
        let mut ready = self.cached_producer.wrapping_sub(self.cached_consumer);
        if ready < want {
            self.cached_producer = self.raw.producer().load(Ordering::Acquire);
            ready = self.cached_producer.wrapping_sub(self.cached_consumer);
        }
        ready.min(want)
    }

    /// Reads the `i`-th ready entry. `i` must be below what `peek` returned.
    pub fn read(&self, i: u32) -> T {
        debug_assert!(i < self.cached_producer.wrapping_sub(self.cached_consumer));
        // Safety: the slot is inside the ring and published by the producer (Acquire in peek).
        unsafe { self.raw.slot(self.cached_consumer.wrapping_add(i)).read() }
    }

    /// Hands `n` read slots back to the producer (no store for `n == 0`).
    pub fn release(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.cached_consumer = self.cached_consumer.wrapping_add(n);
        self.raw
            .consumer()
            .store(self.cached_consumer, Ordering::Release);
    }

    /// Entries published by the producer and not yet released by us.
    pub fn pending(&self) -> u32 {
        self.raw
            .producer()
            .load(Ordering::Acquire)
            .wrapping_sub(self.cached_consumer)
    }

    pub fn size(&self) -> u32 {
        self.raw.size
    }
}

/// Maps one ring of an AF_XDP socket.
///
/// # Safety
/// `fd` must be an AF_XDP socket on which the ring at `pgoff` was sized to `size` entries
/// of `T`, and `offsets` must be the kernel's XDP_MMAP_OFFSETS for that ring.
pub(crate) unsafe fn map_ring<T: Copy>(
    fd: libc::c_int,
    pgoff: libc::off_t,
    offsets: &libc::xdp_ring_offset,
    size: u32,
) -> std::io::Result<RawRingHandle<T>> {
    let len = offsets.desc as usize + size as usize * std::mem::size_of::<T>();
    // Safety: a fresh shared mapping of the socket's ring; the kernel checks pgoff and len.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            pgoff,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    let backing = Arc::new(Backing::Mmap { ptr, len });
    // Safety: the offsets come from the kernel for this ring and lie inside `len`.
    let raw = unsafe { RawRing::new(backing, ptr.cast(), offsets, size) };
    Ok(RawRingHandle(raw))
}

/// A mapped ring not yet given a direction.
pub(crate) struct RawRingHandle<T>(RawRing<T>);

impl<T: Copy> RawRingHandle<T> {
    pub(crate) fn producer(self) -> ProducerRing<T> {
        ProducerRing::new(self.0)
    }
    pub(crate) fn consumer(self) -> ConsumerRing<T> {
        ConsumerRing::new(self.0)
    }
}

#[cfg(test)]
pub mod testing {
    //! A producer and a consumer over ordinary memory, laid out like a kernel ring.
    use super::*;

    pub fn pair<T: Copy>(size: u32) -> (ProducerRing<T>, ConsumerRing<T>) {
        pair_starting_at(size, 0)
    }

    /// A pair whose free-running indices start at `start` (to test wrap-around).
    pub fn pair_starting_at<T: Copy>(size: u32, start: u32) -> (ProducerRing<T>, ConsumerRing<T>) {
        assert!(size.is_power_of_two());
        // producer u32 at 0, consumer at 64, flags at 128, descriptors from 192 (cache lines apart).
        let words = (192 + size as usize * std::mem::size_of::<T>()).div_ceil(8);
        let mut block = vec![0u64; words].into_boxed_slice();
        block[0] = u64::from(start);
        block[8] = u64::from(start);
        let base = block.as_mut_ptr().cast::<u8>();
        let backing = Arc::new(Backing::Heap(block));
        let offsets = libc::xdp_ring_offset {
            producer: 0,
            consumer: 64,
            flags: 128,
            desc: 192,
        };
        // Safety: the offsets and `size` descriptors fit in `block`, which `backing` keeps alive
        // (moving the Box into the Arc does not move its heap allocation).
        let (a, b) = unsafe {
            (
                RawRing::new(backing.clone(), base, &offsets, size),
                RawRing::new(backing, base, &offsets, size),
            )
        };
        (ProducerRing::new(a), ConsumerRing::new(b))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{pair, pair_starting_at};

    #[test]
    fn fills_to_capacity_and_no_further() {
        let (mut prod, mut cons) = pair::<u64>(8);
        assert_eq!(prod.reserve(16), 8);
        for i in 0..8 {
            prod.write(i, u64::from(i) * 10);
        }
        prod.submit(8);
        assert_eq!(prod.reserve(1), 0, "a full ring has no free slot");
        assert_eq!(cons.peek(16), 8);
        assert_eq!(cons.read(3), 30);
        cons.release(4);
        assert_eq!(
            prod.reserve(16),
            4,
            "released slots come back to the producer"
        );
        assert_eq!(cons.peek(16), 4);
        assert_eq!(cons.read(0), 40);
    }

    #[test]
    fn unsubmitted_writes_are_invisible() {
        let (mut prod, mut cons) = pair::<u64>(4);
        assert_eq!(prod.reserve(2), 2);
        prod.write(0, 7);
        assert_eq!(cons.peek(4), 0);
        prod.submit(1);
        assert_eq!(cons.peek(4), 1);
        assert_eq!(cons.read(0), 7);
    }

    #[test]
    fn indices_wrap_past_u32_max() {
        let (mut prod, mut cons) = pair_starting_at::<u64>(4, u32::MAX - 5);
        let mut expected = 0u64;
        let mut next = 0u64;
        for _ in 0..64 {
            let n = prod.reserve(3);
            for i in 0..n {
                prod.write(i, next);
                next += 1;
            }
            prod.submit(n);
            let m = cons.peek(4);
            for i in 0..m {
                assert_eq!(cons.read(i), expected);
                expected += 1;
            }
            cons.release(m);
        }
        assert_eq!(expected, next);
    }

    #[test]
    fn concurrent_producer_and_consumer_keep_order() {
        let (mut prod, mut cons) = pair::<u64>(64);
        const N: u64 = 200_000;
        let t = std::thread::spawn(move || {
            let mut v = 0;
            while v < N {
                let n = prod.reserve(16);
                for i in 0..n {
                    prod.write(i, v + u64::from(i));
                }
                prod.submit(n);
                v += u64::from(n);
                if n == 0 {
                    std::hint::spin_loop();
                }
            }
        });
        let mut expected = 0;
        while expected < N {
            let n = cons.peek(16);
            for i in 0..n {
                assert_eq!(cons.read(i), expected);
                expected += 1;
            }
            cons.release(n);
        }
        t.join().unwrap();
    }
}
