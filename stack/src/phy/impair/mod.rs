//! The fault device: a `FrameHandler` that sits between the rings and the stack and drops,
//! duplicates, corrupts, delays and reorders frames in each direction, seeded and
//! deterministic (smoltcp's `FaultInjector`, netem's vocabulary). Tests wrap any handler in
//! it; `--impair loss=2%,dup=1%,reorder=10%,corrupt=0.1%,seed=7` wraps the demux.
//!
//! Frames held back (delayed, reordered, a duplicate waiting for its turn) are copied into
//! buffers the device allocates up front; when they run out, the frame due first is released
//! early. A held received frame is handed to the inner handler from `poll`, and its in-place
//! answer goes out as a new frame. Each direction draws from its own PRNG stream, so the
//! same seed and the same frames give the same decisions, whatever the other way carries.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
    time::Duration,
};

use fastpath_common::layout::ETH_HLEN;

use crate::{
    counter_set,
    counters::{Counters, SharedCounters},
    phy::{FrameHandler, FrameSink, FrameWriter, TxResult},
    time::Instant,
};

/// Bytes of each held frame's buffer: the largest UMEM frame fastpath uses. A received frame
/// longer than this is never held (it cannot come from such a UMEM).
pub const HELD_FRAME_BYTES: usize = 4096;

mod config;

pub use config::{Faults, ImpairConfig, ImpairParseError, MAX_POOL, Rate};

use config::PER_MILLION;

counter_set! {
    "impair",
    /// What the fault device did, by direction.
    pub enum ImpairCounter {
        RxFrames = "rx_frames",
        RxDropped = "rx_dropped",
        RxDuplicated = "rx_duplicated",
        RxCorrupted = "rx_corrupted",
        RxDelayed = "rx_delayed",
        RxReordered = "rx_reordered",
        /// Held frames handed on before their time because every buffer was in use.
        RxReleasedEarly = "rx_released_early",
        TxFrames = "tx_frames",
        TxDropped = "tx_dropped",
        TxDuplicated = "tx_duplicated",
        TxCorrupted = "tx_corrupted",
        TxDelayed = "tx_delayed",
        TxReordered = "tx_reordered",
        TxReleasedEarly = "tx_released_early",
        /// Held frames that found no room when released early, or fit no frame: gone.
        TxLost = "tx_lost",
    }
}

/// SplitMix64 (Steele, Lea and Flood, 2014): tiny, fast, and well mixed enough to draw
/// fault decisions; a seed of 0 is fine.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by the multiply-shift reduction.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    fn chance(&mut self, rate: Rate) -> bool {
        rate.as_per_million() != 0
            && self.below(u64::from(PER_MILLION)) < u64::from(rate.as_per_million())
    }
}

/// What becomes of one frame.
#[derive(Clone, Copy, Debug)]
struct Fate {
    drop: bool,
    duplicate: bool,
    /// The random number that picks the byte and the flip.
    corrupt: Option<u64>,
    hold: Hold,
}

#[derive(Clone, Copy, Debug)]
enum Hold {
    No,
    Until(Instant),
    /// Until enough later frames passed, or this deadline.
    Reorder(Instant),
}

/// Flips one byte after the Ethernet header; the byte always changes.
fn corrupt(frame: &mut [u8], random: u64) -> bool {
    if frame.len() <= ETH_HLEN {
        return false;
    }
    let at = ETH_HLEN + (random % (frame.len() - ETH_HLEN) as u64) as usize;
    frame[at] ^= ((random >> 56) as u8) | 1;
    true
}

/// A reordered frame waiting for `gap` later frames to pass it.
#[derive(Clone, Copy, Debug)]
struct Reordered {
    seq: u64,
    deadline: Instant,
    slot: u16,
}

/// Where the next frame due comes from.
#[derive(Clone, Copy, Debug)]
enum Due {
    Delayed,
    Reordered,
}

