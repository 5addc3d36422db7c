//! Lookups per second from 2 and 4 threads while another thread inserts and removes, for
//! the socket table and for `Mutex<HashMap>` / `RwLock<HashMap>` on the same key mix:
//! 1024 connected four-tuples that stay, plus a churning set. `SocketTable (grown, before)`
//! is the table's layout before workers wrote to it (1024 entries grown by blocking
//! resizes), for comparison with the presized maps `SocketTable::new` builds now.
//!
//! cargo bench -p fastpath --bench table

use std::{
    collections::HashMap,
    hint::black_box,
    net::{Ipv4Addr, SocketAddrV4},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fastpath::internals::{FourTuple, Layout, Protocol, SocketNumber, SocketTable};

const STABLE: u16 = 1024;
const LOOKUPS: u64 = 20_000;

fn tuple(host: u8, port: u16) -> FourTuple {
    FourTuple::connected(
        Protocol::Tcp,
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 80),
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 1, host), port),
    )
}

trait Table: Send + Sync + 'static {
    const NAME: &'static str;
    fn new() -> Self;
    fn lookup(&self, t: &FourTuple) -> Option<u32>;
    /// Inserts and returns a token to remove with.
    fn insert(&self, t: FourTuple, v: u32) -> Option<SocketNumber>;
    fn remove(&self, t: &FourTuple, token: Option<SocketNumber>);
}

impl Table for SocketTable<u32> {
    const NAME: &'static str = "SocketTable (papaya)";
    fn new() -> Self {
        SocketTable::new(fastpath::internals::numbers_capacity())
    }
    fn lookup(&self, t: &FourTuple) -> Option<u32> {
        SocketTable::lookup_with(self, t.proto, t.local, t.remote, |e| e.value)
    }
    fn insert(&self, t: FourTuple, v: u32) -> Option<SocketNumber> {
        SocketTable::insert(self, t, |_| v).ok()
    }
    fn remove(&self, _: &FourTuple, token: Option<SocketNumber>) {
        if let Some(n) = token {
            let _ = SocketTable::remove(self, n);
        }
    }
}

/// The table as it was laid out before workers wrote to it.
struct Grown(SocketTable<u32>);

impl Table for Grown {
    const NAME: &'static str = "SocketTable (grown, before)";
    fn new() -> Self {
        Grown(SocketTable::with_layout(
            fastpath::internals::numbers_capacity(),
            Layout::Grown,
        ))
    }
    fn lookup(&self, t: &FourTuple) -> Option<u32> {
        self.0.lookup_with(t.proto, t.local, t.remote, |e| e.value)
    }
    fn insert(&self, t: FourTuple, v: u32) -> Option<SocketNumber> {
        self.0.insert(t, |_| v).ok()
    }
    fn remove(&self, _: &FourTuple, token: Option<SocketNumber>) {
        if let Some(n) = token {
            let _ = self.0.remove(n);
        }
    }
}

/// Names the hasher in a baseline's label.
trait HasherName {
    const LABEL: &'static str;
}

impl HasherName for std::hash::RandomState {
    const LABEL: &'static str = "Mutex<HashMap>";
}

/// The table's own hasher, so the comparison is of structures, not hashers.
impl HasherName for foldhash::quality::RandomState {
    const LABEL: &'static str = "Mutex<HashMap> (foldhash)";
}

impl<S> Table for Mutex<HashMap<FourTuple, u32, S>>
where
    S: HasherName + std::hash::BuildHasher + Default + Send + Sync + 'static,
{
    const NAME: &'static str = S::LABEL;
    fn new() -> Self {
        Mutex::new(HashMap::default())
    }
    fn lookup(&self, t: &FourTuple) -> Option<u32> {
        self.lock().unwrap().get(t).copied()
    }
    fn insert(&self, t: FourTuple, v: u32) -> Option<SocketNumber> {
        self.lock().unwrap().insert(t, v);
        None
    }
    fn remove(&self, t: &FourTuple, _: Option<SocketNumber>) {
        self.lock().unwrap().remove(t);
    }
}

impl Table for RwLock<HashMap<FourTuple, u32>> {
    const NAME: &'static str = "RwLock<HashMap>";
    fn new() -> Self {
        RwLock::new(HashMap::new())
    }
    fn lookup(&self, t: &FourTuple) -> Option<u32> {
        self.read().unwrap().get(t).copied()
    }
    fn insert(&self, t: FourTuple, v: u32) -> Option<SocketNumber> {
        self.write().unwrap().insert(t, v);
        None
    }
    fn remove(&self, t: &FourTuple, _: Option<SocketNumber>) {
        self.write().unwrap().remove(t);
    }
}

/// Wall time for `threads` readers to do `iters × LOOKUPS` lookups each, with one writer churning.
fn run<T: Table>(threads: u64, iters: u64) -> Duration {
    let table = Arc::new(T::new());
    for p in 0..STABLE {
        table.insert(tuple(1, 10_000 + p), u32::from(p));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (table, stop) = (table.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut p = 0u16;
            while !stop.load(Ordering::Relaxed) {
                let t = tuple(2, 20_000 + p % 4096);
                let token = table.insert(t, 7);
                table.remove(&t, token);
                p = p.wrapping_add(1);
            }
        })
    };
    let start = Instant::now();
    let readers: Vec<_> = (0..threads)
        .map(|r| {
            let table = table.clone();
            std::thread::spawn(move || {
                let mut x = 0x9e37_79b9u32 ^ (r as u32 + 1);
                let mut found = 0u64;
                for _ in 0..iters * LOOKUPS {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let p = (x % u32::from(STABLE)) as u16;
                    found += u64::from(table.lookup(&tuple(1, 10_000 + p)).is_some());
                }
                black_box(found)
            })
        })
        .collect();
    for r in readers {
        assert_eq!(
            r.join().unwrap(),
            iters * LOOKUPS,
            "a stable entry went missing"
        );
    }
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    elapsed
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("lookups under churn");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for threads in [2u64, 4] {
        group.throughput(Throughput::Elements(threads * LOOKUPS));
        group.bench_function(
            BenchmarkId::new(<SocketTable<u32> as Table>::NAME, threads),
            |b| b.iter_custom(|iters| run::<SocketTable<u32>>(threads, iters)),
        );
        group.bench_function(BenchmarkId::new(Grown::NAME, threads), |b| {
            b.iter_custom(|iters| run::<Grown>(threads, iters))
        });
        group.bench_function(
            BenchmarkId::new(<Mutex<HashMap<FourTuple, u32>> as Table>::NAME, threads),
            |b| b.iter_custom(|iters| run::<Mutex<HashMap<FourTuple, u32>>>(threads, iters)),
        );
        type MutexFold = Mutex<HashMap<FourTuple, u32, foldhash::quality::RandomState>>;
        group.bench_function(BenchmarkId::new(<MutexFold as Table>::NAME, threads), |b| {
            b.iter_custom(|iters| run::<MutexFold>(threads, iters))
        });
        group.bench_function(
            BenchmarkId::new(<RwLock<HashMap<FourTuple, u32>> as Table>::NAME, threads),
            |b| b.iter_custom(|iters| run::<RwLock<HashMap<FourTuple, u32>>>(threads, iters)),
        );
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
