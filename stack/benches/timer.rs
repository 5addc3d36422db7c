//! The worker's timer wheel: arming and cancelling a timer while 100,000 others are armed
//! (a connection's retransmit timer, set and cleared per segment), and firing 100,000
//! timers spread over an hour of virtual time, polled at each `next_deadline`.
//!
//! cargo bench -p fastpath --bench timer

use std::{hint::black_box, time::Duration};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fastpath::{internals::TimerWheel, time::Instant};

const TIMERS: u64 = 100_000;
const HOUR_NANOS: u64 = 3_600_000_000_000;

/// Deadlines spread over an hour (xorshift64*: seeded, no dependency).
fn deadlines() -> impl Iterator<Item = Instant> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    std::iter::repeat_with(move || {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        Instant::from_nanos(x.wrapping_mul(0x2545_f491_4f6c_dd1d) % HOUR_NANOS)
    })
}

fn loaded() -> TimerWheel<u64> {
    let mut w = TimerWheel::with_capacity(Instant::ZERO, Duration::from_millis(1), 1 << 17);
    for (i, d) in deadlines().take(TIMERS as usize).enumerate() {
        w.insert(d, i as u64);
    }
    w
}

fn arm_cancel(c: &mut Criterion) {
    let mut group = c.benchmark_group("timer wheel");
    let mut w = loaded();
    let mut at = deadlines();
    group.throughput(Throughput::Elements(1));
    group.bench_function("arm + cancel, 100k armed", |b| {
        b.iter(|| {
            let id = w.insert(at.next().unwrap(), 7);
            black_box(w.cancel(id))
        })
    });
    group.bench_function("arm + re-arm + cancel, 100k armed", |b| {
        b.iter(|| {
            let id = w.insert(at.next().unwrap(), 7);
            w.reset(id, at.next().unwrap());
            black_box(w.cancel(id))
        })
    });
    group.throughput(Throughput::Elements(TIMERS));
    group.sample_size(10);
    group.bench_function("100k timers expire over an hour", |b| {
        b.iter_batched(
            loaded,
            |mut w| {
                let mut fired = 0u64;
                while let Some(next) = w.next_deadline() {
                    fired += w.poll(next, |_, v| {
                        black_box(v);
                    }) as u64;
                }
                assert_eq!(fired, TIMERS);
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, arm_cancel);
criterion_main!(benches);