/// One direction: its faults, its PRNG stream and the frames it holds.
struct Lane {
    faults: Faults,
    rng: SplitMix64,
    reorder_gap: u64,
    reorder_delay: Duration,
    /// `pool` buffers of `HELD_FRAME_BYTES`, back to back.
    store: Box<[u8]>,
    /// (length, room) of the frame in each slot.
    held: Box<[(u32, u32)]>,
    free: Vec<u16>,
    /// Delayed frames by (due, arrival, slot).
    delayed: BinaryHeap<Reverse<(Instant, u64, u16)>>,
    /// Reordered frames in arrival order (so deadlines and release points ascend too).
    reordered: VecDeque<Reordered>,
    /// Arrival number of the next frame that is not dropped (from 1).
    next_seq: u64,
    /// The highest arrival number handed on so far.
    passed: u64,
    /// Where a dropped TX frame is written, and a duplicate waits for its second send.
    scratch: Box<[u8]>,
}

impl Lane {
    fn new(faults: Faults, config: &ImpairConfig, stream: u64) -> Self {
        let pool = config.pool.clamp(1, MAX_POOL);
        Self {
            faults,
            rng: SplitMix64(config.seed ^ stream),
            reorder_gap: u64::from(config.reorder_gap.max(1)),
            reorder_delay: config.reorder_delay,
            store: vec![0; pool * HELD_FRAME_BYTES].into_boxed_slice(),
            held: vec![(0, 0); pool].into_boxed_slice(),
            free: (0..pool).rev().map(|s| s as u16).collect(),
            delayed: BinaryHeap::with_capacity(pool),
            reordered: VecDeque::with_capacity(pool),
            next_seq: 1,
            passed: 0,
            scratch: vec![0; HELD_FRAME_BYTES].into_boxed_slice(),
        }
    }

    fn decide(&mut self, now: Instant) -> Fate {
        let f = self.faults;
        if self.rng.chance(f.loss) {
            return Fate {
                drop: true,
                duplicate: false,
                corrupt: None,
                hold: Hold::No,
            };
        }
        let duplicate = self.rng.chance(f.duplicate);
        let corrupt = self.rng.chance(f.corrupt).then(|| self.rng.next());
        let reorder = self.rng.chance(f.reorder);
        let mut delay = f.delay;
        if !f.jitter.is_zero() {
            let extra = self.rng.below(f.jitter.as_nanos() as u64 + 1);
            delay += Duration::from_nanos(extra);
        }
        let hold = if reorder {
            Hold::Reorder(now + delay + self.reorder_delay)
        } else if delay.is_zero() {
            Hold::No
        } else {
            Hold::Until(now + delay)
        };
        Fate {
            drop: false,
            duplicate,
            corrupt,
            hold,
        }
    }

    fn seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn buf(&self, slot: u16) -> &[u8] {
        let (len, _) = self.held[slot as usize];
        let at = slot as usize * HELD_FRAME_BYTES;
        &self.store[at..at + len as usize]
    }

    /// The slot's buffer up to its room, and the frame's length.
    fn buf_mut(&mut self, slot: u16) -> (&mut [u8], usize) {
        let (len, room) = self.held[slot as usize];
        let at = slot as usize * HELD_FRAME_BYTES;
        (&mut self.store[at..at + room as usize], len as usize)
    }

    /// Copies `frame` into `slot`, keeping `room` bytes for an answer.
    fn fill(&mut self, slot: u16, frame: &[u8], room: usize) {
        let at = slot as usize * HELD_FRAME_BYTES;
        self.store[at..at + frame.len()].copy_from_slice(frame);
        self.held[slot as usize] = (frame.len() as u32, room as u32);
    }

    fn hold(&mut self, slot: u16, seq: u64, hold: Hold) {
        match hold {
            Hold::Until(due) => self.delayed.push(Reverse((due, seq, slot))),
            Hold::Reorder(deadline) => self.reordered.push_back(Reordered {
                seq,
                deadline,
                slot,
            }),
            Hold::No => self.delayed.push(Reverse((Instant::ZERO, seq, slot))),
        }
    }

    fn passed(&mut self, seq: u64) {
        self.passed = self.passed.max(seq);
    }

