//! The control channel: a running fastpath answers `fastpath stats` over a Unix socket
//! (`/run/fastpath/IFACE.sock` by default). One request line in, one JSON document out;
//! the data path is never touched: the answer is built from the counters the workers
//! publish, the XDP maps and XDP_STATISTICS.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::net::{UnixListener, UnixStream},
    },
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::{
    api::Stack,
    socket::SocketInfo,
    steer::{Steering, describe_rule},
    worker::QueueShared,
    xsk::{FrameCounts, kernel_stats},
};

pub const CONTROL_DIR: &str = "/run/fastpath";

pub fn default_path(iface: &str) -> PathBuf {
    Path::new(CONTROL_DIR).join(format!("{iface}.sock"))
}

/// One queue as the control plane sees it.
pub struct QueueHandle {
    pub queue: u32,
    pub fd: Arc<OwnedFd>,
    pub shared: Arc<QueueShared>,
    pub zero_copy: bool,
    /// The worker's capture tap.
    pub tap: Arc<crate::capture::CaptureTap>,
}

pub struct ControlState {
    pub steering: Arc<Steering>,
    pub stack: Stack,
    pub queues: Vec<QueueHandle>,
    pub service: String,
    pub started: Instant,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct QueueStats {
    pub queue: u32,
    /// The pinned core, or null if unpinned.
    pub cpu: Option<u64>,
    pub zero_copy: bool,
    pub rx: u64,
    pub tx: u64,
    /// Frames the kernel could not receive because the fill ring was empty.
    pub fill_empty: u64,
    /// Replies dropped because the TX ring was full.
    pub tx_full: u64,
    /// Frames the kernel dropped for this socket (no fill frame, or larger than a frame).
    pub rx_dropped: u64,
    pub rx_ring_full: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// Every counter by name (the worker's, the demux's, the protocols').
    pub counters: BTreeMap<String, u64>,
    /// The same counters by the layer that counts them.
    #[serde(default)]
    pub layers: BTreeMap<String, BTreeMap<String, u64>>,
    pub frames: FrameCountsJson,
    pub ledger_errors: u64,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct FrameCountsJson {
    pub free: u32,
    pub fill: u32,
    pub rx: u32,
    pub in_use: u32,
    pub tx: u32,
    pub completion: u32,
}

impl From<FrameCounts> for FrameCountsJson {
    fn from(f: FrameCounts) -> Self {
        Self {
            free: f.free,
            fill: f.fill,
            rx: f.rx,
            in_use: f.in_use,
            tx: f.tx,
            completion: f.completion,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatsReport {
    pub iface: String,
    pub pid: u32,
    pub mode: String,
    pub service: String,
    pub uptime_secs: f64,
    pub rules: Vec<String>,
    /// XDP outcomes summed over CPUs: steered, passed, malformed, no_socket, fragment.
    pub xdp: BTreeMap<String, u64>,
    pub queues: Vec<QueueStats>,
}

impl ControlState {
    pub fn report(&self) -> StatsReport {
        let queues = self
            .queues
            .iter()
            .map(|q| {
                let k = kernel_stats(q.fd.as_raw_fd()).unwrap_or_default();
                let snapshot = q.shared.counters();
                let counters = snapshot
                    .iter()
                    .map(|(_, name, value)| (name.to_string(), *value))
                    .collect();
                let mut layers: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
                for (layer, name, value) in &snapshot {
                    layers
                        .entry(layer.to_string())
                        .or_default()
                        .insert(name.to_string(), *value);
                }
                let cpu = q.shared.cpu();
                QueueStats {
                    queue: q.queue,
                    cpu: (cpu != u64::MAX).then_some(cpu),
                    zero_copy: q.zero_copy,
                    rx: q.shared.counter("rx"),
                    tx: q.shared.counter("tx"),
                    fill_empty: k.rx_fill_ring_empty_descs,
                    tx_full: q.shared.counter("tx_full"),
                    rx_dropped: k.rx_dropped,
                    rx_ring_full: k.rx_ring_full,
                    rx_invalid_descs: k.rx_invalid_descs,
                    tx_invalid_descs: k.tx_invalid_descs,
                    counters,
                    layers,
                    frames: q.shared.frames().into(),
                    ledger_errors: q.shared.ledger_errors(),
                }
            })
            .collect();
        StatsReport {
            iface: self.steering.iface().to_string(),
            pid: std::process::id(),
            mode: format!("{:?}", self.steering.mode()).to_lowercase(),
            service: self.service.clone(),
            uptime_secs: self.started.elapsed().as_secs_f64(),
            rules: self.steering.rules().iter().map(describe_rule).collect(),
            xdp: self
                .steering
                .counters()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            queues,
        }
    }
}

/// Claims `path` for this process: fails if another live fastpath answers there,
/// removes a stale socket left by one that died.
pub fn claim(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!(
                "another fastpath is running on this interface (its control socket {} answers); stop it first, or pass a different --control path",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale control socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot listen on control socket {}", path.display()))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves requests until `stop` is set, then removes the socket file.
pub fn serve(
    listener: UnixListener,
    path: PathBuf,
    state: Arc<ControlState>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("fastpath-control".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(e) = answer(stream, &state) {
                            log::debug!("control request: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => {
                        log::warn!("control socket: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
            let _ = std::fs::remove_file(&path);
        })
}

fn answer(stream: UnixStream, state: &ControlState) -> anyhow::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    let mut out = &stream;
    match line.trim() {
        "stats" => {
            serde_json::to_writer(&mut out, &state.report())?;
        }
        "sockets" => {
            serde_json::to_writer(&mut out, &state.stack.sockets())?;
        }
        close if close.starts_with("close ") => {
            let answer = match close["close ".len()..].trim().parse::<u32>() {
                Ok(n) => match state.stack.close_number(n) {
                    Ok(s) => serde_json::json!({ "closed": s.get(), "generation": s.generation() }),
                    Err(e) => serde_json::json!({ "error": e.to_string() }),
                },
                Err(_) => serde_json::json!({ "error": "close takes a socket number" }),
            };
            serde_json::to_writer(&mut out, &answer)?;
        }
        other => {
            serde_json::to_writer(
                &mut out,
                &serde_json::json!({ "error": format!("unknown request {other:?}; known: stats, sockets, close N") }),
            )?;
        }
    }
    out.write_all(b"\n")?;
    Ok(())
}

/// Finds the control socket to talk to: `explicit`, else the interface's, else the
/// only one in /run/fastpath.
pub fn locate(explicit: Option<&Path>, iface: Option<&str>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(iface) = iface {
        return Ok(default_path(iface));
    }
    let found: Vec<PathBuf> = std::fs::read_dir(CONTROL_DIR)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "sock"))
                .collect()
        })
        .unwrap_or_default();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "no running fastpath found (no control socket in {CONTROL_DIR}); start one with `fastpath echo --iface IF --udp PORT`, or pass --control PATH"
        ),
        many => bail!(
            "several fastpath instances are running ({}); choose one with --iface IF",
            many.iter()
                .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Asks a running fastpath for `request` and parses the answer.
fn request<T: serde::de::DeserializeOwned>(path: &Path, request: &str) -> anyhow::Result<T> {
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "no fastpath answers at {} (is it running? start it with `fastpath echo`)",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    serde_json::from_str(&reply)
        .with_context(|| format!("unexpected answer from {}", path.display()))
}

/// Asks a running fastpath to close socket `number`; its error, if any, as the error.
pub fn request_close(path: &Path, number: u32) -> anyhow::Result<u32> {
    let answer: serde_json::Value = request(path, &format!("close {number}"))?;
    if let Some(e) = answer.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("{e}");
    }
    Ok(answer["closed"].as_u64().unwrap_or_default() as u32)
}

/// Asks a running fastpath for its sockets.
pub fn request_sockets(path: &Path) -> anyhow::Result<Vec<SocketInfo>> {
    request(path, "sockets")
}

/// The `ss`-like table of `fastpath sockets`.
pub fn render_sockets(rows: &[SocketInfo]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>6} {:<5} {:<22} {:<22} {:<10} {:<6} {:<10} {:>8} {:>10} {:>10} {:>10}",
        "number",
        "proto",
        "local",
        "remote",
        "state",
        "worker",
        "delivery",
        "queued",
        "rx",
        "tx",
        "drops"
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{:>6} {:<5} {:<22} {:<22} {:<10} {:<6} {:<10} {:>8} {:>10} {:>10} {:>10}",
            r.number,
            r.proto,
            r.local,
            r.remote,
            r.state,
            r.worker,
            r.delivery,
            r.queued_bytes,
            r.rx,
            r.tx,
            r.drops_queue_full
        );
    }
    s
}

/// Asks a running fastpath for its statistics.
pub fn request_stats(path: &Path) -> anyhow::Result<StatsReport> {
    request(path, "stats")
}

/// The human table of `fastpath stats`.
pub fn render_table(r: &StatsReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "fastpath pid {} on {} ({} mode), {}, up {:.1}s",
        r.pid, r.iface, r.mode, r.service, r.uptime_secs
    );
    let _ = writeln!(
        s,
        "rules: {}",
        if r.rules.is_empty() {
            "none".into()
        } else {
            r.rules.join(", ")
        }
    );
    let _ = writeln!(s, "\nXDP program (all CPUs)");
    for (k, v) in &r.xdp {
        let _ = writeln!(s, "  {k:<12} {v:>12}");
    }
    let _ = writeln!(
        s,
        "\n{:>5} {:>4} {:>12} {:>12} {:>10} {:>8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10}",
        "queue",
        "cpu",
        "rx",
        "tx",
        "fill_empty",
        "tx_full",
        "rx_dropped",
        "replied",
        "malformed",
        "checksum",
        "no_socket",
        "queue_full"
    );
    for q in &r.queues {
        let c = |k: &str| q.counters.get(k).copied().unwrap_or(0);
        let _ = writeln!(
            s,
            "{:>5} {:>4} {:>12} {:>12} {:>10} {:>8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10}",
            q.queue,
            q.cpu.map_or("-".to_string(), |c| c.to_string()),
            q.rx,
            q.tx,
            q.fill_empty,
            q.tx_full,
            q.rx_dropped,
            c("replied"),
            c("drop_malformed"),
            c("drop_checksum"),
            c("drop_no_socket"),
            c("drop_queue_full"),
        );
    }
    s
}
