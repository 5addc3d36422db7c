//! The options every serving subcommand shares: the interface, queues, XDP and AF_XDP
//! modes, the idle strategy, the checksum policy, UMEM sizes, pinning, capture and faults.
use std::{net::SocketAddrV4, path::PathBuf, time::Duration};

use fastpath::{
    phy::{worker::IdleStrategy, xsk::BindMode},
    runtime::{RxChecksum, StackConfig},
    steer::{AttachMode, XdpLogLevel},
};

/// What every serving command takes: the interface, the queues and workers, the XDP and
/// AF_XDP settings, the control socket, capture and impairment, and how long to run.
/// How received UDP and TCP checksums are judged (`RxChecksum`, as a command-line value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum RxChecksumArg {
    /// Full checksum, or none (UDP's zero), or the pseudo-header sum a local offloading
    /// peer sends.
    AcceptPartial,
    /// Full checksum or none; a partial one is dropped as bad.
    Strict,
    /// Do not verify checksums.
    Skip,
}

impl From<RxChecksumArg> for RxChecksum {
    fn from(arg: RxChecksumArg) -> Self {
        match arg {
            RxChecksumArg::AcceptPartial => RxChecksum::AcceptPartial,
            RxChecksumArg::Strict => RxChecksum::Strict,
            RxChecksumArg::Skip => RxChecksum::Skip,
        }
    }
}

#[derive(clap::Args)]
pub(crate) struct StackArgs {
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
    /// How received UDP and TCP checksums are judged (docs/design.md, iface).
    #[arg(long, value_enum, default_value = "accept-partial")]
    rx_checksum: RxChecksumArg,
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
    impair: Option<fastpath::phy::impair::ImpairConfig>,
    /// Stop by itself after this many seconds (default: run until Ctrl-C or SIGTERM).
    #[arg(long, value_name = "SECONDS")]
    duration: Option<f64>,
}

impl StackArgs {
    pub(crate) fn config(&self, reflect: bool) -> StackConfig {
        StackConfig {
            iface: self.iface.clone(),
            queues: self.queues,
            mode: self.mode,
            xdp_log: self.xdp_log,
            bind: self.bind,
            idle: self.idle,
            rx_checksum: self.rx_checksum.into(),
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

    pub(crate) fn duration(&self) -> Option<Duration> {
        self.duration.map(|s| Duration::from_secs_f64(s.max(0.0)))
    }
}

pub(crate) fn parse_peer(s: &str) -> Result<(u16, SocketAddrV4), String> {
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

pub(crate) fn parse_frame_size(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(v @ (2048 | 4096)) => Ok(v),
        _ => Err(format!("{s} is not a frame size: use 2048 or 4096")),
    }
}

pub(crate) fn parse_frame_count(s: &str) -> Result<u32, String> {
    match s.parse::<u32>() {
        Ok(v) if v.is_power_of_two() && (64..=262_144).contains(&v) => Ok(v),
        _ => Err(format!("{s} frames: use a power of two from 64 to 262144")),
    }
}
