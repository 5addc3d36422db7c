//! The receive side's memory: in-order bytes the application has not read (one buffer that
//! grows on demand up to its limit), and out-of-order ranges held for reassembly within a
//! byte bound (RFC 9293 3.10.7.4 "segments with higher beginning sequence numbers may be
//! held"), from which the SACK blocks we send are drawn (RFC 2018 4: the block holding the
//! most recent segment first, then the most recently reported others).

use std::collections::VecDeque;

use super::{send::RETAINED_CAPACITY, seq::SeqNumber};

/// At most this many separate out-of-order ranges (each its own allocation), whatever the
/// byte bound: a peer sending 1-byte segments into every other byte cannot make us keep
/// thousands of small allocations.
pub const MAX_OOO_RANGES: usize = 128;

#[derive(Debug)]
struct OooRange {
    start: SeqNumber,
    data: Vec<u8>,
    /// When a segment last landed in it (a counter), for the SACK block order.
    touched: u32,
}

impl OooRange {
    fn end(&self) -> SeqNumber {
        self.start + self.data.len() as u32
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

#[derive(Debug, Default)]
pub struct RecvBuffer {
    data: VecDeque<u8>,
    limit: usize,
    ooo: Vec<OooRange>,
    ooo_bytes: usize,
    ooo_limit: usize,
    clock: u32,
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
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Room for in-order bytes.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.data.len())
    }

    pub fn capacity(&self) -> usize {
        self.data.capacity() + self.ooo.iter().map(|r| r.data.capacity()).sum::<usize>()
    }

    pub fn ooo_bytes(&self) -> usize {
        self.ooo_bytes
    }

    pub fn has_out_of_order(&self) -> bool {
        !self.ooo.is_empty()
    }

    /// The start of the lowest held range: a segment there fills the first hole.
    pub fn first_ooo(&self) -> Option<SeqNumber> {
        self.ooo.first().map(|r| r.start)
    }

    pub fn read(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.data.len());
        let (a, b) = self.data.as_slices();
        let from_a = n.min(a.len());
        out[..from_a].copy_from_slice(&a[..from_a]);
        out[from_a..n].copy_from_slice(&b[..n - from_a]);
        self.data.drain(..n);
        if self.data.is_empty() && self.data.capacity() > RETAINED_CAPACITY {
            self.data = VecDeque::new();
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
            return self.hold(seq, payload);
        }
        self.data.extend(payload);
        let mut next = rcv_nxt + payload.len() as u32;
        // Join up what was held and now follows on.
        while let Some(first) = self.ooo.first() {
            if first.start > next {
                break;
            }
            let r = self.ooo.remove(0);
            self.ooo_bytes -= r.data.len();
            let skip = next.since(r.start) as usize;
            if skip < r.data.len() {
                self.data.extend(&r.data[skip..]);
                next = r.end();
            }
        }
        Placed::InOrder(next.since(rcv_nxt) as usize)
    }

    fn hold(&mut self, seq: SeqNumber, payload: &[u8]) -> Placed {
        let end = seq + payload.len() as u32;
        // The ranges touching [seq, end) merge with it.
        let first = self
            .ooo
            .iter()
            .position(|r| r.end() >= seq)
            .unwrap_or(self.ooo.len());
        let mut last = first;
        while last < self.ooo.len() && self.ooo[last].start <= end {
            last += 1;
        }
        let (start, stop) = if last > first {
            (
                self.ooo[first].start.min(seq),
                self.ooo[last - 1].end().max(end),
            )
        } else {
            (seq, end)
        };
        let merged_len = stop.since(start) as usize;
        let old: usize = self.ooo[first..last].iter().map(|r| r.data.len()).sum();
        let added = merged_len - old;
        let ranges_after = self.ooo.len() - (last - first) + 1;
        if self.ooo_bytes + added > self.ooo_limit || ranges_after > MAX_OOO_RANGES {
            return Placed::Dropped;
        }
        if added == 0 {
            // Already held: still the most recent block to report.
            self.ooo[first].touched = self.clock;
            return Placed::OutOfOrder;
        }
        let mut data = vec![0u8; merged_len];
        for r in &self.ooo[first..last] {
            let at = r.start.since(start) as usize;
            data[at..at + r.data.len()].copy_from_slice(&r.data);
        }
        let at = seq.since(start) as usize;
        data[at..at + payload.len()].copy_from_slice(payload);
        self.ooo.drain(first..last);
        self.ooo.insert(
            first,
            OooRange {
                start,
                data,
                touched: self.clock,
            },
        );
        self.ooo_bytes += added;
        Placed::OutOfOrder
    }

    /// Up to `n` SACK blocks, the most recently touched first (RFC 2018 4).
    pub fn sack_blocks(&self, n: usize, out: &mut [Option<(u32, u32)>]) {
        // Selection of the n youngest (n is at most 4); age is the wrapping distance from
        // the clock, so the counter may wrap.
        let mut last_age: Option<u32> = None;
        for slot in out.iter_mut().take(n) {
            let next = self
                .ooo
                .iter()
                .map(|r| (self.clock.wrapping_sub(r.touched), r))
                .filter(|(age, _)| last_age.is_none_or(|last| *age > last))
                .min_by_key(|(age, _)| *age);
            let Some((age, r)) = next else { break };
            *slot = Some((r.start.0, r.end().0));
            last_age = Some(age);
        }
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
}
