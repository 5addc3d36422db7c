//! What moves frames, the bottom of the stack: the AF_XDP rings (`xsk`, on xsk-rs), the
//! pinned worker that runs them (`worker`), and the device wrappers that sit between the
//! rings and the stack (`impair`, a fault injector; `capture`, taps). Here too is the
//! contract between a worker and what it feeds: a `FrameHandler` takes each received frame,
//! and sends new ones into a `FrameSink`. Nothing here knows a protocol above the link.

pub mod capture;
pub mod idle;
pub mod impair;
/// A sink over ordinary memory, for tests and the fuzz targets.
pub mod testing;
pub mod worker;
pub mod xsk;

use crate::{counters::SharedCounters, time::Instant};

/// Fills a frame buffer from its start and returns the frame's length (None: it cannot).
pub type FrameWriter<'a> = dyn FnMut(&mut [u8]) -> Option<usize> + 'a;

/// What became of a frame an application wanted to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxResult {
    Sent,
    /// No free frame or TX slot now; try again later.
    Full,
    /// The writer could not fit it into a frame; trying again will not help.
    Declined,
}

/// Where new frames go: the batch's `Transmitter` on a worker, a `testing::VecSink` in tests.
pub trait FrameSink {
    /// Takes a free frame, lets `write` fill it from its start and return its length, and
    /// queues it. `Full` when the budget is spent, `Declined` when `write` could not fill
    /// a frame; either way nothing was taken.
    fn send(&mut self, write: &mut FrameWriter<'_>) -> TxResult;
    /// Frames that may still go out in this batch.
    fn room(&self) -> usize;
}

/// What a worker runs: each received frame in place, and a turn per batch with no frame.
pub trait FrameHandler: Send {
    /// Handles a received frame of `len` bytes; `frame` runs to the end of its UMEM chunk.
    /// Returns the length of an answer written in place, or None; may send new frames
    /// through `tx`.
    fn handle(
        &mut self,
        now: Instant,
        frame: &mut [u8],
        len: usize,
        tx: &mut dyn FrameSink,
    ) -> Option<usize>;

    /// Whether `poll` has work at `now` (asked every batch: must be cheap).
    fn wants_poll(&self, _now: Instant) -> bool {
        false
    }

    /// Work with no frame in: due timers, applications' commands.
    fn poll(&mut self, _now: Instant, _tx: &mut dyn FrameSink) {}

    /// When `poll` next has work by itself (the earliest timer), for the idle wait.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }

    /// (layer, name) of the handler's counters, published after the worker's own.
    fn counter_names(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }

    /// Stores the handler's counters into `shared` from slot `offset` on.
    fn publish(&self, _shared: &SharedCounters, _offset: usize) {}
}
