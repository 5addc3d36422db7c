//! `fastpath-bench`: runs a scenario against fastpath and the kernel on a fresh veth pair and
//! writes its report. `cargo xtask bench …` builds it in release mode and runs it.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use anyhow::bail;
use clap::{Args, Parser, Subcommand};
use fastpath_bench::{
    capacity, kernel_echo, kernel_tcp_echo,
    process::fastpath_binary,
    scenario::{self, ScenarioKind, Settings},
    tcp_scenario::{self, TcpArgs, TcpScenarioKind, TcpSettings},
};

#[derive(Parser)]
#[command(
    name = "fastpath-bench",
    about = "fastpath against the kernel on a veth pair, side by side in one run",
    long_about = "Runs a scenario against fastpath and against a kernel-stack server doing the same work, \
on the same veth pair between two fresh network namespaces, alternating A B A B, and writes a report: \
a table, .hgrm percentile files, HdrHistogram logs, report.json and a latency plot.\n\n\
Examples:\n  cargo xtask bench udp-pingpong --duration 5\n  cargo xtask bench udp-flood --rate 200000\n  cargo xtask bench tcp-rr\n  cargo xtask bench tcp-bulk --duration 10\n  cargo xtask bench all --out bench-results/today"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Latency, one request outstanding: sockperf ping-pong and the harness's generator.
    UdpPingpong(Common),
    /// Echo rate with many requests outstanding (or a fixed --rate, open loop).
    UdpFlood(Common),
    /// A bare AF_XDP bounce with no stack (the limit), against fastpath; and the client's own capacity.
    Ceiling(Common),
    /// Each server's own limit (highest rate with <= 0.1 % loss) with an AF_XDP load
    /// generator, latency at 50 % and 90 % of it, CPU and user-space cycles per request.
    /// --rate sets the fixed rate for CPU per request (default: half the lowest limit).
    UdpCapacity(CapacityArgs),
    /// One run of the AF_XDP generator against one server (fastpath, kernel or ceiling),
    /// printed: for checks, and for profiles under `perf record -a -g`.
    XdpLoad {
        #[command(flatten)]
        args: CapacityArgs,
        /// The server: fastpath, kernel or ceiling.
        #[arg(long, default_value = "fastpath")]
        system: String,
        /// Sleep between bursts (as for CPU per request) instead of spinning.
        #[arg(long)]
        sleep: bool,
    },
    /// HTTP: fastpath serve against nginx (one worker each) with the same wrk, keep-alive and
    /// Connection: close, alternating; a 10 MiB curl download from each against the test
    /// bed's line rate (AF_XDP alone, `fastpath blast`).
    Http(HttpArgs),
    /// The test bed's line rate: AF_XDP alone (`fastpath blast`) pushing MTU-sized frames from
    /// the server namespace to a receiver in the peer's, the yardstick for HTTP downloads.
    LineRate {
        /// Seconds to send.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
        duration: u64,
        /// Core for the sender; default 1.
        #[arg(long, value_name = "CORE")]
        server_core: Option<usize>,
        /// Folder for line-rate.json (default: bench-results/<UTC time>-line-rate).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// TCP request/response: 64 bytes each way on 1 and on 32 connections, one request
    /// outstanding on each; fastpath's TCP echo against a kernel epoll echo server.
    TcpRr(TcpArgs),
    /// TCP connect, 64 bytes each way, close: transactions per second.
    TcpCrr(TcpArgs),
    /// One TCP flow echoed back (30 s by default): bytes per second, with the pair's offloads
    /// matched to fastpath's, and the kernel with its default offloads as a third system.
    TcpBulk(TcpArgs),
    /// Every scenario, UDP and TCP, each into its own folder under --out (bounded to 10 minutes).
    All(Common),
    /// The demo: `fastpath serve` on a fresh veth pair, checked with curl, then wrk against it
    /// and against nginx, with a report and plot.
    Demo {
        /// Seconds of wrk load on each server.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=60))]
        duration: u64,
        /// Folder for the report (default: bench-results/<UTC time>-demo).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Plot a congestion window over time against RFC 9438's curve, from the CSV that
    /// `cargo run -p fastpath --example cwnd_trace` writes.
    PlotCwnd {
        /// The CSV (seconds,cwnd_segments,w_cubic_segments).
        #[arg(long)]
        csv: PathBuf,
        /// The SVG to write (a PNG beside it where rsvg-convert is installed).
        #[arg(long)]
        out: PathBuf,
    },
    /// (internal) the kernel-stack UDP echo server, run inside the server namespace.
    #[command(hide = true)]
    KernelEcho {
        #[arg(long)]
        addr: std::net::Ipv4Addr,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        cpu: Option<usize>,
        /// Exit after this many seconds whatever happens.
        #[arg(long, default_value_t = 600)]
        limit: u64,
    },
    /// (internal) the kernel-stack TCP echo server, run inside the server namespace.
    #[command(hide = true)]
    KernelTcpEcho {
        #[arg(long)]
        addr: std::net::Ipv4Addr,
        #[arg(long)]
        port: u16,
        #[arg(long)]
        cpu: Option<usize>,
        /// Exit after this many seconds whatever happens.
        #[arg(long, default_value_t = 600)]
        limit: u64,
    },
}

#[derive(Args, Clone)]
struct HttpArgs {
    /// Folder for the report (default: bench-results/<UTC time>-http).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Seconds per wrk run (each system, each mode, each round).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    duration: u64,
    /// Rounds: each system runs once per round, fastpath then nginx.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// wrk's connections.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10000))]
    connections: u32,
    /// Core for the server (fastpath's worker, nginx's process); default 1.
    #[arg(long, value_name = "CORE")]
    server_core: Option<usize>,
    /// Core for wrk; default 0.
    #[arg(long, value_name = "CORE")]
    client_core: Option<usize>,
    /// Extra arguments for `fastpath serve`, e.g. "--idle busy".
    #[arg(
        long,
        value_name = "ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    fastpath_args: String,
}

#[derive(Args, Clone)]
struct CapacityArgs {
    #[command(flatten)]
    common: Common,
    /// Flows (UDP source ports) the AF_XDP generator spreads its requests over.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=512))]
    flows: u16,
}

#[derive(Args, Clone)]
struct Common {
    /// Folder for the report (default: bench-results/<UTC time>-<scenario>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Seconds per measurement (each system, each round).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
    duration: u64,
    /// Open loop at this many requests per second (latency from the intended send time).
    #[arg(long, value_name = "PPS", value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    rate: Option<u64>,
    /// Rounds: each system runs once per round, A B A B.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=10))]
    rounds: u32,
    /// UDP payload bytes (sockperf's 14-byte header included).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(14..=1472))]
    payload: u64,
    /// Requests outstanding in closed-loop throughput scenarios.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    outstanding: u32,
    /// RX/TX queues of the veth (fastpath serves them all).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    queues: u32,
    /// MTU of the veth pair.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u32).range(576..=3000))]
    mtu: u32,
    /// Core for the server (fastpath's worker or the kernel server); default 1 (0 on one core).
    #[arg(long, value_name = "CORE")]
    server_core: Option<usize>,
    /// Core for the client; default 0.
    #[arg(long, value_name = "CORE")]
    client_core: Option<usize>,
    /// Extra arguments for the fastpath server, e.g. "--idle busy --batch 128".
    #[arg(
        long,
        value_name = "ARGS",
        default_value = "",
        allow_hyphen_values = true
    )]
    fastpath_args: String,
    /// Compare with an earlier fastpath binary instead of the kernel: fastpath's systems run
    /// from PATH and from the current build, alternating old, new (ratios new ÷ old).
    #[arg(long, value_name = "PATH", conflicts_with = "with_capture")]
    baseline_bin: Option<PathBuf>,
    /// Run fastpath alone and while `fastpath capture` copies the flow, alternating: what a
    /// capture costs the worker, and what it loses when its ring overflows.
    #[arg(long)]
    with_capture: bool,
    /// TX checksum offload on the peer (client) end.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    peer_checksum_offload: String,
}

