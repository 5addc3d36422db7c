//! Scenarios: a server pair (fastpath and a kernel-stack server doing the same work, or the
//! AF_XDP ceiling), a client, and a report. Each system runs on the same veth pair in the
//! same run, one after the other, alternating A B A B across rounds, with the same client
//! and settings. TCP and HTTP scenarios plug in as more `System`s and `Client`s;
//! `udp-capacity` has its own steps (`capacity`). The kinds, the settings and the servers
//! are `udp`'s, which both share.
//!
//! `run` reads as its steps: the rounds (each system measured by each client), the
//! client's own capacity (ceiling), then the summary, the ratios and the goals.

use std::{
    collections::BTreeMap,
    net::UdpSocket,
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

pub use crate::udp::{ScenarioKind, Settings};
use crate::{
    generator::{self, LoadSpec, Pattern},
    machine::{Cores, CpuSampler, Machine},
    netns::{CLIENT_ADDR, SERVER_ADDR, VethConfig, VethPair},
    progress::Progress,
    report::{self, Goal, Ratio, Report, RunReport, Series, SeriesSummary},
    sockperf,
    udp::{PORT, System, client_socket, start_server},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Sockperf,
    Harness,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Sockperf => "sockperf",
            Client::Harness => "harness",
        }
    }
}

/// A port nothing serves, for the client's send-only capacity.
const DISCARD_PORT: u16 = 9;

fn plans(kind: ScenarioKind, s: &Settings) -> Vec<(Client, Vec<System>)> {
    let plans = base_plans(kind);
    if s.with_capture {
        // Capture mode: fastpath alone, then fastpath while a capture copies every frame.
        return plans
            .into_iter()
            .map(|(c, _)| (c, vec![System::Fastpath, System::FastpathCapturing]))
            .collect();
    }
    if s.baseline_bin.is_none() {
        return plans
            .into_iter()
            .map(|(c, sys)| (c, sys.to_vec()))
            .collect();
    }
    // Regression mode: old, new for each of fastpath's systems; the kernel sits out.
    plans
        .into_iter()
        .map(|(client, systems)| {
            let systems = systems
                .iter()
                .filter_map(|sys| sys.baseline().map(|old| [old, *sys]))
                .flatten()
                .collect();
            (client, systems)
        })
        .collect()
}

/// (numerator, denominator) of the scenario's ratios.
fn ratio_pairs(kind: ScenarioKind, s: &Settings) -> Vec<(&'static str, &'static str)> {
    if s.with_capture {
        return vec![("fastpath+capture", "fastpath")];
    }
    if s.baseline_bin.is_some() {
        return base_plans(kind)
            .iter()
            .flat_map(|(_, systems)| systems.iter())
            .filter_map(|sys| sys.baseline().map(|old| (sys.name(), old.name())))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
    }
    match kind {
        ScenarioKind::Ceiling => vec![("fastpath", "ceiling")],
        _ => vec![("fastpath", "kernel")],
    }
}

fn base_plans(kind: ScenarioKind) -> Vec<(Client, [System; 2])> {
    match kind {
        ScenarioKind::UdpPingpong => vec![
            (Client::Sockperf, [System::Fastpath, System::Kernel]),
            (Client::Harness, [System::Fastpath, System::Kernel]),
        ],
        ScenarioKind::UdpFlood => vec![(Client::Harness, [System::Fastpath, System::Kernel])],
        ScenarioKind::Ceiling => vec![(Client::Harness, [System::Ceiling, System::Fastpath])],
        // Its own steps (`capacity::run`), with the AF_XDP generator.
        ScenarioKind::UdpCapacity => Vec::new(),
    }
}

/// Seconds the scenario will take, roughly (for the progress bar and the time bound).
pub fn planned_secs(kind: ScenarioKind, s: &Settings) -> u64 {
    if kind == ScenarioKind::UdpCapacity {
        return crate::capacity::planned_secs(s);
    }
    let runs: u64 = plans(kind, s)
        .iter()
        .map(|(_, systems)| systems.len() as u64)
        .sum();
    let extra = if kind == ScenarioKind::Ceiling {
        s.duration_secs
    } else {
        0
    };
    runs * u64::from(s.rounds) * (s.duration_secs + 1) + extra
}

