//! The `fastpath` command: parses the command line and starts things.

use std::{
    path::PathBuf,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use fastpath::{
    control::{self, ControlState, QueueHandle},
    echo::{EchoService, ReflectService, RxChecksum, Service},
    steer::{AttachMode, Steering, describe_rule},
    system,
    worker::{self, IdleStrategy, QueueShared, WorkerConfig},
    xsk::{BindMode, XskConfig, XskSocket},
};
use fastpath_common::{IPPROTO_UDP, RuleKey};

#[derive(Parser)]
#[command(
    name = "fastpath",
    version,
    about = "Kernel-bypass UDP fast path: XDP steers the ports you name into AF_XDP sockets served by pinned workers",
    long_about = "Kernel-bypass UDP fast path.\n\n\
        An XDP program steers the flows you name (protocol and destination port) into AF_XDP \
        sockets, one per RX queue; a pinned worker per queue answers them in userspace. \
        Everything else (ARP, ping, other ports) still goes to the kernel.\n\n\
        Examples:\n  \
        fastpath echo --iface eth1 --udp 7000            # UDP echo on port 7000\n  \
        fastpath echo --iface eth1 --udp 53 --udp 7777 --queues 2\n  \
        fastpath stats --iface eth1                      # counters of the running instance\n  \
        fastpath stats --iface eth1 --json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve UDP echo on the fast path: each datagram to a --udp port comes back to its sender.
    Echo(EchoArgs),
    /// Bench ceiling: bounce steered UDP frames straight back with no stack (no validation).
    Reflect(EchoArgs),
    /// Show the counters of a running fastpath: XDP outcomes and per-queue ring counters.
    Stats(StatsArgs),
}

#[derive(clap::Args)]
struct EchoArgs {
    /// Interface to attach to (e.g. a veth end); must exist in this network namespace.
    #[arg(long, short = 'i', value_name = "IF")]
    iface: String,
    /// UDP port to serve (repeat for more). Other ports keep going to the kernel.
    #[arg(long = "udp", value_name = "PORT", required = true, allow_negative_numbers = true, value_parser = clap::value_parser!(u16).range(1..))]
    udp: Vec<u16>,
    /// Serve only datagrams to this destination address (default: any address).
    #[arg(long, value_name = "IPV4")]
    addr: Option<std::net::Ipv4Addr>,
    /// Number of RX queues to serve, one pinned worker each (default: all of the interface's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    queues: Option<u32>,
    /// Where the XDP program runs: in the driver (native) or after skb allocation (generic).
    #[arg(long, value_enum, default_value = "driver")]
    mode: AttachMode,
    /// AF_XDP bind: zero-copy where the driver supports it, else copy (veth: copy only).
    #[arg(long, value_enum, default_value = "auto")]
    bind: BindMode,
    /// What a worker does when no frame is waiting (hybrid adapts: spins on a core of its
    /// own, sleeps on a shared one).
    #[arg(long, value_enum, default_value = "hybrid")]
    idle: IdleStrategy,
    /// How received UDP checksums are judged (see the README's design section).
    #[arg(long, value_enum, default_value = "accept-partial")]
    rx_checksum: RxChecksum,
    /// Answer like `sockperf server`: clear the client bit of sockperf's message flags.
    #[arg(long)]
    sockperf: bool,
    /// UMEM frame size in bytes.
    #[arg(long, default_value_t = 4096, value_parser = parse_frame_size)]
    frame_size: u32,
    /// Frames per queue (UMEM size = frames × frame size).
    #[arg(long, default_value_t = 4096, value_parser = parse_frame_count)]
    frames: u32,
    /// Frames handled per batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1024))]
    batch: u32,
    /// Cores to pin the workers to, in queue order (default: queue N on core N mod cores).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Control socket path (default: /run/fastpath/IF.sock).
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Stop by itself after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
}

fn parse_frame_size(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(v @ (2048 | 4096)) => Ok(v),
        _ => Err(format!("{s} is not a frame size: use 2048 or 4096")),
    }
}

fn parse_frame_count(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(v) if v.is_power_of_two() && (64..=262_144).contains(&v) => Ok(v),
        _ => Err(format!("{s} frames: use a power of two from 64 to 262144")),
    }
}

