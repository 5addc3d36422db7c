//! TCP from any thread: `Stack::tcp_connect`, `tcp_read`, `tcp_write`, `tcp_shutdown` and
//! `tcp_close`. The connection stays on its owning worker; a call posts a command to that
//! worker's mailbox (and its eventfd) and blocks on a futex until the worker answered it.
//!
//! Copies: a read or a write carries the caller's buffer (pointer and length); the worker
//! copies straight between it and the connection's buffers, once. The caller never returns
//! before the worker has answered, and every command is answered: by the worker, or — once
//! the runtime stopped — by whoever drains the mailbox last (`Host::answer_stopped`).
//! A call that found nothing to do waits on the connection's event sequence (a futex the
//! worker bumps on every event, issuing the wake syscall only when a waiter registered),
//! never in a sleep loop.
//!
//! A TCP echo server on the fast path, one thread per connection:
//!
//! ```no_run
//! use std::time::Duration;
//! use fastpath::runtime::{Runtime, StackConfig};
//!
//! fn main() -> anyhow::Result<()> {
//!     let runtime = Runtime::start(StackConfig::new("veth0"))?;
//!     let stack = runtime.stack().clone();
//!     let listener = stack.tcp_listen_queued("0.0.0.0:7100".parse()?, 128, 64)?;
//!     std::thread::spawn(move || loop {
//!         let Ok(conn) = stack.tcp_accept(listener, Duration::from_secs(3600)) else { continue };
//!         let stack = stack.clone();
//!         std::thread::spawn(move || {
//!             let (mut buf, wait) = ([0u8; 16384], Duration::from_secs(60));
//!             while let Ok(n @ 1..) = stack.tcp_read(conn, &mut buf, wait) {
//!                 let mut at = 0;
//!                 while at < n {
//!                     let Ok(m) = stack.tcp_write(conn, &buf[at..n], wait) else { return };
//!                     at += m;
//!                 }
//!             }
//!             let _ = stack.tcp_close(conn);
//!         });
//!     });
//!     runtime.run(None)?; // until Ctrl-C or SIGTERM
//!     Ok(())
//! }
//! ```

use std::{
    net::SocketAddrV4,
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    api::{ApiError, Stack},
    socket::{Command, Socket},
    steer::RuleGuard,
    table::{FourTuple, Protocol, SocketNumber},
    wire::ethernet::MacAddr,
};

/// The local ports fastpath opens connections from. `Runtime::start` adds them to
/// `net.ipv4.ip_local_reserved_ports` so the kernel never hands them out itself.
pub const ACTIVE_PORTS: std::ops::RangeInclusive<u16> = 61000..=61999;

fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // Safety: FUTEX_WAIT on a live, aligned u32; the kernel only reads it and `ts`.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ts_ptr,
        )
    };
}

fn futex_wake_all(word: &AtomicU32) {
    // Safety: FUTEX_WAKE on an address; the kernel does not dereference it beyond lookup.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            i32::MAX,
        )
    };
}

/// An event sequence threads wait on and the worker bumps.
#[derive(Default)]
pub struct Signal {
    seq: AtomicU32,
    waiters: AtomicU32,
}

impl Signal {
    pub fn current(&self) -> u32 {
        self.seq.load(Ordering::Acquire)
    }

    /// Something happened: bump the sequence; wake only if somebody waits.
    pub fn notify(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            futex_wake_all(&self.seq);
        }
    }

    /// Waits until the sequence moved from `seen` or `deadline` passed.
    pub fn wait(&self, seen: u32, deadline: Instant) {
        self.waiters.fetch_add(1, Ordering::SeqCst);
        while self.seq.load(Ordering::SeqCst) == seen {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            futex_wait(&self.seq, seen, Some(deadline - now));
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
    }
}

const PENDING: u32 = 0;
const WAITED: u32 = 1;
const DONE: u32 = 2;

/// Results an `Op` carries besides a byte count.
pub const WOULD_BLOCK: i64 = -1;
pub const GONE: i64 = -2;
pub const STOPPED: i64 = -3;
pub const REFUSED: i64 = -4;