/// A clap error on one line: every line that carries content (the argument a "required
/// arguments were not provided:" error names is on the next line), without the usage and
/// "For more information" paragraphs. The same as `fastpath`'s (the two crates share none).
fn one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    // Paragraphs are separated by blank lines; lines within one are joined with a space
    // (the list of missing arguments), paragraphs with "; " (a tip).
    let kept: Vec<String> = rendered
        .split("\n\n")
        .map(|para| {
            para.lines()
                .map(|l| l.trim().trim_start_matches("error: "))
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|para| {
            !para.is_empty()
                && !para.starts_with("Usage:")
                && !para.starts_with("For more information")
        })
        .collect();
    if kept.is_empty() {
        "invalid arguments".into()
    } else {
        kept.join("; ")
    }
}

/// Bound on `all`, so an unattended run always ends.
const ALL_LIMIT_SECS: u64 = 600;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                e.exit();
            }
            eprintln!(
                "fastpath-bench: {} (scenarios: udp-pingpong, udp-flood, ceiling, udp-capacity, tcp-rr, tcp-crr, tcp-bulk, http, line-rate, all, demo; see --help)",
                one_line(&e)
            );
            return ExitCode::from(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("fastpath-bench: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::KernelEcho {
            addr,
            port,
            cpu,
            limit,
        } => kernel_echo::serve(addr, port, cpu, Duration::from_secs(limit)),
        Command::Demo { duration, out } => preflight().and_then(|()| {
            let out =
                out.unwrap_or_else(|| PathBuf::from(format!("bench-results/{}-demo", utc_stamp())));
            fastpath_bench::http::demo(duration, &out, &stop)
        }),
        Command::Http(a) => http(a, &stop),
        Command::LineRate {
            duration,
            server_core,
            out,
        } => line_rate(duration, server_core, out),
        Command::KernelTcpEcho {
            addr,
            port,
            cpu,
            limit,
        } => kernel_tcp_echo::serve(addr, port, cpu, Duration::from_secs(limit)),
        Command::PlotCwnd { csv, out } => {
            fastpath_bench::report::plot_cwnd(&csv, &out).map(|png| {
                println!(
                    "wrote {}{}",
                    out.display(),
                    png.map_or(String::new(), |p| format!(" and {}", p.display()))
                );
            })
        }
        Command::UdpPingpong(c) => one(ScenarioKind::UdpPingpong, c, &stop),
        Command::UdpFlood(c) => one(ScenarioKind::UdpFlood, c, &stop),
        Command::Ceiling(c) => one(ScenarioKind::Ceiling, c, &stop),
        Command::TcpRr(a) => tcp(TcpScenarioKind::Rr, a, &stop),
        Command::TcpCrr(a) => tcp(TcpScenarioKind::Crr, a, &stop),
        Command::TcpBulk(a) => tcp(TcpScenarioKind::Bulk, a, &stop),
        Command::UdpCapacity(c) => capacity(c, &stop),
        Command::XdpLoad {
            args,
            system,
            sleep,
        } => preflight().and_then(|()| {
            let s = settings(&args.common, PathBuf::from("/tmp"));
            let options = capacity::Options { flows: args.flows };
            let text = capacity::load_once(&s, &options, &system, args.common.rate, sleep, &stop)?;
            print!("{text}");
            Ok(())
        }),
        Command::All(c) => all(c, &stop),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if stop.load(std::sync::atomic::Ordering::Relaxed) => {
            eprintln!("fastpath-bench: interrupted ({e}); the test bed was removed");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("fastpath-bench: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn utc_stamp() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y%m%d-%H%M%S"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "now".into())
}

fn settings(c: &Common, out: PathBuf) -> Settings {
    Settings {
        duration_secs: c.duration,
        rate: c.rate,
        rounds: c.rounds,
        payload: c.payload as usize,
        queues: c.queues,
        mtu: c.mtu,
        peer_tx_checksum: c.peer_checksum_offload == "on",
        outstanding: c.outstanding,
        fastpath_args: c
            .fastpath_args
            .split_whitespace()
            .map(String::from)
            .collect(),
        server_core: c.server_core,
        client_core: c.client_core,
        baseline_bin: c.baseline_bin.clone(),
        with_capture: c.with_capture,
        out,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    }
}

fn preflight() -> anyhow::Result<()> {
    // Safety: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the bench needs root (network namespaces, XDP): run it as root, e.g. `sudo -E cargo xtask bench ...`"
        );
    }
    fastpath_binary()?;
    Ok(())
}

