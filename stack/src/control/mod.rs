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
mod client;
mod render;

pub use client::*;
pub use render::*;

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

/// `text` quoted, cut to its first `QUOTED` characters.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTED) {
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
        None => format!("{text:?}"),
    }
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
