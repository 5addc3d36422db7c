//! The `fastpath` command: parses the command line and starts things.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    process::ExitCode,
    sync::atomic::Ordering,
    time::Duration,
};

use anyhow::Context;
use clap::{Parser, Subcommand};
use fastpath::{
    api::Stack,
    control,
    echo::{EchoApp, TcpEcho},
    runtime::{Runtime, StackConfig},
    steer::{AttachMode, XdpLogLevel},
    table::SocketNumber,
    udp::Delivery,
    udp::RxChecksum,
    worker::IdleStrategy,
    xsk::BindMode,
};

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
        fastpath echo --iface eth1 --tcp 7100            # TCP echo on port 7100\n  \
        fastpath stats --iface eth1                      # counters of the running instance\n  \
        fastpath stats --iface eth1 --json\n  \
        fastpath echo --iface eth1 --udp-peer 7001=198.18.0.2:5000   # a connected socket\n  \
        fastpath sockets --iface eth1                    # the sockets, like ss\n  \
        fastpath close 2 --iface eth1                    # close socket 2"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve UDP echo on the fast path: each datagram to a --udp port comes back to its sender.
    Echo(EchoArgs),
    /// Serve static files over HTTP/1.1 on the fast path: GET and HEAD from a directory read
    /// into memory at start, with keep-alive, pipelining and conditional GET, run to
    /// completion on the workers. The kernel keeps every other port.
    #[command(
        after_help = "Examples:\n  fastpath serve --iface eth1 --port 80 --root ./site\n  fastpath serve --iface eth1 --port 8080 --root /srv/www --queues 2 --idle-timeout 5\n  curl http://ADDR:8080/index.html      (from another host: not from this one's own stack)\n\nEvery second with traffic it logs one line: requests, bytes in and out, responses by class\nand each error status seen. `fastpath sockets` and `fastpath stats` work as for echo.\nThe route /bench answers a fixed 20-byte body (for load generators) unless --no-bench-route."
    )]
    Serve(ServeArgs),
    /// Bench line rate: send one pre-built MTU-sized UDP frame out of IF through AF_XDP as
    /// fast as the ring allows, with no stack, and print what left as JSON (for the test bed
    /// only: the destination must be a receiver you run, e.g. `fastpath echo --udp-sink`).
    Blast(BlastArgs),
    /// Bench ceiling: bounce steered UDP frames straight back with no stack (no validation).
    Reflect(EchoArgs),
    /// Show the counters of a running fastpath: XDP outcomes and per-queue ring counters.
    Stats(StatsArgs),
    /// List the sockets of a running fastpath, like `ss`: number, protocol, local, remote, state.
    Sockets(StatsArgs),
    /// Close a socket of a running fastpath by number; its steering rule goes with the last
    /// socket on its port, and the kernel gets that port back.
    Close(CloseArgs),
    /// Copy the frames a running fastpath receives and sends into a pcap file. tcpdump on the
    /// interface cannot see them: XDP hands them to fastpath before the kernel's taps.
    #[command(
        after_help = "Examples:\n  fastpath capture --port 7000 --count 100 -w echo.pcap\n  fastpath capture --socket 3 --duration 10 -w - | tcpdump -nr -\n  fastpath capture --proto tcp -w all-tcp.pcap      (until Ctrl-C)"
    )]
    Capture(CaptureArgs),
}