    /// When the first held frame is due: `Instant::ZERO` if a reordered frame has been
    /// passed by enough others already.
    fn next_due(&self) -> Option<Instant> {
        let delayed = self.delayed.peek().map(|Reverse((due, _, _))| *due);
        let reordered = self.reordered.front().map(|r| {
            if self.passed >= r.seq + self.reorder_gap {
                Instant::ZERO
            } else {
                r.deadline
            }
        });
        match (delayed, reordered) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn due(&self, now: Instant) -> Option<Due> {
        let delayed = self
            .delayed
            .peek()
            .filter(|Reverse((due, _, _))| *due <= now)
            .map(|Reverse((due, _, _))| *due);
        let reordered = self
            .reordered
            .front()
            .filter(|r| r.deadline <= now || self.passed >= r.seq + self.reorder_gap)
            .map(|r| r.deadline.min(now));
        match (delayed, reordered) {
            (Some(d), Some(r)) if r < d => Some(Due::Reordered),
            (Some(_), _) => Some(Due::Delayed),
            (None, Some(_)) => Some(Due::Reordered),
            (None, None) => None,
        }
    }

    /// The held frame due first, whether or not its time came (for early release).
    fn oldest(&self) -> Option<Due> {
        match (self.delayed.peek(), self.reordered.front()) {
            (Some(Reverse((due, _, _))), Some(r)) if r.deadline < *due => Some(Due::Reordered),
            (Some(_), _) => Some(Due::Delayed),
            (None, Some(_)) => Some(Due::Reordered),
            (None, None) => None,
        }
    }

    /// Takes the frame out of its queue: (slot, arrival number).
    fn take(&mut self, from: Due) -> (u16, u64) {
        match from {
            Due::Delayed => {
                let Reverse((_, seq, slot)) = self.delayed.pop().expect("a delayed frame");
                (slot, seq)
            }
            Due::Reordered => {
                let r = self.reordered.pop_front().expect("a reordered frame");
                (r.slot, r.seq)
            }
        }
    }

    fn release_slot(&mut self, slot: u16) {
        self.free.push(slot);
    }

    fn holding(&self) -> usize {
        self.delayed.len() + self.reordered.len()
    }
}

/// The TX side seen by the inner handler: each frame it sends meets the TX faults.
struct ImpairedSink<'a, 'b> {
    lane: &'a mut Lane,
    counters: &'a mut Counters<ImpairCounter>,
    inner: &'a mut (dyn FrameSink + 'b),
    now: Instant,
}

impl ImpairedSink<'_, '_> {
    /// A free TX slot; with none, the frame due first goes out now (or is lost).
    fn slot(&mut self) -> u16 {
        if let Some(slot) = self.lane.free.pop() {
            return slot;
        }
        let from = self
            .lane
            .oldest()
            .expect("no free slot, so some frame is held");
        let (slot, seq) = self.lane.take(from);
        self.counters.bump(ImpairCounter::TxReleasedEarly);
        self.send_held(slot, seq);
        slot
    }

    /// Sends a held frame as it is; the slot stays taken.
    fn send_held(&mut self, slot: u16, seq: u64) -> TxResult {
        let frame = self.lane.buf(slot);
        let result = self.inner.send(&mut |buf: &mut [u8]| {
            let out = buf.get_mut(..frame.len())?;
            out.copy_from_slice(frame);
            Some(frame.len())
        });
        match result {
            TxResult::Sent => self.lane.passed(seq),
            TxResult::Full | TxResult::Declined => self.counters.bump(ImpairCounter::TxLost),
        }
        result
    }

    /// Holds a copy of `frame` as `hold` says.
    fn hold_copy(&mut self, frame: &[u8], hold: Hold) {
        let slot = self.slot();
        self.lane.fill(slot, frame, frame.len());
        let seq = self.lane.seq();
        self.lane.hold(slot, seq, hold);
    }

    fn count_hold(&mut self, hold: Hold) {
        match hold {
            Hold::No => {}
            Hold::Until(_) => self.counters.bump(ImpairCounter::TxDelayed),
            Hold::Reorder(_) => self.counters.bump(ImpairCounter::TxReordered),
        }
    }

