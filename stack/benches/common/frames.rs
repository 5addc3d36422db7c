//! Frames of a client for the request benchmarks (`benches/request.rs`,
//! `examples/request_loop.rs`): a UDP datagram and TCP segments to a worker's demux, and the
//! server's answer read back.

use fastpath::{
    phy::testing::VecSink,
    wire::{
        ipv4::Ipv4Repr,
        tcp::{TcpOptions, TcpPacket, TcpRepr},
        udp::UdpRepr,
    },
};

pub const CLIENT: [u8; 4] = [198, 18, 0, 2];
pub const SERVER: [u8; 4] = [198, 18, 0, 1];
pub const UDP_PORT: u16 = 7000;
pub const TCP_PORT: u16 = 7100;
pub const CLIENT_PORT: u16 = 40000;
pub const PAYLOAD: usize = 32;
pub const L3: usize = 14;
pub const L4: usize = 14 + 20;

pub fn ethernet(frame: &mut [u8]) {
    frame[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
}

pub fn udp_frame() -> Vec<u8> {
    let mut f = vec![0u8; L4 + 8 + PAYLOAD];
    ethernet(&mut f);
    Ipv4Repr {
        src: CLIENT,
        dst: SERVER,
        protocol: 17,
        payload_len: 8 + PAYLOAD,
        ttl: 64,
    }
    .emit(&mut f[L3..])
    .unwrap();
    f[L4 + 8..].fill(0x5a);
    UdpRepr {
        src_port: CLIENT_PORT,
        dst_port: UDP_PORT,
    }
    .emit(&mut f[L4..], PAYLOAD, CLIENT, SERVER)
    .unwrap();
    f
}

/// Writes a client segment into `f` (room for headers and `payload` bytes); its length.
pub fn tcp_frame(f: &mut [u8], seq: u32, ack: u32, flags: u8, payload: usize) -> usize {
    let header = TcpRepr {
        src_port: CLIENT_PORT,
        dst_port: TCP_PORT,
        seq,
        ack,
        flags,
        window: 65535,
        options: TcpOptions::default(),
    };
    let hlen = header.header_len();
    ethernet(f);
    Ipv4Repr {
        src: CLIENT,
        dst: SERVER,
        protocol: 6,
        payload_len: hlen + payload,
        ttl: 64,
    }
    .emit(&mut f[L3..])
    .unwrap();
    f[L4 + hlen..L4 + hlen + payload].fill(0x5a);
    header.emit(&mut f[L4..], payload, CLIENT, SERVER).unwrap();
    L4 + hlen + payload
}

/// The server's answer in `sink` (sequence number and payload length), the sink emptied.
pub fn answer(sink: &mut VecSink) -> Option<(u32, usize)> {
    let frame = sink.frames.pop()?;
    sink.frames.clear();
    let packet = TcpPacket::new_checked(&frame[L4..]).ok()?;
    let h = TcpRepr::parse_unverified(&packet).ok()?;
    Some((h.seq, packet.payload().len()))
}