fn one(kind: ScenarioKind, c: Common, stop: &AtomicBool) -> anyhow::Result<()> {
    preflight()?;
    let out = c
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("bench-results/{}-{}", utc_stamp(), kind.name())));
    let s = settings(&c, out.clone());
    let (_, table) = scenario::run(kind, &s, stop)?;
    print!("{table}");
    println!("report: {}", out.display());
    Ok(())
}

fn line_rate(secs: u64, core: Option<usize>, out: Option<PathBuf>) -> anyhow::Result<()> {
    preflight()?;
    let out =
        out.unwrap_or_else(|| PathBuf::from(format!("bench-results/{}-line-rate", utc_stamp())));
    let core = core.unwrap_or(usize::from(fastpath_bench::machine::online_cores() >= 2));
    let pair =
        fastpath_bench::netns::VethPair::create(fastpath_bench::netns::VethConfig::default())?;
    let r = fastpath_bench::http::line_rate(&pair, secs, core)?;
    drop(pair);
    std::fs::create_dir_all(&out)?;
    std::fs::write(
        out.join("line-rate.json"),
        serde_json::to_string_pretty(&r)?,
    )?;
    println!(
        "line rate: {:.0} MB/s of UDP payload delivered ({:.2} Gb/s), {} of {} frames arrived; sender ring {:.0} MB/s",
        r.delivered_payload_bytes_per_sec / 1e6,
        r.delivered_payload_bytes_per_sec * 8.0 / 1e9,
        r.received_frames,
        r.sent_frames,
        r.sent_bytes_per_sec / 1e6
    );
    println!("report: {}", out.join("line-rate.json").display());
    Ok(())
}

