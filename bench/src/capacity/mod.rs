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
//! `results` holds what the scenario finds, its goals and its table.

mod results;

use std::{
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use anyhow::bail;
pub use results::{CapacityReport, CpuRow, CyclesRow, SystemCapacity, Trial, goals, table_section};
use results::{fmt_opt, fmt_others, fmt_rate, load_curves};

use crate::{
    cpu::{self, BusyTime, ProcessSnapshot, StatSnapshot, ThreadCost, UserCycles},
    machine::{Cores, CpuSampler, Machine},
    netns::{VethConfig, VethPair},
    progress::Progress,
    report::{self, Report, RunReport, Section, Series},
    udp::{PORT, ScenarioKind, Server, Settings, System, start_server},
    xdp_gen::{Edge, GenConfig, LoadPlan, Pacing, SPIN_SPACING, XdpGenerator, XdpLoadResult},
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

/// The test bed, the generator and the settings every step shares.
struct Bench<'a> {
    pair: VethPair,
    generator: XdpGenerator,
    s: &'a Settings,
    cores: Cores,
    stop: &'a AtomicBool,
    progress: Progress,
}

/// The server a measurement counts: its process, the thread whose cycles count (fastpath's
/// worker, the kernel echo's only thread), and the server itself, for its own answer count.
#[derive(Clone, Copy)]
struct Watch<'s> {
    pid: u32,
    tid: u32,
    server: &'s Server,
}

/// What the CPU counters saw over a window.
#[derive(Default)]
struct Window {
    /// Datagrams the server answered in the window, by its own count.
    answered: Option<u64>,
    stat: Option<(StatSnapshot, StatSnapshot)>,
    thread: Option<ThreadCost>,
    /// Processes other than the bench and the server that used CPU during the run.
    others: Vec<(String, f64)>,
}

