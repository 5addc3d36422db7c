//! The harness's TCP load generator: kernel sockets, one thread pinned to the client core,
//! TCP_NODELAY on every connection. Call [`run`] on a thread inside the client namespace
//! (`netns::in_netns`): the sockets it opens live there.
//!
//! - request/response (`tcp-rr`): N connections, each with one request outstanding; each
//!   round trip (request written → whole response read) is one histogram sample. One
//!   connection blocks in read as sockperf does; more are driven by epoll.
//! - connect/request/response/close (`tcp-crr`): one transaction at a time, each timed from
//!   before `socket()` to after `close()`.
//! - bulk (`tcp-bulk`): one connection writes as fast as it can while reading the echo back;
//!   the rate is bytes echoed back per second, and each write is timed until its last
//!   byte returns (a byte's round trip under load: the queues along the way).
//!
//! One loop runs warm-up and measurement: only transactions started inside the
//! measurement window count, and what is in flight when it ends is drained for a moment.
//! Every loop is bounded by time and by count and ends when `stop` is set.

use std::{
    collections::VecDeque,
    io,
    net::{SocketAddrV4, TcpStream},
    os::fd::{AsRawFd, RawFd},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::bail;
use hdrhistogram::Histogram;

use crate::generator::{new_histogram, pin_current_thread, thread_cpu_time};

/// Connects, reads and writes give up after this long (a server that stopped answering).
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// After the window: how long replies to requests sent inside it are still waited for.
const DRAIN: Duration = Duration::from_millis(200);
/// Bulk: bytes per write, as iperf3 writes by default.
const BULK_WRITE: usize = 128 * 1024;
const BULK_READ: usize = 256 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum TcpPattern {
    /// `connections` connections, one request outstanding on each.
    RequestResponse { connections: u32 },
    /// Connect, one request and its response, close; one transaction at a time.
    ConnectRequestResponse,
    /// One connection writing and reading back its echo at once.
    Bulk,
}

#[derive(Clone, Debug)]
pub struct TcpLoadSpec {
    pub pattern: TcpPattern,
    pub server: SocketAddrV4,
    /// Request and response bytes (rr, crr).
    pub payload: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Transactions (rr, crr) or bytes (bulk) at most, inside the window.
    pub max_count: u64,
    pub cpu: Option<usize>,
}

#[derive(Debug)]
pub struct TcpLoadResult {
    /// Round trips in nanoseconds: per transaction (rr, crr), per write (bulk).
    pub histogram: Histogram<u64>,
    /// Transactions started (rr, crr) or bytes written (bulk) inside the window.
    pub sent: u64,
    /// Of those, transactions completed or bytes echoed back.
    pub received: u64,
    /// Connections that failed (refused, reset, timed out, closed early).
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// CPU time of the generator thread inside the window.
    pub cpu_time: Duration,
}

impl TcpLoadResult {
    pub fn rate(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The measurement window and its counters, shared by the three patterns.
struct Window {
    epoch: Instant,
    start_ns: u64,
    end_ns: u64,
    max_count: u64,
    cpu_before: Option<Duration>,
    histogram: Histogram<u64>,
    sent: u64,
    received: u64,
    errors: u64,
    first_error: Option<String>,
    iterations: u32,
}

impl Window {
    fn new(spec: &TcpLoadSpec) -> Self {
        let start_ns = spec.warmup.as_nanos() as u64;
        Self {
            epoch: Instant::now(),
            start_ns,
            end_ns: start_ns + spec.duration.as_nanos() as u64,
            max_count: spec.max_count,
            cpu_before: None,
            histogram: new_histogram(),
            sent: 0,
            received: 0,
            errors: 0,
            first_error: None,
            iterations: 0,
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn inside(&self, at: u64) -> bool {
        at >= self.start_ns && at < self.end_ns
    }

    /// Whether new work may start at `now` (also takes the CPU time when the window opens).
    fn open(&mut self, now: u64, stop: &AtomicBool) -> anyhow::Result<bool> {
        self.iterations = self.iterations.wrapping_add(1);
        if self.iterations.is_multiple_of(16) && stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        if self.cpu_before.is_none() && now >= self.start_ns {
            self.cpu_before = Some(thread_cpu_time());
        }
        Ok(now < self.end_ns && self.sent < self.max_count)
    }

    /// A transaction (or write) started at `at`.
    fn started(&mut self, at: u64, count: u64) {
        if self.inside(at) {
            self.sent += count;
        }
    }

    /// A transaction started at `at` completed at `now`.
    fn completed(&mut self, at: u64, now: u64, count: u64) {
        if self.inside(at) {
            self.received += count;
            self.histogram
                .saturating_record(now.saturating_sub(at).max(1));
        }
    }

    fn error(&mut self, what: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what());
        }
    }

    fn finish(self) -> TcpLoadResult {
        let cpu_time = self.cpu_before.map_or(Duration::ZERO, |before| {
            thread_cpu_time().saturating_sub(before)
        });
        TcpLoadResult {
            histogram: self.histogram,
            sent: self.sent,
            received: self.received,
            errors: self.errors,
            first_error: self.first_error,
            elapsed: Duration::from_nanos(self.end_ns - self.start_ns),
            cpu_time,
        }
    }
}

/// Runs the load. Call it on a thread inside the client namespace; it pins that thread.
pub fn run(spec: &TcpLoadSpec, stop: &AtomicBool) -> anyhow::Result<TcpLoadResult> {
    if spec.payload == 0 {
        bail!("a request needs at least one byte");
    }
    if let Some(cpu) = spec.cpu {
        pin_current_thread(cpu);
    }
    let mut window = Window::new(spec);
    match spec.pattern {
        TcpPattern::RequestResponse { connections: 1 } => ping_pong(spec, &mut window, stop)?,
        TcpPattern::RequestResponse { connections } => {
            request_response(spec, connections as usize, &mut window, stop)?
        }
        TcpPattern::ConnectRequestResponse => connect_request_response(spec, &mut window, stop)?,
        TcpPattern::Bulk => bulk(spec, &mut window, stop)?,
    }
    Ok(window.finish())
}

fn connect(server: SocketAddrV4) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&server.into(), IO_TIMEOUT)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// One connection, one request outstanding: blocking write, blocking read (as sockperf).
fn ping_pong(spec: &TcpLoadSpec, w: &mut Window, stop: &AtomicBool) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut stream = connect(spec.server)?;
    stream.set_read_timeout(Some(Duration::from_millis(100)))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let request = vec![0x5a; spec.payload];
    let mut response = vec![0u8; spec.payload];
    while w.open(w.now(), stop)? {
        let at = w.now();
        if let Err(e) = stream.write_all(&request) {
            w.error(|| format!("write: {e}"));
            return Ok(());
        }
        w.started(at, 1);
        let mut got = 0;
        let give_up = at + IO_TIMEOUT.as_nanos() as u64;
        while got < spec.payload {
            match stream.read(&mut response[got..]) {
                Ok(0) => {
                    w.error(|| "the server closed the connection".into());
                    return Ok(());
                }
                Ok(n) => got += n,
                Err(e) if transient(&e) => {
                    if stop.load(Ordering::Relaxed) {
                        bail!("interrupted");
                    }
                    if w.now() > give_up {
                        w.error(|| format!("no response within {IO_TIMEOUT:?}"));
                        return Ok(());
                    }
                }
                Err(e) => {
                    w.error(|| format!("read: {e}"));
                    return Ok(());
                }
            }
        }
        let now = w.now();
        w.completed(at, now, 1);
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
    Ok(())
}

/// A connection of the epoll-driven request/response load.
struct RrConn {
    stream: TcpStream,
    /// When the outstanding request was written; None when nothing is outstanding.
    sent_at: Option<u64>,
    /// Response bytes read so far.
    got: usize,
}

/// N connections, one request outstanding on each, driven by epoll.
fn request_response(
    spec: &TcpLoadSpec,
    connections: usize,
    w: &mut Window,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = connect(spec.server)?;
        stream.set_nonblocking(true)?;
        conns.push(RrConn {
            stream,
            sent_at: None,
            got: 0,
        });
    }
    let epoll = Epoll::new()?;
    for (i, c) in conns.iter().enumerate() {
        epoll.add(c.stream.as_raw_fd(), libc::EPOLLIN as u32, i as u64)?;
    }
    let request = vec![0x5a; spec.payload];
    let mut buf = vec![0u8; spec.payload];
    for c in &mut conns {
        let at = w.now();
        if send_all(&c.stream, &request).is_ok() {
            c.sent_at = Some(at);
            w.started(at, 1);
        }
    }
    // Safety: a zeroed epoll_event is a valid value; epoll_wait fills them.
    let mut events: Vec<libc::epoll_event> = vec![unsafe { std::mem::zeroed() }; connections];
    let mut drain_until = None;
    loop {
        let now = w.now();
        let sending = w.open(now, stop)?;
        if !sending {
            let until = *drain_until.get_or_insert(now + DRAIN.as_nanos() as u64);
            if now >= until || conns.iter().all(|c| c.sent_at.is_none()) {
                break;
            }
        }
        let ready = epoll.wait(&mut events, 10)?;
        for event in &events[..ready] {
            let c = &mut conns[event.u64 as usize];
            let Some(at) = c.sent_at else { continue };
            // Safety: buf has room for the rest of the response.
            let n = unsafe {
                libc::read(
                    c.stream.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    spec.payload - c.got,
                )
            };
            if n <= 0 {
                let e = io::Error::last_os_error();
                if n < 0 && transient(&e) {
                    continue;
                }
                w.error(|| {
                    if n == 0 {
                        "the server closed a connection".into()
                    } else {
                        format!("read: {e}")
                    }
                });
                epoll.remove(c.stream.as_raw_fd());
                c.sent_at = None;
                continue;
            }
            c.got += n as usize;
            if c.got < spec.payload {
                continue;
            }
            let now = w.now();
            w.completed(at, now, 1);
            c.got = 0;
            c.sent_at = None;
            if sending && w.sent < w.max_count {
                match send_all(&c.stream, &request) {
                    Ok(()) => {
                        c.sent_at = Some(now);
                        w.started(now, 1);
                    }
                    Err(e) => {
                        w.error(|| format!("write: {e}"));
                        epoll.remove(c.stream.as_raw_fd());
                    }
                }
            }
        }
    }
    Ok(())
}

/// Writes all of a small request on a non-blocking socket (its send buffer is empty: one
/// request is outstanding at a time, so this never waits in practice).
fn send_all(stream: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let give_up = Instant::now() + IO_TIMEOUT;
    let mut s = stream;
    while !data.is_empty() {
        match s.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if transient(&e) && Instant::now() < give_up => std::thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// socket, connect, write, read, close: one transaction at a time, blocking with timeouts
/// (SO_SNDTIMEO bounds connect too).
fn connect_request_response(
    spec: &TcpLoadSpec,
    w: &mut Window,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let request = vec![0x5a; spec.payload];
    let mut response = vec![0u8; spec.payload];
    let addr = sockaddr(spec.server);
    while w.open(w.now(), stop)? {
        let at = w.now();
        match transaction(&addr, &request, &mut response) {
            Ok(()) => {
                let now = w.now();
                w.started(at, 1);
                w.completed(at, now, 1);
            }
            Err((step, e)) => {
                w.started(at, 1);
                w.error(|| format!("{step}: {e}"));
                // EADDRNOTAVAIL: no local port free; give TIME-WAIT a moment.
                if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    Ok(())
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A socket that closes itself.
struct Fd(RawFd);

impl Drop for Fd {
    fn drop(&mut self) {
        // Safety: the fd is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

/// The errno of a failed call, named by the step that failed.
type StepError = (&'static str, io::Error);

fn check(rc: libc::c_int, step: &'static str) -> Result<(), StepError> {
    if rc < 0 {
        return Err((step, io::Error::last_os_error()));
    }
    Ok(())
}

fn set_timeout(fd: RawFd, option: libc::c_int, t: Duration) -> Result<(), StepError> {
    let tv = libc::timeval {
        tv_sec: t.as_secs() as libc::time_t,
        tv_usec: t.subsec_micros() as libc::suseconds_t,
    };
    // Safety: a timeval and its size, on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    check(rc, "setsockopt")
}

fn transaction(
    addr: &libc::sockaddr_in,
    request: &[u8],
    response: &mut [u8],
) -> Result<(), StepError> {
    // Safety: socket has no preconditions.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    check(fd, "socket")?;
    let fd = Fd(fd);
    crate::kernel_tcp_echo::set_nodelay(fd.0);
    set_timeout(fd.0, libc::SO_SNDTIMEO, IO_TIMEOUT)?;
    set_timeout(fd.0, libc::SO_RCVTIMEO, IO_TIMEOUT)?;
    // Safety: addr is a sockaddr_in and its size.
    let rc = unsafe {
        libc::connect(
            fd.0,
            (addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
    };
    check(rc, "connect")?;
    // Safety: request is initialised; a fresh connection's send buffer takes it whole.
    let n = unsafe { libc::write(fd.0, request.as_ptr().cast(), request.len()) };
    if n < 0 {
        check(-1, "write")?;
    }
    if n as usize != request.len() {
        return Err((
            "write",
            io::Error::other("short write on a fresh connection"),
        ));
    }
    let mut got = 0;
    while got < response.len() {
        // Safety: the rest of response is ours to fill.
        let n = unsafe {
            libc::read(
                fd.0,
                response[got..].as_mut_ptr().cast(),
                response.len() - got,
            )
        };
        if n <= 0 {
            check(-1, "read")?;
            return Err((
                "read",
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed before the whole response",
                ),
            ));
        }
        got += n as usize;
    }
    drop(fd); // close(): FIN; the socket goes to TIME-WAIT once the server's FIN is in.
    Ok(())
}

/// One connection: write as fast as the window allows while reading the echo back.
fn bulk(spec: &TcpLoadSpec, w: &mut Window, stop: &AtomicBool) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut stream = connect(spec.server)?;
    stream.set_nonblocking(true)?;
    let out: Vec<u8> = (0..BULK_WRITE).map(|i| (i * 7) as u8).collect();
    let mut buf = vec![0u8; BULK_READ];
    // (stream offsets of a write's first byte and just past its last, when it was made)
    let mut writes: VecDeque<(u64, u64, u64)> = VecDeque::new();
    let (mut written, mut echoed) = (0u64, 0u64);
    let mut drain_until = None;
    let mut pfd = libc::pollfd {
        fd: stream.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    loop {
        let now = w.now();
        let sending = w.open(now, stop)?;
        if !sending {
            let until = *drain_until.get_or_insert(now + DRAIN.as_nanos() as u64);
            if now >= until || echoed == written {
                break;
            }
        }
        pfd.events = libc::POLLIN | if sending { libc::POLLOUT } else { 0 };
        // Safety: one pollfd we own.
        let rc = unsafe { libc::poll(&mut pfd, 1, 10) };
        if rc <= 0 {
            continue;
        }
        if pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0 && pfd.revents & libc::POLLIN == 0 {
            w.error(|| "the connection failed".into());
            return Ok(());
        }
        if sending && pfd.revents & libc::POLLOUT != 0 {
            match stream.write(&out) {
                Ok(n) => {
                    let at = w.now();
                    writes.push_back((written, written + n as u64, at));
                    written += n as u64;
                    w.started(at, n as u64);
                }
                Err(e) if transient(&e) => {}
                Err(e) => {
                    w.error(|| format!("write: {e}"));
                    return Ok(());
                }
            }
        }
        if pfd.revents & libc::POLLIN != 0 {
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => {
                        w.error(|| "the server closed the connection".into());
                        return Ok(());
                    }
                    Ok(n) => {
                        echoed += n as u64;
                        let now = w.now();
                        // A write counts once all of it came back.
                        while let Some(&(start, end, at)) = writes.front() {
                            if end > echoed {
                                break;
                            }
                            writes.pop_front();
                            w.completed(at, now, end - start);
                        }
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if transient(&e) => break,
                    Err(e) => {
                        w.error(|| format!("read: {e}"));
                        return Ok(());
                    }
                }
            }
        }
    }
    // A clean end: our FIN, the rest of the echo, the server's FIN.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let give_up = Instant::now() + IO_TIMEOUT;
    while Instant::now() < give_up {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if transient(&e) => std::thread::sleep(Duration::from_millis(1)),
            Err(_) => break,
        }
    }
    w.error(|| "the server did not close after the client's FIN".into());
    Ok(())
}

/// An epoll instance, closed when dropped.
struct Epoll(RawFd);

impl Epoll {
    fn new() -> io::Result<Self> {
        // Safety: epoll_create1 has no preconditions.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self(fd))
    }

    fn add(&self, fd: RawFd, events: u32, tag: u64) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: tag };
        // Safety: our epoll fd, a socket we own, an initialised event.
        if unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn remove(&self, fd: RawFd) {
        // Safety: our epoll fd; the event argument is ignored for DEL.
        unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        // Safety: events is a slice of initialised events the kernel may overwrite.
        let n = unsafe {
            libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, timeout_ms)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            };
        }
        Ok(n as usize)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // Safety: our epoll fd, closed once.
        unsafe { libc::close(self.0) };
    }
}