#[derive(clap::Args)]
struct CaptureArgs {
    /// Interface of the instance to ask (default: the only one running).
    #[arg(long, short = 'i', value_name = "IF")]
    iface: Option<String>,
    /// Control socket path of the instance to ask.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Only the frames of this socket (its protocol, local port and, if connected, peer),
    /// by the number `fastpath sockets` shows.
    #[arg(long, value_name = "N", conflicts_with_all = ["port", "proto"])]
    socket: Option<u32>,
    /// Only frames from or to this port.
    #[arg(long, value_name = "P", value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
    /// Only this protocol.
    #[arg(long, value_enum)]
    proto: Option<CaptureProto>,
    /// Stop after this many frames.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this many seconds (default: until --count, or Ctrl-C).
    #[arg(long, value_name = "S")]
    duration: Option<f64>,
    /// The pcap file to write (nanosecond timestamps); `-` writes to standard output.
    #[arg(short = 'w', value_name = "FILE")]
    write: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CaptureProto {
    Tcp,
    Udp,
}

#[derive(clap::Args)]
struct EchoArgs {
    /// UDP port to serve (repeat for more). Other ports keep going to the kernel.
    #[arg(long = "udp", value_name = "PORT", allow_negative_numbers = true, value_parser = clap::value_parser!(u16).range(1..))]
    udp: Vec<u16>,
    /// TCP port to serve echo on, on the workers (repeat for more): each connection gets
    /// back what it sends, and is closed once the peer closes.
    #[arg(long = "tcp", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    tcp: Vec<u16>,
    /// Per-worker SYN queue of each --tcp listener (SYN cookies beyond it).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65536))]
    tcp_backlog: u64,
    /// Serve only datagrams to this destination address (default: any address).
    #[arg(long, value_name = "IPV4")]
    addr: Option<std::net::Ipv4Addr>,
    /// A connected echo socket: local PORT, answering only REMOTE (IP:PORT). Repeatable.
    #[arg(long = "udp-peer", value_name = "PORT=IP:PORT", value_parser = parse_peer)]
    udp_peer: Vec<(u16, SocketAddrV4)>,
    /// TCP echo served from ordinary threads through the any-thread API (accept, then a
    /// read/write loop per connection on its own thread). Repeatable.
    #[arg(long = "tcp-thread", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    tcp_thread: Vec<u16>,
    /// Echo on PORT from an ordinary thread through the thread-safe socket API
    /// (recv_from/send_to) instead of on the workers. Repeatable.
    #[arg(long = "udp-thread", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    udp_thread: Vec<u16>,
    /// Bind PORT with a receive queue that nothing reads (shows queue-full drops). Repeatable.
    #[arg(long = "udp-sink", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    udp_sink: Vec<u16>,
    /// Receive queue depth of --udp-thread and --udp-sink sockets, in datagrams.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65536))]
    queue_depth: u64,
    /// Answer like `sockperf server`: clear the client bit of sockperf's message flags.
    #[arg(long)]
    sockperf: bool,
    #[command(flatten)]
    stack: StackArgs,
}

#[derive(clap::Args)]
struct BlastArgs {
    /// Interface to send from (must exist in this network namespace).
    #[arg(long, short = 'i', value_name = "IF")]
    iface: String,
    /// TX queue to send on.
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Source address and port of the frames.
    #[arg(long, value_name = "IP:PORT")]
    src: SocketAddrV4,
    /// Destination address and port.
    #[arg(long, value_name = "IP:PORT")]
    dst: SocketAddrV4,
    /// Destination MAC (the receiver's interface), e.g. 02:00:00:00:00:02.
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    dst_mac: [u8; 6],
    /// Ethernet frame length (default: the interface's MTU + 14, a full-sized frame).
    #[arg(long, value_name = "BYTES")]
    frame_len: Option<usize>,
    /// Seconds to send.
    #[arg(long, default_value_t = 5.0, value_parser = parse_seconds)]
    duration: f64,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("{s:?} is not a MAC address like 02:00:00:00:00:02"));
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?} is not a MAC address"))?;
    }
    Ok(mac)
}

