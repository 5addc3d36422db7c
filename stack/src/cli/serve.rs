//! `fastpath serve`: static files over HTTP/1.1 on the workers.
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    sync::atomic::Ordering,
    time::Duration,
};

use anyhow::Context;
use fastpath::runtime::Runtime;

use super::stack::StackArgs;

#[derive(clap::Args)]
pub(crate) struct ServeArgs {
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
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0, value_parser = super::parse_seconds)]
    idle_timeout: f64,
    /// Seconds one request may take to arrive (slow clients); then 408 and close.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0, value_parser = super::parse_seconds)]
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

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<()> {
    use fastpath::app::http::{HttpConfig, HttpServer, HttpStats, Site, delta};
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