    /// The TX faults on an answer the inner handler wrote in place: the length to send in
    /// place, or None when it is dropped or held (a held copy goes out from `poll`).
    fn in_place(&mut self, frame: &mut [u8], len: usize) -> Option<usize> {
        self.counters.bump(ImpairCounter::TxFrames);
        let fate = self.lane.decide(self.now);
        if fate.drop {
            self.counters.bump(ImpairCounter::TxDropped);
            return None;
        }
        let frame = &mut frame[..len];
        if let Some(random) = fate.corrupt
            && corrupt(frame, random)
        {
            self.counters.bump(ImpairCounter::TxCorrupted);
        }
        if fate.duplicate {
            self.counters.bump(ImpairCounter::TxDuplicated);
        }
        self.count_hold(fate.hold);
        match fate.hold {
            Hold::No => {
                let seq = self.lane.seq();
                if fate.duplicate {
                    // The copy goes first as a new frame; the original follows in place.
                    let copy = self.lane.seq();
                    let sent = self.inner.send(&mut |buf: &mut [u8]| {
                        buf.get_mut(..len)?.copy_from_slice(frame);
                        Some(len)
                    });
                    if sent == TxResult::Sent {
                        self.lane.passed(copy);
                    } else {
                        self.hold_copy(frame, Hold::Until(self.now));
                    }
                }
                self.lane.passed(seq);
                self.release_passed();
                Some(len)
            }
            hold => {
                self.hold_copy(frame, hold);
                if fate.duplicate {
                    self.hold_copy(frame, hold);
                }
                None
            }
        }
    }

    /// Sends the copy of a frame just sent, kept in the scratch buffer; with no room left in
    /// the batch it waits in a slot for the next `poll`.
    fn send_duplicate(&mut self, len: usize) {
        let seq = self.lane.seq();
        let copy = &self.lane.scratch[..len];
        let sent = self.inner.send(&mut |buf: &mut [u8]| {
            buf.get_mut(..len)?.copy_from_slice(copy);
            Some(len)
        });
        if sent == TxResult::Sent {
            self.lane.passed(seq);
            return;
        }
        let slot = self.slot();
        let Lane { store, scratch, .. } = &mut *self.lane;
        let at = slot as usize * HELD_FRAME_BYTES;
        store[at..at + len].copy_from_slice(&scratch[..len]);
        self.lane.held[slot as usize] = (len as u32, len as u32);
        self.lane.hold(slot, seq, Hold::Until(self.now));
    }

    /// Sends the reordered frames enough others have passed.
    fn release_passed(&mut self) {
        while self.inner.room() > 0
            && self
                .lane
                .reordered
                .front()
                .is_some_and(|r| self.lane.passed >= r.seq + self.lane.reorder_gap)
        {
            let (slot, seq) = self.lane.take(Due::Reordered);
            self.send_held(slot, seq);
            self.lane.release_slot(slot);
        }
    }

    /// Sends every held frame due by now that the batch has room for.
    fn release_due(&mut self) {
        while self.inner.room() > 0 {
            let Some(from) = self.lane.due(self.now) else {
                return;
            };
            let (slot, seq) = self.lane.take(from);
            self.send_held(slot, seq);
            self.lane.release_slot(slot);
        }
    }
}

impl FrameSink for ImpairedSink<'_, '_> {
    fn send(&mut self, write: &mut FrameWriter<'_>) -> TxResult {
        // A frame that could not go anyway meets no fault and draws nothing.
        if self.inner.room() == 0 {
            return TxResult::Full;
        }
        self.counters.bump(ImpairCounter::TxFrames);
        let fate = self.lane.decide(self.now);
        if fate.drop {
            return match write(&mut self.lane.scratch) {
                Some(_) => {
                    self.counters.bump(ImpairCounter::TxDropped);
                    TxResult::Sent
                }
                None => TxResult::Declined,
            };
        }
        if let Hold::Until(_) | Hold::Reorder(_) = fate.hold {
            let slot = self.slot();
            let at = slot as usize * HELD_FRAME_BYTES;
            let Some(len) = write(&mut self.lane.store[at..at + HELD_FRAME_BYTES])
                .filter(|&n| n <= HELD_FRAME_BYTES)
            else {
                self.lane.release_slot(slot);
                return TxResult::Declined;
            };
            self.lane.held[slot as usize] = (len as u32, len as u32);
            if let Some(random) = fate.corrupt {
                let (buf, len) = self.lane.buf_mut(slot);
                if corrupt(&mut buf[..len], random) {
                    self.counters.bump(ImpairCounter::TxCorrupted);
                }
            }
            self.count_hold(fate.hold);
            let seq = self.lane.seq();
            self.lane.hold(slot, seq, fate.hold);
            if fate.duplicate {
                self.counters.bump(ImpairCounter::TxDuplicated);
                let copy = self.slot();
                let at = slot as usize * HELD_FRAME_BYTES;
                let (from, to) = (at, copy as usize * HELD_FRAME_BYTES);
                self.lane.store.copy_within(from..from + len, to);
                self.lane.held[copy as usize] = (len as u32, len as u32);
                let seq = self.lane.seq();
                self.lane.hold(copy, seq, fate.hold);
            }
            return TxResult::Sent;
        }
        let scratch = &mut self.lane.scratch;
        let mut written = 0;
        let result = self.inner.send(&mut |buf: &mut [u8]| {
            let len = write(buf)?;
            let frame = buf.get_mut(..len)?;
            if let Some(random) = fate.corrupt {
                corrupt(frame, random);
            }
            if fate.duplicate {
                scratch.get_mut(..len)?.copy_from_slice(frame);
            }
            written = len;
            Some(len)
        });
        if result != TxResult::Sent {
            return result;
        }
        if fate.corrupt.is_some() {
            self.counters.bump(ImpairCounter::TxCorrupted);
        }
        let seq = self.lane.seq();
        self.lane.passed(seq);
        if fate.duplicate {
            self.counters.bump(ImpairCounter::TxDuplicated);
            self.send_duplicate(written);
        }
        self.release_passed();
        TxResult::Sent
    }

