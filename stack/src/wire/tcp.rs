//! TCP headers and their options (RFC 9293; MSS, window scale and timestamps RFC 7323;
//! SACK-permitted and SACK blocks RFC 2018). Parsing untrusted options never panics: a
//! length that runs past the header, or below 2, ends parsing with `Malformed`.

use fastpath_common::IPPROTO_TCP;

use super::{
    Error, Result,
    checksum::{self, ChecksumStatus},
    ipv4::Ipv4Addr,
};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const OPTIONS: usize = 20;
}

pub const TCP_MIN_HLEN: usize = 20;
const TCP_MAX_HLEN: usize = 60;

pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

mod kind {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

/// At most four SACK blocks fit in 40 bytes of options (three with timestamps).
pub const MAX_SACK_BLOCKS: usize = 4;

/// The options fastpath understands; unknown ones are skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// (left edge, right edge) of each SACK block.
    pub sack_blocks: [Option<(u32, u32)>; MAX_SACK_BLOCKS],
    /// (TSval, TSecr).
    pub timestamp: Option<(u32, u32)>,
}

impl TcpOptions {
    pub fn parse(mut d: &[u8]) -> Result<Self> {
        let mut o = TcpOptions::default();
        while let Some(&k) = d.first() {
            match k {
                kind::END => break,
                kind::NOP => {
                    d = &d[1..];
                    continue;
                }
                _ => {}
            }
            let len = usize::from(*d.get(1).ok_or(Error::Malformed)?);
            if len < 2 || len > d.len() {
                return Err(Error::Malformed);
            }
            let body = &d[2..len];
            match (k, body.len()) {
                (kind::MSS, 2) => o.mss = Some(u16::from_be_bytes([body[0], body[1]])),
                (kind::WINDOW_SCALE, 1) => o.window_scale = Some(body[0].min(14)),
                (kind::SACK_PERMITTED, 0) => o.sack_permitted = true,
                (kind::SACK, n) if n % 8 == 0 && n <= 8 * MAX_SACK_BLOCKS => {
                    for (i, b) in body.chunks_exact(8).enumerate() {
                        let left = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                        let right = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                        o.sack_blocks[i] = Some((left, right));
                    }
                }
                (kind::TIMESTAMP, 8) => {
                    o.timestamp = Some((
                        u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                        u32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                    ))
                }
                (
                    kind::MSS
                    | kind::WINDOW_SCALE
                    | kind::SACK_PERMITTED
                    | kind::SACK
                    | kind::TIMESTAMP,
                    _,
                ) => {
                    return Err(Error::Malformed);
                }
                _ => {} // unknown option: skip
            }
            d = &d[len..];
        }
        Ok(o)
    }

    /// Bytes `emit` writes, padded to a multiple of 4.
    pub fn buffer_len(&self) -> usize {
        self.unpadded_len().div_ceil(4) * 4
    }

    fn unpadded_len(&self) -> usize {
        let mut n = 0;
        n += self.mss.map_or(0, |_| 4);
        n += self.window_scale.map_or(0, |_| 3);
        n += usize::from(self.sack_permitted) * 2;
        n += self.timestamp.map_or(0, |_| 10);
        let blocks = self.sack_blocks.iter().flatten().count();
        if blocks > 0 {
            n += 2 + 8 * blocks;
        }
        n
    }

