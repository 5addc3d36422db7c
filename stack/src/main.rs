//! The `fastpath` command: parses the command line and hands each subcommand to its file
//! in `cli/`.

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cli::{
    blast::BlastArgs,
    capture::CaptureArgs,
    echo::EchoArgs,
    serve::ServeArgs,
    stats::{CloseArgs, StatsArgs},
};

#[derive(Parser)]
#[command(
    name = "fastpath",
    version,
    about = "Kernel-bypass UDP and TCP fast path: XDP steers the ports you name into AF_XDP sockets served by pinned workers",
    long_about = "Kernel-bypass UDP and TCP fast path.\n\n\
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
    /// Serve UDP and TCP echo on the fast path: what a --udp or --tcp port receives goes back
    /// to its sender.
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
        Command::Echo(args) => cli::echo::echo(args, false),
        Command::Serve(args) => cli::serve::serve(args),
        Command::Blast(args) => cli::blast::blast(args),
        Command::Reflect(args) => cli::echo::echo(args, true),
        Command::Stats(args) => cli::stats::stats(args),
        Command::Capture(args) => cli::capture::capture(args),
        Command::Sockets(args) => cli::stats::sockets(args),
        Command::Close(args) => cli::stats::close(args),
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
