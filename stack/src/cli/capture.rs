//! `fastpath capture`: the frames a running instance receives and sends, into pcap.
use std::path::PathBuf;

use anyhow::Context;
use fastpath::control;

#[derive(clap::Args)]
pub(crate) struct CaptureArgs {
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
pub(crate) enum CaptureProto {
    Tcp,
    Udp,
}

pub(crate) fn capture(args: CaptureArgs) -> anyhow::Result<()> {
    let path = control::locate(args.control.as_deref(), args.iface.as_deref())?;
    let request = fastpath::control::capture::CaptureRequest {
        filter: fastpath::phy::capture::CaptureFilter {
            proto: args.proto.map(|p| match p {
                CaptureProto::Tcp => fastpath::wire::Protocol::Tcp,
                CaptureProto::Udp => fastpath::wire::Protocol::Udp,
            }),
            port: args.port,
            peer: None,
        },
        socket: args.socket,
        count: args.count,
        duration_ms: args.duration.map(|s| (s.max(0.0) * 1000.0) as u64),
    };
    let stop = super::interrupt_flag()?;
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
