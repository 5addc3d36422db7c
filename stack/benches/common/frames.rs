//! A client for the request benchmarks (`benches/request.rs`, `examples/request_loop.rs`):
//! a stack with a UDP and a TCP echo on one worker's demux, and the frames a client sends
//! it — one UDP datagram, or one TCP request on an established connection — with the
//! answer read back from memory.

use std::{
    hint::black_box,
    net::{Ipv4Addr, SocketAddrV4},
    sync::Arc,
};

use fastpath::{
    api::{Stack, udp::Delivery},
    app::echo::{EchoApp, TcpEcho},
    internals::Demux,
    phy::{FrameHandler, testing::VecSink},
    time::Instant,
    wire::{
        ipv4::Ipv4Repr,
        tcp::{TcpOptions, TcpPacket, TcpRepr, flags},
        udp::UdpRepr,
    },
};

/// The stack and its demux, and where a TCP client stands.
pub struct Client {
    _stack: Stack,
    demux: Demux,
    sink: VecSink,
    udp: Vec<u8>,
    frame: Vec<u8>,
    now: u64,
    seq: u32,
    ack: u32,
}

impl Client {
    /// A UDP echo on `UDP_PORT` and a TCP echo on `TCP_PORT`, and a TCP connection to it
    /// through the handshake.
    pub fn new() -> Client {
        let stack = Stack::detached(1);
        let any = |port| SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
        let echo = Delivery::on_worker(EchoApp { sockperf: false });
        stack.udp_bind(any(UDP_PORT), None, echo).unwrap();
        stack
            .tcp_listen(any(TCP_PORT), 128, Arc::new(TcpEcho))
            .unwrap();
        let mut c = Client {
            demux: Demux::new(stack.host().clone(), 0),
            _stack: stack,
            sink: VecSink::new(1 << 20),
            udp: udp_frame(),
            frame: vec![0u8; 2048],
            now: 1_000,
            seq: 1_000,
            ack: 0,
        };
        c.send(flags::SYN, 0);
        let (server_isn, _) = answer(&mut c.sink).expect("a SYN-ACK");
        (c.seq, c.ack) = (c.seq + 1, server_isn.wrapping_add(1));
        c.send(flags::ACK, 0);
        c.sink.frames.clear();
        c
    }

    fn send(&mut self, flags: u8, payload: usize) {
        let len = tcp_frame(&mut self.frame, self.seq, self.ack, flags, payload);
        let now = Instant::from_micros(self.now);
        self.demux.handle(now, &mut self.frame, len, &mut self.sink);
    }

    /// One UDP echo: the datagram in, its answer written in place.
    pub fn udp_echo(&mut self) {
        let len = self.udp.len();
        self.frame[..len].copy_from_slice(&self.udp);
        let answer = self
            .demux
            .handle(Instant::ZERO, &mut self.frame, len, &mut self.sink);
        black_box(answer);
    }

    /// One TCP request, carrying the ACK of the last answer, and its answer out.
    pub fn tcp_request(&mut self) {
        self.now += 1;
        self.send(flags::ACK | flags::PSH, PAYLOAD);
        self.seq = self.seq.wrapping_add(PAYLOAD as u32);
        let (their_seq, their_len) = answer(&mut self.sink).expect("the echo");
        self.ack = their_seq.wrapping_add(their_len as u32);
    }
}

const CLIENT: [u8; 4] = [198, 18, 0, 2];
const SERVER: [u8; 4] = [198, 18, 0, 1];
const UDP_PORT: u16 = 7000;
const TCP_PORT: u16 = 7100;
const CLIENT_PORT: u16 = 40000;
const PAYLOAD: usize = 32;
const L3: usize = 14;
const L4: usize = 14 + 20;

fn ethernet(frame: &mut [u8]) {
    frame[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    frame[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
}

fn udp_frame() -> Vec<u8> {
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
fn tcp_frame(f: &mut [u8], seq: u32, ack: u32, flags: u8, payload: usize) -> usize {
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
fn answer(sink: &mut VecSink) -> Option<(u32, usize)> {
    let frame = sink.frames.pop()?;
    sink.frames.clear();
    let packet = TcpPacket::new_checked(&frame[L4..]).ok()?;
    let h = TcpRepr::parse_unverified(&packet).ok()?;
    Some((h.seq, packet.payload().len()))
}
