//! The UMEM (the packet memory shared with the kernel) and the frame ledger.
//!
//! The UMEM is `frame_count` chunks of `frame_size` bytes (aligned mode). The ledger
//! knows where every frame is — free, in the fill ring (or being received into), in
//! the RX ring, in use by the application, in the TX ring (or being sent), or in the
//! completion ring — and checks every move, so a lost or doubly used frame shows up as
//! a counted ledger error instead of silent corruption. The per-frame state is one byte;
//! moving a frame is a compare and a store, with no allocation.

use std::io;

/// Where a frame is. Fill/Rx and Tx/Completion are told apart only at snapshot time
/// (by reading the kernel's ring indices); the ledger itself tracks who owns the frame.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameState {
    Free = 0,
    /// Given to the kernel in the fill ring; comes back through the RX ring.
    Fill = 1,
    /// Held by the application (received, being handled).
    InUse = 2,
    /// Given to the kernel in the TX ring; comes back through the completion ring.
    Tx = 3,
}

/// Counts of frames by place, as shown by `fastpath stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FrameCounts {
    pub free: u32,
    pub fill: u32,
    pub rx: u32,
    pub in_use: u32,
    pub tx: u32,
    pub completion: u32,
}

impl FrameCounts {
    pub fn total(&self) -> u32 {
        self.free + self.fill + self.rx + self.in_use + self.tx + self.completion
    }
}

/// Anonymous, page-aligned packet memory.
pub struct Umem {
    ptr: *mut u8,
    len: usize,
    frame_size: u32,
    frame_count: u32,
}

// Safety: the Umem is owned by one worker; the kernel accesses it only through the rings.
unsafe impl Send for Umem {}

impl Umem {
    pub fn new(frame_size: u32, frame_count: u32) -> io::Result<Self> {
        if !frame_size.is_power_of_two() || !(2048..=4096).contains(&frame_size) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("frame size {frame_size} must be 2048 or 4096"),
            ));
        }
        let len = frame_size as usize * frame_count as usize;
        // Safety: a fresh private anonymous mapping; checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: ptr.cast(),
            len,
            frame_size,
            frame_count,
        })
    }

    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    pub fn frame_count(&self) -> u32 {
        self.frame_count
    }

    pub(crate) fn registration(&self) -> libc::xdp_umem_reg {
        libc::xdp_umem_reg {
            addr: self.ptr as u64,
            len: self.len as u64,
            chunk_size: self.frame_size,
            headroom: 0,
            flags: 0,
            tx_metadata_len: 0,
        }
    }

    /// The frame index that holds UMEM offset `addr`, if `addr` lies inside the UMEM.
    pub fn frame_of(&self, addr: u64) -> Option<u32> {
        let index = addr / u64::from(self.frame_size);
        (index < u64::from(self.frame_count)).then_some(index as u32)
    }

    /// The bytes from `addr` to the end of its frame: room for a reply at the same place.
    /// None if `addr` is outside the UMEM.
    pub fn frame_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        let frame = self.frame_of(addr)?;
        let end = (u64::from(frame) + 1) * u64::from(self.frame_size);
        // Safety: addr < end <= len (frame_of checked the index); the frame is InUse, so
        // neither the kernel nor another borrow touches it while this borrow lives.
        Some(unsafe {
            std::slice::from_raw_parts_mut(self.ptr.add(addr as usize), (end - addr) as usize)
        })
    }
}