fn blast(args: BlastArgs) -> anyhow::Result<()> {
    let src_mac = fastpath::system::mac_address(&args.iface).with_context(|| {
        format!(
            "interface {:?} is not in this network namespace (list them with `ip link`)",
            args.iface
        )
    })?;
    let frame_len = match args.frame_len {
        Some(n) => n,
        None => {
            let mtu: usize = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", args.iface))?
                .trim()
                .parse()?;
            mtu + 14
        }
    };
    let spec = fastpath::blast::BlastSpec {
        iface: args.iface,
        queue: args.queue,
        src_mac,
        dst_mac: args.dst_mac,
        src: args.src,
        dst: args.dst,
        frame_len,
        duration: Duration::from_secs_f64(args.duration),
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let report = fastpath::blast::blast(&spec, &stop)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TCP port to serve HTTP on.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// Directory whose files are served (read into memory at start; symlinks that lead out
    /// of it are refused).
    #[arg(long, value_name = "DIR")]
    root: PathBuf,
    /// Serve only connections to this address (default: any address).
    #[arg(long, value_name = "IPV4")]
    addr: Option<Ipv4Addr>,
    /// Per-worker SYN queue (SYN cookies beyond it).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=65536))]
    backlog: u64,
    /// Seconds a connection may wait with no request under way; then 408 and close.
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = parse_seconds)]
    idle_timeout: f64,
    /// Seconds one request may take to arrive (slow clients); then 408 and close.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = parse_seconds)]
    request_timeout: f64,
    /// Header fields per request; more is 431.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=128))]
    max_headers: u64,
    /// Bytes of request line and header fields together; more is 431.
    #[arg(long, value_name = "BYTES", default_value_t = 8192, value_parser = clap::value_parser!(u64).range(256..=65536))]
    max_header_bytes: u64,
    /// Bytes of the request-target; longer is 414 (must be below --max-header-bytes).
    #[arg(long, value_name = "BYTES", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(16..=65535))]
    max_uri_bytes: u64,
    /// Bytes of a request body (read and dropped: no route takes one); more is 413.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    max_body_bytes: u64,
    /// Bytes of all files together; a larger directory is refused at start.
    #[arg(long, value_name = "BYTES", default_value_t = 256 << 20)]
    max_site_bytes: u64,
    /// Do not answer the fixed benchmark route /bench.
    #[arg(long)]
    no_bench_route: bool,
    #[command(flatten)]
    stack: StackArgs,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("{s} is not a number of seconds from 0 to 86400")),
    }
}

/// What every serving command takes: the interface, the queues and workers, the XDP and
/// AF_XDP settings, the control socket, capture and impairment, and how long to run.
#[derive(clap::Args)]
struct StackArgs {
    /// Interface to attach to (e.g. a veth end); must exist in this network namespace.
    #[arg(long, short = 'i', value_name = "IF")]
    iface: String,
    /// Number of RX queues to serve, one pinned worker each (default: all of the interface's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    queues: Option<u32>,
    /// Where the XDP program runs: in the driver (native) or after skb allocation (generic).
    #[arg(long, value_enum, default_value = "driver")]
    mode: AttachMode,
    /// What the XDP program logs: `warn` reports events that should never happen (at most
    /// once a second per CPU), `debug` also why each steered frame was judged malformed.
    /// Fixed at load; a disabled level costs nothing per frame.
    #[arg(long, value_enum, default_value = "warn")]
    xdp_log: XdpLogLevel,
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
    /// Capture every frame the workers receive and send into this pcap file, from start to
    /// stop (for one flow at a time while running, see `fastpath capture`).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
    /// Impair the frames between the rings and the stack, seeded and deterministic (a device
    /// for tests): e.g. loss=2%,dup=1%,reorder=10%,corrupt=0.1%,delay=5ms,seed=7; rx-KEY or
    /// tx-KEY for one direction. What it did shows under "impair" in `fastpath stats`.
    #[arg(long, value_name = "FAULTS")]
    impair: Option<fastpath::impair::ImpairConfig>,
    /// Stop by itself after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
}

impl StackArgs {
    fn config(&self, reflect: bool) -> StackConfig {
        StackConfig {
            iface: self.iface.clone(),
            queues: self.queues,
            mode: self.mode,
            xdp_log: self.xdp_log,
            bind: self.bind,
            idle: self.idle,
            rx_checksum: self.rx_checksum,
            frame_size: self.frame_size,
            frames: self.frames,
            batch: self.batch,
            cpus: self.cpus.clone(),
            control: self.control.clone(),
            reflect,
            pcap: self.pcap.clone(),
            impair: self.impair,
        }
    }

    fn duration(&self) -> Option<Duration> {
        self.duration.map(|s| Duration::from_secs_f64(s.max(0.0)))
    }
}

