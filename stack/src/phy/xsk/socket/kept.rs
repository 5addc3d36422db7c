//! Kept frames: what a load generator sends again and again. See `KeptFrame`.

use super::{FrameState, XskSocket};

/// A frame the application keeps for good: a load generator's pre-built request, written
/// once and sent again and again with a few bytes changed (as pktgen and TRex do).
/// `XskSocket::keep_frames` takes it out of the free list; once the kernel has sent it,
/// the completion ring gives it back to the application (`take_returned`), never to the
/// free list, so its contents survive from one send to the next. The ledger still checks
/// every move: with the application it is `InUse`, in flight `Tx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeptFrame(pub(super) u32);

impl KeptFrame {
    /// The frame's index in the UMEM.
    pub fn index(self) -> u32 {
        self.0
    }
}

impl XskSocket {
    /// Takes up to `n` frames out of the free list for the application to keep (see
    /// `KeptFrame`). At most half the UMEM is ever kept, so reception keeps the rest.
    pub fn keep_frames(&mut self, n: u32) -> Vec<KeptFrame> {
        let count = self.ledger.frame_count();
        if self.kept.is_empty() {
            self.kept = vec![false; count as usize].into_boxed_slice();
        }
        let already = self.kept.iter().filter(|k| **k).count() as u32;
        let n = n.min((count / 2).saturating_sub(already));
        let mut frames = Vec::with_capacity(n as usize);
        while frames.len() < n as usize {
            let Some(frame) = self.ledger.take_free(FrameState::InUse) else {
                break;
            };
            self.kept[frame as usize] = true;
            frames.push(KeptFrame(frame));
        }
        frames
    }

    /// Whether `frame` is kept and with the application (not in flight).
    fn kept_here(&self, frame: KeptFrame) -> bool {
        self.kept.get(frame.0 as usize) == Some(&true)
            && self.ledger.state(frame.0) == Some(FrameState::InUse)
    }

    /// Lets `write` fill a kept frame that is with the application (its whole chunk,
    /// from the frame's first byte). False if the frame is in flight or not kept.
    pub fn write_kept(&mut self, frame: KeptFrame, write: impl FnOnce(&mut [u8])) -> bool {
        if !self.kept_here(frame) {
            return false;
        }
        let mut desc = self.frames[frame.0 as usize];
        // Safety: a frame of this UMEM that the application keeps and that is not in
        // flight (checked above): the kernel does not own it and no other borrow exists.
        let mut data = unsafe { self.umem.data_mut(&mut desc) };
        let mut cursor = data.cursor();
        let capacity = cursor.buf_len();
        cursor.set_pos(capacity);
        write(data.contents_mut());
        true
    }

    /// Queues kept frames for TX, in order, as many as the TX ring has room for: `patch`
    /// may change a few bytes of each (a sequence number, a timestamp) and returns the
    /// frame's length. Returns how many were queued; the rest stay with the application.
    /// A frame in flight or not kept is skipped and counted as a ledger error.
    pub fn send_kept(
        &mut self,
        frames: &[KeptFrame],
        mut patch: impl FnMut(KeptFrame, &mut [u8]) -> usize,
    ) -> usize {
        let room = self.tx.nb_free(self.ring_size).min(self.ring_size) as usize;
        let mut queued = 0;
        for &frame in frames {
            if queued == room {
                break;
            }
            if !self.kept_here(frame) {
                self.ledger.note_invalid();
                continue;
            }
            let mut desc = self.frames[frame.0 as usize];
            {
                // Safety: as in `write_kept`: kept, with the application, not in flight.
                let mut data = unsafe { self.umem.data_mut(&mut desc) };
                let capacity = {
                    let mut cursor = data.cursor();
                    let capacity = cursor.buf_len();
                    cursor.set_pos(capacity);
                    capacity
                };
                let len = patch(frame, data.contents_mut()).min(capacity);
                data.cursor().set_pos(len);
            }
            self.ledger
                .transition(frame.0, FrameState::InUse, FrameState::Tx);
            self.tx_out[queued] = desc;
            queued += 1;
        }
        self.submit(queued);
        queued
    }

    /// Moves the kept frames the completion ring gave back (in `complete`) into `out`.
    pub fn take_returned(&mut self, out: &mut impl Extend<KeptFrame>) {
        out.extend(self.returned.drain(..));
    }
}
