//! The stack's own cost of one request, with no ring, no kernel and no peer: a UDP echo
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

use criterion::{Criterion, criterion_group, criterion_main};
use fastpath::{
    api::{Stack, udp::Delivery},
    app::echo::{EchoApp, TcpEcho},
    internals::Demux,
    phy::{FrameHandler, testing::VecSink},
    time::Instant,
    wire::tcp::flags,
};
use frames::{PAYLOAD, TCP_PORT, UDP_PORT, answer, tcp_frame, udp_frame};

#[path = "common/frames.rs"]
mod frames;

fn bench(c: &mut Criterion) {
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

    let template = udp_frame();
    let mut frame = vec![0u8; 2048];
    c.bench_function("udp echo: one datagram in, its answer in place", |b| {
        b.iter(|| {
            frame[..template.len()].copy_from_slice(&template);
            black_box(demux.handle(Instant::ZERO, &mut frame, template.len(), &mut sink))
        })
    });

    // The handshake, then request/response: each request carries the ACK of the last answer.
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
    c.bench_function("tcp echo: one request in, its answer out", |b| {
        b.iter(|| {
            now += 1;
            let len = tcp_frame(&mut f, seq, ack, flags::ACK | flags::PSH, PAYLOAD);
            demux.handle(Instant::from_micros(now), &mut f, len, &mut sink);
            seq = seq.wrapping_add(PAYLOAD as u32);
            let (their_seq, their_len) = answer(&mut sink).expect("the echo");
            ack = their_seq.wrapping_add(their_len as u32);
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