/// One command's answer: the worker stores the result, then marks it done.
pub struct Op {
    state: AtomicU32,
    result: AtomicI64,
    /// For a connect: the new connection's number.
    pub number: std::sync::Mutex<Option<SocketNumber>>,
}

impl Op {
    pub fn new() -> Arc<Op> {
        Arc::new(Op {
            state: AtomicU32::new(PENDING),
            result: AtomicI64::new(0),
            number: std::sync::Mutex::new(None),
        })
    }

    /// The worker's answer; after this it holds no pointer of the caller's.
    pub fn complete(&self, result: i64) {
        self.result.store(result, Ordering::Relaxed);
        if self.state.swap(DONE, Ordering::Release) == WAITED {
            futex_wake_all(&self.state);
        }
    }

    /// Blocks until answered (every command is: see the module comment).
    fn wait(&self) -> i64 {
        let _ = self
            .state
            .compare_exchange(PENDING, WAITED, Ordering::Acquire, Ordering::Acquire);
        while self.state.load(Ordering::Acquire) != DONE {
            futex_wait(&self.state, WAITED, None);
        }
        self.result.load(Ordering::Relaxed)
    }
}

/// What a thread asks of a connection.
pub enum OpKind {
    /// Copy up to `len` bytes into `ptr`.
    Read {
        ptr: *mut u8,
        len: usize,
    },
    /// Copy up to `len` bytes from `ptr`.
    Write {
        ptr: *const u8,
        len: usize,
    },
    Shutdown,
    Close,
}

// Safety: the pointers are the blocked caller's buffers, used only by the worker that
// answers the command, before it answers.
unsafe impl Send for OpKind {}

/// An active open, for the worker that will own it.
pub struct ConnectRequest {
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub dst_mac: MacAddr,
    pub rule: Option<RuleGuard>,
    pub op: Arc<Op>,
}

impl Stack {
    /// Posts `command` and waits for its answer; every posted command is answered.
    fn submit(&self, worker: usize, command: Command, op: &Op) -> Result<i64, ApiError> {
        let host = self.host();
        if host.is_stopped() {
            return Err(ApiError::Stopped);
        }
        if host.post(worker, command).is_err() {
            return Err(ApiError::TxQueueFull);
        }
        // Posted after the runtime drained the mailboxes: drain them ourselves.
        if host.is_stopped() {
            host.answer_stopped();
        }
        Ok(op.wait())
    }

    /// Opens a TCP connection to `remote` from a port of [`ACTIVE_PORTS`], waiting up to
    /// `timeout` for the handshake.
    pub fn tcp_connect(
        &self,
        remote: SocketAddrV4,
        timeout: Duration,
    ) -> Result<SocketNumber, ApiError> {
        let deadline = Instant::now() + timeout;
        let host = self.host();
        let link = host.link.as_ref().ok_or(ApiError::NotAttached)?;
        let dst_mac = host
            .neighbors
            .resolve(
                *remote.ip(),
                link.ifindex,
                timeout.min(Duration::from_secs(1)),
            )
            .ok_or(ApiError::NoNeighbor(*remote.ip()))?;
        let local = host
            .pick_active_port(link.addr, remote)
            .ok_or(ApiError::NoPort)?;
        let key = fastpath_common::RuleKey::new(
            fastpath_common::IPPROTO_TCP,
            local.ip().octets(),
            local.port(),
        );
        let rule = Some(link.steering.add_rule(key)?);
        let op = Op::new();
        let worker = host.worker_for_remote(remote);
        let request = ConnectRequest {
            local,
            remote,
            dst_mac,
            rule,
            op: op.clone(),
        };
        let result = self.submit(worker, Command::TcpConnect(Box::new(request)), &op)?;
        if result < 0 {
            return Err(code_error(result, None));
        }
        let number = op
            .number
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .ok_or(ApiError::TimedOut)?;
        // Wait for the handshake.
        loop {
            let entry = host.table.get(number).map_err(|_| ApiError::Refused)?;
            let Socket::TcpConnection(c) = &entry.value else {
                return Err(ApiError::Refused);
            };
            let seen = c.signal.current();
            match c.state() {
                crate::tcp::State::SynSent => {}
                crate::tcp::State::Closed => return Err(ApiError::Refused),
                _ => return Ok(number),
            }
            if Instant::now() >= deadline {
                let _ = self.tcp_close(number);
                return Err(ApiError::TimedOut);
            }
            c.signal.wait(seen, deadline);
        }
    }

