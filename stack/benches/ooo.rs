//! Out-of-order reassembly's worst case (reviews/tcp.md defect 1): about 1 MB held behind
//! a 1-byte hole, then one-byte segments each extending the held range, as a hostile peer
//! sends them (about 60 wire bytes each). Reported per extender; each buffer takes 10,000
//! of them before a fresh one is set up (untimed). Also the honest case: one loss at the
//! front of a 1 MiB window, then the rest of the window in 1460-byte segments, per segment.
//!
//! cargo bench -p fastpath --bench ooo

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use fastpath::tcp::{
    SeqNumber,
    recv::{Placed, RecvBuffer},
};

const HELD: usize = 1_000_000;
const EXTENDERS: u64 = 10_000;
const WINDOW: usize = 1 << 20;
const MSS: usize = 1460;

/// A buffer holding `HELD` bytes at `nxt + 1`: the byte at `nxt` is missing.
fn held_behind_a_hole(nxt: SeqNumber) -> RecvBuffer {
    let mut b = RecvBuffer::new(2 << 20, 2 << 20);
    let held = vec![0x5a; HELD];
    assert_eq!(b.insert(nxt, nxt + 1, &held), Placed::OutOfOrder);
    b
}

fn one_byte_extenders(c: &mut Criterion) {
    let mut g = c.benchmark_group("ooo");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    g.bench_function("1-byte extender behind 1 MB held", |bench| {
        bench.iter_custom(|iters| {
            let nxt = SeqNumber(u32::MAX - 4096);
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let mut b = held_behind_a_hole(nxt);
                let n = (iters - done).min(EXTENDERS);
                let start = Instant::now();
                for i in 0..n as u32 {
                    let seq = nxt + 1 + HELD as u32 + i;
                    black_box(b.insert(nxt, seq, black_box(&[0xa5])));
                }
                total += start.elapsed();
                done += n;
            }
            total
        })
    });
    g.bench_function("1460-byte segment behind a 1-byte hole in 1 MiB", |bench| {
        let payload = [0x5au8; MSS];
        let per_window = (WINDOW / MSS - 1) as u64;
        bench.iter_custom(|iters| {
            let nxt = SeqNumber(1000);
            let mut total = Duration::ZERO;
            let mut done = 0;
            while done < iters {
                let mut b = RecvBuffer::new(WINDOW, WINDOW);
                let n = (iters - done).min(per_window);
                let start = Instant::now();
                for i in 0..n as u32 {
                    let seq = nxt + 1 + i * MSS as u32;
                    black_box(b.insert(nxt, seq, black_box(&payload)));
                }
                total += start.elapsed();
                done += n;
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, one_byte_extenders);
criterion_main!(benches);