    pub fn emit(&self, d: &mut [u8]) -> Result<usize> {
        let len = self.buffer_len();
        if d.len() < len || len > TCP_MAX_HLEN - TCP_MIN_HLEN {
            return Err(Error::Truncated);
        }
        let padding = len - self.unpadded_len();
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            d[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        if let Some(mss) = self.mss {
            put(&[kind::MSS, 4]);
            put(&mss.to_be_bytes());
        }
        if let Some(ws) = self.window_scale {
            put(&[kind::WINDOW_SCALE, 3, ws]);
        }
        if self.sack_permitted {
            put(&[kind::SACK_PERMITTED, 2]);
        }
        if let Some((val, ecr)) = self.timestamp {
            put(&[kind::TIMESTAMP, 10]);
            put(&val.to_be_bytes());
            put(&ecr.to_be_bytes());
        }
        let blocks = self.sack_blocks.iter().flatten().count();
        if blocks > 0 {
            put(&[kind::SACK, (2 + 8 * blocks) as u8]);
            for (l, r) in self.sack_blocks.iter().flatten() {
                put(&l.to_be_bytes());
                put(&r.to_be_bytes());
            }
        }
        for _ in 0..padding {
            put(&[kind::NOP]);
        }
        Ok(len)
    }
}

/// A view of a TCP segment (the IP payload). `new_checked` validates the data offset.
#[derive(Debug)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let d = buffer.as_ref();
        if d.len() < TCP_MIN_HLEN {
            return Err(Error::Truncated);
        }
        let header_len = usize::from(d[field::DATA_OFF] >> 4) * 4;
        if header_len < TCP_MIN_HLEN {
            return Err(Error::Malformed);
        }
        if header_len > d.len() {
            return Err(Error::Truncated);
        }
        Ok(Self { buffer })
    }

    fn u16_at(&self, at: usize) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[at], d[at + 1]])
    }

    fn u32_at(&self, at: usize) -> u32 {
        let d = self.buffer.as_ref();
        u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
    }

    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }
    pub fn seq(&self) -> u32 {
        self.u32_at(field::SEQ)
    }
    pub fn ack(&self) -> u32 {
        self.u32_at(field::ACK)
    }
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    pub fn window(&self) -> u16 {
        self.u16_at(field::WINDOW)
    }
    pub fn urgent(&self) -> u16 {
        self.u16_at(field::URGENT)
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
    /// Judges the checksum as `UdpPacket::check` does: a kernel peer on a veth with TX
    /// offload leaves only the pseudo-header sum in the field (CHECKSUM_PARTIAL).
    pub fn check(&self, src: Ipv4Addr, dst: Ipv4Addr) -> ChecksumStatus {
        let d = self.buffer.as_ref();
        let Ok(len) = u16::try_from(d.len()) else {
            return ChecksumStatus::Bad;
        };
        let pseudo = checksum::pseudo_header_v4(src, dst, IPPROTO_TCP, len);
        if checksum::fold(pseudo + checksum::sum(d)) == 0xffff {
            ChecksumStatus::Valid
        } else if self.u16_at(field::CHECKSUM) == checksum::fold(pseudo) {
            ChecksumStatus::Partial
        } else {
            ChecksumStatus::Bad
        }
    }
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        let d = self.buffer.as_ref();
        let Ok(len) = u16::try_from(d.len()) else {
            return false;
        };
        let pseudo = checksum::pseudo_header_v4(src, dst, IPPROTO_TCP, len);
        checksum::fold(pseudo + checksum::sum(d)) == 0xffff
    }
}

/// A TCP header to parse or emit (the payload follows it in the same buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRepr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
    pub options: TcpOptions,
}

