//! UDP datagrams (RFC 768) and their checksum over the IPv4 pseudo-header.

use fastpath_common::{IPPROTO_UDP, layout::*};

use super::{
    Error, Result,
    checksum::{self, ChecksumStatus},
    ipv4::Ipv4Addr,
};

/// A view of a UDP datagram. `new_checked` validates the length field against the
/// buffer; afterwards no accessor can panic.
#[derive(Debug)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// `buffer` is the IP payload; the UDP length must fit inside it.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let d = buffer.as_ref();
        if d.len() < UDP_HLEN {
            return Err(Error::Truncated);
        }
        let len = usize::from(u16::from_be_bytes([d[UDP_LEN], d[UDP_LEN + 1]]));
        if len < UDP_HLEN || len > d.len() {
            return Err(Error::Malformed);
        }
        Ok(Self { buffer })
    }

    fn field(&self, at: usize) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[at], d[at + 1]])
    }

    pub fn src_port(&self) -> u16 {
        self.field(UDP_SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        self.field(UDP_DST_PORT)
    }

    pub fn len(&self) -> usize {
        usize::from(self.field(UDP_LEN))
    }

    pub fn is_empty(&self) -> bool {
        self.len() == UDP_HLEN
    }

    pub fn checksum_field(&self) -> u16 {
        self.field(UDP_CHECKSUM)
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[UDP_HLEN..self.len()]
    }

    pub fn check(&self, src: Ipv4Addr, dst: Ipv4Addr) -> ChecksumStatus {
        let field = self.checksum_field();
        if field == 0 {
            return ChecksumStatus::Absent;
        }
        let len = self.len();
        let pseudo = checksum::pseudo_header_v4(src, dst, IPPROTO_UDP, len as u16);
        if checksum::fold(pseudo + checksum::sum(&self.buffer.as_ref()[..len])) == 0xffff {
            ChecksumStatus::Valid
        } else if field == checksum::fold(pseudo) {
            ChecksumStatus::Partial
        } else {
            ChecksumStatus::Bad
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn swap_ports(&mut self) {
        let d = self.buffer.as_mut();
        d.swap(UDP_SRC_PORT, UDP_DST_PORT);
        d.swap(UDP_SRC_PORT + 1, UDP_DST_PORT + 1);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let len = self.len();
        &mut self.buffer.as_mut()[UDP_HLEN..len]
    }

    /// Computes the full checksum (never leaving it to offload: AF_XDP frames carry none).
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let len = self.len();
        let d = self.buffer.as_mut();
        d[UDP_CHECKSUM..UDP_CHECKSUM + 2].copy_from_slice(&[0, 0]);
        let pseudo = checksum::pseudo_header_v4(src, dst, IPPROTO_UDP, len as u16);
        let mut c = !checksum::fold(pseudo + checksum::sum(&d[..len]));
        if c == 0 {
            // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
            c = 0xffff;
        }
        d[UDP_CHECKSUM..UDP_CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// A UDP header to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    pub fn parse<T: AsRef<[u8]>>(
        packet: &UdpPacket<T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<Self> {
        match packet.check(src, dst) {
            ChecksumStatus::Bad => Err(Error::Checksum),
            _ => Ok(Self {
                src_port: packet.src_port(),
                dst_port: packet.dst_port(),
            }),
        }
    }

    pub const fn buffer_len(&self, payload_len: usize) -> usize {
        UDP_HLEN + payload_len
    }

    /// Writes the header in front of the `payload_len` bytes already at `buffer[8..]`,
    /// with the full checksum.
    pub fn emit(
        &self,
        buffer: &mut [u8],
        payload_len: usize,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<()> {
        let len = self.buffer_len(payload_len);
        if buffer.len() < len || len > usize::from(u16::MAX) {
            return Err(Error::Truncated);
        }
        buffer[UDP_SRC_PORT..UDP_SRC_PORT + 2].copy_from_slice(&self.src_port.to_be_bytes());
        buffer[UDP_DST_PORT..UDP_DST_PORT + 2].copy_from_slice(&self.dst_port.to_be_bytes());
        buffer[UDP_LEN..UDP_LEN + 2].copy_from_slice(&(len as u16).to_be_bytes());
        let mut packet = UdpPacket::new_checked(&mut buffer[..len])?;
        packet.fill_checksum(src, dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = [198, 18, 0, 2];
    const DST: Ipv4Addr = [198, 18, 0, 1];

    #[test]
    fn emit_then_parse_round_trips_with_a_valid_checksum() {
        for payload_len in [0usize, 1, 63, 64, 1472] {
            let mut buf = vec![0xa5u8; 8 + payload_len];
            let repr = UdpRepr {
                src_port: 40000,
                dst_port: 7,
            };
            repr.emit(&mut buf, payload_len, SRC, DST).unwrap();
            let p = UdpPacket::new_checked(&buf[..]).unwrap();
            assert_eq!(
                p.check(SRC, DST),
                ChecksumStatus::Valid,
                "len {payload_len}"
            );
            assert_eq!(UdpRepr::parse(&p, SRC, DST).unwrap(), repr);
            assert_eq!(p.payload().len(), payload_len);
        }
    }

    #[test]
    fn tells_partial_absent_and_bad_apart() {
        let mut buf = [0x11u8; 20];
        UdpRepr {
            src_port: 1,
            dst_port: 2,
        }
        .emit(&mut buf, 12, SRC, DST)
        .unwrap();
        // What a kernel peer with TX checksum offload puts on a veth: the folded pseudo-header sum.
        let pseudo = checksum::fold(checksum::pseudo_header_v4(SRC, DST, IPPROTO_UDP, 20));
        let mut partial = buf;
        partial[6..8].copy_from_slice(&pseudo.to_be_bytes());
        assert_eq!(
            UdpPacket::new_checked(&partial[..])
                .unwrap()
                .check(SRC, DST),
            ChecksumStatus::Partial
        );
        let mut absent = buf;
        absent[6..8].copy_from_slice(&[0, 0]);
        assert_eq!(
            UdpPacket::new_checked(&absent[..]).unwrap().check(SRC, DST),
            ChecksumStatus::Absent
        );
        let mut bad = buf;
        bad[10] ^= 0xff;
        let p = UdpPacket::new_checked(&bad[..]).unwrap();
        assert_eq!(p.check(SRC, DST), ChecksumStatus::Bad);
        assert_eq!(UdpRepr::parse(&p, SRC, DST).unwrap_err(), Error::Checksum);
    }

    #[test]
    fn a_lying_length_is_malformed() {
        let mut buf = [0u8; 16];
        buf[4..6].copy_from_slice(&40u16.to_be_bytes());
        assert_eq!(
            UdpPacket::new_checked(&buf[..]).unwrap_err(),
            Error::Malformed
        );
        buf[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(
            UdpPacket::new_checked(&buf[..]).unwrap_err(),
            Error::Malformed
        );
        assert_eq!(
            UdpPacket::new_checked(&buf[..7]).unwrap_err(),
            Error::Truncated
        );
    }
}
