//! The receive side's memory: one ring buffer that grows on demand up to its limit, holding
//! the in-order bytes the application has not read and, after them at their offsets from
//! `rcv_nxt`, the out-of-order bytes held for reassembly (RFC 9293 3.10.7.4 "segments with
//! higher beginning sequence numbers may be held"), within a byte bound. Which out-of-order
//! ranges are present is a small sorted interval set (smoltcp's `Assembler` is the model),
//! from which the SACK blocks we send are drawn (RFC 2018 4: the block holding the most
//! recent segment first, then the most recently reported others).
//!
//! A segment costs its own payload and the ranges it touches: held bytes are never copied
//! again, neither when a segment extends their range nor when a hole fills (`rcv_nxt` just
//! moves over them). Only growing the ring moves them, geometrically, so each held byte is
//! moved a bounded number of times however the peer cuts its segments.

use super::{send::RETAINED_CAPACITY, seq::SeqNumber};

/// At most this many separate out-of-order ranges, whatever the byte bound: a peer sending
/// 1-byte segments into every other byte cannot make the interval set large.
pub const MAX_OOO_RANGES: usize = 128;

/// RFC 7323 2.3: rounding the window up to the scale's unit (a shift of at most 14) may
/// promise fewer than 2^14 bytes beyond the buffer. Nothing is held past the limit plus this.
const MAX_WINDOW_ROUNDING: usize = 1 << 14;

/// The smallest ring allocated.
const MIN_RING: usize = 1024;

/// Bytes present from `start` to `end`, out of order.
#[derive(Debug, Clone, Copy)]
struct Held {
    start: SeqNumber,
    end: SeqNumber,
    /// When a segment last landed in it (a counter), for the SACK block order.
    touched: u32,
}

impl Held {
    fn len(&self) -> usize {
        self.end.since(self.start) as usize
    }
}

/// What became of a segment's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// In order: `rcv_nxt` moves by this many bytes (its own and any it joined up with).
    InOrder(usize),
    /// Held out of order.
    OutOfOrder,
    /// Not held: the out-of-order bound was reached.
    Dropped,
}

/// The ring: `ring[head..]` then `ring[..head]` in logical order. Logical index `i < len`
/// is the `i`th unread in-order byte; the byte at sequence number `s >= rcv_nxt`, if held,
/// is at logical index `len + (s - rcv_nxt)`. Reads move `head` and shrink `len`, in-order
/// arrivals grow `len` with `rcv_nxt`, so a held byte never moves in the ring.
#[derive(Debug, Default)]
pub struct RecvBuffer {
    ring: Vec<u8>,
    head: usize,
    len: usize,
    limit: usize,
    /// Sorted, disjoint and not adjacent (touching ranges merge), all after `rcv_nxt`.
    held: Vec<Held>,
    ooo_bytes: usize,
    ooo_limit: usize,
    clock: u32,
    /// Bytes written into or moved within the ring (payloads placed, bytes moved by
    /// growth): what reassembly costs, for the tests.
    #[cfg(test)]
    copied: u64,
}

impl RecvBuffer {
    pub fn new(limit: usize, ooo_limit: usize) -> RecvBuffer {
        RecvBuffer {
            limit,
            ooo_limit,
            ..RecvBuffer::default()
        }
    }