fn parse_peer(s: &str) -> Result<(u16, SocketAddrV4), String> {
    let (port, remote) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not PORT=IP:PORT (e.g. 7001=198.18.0.2:5000)"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port"))?;
    let remote: SocketAddrV4 = remote
        .parse()
        .map_err(|_| format!("{remote:?} is not IP:PORT"))?;
    if port == 0 || remote.port() == 0 {
        return Err("ports must be above 0".into());
    }
    Ok((port, remote))
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
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Print every counter in the Prometheus text exposition format.
    #[arg(long)]
    prometheus: bool,
    /// Serve the Prometheus metrics at http://ADDR:PORT/metrics (an ordinary kernel socket)
    /// until Ctrl-C, for a scraper.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with_all = ["json", "prometheus"])]
    listen: Option<String>,
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
            eprintln!("fastpath: {} (see `fastpath --help`)", one_line(&e));
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        // The XDP program's records (aya-log): what it emits is chosen by --xdp-log at load.
        .filter_module("fastpath_xdp", log::LevelFilter::Debug)
        .format_timestamp(None)
        .format_target(false)
        .init();
    let result = match cli.command {
        Command::Echo(args) => echo(args, false),
        Command::Serve(args) => serve(args),
        Command::Blast(args) => blast(args),
        Command::Reflect(args) => echo(args, true),
        Command::Stats(args) => stats(args),
        Command::Capture(args) => capture(args),
        Command::Sockets(args) => sockets(args),
        Command::Close(args) => close(args),
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

/// A clap error on one line. Its first line alone can lose the point ("the following
/// required arguments were not provided:" names them on the next line), so every line that
/// carries content is kept and the usage and "For more information" paragraphs are dropped.
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

#[derive(clap::Args)]
struct CloseArgs {
    /// The socket's number, as `fastpath sockets` shows it.
    number: u32,
    #[command(flatten)]
    target: StatsArgs,
}

fn close(args: CloseArgs) -> anyhow::Result<()> {
    let path = control::locate(args.target.control.as_deref(), args.target.iface.as_deref())?;
    let n = control::request_close(&path, args.number)?;
    println!("closed socket {n}");
    Ok(())
}

fn sockets(args: StatsArgs) -> anyhow::Result<()> {
    let path = control::locate(args.control.as_deref(), args.iface.as_deref())?;
    let rows = control::request_sockets(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", control::render_sockets(&rows));
    }
    Ok(())
}

fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let path = control::locate(args.control.as_deref(), args.iface.as_deref())?;
    let metrics = |path: &std::path::Path| -> anyhow::Result<String> {
        let report = control::request_stats(path)?;
        let sockets = control::request_sockets(path)?;
        Ok(fastpath::metrics::render(&report, &sockets))
    };
    if let Some(addr) = &args.listen {
        let stop = interrupt_flag()?;
        return fastpath::metrics::serve(addr, &stop, || metrics(&path));
    }
    if args.prometheus {
        print!("{}", metrics(&path)?);
        return Ok(());
    }
    let report = control::request_stats(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", control::render_table(&report));
    }
    Ok(())
}

/// A flag that Ctrl-C and SIGTERM set.
fn interrupt_flag() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    Ok(stop)
}