fn http(a: HttpArgs, stop: &AtomicBool) -> anyhow::Result<()> {
    preflight()?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("bench-results/{}-http", utc_stamp())));
    let two = fastpath_bench::machine::online_cores() >= 2;
    let s = fastpath_bench::http::HttpSettings {
        duration_secs: a.duration,
        rounds: a.rounds,
        connections: a.connections,
        server_core: a.server_core.unwrap_or(usize::from(two)),
        client_core: a.client_core.unwrap_or(0),
        fastpath_args: a
            .fastpath_args
            .split_whitespace()
            .map(String::from)
            .collect(),
        out: out.clone(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let (_, table) = fastpath_bench::http::run(&s, stop)?;
    print!("{table}");
    println!("report: {}", out.display());
    Ok(())
}

fn capacity(c: CapacityArgs, stop: &AtomicBool) -> anyhow::Result<()> {
    preflight()?;
    let kind = ScenarioKind::UdpCapacity;
    let out =
        c.common.out.clone().unwrap_or_else(|| {
            PathBuf::from(format!("bench-results/{}-{}", utc_stamp(), kind.name()))
        });
    let s = settings(&c.common, out.clone());
    let options = capacity::Options { flows: c.flows };
    let (_, table) = capacity::run(&s, &options, stop)?;
    print!("{table}");
    println!("report: {}", out.display());
    Ok(())
}

fn tcp(kind: TcpScenarioKind, a: TcpArgs, stop: &AtomicBool) -> anyhow::Result<()> {
    preflight()?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("bench-results/{}-{}", utc_stamp(), kind.name())));
    let s = TcpSettings::new(kind, &a, out.clone(), command_line());
    let (_, table) = tcp_scenario::run(kind, &s, stop)?;
    print!("{table}");
    println!("report: {}", out.display());
    Ok(())
}

/// The TCP scenarios with `all`'s options: its --duration for each (bulk included).
fn tcp_settings(kind: TcpScenarioKind, c: &Common, out: PathBuf) -> TcpSettings {
    let a = TcpArgs {
        out: None,
        duration: Some(c.duration),
        rounds: c.rounds,
        payload: 64,
        connections: vec![1, 32],
        queues: c.queues,
        mtu: c.mtu,
        server_core: c.server_core,
        client_core: c.client_core,
        fastpath_args: c.fastpath_args.clone(),
    };
    TcpSettings::new(kind, &a, out, command_line())
}

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn all(c: Common, stop: &AtomicBool) -> anyhow::Result<()> {
    preflight()?;
    let base = c
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("bench-results/{}-all", utc_stamp())));
    let total: u64 = ScenarioKind::ALL
        .iter()
        .map(|k| scenario::planned_secs(*k, &settings(&c, base.clone())))
        .chain(
            TcpScenarioKind::ALL
                .iter()
                .map(|k| tcp_scenario::planned_secs(*k, &tcp_settings(*k, &c, base.clone()))),
        )
        .sum();
    if total > ALL_LIMIT_SECS {
        bail!(
            "`all` with --duration {} and --rounds {} would take about {total} s, over the {ALL_LIMIT_SECS} s bound; lower --duration or --rounds",
            c.duration,
            c.rounds
        );
    }
    let mut tables = String::new();
    for kind in ScenarioKind::ALL {
        let s = settings(&c, base.join(kind.name()));
        let (_, table) = scenario::run(kind, &s, stop)?;
        println!("{table}");
        tables.push_str(&table);
        tables.push('\n');
    }
    for kind in TcpScenarioKind::ALL {
        let s = tcp_settings(kind, &c, base.join(kind.name()));
        let (_, table) = tcp_scenario::run(kind, &s, stop)?;
        println!("{table}");
        tables.push_str(&table);
        tables.push('\n');
    }
    std::fs::write(base.join("summary.txt"), &tables)?;
    println!("reports: {}", base.display());
    Ok(())
}
