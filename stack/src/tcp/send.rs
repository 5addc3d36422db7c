//! The send side's memory: the bytes written but not yet acknowledged (one buffer that
//! grows on demand up to its limit, and gives its memory back once drained), and the SACK
//! scoreboard (RFC 6675) that says which of them the peer already holds.
//!
//! No per-segment queue: a retransmission is a range of sequence space copied again from
//! the buffer, so segment boundaries can change between tries (as RFC 9293 3.8.1 allows).

use std::collections::VecDeque;

use super::seq::SeqNumber;

/// A drained buffer keeps at most this capacity, so an idle connection costs (almost)
/// nothing while a chatty one does not reallocate per message.
pub const RETAINED_CAPACITY: usize = 4096;

/// Bytes written by the application and not yet acknowledged, oldest first.
#[derive(Debug, Default)]
pub struct SendBuffer {
    data: VecDeque<u8>,
    limit: usize,
}

impl SendBuffer {
    pub fn new(limit: usize) -> SendBuffer {
        SendBuffer {
            data: VecDeque::new(),
            limit,
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Room left before the limit.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.data.len())
    }

    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// Appends what fits; returns the bytes taken.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.room());
        self.data.extend(&bytes[..n]);
        n
    }

    /// Copies bytes from `offset` (from the oldest) into `out`; returns how many.
    pub fn copy_out(&self, offset: usize, out: &mut [u8]) -> usize {
        let (a, b) = self.data.as_slices();
        let mut done = 0;
        let mut offset = offset;
        for part in [a, b] {
            if offset >= part.len() {
                offset -= part.len();
                continue;
            }
            let n = (part.len() - offset).min(out.len() - done);
            out[done..done + n].copy_from_slice(&part[offset..offset + n]);
            done += n;
            offset = 0;
            if done == out.len() {
                break;
            }
        }
        done
    }

    /// Drops the `n` oldest bytes (acknowledged).
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.data.len());
        self.data.drain(..n);
        if self.data.is_empty() && self.data.capacity() > RETAINED_CAPACITY {
            self.data = VecDeque::new();
        }
    }
}

/// At most this many SACKed ranges are remembered: SACK information is advisory (RFC 2018
/// 8: the receiver may renege), so dropping the highest ranges costs only retransmissions.
pub const MAX_SACKED_RANGES: usize = 16;

/// RFC 6675's DupThresh.
pub const DUP_THRESH: u32 = 3;

/// RFC 6675 2: what the peer SACKed above the cumulative ACK, as sorted disjoint ranges,
/// and `high_rxt`, the highest sequence retransmitted in this recovery.
#[derive(Debug, Default)]
pub struct Scoreboard {
    /// `[start, end)` ranges, sorted, disjoint and not adjacent.
    sacked: Vec<(SeqNumber, SeqNumber)>,
    pub high_rxt: SeqNumber,
}

impl Scoreboard {
    pub fn clear(&mut self) {
        self.sacked = Vec::new();
    }

    pub fn is_empty(&self) -> bool {
        self.sacked.is_empty()
    }

    /// The highest SACKed sequence (RFC 6675 HighACK is the cumulative ACK; this is the
    /// top of the SACKed data), if any.
    pub fn high_sacked(&self) -> Option<SeqNumber> {
        self.sacked.last().map(|r| r.1)
    }

    pub fn ranges(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.sacked
    }

    /// Forgets what the cumulative ACK `una` covers.
    pub fn advance(&mut self, una: SeqNumber) {
        self.sacked.retain(|r| r.1 > una);
        if let Some(first) = self.sacked.first_mut() {
            first.0 = first.0.max(una);
        }
        if self.high_rxt < una {
            self.high_rxt = una;
        }
    }

    /// Adds a SACKed range (already checked to lie within `(una, snd_max]`); returns the
    /// bytes newly SACKed.
    pub fn add(&mut self, start: SeqNumber, end: SeqNumber) -> u32 {
        if end <= start {
            return 0;
        }
        let before = self.sacked_bytes();
        // The ranges that touch [start, end) merge with it.
        let first = self.sacked.iter().position(|r| r.1 >= start);
        let Some(first) = first else {
            self.push_bounded(self.sacked.len(), (start, end));
            return self.sacked_bytes() - before;
        };
        let mut last = first;
        let mut merged = (start, end);
        while last < self.sacked.len() && self.sacked[last].0 <= end {
            merged.0 = merged.0.min(self.sacked[last].0);
            merged.1 = merged.1.max(self.sacked[last].1);
            last += 1;
        }
        if last == first {
            self.push_bounded(first, merged);
        } else {
            self.sacked[first] = merged;
            self.sacked.drain(first + 1..last);
        }
        self.sacked_bytes().saturating_sub(before)
    }

    fn push_bounded(&mut self, at: usize, range: (SeqNumber, SeqNumber)) {
        if self.sacked.len() >= MAX_SACKED_RANGES {
            if at >= MAX_SACKED_RANGES {
                return;
            }
            self.sacked.pop();
        }
        self.sacked.insert(at, range);
    }

    pub fn sacked_bytes(&self) -> u32 {
        self.sacked.iter().map(|r| r.1.since(r.0)).sum()
    }

    /// RFC 6675 IsLost(seq): DupThresh discontiguous SACKed ranges above it, or more than
    /// (DupThresh - 1) * SMSS bytes SACKed above it.
    pub fn is_lost(&self, seq: SeqNumber, smss: u32) -> bool {
        let mut ranges = 0;
        let mut bytes = 0u32;
        for r in self.sacked.iter().rev() {
            if r.1 <= seq {
                break;
            }
            ranges += 1;
            bytes = bytes.saturating_add(r.1.since(r.0.max(seq + 1)));
        }
        ranges >= DUP_THRESH || bytes > (DUP_THRESH - 1) * smss
    }