fn capture(args: CaptureArgs) -> anyhow::Result<()> {
    let path = control::locate(args.control.as_deref(), args.iface.as_deref())?;
    let request = fastpath::capture::CaptureRequest {
        filter: fastpath::capture::CaptureFilter {
            proto: args.proto.map(|p| match p {
                CaptureProto::Tcp => fastpath::table::Protocol::Tcp,
                CaptureProto::Udp => fastpath::table::Protocol::Udp,
            }),
            port: args.port,
            peer: None,
        },
        socket: args.socket,
        count: args.count,
        duration_ms: args.duration.map(|s| (s.max(0.0) * 1000.0) as u64),
    };
    let stop = interrupt_flag()?;
    let (summary, target) = if args.write.as_os_str() == "-" {
        let out = std::io::stdout().lock();
        (
            control::request_capture(&path, &request, out, &stop)?,
            "standard output".to_string(),
        )
    } else {
        let file = std::fs::File::create(&args.write)
            .with_context(|| format!("cannot create {}", args.write.display()))?;
        (
            control::request_capture(&path, &request, file, &stop)?,
            args.write.display().to_string(),
        )
    };
    eprintln!(
        "fastpath: captured {} frames to {target} ({}){}",
        summary.captured,
        summary.reason,
        if summary.dropped > 0 {
            format!(
                "; {} more matched but found no room in the capture ring (it is drained every 5 ms: narrow the filter)",
                summary.dropped
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

fn echo(args: EchoArgs, reflect: bool) -> anyhow::Result<()> {
    if args.udp.is_empty()
        && args.tcp.is_empty()
        && args.udp_peer.is_empty()
        && args.udp_thread.is_empty()
        && args.tcp_thread.is_empty()
        && args.udp_sink.is_empty()
    {
        anyhow::bail!(
            "no port to serve: name at least one with --udp PORT or --tcp PORT (or --udp-peer, --udp-thread, --udp-sink)"
        );
    }
    let config = args.stack.config(reflect);
    let runtime = Runtime::start(config)?;
    let stack = runtime.stack().clone();
    let addr = args.addr.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let echo = EchoApp {
        sockperf: args.sockperf,
    };
    let mut served = Vec::new();
    for &port in &args.udp {
        let n = stack.udp_bind(
            SocketAddrV4::new(addr, port),
            None,
            Delivery::on_worker(echo),
        )?;
        served.push(format!("socket {n}: udp {addr}:{port} echo"));
    }
    for &port in &args.tcp {
        let n = stack.tcp_listen(
            SocketAddrV4::new(addr, port),
            args.tcp_backlog as usize,
            std::sync::Arc::new(TcpEcho),
        )?;
        served.push(format!("socket {n}: tcp {addr}:{port} echo"));
    }
    for &(port, remote) in &args.udp_peer {
        let n = stack.udp_bind(
            SocketAddrV4::new(addr, port),
            Some(remote),
            Delivery::on_worker(echo),
        )?;
        served.push(format!("socket {n}: udp {addr}:{port} ⇄ {remote} echo"));
    }
    let depth = args.queue_depth as usize;
    for &port in &args.udp_sink {
        let n = stack.udp_bind(
            SocketAddrV4::new(addr, port),
            None,
            Delivery::Queue { depth },
        )?;
        served.push(format!("socket {n}: udp {addr}:{port} sink (never read)"));
    }
    let stop = runtime.stop_flag();
    let mut threads = Vec::new();
    for &port in &args.udp_thread {
        let n = stack.udp_bind(
            SocketAddrV4::new(addr, port),
            None,
            Delivery::Queue { depth },
        )?;
        served.push(format!("socket {n}: udp {addr}:{port} echo from a thread"));
        let (stack, stop) = (stack.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("echo-{port}"))
                .spawn(move || thread_echo(&stack, n, &stop))?,
        );
    }
    for &port in &args.tcp_thread {
        let n = stack.tcp_listen_queued(
            SocketAddrV4::new(addr, port),
            args.tcp_backlog as usize,
            1024,
        )?;
        served.push(format!("socket {n}: tcp {addr}:{port} echo from threads"));
        let (stack, stop) = (stack.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("accept-{port}"))
                .spawn(move || tcp_thread_accept(&stack, n, &stop))?,
        );
    }
    if reflect {
        served.push("reflect: every steered frame bounced back (no stack)".into());
    }
    log::info!(
        "serving {}; stats: fastpath stats --control {}; Ctrl-C stops",
        served.join(", "),
        runtime.control_path().display()
    );
    let summary = runtime.run(args.stack.duration())?;
    for t in threads {
        let _ = t.join();
    }
    log::info!("{summary}");
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use fastpath::http::{HttpConfig, HttpServer, HttpStats, Site, delta};
    let config = HttpConfig {
        max_headers: args.max_headers as usize,
        max_header_bytes: args.max_header_bytes as usize,
        max_uri_bytes: args.max_uri_bytes as usize,
        max_body_bytes: args.max_body_bytes,
        idle_timeout: Duration::from_secs_f64(args.idle_timeout),
        request_timeout: Duration::from_secs_f64(args.request_timeout),
        max_site_bytes: args.max_site_bytes,
        bench_route: !args.no_bench_route,
        ..HttpConfig::default()
    };
    // The site first: a bad --root fails before anything is attached.
    let site = Site::load(&args.root, config).with_context(|| {
        format!(
            "cannot serve {}: give --root an existing directory of files, within --max-site-bytes",
            args.root.display()
        )
    })?;
    let files = site.files.len();
    let bytes = site.files.total_bytes();
    let runtime = Runtime::start(args.stack.config(false))?;
    let stack = runtime.stack().clone();
    let server = HttpServer::new(std::sync::Arc::new(site), runtime.workers());
    let stats = server.stats();
    let addr = args.addr.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let n = stack.tcp_listen_with(
        SocketAddrV4::new(addr, args.port),
        args.backlog as usize,
        std::sync::Arc::new(server),
        |c| c.nagle = false,
    )?;
    log::info!(
        "socket {n}: http {addr}:{} serving {files} files ({bytes} bytes) from {} on {} workers; stats: fastpath stats --control {}; Ctrl-C stops",
        args.port,
        args.root.display(),
        runtime.workers(),
        runtime.control_path().display()
    );
    let stop = runtime.stop_flag();
    let summary = std::thread::Builder::new()
        .name("http-summary".into())
        .spawn(move || {
            let mut before = HttpStats::default();
            let mut tick = std::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if tick.elapsed() < Duration::from_secs(1) {
                    continue;
                }
                tick += Duration::from_secs(1);
                let now = stats.total();
                let d = delta(&now, &before);
                if d != HttpStats::default() {
                    log::info!("http: {d}");
                }
                before = now;
            }
            stats.total()
        })?;
    let report = runtime.run(args.stack.duration())?;
    if let Ok(total) = summary.join() {
        log::info!("http total: {total}");
    }
    log::info!("{report}");
    Ok(())
}

/// The any-thread TCP API in use: accept connections, each served by its own thread.
fn tcp_thread_accept(stack: &Stack, listener: SocketNumber, stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match stack.tcp_accept(listener, Duration::from_millis(100)) {
            Ok(n) => {
                let stack = stack.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("tcp-echo-{n}"))
                    .spawn(move || tcp_thread_echo(&stack, n));
                if let Err(e) = spawned {
                    log::warn!("socket {n}: no thread to serve it: {e}");
                }
            }
            Err(fastpath::api::ApiError::TimedOut) => {}
            Err(e) => {
                log::warn!("socket {listener}: accept: {e}");
                return;
            }
        }
    }
}

