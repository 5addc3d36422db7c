//! The stack's own cost of one request, with no ring, no kernel and no peer: a UDP echo
//! datagram and a TCP echo request/response (on an established connection) handed to a
//! worker's demux in place, the answer written into an in-memory sink. What the time per
//! request measures is fastpath's own code from the frame in to the frame out — the part a
//! test bed's kernel work on both sides hides (issue: the cost of one request).
//!
//! `AYA_BUILD_SKIP=1 cargo bench -p fastpath --bench request`

use criterion::{Criterion, criterion_group, criterion_main};
use frames::Client;

#[path = "common/frames.rs"]
mod frames;

fn bench(c: &mut Criterion) {
    let mut client = Client::new();
    c.bench_function("udp echo: one datagram in, its answer in place", |b| {
        b.iter(|| client.udp_echo())
    });
    c.bench_function("tcp echo: one request in, its answer out", |b| {
        b.iter(|| client.tcp_request())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
