//! The frame ledger: fastpath's own account of the UMEM that xsk-rs maps.
//!
//! The UMEM is `frame_count` chunks of `frame_size` bytes (aligned mode). The ledger
//! knows where every frame is — free, in the fill ring (or being received into), in
//! the RX ring, in use by the application, in the TX ring (or being sent), or in the
//! completion ring — and checks every move, so a lost or doubly used frame shows up as
//! a counted ledger error instead of silent corruption. The per-frame state is one byte;
//! moving a frame is a compare and a store, with no allocation.

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
}
