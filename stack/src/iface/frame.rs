//! The one frame builder: the link (Ethernet) and network (IPv4) headers of every frame the
//! stack sends, UDP and TCP alike, with full checksums (AF_XDP frames get no offload). A
//! protocol writes its own header and payload behind them.

use std::net::SocketAddrV4;

use fastpath_common::{
    IPPROTO_TCP, IPPROTO_UDP,
    layout::{ETH_HLEN, ETHERTYPE_IPV4, IPV4_MIN_HLEN},
};

use crate::{
    tcp::Transmit,
    wire::{ethernet::MacAddr, ipv4::Ipv4Repr, udp::UdpRepr},
};

/// The addresses of a frame: the link's and the transport endpoints'.
#[derive(Clone, Copy, Debug)]
pub struct FrameAddrs {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

/// The link facts the stack needs to build frames.
#[derive(Clone, Copy, Debug)]
pub struct LinkInfo {
    pub mac: MacAddr,
    pub addr: std::net::Ipv4Addr,
    pub mtu: u32,
}

/// Where the transport header starts (Ethernet, then IPv4 without options).
pub const L4: usize = ETH_HLEN + IPV4_MIN_HLEN;

/// Room in front of a TCP segment's payload for the largest headers: Ethernet, IPv4 (no
/// options), TCP with 40 bytes of options. `poll_transmit` writes the payload here.
pub const TCP_HEADROOM: usize = L4 + 60;

/// Writes Ethernet and IPv4 headers for `l4_len` bytes of `protocol` into `buf`. Returns
/// the transport header's offset (`L4`).
fn write_link_ip(buf: &mut [u8], a: &FrameAddrs, protocol: u8, l4_len: usize) -> Option<usize> {
    buf.get_mut(..ETH_HLEN)?;
    buf[0..6].copy_from_slice(&a.dst_mac);
    buf[6..12].copy_from_slice(&a.src_mac);
    buf[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    Ipv4Repr {
        src: a.src.ip().octets(),
        dst: a.dst.ip().octets(),
        protocol,
        payload_len: l4_len,
        ttl: 64,
    }
    .emit(&mut buf[ETH_HLEN..])
    .ok()?;
    Some(L4)
}

/// Writes a UDP datagram (headers, then `payload`) into `buf`. Returns the frame's length.
pub fn write_udp(buf: &mut [u8], a: &FrameAddrs, payload: &[u8]) -> Option<usize> {
    let udp_len = 8 + payload.len();
    let total = L4 + udp_len;
    let frame = buf.get_mut(..total)?;
    write_link_ip(frame, a, IPPROTO_UDP, udp_len)?;
    frame[L4 + 8..].copy_from_slice(payload);
    UdpRepr {
        src_port: a.src.port(),
        dst_port: a.dst.port(),
    }
    .emit(
        &mut frame[L4..],
        payload.len(),
        a.src.ip().octets(),
        a.dst.ip().octets(),
    )
    .ok()?;
    Some(total)
}

/// Finishes a TCP frame whose payload (`t.payload_len` bytes) sits at
/// `buf[TCP_HEADROOM..]`: moves it to follow the actual headers and writes them. Returns
/// the frame's length.
pub fn finish_tcp(buf: &mut [u8], a: &FrameAddrs, t: &Transmit) -> Option<usize> {
    let hlen = t.header.header_len();
    let payload_at = L4 + hlen;
    let total = payload_at + t.payload_len;
    if buf.len() < total.max(TCP_HEADROOM + t.payload_len) || payload_at > TCP_HEADROOM {
        return None;
    }
    if payload_at != TCP_HEADROOM && t.payload_len > 0 {
        buf.copy_within(TCP_HEADROOM..TCP_HEADROOM + t.payload_len, payload_at);
    }
    write_link_ip(buf, a, IPPROTO_TCP, hlen + t.payload_len)?;
    t.header
        .emit(
            &mut buf[L4..total],
            t.payload_len,
            a.src.ip().octets(),
            a.dst.ip().octets(),
        )
        .ok()?;
    Some(total)
}

/// Writes a header-only TCP segment (a RST, a cookie SYN-ACK) into `buf`.
pub fn write_tcp_control(
    buf: &mut [u8],
    a: &FrameAddrs,
    header: &crate::wire::tcp::TcpRepr,
) -> Option<usize> {
    finish_tcp(
        buf,
        a,
        &Transmit {
            header: *header,
            payload_len: 0,
        },
    )
}
