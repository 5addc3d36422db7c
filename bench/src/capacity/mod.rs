//! Scenario `udp-capacity`: each server's own limit, found with a load generator that is
//! not the bottleneck (`xdp_gen`, on fastpath's AF_XDP layer), and what a request costs
//! it in CPU.
//!
//! For each system — fastpath, the kernel's recvmmsg/sendmmsg echo, the bare AF_XDP
//! ceiling — the offered load doubles from 100k/s until more than 0.1 % is lost, then a
//! bisection finds the highest rate with at most 0.1 % loss; latency is recorded at 50 %
//! and 90 % of that rate. Then, at one fixed rate below every system's limit, the CPU
//! each answer cost: busy time of every core (`cpu`) ÷ answers, fastpath with `--idle
//! poll` (work, not spinning), `hybrid` and `busy` beside it. Last, under flood, the
//! user-space cycles per answer of fastpath's worker, beside the kernel server's.
//!
//! `bench` has the steps on the test bed, `results` what the scenario finds and its
//! goals, `table` its part of the terminal table; `run` puts them in order.

mod bench;
mod results;
mod table;

use std::{sync::atomic::AtomicBool, time::Duration};

use anyhow::bail;
use bench::{Bench, busy_of};
use results::load_curves;
pub use results::{CapacityReport, CpuRow, CyclesRow, SystemCapacity, Trial, goals};
pub use table::table_section;
use table::{fmt_opt, fmt_others};

use crate::{
    cpu::{self, BusyTime, StatSnapshot},
    machine::Machine,
    report::{self, Report, RunReport, Section, Series},
    udp::{ScenarioKind, Settings, System},
    xdp_gen::{LoadPlan, Pacing, SPIN_SPACING},
};

/// The most a loss-free run may lose: 0.1 % of what was offered.
pub const LOSS_THRESHOLD: f64 = 0.001;
/// The sweep's first rate; the ceiling's trial at this rate is the generator's own check.
pub const FIRST_RATE: u64 = 100_000;
/// The sweep never offers more than this.
const MAX_RATE: u64 = 12_800_000;
/// Bisection stops when the bounds are this close (relative).
const PRECISION: f64 = 0.05;
const SWEEP_WINDOW: Duration = Duration::from_secs(1);
const SWEEP_WARMUP: Duration = Duration::from_millis(300);
const WARMUP: Duration = Duration::from_millis(500);
/// Server starts, drains and the like, per measurement, for the time estimate.
const OVERHEAD: Duration = Duration::from_millis(400);
const SYSTEMS: [System; 3] = [System::Fastpath, System::Kernel, System::Ceiling];
/// For CPU per request the generator sleeps between bursts of about 100 µs of requests
/// (10 at 100k/s), so that its own wake-ups cost little beside the server's work.
const CPU_PACING: Pacing = Pacing::Sleep { spacing_us: 100 };

/// What the command line may change beyond `Settings`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Flows (source ports) the generator spreads its requests over.
    pub flows: u16,
}

impl Default for Options {
    fn default() -> Self {
        Self { flows: 16 }
    }
}

/// Seconds the scenario takes, roughly (for the progress bar and `all`'s bound).
pub fn planned_secs(s: &Settings) -> u64 {
    let window = SWEEP_WINDOW.min(Duration::from_secs(s.duration_secs));
    let trial = window + SWEEP_WARMUP + OVERHEAD;
    let measure = Duration::from_secs(s.duration_secs) + WARMUP + OVERHEAD;
    // About ten sweep trials and two latency runs a system; five CPU runs, three floods
    // and the generator alone.
    let total = trial * 12 * SYSTEMS.len() as u32 + measure * (2 * 3 + 5 + 3 + 1);
    total.as_secs()
}

