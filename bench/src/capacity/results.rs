//! What `udp-capacity` finds — each system's limit and sweep, CPU and cycles per request —
//! its goals, and its sweeps as load curves for the plot.

use serde::{Deserialize, Serialize};

use super::{FIRST_RATE, LOSS_THRESHOLD};
use crate::{
    cpu::{BusyTime, ThreadCost},
    report::{self, Goal, LoadCurve, LoadPoint},
    xdp_gen::XdpLoadResult,
};

/// One run of the generator at one offered rate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Trial {
    /// The rate asked for; None: as fast as the rings allow.
    pub rate: Option<u64>,
    pub offered: u64,
    pub sent: u64,
    pub received: u64,
    /// Sent and never answered.
    pub lost: u64,
    /// Scheduled and never sent (the generator fell behind).
    pub unsent: u64,
    pub duplicates: u64,
    /// Dropped by the generator's own socket (its loss, not the server's).
    pub generator_rx_dropped: u64,
    /// (offered − received) ÷ offered.
    pub loss: f64,
    pub duration_secs: f64,
    pub offered_pps: f64,
    pub send_pps: f64,
    pub receive_pps: f64,
    /// Round-trip percentiles in µs from the intended send time, and the max.
    pub percentiles_us: std::collections::BTreeMap<String, f64>,
    /// CPU seconds of the generator's thread over the window.
    pub generator_cpu_secs: f64,
}

impl Trial {
    pub(super) fn new(rate: Option<u64>, r: &XdpLoadResult) -> Self {
        Self {
            rate,
            offered: r.offered,
            sent: r.sent,
            received: r.received,
            lost: r.lost(),
            unsent: r.unsent(),
            duplicates: r.duplicates,
            generator_rx_dropped: r.generator_rx_dropped,
            loss: r.loss(),
            duration_secs: r.elapsed.as_secs_f64(),
            offered_pps: r.offered_rate(),
            send_pps: r.send_rate(),
            receive_pps: r.receive_rate(),
            percentiles_us: report::percentiles_us(&r.histogram),
            generator_cpu_secs: r.cpu_time.as_secs_f64(),
        }
    }

    pub fn loss_free(&self) -> bool {
        self.offered > 0 && self.loss <= LOSS_THRESHOLD
    }

    pub(super) fn p(&self, key: &str) -> f64 {
        self.percentiles_us.get(key).copied().unwrap_or(f64::NAN)
    }
}

/// One system's limit and the trials that found it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SystemCapacity {
    pub system: String,
    /// The highest offered rate with at most 0.1 % loss (0: not even the lowest).
    pub loss_free_pps: u64,
    /// Every trial of the sweep, in the order run.
    pub trials: Vec<Trial>,
    pub at_50: Option<Trial>,
    pub at_90: Option<Trial>,
}

/// CPU per answer at one fixed offered rate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CpuRow {
    pub system: String,
    /// fastpath's idle strategy; "-" for the kernel.
    pub idle: String,
    pub trial: Trial,
    /// Busy time of every core over the window.
    pub busy: BusyTime,
    /// Busy CPU of all cores ÷ answers.
    pub ns_per_request: Option<f64>,
    /// The server's thread (fastpath's worker, the kernel echo's only thread).
    pub server_thread: Option<ThreadCost>,
    pub server_user_cycles_per_request: Option<f64>,
    /// Other processes that used CPU during the run (counted in `busy` too when in the
    /// window), seconds by name, most first.
    pub other_tasks: Vec<(String, f64)>,
}

/// User-space cycles per answer of the server's thread, under flood.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CyclesRow {
    pub system: String,
    pub idle: String,
    pub trial: Trial,
    /// Datagrams the server answered in the window, by its own count (the per-request
    /// figures divide by this when known, else by the replies the generator received).
    pub answered_by_server: Option<u64>,
    pub busy: BusyTime,
    pub server_thread: Option<ThreadCost>,
    pub user_cycles_per_request: Option<f64>,
    /// User and system time of the server's thread, as cycles at the TSC rate, per answer.
    pub thread_cycles_per_request: Option<f64>,
    /// Busy time of every core, as cycles at the TSC rate, per answer.
    pub all_cores_cycles_per_request: Option<f64>,
    pub other_tasks: Vec<(String, f64)>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CapacityReport {
    pub loss_threshold: f64,
    pub flows: u16,
    /// The generator alone, as fast as it can, with nothing answering: what it can offer.
    pub generator_alone: Option<Trial>,
    pub systems: Vec<SystemCapacity>,
    pub cpu_rate_pps: u64,
    pub cpu: Vec<CpuRow>,
    pub cycles: Vec<CyclesRow>,
    pub cycles_method: String,
    pub tsc_hz: Option<f64>,
}

