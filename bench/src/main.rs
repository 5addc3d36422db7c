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
    capacity, kernel_echo,
    netns::{CLIENT_ADDR, SERVER_ADDR, VethConfig, VethPair},
    process::{FastpathProcess, fastpath_binary},
    scenario::{self, ScenarioKind, Settings},
};

#[derive(Parser)]
#[command(
    name = "fastpath-bench",
    about = "fastpath against the kernel on a veth pair, side by side in one run",
    long_about = "Runs a scenario against fastpath and against a kernel-stack server doing the same work, \
on the same veth pair between two fresh network namespaces, alternating A B A B, and writes a report: \
a table, .hgrm percentile files, HdrHistogram logs, report.json and a latency plot.\n\n\
Examples:\n  cargo xtask bench udp-pingpong --duration 5\n  cargo xtask bench udp-flood --rate 200000\n  cargo xtask bench all --out bench-results/today"
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
    /// Every scenario, each into its own folder under --out (bounded to 10 minutes).
    All(Common),
    /// The demo: fastpath's UDP echo on a fresh veth pair, checked and compared with the kernel.
    Demo {
        /// Seconds for each rate measurement.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=60))]
        duration: u64,
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
                "fastpath-bench: {} (scenarios: udp-pingpong, udp-flood, ceiling, udp-capacity, all; see --help)",
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
        Command::Demo { duration } => demo(duration, &stop),
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

fn all(c: Common, stop: &AtomicBool) -> anyhow::Result<()> {
    preflight()?;
    let base = c
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("bench-results/{}-all", utc_stamp())));
    let total: u64 = ScenarioKind::ALL
        .iter()
        .map(|k| scenario::planned_secs(*k, &settings(&c, base.clone())))
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
    std::fs::write(base.join("summary.txt"), &tables)?;
    println!("reports: {}", base.display());
    Ok(())
}

fn demo(duration: u64, stop: &AtomicBool) -> anyhow::Result<()> {
    preflight()?;
    println!("fastpath demo");
    let pair = VethPair::create(VethConfig {
        queues: 2,
        ..VethConfig::default()
    })?;
    println!(
        "  test bed: namespaces {} ({SERVER_ADDR}) and {} ({CLIENT_ADDR}) joined by veth {} ⇄ {}, 2 queues",
        pair.server.netns, pair.client.netns, pair.server.iface, pair.client.iface
    );
    let fastpath = FastpathProcess::start_echo(&pair, &["--udp", "7000", "--queues", "2"])?;
    println!(
        "  started: fastpath echo --iface {} --udp 7000 --queues 2",
        pair.server.iface
    );

    // Correctness: kernel sockets in the peer namespace, several flows, sizes up to the MTU.
    let sockets: Vec<std::net::UdpSocket> = (0..8)
        .map(|_| {
            VethPair::in_netns(&pair.client, || {
                let s = std::net::UdpSocket::bind((CLIENT_ADDR, 0))?;
                s.set_read_timeout(Some(Duration::from_millis(300)))?;
                s.connect((SERVER_ADDR, 7000))?;
                Ok::<_, std::io::Error>(s)
            })
        })
        .collect::<Result<_, _>>()?;
    let (mut ok, mut total) = (0, 0);
    for (i, size) in [1usize, 64, 512, 1400, 1472]
        .iter()
        .cycle()
        .take(200)
        .enumerate()
    {
        let s = &sockets[i % sockets.len()];
        let payload: Vec<u8> = (0..*size).map(|b| (b + i) as u8).collect();
        total += 1;
        s.send(&payload)?;
        let mut buf = [0u8; 2048];
        if let Ok(n) = s.recv(&mut buf) {
            ok += usize::from(buf[..n] == payload[..]);
        }
    }
    println!("  {ok} of {total} datagrams (1 to 1472 bytes, 8 flows) came back byte-identical");
    let ping = pair
        .client_command("ping")
        .args([
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "1",
            "-q",
            &SERVER_ADDR.to_string(),
        ])
        .output()?;
    println!(
        "  ping {SERVER_ADDR} (not steered, answered by the kernel): {}",
        if ping.status.success() {
            "ok"
        } else {
            "FAILED"
        }
    );
    let sockets = std::process::Command::new(fastpath_binary()?)
        .args(["sockets", "--control"])
        .arg(fastpath.control())
        .output()?;
    println!(
        "\n$ fastpath sockets\n{}",
        String::from_utf8_lossy(&sockets.stdout)
    );
    let stats = std::process::Command::new(fastpath_binary()?)
        .args(["stats", "--control"])
        .arg(fastpath.control())
        .output()?;
    println!(
        "\n$ fastpath stats\n{}",
        String::from_utf8_lossy(&stats.stdout)
    );
    drop(fastpath);
    drop(pair);

    println!(
        "echo rate, fastpath against a kernel UDP echo server (recvmmsg/sendmmsg), {duration} s each:"
    );
    let out = PathBuf::from(format!("bench-results/{}-demo", utc_stamp()));
    let c = Common {
        out: Some(out.clone()),
        duration,
        rate: None,
        rounds: 1,
        payload: 64,
        outstanding: 64,
        queues: 1,
        mtu: 1500,
        peer_checksum_offload: "on".into(),
        fastpath_args: String::new(),
        server_core: None,
        client_core: None,
        baseline_bin: None,
        with_capture: false,
    };
    let (_, table) = scenario::run(ScenarioKind::UdpFlood, &settings(&c, out.clone()), stop)?;
    print!("{table}");
    println!("report: {}", out.display());
    if ok != total {
        bail!("{} datagrams were not echoed correctly", total - ok);
    }
    Ok(())
}
