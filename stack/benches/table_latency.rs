//! Lookup latency while a worker writes the socket table: one thread inserts 100,000
//! sockets as fast as it can ("fill"), or opens one and closes the oldest 400,000 times with
//! 50,000 open ("churn", connections passing through TIME_WAIT; enough removals that the
//! maps' tombstones force copies), while another thread looks
//! up existing sockets and times each lookup. Compares the table's layouts: `presized`
//! (what `SocketTable::new` builds), `presized-blocking`, and `grown` (the table before
//! workers wrote to it: 1024 entries grown by blocking resizes). Rounds alternate the
//! layouts; each figure is the median over rounds, except "worst", the worst round's.
//!
//! cargo bench -p fastpath --bench table_latency [-- rounds]

use std::{
    collections::VecDeque,
    net::{Ipv4Addr, SocketAddrV4},
    sync::{
        Arc, Barrier,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use fastpath::internals::{FourTuple, Layout, Protocol, SocketTable};

const STABLE: u32 = 1024;
const FILL_OPS: u32 = 100_000;
const CHURN_OPS: u32 = 400_000;
const CHURN_OPEN: u32 = 50_000;
const CAPACITY: u32 = 131_072;
/// Lookups recorded per run at most (64 MB of samples).
const MAX_SAMPLES: usize = 16 << 20;

fn tuple(i: u32) -> FourTuple {
    let [a, b, c, d] = i.to_be_bytes();
    FourTuple::connected(
        Protocol::Tcp,
        SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 443),
        SocketAddrV4::new(
            Ipv4Addr::new(10, a, b, c),
            10_000 + u16::from(d) * 16 + (i % 16) as u16,
        ),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Fill,
    Churn,
}

struct Run {
    /// Nanoseconds per lookup, sorted.
    lookups: Vec<u32>,
    /// Nanoseconds per write (an insert, or for churn an insert and a remove), sorted.
    writes: Vec<u32>,
    /// The same writes in the writer thread's CPU time, sorted: without the time the
    /// scheduler gave other threads (this machine's 2 cores are shared), so a long one is
    /// work the write did, such as copying a map.
    writes_cpu: Vec<u32>,
    writer_total: Duration,
}

/// The calling thread's CPU time.
fn thread_cpu_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: `ts` is a valid timespec to write; the clock id is a constant Linux knows.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn pin(core: usize) {
    if let Some(id) = core_affinity::get_core_ids().and_then(|ids| ids.get(core).copied()) {
        core_affinity::set_for_current(id);
    }
}

fn run(layout: Layout, scenario: Scenario) -> Run {
    let table = Arc::new(SocketTable::<u32>::with_layout(CAPACITY, layout));
    for i in 0..STABLE {
        table.insert(tuple(i), |_| i).unwrap();
    }
    let mut open = VecDeque::new();
    let mut next = STABLE;
    if scenario == Scenario::Churn {
        for _ in 0..CHURN_OPEN {
            open.push_back(table.insert(tuple(next), |_| next).unwrap());
            next += 1;
        }
    }
    let start = Arc::new(Barrier::new(2));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (table, start, done) = (table.clone(), start.clone(), done.clone());
        std::thread::spawn(move || {
            pin(0);
            let mut samples: Vec<u32> = Vec::with_capacity(MAX_SAMPLES);
            let mut x = 0x9e37_79b9u32;
            start.wait();
            while !done.load(Ordering::Relaxed) && samples.len() < MAX_SAMPLES {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = x % STABLE;
                let t = tuple(i);
                let began = Instant::now();
                let found = table.lookup_with(t.proto, t.local, t.remote, |e| e.value);
                let took = began.elapsed();
                assert_eq!(found, Some(i), "a stable socket went missing");
                samples.push(took.as_nanos().min(u128::from(u32::MAX)) as u32);
            }
            samples
        })
    };
    pin(1);
    let ops = match scenario {
        Scenario::Fill => FILL_OPS,
        Scenario::Churn => CHURN_OPS,
    };
    let mut writes = Vec::with_capacity(ops as usize);
    let mut writes_cpu = Vec::with_capacity(ops as usize);
    start.wait();
    let began = Instant::now();
    for _ in 0..ops {
        let cpu = thread_cpu_nanos();
        let t = Instant::now();
        open.push_back(table.insert(tuple(next), |_| next).unwrap());
        next += 1;
        if scenario == Scenario::Churn {
            table.remove(open.pop_front().unwrap()).unwrap();
        }
        writes.push(t.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
        writes_cpu.push((thread_cpu_nanos() - cpu).min(u64::from(u32::MAX)) as u32);
    }
    let writer_total = began.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut lookups = reader.join().unwrap();
    lookups.sort_unstable();
    writes.sort_unstable();
    writes_cpu.sort_unstable();
    Run {
        lookups,
        writes,
        writes_cpu,
        writer_total,
    }
}

fn quantile(sorted: &[u32], q: f64) -> u32 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a bare number is the rounds.
    let rounds: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5);
    let layouts = [
        ("grown (before)", Layout::Grown),
        ("presized-blocking", Layout::PresizedBlocking),
        ("presized (now)", Layout::Presized),
    ];
    // The clock's own cost, which every lookup figure includes.
    let mut clock: Vec<u32> = (0..100_000)
        .map(|_| {
            let t = Instant::now();
            t.elapsed().as_nanos() as u32
        })
        .collect();
    clock.sort_unstable();
    println!(
        "clock: Instant::now + elapsed = {} ns (p50); {} rounds; capacity {CAPACITY}; {STABLE} stable sockets looked up",
        quantile(&clock, 0.5),
        rounds
    );
    for (scenario, what) in [
        (Scenario::Fill, "fill: 100,000 inserts"),
        (
            Scenario::Churn,
            "churn: 400,000 × (insert + remove oldest), 50,000 open",
        ),
    ] {
        println!("\n{what}");
        println!(
            "| layout | lookups | lookup p50 | p99 | p99.9 | max | write p50 | write p99.9 | write max | write max, CPU (worst round) | writes > 100 µs CPU | writer total |"
        );
        println!(
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        );
        let mut results: Vec<Vec<Run>> = layouts.iter().map(|_| Vec::new()).collect();
        for _ in 0..rounds {
            for (l, (_, layout)) in layouts.iter().enumerate() {
                results[l].push(run(*layout, scenario));
            }
        }
        for ((name, _), runs) in layouts.iter().zip(&results) {
            let stat = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
            let worst_cpu = runs
                .iter()
                .map(|r| *r.writes_cpu.last().unwrap())
                .max()
                .unwrap();
            println!(
                "| {name} | {:.0} k | {:.0} ns | {:.0} ns | {:.0} ns | {:.1} µs | {:.0} ns | {:.1} µs | {:.1} µs | {:.1} µs ({:.1} µs) | {:.0} | {:.1} ms |",
                stat(&|r| r.lookups.len() as f64 / 1e3),
                stat(&|r| f64::from(quantile(&r.lookups, 0.5))),
                stat(&|r| f64::from(quantile(&r.lookups, 0.99))),
                stat(&|r| f64::from(quantile(&r.lookups, 0.999))),
                stat(&|r| f64::from(*r.lookups.last().unwrap()) / 1e3),
                stat(&|r| f64::from(quantile(&r.writes, 0.5))),
                stat(&|r| f64::from(quantile(&r.writes, 0.999)) / 1e3),
                stat(&|r| f64::from(*r.writes.last().unwrap()) / 1e3),
                stat(&|r| f64::from(*r.writes_cpu.last().unwrap()) / 1e3),
                f64::from(worst_cpu) / 1e3,
                stat(&|r| r.writes_cpu.iter().filter(|&&c| c > 100_000).count() as f64),
                stat(&|r| r.writer_total.as_secs_f64() * 1e3),
            );
        }
    }
}
