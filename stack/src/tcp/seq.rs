//! Sequence-space arithmetic (RFC 9293 3.4, RFC 1982 serial numbers): 32-bit numbers that
//! wrap, compared by the sign of their difference. Every operation wraps; none can panic,
//! whatever a peer puts in a header.

use std::{
    cmp::Ordering,
    fmt,
    ops::{Add, AddAssign, Sub, SubAssign},
};

/// A TCP sequence (or acknowledgment) number.
///
/// `a < b` iff `(b - a) as i32 > 0`: the order holds within half the space (2^31) and is
/// not total, so it implements `PartialOrd` only and `max`/`min` are methods here.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// The later of two numbers.
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if self > other { self } else { other }
    }

    /// The earlier of two numbers.
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if self < other { self } else { other }
    }

    /// The forward distance from `earlier` to `self`, or 0 if `earlier` is not earlier.
    pub fn since(self, earlier: SeqNumber) -> u32 {
        let d = self - earlier;
        if d > 0 { d as u32 } else { 0 }
    }

    /// `start <= self < start + len` in sequence space (RFC 9293 3.4's window test).
    pub fn in_window(self, start: SeqNumber, len: u32) -> bool {
        self.0.wrapping_sub(start.0) < len
    }
}

impl Add<u32> for SeqNumber {
    type Output = SeqNumber;
    fn add(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs))
    }
}

impl AddAssign<u32> for SeqNumber {
    fn add_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_add(rhs);
    }
}

impl Sub<u32> for SeqNumber {
    type Output = SeqNumber;
    fn sub(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs))
    }
}

impl SubAssign<u32> for SeqNumber {
    fn sub_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_sub(rhs);
    }
}

impl Sub<SeqNumber> for SeqNumber {
    /// The signed distance: positive when `self` is later.
    type Output = i32;
    fn sub(self, rhs: SeqNumber) -> i32 {
        self.0.wrapping_sub(rhs.0) as i32
    }
}

impl PartialOrd for SeqNumber {
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        Some((*self - *other).cmp(&0))
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_across_the_wrap() {
        let a = SeqNumber(u32::MAX - 10);
        let b = a + 20;
        assert_eq!(b, SeqNumber(9));
        assert!(a < b);
        assert!(b > a);
        assert!(b >= a);
        assert_eq!(a.partial_cmp(&a), Some(Ordering::Equal));
        assert_eq!(b - a, 20);
        assert_eq!(a - b, -20);
        assert_eq!(b.since(a), 20);
        assert_eq!(a.since(b), 0);
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
        assert!(SeqNumber(5).in_window(a, 20));
        assert!(!SeqNumber(9).in_window(a, 20));
        assert!(!a.in_window(a, 0));
        assert_eq!(b - 20u32, a);
    }
}