impl Drop for Umem {
    fn drop(&mut self) {
        // Safety: ptr/len are what mmap returned; the socket that registered it is closed
        // first (XskSocket drops its fd before its Umem).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

/// Which frame is where, and the free list.
pub struct FrameLedger {
    states: Box<[FrameState]>,
    free: Vec<u32>,
    counts: [u32; 4],
    errors: u64,
}

impl FrameLedger {
    /// All frames start free.
    pub fn new(frame_count: u32) -> Self {
        Self {
            states: vec![FrameState::Free; frame_count as usize].into_boxed_slice(),
            free: (0..frame_count).rev().collect(),
            counts: [frame_count, 0, 0, 0],
            errors: 0,
        }
    }

    /// Moves `frame` from `from` to `to`; a frame not where it should be is a ledger
    /// error (counted, and the move is refused).
    pub fn transition(&mut self, frame: u32, from: FrameState, to: FrameState) -> bool {
        match self.states.get_mut(frame as usize) {
            Some(state) if *state == from => {
                *state = to;
                self.counts[from as usize] -= 1;
                self.counts[to as usize] += 1;
                true
            }
            _ => {
                self.errors += 1;
                false
            }
        }
    }

    /// Takes a free frame (marking it `to`).
    pub fn take_free(&mut self, to: FrameState) -> Option<u32> {
        let frame = self.free.pop()?;
        let moved = self.transition(frame, FrameState::Free, to);
        debug_assert!(moved, "free list and states disagree");
        Some(frame)
    }

    /// Returns a frame to the free list.
    pub fn release(&mut self, frame: u32, from: FrameState) {
        if self.transition(frame, from, FrameState::Free) {
            self.free.push(frame);
        }
    }

    /// Counts a descriptor that named memory outside the UMEM.
    pub fn note_invalid(&mut self) {
        self.errors += 1;
    }

    pub fn free_count(&self) -> u32 {
        self.free.len() as u32
    }

    pub fn count(&self, state: FrameState) -> u32 {
        self.counts[state as usize]
    }

    /// Frames found where they should not be (a double free, a descriptor for a frame the
    /// kernel did not own). Zero in a correct run.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    pub fn state(&self, frame: u32) -> Option<FrameState> {
        self.states.get(frame as usize).copied()
    }

    pub fn frame_count(&self) -> u32 {
        self.states.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_is_in_exactly_one_place() {
        let mut ledger = FrameLedger::new(8);
        let a = ledger.take_free(FrameState::Fill).unwrap();
        let b = ledger.take_free(FrameState::Fill).unwrap();
        assert!(ledger.transition(a, FrameState::Fill, FrameState::InUse));
        assert!(ledger.transition(a, FrameState::InUse, FrameState::Tx));
        ledger.release(a, FrameState::Tx);
        assert_eq!(ledger.count(FrameState::Free), 7);
        assert_eq!(ledger.count(FrameState::Fill), 1);
        assert_eq!(ledger.state(b), Some(FrameState::Fill));
        let total: u32 = [
            FrameState::Free,
            FrameState::Fill,
            FrameState::InUse,
            FrameState::Tx,
        ]
        .iter()
        .map(|s| ledger.count(*s))
        .sum();
        assert_eq!(total, 8);
        assert_eq!(ledger.errors(), 0);
    }

    #[test]
    fn a_double_free_is_caught_and_does_not_duplicate_the_frame() {
        let mut ledger = FrameLedger::new(4);
        let a = ledger.take_free(FrameState::InUse).unwrap();
        ledger.release(a, FrameState::InUse);
        ledger.release(a, FrameState::InUse);
        assert_eq!(ledger.errors(), 1);
        assert_eq!(ledger.free_count(), 4, "the frame is on the free list once");
    }

    #[test]
    fn a_frame_out_of_range_is_an_error_not_a_panic() {
        let mut ledger = FrameLedger::new(4);
        assert!(!ledger.transition(99, FrameState::Fill, FrameState::InUse));
        assert_eq!(ledger.errors(), 1);
    }

    #[test]
    fn umem_rejects_odd_frame_sizes_and_maps_frames() {
        assert!(Umem::new(3000, 4).is_err());
        let mut umem = Umem::new(2048, 4).unwrap();
        assert_eq!(umem.frame_of(2048 + 256), Some(1));
        assert_eq!(umem.frame_of(4 * 2048), None);
        let frame = umem.frame_mut(2048 + 256).unwrap();
        assert_eq!(frame.len(), 2048 - 256);
        frame[0] = 0xa5;
        assert!(umem.frame_mut(1 << 40).is_none());
    }
}
