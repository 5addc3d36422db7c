//! The Internet checksum (32-bit words, one fold) against a naive 16-bit byte loop.
//!
//! cargo bench -p fastpath --bench checksum

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fastpath::wire::checksum;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum");
    for len in [20usize, 64, 1472] {
        let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        assert_eq!(checksum::checksum(&data), checksum::naive(&data));
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_with_input(BenchmarkId::new("fastpath", len), &data, |b, d| {
            b.iter(|| checksum::checksum(black_box(d)))
        });
        group.bench_with_input(BenchmarkId::new("naive byte loop", len), &data, |b, d| {
            b.iter(|| checksum::naive(black_box(d)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