#[derive(clap::Args)]
struct StatsArgs {
    /// Interface of the instance to ask (default: the only one running).
    #[arg(long, short = 'i', value_name = "IF")]
    iface: Option<String>,
    /// Control socket path of the instance to ask.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

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
            // One line: clap's first line, which names the argument and the problem.
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!(
                "fastpath: {} (see `fastpath --help`)",
                first.trim_start_matches("error: ")
            );
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .format_target(false)
        .init();
    let result = match cli.command {
        Command::Echo(args) => echo(args, false),
        Command::Reflect(args) => echo(args, true),
        Command::Stats(args) => stats(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = format!("{e:#}");
            eprintln!("fastpath: {}", text.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let path = control::locate(args.control.as_deref(), args.iface.as_deref())?;
    let report = control::request_stats(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", control::render_table(&report));
    }
    Ok(())
}

fn echo(args: EchoArgs, reflect: bool) -> anyhow::Result<()> {
    let ifindex = system::ifindex(&args.iface)?;
    system::check_privileges()?;
    let available = system::rx_queue_count(&args.iface);
    let queues = args.queues.unwrap_or(available);
    if queues > available {
        bail!(
            "{} has {available} RX queue(s) but --queues {queues} was asked; lower --queues (see `ethtool -l {}`)",
            args.iface,
            args.iface
        );
    }
    let cores = core_affinity::get_core_ids().map_or(1, |c| c.len()).max(1);
    let control_path = args
        .control
        .clone()
        .unwrap_or_else(|| control::default_path(&args.iface));
    let listener = control::claim(&control_path)?;

    let steering = Steering::attach(&args.iface, args.mode)?;
    log::info!("attached XDP to {} in {:?} mode", args.iface, args.mode);

    let config = XskConfig {
        frame_size: args.frame_size,
        frame_count: args.frames,
        ring_size: (args.frames / 2).clamp(64, 4096),
        bind_mode: args.bind,
    };
    let mut sockets = Vec::new();
    for queue in 0..queues {
        let socket = XskSocket::open(ifindex, queue, &config).map_err(|e| {
            anyhow::anyhow!(
                "{e}; check that queue {queue} exists on {} and no other AF_XDP socket is bound to it",
                args.iface
            )
        })?;
        steering.register_socket(queue, &*socket.fd())?;
        sockets.push(socket);
    }

    let addr = args.addr.map_or([0; 4], |a| a.octets());
    let mut rules = Vec::new();
    for &port in &args.udp {
        let key = RuleKey::new(IPPROTO_UDP, addr, port);
        rules.push(steering.add_rule(key)?);
    }

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("installing signal handlers")?;
    }
    let service = if reflect {
        Service::Reflect(ReflectService)
    } else {
        Service::Echo(EchoService::new(&args.udp, args.rx_checksum, args.sockperf))
    };
    let mut handles = Vec::new();
    let mut queue_handles = Vec::new();
    for socket in sockets {
        let queue = socket.queue();
        let cpu = args
            .cpus
            .get(queue as usize)
            .copied()
            .unwrap_or(queue as usize % cores);
        let shared = Arc::new(QueueShared::default());
        queue_handles.push(QueueHandle {
            queue,
            fd: socket.fd(),
            shared: shared.clone(),
            zero_copy: socket.zero_copy(),
        });
        log::info!(
            "queue {queue}: AF_XDP socket ({}) on core {cpu}",
            if socket.zero_copy() {
                "zero-copy"
            } else {
                "copy"
            }
        );
        let worker_config = WorkerConfig {
            batch: args.batch,
            idle: args.idle,
            cpu: Some(cpu),
        };
        handles.push(worker::spawn(
            socket,
            service.clone(),
            shared,
            stop.clone(),
            worker_config,
        )?);
    }
    let service_name = format!(
        "udp {}{} on {}",
        if reflect { "reflect" } else { "echo" },
        if args.sockperf { " (sockperf)" } else { "" },
        rules
            .iter()
            .map(|r| describe_rule(&r.key()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let state = Arc::new(ControlState {
        steering: steering.clone(),
        queues: queue_handles,
        service: service_name.clone(),
        started: Instant::now(),
    });
    let control_thread =
        control::serve(listener, control_path.clone(), state.clone(), stop.clone())?;
    log::info!(
        "serving {service_name} with {queues} worker(s); stats: fastpath stats --control {}; Ctrl-C stops",
        control_path.display()
    );

    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    while !stop.load(Ordering::Relaxed) {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        if handles.iter().any(|h| h.is_finished()) {
            stop.store(true, Ordering::Relaxed);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    log::info!("stopping");
    let mut ledger_errors = 0;
    for h in handles {
        match h.join() {
            Ok(socket) => ledger_errors += socket.ledger_errors(),
            Err(_) => bail!("a worker panicked"),
        }
    }
    let final_report = state.report();
    let _ = control_thread.join();
    drop(rules);
    let total: u64 = final_report.queues.iter().map(|q| q.rx).sum();
    log::info!(
        "stopped: {total} frames received, XDP {:?}, ledger errors {ledger_errors}",
        final_report.xdp
    );
    Ok(())
}
