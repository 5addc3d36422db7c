//! The control channel: a running fastpath answers `fastpath stats`, `sockets` and `close`
//! over a Unix socket (`/run/fastpath/IFACE.sock` by default). One request line of at most
//! `MAX_REQUEST` bytes in, one JSON document out; the data path is never touched: the
//! answer is built from the counters the workers publish, the XDP maps and XDP_STATISTICS.
//! Without `--iface`, the client finds the instance by its socket in /run/fastpath,
//! skipping (and removing) those of killed instances.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
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

pub mod capture;

use capture::CaptureRequest;

use crate::{
    api::Stack,
    phy::{
        capture::{Capture, PcapSink},
        worker::QueueShared,
        xsk::{FrameCounts, kernel_stats},
    },
    socket::{SocketInfo, table::Protocol},
    steer::{Steering, describe_rule},
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
    pub tap: Arc<crate::phy::capture::CaptureTap>,
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
                        if let Err(e) = answer(stream, &state, &stop) {
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

/// The longest request line the server reads; the longest real one is `close N`.
pub const MAX_REQUEST: usize = 4096;
/// How much of an unknown request the error quotes back.
const QUOTED: usize = 64;

fn answer(stream: UnixStream, state: &ControlState, stop: &Arc<AtomicBool>) -> anyhow::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    // Read one byte past the bound, so an oversized request is told from one that fits.
    let mut raw = Vec::new();
    BufReader::new((&stream).take(MAX_REQUEST as u64 + 1)).read_until(b'\n', &mut raw)?;
    let mut out = &stream;
    if raw.is_empty() {
        // Connected and closed without a word: discovery checking that we are alive.
        return Ok(());
    }
    if raw.len() > MAX_REQUEST {
        serde_json::to_writer(
            &mut out,
            &serde_json::json!({ "error": format!("request longer than {MAX_REQUEST} bytes; known: stats, sockets, close N, capture {{json}}") }),
        )?;
        out.write_all(b"\n")?;
        return Ok(());
    }
    let line = String::from_utf8_lossy(&raw);
    match line.trim() {
        "stats" => {
            serde_json::to_writer(&mut out, &state.report())?;
        }
        "sockets" => {
            serde_json::to_writer(&mut out, &state.stack.sockets())?;
        }
        capture if capture.starts_with("capture ") => {
            let request = serde_json::from_str::<CaptureRequest>(&capture["capture ".len()..]);
            let started = request
                .map_err(|e| format!("a capture request is `capture {{json}}`: {e}"))
                .and_then(|request| {
                    start_capture(
                        stream.try_clone().map_err(|e| e.to_string())?,
                        request,
                        state,
                        stop,
                    )
                });
            if let Err(e) = started {
                serde_json::to_writer(&mut out, &serde_json::json!({ "error": e }))?;
                out.write_all(b"\n")?;
            }
            return Ok(());
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
                &serde_json::json!({ "error": format!("unknown request {}; known: stats, sockets, close N", quote(other)) }),
            )?;
        }
    }
    out.write_all(b"\n")?;
    Ok(())
}

/// Starts a capture for a `fastpath capture` client on a thread of its own (the control
/// thread goes on answering), after a one-line `{"ok":true}`; the frames follow (see
/// `capture::serve`).
fn start_capture(
    mut stream: UnixStream,
    mut request: CaptureRequest,
    state: &ControlState,
    stop: &Arc<AtomicBool>,
) -> Result<(), String> {
    if let Some(number) = request.socket {
        let info = state
            .stack
            .sockets()
            .into_iter()
            .find(|s| s.number == number)
            .ok_or_else(|| format!("no socket {number} is open (see `fastpath sockets`)"))?;
        request.filter.proto = Some(if info.proto == "tcp" {
            Protocol::Tcp
        } else {
            Protocol::Udp
        });
        request.filter.port = info
            .local
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok());
        request.filter.peer = info.remote.parse().ok();
    }
    let taps: Vec<_> = state.queues.iter().map(|q| q.tap.clone()).collect();
    let stop = stop.clone();
    // Copying starts before the client hears "ok": what it sends after that is captured.
    let capture = Capture::start(&taps, request.filter);
    stream
        .write_all(b"{\"ok\":true}\n")
        .map_err(|e| e.to_string())?;
    std::thread::Builder::new()
        .name("fastpath-capture".into())
        .spawn(
            move || match capture::serve(capture, &request, &mut stream, &stop) {
                Ok(summary) => log::info!(
                    "capture ended ({}): {} frames, {} dropped",
                    summary.reason,
                    summary.captured,
                    summary.dropped
                ),
                Err(e) => log::info!("capture ended: the client left ({e})"),
            },
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Asks a running fastpath to capture, and writes what it streams as pcap to `out` until
/// the count or duration is reached or `stop` (Ctrl-C) is set.
pub fn request_capture<W: std::io::Write>(
    path: &Path,
    request: &CaptureRequest,
    out: W,
    stop: &AtomicBool,
) -> anyhow::Result<capture::CaptureSummary> {
    let mut stream = UnixStream::connect(path).with_context(|| {
        format!(
            "no fastpath answers at {} (is it running? start it with `fastpath echo`)",
            path.display()
        )
    })?;
    stream.write_all(format!("capture {}\n", serde_json::to_string(request)?).as_bytes())?;
    // The acknowledgement, byte by byte: what follows it is the binary stream.
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut ack = Vec::new();
    let mut byte = [0u8; 1];
    while byte[0] != b'\n' && ack.len() < MAX_REQUEST {
        std::io::Read::read_exact(&mut stream, &mut byte)
            .with_context(|| format!("no answer from {}", path.display()))?;
        ack.push(byte[0]);
    }
    let ack: serde_json::Value = serde_json::from_slice(&ack)
        .with_context(|| format!("unexpected answer from {}", path.display()))?;
    if let Some(e) = ack.get("error").and_then(|e| e.as_str()) {
        bail!("{e}");
    }
    eprintln!("fastpath: capturing; Ctrl-C stops and leaves a valid file");
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut sink = PcapSink::new(out)?;
    let summary = capture::receive(&mut stream, &mut sink, stop)?;
    sink.flush()?;
    Ok(summary)
}

/// `text` quoted, cut to its first `QUOTED` characters.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTED) {
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
        None => format!("{text:?}"),
    }
}