impl Bench<'_> {
    /// Runs the generator on a thread pinned to the client core, showing progress; when
    /// `watch` names a server thread (pid, tid), its CPU is counted over the window.
    fn load(
        &mut self,
        plan: &LoadPlan,
        watch: Option<Watch<'_>>,
    ) -> anyhow::Result<(XdpLoadResult, Window)> {
        let started = Instant::now();
        let planned = plan.duration + plan.warmup + OVERHEAD;
        let mut window = Window::default();
        // Read on this thread, not the generator's: it takes a few ms. Over the whole run,
        // warm-up included, which is what noise on the machine needs.
        let processes = watch.map(|_| ProcessSnapshot::read());
        let (generator, stop, progress) = (&mut self.generator, self.stop, &self.progress);
        let result = std::thread::scope(|scope| {
            let window = &mut window;
            let handle = scope.spawn(move || {
                let (mut before, mut counter, mut answered) = (None, None, None);
                generator.run(plan, stop, &mut |edge| {
                    let Some(w) = watch else { return };
                    // The server's count is asked outside the CPU window (it takes a
                    // round trip to its control socket).
                    match edge {
                        Edge::Open => {
                            answered = w.server.answered();
                            counter = Some(UserCycles::start(w.pid, w.tid));
                            before = StatSnapshot::read().ok();
                        }
                        Edge::Close => {
                            let after = StatSnapshot::read().ok();
                            window.thread = counter.take().map(UserCycles::finish);
                            window.stat = before.take().zip(after);
                            window.answered = answered
                                .zip(w.server.answered())
                                .map(|(a, b)| b.saturating_sub(a));
                        }
                    }
                })
            });
            while !handle.is_finished() {
                progress.during(started);
                std::thread::sleep(Duration::from_millis(100));
            }
            handle
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })?;
        if let Some(before) = processes {
            let ours: Vec<u32> = [Some(std::process::id()), watch.map(|w| w.pid)]
                .into_iter()
                .flatten()
                .collect();
            window.others =
                ProcessSnapshot::read().others_since(&before, &ours, cpu::ticks_per_sec());
        }
        self.progress.advance(planned);
        Ok((result, window))
    }

    fn trial(&mut self, system: &str, rate: u64, window: Duration) -> anyhow::Result<Trial> {
        self.progress
            .bar
            .set_message(format!("{system}: {} offered", fmt_rate(rate as f64)));
        let plan = LoadPlan {
            rate: Some(rate),
            duration: window.min(Duration::from_secs(self.s.duration_secs)),
            warmup: SWEEP_WARMUP,
            cpu: Some(self.cores.client),
            pacing: Pacing::Spin,
        };
        let (r, _) = self.load(&plan, None)?;
        let trial = Trial::new(Some(rate), &r);
        self.progress.bar.println(format!(
            "  {system:<8} offered {:>8}  received {:>8}  loss {:>7.3} %{}",
            fmt_rate(trial.offered_pps),
            fmt_rate(trial.receive_pps),
            trial.loss * 100.0,
            if trial.unsent > 0 {
                format!(" ({} not sent: the generator fell behind)", trial.unsent)
            } else {
                String::new()
            }
        ));
        Ok(trial)
    }

    /// Whether `rate` is loss-free: a trial, and a second one when the first lost a
    /// little (under 10 %). Other work on the machine (a neighbour's process, the kernel's
    /// own kdamond reclaiming memory for ~10 ms at a time) can only add loss, never take
    /// it away, so the better of two trials is the nearer to the server's own limit.
    fn loss_free_at(
        &mut self,
        system: &str,
        rate: u64,
        trials: &mut Vec<Trial>,
    ) -> anyhow::Result<bool> {
        for _ in 0..2 {
            let t = self.trial(system, rate, SWEEP_WINDOW)?;
            let (ok, retry) = (t.loss_free(), t.loss < 0.1);
            trials.push(t);
            if ok || !retry {
                return Ok(ok);
            }
        }
        Ok(false)
    }

    /// Doubling from `FIRST_RATE` (halving if even that loses), then bisection.
    fn sweep(&mut self, system: &str) -> anyhow::Result<(u64, Vec<Trial>)> {
        let mut trials = Vec::new();
        let (mut good, mut bad) = (None::<u64>, None::<u64>);
        let mut rate = FIRST_RATE;
        loop {
            let ok = self.loss_free_at(system, rate, &mut trials)?;
            match (ok, good) {
                (true, _) => {
                    good = Some(rate);
                    if bad.is_some() || rate >= MAX_RATE {
                        break;
                    }
                    rate *= 2;
                }
                (false, Some(_)) => {
                    bad = Some(rate);
                    break;
                }
                (false, None) => {
                    bad = Some(rate);
                    rate /= 2;
                    if rate < 5_000 {
                        break;
                    }
                }
            }
        }
        while let (Some(g), Some(b)) = (good, bad) {
            if (b - g) as f64 <= g as f64 * PRECISION {
                break;
            }
            let mid = ((g + b) / 2).div_ceil(1000) * 1000;
            if self.loss_free_at(system, mid, &mut trials)? {
                good = Some(mid);
            } else {
                bad = Some(mid);
            }
        }
        Ok((good.unwrap_or(0), trials))
    }

    fn start(&self, system: System, idle: Option<&str>) -> anyhow::Result<Server> {
        let mut s = self.s.clone();
        if let Some(idle) = idle {
            s.fastpath_args = with_idle(&s.fastpath_args, idle);
        }
        start_server(
            &self.pair,
            ScenarioKind::UdpCapacity,
            system,
            &s,
            self.cores.server,
        )
    }

    /// The server's thread to count: fastpath's (first) worker, or the kernel echo's.
    fn server_thread(system: System, server: &Server) -> Option<Watch<'_>> {
        let pid = server.pid()?;
        let tid = match system {
            System::Kernel => pid,
            _ => cpu::find_thread(pid, "fastpath-q")?,
        };
        Some(Watch { pid, tid, server })
    }

    /// One latency run at `rate`, into a trial, a run report and a series.
    fn latency_run(
        &mut self,
        system: System,
        server: &Server,
        rate: u64,
        label: &str,
        runs: &mut Vec<RunReport>,
        series: &mut Vec<Series>,
    ) -> anyhow::Result<Trial> {
        self.progress.bar.set_message(format!(
            "{}: latency at {label} ({})",
            system.name(),
            fmt_rate(rate as f64)
        ));
        let plan = LoadPlan {
            rate: Some(rate),
            duration: Duration::from_secs(self.s.duration_secs),
            warmup: WARMUP,
            cpu: Some(self.cores.client),
            pacing: Pacing::Spin,
        };
        let sampler = CpuSampler::start(server.pid());
        let (r, _) = self.load(&plan, None)?;
        let cpu = sampler.finish(
            Some(r.cpu_time.as_secs_f64()),
            Some(self.cores.server),
            Some(self.cores.client),
        );
        let client = format!("xdp-{label}");
        runs.push(RunReport {
            system: system.name().into(),
            client: client.clone(),
            round: 0,
            rate_pps: r.receive_rate(),
            send_rate_pps: r.send_rate(),
            sent: r.sent,
            received: r.received,
            lost: r.offered.saturating_sub(r.received),
            duration_secs: r.elapsed.as_secs_f64(),
            samples: r.histogram.len(),
            percentiles_us: report::percentiles_us(&r.histogram),
            cpu,
        });
        let trial = Trial::new(Some(rate), &r);
        let rate = r.receive_rate();
        series.push(Series {
            system: system.name().into(),
            client,
            rounds: vec![(r.histogram, r.elapsed)],
            rates: vec![rate],
        });
        Ok(trial)
    }

    fn capacity(
        &mut self,
        system: System,
        runs: &mut Vec<RunReport>,
        series: &mut Vec<Series>,
    ) -> anyhow::Result<SystemCapacity> {
        let server = self.start(system, None)?;
        let (loss_free, trials) = self.sweep(system.name())?;
        let (mut at_50, mut at_90) = (None, None);
        if loss_free > 0 {
            let half = loss_free / 2;
            at_50 = Some(self.latency_run(system, &server, half, "50", runs, series)?);
            let most = loss_free * 9 / 10;
            at_90 = Some(self.latency_run(system, &server, most, "90", runs, series)?);
        }
        drop(server);
        Ok(SystemCapacity {
            system: system.name().into(),
            loss_free_pps: loss_free,
            trials,
            at_50,
            at_90,
        })
    }

    /// One measurement with the CPU counters on: a fresh server, the generator at `rate`
    /// (None: flood) for the scenario's duration.
    fn costed(
        &mut self,
        system: System,
        idle: Option<&str>,
        rate: Option<u64>,
    ) -> anyhow::Result<(Trial, Window)> {
        let server = self.start(system, idle)?;
        let watch = Self::server_thread(system, &server);
        self.progress.bar.set_message(format!(
            "{}{}: CPU at {}",
            system.name(),
            idle.map_or(String::new(), |i| format!(" --idle {i}")),
            rate.map_or("flood".into(), |r| fmt_rate(r as f64))
        ));
        let plan = LoadPlan {
            rate,
            duration: Duration::from_secs(self.s.duration_secs),
            warmup: WARMUP,
            cpu: Some(self.cores.client),
            pacing: CPU_PACING,
        };
        let (r, window) = self.load(&plan, watch)?;
        drop(server);
        Ok((Trial::new(rate, &r), window))
    }

    fn cpu_row(&mut self, system: System, idle: Option<&str>, rate: u64) -> anyhow::Result<CpuRow> {
        let (trial, window) = self.costed(system, idle, Some(rate))?;
        let busy = busy_of(&window);
        let cycles = window.thread.as_ref().and_then(|t| t.user_cycles);
        Ok(CpuRow {
            system: system.name().into(),
            idle: idle.unwrap_or("-").into(),
            ns_per_request: cpu::ns_per_request(busy.total_secs, trial.received),
            server_user_cycles_per_request: per(cycles, trial.received),
            server_thread: window.thread,
            other_tasks: window.others,
            busy,
            trial,
        })
    }

    fn cycles_row(&mut self, system: System, idle: Option<&str>) -> anyhow::Result<CyclesRow> {
        let (trial, window) = self.costed(system, idle, None)?;
        let busy = busy_of(&window);
        let tsc = cpu::tsc_hz();
        // Under flood the server drops what it cannot take; what it answered is its own
        // count (the generator's is a little lower: replies in flight, its own drops).
        let answered = window.answered.unwrap_or(trial.received);
        let thread = window.thread;
        Ok(CyclesRow {
            system: system.name().into(),
            idle: idle.unwrap_or("-").into(),
            answered_by_server: window.answered,
            user_cycles_per_request: per(thread.as_ref().and_then(|t| t.user_cycles), answered),
            thread_cycles_per_request: per(
                thread
                    .as_ref()
                    .zip(tsc)
                    .map(|(t, hz)| (t.user_secs + t.system_secs) * hz),
                answered,
            ),
            all_cores_cycles_per_request: per(tsc.map(|hz| busy.total_secs * hz), answered),
            server_thread: thread,
            other_tasks: window.others,
            busy,
            trial,
        })
    }
}

