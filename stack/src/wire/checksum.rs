//! The Internet checksum of RFC 1071.
//!
//! `sum` adds 32-bit big-endian words into a 64-bit accumulator (2^16 ≡ 1 mod 2^16 − 1, so
//! this equals the 16-bit one's-complement sum once folded) and folds once at the end.

/// The unfolded one's-complement sum of `data` as big-endian 16-bit words (an odd last
/// byte is padded with zero, RFC 1071 §4.1).
pub fn sum(data: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 4];
    tail[..rest.len()].copy_from_slice(rest);
    acc + u64::from(u32::from_be_bytes(tail))
}

/// Folds a sum to 16 bits with end-around carry.
pub fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum field value for `data`: the complement of its folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// The sum of the IPv4 pseudo-header of a TCP or UDP segment (RFC 768, RFC 9293 §3.1).
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u16) -> u64 {
    u64::from(u32::from_be_bytes(src))
        + u64::from(u32::from_be_bytes(dst))
        + u64::from(proto)
        + u64::from(len)
}

/// The textbook 16-bit loop, folding every word: the reference the tests and the
/// benchmark compare `checksum` with.
#[doc(hidden)]
pub fn naive(data: &[u8]) -> u16 {
    let mut acc = 0u32;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        acc += u32::from(word);
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn matches_the_naive_loop_on_every_length() {
        let mut data = [0u8; 300];
        let mut x = 0x1234_5678u32;
        for b in data.iter_mut() {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
        for len in 0..data.len() {
            assert_eq!(checksum(&data[..len]), naive(&data[..len]), "len {len}");
        }
        assert_eq!(checksum(&[0xff; 1500]), naive(&[0xff; 1500]));
    }
}

/// What a received transport checksum says (UDP or TCP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumStatus {
    /// The full checksum verifies.
    Valid,
    /// Zero: the sender computed none (allowed over IPv4, RFC 768).
    Absent,
    /// The field holds only the pseudo-header sum: a local peer left the rest to TX
    /// checksum offload (CHECKSUM_PARTIAL), as a kernel peer on a veth does.
    Partial,
    /// Neither: the datagram is corrupt.
    Bad,
}
