//! The TCP scenarios (issue 10): `tcp-rr`, `tcp-crr` and `tcp-bulk`. fastpath's TCP echo
//! (`fastpath echo --tcp`, one worker) and a kernel echo server (`kernel-tcp-echo`, one
//! epoll thread on the same core) run on the same veth pair in one run, alternating
//! A B A B, driven by the harness's TCP generator (`tcp_load`) from the client namespace.
//! The reports are the UDP scenarios' (`report::write_all`), with goals of their own.
//!
//! `setup` sets the pair's offloads and the client's sysctls, `servers` starts the echo
//! servers, `results` reads the summary; `run` measures each system in each round.

mod results;
mod servers;
mod setup;

use std::{
    collections::BTreeMap,
    net::SocketAddrV4,
    path::PathBuf,
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use servers::{Server, settle, start_server};
use setup::{DefaultOffloads, Offloads, client_sysctls};

use crate::{
    machine::{Cores, CpuSampler, CpuUse, Machine},
    netns::{SERVER_ADDR, VethConfig, VethPair},
    process::FastpathProcess,
    progress::Progress,
    report::{self, Report, RunReport, Series},
    tcp_load::{self, TcpLoadResult, TcpLoadSpec, TcpPattern},
};

const PORT: u16 = 11111;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpScenarioKind {
    /// Request/response on long-lived connections.
    Rr,
    /// Connect, request/response, close.
    Crr,
    /// One flow, as many bytes as it carries.
    Bulk,
}

impl TcpScenarioKind {
    pub const ALL: [TcpScenarioKind; 3] = [Self::Rr, Self::Crr, Self::Bulk];

    pub fn name(self) -> &'static str {
        match self {
            Self::Rr => "tcp-rr",
            Self::Crr => "tcp-crr",
            Self::Bulk => "tcp-bulk",
        }
    }

    /// Seconds per measurement when `--duration` is not given: a bulk flow needs longer
    /// to show its steady state (slow start, buffer growth) than a request/response loop.
    pub fn default_duration_secs(self) -> u64 {
        match self {
            Self::Rr | Self::Crr => 5,
            Self::Bulk => 30,
        }
    }
}

/// The TCP scenarios' options (`fastpath-bench tcp-rr --help`).
#[derive(clap::Args, Clone, Debug)]
pub struct TcpArgs {
    /// Folder for the report (default: bench-results/<UTC time>-<scenario>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Seconds per measurement (each system, each round); default 5, 30 for tcp-bulk.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub duration: Option<u64>,
    /// Rounds: each system runs once per round, A B A B.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub rounds: u32,
    /// Request and response bytes (tcp-rr, tcp-crr).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub payload: u64,
    /// tcp-rr: connections, one request outstanding on each; one measurement per count.
    #[arg(long, value_delimiter = ',', default_value = "1,32", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub connections: Vec<u32>,
    /// RX/TX queues of the veth (fastpath serves them all).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    pub queues: u32,
    /// MTU of the veth pair.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(576..=3000))]
    pub mtu: u32,
    /// Core for the server (fastpath's worker or the kernel server); default 1 (0 on one core).
    #[arg(long, value_name = "CORE")]
    pub server_core: Option<usize>,
    /// Core for the client; default 0.
    #[arg(long, value_name = "CORE")]
    pub client_core: Option<usize>,
    /// Extra arguments for the fastpath server, e.g. "--idle busy".
    #[arg(
        long,
        value_name = "ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub fastpath_args: String,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct TcpSettings {
    pub duration_secs: u64,
    pub rounds: u32,
    pub payload: usize,
    pub connections: Vec<u32>,
    pub queues: u32,
    pub mtu: u32,
    pub server_core: Option<usize>,
    pub client_core: Option<usize>,
    pub fastpath_args: Vec<String>,
    #[serde(skip)]
    pub out: PathBuf,
    pub command: String,
}