/// Busy time of every core over `window`, now.
fn background_load(window: Duration) -> Option<BusyTime> {
    let before = StatSnapshot::read().ok()?;
    std::thread::sleep(window);
    let after = StatSnapshot::read().ok()?;
    Some(BusyTime::between(&before, &after, cpu::ticks_per_sec()))
}

fn busy_of(window: &Window) -> BusyTime {
    window
        .stat
        .as_ref()
        .map(|(a, b)| BusyTime::between(a, b, cpu::ticks_per_sec()))
        .unwrap_or_default()
}

fn per(total: Option<f64>, requests: u64) -> Option<f64> {
    total.filter(|_| requests > 0).map(|t| t / requests as f64)
}

/// `args` with any `--idle X` replaced by `--idle idle`.
fn with_idle(args: &[String], idle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
        } else if a == "--idle" {
            skip = true;
        } else if !a.starts_with("--idle=") {
            out.push(a.clone());
        }
    }
    out.extend(["--idle".to_string(), idle.to_string()]);
    out
}

/// The fixed rate for CPU per request: half the lowest loss-free rate, in tens of
/// thousands (at least 10k/s), so every system is well below its limit.
pub fn cpu_rate(systems: &[SystemCapacity]) -> u64 {
    let lowest = systems.iter().map(|s| s.loss_free_pps).min().unwrap_or(0);
    (lowest / 2 / 10_000 * 10_000).max(10_000)
}