fn harness_pattern(kind: ScenarioKind, s: &Settings) -> Pattern {
    match (s.rate, kind) {
        (Some(rate), _) => Pattern::Open { rate },
        (None, ScenarioKind::UdpPingpong) => Pattern::Closed { outstanding: 1 },
        (None, _) => Pattern::Closed {
            outstanding: s.outstanding,
        },
    }
}

/// What one client measured of one system in one round.
struct Measurement {
    histogram: Histogram<u64>,
    sent: u64,
    received: u64,
    lost: u64,
    elapsed: Duration,
    /// The client's own CPU seconds, where it can tell.
    client_cpu: Option<f64>,
}

/// Everything the rounds recorded, for the summary.
#[derive(Default)]
struct Rounds {
    runs: Vec<RunReport>,
    series: BTreeMap<(&'static str, &'static str), Series>,
    notes: Vec<String>,
}

/// Runs one scenario, writes its report into `s.out`, and returns the report and table.
pub fn run(
    kind: ScenarioKind,
    s: &Settings,
    stop: &AtomicBool,
) -> anyhow::Result<(Report, String)> {
    if kind == ScenarioKind::UdpCapacity {
        return crate::capacity::run(s, &crate::capacity::Options::default(), stop);
    }
    if plans(kind, s).iter().any(|(c, _)| *c == Client::Sockperf) {
        sockperf::require()?;
    }
    let pair = VethPair::create(VethConfig {
        queues: s.queues,
        mtu: s.mtu,
        peer_tx_checksum: s.peer_tx_checksum,
    })?;
    let cores = s.cores();
    let mut progress = Progress::new(planned_secs(kind, s), kind.name());
    let mut rounds = Rounds::default();
    for round in 0..s.rounds {
        run_round(
            &pair,
            kind,
            s,
            &cores,
            round,
            stop,
            &mut progress,
            &mut rounds,
        )?;
    }
    if kind == ScenarioKind::Ceiling {
        let note = client_capacity(&pair, s, &cores, stop)?;
        progress.advance(Duration::from_secs(s.duration_secs));
        rounds.notes.push(note);
    }
    progress.bar.finish_and_clear();

    let series: Vec<Series> = rounds.series.into_values().collect();
    let summary = report::summarize(kind.name(), &series);
    let ratios = ratios(kind, s, &summary);
    let goals = goals(kind, s, &summary, &ratios);
    let mut notes = rounds.notes;
    if cores.server == cores.client {
        notes.push("one core only: server and client share it".into());
    }
    let mut report = Report {
        scenario: kind.name().into(),
        command: s.command.clone(),
        machine: Machine::read(s.queues, s.mtu, s.peer_tx_checksum),
        settings: serde_json::to_value(s)?,
        runs: rounds.runs,
        summary,
        ratios,
        goals,
        notes,
    };
    let table = report::write_all(&s.out, &mut report, &series)?;
    drop(pair);
    Ok((report, table))
}