impl TcpSettings {
    pub fn new(kind: TcpScenarioKind, a: &TcpArgs, out: PathBuf, command: String) -> Self {
        Self {
            duration_secs: a.duration.unwrap_or(kind.default_duration_secs()),
            rounds: a.rounds,
            payload: a.payload as usize,
            connections: a.connections.clone(),
            queues: a.queues,
            mtu: a.mtu,
            server_core: a.server_core,
            client_core: a.client_core,
            fastpath_args: a
                .fastpath_args
                .split_whitespace()
                .map(String::from)
                .collect(),
            out,
            command,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum System {
    Fastpath,
    /// The kernel echo server; in tcp-bulk with the pair's offloads matched to fastpath's.
    Kernel,
    /// tcp-bulk only: the kernel with the veth's default offloads (TSO/GSO: 64 KiB segments).
    KernelOffload,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Fastpath => "fastpath",
            System::Kernel => "kernel",
            System::KernelOffload => "kernel+offload",
        }
    }
}

/// (client label, its load, the systems it drives in each round, in order).
fn plans(kind: TcpScenarioKind, s: &TcpSettings) -> Vec<(String, TcpPattern, Vec<System>)> {
    let pair = vec![System::Fastpath, System::Kernel];
    match kind {
        TcpScenarioKind::Rr => s
            .connections
            .iter()
            .map(|&n| {
                (
                    format!("{n}-conn"),
                    TcpPattern::RequestResponse { connections: n },
                    pair.clone(),
                )
            })
            .collect(),
        TcpScenarioKind::Crr => vec![("crr".into(), TcpPattern::ConnectRequestResponse, pair)],
        TcpScenarioKind::Bulk => vec![(
            "bulk".into(),
            TcpPattern::Bulk,
            vec![System::Fastpath, System::Kernel, System::KernelOffload],
        )],
    }
}

/// Seconds the scenario will take, roughly.
pub fn planned_secs(kind: TcpScenarioKind, s: &TcpSettings) -> u64 {
    let runs: u64 = plans(kind, s).iter().map(|p| p.2.len() as u64).sum();
    runs * u64::from(s.rounds) * (s.duration_secs + 2)
}

/// The test bed and what every measurement shares.
struct Bed<'a> {
    kind: TcpScenarioKind,
    s: &'a TcpSettings,
    pair: &'a VethPair,
    /// The offloads the kernel gave the pair's ends, for tcp-bulk's kernel+offload.
    defaults: DefaultOffloads,
    cores: Cores,
    stop: &'a AtomicBool,
    progress: &'a mut Progress,
}

