//! The steps of `udp-capacity`, on one test bed and one generator: a load with the CPU
//! counters on or off, a trial at one rate, the sweep to a system's limit, latency runs,
//! and the CPU and cycles a request costs.

use std::{
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use super::{
    CPU_PACING, FIRST_RATE, MAX_RATE, OVERHEAD, Options, PRECISION, SWEEP_WARMUP, SWEEP_WINDOW,
    SYSTEMS, WARMUP,
    results::{CpuRow, CyclesRow, SystemCapacity, Trial},
    table::fmt_rate,
};
use crate::{
    cpu::{self, BusyTime, ProcessSnapshot, StatSnapshot, ThreadCost, UserCycles},
    machine::{Cores, CpuSampler},
    netns::{VethConfig, VethPair},
    progress::Progress,
    report::{self, RunReport, Series},
    udp::{PORT, ScenarioKind, Server, Settings, System, start_server},
    xdp_gen::{Edge, GenConfig, LoadPlan, Pacing, XdpGenerator, XdpLoadResult},
};

/// The test bed, the generator and the settings every step shares.
pub(super) struct Bench<'a> {
    pair: VethPair,
    generator: XdpGenerator,
    s: &'a Settings,
    pub(super) cores: Cores,
    stop: &'a AtomicBool,
    pub(super) progress: Progress,
}

/// The server a measurement counts: its process, the thread whose cycles count (fastpath's
/// worker, the kernel echo's only thread), and the server itself, for its own answer count.
#[derive(Clone, Copy)]
pub(super) struct Watch<'s> {
    pid: u32,
    tid: u32,
    server: &'s Server,
}

/// What the CPU counters saw over a window.
#[derive(Default)]
pub(super) struct Window {
    /// Datagrams the server answered in the window, by its own count.
    pub(super) answered: Option<u64>,
    stat: Option<(StatSnapshot, StatSnapshot)>,
    pub(super) thread: Option<ThreadCost>,
    /// Processes other than the bench and the server that used CPU during the run.
    pub(super) others: Vec<(String, f64)>,
}

impl<'a> Bench<'a> {
    /// A fresh test bed with the generator on its client end.
    pub(super) fn open(
        s: &'a Settings,
        opts: &Options,
        stop: &'a AtomicBool,
        planned_secs: u64,
        label: &str,
    ) -> anyhow::Result<Self> {
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
        Ok(Self {
            cores: s.cores(),
            progress: Progress::new(planned_secs, label),
            pair,
            generator,
            s,
            stop,
        })
    }
}

impl Bench<'_> {
    /// What the generator offers with nothing answering: its own limit.
    pub(super) fn generator_alone(&mut self) -> anyhow::Result<Trial> {
        self.progress.bar.set_message("the generator alone");
        let (alone, _) = self.load(
            &LoadPlan {
                rate: None,
                duration: SWEEP_WINDOW * 2,
                warmup: SWEEP_WARMUP,
                cpu: Some(self.cores.client),
                pacing: Pacing::Spin,
            },
            None,
        )?;
        Ok(Trial::new(None, &alone))
    }

    /// Each system's limit, with its latency runs into `runs` and `series`.
    pub(super) fn capacities(
        &mut self,
        runs: &mut Vec<RunReport>,
        series: &mut Vec<Series>,
    ) -> anyhow::Result<Vec<SystemCapacity>> {
        SYSTEMS
            .into_iter()
            .map(|system| self.capacity(system, runs, series))
            .collect()
    }

    /// CPU per request at `rate`: fastpath idling each way, the kernel, the ceiling.
    pub(super) fn cpu_rows(&mut self, rate: u64) -> anyhow::Result<Vec<CpuRow>> {
        [
            (System::Fastpath, Some("poll")),
            (System::Fastpath, Some("hybrid")),
            (System::Fastpath, Some("busy")),
            (System::Kernel, None),
            (System::Ceiling, Some("poll")),
        ]
        .into_iter()
        .map(|(system, idle)| self.cpu_row(system, idle, rate))
        .collect()
    }

    /// Cycles per request under flood: fastpath, the kernel, the ceiling.
    pub(super) fn cycles_rows(&mut self) -> anyhow::Result<Vec<CyclesRow>> {
        [
            (System::Fastpath, Some("poll")),
            (System::Kernel, None),
            (System::Ceiling, Some("poll")),
        ]
        .into_iter()
        .map(|(system, idle)| self.cycles_row(system, idle))
        .collect()
    }

    /// Runs the generator on a thread pinned to the client core, showing progress; when
    /// `watch` names a server thread (pid, tid), its CPU is counted over the window.
    pub(super) fn load(
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

    pub(super) fn start(&self, system: System, idle: Option<&str>) -> anyhow::Result<Server> {
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
    pub(super) fn server_thread(system: System, server: &Server) -> Option<Watch<'_>> {
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

pub(super) fn busy_of(window: &Window) -> BusyTime {
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

#[cfg(test)]
mod tests {
    use super::*;

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