/// Runs the scenario, writes its report into `s.out`, and returns the report and table.
pub fn run(s: &Settings, opts: &Options, stop: &AtomicBool) -> anyhow::Result<(Report, String)> {
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
    // Whatever else the machine is doing lands in /proc/stat too: say how much there was.
    let background = background_load(Duration::from_millis(500));
    let pair = VethPair::create(VethConfig {
        queues: s.queues,
        mtu: s.mtu,
        peer_tx_checksum: s.peer_tx_checksum,
    })?;
    let generator = XdpGenerator::open(
        &pair,
        &GenConfig {
            flows: opts.flows,
            payload: s.payload,
            server_port: PORT,
        },
    )?;
    let mut bench = Bench {
        cores: s.cores(),
        progress: Progress::new(planned_secs(s), ScenarioKind::UdpCapacity.name()),
        pair,
        generator,
        s,
        stop,
    };
    let mut runs = Vec::new();
    let mut series = Vec::new();
    let mut notes = Vec::new();
    if let Some(busy) = background {
        notes.push(format!(
            "before the run, with nothing of the bench running, the machine was busy: {} (other work counts in CPU per request too)",
            busy.per_core_secs
                .iter()
                .map(|(core, secs)| format!("core {core} {:.0} %", secs / 0.5 * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    // What the generator offers with nothing answering: its own limit.
    bench.progress.bar.set_message("the generator alone");
    let (alone, _) = bench.load(
        &LoadPlan {
            rate: None,
            duration: SWEEP_WINDOW * 2,
            warmup: SWEEP_WARMUP,
            cpu: Some(bench.cores.client),
            pacing: Pacing::Spin,
        },
        None,
    )?;
    let generator_alone = Trial::new(None, &alone);

    let mut systems = Vec::new();
    for system in SYSTEMS {
        systems.push(bench.capacity(system, &mut runs, &mut series)?);
    }
    let cpu_rate_pps = s.rate.unwrap_or_else(|| cpu_rate(&systems));
    let mut cpu_rows = Vec::new();
    for (system, idle) in [
        (System::Fastpath, Some("poll")),
        (System::Fastpath, Some("hybrid")),
        (System::Fastpath, Some("busy")),
        (System::Kernel, None),
        (System::Ceiling, Some("poll")),
    ] {
        cpu_rows.push(bench.cpu_row(system, idle, cpu_rate_pps)?);
    }
    let mut cycles = Vec::new();
    for (system, idle) in [
        (System::Fastpath, Some("poll")),
        (System::Kernel, None),
        (System::Ceiling, Some("poll")),
    ] {
        cycles.push(bench.cycles_row(system, idle)?);
    }
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
    let name = ScenarioKind::UdpCapacity.name();
    std::fs::create_dir_all(&s.out)?;
    let plot = s.out.join(format!("{name}-load.svg"));
    report::plot_load(&plot, name, &load_curves(&capacity))?;
    if let Some(png) = report::svg_to_png(&plot) {
        notes.push(format!("plot: {}", png.display()));
    }
    let summary = report::summarize(name, &series);
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
        results: &capacity,
        table: table_section(&capacity),
    };
    let table = report::write_with_section(&s.out, &mut report, &series, Some(&section))?;
    drop(bench);
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
    let pair = VethPair::create(VethConfig {
        queues: s.queues,
        mtu: s.mtu,
        peer_tx_checksum: s.peer_tx_checksum,
    })?;
    let generator = XdpGenerator::open(
        &pair,
        &GenConfig {
            flows: opts.flows,
            payload: s.payload,
            server_port: PORT,
        },
    )?;
    let mut bench = Bench {
        cores: s.cores(),
        progress: Progress::new(s.duration_secs + 2, "xdp-load"),
        pair,
        generator,
        s,
        stop,
    };
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

    #[test]
    fn idle_is_replaced_not_repeated() {
        let args: Vec<String> = ["--batch", "64", "--idle", "busy", "--idle=hybrid"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            with_idle(&args, "poll"),
            ["--batch", "64", "--idle", "poll"]
        );
    }
}