/// Everything the rounds recorded, for the report.
#[derive(Default)]
struct Rounds {
    runs: Vec<RunReport>,
    series: BTreeMap<(String, &'static str), Series>,
    notes: Vec<String>,
    /// The most connections fastpath still held 2 s after a run.
    most_left: u64,
}

/// Runs one TCP scenario, writes its report into `s.out`, and returns the report and table.
pub fn run(
    kind: TcpScenarioKind,
    s: &TcpSettings,
    stop: &AtomicBool,
) -> anyhow::Result<(Report, String)> {
    let pair = VethPair::create(VethConfig {
        queues: s.queues,
        mtu: s.mtu,
        peer_tx_checksum: true,
    })?;
    client_sysctls(&pair)?;
    let defaults = DefaultOffloads::read(&pair)?;
    let cores = Cores::pick(s.server_core, s.client_core);
    let mut progress = Progress::new(planned_secs(kind, s), kind.name());
    let mut bed = Bed {
        kind,
        s,
        pair: &pair,
        defaults,
        cores,
        stop,
        progress: &mut progress,
    };
    let mut rounds = Rounds::default();
    for round in 0..s.rounds {
        for (client, pattern, systems) in plans(kind, s) {
            for system in systems {
                bed.measure(round, &client, pattern, system, &mut rounds)?;
            }
        }
    }
    progress.bar.finish_and_clear();

    let series: Vec<Series> = rounds.series.into_values().collect();
    let summary = report::summarize(kind.name(), &series);
    let ratios = results::ratios(kind, s, &summary);
    let goals = results::goals(kind, &ratios);
    let mut notes = rounds.notes;
    notes.extend(results::method_notes(kind, s, &summary, rounds.most_left));
    if cores.server == cores.client {
        notes.push("one core only: server and client share it".into());
    }
    let mut report = Report {
        scenario: kind.name().into(),
        command: s.command.clone(),
        machine: Machine::read(s.queues, s.mtu, true),
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

impl Bed<'_> {
    /// One system, driven by one client's load in one round, into `rounds`.
    fn measure(
        &mut self,
        round: u32,
        client: &str,
        pattern: TcpPattern,
        system: System,
        rounds: &mut Rounds,
    ) -> anyhow::Result<()> {
        self.progress.bar.set_message(format!(
            "{} ← {client} (round {})",
            system.name(),
            round + 1
        ));
        if self.kind == TcpScenarioKind::Bulk {
            self.defaults
                .set(self.pair, system != System::KernelOffload)?;
        }
        let server = start_server(self.pair, system, self.s, self.cores.server)?;
        if self.kind == TcpScenarioKind::Bulk && round == 0 {
            let pair = self.pair;
            rounds.notes.push(format!(
                "{}: offloads during the run: server end {}, client end {}",
                system.name(),
                Offloads::read(&pair.server.netns, &pair.server.iface)?.describe(),
                Offloads::read(&pair.client.netns, &pair.client.iface)?.describe()
            ));
        }
        let sampler = CpuSampler::start(server.pid());
        let result = self.load(pattern)?;
        let cpu = sampler.finish(
            Some(result.cpu_time.as_secs_f64()),
            Some(self.cores.server),
            Some(self.cores.client),
        );
        if let Server::Fastpath(process) = &server {
            rounds.settled(process, round, client);
        }
        drop(server);
        self.progress
            .advance(Duration::from_secs(self.s.duration_secs + 2));
        rounds.record(round, client, system, result, cpu);
        Ok(())
    }

    /// The harness's TCP generator against the running server, from the client namespace,
    /// on its own thread (pinned to the client core), the progress bar moving meanwhile.
    fn load(&self, pattern: TcpPattern) -> anyhow::Result<TcpLoadResult> {
        let s = self.s;
        let spec = TcpLoadSpec {
            pattern,
            server: SocketAddrV4::new(SERVER_ADDR, PORT),
            payload: s.payload,
            warmup: Duration::from_millis((s.duration_secs * 1000 / 5).min(1000)),
            duration: Duration::from_secs(s.duration_secs),
            max_count: if pattern == TcpPattern::Bulk {
                1 << 40
            } else {
                50_000_000
            },
            cpu: Some(self.cores.client),
        };
        let started = Instant::now();
        let (pair, stop, progress) = (self.pair, self.stop, &*self.progress);
        std::thread::scope(|scope| {
            let handle =
                scope.spawn(|| VethPair::in_netns(&pair.client, || tcp_load::run(&spec, stop)));
            while !handle.is_finished() {
                progress.during(started);
                std::thread::sleep(Duration::from_millis(100));
            }
            handle
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Rounds {
    /// What fastpath still held 2 s after a run: counted, and a note when anything.
    fn settled(&mut self, process: &FastpathProcess, round: u32, client: &str) {
        let left = settle(process);
        let total: u64 = left.values().sum();
        self.most_left = self.most_left.max(total);
        if total > 0 {
            self.notes.push(format!(
                "round {}, {client}: fastpath still held {total} connection(s) 2 s after the run: {left:?}",
                round + 1
            ));
        }
    }

    /// One run: a note on its connection errors, its run report, its round of the series.
    fn record(
        &mut self,
        round: u32,
        client: &str,
        system: System,
        result: TcpLoadResult,
        cpu: CpuUse,
    ) {
        if result.errors > 0 {
            self.notes.push(format!(
                "round {}, {} ← {client}: {} connection error(s), the first: {}",
                round + 1,
                system.name(),
                result.errors,
                result.first_error.as_deref().unwrap_or("?")
            ));
        }
        let rate = result.rate();
        self.runs.push(RunReport {
            system: system.name().into(),
            client: client.into(),
            round,
            rate_pps: rate,
            send_rate_pps: result.sent as f64 / result.elapsed.as_secs_f64().max(1e-9),
            sent: result.sent,
            received: result.received,
            lost: result.sent.saturating_sub(result.received),
            duration_secs: result.elapsed.as_secs_f64(),
            samples: result.histogram.len(),
            percentiles_us: report::percentiles_us(&result.histogram),
            cpu,
        });
        self.series
            .entry((client.to_string(), system.name()))
            .or_insert_with(|| Series::new(system.name(), client))
            .add_round(result.histogram, result.elapsed, rate);
    }
}
