//! Scenarios: a server pair (fastpath and a kernel-stack server doing the same work, or the
//! AF_XDP ceiling), a client, and a report. Each system runs on the same veth pair in the
//! same run, one after the other, alternating A B A B across rounds, with the same client
//! and settings. TCP and HTTP scenarios plug in as more `System`s and `Client`s;
//! `udp-capacity` has its own steps (`capacity`).
//!
//! `run` reads as its steps: the rounds (each system measured by each client), the
//! client's own capacity (ceiling), then the summary, the ratios and the goals.

use std::{
    collections::BTreeMap,
    net::UdpSocket,
    path::PathBuf,
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    generator::{self, LoadSpec, Pattern},
    machine::{CpuSampler, Machine, online_cores},
    netns::{CLIENT_ADDR, SERVER_ADDR, VethConfig, VethPair, netns_command},
    process::{ChildGuard, FastpathProcess, sibling_binary},
    report::{self, Goal, Ratio, Report, RunReport, Series, SeriesSummary},
    sockperf,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioKind {
    /// Latency: one request outstanding; sockperf ping-pong and the harness's generator.
    UdpPingpong,
    /// Throughput: many requests outstanding (or --rate); packets per second.
    UdpFlood,
    /// The physical limit: a bare AF_XDP bounce with no stack, against fastpath.
    Ceiling,
    /// Each server's own limit with the AF_XDP generator, and its CPU cost per request.
    UdpCapacity,
}

impl ScenarioKind {
    pub const ALL: [ScenarioKind; 4] = [
        ScenarioKind::UdpPingpong,
        ScenarioKind::UdpFlood,
        ScenarioKind::Ceiling,
        ScenarioKind::UdpCapacity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::UdpPingpong => "udp-pingpong",
            ScenarioKind::UdpFlood => "udp-flood",
            ScenarioKind::Ceiling => "ceiling",
            ScenarioKind::UdpCapacity => "udp-capacity",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum System {
    Fastpath,
    Kernel,
    Ceiling,
    /// fastpath from the `--baseline-bin` binary (an earlier build), for a regression check.
    FastpathBaseline,
    /// The ceiling from the `--baseline-bin` binary.
    CeilingBaseline,
    /// fastpath while `fastpath capture` copies every frame of the flow (`--with-capture`).
    FastpathCapturing,
}

impl System {
    pub(crate) fn name(self) -> &'static str {
        match self {
            System::Fastpath => "fastpath",
            System::Kernel => "kernel",
            System::Ceiling => "ceiling",
            System::FastpathBaseline => "fastpath@baseline",
            System::CeilingBaseline => "ceiling@baseline",
            System::FastpathCapturing => "fastpath+capture",
        }
    }

    /// The same system run from the baseline binary, for systems that are fastpath's.
    fn baseline(self) -> Option<System> {
        match self {
            System::Fastpath => Some(System::FastpathBaseline),
            System::Ceiling => Some(System::CeilingBaseline),
            _ => None,
        }
    }
}

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

#[derive(Clone, Debug, serde::Serialize)]
pub struct Settings {
    pub duration_secs: u64,
    pub rate: Option<u64>,
    pub rounds: u32,
    pub payload: usize,
    pub queues: u32,
    pub mtu: u32,
    pub peer_tx_checksum: bool,
    pub outstanding: u32,
    pub fastpath_args: Vec<String>,
    pub server_core: Option<usize>,
    pub client_core: Option<usize>,
    /// Compare against this (earlier) fastpath binary instead of the kernel: each of
    /// fastpath's systems runs from it and from the current one, alternating old, new.
    pub baseline_bin: Option<PathBuf>,
    /// Run fastpath with and without `fastpath capture` copying the flow, alternating.
    pub with_capture: bool,
    #[serde(skip)]
    pub out: PathBuf,
    pub command: String,
}

pub(crate) const PORT: u16 = 11111;
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

pub(crate) struct Cores {
    pub(crate) server: usize,
    pub(crate) client: usize,
}

pub(crate) fn cores(s: &Settings) -> Cores {
    let (server, client) = if online_cores() >= 2 { (1, 0) } else { (0, 0) };
    Cores {
        server: s.server_core.unwrap_or(server),
        client: s.client_core.unwrap_or(client),
    }
}

pub(crate) enum Server {
    Fastpath(FastpathProcess),
    Child(ChildGuard),
    /// fastpath, and a `fastpath capture` child whose report goes to `report`.
    Capturing(FastpathProcess, ChildGuard, PathBuf),
}

impl Server {
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Server::Fastpath(p) | Server::Capturing(p, _, _) => p.pid(),
            Server::Child(c) => c.pid(),
        }
    }

    /// Datagrams the server has answered so far, by its own count: fastpath's workers'
    /// TX (from its control socket), or the kernel's UDP `OutDatagrams` in the server's
    /// namespace (the kernel echo is the only UDP sender there).
    pub(crate) fn answered(&self) -> Option<u64> {
        match self {
            Server::Fastpath(p) | Server::Capturing(p, _, _) => {
                let stats = crate::process::request(p.control(), "stats").ok()?;
                stats["queues"]
                    .as_array()?
                    .iter()
                    .map(|q| q["tx"].as_u64())
                    .sum()
            }
            Server::Child(c) => {
                let snmp = std::fs::read_to_string(format!("/proc/{}/net/snmp", c.pid()?)).ok()?;
                udp_out_datagrams(&snmp)
            }
        }
    }

    /// What the capture reported when it ended (it runs for the measurement and a second
    /// more), for the report's notes.
    fn capture_summary(&mut self) -> Option<String> {
        let Server::Capturing(_, child, report) = self else {
            return None;
        };
        let start = Instant::now();
        while !child.exited() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&*report).unwrap_or_default();
        let _ = std::fs::remove_file(&*report);
        text.lines()
            .find(|l| l.contains("captured"))
            .map(|l| l.trim_start_matches("fastpath: ").to_string())
    }
}

