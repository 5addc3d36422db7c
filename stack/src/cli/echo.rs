//! `fastpath echo` and `fastpath reflect`: UDP and TCP echo in every form the library
//! offers (on the workers, connected, queued to threads, a sink), or the bench ceiling.
use std::net::{Ipv4Addr, SocketAddrV4};

use fastpath::{
    api::udp::Delivery,
    app::echo::{EchoApp, TcpEcho, tcp_thread_accept, udp_thread_echo},
    runtime::Runtime,
};

use super::stack::{StackArgs, parse_peer};

#[derive(clap::Args)]
pub(crate) struct EchoArgs {
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

pub(crate) fn echo(args: EchoArgs, reflect: bool) -> anyhow::Result<()> {
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
                .spawn(move || udp_thread_echo(&stack, n, &stop))?,
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
