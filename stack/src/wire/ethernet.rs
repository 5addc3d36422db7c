//! Ethernet II frames with at most one 802.1Q/802.1ad tag (IEEE 802.3, 802.1Q).

use fastpath_common::layout::*;

use super::{Error, Result};

pub type MacAddr = [u8; 6];

/// A view of an Ethernet frame. After `new_checked` succeeds no accessor can panic.
#[derive(Debug)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
    /// Offset of the network header: 14, or 18 with a VLAN tag.
    payload_offset: usize,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        let data = buffer.as_ref();
        if data.len() < ETH_HLEN {
            return Err(Error::Truncated);
        }
        let outer = u16::from_be_bytes([data[ETH_TYPE], data[ETH_TYPE + 1]]);
        let payload_offset = if outer == ETHERTYPE_VLAN || outer == ETHERTYPE_QINQ {
            if data.len() < ETH_HLEN + VLAN_HLEN {
                return Err(Error::Truncated);
            }
            ETH_HLEN + VLAN_HLEN
        } else {
            ETH_HLEN
        };
        Ok(Self {
            buffer,
            payload_offset,
        })
    }

    pub fn dst(&self) -> MacAddr {
        let d = self.buffer.as_ref();
        [d[0], d[1], d[2], d[3], d[4], d[5]]
    }

    pub fn src(&self) -> MacAddr {
        let d = &self.buffer.as_ref()[ETH_SRC..];
        [d[0], d[1], d[2], d[3], d[4], d[5]]
    }

    /// The EtherType of the payload (the inner one behind a VLAN tag).
    pub fn ethertype(&self) -> u16 {
        let at = self.payload_offset - 2;
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[at], d[at + 1]])
    }

    pub fn payload_offset(&self) -> usize {
        self.payload_offset
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_offset..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Swaps source and destination: the frame goes back where it came from.
    pub fn swap_addresses(&mut self) {
        let d = self.buffer.as_mut();
        for i in 0..6 {
            d.swap(ETH_DST + i, ETH_SRC + i);
        }
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[self.payload_offset..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_tagged_frames() {
        let mut f = [0xa5u8; 64];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        assert_eq!(
            EthernetFrame::new_checked(&f[..]).unwrap().payload_offset(),
            14
        );
        f[12..14].copy_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
        f[16..18].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        let e = EthernetFrame::new_checked(&f[..]).unwrap();
        assert_eq!((e.payload_offset(), e.ethertype()), (18, ETHERTYPE_IPV4));
        assert_eq!(
            EthernetFrame::new_checked(&f[..16]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            EthernetFrame::new_checked(&f[..13]).unwrap_err(),
            Error::Truncated
        );
    }

    #[test]
    fn swap_round_trips() {
        let mut f = [0u8; 14];
        f[..6].copy_from_slice(&[1; 6]);
        f[6..12].copy_from_slice(&[2; 6]);
        let mut e = EthernetFrame::new_checked(&mut f[..]).unwrap();
        e.swap_addresses();
        assert_eq!((e.dst(), e.src()), ([2; 6], [1; 6]));
    }
}