/// One round: every system of the plan, measured by each client in turn.
#[expect(
    clippy::too_many_arguments,
    reason = "the round's whole context, passed once from `run`"
)]
fn run_round(
    pair: &VethPair,
    kind: ScenarioKind,
    s: &Settings,
    cores: &Cores,
    round: u32,
    stop: &AtomicBool,
    progress: &mut Progress,
    rounds: &mut Rounds,
) -> anyhow::Result<()> {
    for (client, systems) in plans(kind, s) {
        for system in systems {
            progress.bar.set_message(format!(
                "{} ← {} (round {})",
                system.name(),
                client.name(),
                round + 1
            ));
            let mut server = start_server(pair, kind, system, s, cores.server)?;
            let sampler = CpuSampler::start(server.pid());
            let started = Instant::now();
            let m = match client {
                Client::Harness => measure_harness(pair, kind, s, cores, stop, progress, started)?,
                Client::Sockperf => {
                    measure_sockperf(pair, system, s, cores, round, stop, progress, started)?
                }
            };
            let cpu = sampler.finish(m.client_cpu, Some(cores.server), Some(cores.client));
            if let Some(summary) = server.capture_summary() {
                rounds
                    .notes
                    .push(format!("round {}: the capture {summary}", round + 1));
            }
            drop(server);
            progress.advance(Duration::from_secs(s.duration_secs + 1));
            let rate = m.received as f64 / m.elapsed.as_secs_f64().max(1e-9);
            rounds.runs.push(RunReport {
                system: system.name().into(),
                client: client.name().into(),
                round,
                rate_pps: rate,
                send_rate_pps: m.sent as f64 / m.elapsed.as_secs_f64().max(1e-9),
                sent: m.sent,
                received: m.received,
                lost: m.lost,
                duration_secs: m.elapsed.as_secs_f64(),
                samples: m.histogram.len(),
                percentiles_us: report::percentiles_us(&m.histogram),
                cpu,
            });
            rounds
                .series
                .entry((client.name(), system.name()))
                .or_insert_with(|| Series::new(system.name(), client.name()))
                .add_round(m.histogram, m.elapsed, rate);
        }
    }
    Ok(())
}

/// The harness's generator against the running server, on a thread pinned to the client core.
fn measure_harness(
    pair: &VethPair,
    kind: ScenarioKind,
    s: &Settings,
    cores: &Cores,
    stop: &AtomicBool,
    progress: &Progress,
    started: Instant,
) -> anyhow::Result<Measurement> {
    let socket = client_socket(pair)?;
    let spec = LoadSpec {
        pattern: harness_pattern(kind, s),
        duration: Duration::from_secs(s.duration_secs),
        warmup: Duration::from_millis((s.duration_secs * 1000 / 5).min(1000)),
        max_packets: 50_000_000,
        payload: s.payload,
        cpu: Some(cores.client),
    };
    let result = std::thread::scope(|scope| {
        let handle = scope.spawn(|| generator::run(&socket, &spec, stop));
        while !handle.is_finished() {
            progress.during(started);
            std::thread::sleep(Duration::from_millis(100));
        }
        handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })?;
    Ok(Measurement {
        client_cpu: Some(result.cpu_time.as_secs_f64()),
        histogram: result.histogram,
        sent: result.sent,
        received: result.received,
        lost: result.lost,
        elapsed: result.elapsed,
    })
}

/// `sockperf ping-pong` against the running server; its full log is read and removed.
#[expect(
    clippy::too_many_arguments,
    reason = "the round's context, as for the harness's client"
)]
fn measure_sockperf(
    pair: &VethPair,
    system: System,
    s: &Settings,
    cores: &Cores,
    round: u32,
    stop: &AtomicBool,
    progress: &Progress,
    started: Instant,
) -> anyhow::Result<Measurement> {
    let log = s
        .out
        .join(format!("sockperf-{}-round{}.csv", system.name(), round));
    std::fs::create_dir_all(&s.out)?;
    let run = sockperf::PingPong {
        port: PORT,
        seconds: s.duration_secs,
        payload: s.payload,
        cpu: cores.client,
        log: &log,
    };
    let r = sockperf::ping_pong(pair, &run, stop, &mut || progress.during(started))?;
    let _ = std::fs::remove_file(&log);
    Ok(Measurement {
        histogram: r.histogram,
        sent: r.sent,
        received: r.received,
        lost: r.lost,
        elapsed: r.duration,
        client_cpu: r.cpu_secs,
    })
}

