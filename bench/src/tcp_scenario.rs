//! The TCP scenarios (issue 10): `tcp-rr`, `tcp-crr` and `tcp-bulk`. fastpath's TCP echo
//! (`fastpath echo --tcp`, one worker) and a kernel echo server (`kernel-tcp-echo`, one
//! epoll thread on the same core) run on the same veth pair in one run, alternating
//! A B A B, driven by the harness's TCP generator (`tcp_load`) from the client namespace.
//! The reports are the UDP scenarios' (`report::write_all`), with goals of their own.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddrV4, TcpStream},
    path::PathBuf,
    process::Stdio,
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    machine::{CpuSampler, Machine, online_cores},
    netns::{SERVER_ADDR, VethConfig, VethPair, netns_command},
    process::{ChildGuard, FastpathProcess, fastpath_binary, sibling_binary},
    report::{self, Goal, Ratio, Report, RunReport, Series, SeriesSummary},
    tcp_load::{self, TcpLoadSpec, TcpPattern},
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

/// TSO, GSO and GRO of one veth end, as `ethtool -k` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Offloads {
    tso: bool,
    gso: bool,
    gro: bool,
}

impl Offloads {
    const OFF: Offloads = Offloads {
        tso: false,
        gso: false,
        gro: false,
    };

    fn read(netns: &str, iface: &str) -> anyhow::Result<Self> {
        let out = netns_command(netns, "ethtool")
            .args(["-k", iface])
            .output()
            .context("ethtool -k (is ethtool installed? `cargo xtask deps`)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let on = |key: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .is_some_and(|v| v.trim_start_matches(':').trim().starts_with("on"))
        };
        Ok(Self {
            tso: on("tcp-segmentation-offload"),
            gso: on("generic-segmentation-offload"),
            gro: on("generic-receive-offload"),
        })
    }