impl TcpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &TcpPacket<T>, src: Ipv4Addr, dst: Ipv4Addr) -> Result<Self> {
        if !p.verify_checksum(src, dst) {
            return Err(Error::Checksum);
        }
        Self::parse_unverified(p)
    }

    /// `parse` for a caller that judged the checksum itself (see `TcpPacket::check`).
    pub fn parse_unverified<T: AsRef<[u8]>>(p: &TcpPacket<T>) -> Result<Self> {
        Ok(Self {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq(),
            ack: p.ack(),
            flags: p.flags(),
            window: p.window(),
            options: TcpOptions::parse(p.options())?,
        })
    }

    pub fn header_len(&self) -> usize {
        TCP_MIN_HLEN + self.options.buffer_len()
    }

    /// Writes the header in front of `payload_len` bytes already at `d[header_len..]`,
    /// with the full checksum. Returns the segment length.
    pub fn emit(
        &self,
        d: &mut [u8],
        payload_len: usize,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) -> Result<usize> {
        let hlen = self.header_len();
        let total = hlen + payload_len;
        if hlen > TCP_MAX_HLEN || d.len() < total || total > usize::from(u16::MAX) {
            return Err(Error::Truncated);
        }
        d[field::SRC_PORT..field::SRC_PORT + 2].copy_from_slice(&self.src_port.to_be_bytes());
        d[field::DST_PORT..field::DST_PORT + 2].copy_from_slice(&self.dst_port.to_be_bytes());
        d[field::SEQ..field::SEQ + 4].copy_from_slice(&self.seq.to_be_bytes());
        d[field::ACK..field::ACK + 4].copy_from_slice(&self.ack.to_be_bytes());
        d[field::DATA_OFF] = ((hlen / 4) as u8) << 4;
        d[field::FLAGS] = self.flags;
        d[field::WINDOW..field::WINDOW + 2].copy_from_slice(&self.window.to_be_bytes());
        d[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&[0, 0]);
        d[field::URGENT..field::URGENT + 2].copy_from_slice(&[0, 0]);
        self.options.emit(&mut d[field::OPTIONS..hlen])?;
        let pseudo = checksum::pseudo_header_v4(src, dst, IPPROTO_TCP, total as u16);
        let c = !checksum::fold(pseudo + checksum::sum(&d[..total]));
        d[field::CHECKSUM..field::CHECKSUM + 2].copy_from_slice(&c.to_be_bytes());
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = [198, 18, 0, 1];
    const B: Ipv4Addr = [198, 18, 0, 2];

    fn syn() -> TcpRepr {
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: 0xdead_beef,
            ack: 0,
            flags: flags::SYN,
            window: 64240,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                sack_blocks: [None; 4],
                timestamp: Some((123, 0)),
            },
        }
    }

    #[test]
    fn round_trips_with_every_option() {
        let mut repr = syn();
        let mut buf = [0xa5u8; 80];
        let n = repr.emit(&mut buf, 0, A, B).unwrap();
        let p = TcpPacket::new_checked(&buf[..n]).unwrap();
        assert_eq!(TcpRepr::parse(&p, A, B).unwrap(), repr);
        // An ACK carrying SACK blocks and a timestamp.
        repr.flags = flags::ACK;
        repr.options = TcpOptions {
            timestamp: Some((7, 9)),
            sack_blocks: [Some((100, 200)), Some((300, 400)), Some((500, 600)), None],
            ..TcpOptions::default()
        };
        buf[40..45].copy_from_slice(b"hello");
        let hlen = repr.header_len();
        buf.copy_within(40..45, hlen);
        let n = repr.emit(&mut buf, 5, A, B).unwrap();
        let p = TcpPacket::new_checked(&buf[..n]).unwrap();
        assert_eq!(TcpRepr::parse(&p, A, B).unwrap(), repr);
        assert_eq!(p.payload(), b"hello");
    }

    #[test]
    fn hostile_options_are_errors_not_panics() {
        for bad in [
            &[2u8][..],
            &[2, 0],
            &[2, 1, 0],
            &[2, 9, 0, 0],
            &[8, 10, 0],
            &[5, 7, 0, 0, 0, 0, 0],
            &[3, 4, 1, 1],
        ] {
            assert_eq!(TcpOptions::parse(bad), Err(Error::Malformed), "{bad:?}");
        }
        assert_eq!(
            TcpOptions::parse(&[1, 1, 0, 99, 99]).unwrap(),
            TcpOptions::default()
        );
        assert_eq!(
            TcpOptions::parse(&[99, 3, 0, 1]).unwrap(),
            TcpOptions::default()
        );
    }

    #[test]
    fn data_offset_is_checked() {
        let mut buf = [0u8; 40];
        buf[12] = 0x40;
        assert_eq!(
            TcpPacket::new_checked(&buf[..]).unwrap_err(),
            Error::Malformed
        );
        buf[12] = 0xf0;
        assert_eq!(
            TcpPacket::new_checked(&buf[..]).unwrap_err(),
            Error::Truncated
        );
        let mut bad = [0u8; 60];
        let n = syn().emit(&mut bad, 0, A, B).unwrap();
        bad[4] ^= 1;
        let p = TcpPacket::new_checked(&bad[..n]).unwrap();
        assert_eq!(TcpRepr::parse(&p, A, B).unwrap_err(), Error::Checksum);
    }
}