/// The fixed rate for CPU per request: half the lowest loss-free rate, in tens of
/// thousands (at least 10k/s), so every system is well below its limit.
pub fn cpu_rate(systems: &[SystemCapacity]) -> u64 {
    let lowest = systems.iter().map(|s| s.loss_free_pps).min().unwrap_or(0);
    (lowest / 2 / 10_000 * 10_000).max(10_000)
}

/// Runs the scenario, writes its report into `s.out`, and returns the report and table.
pub fn run(s: &Settings, opts: &Options, stop: &AtomicBool) -> anyhow::Result<(Report, String)> {
    check(s)?;
    // Whatever else the machine is doing lands in /proc/stat too: say how much there was.
    let background = background_load(Duration::from_millis(500));
    let name = ScenarioKind::UdpCapacity.name();
    let mut bench = Bench::open(s, opts, stop, planned_secs(s), name)?;
    let mut runs = Vec::new();
    let mut series = Vec::new();
    let mut notes: Vec<String> = background
        .as_ref()
        .map(background_note)
        .into_iter()
        .collect();

    let generator_alone = bench.generator_alone()?;
    let systems = bench.capacities(&mut runs, &mut series)?;
    let cpu_rate_pps = s.rate.unwrap_or_else(|| cpu_rate(&systems));
    let cpu_rows = bench.cpu_rows(cpu_rate_pps)?;
    let cycles = bench.cycles_rows()?;
    bench.progress.bar.finish_and_clear();

    let cycles_method = cycles
        .iter()
        .find_map(|c| c.server_thread.as_ref())
        .map_or("not measured".into(), |t| t.method.describe());
    let capacity = CapacityReport {
        loss_threshold: LOSS_THRESHOLD,
        flows: opts.flows,
        generator_alone: Some(generator_alone),
        systems,
        cpu_rate_pps,
        cpu: cpu_rows,
        cycles,
        cycles_method,
        tsc_hz: cpu::tsc_hz(),
    };
    let goals = goals(&capacity);
    notes.push(format!(
        "generator: AF_XDP on the client's veth ({} flows, {}-byte payload), open loop; for limits and latency bursts about every {} µs, spinning between them, latency from each burst's intended send time; for CPU per request {:?}",
        opts.flows,
        s.payload,
        SPIN_SPACING.as_micros(),
        CPU_PACING
    ));
    if bench.cores.server == bench.cores.client {
        notes.push("one core only: server and client share it".into());
    }
    let written = write_report(s, &capacity, goals, notes, runs, &series)?;
    drop(bench);
    Ok(written)
}

/// What the scenario cannot do.
fn check(s: &Settings) -> anyhow::Result<()> {
    if s.queues != 1 {
        bail!(
            "udp-capacity drives one veth queue (its generator has one AF_XDP socket); run it without --queues"
        );
    }
    if s.baseline_bin.is_some() || s.with_capture {
        bail!(
            "udp-capacity compares fastpath, the kernel and the ceiling; --baseline-bin and --with-capture belong to the other scenarios"
        );
    }
    Ok(())
}

/// Busy time of every core over `window`, now.
fn background_load(window: Duration) -> Option<BusyTime> {
    let before = StatSnapshot::read().ok()?;
    std::thread::sleep(window);
    let after = StatSnapshot::read().ok()?;
    Some(BusyTime::between(&before, &after, cpu::ticks_per_sec()))
}