    /// The holes (unSACKed ranges) between `una` and the highest SACKed byte.
    pub fn holes(&self, una: SeqNumber) -> impl Iterator<Item = (SeqNumber, SeqNumber)> + '_ {
        let mut at = una;
        self.sacked.iter().filter_map(move |r| {
            let hole = (at, r.0);
            at = r.1;
            (hole.0 < hole.1).then_some(hole)
        })
    }

    /// RFC 6675 SetPipe: the bytes thought to be in the network. An unSACKed byte counts
    /// once unless lost, and once more if retransmitted (below `high_rxt`). Within a hole
    /// every byte has the same SACKed data above it, so lost-ness is decided per hole.
    pub fn pipe(&self, una: SeqNumber, snd_max: SeqNumber, smss: u32) -> u32 {
        let mut pipe = 0u32;
        let top = self.high_sacked().unwrap_or(una).max(una);
        for (s, e) in self.holes(una) {
            if !self.is_lost(s, smss) {
                pipe = pipe.saturating_add(e.since(s));
            }
            pipe = pipe.saturating_add(self.high_rxt.min(e).since(s));
        }
        // Above the highest SACK nothing is lost yet.
        pipe = pipe.saturating_add(snd_max.since(top));
        pipe.saturating_add(self.high_rxt.min(snd_max).since(top))
    }

    /// RFC 6675 NextSeg() rules 1 and 3 (rule 2, new data, is the caller's): the first
    /// unSACKed range at or above `high_rxt` below the highest SACK, preferring lost ones.
    /// Returns its start and end (at most `smss` long).
    pub fn next_retransmit(
        &self,
        una: SeqNumber,
        smss: u32,
        lost_only: bool,
    ) -> Option<(SeqNumber, SeqNumber)> {
        for (s, e) in self.holes(una) {
            let s = s.max(self.high_rxt);
            if s >= e {
                continue;
            }
            if lost_only && !self.is_lost(s, smss) {
                continue;
            }
            let end = if e.since(s) > smss { s + smss } else { e };
            return Some((s, end));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> SeqNumber {
        SeqNumber(n)
    }

    #[test]
    fn buffer_grows_on_demand_and_gives_memory_back() {
        let mut b = SendBuffer::new(100_000);
        assert_eq!(b.capacity(), 0);
        let data: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        assert_eq!(b.write(&data), 70_000);
        assert_eq!(b.write(&data), 30_000);
        assert_eq!(b.room(), 0);
        let mut out = [0u8; 10];
        b.consume(65_000);
        assert_eq!(b.copy_out(3, &mut out), 10);
        assert_eq!(out[0], 65_003u32 as u8);
        assert_eq!(b.copy_out(34_995, &mut out), 5);
        b.consume(usize::MAX);
        assert!(b.is_empty());
        assert_eq!(b.capacity(), 0);
    }

    #[test]
    fn scoreboard_merges_and_finds_holes() {
        let mut sb = Scoreboard::default();
        let una = s(1000);
        sb.high_rxt = una;
        assert_eq!(sb.add(s(3000), s(4000)), 1000);
        assert_eq!(sb.add(s(5000), s(6000)), 1000);
        assert_eq!(sb.add(s(3500), s(4500)), 500);
        assert_eq!(sb.add(s(7000), s(8000)), 1000);
        assert_eq!(
            sb.ranges(),
            &[(s(3000), s(4500)), (s(5000), s(6000)), (s(7000), s(8000))]
        );
        let holes: Vec<_> = sb.holes(una).collect();
        assert_eq!(
            holes,
            vec![(s(1000), s(3000)), (s(4500), s(5000)), (s(6000), s(7000))]
        );
        // 3 ranges above 1000: lost. Above 6000 only one range of 1000 bytes: not lost
        // with SMSS 1000 (needs more than 2000 bytes).
        assert!(sb.is_lost(s(1000), 1000));
        assert!(!sb.is_lost(s(6000), 1000));
        assert_eq!(
            sb.next_retransmit(una, 1000, true),
            Some((s(1000), s(2000)))
        );
        sb.high_rxt = s(2000);
        assert_eq!(
            sb.next_retransmit(una, 1000, true),
            Some((s(2000), s(3000)))
        );
        sb.high_rxt = s(3000);
        // Above 4500 two ranges, 2000 bytes: not lost yet, so only rule 3 picks it.
        assert!(!sb.is_lost(s(4500), 1000));
        assert_eq!(sb.next_retransmit(una, 1000, true), None);
        assert_eq!(
            sb.next_retransmit(una, 1000, false),
            Some((s(4500), s(5000)))
        );
        // pipe with snd_max 9000: hole 1000-3000 lost (0) but retransmitted (2000);
        // 4500-5000 and 6000-7000 not lost (500 + 1000); above 8000: 1000.
        assert_eq!(sb.pipe(una, s(9000), 1000), 2000 + 1500 + 1000);
        sb.advance(s(5500));
        assert_eq!(sb.ranges(), &[(s(5500), s(6000)), (s(7000), s(8000))]);
    }

    #[test]
    fn scoreboard_is_bounded() {
        let mut sb = Scoreboard::default();
        for i in 0..100u32 {
            sb.add(s(i * 10 + 1), s(i * 10 + 5));
        }
        assert_eq!(sb.ranges().len(), MAX_SACKED_RANGES);
        assert_eq!(sb.ranges()[0], (s(1), s(5)));
    }
}