/// Per system, its sweep's points sorted by offered rate: at a rate tried twice, the
/// better trial (as the sweep judged it).
pub(super) fn load_curves(c: &CapacityReport) -> Vec<LoadCurve> {
    c.systems
        .iter()
        .map(|sys| {
            let mut best: std::collections::BTreeMap<u64, &Trial> = Default::default();
            for t in &sys.trials {
                let rate = t.rate.unwrap_or(t.offered_pps as u64);
                let better = best.get(&rate).is_none_or(|b| t.loss < b.loss);
                if better {
                    best.insert(rate, t);
                }
            }
            let points = best
                .values()
                .map(|t| LoadPoint {
                    offered_pps: t.offered_pps,
                    loss: t.loss,
                    p99_us: t.p("p99"),
                })
                .collect();
            LoadCurve {
                name: sys.system.clone(),
                points,
            }
        })
        .collect()
}

fn find_system<'a>(c: &'a CapacityReport, name: &str) -> Option<&'a SystemCapacity> {
    c.systems.iter().find(|s| s.system == name)
}

fn find_cpu<'a>(c: &'a CapacityReport, system: &str, idle: &str) -> Option<&'a CpuRow> {
    c.cpu.iter().find(|r| r.system == system && r.idle == idle)
}

/// The goals, and the generator's checks of itself.
pub fn goals(c: &CapacityReport) -> Vec<Goal> {
    let mut goals = Vec::new();
    let rate = |name| find_system(c, name).map(|s| s.loss_free_pps as f64);
    if let (Some(fp), Some(k)) = (rate("fastpath"), rate("kernel")) {
        let v = fp / k.max(1.0);
        let name = "loss-free UDP echo rate (<= 0.1 % loss), fastpath/kernel";
        goals.push(Goal::new(name, v, ">= 2.5", v >= 2.5));
    }
    let ns = |system, idle| find_cpu(c, system, idle).and_then(|r| r.ns_per_request);
    if let (Some(fp), Some(k)) = (ns("fastpath", "poll"), ns("kernel", "-")) {
        let v = fp / k;
        let name = "CPU per request (all cores), fastpath --idle poll/kernel";
        goals.push(Goal::new(name, v, "<= 0.5", v <= 0.5));
    }
    if let (Some(fp), Some(ceil)) = (rate("fastpath"), rate("ceiling")) {
        let v = fp / ceil.max(1.0);
        let name = "loss-free UDP echo rate, fastpath/ceiling";
        goals.push(Goal::new(name, v, ">= 0.8", v >= 0.8));
    }
    if let Some(v) = c
        .cycles
        .iter()
        .find(|r| r.system == "fastpath")
        .and_then(|r| r.user_cycles_per_request)
    {
        let name = "fastpath worker's user-space cycles per request, under flood";
        goals.push(Goal::new(name, v, "<= 250", v <= 250.0));
    }
    // The generator against its own accuracy: the ceiling at FIRST_RATE.
    if let Some(t) =
        find_system(c, "ceiling").and_then(|s| s.trials.iter().find(|t| t.rate == Some(FIRST_RATE)))
    {
        let asked = FIRST_RATE as f64;
        let worst = (t.send_pps / asked - 1.0)
            .abs()
            .max((t.receive_pps / asked - 1.0).abs());
        let name = "generator accuracy against the ceiling at 100k/s: worst of |sent/s, received/s ÷ 100k − 1| (and zero loss)";
        goals.push(Goal::new(
            name,
            worst,
            "<= 0.01, loss 0",
            worst <= 0.01 && t.loss == 0.0,
        ));
    }
    if let (Some(busy), Some(poll)) = (ns("fastpath", "busy"), ns("fastpath", "poll")) {
        let v = busy / poll;
        let name = "CPU per request moves with spinning: fastpath --idle busy/poll";
        goals.push(Goal::new(name, v, "> 1", v > 1.0));
    }
    goals
}