/// How busy the machine was before the run, for the notes.
fn background_note(busy: &BusyTime) -> String {
    format!(
        "before the run, with nothing of the bench running, the machine was busy: {} (other work counts in CPU per request too)",
        busy.per_core_secs
            .iter()
            .map(|(core, secs)| format!("core {core} {:.0} %", secs / 0.5 * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The load plot, then the report's files with the capacity section; the report and table.
fn write_report(
    s: &Settings,
    capacity: &CapacityReport,
    goals: Vec<report::Goal>,
    mut notes: Vec<String>,
    runs: Vec<RunReport>,
    series: &[Series],
) -> anyhow::Result<(Report, String)> {
    let name = ScenarioKind::UdpCapacity.name();
    std::fs::create_dir_all(&s.out)?;
    let plot = s.out.join(format!("{name}-load.svg"));
    report::plot_load(&plot, name, &load_curves(capacity))?;
    if let Some(png) = report::svg_to_png(&plot) {
        notes.push(format!("plot: {}", png.display()));
    }
    let summary = report::summarize(name, series);
    let mut report = Report {
        scenario: name.into(),
        command: s.command.clone(),
        machine: Machine::read(s.queues, s.mtu, s.peer_tx_checksum),
        settings: serde_json::to_value(s)?,
        runs,
        summary,
        ratios: Vec::new(),
        goals,
        notes,
    };
    let section = Section {
        key: "capacity",
        results: capacity,
        table: table_section(capacity),
    };
    let table = report::write_with_section(&s.out, &mut report, series, Some(&section))?;
    Ok((report, table))
}

/// One run of the AF_XDP generator against one system, for checks and profiles (run it
/// under `perf record -a -g` to see both cores): the trial, and the server thread's and
/// every core's CPU over the window, as text.
pub fn load_once(
    s: &Settings,
    opts: &Options,
    system: &str,
    rate: Option<u64>,
    sleep: bool,
    stop: &AtomicBool,
) -> anyhow::Result<String> {
    let system = match system {
        "fastpath" => System::Fastpath,
        "kernel" => System::Kernel,
        "ceiling" => System::Ceiling,
        other => bail!("no system {other:?}: fastpath, kernel or ceiling"),
    };
    let mut bench = Bench::open(s, opts, stop, s.duration_secs + 2, "xdp-load")?;
    let server = bench.start(system, None)?;
    let watch = Bench::server_thread(system, &server);
    let plan = LoadPlan {
        rate,
        duration: Duration::from_secs(s.duration_secs),
        warmup: WARMUP,
        cpu: Some(bench.cores.client),
        pacing: if sleep { CPU_PACING } else { Pacing::Spin },
    };
    let (r, window) = bench.load(&plan, watch)?;
    bench.progress.bar.finish_and_clear();
    drop(server);
    let t = Trial::new(rate, &r);
    let busy = busy_of(&window);
    Ok(format!(
        "{}: offered {} sent {} received {} lost {} unsent {} (loss {:.3} %), generator drops {}, foreign {}\n\
         latency µs: p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1}\n\
         generator: {} turns, {} sleeps, {:.3} CPU s\n\
         server's own count of answers in the window: {:?}\n\
         busy s per core: {:?} (softirq {:?}); {} ns per answer\n\
         server thread: {:?}\n\
         other tasks: {}\n",
        system.name(),
        t.offered,
        t.sent,
        t.received,
        t.lost,
        t.unsent,
        t.loss * 100.0,
        t.generator_rx_dropped,
        r.foreign,
        t.p("p50"),
        t.p("p90"),
        t.p("p99"),
        t.p("p99.9"),
        t.p("max"),
        r.turns,
        r.sleeps,
        t.generator_cpu_secs,
        window.answered,
        busy.per_core_secs,
        busy.softirq_secs,
        fmt_opt(cpu::ns_per_request(busy.total_secs, t.received)),
        window.thread,
        fmt_others(&window.others)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn system(name: &str, rate: u64) -> SystemCapacity {
        SystemCapacity {
            system: name.into(),
            loss_free_pps: rate,
            trials: Vec::new(),
            at_50: None,
            at_90: None,
        }
    }

    #[test]
    fn the_cpu_rate_is_half_the_lowest_limit_in_tens_of_thousands() {
        let systems = [system("fastpath", 812_000), system("kernel", 395_000)];
        assert_eq!(cpu_rate(&systems), 190_000);
        assert_eq!(cpu_rate(&[system("kernel", 0)]), 10_000);
    }
}