    /// Runs `kind` on connection `number`, waiting up to `timeout` while it would block.
    fn tcp_op(
        &self,
        number: SocketNumber,
        timeout: Duration,
        mut kind: impl FnMut() -> OpKind,
    ) -> Result<usize, ApiError> {
        let deadline = Instant::now() + timeout;
        loop {
            let entry = self.host().table.get(number)?;
            let Socket::TcpConnection(c) = &entry.value else {
                return Err(ApiError::NotTcpConnection(number));
            };
            let seen = c.signal.current();
            let op = Op::new();
            let command = Command::TcpOp {
                number,
                kind: kind(),
                op: op.clone(),
            };
            let result = self.submit(c.owner, command, &op)?;
            if result >= 0 {
                return Ok(result as usize);
            }
            if result != WOULD_BLOCK {
                return Err(code_error(result, Some(number)));
            }
            if Instant::now() >= deadline {
                return Err(if timeout.is_zero() {
                    ApiError::WouldBlock
                } else {
                    ApiError::TimedOut
                });
            }
            c.signal.wait(seen, deadline);
        }
    }

    /// Reads what has arrived into `buf`, waiting up to `timeout` for something; 0 is the
    /// end of the stream (the peer's FIN).
    pub fn tcp_read(
        &self,
        number: SocketNumber,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<usize, ApiError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let (ptr, len) = (buf.as_mut_ptr(), buf.len());
        self.tcp_op(number, timeout, || OpKind::Read { ptr, len })
    }

    /// Writes what fits of `data` into the send buffer, waiting up to `timeout` for room.
    pub fn tcp_write(
        &self,
        number: SocketNumber,
        data: &[u8],
        timeout: Duration,
    ) -> Result<usize, ApiError> {
        if data.is_empty() {
            return Ok(0);
        }
        let (ptr, len) = (data.as_ptr(), data.len());
        self.tcp_op(number, timeout, || OpKind::Write { ptr, len })
    }

    /// Half-close: a FIN follows what was written; reading goes on.
    pub fn tcp_shutdown(&self, number: SocketNumber) -> Result<(), ApiError> {
        self.tcp_op(number, Duration::ZERO, || OpKind::Shutdown)
            .map(|_| ())
    }

    /// Full close: the worker finishes the connection and frees it.
    pub fn tcp_close(&self, number: SocketNumber) -> Result<(), ApiError> {
        self.tcp_op(number, Duration::ZERO, || OpKind::Close)
            .map(|_| ())
    }

    /// Takes a connection from a listener made with [`Stack::tcp_listen_queued`], waiting
    /// up to `timeout`.
    pub fn tcp_accept(
        &self,
        listener: SocketNumber,
        timeout: Duration,
    ) -> Result<SocketNumber, ApiError> {
        let deadline = Instant::now() + timeout;
        let entry = self.host().table.get(listener)?;
        let Socket::TcpListener(l) = &entry.value else {
            return Err(ApiError::NotQueued(listener));
        };
        let queue = l.accepted.as_ref().ok_or(ApiError::NotQueued(listener))?;
        loop {
            let seen = l.signal.current();
            if let Some(n) = queue.pop() {
                return Ok(n);
            }
            if Instant::now() >= deadline {
                return Err(if timeout.is_zero() {
                    ApiError::WouldBlock
                } else {
                    ApiError::TimedOut
                });
            }
            l.signal.wait(seen, deadline);
            self.host().table.get(listener)?;
        }
    }
}

fn code_error(code: i64, number: Option<SocketNumber>) -> ApiError {
    match code {
        STOPPED => ApiError::Stopped,
        REFUSED => ApiError::Refused,
        _ => number.map_or(ApiError::Refused, ApiError::ConnectionGone),
    }
}

/// A four-tuple for an active open, to check the table with.
pub fn active_tuple(local: SocketAddrV4, remote: SocketAddrV4) -> FourTuple {
    FourTuple::connected(Protocol::Tcp, local, remote)
}
