//! A frame sink over ordinary memory, so a handler's output is tested without root: each
//! frame sent is a `Vec`, and the budget is a number.

use super::{FrameSink, FrameWriter, TxResult};

/// Collects the frames sent, up to `budget` of them; then `Full`, like a spent batch.
pub struct VecSink {
    pub frames: Vec<Vec<u8>>,
    pub budget: usize,
    frame_size: usize,
}

impl VecSink {
    pub fn new(budget: usize) -> Self {
        Self {
            frames: Vec::new(),
            budget,
            frame_size: 4096 - 256,
        }
    }
}

impl FrameSink for VecSink {
    fn send(&mut self, write: &mut FrameWriter<'_>) -> TxResult {
        if self.frames.len() >= self.budget {
            return TxResult::Full;
        }
        let mut buf = vec![0xa5; self.frame_size];
        match write(&mut buf) {
            Some(len) if len <= buf.len() => {
                buf.truncate(len);
                self.frames.push(buf);
                TxResult::Sent
            }
            _ => TxResult::Declined,
        }
    }

    fn room(&self) -> usize {
        self.budget.saturating_sub(self.frames.len())
    }
}