    fn room(&self) -> usize {
        self.inner.room()
    }
}

/// A `FrameHandler` whose received and sent frames meet the faults of an `ImpairConfig`.
pub struct Impaired<H: FrameHandler> {
    inner: H,
    config: ImpairConfig,
    rx: Lane,
    tx: Lane,
    counters: Counters<ImpairCounter>,
    /// How many counters the inner handler publishes before ours.
    inner_counters: usize,
}

/// Independent PRNG streams per direction.
const RX_STREAM: u64 = 0x5258_5f69_6d70_6169; // "RX_impai"
const TX_STREAM: u64 = 0x5458_5f69_6d70_6169; // "TX_impai"

impl<H: FrameHandler> Impaired<H> {
    /// Wraps `inner`; allocates `config.pool` buffers of `HELD_FRAME_BYTES` per direction.
    pub fn new(inner: H, config: ImpairConfig) -> Self {
        let inner_counters = inner.counter_names().len();
        Self {
            rx: Lane::new(config.rx, &config, RX_STREAM),
            tx: Lane::new(config.tx, &config, TX_STREAM),
            inner,
            config,
            counters: Counters::default(),
            inner_counters,
        }
    }

    pub fn config(&self) -> &ImpairConfig {
        &self.config
    }

    pub fn inner(&self) -> &H {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut H {
        &mut self.inner
    }

    pub fn into_inner(self) -> H {
        self.inner
    }

    pub fn counters(&self) -> &Counters<ImpairCounter> {
        &self.counters
    }

    /// Frames held now: (received, sent).
    pub fn holding(&self) -> (usize, usize) {
        (self.rx.holding(), self.tx.holding())
    }
}

/// Hands a held received frame to the inner handler; an answer it writes in place goes out
/// as a new frame, through the TX faults.
fn deliver_held<H: FrameHandler>(
    inner: &mut H,
    rx: &mut Lane,
    out: &mut ImpairedSink<'_, '_>,
    slot: u16,
    seq: u64,
) {
    let now = out.now;
    let (buf, len) = rx.buf_mut(slot);
    if let Some(answer) = inner.handle(now, buf, len, out) {
        let (buf, _) = rx.buf_mut(slot);
        if let Some(n) = out.in_place(buf, answer) {
            let frame = &buf[..n];
            let sent = out.inner.send(&mut |b: &mut [u8]| {
                b.get_mut(..n)?.copy_from_slice(frame);
                Some(n)
            });
            if sent != TxResult::Sent {
                out.counters.bump(ImpairCounter::TxLost);
            }
        }
    }
    rx.passed(seq);
    rx.release_slot(slot);
}

/// A free RX slot; with none, the frame due first is handed on now.
fn rx_slot<H: FrameHandler>(inner: &mut H, rx: &mut Lane, out: &mut ImpairedSink<'_, '_>) -> u16 {
    if let Some(slot) = rx.free.pop() {
        return slot;
    }
    let from = rx.oldest().expect("no free slot, so some frame is held");
    let (slot, seq) = rx.take(from);
    out.counters.bump(ImpairCounter::RxReleasedEarly);
    deliver_held(inner, rx, out, slot, seq);
    rx.free.pop().expect("the slot just released")
}

/// Hands on the reordered frames enough others have passed, while answers have room.
fn release_passed_rx<H: FrameHandler>(
    inner: &mut H,
    rx: &mut Lane,
    out: &mut ImpairedSink<'_, '_>,
) {
    while out.inner.room() > 0
        && rx
            .reordered
            .front()
            .is_some_and(|r| rx.passed >= r.seq + rx.reorder_gap)
    {
        let (slot, seq) = rx.take(Due::Reordered);
        deliver_held(inner, rx, out, slot, seq);
    }
}

impl<H: FrameHandler> FrameHandler for Impaired<H> {
    fn handle(
        &mut self,
        now: Instant,
        frame: &mut [u8],
        len: usize,
        tx: &mut dyn FrameSink,
    ) -> Option<usize> {
        let Self {
            inner,
            rx,
            tx: tx_lane,
            counters,
            ..
        } = self;
        let mut out = ImpairedSink {
            lane: tx_lane,
            counters,
            inner: tx,
            now,
        };
        out.counters.bump(ImpairCounter::RxFrames);
        let fate = rx.decide(now);
        if fate.drop {
            out.counters.bump(ImpairCounter::RxDropped);
            return None;
        }
        let len = len.min(frame.len());
        if let Some(random) = fate.corrupt
            && corrupt(&mut frame[..len], random)
        {
            out.counters.bump(ImpairCounter::RxCorrupted);
        }
        if fate.duplicate {
            out.counters.bump(ImpairCounter::RxDuplicated);
        }
        let room = frame.len().min(HELD_FRAME_BYTES);
        let hold = if len > room { Hold::No } else { fate.hold };
        match hold {
            Hold::Until(_) => out.counters.bump(ImpairCounter::RxDelayed),
            Hold::Reorder(_) => out.counters.bump(ImpairCounter::RxReordered),
            Hold::No => {}
        }
        if !matches!(hold, Hold::No) {
            for _ in 0..1 + usize::from(fate.duplicate) {
                let slot = rx_slot(inner, rx, &mut out);
                rx.fill(slot, &frame[..len], room);
                let seq = rx.seq();
                rx.hold(slot, seq, hold);
            }
            return None;
        }
        let seq = rx.seq();
        // The copy is taken before the inner handler writes its answer over the frame.
        let copy = fate.duplicate.then(|| {
            let slot = rx_slot(inner, rx, &mut out);
            rx.fill(slot, &frame[..len], room);
            (slot, rx.seq())
        });
        let answer = inner
            .handle(now, frame, len, &mut out)
            .and_then(|n| out.in_place(frame, n));
        rx.passed(seq);
        if let Some((slot, seq)) = copy {
            deliver_held(inner, rx, &mut out, slot, seq);
        }
        release_passed_rx(inner, rx, &mut out);
        answer
    }

    fn wants_poll(&self, now: Instant) -> bool {
        self.rx.due(now).is_some() || self.tx.due(now).is_some() || self.inner.wants_poll(now)
    }

    fn poll(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        let Self {
            inner,
            rx,
            tx: tx_lane,
            counters,
            ..
        } = self;
        let mut out = ImpairedSink {
            lane: tx_lane,
            counters,
            inner: tx,
            now,
        };
        // Received frames first: an answer needs room in the batch, so stop when it is spent.
        while out.inner.room() > 0 {
            let Some(from) = rx.due(now) else { break };
            let (slot, seq) = rx.take(from);
            deliver_held(inner, rx, &mut out, slot, seq);
        }
        if inner.wants_poll(now) {
            inner.poll(now, &mut out);
        }
        out.release_due();
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.rx.next_due(),
            self.tx.next_due(),
            self.inner.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn counter_names(&self) -> Vec<(&'static str, &'static str)> {
        let mut names = self.inner.counter_names();
        names.extend(Counters::<ImpairCounter>::names());
        names
    }

    fn publish(&self, shared: &SharedCounters, offset: usize) {
        self.inner.publish(shared, offset);
        shared.store(offset + self.inner_counters, self.counters.values());
    }
}

#[cfg(test)]
mod tests;
