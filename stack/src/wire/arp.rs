//! ARP over Ethernet for IPv4 (RFC 826). fastpath does not answer or send ARP (the kernel
//! keeps doing it; ARP frames stay XDP_PASS); it parses it to learn neighbours and in tests.

use super::{Error, Result, ethernet::MacAddr, ipv4::Ipv4Addr};

mod field {
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: usize = 8;
    pub const SPA: usize = 14;
    pub const THA: usize = 18;
    pub const TPA: usize = 24;
    pub const LEN: usize = 28;
}

pub const ARP_LEN: usize = field::LEN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Request,
    Reply,
}

/// An Ethernet/IPv4 ARP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpRepr {
    pub operation: Operation,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

fn mac_at(d: &[u8], at: usize) -> MacAddr {
    [d[at], d[at + 1], d[at + 2], d[at + 3], d[at + 4], d[at + 5]]
}

fn ip_at(d: &[u8], at: usize) -> Ipv4Addr {
    [d[at], d[at + 1], d[at + 2], d[at + 3]]
}

impl ArpRepr {
    /// Parses an ARP payload; anything but Ethernet/IPv4 request or reply is refused.
    pub fn parse(d: &[u8]) -> Result<Self> {
        if d.len() < field::LEN {
            return Err(Error::Truncated);
        }
        let u16_at = |at: usize| u16::from_be_bytes([d[at], d[at + 1]]);
        if u16_at(field::HTYPE) != 1
            || u16_at(field::PTYPE) != 0x0800
            || d[field::HLEN] != 6
            || d[field::PLEN] != 4
        {
            return Err(Error::Malformed);
        }
        let operation = match u16_at(field::OPER) {
            1 => Operation::Request,
            2 => Operation::Reply,
            _ => return Err(Error::Malformed),
        };
        Ok(Self {
            operation,
            sender_mac: mac_at(d, field::SHA),
            sender_ip: ip_at(d, field::SPA),
            target_mac: mac_at(d, field::THA),
            target_ip: ip_at(d, field::TPA),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        field::LEN
    }

    pub fn emit(&self, d: &mut [u8]) -> Result<()> {
        if d.len() < field::LEN {
            return Err(Error::Truncated);
        }
        d[field::HTYPE..field::HTYPE + 2].copy_from_slice(&1u16.to_be_bytes());
        d[field::PTYPE..field::PTYPE + 2].copy_from_slice(&0x0800u16.to_be_bytes());
        d[field::HLEN] = 6;
        d[field::PLEN] = 4;
        let op: u16 = match self.operation {
            Operation::Request => 1,
            Operation::Reply => 2,
        };
        d[field::OPER..field::OPER + 2].copy_from_slice(&op.to_be_bytes());
        d[field::SHA..field::SHA + 6].copy_from_slice(&self.sender_mac);
        d[field::SPA..field::SPA + 4].copy_from_slice(&self.sender_ip);
        d[field::THA..field::THA + 6].copy_from_slice(&self.target_mac);
        d[field::TPA..field::TPA + 4].copy_from_slice(&self.target_ip);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_other_hardware() {
        let repr = ArpRepr {
            operation: Operation::Reply,
            sender_mac: [2, 0, 0, 0, 0, 1],
            sender_ip: [198, 18, 0, 1],
            target_mac: [2, 0, 0, 0, 0, 2],
            target_ip: [198, 18, 0, 2],
        };
        let mut buf = [0xa5u8; ARP_LEN];
        repr.emit(&mut buf).unwrap();
        assert_eq!(ArpRepr::parse(&buf).unwrap(), repr);
        let mut other = buf;
        other[1] = 6;
        assert_eq!(ArpRepr::parse(&other).unwrap_err(), Error::Malformed);
        assert_eq!(ArpRepr::parse(&buf[..27]).unwrap_err(), Error::Truncated);
    }
}
