//! The rounds of a scenario: each system of the plan started, measured by each client in
//! turn (the harness's generator or sockperf), and recorded; and the client's own capacity.

use std::{
    collections::BTreeMap,
    net::UdpSocket,
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use super::{Client, ScenarioKind, Settings, plans};
use crate::{
    generator::{self, LoadSpec, Pattern},
    machine::{Cores, CpuSampler},
    netns::{CLIENT_ADDR, SERVER_ADDR, VethPair},
    progress::Progress,
    report::{self, RunReport, Series},
    sockperf,
    udp::{PORT, System, client_socket, start_server},
};

/// A port nothing serves, for the client's send-only capacity.
const DISCARD_PORT: u16 = 9;

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
pub(super) struct Rounds {
    pub(super) runs: Vec<RunReport>,
    pub(super) series: BTreeMap<(&'static str, &'static str), Series>,
    pub(super) notes: Vec<String>,
}

/// One round: every system of the plan, measured by each client in turn.
#[expect(
    clippy::too_many_arguments,
    reason = "the round's whole context, passed once from `run`"
)]
pub(super) fn run_round(
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
pub(super) fn client_capacity(
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