pub(crate) fn start_server(
    pair: &VethPair,
    kind: ScenarioKind,
    system: System,
    s: &Settings,
    cpu: usize,
) -> anyhow::Result<Server> {
    let port = PORT.to_string();
    let cpu_arg = cpu.to_string();
    let queues = s.queues.to_string();
    // fastpath's subcommand and extra flags for the systems it plays.
    let fastpath = match (kind, system) {
        (
            ScenarioKind::UdpPingpong,
            System::Fastpath | System::FastpathBaseline | System::FastpathCapturing,
        ) => Some(("echo", Some("--sockperf"))),
        (_, System::Fastpath | System::FastpathBaseline | System::FastpathCapturing) => {
            Some(("echo", None))
        }
        (_, System::Ceiling | System::CeilingBaseline) => Some(("reflect", None)),
        (_, System::Kernel) => None,
    };
    let binary = match system {
        System::FastpathBaseline | System::CeilingBaseline => s.baseline_bin.clone(),
        _ => None,
    };
    let server = match (kind, system, fastpath) {
        (_, _, Some((command, flag))) => {
            let mut args = vec![
                "--udp",
                port.as_str(),
                "--cpus",
                cpu_arg.as_str(),
                "--queues",
                queues.as_str(),
            ];
            args.extend(flag);
            args.extend(s.fastpath_args.iter().map(String::as_str));
            let process = match binary {
                Some(bin) => FastpathProcess::start_binary(&bin, pair, command, &args)?,
                None => FastpathProcess::start(pair, command, &args)?,
            };
            if system == System::FastpathCapturing {
                let (child, report) = start_capture(&process, s)?;
                Server::Capturing(process, child, report)
            } else {
                Server::Fastpath(process)
            }
        }
        (ScenarioKind::UdpPingpong, _, None) => {
            Server::Child(sockperf::start_server(pair, PORT, cpu)?)
        }
        (_, _, None) => {
            let me = sibling_binary("fastpath-bench")?;
            let child = netns_command(&pair.server.netns, me.to_str().context("non-UTF-8 path")?)
                .args([
                    "kernel-echo",
                    "--addr",
                    &SERVER_ADDR.to_string(),
                    "--port",
                    &port,
                    "--cpu",
                    &cpu_arg,
                ])
                .args(["--limit", &(s.duration_secs * 4 + 300).to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .context("starting the kernel echo server")?;
            Server::Child(ChildGuard::new("kernel-echo", child))
        }
    };
    probe(pair)?;
    Ok(server)
}

/// `Udp: … OutDatagrams …` of a `/proc/net/snmp` text: the header line names the fields,
/// the next line holds their values.
pub(crate) fn udp_out_datagrams(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let at = names.split_whitespace().position(|n| n == "OutDatagrams")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// `fastpath capture` of the bench port into /dev/null, for the measurement and a second
/// more; its report (frames copied, frames the ring had no room for) goes to a file.
fn start_capture(process: &FastpathProcess, s: &Settings) -> anyhow::Result<(ChildGuard, PathBuf)> {
    let report = std::env::temp_dir().join(format!(
        "fastpath-capture-{}-{}.txt",
        std::process::id(),
        process.pid().unwrap_or_default()
    ));
    let child = std::process::Command::new(crate::process::fastpath_binary()?)
        .arg("capture")
        .arg("--control")
        .arg(process.control())
        .args(["--port", &PORT.to_string()])
        .args(["--duration", &(s.duration_secs + 1).to_string()])
        .args(["-w", "/dev/null"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&report)?)
        .spawn()
        .context("starting fastpath capture")?;
    let guard = ChildGuard::new("fastpath capture", child);
    // Until it says it is capturing (its first line), bounded.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5)
        && !std::fs::read_to_string(&report).is_ok_and(|t| t.contains("capturing"))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((guard, report))
}

/// Waits until the server answers a sockperf-format ping.
fn probe(pair: &VethPair) -> anyhow::Result<()> {
    let socket = client_socket(pair)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut msg = [0u8; 64];
    msg[8..10].copy_from_slice(&0x0003u16.to_be_bytes());
    msg[10..14].copy_from_slice(&64u32.to_be_bytes());
    let start = Instant::now();
    let mut buf = [0u8; 128];
    while start.elapsed() < Duration::from_secs(10) {
        let _ = socket.send(&msg);
        if socket.recv(&mut buf).is_ok() {
            return Ok(());
        }
    }
    bail!("the server did not answer within 10 s")
}

fn client_socket(pair: &VethPair) -> anyhow::Result<UdpSocket> {
    VethPair::in_netns(&pair.client, || -> anyhow::Result<UdpSocket> {
        let s = UdpSocket::bind((CLIENT_ADDR, 0))?;
        s.connect((SERVER_ADDR, PORT))?;
        Ok(s)
    })
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

pub(crate) struct Progress {
    pub(crate) bar: ProgressBar,
    done_ms: u64,
}

impl Progress {
    pub(crate) fn new(total_secs: u64, label: &str) -> Self {
        let bar = ProgressBar::new(total_secs * 1000);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:40}] {msg} ({elapsed} of ~{duration})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(label.to_string());
        Self { bar, done_ms: 0 }
    }

    pub(crate) fn during(&self, since: Instant) {
        self.bar
            .set_position(self.done_ms + since.elapsed().as_millis() as u64);
    }

    /// A step of `planned` is over (whatever it really took).
    pub(crate) fn advance(&mut self, planned: Duration) {
        self.done_ms += planned.as_millis() as u64;
        self.bar.set_position(self.done_ms);
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
    let cores = cores(s);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_out_datagrams_is_read_by_its_name() {
        let snmp = "\
Ip: Forwarding DefaultTTL\n\
Ip: 1 64\n\
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\n\
Udp: 1000 3 0 998 2\n\
UdpLite: InDatagrams NoPorts InErrors OutDatagrams\n\
UdpLite: 0 0 0 0\n";
        assert_eq!(udp_out_datagrams(snmp), Some(998));
        assert_eq!(udp_out_datagrams("Ip: 1\n"), None);
    }
}