/// Finds the control socket to talk to: `explicit`, else the interface's, else the one
/// running instance in /run/fastpath (see `discover` and `choose`).
pub fn locate(explicit: Option<&Path>, iface: Option<&str>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(iface) = iface {
        return Ok(default_path(iface));
    }
    let found = discover(Path::new(CONTROL_DIR));
    choose(&found, |iface| crate::system::ifindex(iface).is_ok())
}

/// A control socket found in the control directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub path: PathBuf,
    /// The interface its name says (`IF.sock`).
    pub iface: String,
}

/// What discovery found: the instances that may be alive, and how many dead ones it removed.
#[derive(Debug, Default)]
pub struct Discovery {
    pub live: Vec<Instance>,
    pub removed: usize,
}

/// The control sockets in `dir`, less those of instances that died. A socket nobody
/// listens on refuses a connect (ECONNREFUSED): its owner was killed before it could remove
/// it, and it is removed here. Anything else — a connect that succeeds, or one the listener
/// is too busy to take at once (EAGAIN), or an error that proves nothing — counts as alive.
pub fn discover(dir: &Path) -> Discovery {
    let mut found = Discovery::default();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sock"))
        .collect();
    paths.sort();
    for path in paths {
        match probe(&path) {
            Probe::Alive => found.live.push(Instance {
                iface: path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                path,
            }),
            Probe::Dead => {
                if remove_stale(&path) {
                    log::debug!("removed the stale control socket {}", path.display());
                    found.removed += 1;
                }
            }
            Probe::Gone => {}
        }
    }
    found
}

/// Picks the instance to ask: the only live one; of several, the only one whose interface
/// exists in the caller's network namespace (`here`). The control directory is shared by
/// every namespace, so instances in other namespaces show up there too.
pub fn choose(found: &Discovery, here: impl Fn(&str) -> bool) -> anyhow::Result<PathBuf> {
    let names = |list: &[&Instance]| {
        list.iter()
            .map(|i| i.iface.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let all: Vec<&Instance> = found.live.iter().collect();
    match all.as_slice() {
        [one] => return Ok(one.path.clone()),
        [] => {
            let removed = match found.removed {
                0 => String::new(),
                n => format!(
                    ", removed {n} stale control socket{} of instances that died",
                    if n == 1 { "" } else { "s" }
                ),
            };
            bail!(
                "no running fastpath found (no live control socket in {CONTROL_DIR}{removed}); start one with `fastpath echo --iface IF --udp PORT`, or pass --control PATH"
            )
        }
        _ => {}
    }
    let local: Vec<&Instance> = all.iter().copied().filter(|i| here(&i.iface)).collect();
    match local.as_slice() {
        [one] => Ok(one.path.clone()),
        [] => bail!(
            "several fastpath instances are running ({}), none on an interface of this network namespace; choose one with --iface IF",
            names(&all)
        ),
        many => bail!(
            "several fastpath instances are running in this network namespace ({}); choose one with --iface IF",
            names(many)
        ),
    }
}

enum Probe {
    /// Accepts connections, or may: leave it.
    Alive,
    /// Refuses connections: no process listens there any more.
    Dead,
    /// Removed since the directory was read.
    Gone,
}

/// A non-blocking connect: it never waits for a busy owner (a full backlog is EAGAIN,
/// which we count as alive), and refusal is immediate for a dead one.
fn probe(path: &Path) -> Probe {
    match connect_nonblocking(path) {
        Ok(()) => Probe::Alive,
        Err(e) => match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => Probe::Dead,
            Some(libc::ENOENT) => Probe::Gone,
            // EAGAIN: alive and busy. EACCES and the rest prove nothing: keep it, so a
            // request to it fails with its own error rather than the socket vanishing.
            _ => Probe::Alive,
        },
    }
}

fn connect_nonblocking(path: &Path) -> std::io::Result<()> {
    use std::os::{fd::FromRawFd, unix::ffi::OsStrExt};
    // Safety: socket(2) with constant arguments; the result is checked below.
    let raw = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Safety: `raw` is a descriptor we just opened and own; OwnedFd closes it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Safety: sockaddr_un is plain integers; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    // Leave room for the terminating NUL.
    if bytes.len() >= addr.sun_path.len() {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let len = std::mem::offset_of!(libc::sockaddr_un, sun_path) + bytes.len() + 1;
    // Safety: `addr` is a valid sockaddr_un of at least `len` bytes and `fd` is open.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&raw const addr).cast::<libc::sockaddr>(),
            len as libc::socklen_t,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    match std::io::Error::last_os_error() {
        e if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINPROGRESS)) => Ok(()),
        e => Err(e),
    }
}

