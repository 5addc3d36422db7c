//! Next-hop MAC addresses. A reply goes back to the MAC its request came from (the worker
//! learns it from the frame). For a destination the stack sends to first, the kernel's
//! neighbour table is read over rtnetlink (RTM_GETNEIGH). On a miss the kernel is asked to
//! resolve — by sending it a zero-length UDP datagram to the discard port through an
//! ordinary socket — and the table is read again. The kernel keeps doing ARP (ARP frames
//! stay XDP_PASS): fastpath has no ARP client of its own, so the kernel and fastpath never
//! disagree about a neighbour.

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::{Duration, Instant},
};

use crate::wire::ethernet::MacAddr;

/// Learned and looked-up neighbours, shared by every worker (lock-free reads).
#[derive(Default)]
pub struct Neighbors {
    cache: papaya::HashMap<[u8; 4], MacAddr>,
}

const RTM_GETNEIGH: u16 = 30;
const RTM_NEWNEIGH: u16 = 28;
const NLMSG_DONE: u16 = 3;
const NLMSG_ERROR: u16 = 2;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// NUD states that hold a usable address.
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80; // REACHABLE STALE DELAY PROBE NOARP PERMANENT

impl Neighbors {
    /// Records what a received frame says: `ip` is at `mac`. A write only when it changed.
    #[inline]
    pub fn learn(&self, ip: [u8; 4], mac: MacAddr) {
        let map = self.cache.pin();
        if map.get(&ip) != Some(&mac) {
            map.insert(ip, mac);
        }
    }

    pub fn cached(&self, ip: [u8; 4]) -> Option<MacAddr> {
        self.cache.pin().get(&ip).copied()
    }

    /// The MAC of on-link `ip` on `ifindex`: the cache, else the kernel's table, else ask
    /// the kernel to resolve and wait up to `wait`.
    pub fn resolve(&self, ip: Ipv4Addr, ifindex: u32, wait: Duration) -> Option<MacAddr> {
        let key = ip.octets();
        if let Some(mac) = self.cached(key) {
            return Some(mac);
        }
        let start = Instant::now();
        let mut asked = false;
        loop {
            if let Some(mac) = kernel_neighbor(ip, ifindex) {
                self.learn(key, mac);
                return Some(mac);
            }
            if start.elapsed() >= wait {
                return None;
            }
            if !asked {
                // Any datagram to `ip` makes the kernel resolve it; port 9 is discard.
                if let Ok(s) = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)) {
                    let _ = s.send_to(&[], SocketAddrV4::new(ip, 9));
                }
                asked = true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Dumps the kernel's IPv4 neighbour table and returns `ip`'s usable entry on `ifindex`.
pub fn kernel_neighbor(ip: Ipv4Addr, ifindex: u32) -> Option<MacAddr> {
    // Safety: a plain socket(2) call, checked below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return None;
    }
    // Safety: `raw` is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // nlmsghdr (16) + ndmsg (12): dump request for AF_INET.
    let mut req = [0u8; 28];
    req[0..4].copy_from_slice(&28u32.to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETNEIGH.to_ne_bytes());
    req[6..8].copy_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[16] = libc::AF_INET as u8;
    // Safety: req is a valid buffer of its length.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return None;
    }
    let mut buf = vec![0u8; 32768];
    loop {
        // Safety: buf is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return None;
        }
        let mut msgs = &buf[..n as usize];
        while msgs.len() >= 16 {
            let len = u32::from_ne_bytes(msgs[0..4].try_into().ok()?) as usize;
            let kind = u16::from_ne_bytes(msgs[4..6].try_into().ok()?);
            if len < 16 || len > msgs.len() {
                return None;
            }
            match kind {
                NLMSG_DONE | NLMSG_ERROR => return None,
                RTM_NEWNEIGH => {
                    if let Some(mac) = parse_neigh(&msgs[16..len], ip, ifindex) {
                        return Some(mac);
                    }
                }
                _ => {}
            }
            msgs = &msgs[align4(len).min(msgs.len())..];
        }
    }
}

/// One RTM_NEWNEIGH body: ndmsg then attributes.
fn parse_neigh(body: &[u8], ip: Ipv4Addr, ifindex: u32) -> Option<MacAddr> {
    if body.len() < 12 || body[0] != libc::AF_INET as u8 {
        return None;
    }
    let index = i32::from_ne_bytes(body[4..8].try_into().ok()?);
    let state = u16::from_ne_bytes(body[8..10].try_into().ok()?);
    if index as u32 != ifindex || state & NUD_USABLE == 0 {
        return None;
    }
    let (mut dst, mut mac) = (None, None);
    let mut attrs = &body[12..];
    while attrs.len() >= 4 {
        let alen = usize::from(u16::from_ne_bytes(attrs[0..2].try_into().ok()?));
        let akind = u16::from_ne_bytes(attrs[2..4].try_into().ok()?);
        if alen < 4 || alen > attrs.len() {
            break;
        }
        let value = &attrs[4..alen];
        match (akind, value.len()) {
            (NDA_DST, 4) => dst = Some(Ipv4Addr::new(value[0], value[1], value[2], value[3])),
            (NDA_LLADDR, 6) => {
                mac = Some([value[0], value[1], value[2], value[3], value[4], value[5]])
            }
            _ => {}
        }
        attrs = &attrs[align4(alen).min(attrs.len())..];
    }
    (dst == Some(ip)).then_some(mac).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_and_overwrites_only_on_change() {
        let n = Neighbors::default();
        assert_eq!(n.cached([1, 2, 3, 4]), None);
        n.learn([1, 2, 3, 4], [2, 0, 0, 0, 0, 1]);
        n.learn([1, 2, 3, 4], [2, 0, 0, 0, 0, 2]);
        assert_eq!(n.cached([1, 2, 3, 4]), Some([2, 0, 0, 0, 0, 2]));
    }

    #[test]
    fn parses_a_neighbour_message_and_ignores_others() {
        let mut body = vec![0u8; 12];
        body[0] = libc::AF_INET as u8;
        body[4..8].copy_from_slice(&7i32.to_ne_bytes());
        body[8..10].copy_from_slice(&0x02u16.to_ne_bytes());
        body.extend_from_slice(&8u16.to_ne_bytes());
        body.extend_from_slice(&NDA_DST.to_ne_bytes());
        body.extend_from_slice(&[198, 18, 0, 2]);
        body.extend_from_slice(&10u16.to_ne_bytes());
        body.extend_from_slice(&NDA_LLADDR.to_ne_bytes());
        body.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0, 0]);
        let ip = Ipv4Addr::new(198, 18, 0, 2);
        assert_eq!(parse_neigh(&body, ip, 7), Some([2, 0, 0, 0, 0, 9]));
        assert_eq!(parse_neigh(&body, ip, 8), None, "another interface");
        assert_eq!(parse_neigh(&body, Ipv4Addr::new(198, 18, 0, 3), 7), None);
        assert_eq!(
            parse_neigh(&body[..20], ip, 7),
            None,
            "truncated attributes"
        );
    }
}
