//! The stack's own work per request as a plain loop, for instruction counts that no noise
//! moves: `valgrind --tool=lackey --basic-counts=yes target/release/examples/request_loop
//! tcp 20000`, minus the same with 10000, over 10000 (docs/results.md). The stack's own cost of one request, with no ring, no kernel and no peer: a UDP echo
//! datagram and a TCP echo request/response (on an established connection) handed to a
//! worker's demux in place, the answer written into an in-memory sink. What the time per
//! request measures is fastpath's own code from the frame in to the frame out — the part a
//! test bed's kernel work on both sides hides (issue: the cost of one request).
//!
//! `AYA_BUILD_SKIP=1 cargo bench -p fastpath --bench request`

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
    wire::tcp::flags,
};
use frames::{PAYLOAD, TCP_PORT, UDP_PORT, answer, tcp_frame, udp_frame};

#[path = "../benches/common/frames.rs"]
mod frames;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "udp".into());
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let stack = Stack::detached(1);
    stack
        .udp_bind(
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, UDP_PORT),
            None,
            Delivery::on_worker(EchoApp { sockperf: false }),
        )
        .unwrap();
    stack
        .tcp_listen(
            SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, TCP_PORT),
            128,
            Arc::new(TcpEcho),
        )
        .unwrap();
    let mut demux = Demux::new(stack.host().clone(), 0);
    let mut sink = VecSink::new(1 << 20);
    if mode == "udp" {
        let template = udp_frame();
        let mut frame = vec![0u8; 2048];
        for _ in 0..n {
            frame[..template.len()].copy_from_slice(&template);
            black_box(demux.handle(Instant::ZERO, &mut frame, template.len(), &mut sink));
        }
        return;
    }
    let mut now = 1_000u64;
    let mut f = vec![0u8; 2048];
    let isn = 1_000u32;
    let len = tcp_frame(&mut f, isn, 0, flags::SYN, 0);
    demux.handle(Instant::from_micros(now), &mut f, len, &mut sink);
    let (server_isn, _) = answer(&mut sink).expect("a SYN-ACK");
    let (mut seq, mut ack) = (isn + 1, server_isn.wrapping_add(1));
    let len = tcp_frame(&mut f, seq, ack, flags::ACK, 0);
    demux.handle(Instant::from_micros(now), &mut f, len, &mut sink);
    sink.frames.clear();
    for _ in 0..n {
        now += 1;
        let len = tcp_frame(&mut f, seq, ack, flags::ACK | flags::PSH, PAYLOAD);
        demux.handle(Instant::from_micros(now), &mut f, len, &mut sink);
        seq = seq.wrapping_add(PAYLOAD as u32);
        let (their_seq, their_len) = answer(&mut sink).expect("the echo");
        ack = their_seq.wrapping_add(their_len as u32);
    }
}
