//! IPv4 headers, options included (RFC 791).

use fastpath_common::layout::*;

use super::{Error, Result, checksum};

pub type Ipv4Addr = [u8; 4];

/// A view of an IPv4 packet. `new_checked` validates version, IHL and total length
/// against the buffer; afterwards no accessor can panic. Bytes past the total length
/// (Ethernet padding) are ignored.
#[derive(Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let d = buffer.as_ref();
        if d.len() < IPV4_MIN_HLEN {
            return Err(Error::Truncated);
        }
        if d[IPV4_VER_IHL] >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let header_len = usize::from(d[IPV4_VER_IHL] & 0x0f) * 4;
        let total_len = usize::from(u16::from_be_bytes([
            d[IPV4_TOTAL_LEN],
            d[IPV4_TOTAL_LEN + 1],
        ]));
        if header_len < IPV4_MIN_HLEN || total_len < header_len {
            return Err(Error::Malformed);
        }
        if total_len > d.len() {
            return Err(Error::Truncated);
        }
        Ok(Self { buffer })
    }

    fn field(&self, at: usize) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[at], d[at + 1]])
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[IPV4_VER_IHL] & 0x0f) * 4
    }

    pub fn total_len(&self) -> usize {
        usize::from(self.field(IPV4_TOTAL_LEN))
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[IPV4_PROTO]
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[IPV4_TTL]
    }

    pub fn src(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[IPV4_SRC..];
        [d[0], d[1], d[2], d[3]]
    }

    pub fn dst(&self) -> Ipv4Addr {
        let d = &self.buffer.as_ref()[IPV4_DST..];
        [d[0], d[1], d[2], d[3]]
    }

    /// More-fragments set or a non-zero offset.
    pub fn is_fragment(&self) -> bool {
        self.field(IPV4_FLAGS_FRAG) & IPV4_FRAG_MASK != 0
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(&self.buffer.as_ref()[..self.header_len()])) == 0xffff
    }

    /// The transport payload, up to the total length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    pub fn swap_addresses(&mut self) {
        let d = self.buffer.as_mut();
        for i in 0..4 {
            d.swap(IPV4_SRC + i, IPV4_DST + i);
        }
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[IPV4_TTL] = ttl;
    }

    /// Recomputes the header checksum over the whole header (options included).
    pub fn fill_checksum(&mut self) {
        let header_len = self.header_len();
        let d = self.buffer.as_mut();
        d[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(&d[..header_len]);
        d[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), self.total_len());
        &mut self.buffer.as_mut()[start..end]
    }
}

/// The fields of an IPv4 header that fastpath emits (no options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: usize,
    pub ttl: u8,
}

impl Ipv4Repr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Ipv4Packet<T>) -> Result<Self> {
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Self {
            src: packet.src(),
            dst: packet.dst(),
            protocol: packet.protocol(),
            payload_len: packet.total_len() - packet.header_len(),
            ttl: packet.ttl(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        IPV4_MIN_HLEN
    }

    /// Writes a 20-byte header (DF set, ID 0) with its checksum into `buffer`.
    pub fn emit(&self, buffer: &mut [u8]) -> Result<()> {
        let total = IPV4_MIN_HLEN + self.payload_len;
        if buffer.len() < IPV4_MIN_HLEN || total > usize::from(u16::MAX) {
            return Err(Error::Truncated);
        }
        let h = &mut buffer[..IPV4_MIN_HLEN];
        h[IPV4_VER_IHL] = 0x45;
        h[IPV4_TOS] = 0;
        h[IPV4_TOTAL_LEN..IPV4_TOTAL_LEN + 2].copy_from_slice(&(total as u16).to_be_bytes());
        h[IPV4_ID..IPV4_ID + 2].copy_from_slice(&[0, 0]);
        h[IPV4_FLAGS_FRAG..IPV4_FLAGS_FRAG + 2].copy_from_slice(&0x4000u16.to_be_bytes());
        h[IPV4_TTL] = self.ttl;
        h[IPV4_PROTO] = self.protocol;
        h[IPV4_SRC..IPV4_SRC + 4].copy_from_slice(&self.src);
        h[IPV4_DST..IPV4_DST + 4].copy_from_slice(&self.dst);
        h[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].copy_from_slice(&[0, 0]);
        let c = checksum::checksum(h);
        h[IPV4_CHECKSUM..IPV4_CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ipv4Repr {
        Ipv4Repr {
            src: [198, 18, 0, 1],
            dst: [198, 18, 0, 2],
            protocol: 17,
            payload_len: 12,
            ttl: 64,
        }
    }

    #[test]
    fn emit_then_parse_round_trips() {
        let repr = sample();
        let mut buf = [0xa5u8; 32];
        repr.emit(&mut buf).unwrap();
        let packet = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&packet).unwrap(), repr);
        assert!(!packet.is_fragment());
    }

    #[test]
    fn rejects_bad_headers_without_panicking() {
        let mut buf = [0u8; 32];
        sample().emit(&mut buf).unwrap();
        let mut ihl4 = buf;
        ihl4[0] = 0x44;
        assert_eq!(
            Ipv4Packet::new_checked(&ihl4[..]).unwrap_err(),
            Error::Malformed
        );
        let mut long = buf;
        long[2..4].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(
            Ipv4Packet::new_checked(&long[..]).unwrap_err(),
            Error::Truncated
        );
        let mut v6 = buf;
        v6[0] = 0x65;
        assert_eq!(
            Ipv4Packet::new_checked(&v6[..]).unwrap_err(),
            Error::Malformed
        );
        assert_eq!(
            Ipv4Packet::new_checked(&buf[..19]).unwrap_err(),
            Error::Truncated
        );
        let mut bad = buf;
        bad[8] ^= 1;
        let p = Ipv4Packet::new_checked(&bad[..]).unwrap();
        assert_eq!(Ipv4Repr::parse(&p).unwrap_err(), Error::Checksum);
    }

    #[test]
    fn every_prefix_and_every_byte_value_is_safe() {
        let mut buf = [0u8; 40];
        sample().emit(&mut buf).unwrap();
        for len in 0..buf.len() {
            for at in 0..len.min(20) {
                for v in [0u8, 0x0f, 0x45, 0x4f, 0xff] {
                    let mut b = buf;
                    b[at] = v;
                    if let Ok(p) = Ipv4Packet::new_checked(&b[..len]) {
                        let _ = (p.payload().len(), p.is_fragment(), Ipv4Repr::parse(&p));
                    }
                }
            }
        }
    }
}
