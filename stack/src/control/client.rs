//! The client side of the control socket: finding the running instance (by interface, or
//! by the sockets in /run/fastpath, skipping those of killed instances) and its requests.

use std::{
    io::{BufRead, BufReader, Write},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::net::UnixStream,
    },
    path::{Path, PathBuf},
    sync::atomic::AtomicBool,
    time::Duration,
};

use anyhow::{Context, bail};

use super::*;

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

/// Asks a running fastpath for its statistics.
pub fn request_stats(path: &Path) -> anyhow::Result<StatsReport> {
    request(path, "stats")
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