/// Removes the socket file at `path` if it is still the one that refused us: a new
/// instance may have claimed the name in between (it removes the stale file and binds a
/// new one), and its socket must stay. The window between the last check and the unlink
/// is a few system calls long; `claim` has the same one.
fn remove_stale(path: &Path) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let Ok(before) = std::fs::symlink_metadata(path) else {
        return false;
    };
    // Connecting to a file that is not a socket is refused too: leave such files alone.
    if !before.file_type().is_socket() {
        return false;
    }
    if !matches!(probe(path), Probe::Dead) {
        return false;
    }
    match std::fs::symlink_metadata(path) {
        Ok(after) if after.ino() == before.ino() && after.dev() == before.dev() => {
            std::fs::remove_file(path).is_ok()
        }
        _ => false,
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
        let _ = write!(
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
        // A TCP connection also shows its queues, window and RTT, as `ss -ti` does.
        if let Some(t) = &r.tcp {
            let _ = write!(
                s,
                "  send-q {} recv-q {} cwnd {} in-flight {} srtt {} rttvar {}us rto {}us retrans {}",
                t.send_queued,
                t.recv_queued,
                t.cwnd,
                t.in_flight,
                t.srtt_us.map_or("-".into(), |v| format!("{v}us")),
                t.rttvar_us,
                t.rto_us,
                t.retransmits
            );
        }
        s.push('\n');
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

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("fastpath-control-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn discovery_removes_the_sockets_of_dead_instances_only() {
        let dir = temp_dir("discover");
        let _alive = UnixListener::bind(dir.join("live0.sock")).unwrap();
        // A listener dropped without unlinking its file: what SIGKILL leaves behind.
        drop(UnixListener::bind(dir.join("dead0.sock")).unwrap());
        // Not a socket: refused as well (so not an instance), but not ours to remove.
        std::fs::write(dir.join("file0.sock"), b"").unwrap();
        let found = discover(&dir);
        assert_eq!(found.removed, 1);
        assert!(!dir.join("dead0.sock").exists());
        assert!(dir.join("file0.sock").exists());
        let names: Vec<&str> = found.live.iter().map(|i| i.iface.as_str()).collect();
        assert_eq!(names, ["live0"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn instances(names: &[&str]) -> Discovery {
        Discovery {
            live: names
                .iter()
                .map(|n| Instance {
                    path: default_path(n),
                    iface: n.to_string(),
                })
                .collect(),
            removed: 0,
        }
    }

    #[test]
    fn of_several_instances_the_one_in_this_namespace_is_chosen() {
        let here = |iface: &str| iface == "veth1";
        assert_eq!(
            choose(&instances(&["eth0"]), here).unwrap(),
            default_path("eth0"),
            "the only one, wherever it runs"
        );
        assert_eq!(
            choose(&instances(&["eth0", "veth1"]), here).unwrap(),
            default_path("veth1")
        );
        let err = choose(&instances(&["eth0", "eth2"]), here).unwrap_err();
        assert!(
            err.to_string()
                .contains("none on an interface of this network namespace")
        );
        let err = choose(&instances(&["veth1", "eth0"]), |_| true).unwrap_err();
        assert!(err.to_string().contains("--iface"), "{err}");
        let none = Discovery {
            live: Vec::new(),
            removed: 2,
        };
        let err = choose(&none, here).unwrap_err().to_string();
        assert!(
            err.contains("no running fastpath") && err.contains("removed 2 stale"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_request_is_quoted_short() {
        assert_eq!(quote("stat"), "\"stat\"");
        let long = "x".repeat(3000);
        let quoted = quote(&long);
        assert!(
            quoted.len() < 100 && quoted.ends_with("… (3000 bytes)"),
            "{quoted}"
        );
        // Cut on a character boundary.
        assert!(quote(&"é".repeat(100)).contains("(200 bytes)"));
    }
}