    fn apply(&self, netns: &str, iface: &str) -> anyhow::Result<()> {
        let word = |b: bool| if b { "on" } else { "off" };
        let out = netns_command(netns, "ethtool")
            .args(["-K", iface])
            .args(["tso", word(self.tso), "gso", word(self.gso)])
            .args(["gro", word(self.gro)])
            .output()
            .context("ethtool -K")?;
        if !out.status.success() {
            bail!(
                "ethtool -K {iface} in {netns} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn describe(&self) -> String {
        let word = |b: bool| if b { "on" } else { "off" };
        format!(
            "tso {} gso {} gro {}",
            word(self.tso),
            word(self.gso),
            word(self.gro)
        )
    }
}

/// The pair's two ends' offloads as the kernel made them.
struct DefaultOffloads {
    server: Offloads,
    client: Offloads,
}

impl DefaultOffloads {
    fn read(pair: &VethPair) -> anyhow::Result<Self> {
        Ok(Self {
            server: Offloads::read(&pair.server.netns, &pair.server.iface)?,
            client: Offloads::read(&pair.client.netns, &pair.client.iface)?,
        })
    }

    /// Matched to fastpath's MTU-sized frames (all off), or the defaults.
    fn set(&self, pair: &VethPair, matched: bool) -> anyhow::Result<()> {
        let (server, client) = if matched {
            (&Offloads::OFF, &Offloads::OFF)
        } else {
            (&self.server, &self.client)
        };
        server.apply(&pair.server.netns, &pair.server.iface)?;
        client.apply(&pair.client.netns, &pair.client.iface)
    }
}

/// Sysctls of the client namespace only: crr opens tens of thousands of connections a
/// second from one address, and each closed one waits in TIME-WAIT (60 s). The whole port
/// range and `tcp_tw_reuse=1` (a TIME-WAIT port may be reused for a new connect() 1 s
/// after its last segment, as timestamps make safe) keep connect() from running out.
const CLIENT_SYSCTLS: [&str; 2] = [
    "net.ipv4.ip_local_port_range=1024 65535",
    "net.ipv4.tcp_tw_reuse=1",
];

fn client_sysctls(pair: &VethPair) -> anyhow::Result<()> {
    for setting in CLIENT_SYSCTLS {
        let out = pair
            .client_command("sysctl")
            .args(["-qw", setting])
            .output()
            .context("sysctl")?;
        if !out.status.success() {
            bail!(
                "sysctl -w {setting} in the client namespace failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

enum Server {
    Fastpath(FastpathProcess),
    Kernel(ChildGuard),
}

impl Server {
    fn pid(&self) -> Option<u32> {
        match self {
            Server::Fastpath(p) => p.pid(),
            Server::Kernel(c) => c.pid(),
        }
    }
}

fn start_server(
    pair: &VethPair,
    system: System,
    s: &TcpSettings,
    core: usize,
) -> anyhow::Result<Server> {
    let (port, core, queues) = (PORT.to_string(), core.to_string(), s.queues.to_string());
    let server = match system {
        System::Fastpath => {
            // `start`, not `start_echo`: that one captures every frame into a pcap (tests).
            let mut args = vec![
                "--tcp",
                port.as_str(),
                "--cpus",
                core.as_str(),
                "--queues",
                queues.as_str(),
            ];
            args.extend(s.fastpath_args.iter().map(String::as_str));
            Server::Fastpath(FastpathProcess::start(pair, "echo", &args)?)
        }
        System::Kernel | System::KernelOffload => {
            let me = sibling_binary("fastpath-bench")?;
            let child = netns_command(&pair.server.netns, me.to_str().context("non-UTF-8 path")?)
                .args(["kernel-tcp-echo", "--addr", &SERVER_ADDR.to_string()])
                .args(["--port", &port, "--cpu", &core])
                .args(["--limit", &(s.duration_secs * 4 + 60).to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting the kernel TCP echo server")?;
            Server::Kernel(ChildGuard::new("kernel-tcp-echo", child))
        }
    };
    probe(pair)?;
    Ok(server)
}

/// Waits until the server echoes a byte on a fresh connection.
fn probe(pair: &VethPair) -> anyhow::Result<()> {
    let server = SocketAddrV4::new(SERVER_ADDR, PORT);
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(10) {
        let echoed = VethPair::in_netns(&pair.client, || -> std::io::Result<()> {
            let mut s = TcpStream::connect_timeout(&server.into(), Duration::from_millis(300))?;
            s.set_read_timeout(Some(Duration::from_millis(300)))?;
            s.write_all(b"?")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b)
        });
        match echoed {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the TCP echo server did not answer within 10 s ({last})")
}

/// fastpath's TCP connections other than listeners, by state (`fastpath sockets --json`).
fn fastpath_connections(process: &FastpathProcess) -> anyhow::Result<BTreeMap<String, u64>> {
    let out = std::process::Command::new(fastpath_binary()?)
        .args(["sockets", "--json", "--control"])
        .arg(process.control())
        .output()?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut states = BTreeMap::new();
    for row in rows.as_array().into_iter().flatten() {
        if row["proto"] == "tcp" && row["state"] != "listen" {
            let state = row["state"].as_str().unwrap_or("?").to_string();
            *states.entry(state).or_insert(0) += 1;
        }
    }
    Ok(states)
}

/// Waits up to 2 s for fastpath's connections to close; returns what is left.
fn settle(process: &FastpathProcess) -> BTreeMap<String, u64> {
    let start = Instant::now();
    loop {
        let left = fastpath_connections(process).unwrap_or_default();
        if left.is_empty() || start.elapsed() > Duration::from_secs(2) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn progress_bar(total_secs: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(total_secs * 1000);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:40}] {msg} ({elapsed} of ~{duration})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_prefix(label.to_string());
    bar
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
    let (default_server, default_client) = if online_cores() >= 2 { (1, 0) } else { (0, 0) };
    let server_core = s.server_core.unwrap_or(default_server);
    let client_core = s.client_core.unwrap_or(default_client);
    let bar = progress_bar(planned_secs(kind, s), kind.name());
    let mut done_ms = 0u64;
    let mut runs = Vec::new();
    let mut series: BTreeMap<(String, &'static str), Series> = BTreeMap::new();
    let mut notes = Vec::new();
    let mut most_left = 0u64;
    let warmup = Duration::from_millis((s.duration_secs * 1000 / 5).min(1000));

    for round in 0..s.rounds {
        for (client, pattern, systems) in plans(kind, s) {
            for system in systems {
                bar.set_message(format!(
                    "{} ← {client} (round {})",
                    system.name(),
                    round + 1
                ));
                if kind == TcpScenarioKind::Bulk {
                    defaults.set(&pair, system != System::KernelOffload)?;
                }
                let server = start_server(&pair, system, s, server_core)?;
                if kind == TcpScenarioKind::Bulk && round == 0 {
                    notes.push(format!(
                        "{}: offloads during the run: server end {}, client end {}",
                        system.name(),
                        Offloads::read(&pair.server.netns, &pair.server.iface)?.describe(),
                        Offloads::read(&pair.client.netns, &pair.client.iface)?.describe()
                    ));
                }
                let spec = TcpLoadSpec {
                    pattern,
                    server: SocketAddrV4::new(SERVER_ADDR, PORT),
                    payload: s.payload,
                    warmup,
                    duration: Duration::from_secs(s.duration_secs),
                    max_count: if pattern == TcpPattern::Bulk {
                        1 << 40
                    } else {
                        50_000_000
                    },
                    cpu: Some(client_core),
                };
                let sampler = CpuSampler::start(server.pid());
                let started = Instant::now();
                let result = std::thread::scope(|scope| {
                    let handle = scope
                        .spawn(|| VethPair::in_netns(&pair.client, || tcp_load::run(&spec, stop)));
                    while !handle.is_finished() {
                        bar.set_position(done_ms + started.elapsed().as_millis() as u64);
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    handle
                        .join()
                        .unwrap_or_else(|p| std::panic::resume_unwind(p))
                })?;
                let cpu = sampler.finish(
                    Some(result.cpu_time.as_secs_f64()),
                    Some(server_core),
                    Some(client_core),
                );
                if let Server::Fastpath(process) = &server {
                    let left = settle(process);
                    let total: u64 = left.values().sum();
                    most_left = most_left.max(total);
                    if total > 0 {
                        notes.push(format!(
                            "round {}, {client}: fastpath still held {total} connection(s) 2 s after the run: {left:?}",
                            round + 1
                        ));
                    }
                }
                drop(server);
                done_ms += (s.duration_secs + 2) * 1000;
                bar.set_position(done_ms);
                if result.errors > 0 {
                    notes.push(format!(
                        "round {}, {} ← {client}: {} connection error(s), the first: {}",
                        round + 1,
                        system.name(),
                        result.errors,
                        result.first_error.as_deref().unwrap_or("?")
                    ));
                }
                let rate = result.rate();
                runs.push(RunReport {
                    system: system.name().into(),
                    client: client.clone(),
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
                series
                    .entry((client.clone(), system.name()))
                    .or_insert_with(|| Series::new(system.name(), &client))
                    .add_round(result.histogram, result.elapsed, rate);
            }
        }
    }
    bar.finish_and_clear();

    let series: Vec<Series> = series.into_values().collect();
    let summary: Vec<SeriesSummary> = report::summarize(kind.name(), &series);
    let ratios = ratios(kind, s, &summary);
    let goals = goals(kind, &ratios);
    notes.extend(method_notes(kind, s, &summary, most_left));
    if server_core == client_core {
        notes.push("one core only: server and client share it".into());
    }
    let mut report = Report {
        scenario: kind.name().into(),
        command: s.command.clone(),
        machine: Machine::read(s.queues, s.mtu, true),
        settings: serde_json::to_value(s)?,
        runs,
        summary,
        ratios,
        goals,
        notes,
    };
    let table = report::write_all(&s.out, &mut report, &series)?;
    drop(pair);
    Ok((report, table))
}

fn ratios(kind: TcpScenarioKind, s: &TcpSettings, summary: &[SeriesSummary]) -> Vec<Ratio> {
    let mut ratios = Vec::new();
    for (client, _, systems) in plans(kind, s) {
        for &denominator in systems.iter().filter(|&&d| d != System::Fastpath) {
            ratios.extend(Ratio::between(
                summary,
                &client,
                System::Fastpath.name(),
                denominator.name(),
            ));
        }
    }
    ratios
}

/// Issue 10's goals, each reported with what was measured.
fn goals(kind: TcpScenarioKind, ratios: &[Ratio]) -> Vec<Goal> {
    let ratio = |client: &str, denominator: &str, key: &str| {
        ratios
            .iter()
            .find(|r| r.client == client && r.denominator == denominator)
            .and_then(|r| r.values.get(key).copied())
    };
    let mut goals = Vec::new();
    let mut goal = |goal: String, measured: Option<f64>, target: &str, met: fn(f64) -> bool| {
        if let Some(v) = measured {
            goals.push(Goal::new(goal, v, target, met(v)));
        }
    };
    match kind {
        TcpScenarioKind::Rr => {
            for r in ratios {
                goal(
                    format!("tcp-rr p99 round trip, fastpath/kernel ({})", r.client),
                    r.values.get("p99").copied(),
                    "<= 0.50",
                    |v| v <= 0.5,
                );
            }
            goal(
                "tcp-rr rate with one request outstanding, fastpath/kernel (1-conn)".into(),
                ratio("1-conn", "kernel", "rate"),
                ">= 2.0",
                |v| v >= 2.0,
            );
        }
        TcpScenarioKind::Crr => goal(
            "tcp-crr transactions per second, fastpath/kernel".into(),
            ratio("crr", "kernel", "rate"),
            ">= 3.0",
            |v| v >= 3.0,
        ),
        TcpScenarioKind::Bulk => goal(
            "tcp-bulk bytes echoed per second, fastpath/kernel (TSO, GSO, GRO off on both ends)"
                .into(),
            ratio("bulk", "kernel", "rate"),
            ">= 1.0",
            |v| v >= 1.0,
        ),
    }
    goals
}

/// What was measured and how, for whoever reads the report.
fn method_notes(
    kind: TcpScenarioKind,
    s: &TcpSettings,
    summary: &[SeriesSummary],
    most_left: u64,
) -> Vec<String> {
    let mut notes = vec![
        "servers: `fastpath echo --tcp` (one worker) and `fastpath-bench kernel-tcp-echo` (one epoll thread, TCP_NODELAY), both pinned to the server core and echoing every byte".into(),
    ];
    match kind {
        TcpScenarioKind::Rr => notes.push(format!(
            "tcp-rr: {}-byte request and response on N long-lived connections (TCP_NODELAY), one request outstanding on each; rate = round trips per second; latency = write of the request to the last byte of the response",
            s.payload
        )),
        TcpScenarioKind::Crr => notes.push(format!(
            "tcp-crr: one transaction at a time: socket, connect, {0}-byte request, {0}-byte response, close; latency = the whole transaction. The client closes first, so its sockets wait in TIME-WAIT; its namespace has {1} so connect() does not run out of ports",
            s.payload,
            CLIENT_SYSCTLS.join(" and ")
        )),
        TcpScenarioKind::Bulk => {
            notes.push(
                "tcp-bulk: one connection writes 128 KiB at a time while reading the echo back (neither server has a discard mode, so both echo: the same work on each side); rate = bytes echoed back per second; latency = a write until its last byte is back".into(),
            );
            notes.push(
                "fastpath and kernel ran with TSO, GSO and GRO off on both veth ends (fastpath sends MTU-sized frames); kernel+offload with the veth's default offloads".into(),
            );
            for row in summary {
                notes.push(format!(
                    "{}: {:.2} Gbit/s echoed back ({:.0} MB/s)",
                    row.system,
                    row.rate_pps * 8.0 / 1e9,
                    row.rate_pps / 1e6
                ));
            }
        }
    }
    if most_left == 0 {
        notes.push("after every fastpath run `fastpath sockets` listed no connection but the listener within 2 s".into());
    }
    notes
}