/// How fast the client alone can generate: send-only to a port nobody serves. A note for
/// the ceiling's report.
fn client_capacity(
    pair: &VethPair,
    s: &Settings,
    cores: &Cores,
    stop: &AtomicBool,
) -> anyhow::Result<String> {
    let socket = VethPair::in_netns(&pair.client, || -> anyhow::Result<UdpSocket> {
        let sock = UdpSocket::bind((CLIENT_ADDR, 0))?;
        sock.connect((SERVER_ADDR, DISCARD_PORT))?;
        Ok(sock)
    })?;
    let spec = LoadSpec {
        pattern: Pattern::SendOnly,
        duration: Duration::from_secs(s.duration_secs),
        warmup: Duration::ZERO,
        max_packets: 100_000_000,
        payload: s.payload,
        cpu: Some(cores.client),
    };
    let sampler = CpuSampler::start(None);
    // On its own thread: the generator pins the thread it runs on.
    let r = std::thread::scope(|scope| {
        scope
            .spawn(|| generator::run(&socket, &spec, stop))
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })?;
    let cpu = sampler.finish(Some(r.cpu_time.as_secs_f64()), None, Some(cores.client));
    Ok(format!(
        "the client alone generates {:.0} datagrams/s (send-only to a port nothing serves, so the kernel drops them on the client's core; client core {:.0}% busy)",
        r.send_rate(),
        cpu.cores.get(&cores.client).copied().unwrap_or(0.0)
    ))
}

/// numerator ÷ denominator for the rate and each percentile, per client.
fn ratios(kind: ScenarioKind, s: &Settings, summary: &[SeriesSummary]) -> Vec<Ratio> {
    let mut ratios = Vec::new();
    for (client, _) in plans(kind, s) {
        for (numerator, denominator) in ratio_pairs(kind, s) {
            ratios.extend(Ratio::between(
                summary,
                client.name(),
                numerator,
                denominator,
            ));
        }
    }
    ratios
}

/// The scenario's goals, from its ratios (and, in regression mode, the 5 % bound).
fn goals(
    kind: ScenarioKind,
    s: &Settings,
    summary: &[SeriesSummary],
    ratios: &[Ratio],
) -> Vec<Goal> {
    let ratio = |client: &str, key: &str| {
        ratios
            .iter()
            .find(|r| r.client == client)
            .and_then(|r| r.values.get(key).copied())
    };
    let mut goals = Vec::new();
    if s.baseline_bin.is_some() {
        // A change to the data path may cost at most 5 % of the rate it had.
        for r in ratios {
            if let Some(&v) = r.values.get("rate") {
                let name = format!(
                    "{} rate, {}/{} ({})",
                    r.numerator, r.numerator, r.denominator, r.client
                );
                goals.push(Goal::new(name, v, ">= 0.95", v >= 0.95));
            }
        }
        return goals;
    }
    if s.with_capture {
        return goals;
    }
    match kind {
        ScenarioKind::UdpPingpong => {
            if let Some(v) = ratio("sockperf", "p99") {
                let name = "sockperf p99 half-RTT, fastpath/kernel";
                goals.push(Goal::new(name, v, "<= 0.35", v <= 0.35));
            }
            if let Some(v) = ratio("sockperf", "p99.9") {
                let name = "sockperf p99.9 half-RTT, fastpath/kernel";
                goals.push(Goal::new(name, v, "<= 0.50", v <= 0.5));
            }
            if let (Some(h), Some(sp)) = (
                report::find(summary, "harness", "kernel"),
                report::find(summary, "sockperf", "kernel"),
            ) {
                let v = h.percentiles_us["p50"] / sp.percentiles_us["p50"].max(1e-9);
                let name = "harness p50 / sockperf p50 against the same kernel server (agreement)";
                goals.push(Goal::new(name, v, "0.80 to 1.20", (0.8..=1.2).contains(&v)));
            }
        }
        ScenarioKind::UdpFlood => {
            if let Some(v) = ratio("harness", "rate") {
                goals.push(Goal::new(
                    "UDP echo rate, fastpath/kernel",
                    v,
                    ">= 2.5",
                    v >= 2.5,
                ));
            }
        }
        ScenarioKind::Ceiling => {
            if let Some(v) = ratio("harness", "rate") {
                goals.push(Goal::new(
                    "UDP echo rate, fastpath/ceiling",
                    v,
                    ">= 0.8",
                    v >= 0.8,
                ));
            }
        }
        ScenarioKind::UdpCapacity => {}
    }
    goals
}