/// Reads and writes back until the peer's FIN, then closes.
fn tcp_thread_echo(stack: &Stack, n: SocketNumber) {
    let mut buf = vec![0u8; 64 * 1024];
    let idle = Duration::from_secs(60);
    loop {
        let got = match stack.tcp_read(n, &mut buf, idle) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) => {
                log::debug!("socket {n}: read: {e}");
                break;
            }
        };
        let mut off = 0;
        while off < got {
            match stack.tcp_write(n, &buf[off..got], idle) {
                Ok(w) => off += w,
                Err(e) => {
                    log::debug!("socket {n}: write: {e}");
                    let _ = stack.tcp_close(n);
                    return;
                }
            }
        }
    }
    let _ = stack.tcp_close(n);
}

/// The thread-safe API in use: take each datagram from the socket's queue, send it back.
fn thread_echo(stack: &Stack, number: SocketNumber, stop: &std::sync::atomic::AtomicBool) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match stack.recv_from(number, &mut buf, Duration::from_millis(100)) {
            Ok((n, from)) => {
                if let Err(e) = stack.send_to(number, &buf[..n], from) {
                    log::warn!("socket {number}: send_to {from}: {e}");
                }
            }
            Err(fastpath::api::ApiError::TimedOut) => {}
            Err(e) => {
                log::warn!("socket {number}: {e}");
                return;
            }
        }
    }
}