    /// In-order bytes waiting for the application.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Room for in-order bytes.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.len)
    }

    pub fn capacity(&self) -> usize {
        self.ring.len() + self.held.capacity() * std::mem::size_of::<Held>()
    }

    pub fn ooo_bytes(&self) -> usize {
        self.ooo_bytes
    }

    pub fn has_out_of_order(&self) -> bool {
        !self.held.is_empty()
    }

    /// The start of the lowest held range: a segment there fills the first hole.
    pub fn first_ooo(&self) -> Option<SeqNumber> {
        self.held.first().map(|r| r.start)
    }

    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.len);
        if n == 0 {
            return 0;
        }
        let cap = self.ring.len();
        let first = n.min(cap - self.head);
        out[..first].copy_from_slice(&self.ring[self.head..self.head + first]);
        out[first..n].copy_from_slice(&self.ring[..n - first]);
        self.head = self.at(n);
        self.len -= n;
        if self.len == 0 && self.held.is_empty() {
            self.head = 0;
            if cap > RETAINED_CAPACITY {
                self.ring = Vec::new();
                self.held = Vec::new();
            }
        }
        n
    }

    /// Places `payload` at `seq`, which is at or after `rcv_nxt` (the caller trimmed what
    /// came before and what lies past the window).
    pub fn insert(&mut self, rcv_nxt: SeqNumber, seq: SeqNumber, payload: &[u8]) -> Placed {
        self.clock = self.clock.wrapping_add(1);
        if payload.is_empty() {
            return Placed::InOrder(0);
        }
        if seq != rcv_nxt {
            return self.hold(rcv_nxt, seq, payload);
        }
        self.reserve(self.len.saturating_add(payload.len()));
        self.write(self.len, payload);
        let mut next = rcv_nxt + payload.len() as u32;
        // Join up what was held and now follows on: its bytes are in place already.
        let mut joined = 0;
        for r in &self.held {
            if r.start > next {
                break;
            }
            next = next.max(r.end);
            self.ooo_bytes = self.ooo_bytes.saturating_sub(r.len());
            joined += 1;
        }
        self.held.drain(..joined);
        let n = next.since(rcv_nxt) as usize;
        self.len += n;
        Placed::InOrder(n)
    }

    fn hold(&mut self, rcv_nxt: SeqNumber, seq: SeqNumber, payload: &[u8]) -> Placed {
        let offset = seq - rcv_nxt;
        if offset <= 0 {
            // Before `rcv_nxt`: the caller trims that.
            return Placed::Dropped;
        }
        let needed = self
            .len
            .saturating_add(offset as usize)
            .saturating_add(payload.len());
        if needed > self.limit.saturating_add(MAX_WINDOW_ROUNDING) {
            // Past any window we can have offered.
            return Placed::Dropped;
        }
        let end = seq + payload.len() as u32;
        // The ranges touching [seq, end) merge with it.
        let first = self.held.partition_point(|r| r.end < seq);
        let mut last = first;
        while last < self.held.len() && self.held[last].start <= end {
            last += 1;
        }
        let (start, stop) = if last > first {
            (
                self.held[first].start.min(seq),
                self.held[last - 1].end.max(end),
            )
        } else {
            (seq, end)
        };
        let merged_len = stop.since(start) as usize;
        let old: usize = self.held[first..last].iter().map(Held::len).sum();
        let added = merged_len.saturating_sub(old);
        let ranges_after = self.held.len() - (last - first) + 1;
        if self.ooo_bytes + added > self.ooo_limit || ranges_after > MAX_OOO_RANGES {
            return Placed::Dropped;
        }
        if added == 0 {
            // Already held: still the most recent block to report.
            if let Some(r) = self.held.get_mut(first) {
                r.touched = self.clock;
            }
            return Placed::OutOfOrder;
        }
        self.reserve(needed);
        self.write(self.len + offset as usize, payload);
        let merged = Held {
            start,
            end: stop,
            touched: self.clock,
        };
        if last > first {
            self.held[first] = merged;
            self.held.drain(first + 1..last);
        } else {
            self.held.insert(first, merged);
        }
        self.ooo_bytes += added;
        Placed::OutOfOrder
    }

    /// The ring position of logical index `i <= ring.len()`.
    fn at(&self, i: usize) -> usize {
        let p = self.head + i;
        if p >= self.ring.len() {
            p - self.ring.len()
        } else {
            p
        }
    }

    /// Copies `bytes` to logical index `i`; `i + bytes.len()` is within the ring.
    fn write(&mut self, i: usize, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let p = self.at(i);
        let first = bytes.len().min(self.ring.len() - p);
        self.ring[p..p + first].copy_from_slice(&bytes[..first]);
        self.ring[..bytes.len() - first].copy_from_slice(&bytes[first..]);
        #[cfg(test)]
        {
            self.copied += bytes.len() as u64;
        }
    }

    /// Makes logical indexes below `needed` fit in the ring. It grows by powers of two up
    /// to the limit (so the bytes it moves are bounded by a constant times the largest
    /// ring), then once to the limit and the window's rounding.
    fn reserve(&mut self, needed: usize) {
        let cap = self.ring.len();
        if needed <= cap {
            return;
        }
        let target = if needed <= self.limit {
            needed
                .next_power_of_two()
                .max(MIN_RING)
                .min(self.limit)
                .max(needed)
        } else if cap <= self.limit {
            needed.max(self.limit + (self.limit >> 6) + 64)
        } else {
            // Only a caller ignoring the window gets here: still grow geometrically.
            needed.max(cap.saturating_mul(2))
        };
        let mut ring = vec![0u8; target];
        ring[..cap - self.head].copy_from_slice(&self.ring[self.head..]);
        ring[cap - self.head..cap].copy_from_slice(&self.ring[..self.head]);
        #[cfg(test)]
        {
            self.copied += cap as u64;
        }
        self.ring = ring;
        self.head = 0;
    }

    /// Up to `n` SACK blocks, the most recently touched first (RFC 2018 4).
    pub fn sack_blocks(&self, n: usize, out: &mut [Option<(u32, u32)>]) {
        // Selection of the n youngest (n is at most 4); age is the wrapping distance from
        // the clock, so the counter may wrap.
        let mut last_age: Option<u32> = None;
        for slot in out.iter_mut().take(n) {
            let next = self
                .held
                .iter()
                .map(|r| (self.clock.wrapping_sub(r.touched), r))
                .filter(|(age, _)| last_age.is_none_or(|last| *age > last))
                .min_by_key(|(age, _)| *age);
            let Some((age, r)) = next else { break };
            *slot = Some((r.start.0, r.end.0));
            last_age = Some(age);
        }
    }

    /// Bytes written into or moved within the ring so far.
    #[cfg(test)]
    pub(crate) fn copied(&self) -> u64 {
        self.copied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembles_and_reports_recent_blocks_first() {
        let mut b = RecvBuffer::new(1000, 100);
        let nxt = SeqNumber(u32::MAX - 5);
        assert_eq!(b.insert(nxt, nxt + 10, b"klmno"), Placed::OutOfOrder);
        assert_eq!(b.insert(nxt, nxt + 30, b"EFG"), Placed::OutOfOrder);
        assert_eq!(b.insert(nxt, nxt + 20, b"uvw"), Placed::OutOfOrder);
        let mut blocks = [None; 4];
        b.sack_blocks(4, &mut blocks);
        let r = |a: u32, z: u32| Some(((nxt + a).0, (nxt + z).0));
        assert_eq!(blocks, [r(20, 23), r(30, 33), r(10, 15), None]);
        // Overlapping and adjacent segments merge.
        assert_eq!(b.insert(nxt, nxt + 13, b"nopqrst"), Placed::OutOfOrder);
        let mut blocks = [None; 4];
        b.sack_blocks(3, &mut blocks);
        assert_eq!(blocks, [r(10, 23), r(30, 33), None, None]);
        assert_eq!(b.ooo_bytes(), 16);
        // The hole fills: everything up to 23 is in order.
        assert_eq!(b.insert(nxt, nxt, b"abcdefghijk"), Placed::InOrder(23));
        let mut out = [0u8; 64];
        let n = b.read(&mut out);
        assert_eq!(&out[..n], b"abcdefghijklmnopqrstuvw");
        assert_eq!(b.first_ooo(), Some(nxt + 30));
        assert_eq!(b.ooo_bytes(), 3);
    }

    #[test]
    fn out_of_order_memory_is_bounded() {
        let mut b = RecvBuffer::new(100_000, 50);
        let nxt = SeqNumber(0);
        assert_eq!(b.insert(nxt, nxt + 100, &[1; 40]), Placed::OutOfOrder);
        assert_eq!(b.insert(nxt, nxt + 200, &[1; 11]), Placed::Dropped);
        assert_eq!(b.insert(nxt, nxt + 200, &[1; 10]), Placed::OutOfOrder);
        let mut b = RecvBuffer::new(100_000, 100_000);
        for i in 0..MAX_OOO_RANGES as u32 {
            assert_eq!(b.insert(nxt, nxt + 10 + i * 2, &[1]), Placed::OutOfOrder);
        }
        assert_eq!(b.insert(nxt, nxt + 1000, &[1]), Placed::Dropped);
        // Filling a gap between two ranges merges them, so it still fits.
        assert_eq!(b.insert(nxt, nxt + 11, &[1]), Placed::OutOfOrder);
    }

    /// 1 MB held behind a 1-byte hole, then 10,000 one-byte segments each extending it
    /// (reviews/tcp.md defect 1): each costs its own byte, not a copy of what is held.
    #[test]
    fn one_byte_extenders_behind_a_hole_copy_only_their_own_bytes() {
        const HELD: usize = 1_000_000;
        const EXTENDERS: u32 = 10_000;
        let mut b = RecvBuffer::new(2 << 20, 2 << 20);
        let nxt = SeqNumber(u32::MAX - 300_000);
        let stream: Vec<u8> = (0..HELD + 1 + EXTENDERS as usize)
            .map(|i| (i * 7 + i / 251) as u8)
            .collect();
        assert_eq!(
            b.insert(nxt, nxt + 1, &stream[1..1 + HELD]),
            Placed::OutOfOrder
        );
        let before = b.copied();
        for i in 0..EXTENDERS {
            let at = 1 + HELD + i as usize;
            assert_eq!(
                b.insert(nxt, nxt + at as u32, &stream[at..at + 1]),
                Placed::OutOfOrder
            );
        }
        let cost = b.copied() - before;
        assert!(
            cost <= 2 * u64::from(EXTENDERS),
            "{EXTENDERS} one-byte extenders copied {cost} bytes"
        );
        let mut blocks = [None; 4];
        b.sack_blocks(4, &mut blocks);
        let end = nxt + 1 + HELD as u32 + EXTENDERS;
        assert_eq!(blocks, [Some(((nxt + 1).0, end.0)), None, None, None]);
        // The hole fills: all of it is in order, and what is read is what was sent.
        assert_eq!(
            b.insert(nxt, nxt, &stream[..1]),
            Placed::InOrder(stream.len())
        );
        assert!(!b.has_out_of_order());
        assert_eq!(b.ooo_bytes(), 0);
        let mut out = vec![0u8; stream.len() + 10];
        assert_eq!(b.read(&mut out), stream.len());
        assert!(out[..stream.len()] == stream[..]);
        assert_eq!(b.capacity(), 0);
    }

    /// One loss at the front of a 1 MiB window, then the window's MSS-sized segments: the
    /// reassembly copies each byte a bounded number of times (the old code copied the
    /// growing range again for each segment, about 360 MB here).
    #[test]
    fn a_window_behind_one_loss_costs_its_bytes_not_their_square() {
        const MSS: usize = 1460;
        let window = 1 << 20;
        let mut b = RecvBuffer::new(window, window);
        let nxt = SeqNumber(12345);
        let stream: Vec<u8> = (0..window).map(|i| (i % 253) as u8).collect();
        let mut at = MSS;
        while at < window {
            let end = (at + MSS).min(window);
            assert_eq!(
                b.insert(nxt, nxt + at as u32, &stream[at..end]),
                Placed::OutOfOrder
            );
            at = end;
        }
        let held = (window - MSS) as u64;
        assert!(b.copied() <= 3 * held, "{} for {held}", b.copied());
        assert_eq!(b.insert(nxt, nxt, &stream[..MSS]), Placed::InOrder(window));
        let mut out = vec![0u8; window];
        assert_eq!(b.read(&mut out), window);
        assert!(out == stream);
    }

    /// Segments of random sizes, places and overlaps within the window, reads of random
    /// sizes, on a small buffer so the ring wraps often: what is read is the stream, and
    /// what is held and reported matches a byte-by-byte model.
    #[test]
    fn random_segments_reassemble_the_stream() {
        use rand::{Rng, SeedableRng};
        use rand_chacha::ChaCha8Rng;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for round in 0..40 {
            let limit = rng.random_range(1..5000);
            let ooo_limit = rng.random_range(0..6000);
            let mut b = RecvBuffer::new(limit, ooo_limit);
            let isn = SeqNumber(rng.random());
            let stream: Vec<u8> = (0..40_000).map(|_| rng.random()).collect();
            // Stream offsets: read up to `read`, in order up to `nxt`, held where `have`.
            let (mut read, mut nxt) = (0usize, 0usize);
            let mut have = vec![false; stream.len()];
            let mut out = vec![0u8; 8000];
            for _ in 0..3000 {
                if nxt >= stream.len() - 10_000 {
                    break;
                }
                let window = limit - (nxt - read);
                let start = if rng.random_bool(0.3) {
                    nxt
                } else {
                    nxt + rng.random_range(0..window + 50)
                };
                let len = rng.random_range(0..1500).min(stream.len() - start);
                // As the connection does: trim to the window.
                let stop = (start + len).min(nxt + window);
                if start < stop {
                    let placed =
                        b.insert(isn + nxt as u32, isn + start as u32, &stream[start..stop]);
                    match placed {
                        Placed::InOrder(n) => {
                            assert_eq!(start, nxt, "round {round}");
                            let mut end = stop;
                            while have[end] {
                                end += 1;
                            }
                            assert_eq!(n, end - nxt, "round {round}");
                            have[nxt..end].iter_mut().for_each(|h| *h = false);
                            nxt = end;
                        }
                        Placed::OutOfOrder => {
                            assert!(start > nxt, "round {round}");
                            have[start..stop].iter_mut().for_each(|h| *h = true);
                        }
                        Placed::Dropped => assert!(start > nxt, "round {round}"),
                    }
                }
                // Nothing is held past the window (under `limit` beyond `nxt`).
                let ahead = &have[nxt..nxt + limit];
                let held = ahead.iter().filter(|h| **h).count();
                assert_eq!(b.ooo_bytes(), held, "round {round}");
                assert!(held <= ooo_limit);
                assert_eq!(b.len(), nxt - read);
                assert!(b.capacity() <= 2 * limit + MAX_WINDOW_ROUNDING + 2048);
                let first = ahead.iter().position(|h| *h);
                assert_eq!(b.first_ooo(), first.map(|f| isn + (nxt + f) as u32));
                let mut blocks = [None; 4];
                b.sack_blocks(4, &mut blocks);
                for (l, r) in blocks.iter().flatten() {
                    let (l, r) = (
                        l.wrapping_sub(isn.0) as usize,
                        r.wrapping_sub(isn.0) as usize,
                    );
                    assert!(have[l..r].iter().all(|h| *h) && !have[l - 1] && !have[r]);
                }
                if rng.random_bool(0.3) {
                    let want = rng.random_range(0..out.len());
                    let n = b.read(&mut out[..want]);
                    assert_eq!(n, want.min(nxt - read));
                    assert!(out[..n] == stream[read..read + n], "round {round}");
                    read += n;
                }
            }
        }
    }
}
