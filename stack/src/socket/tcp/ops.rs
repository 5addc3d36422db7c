//! What threads ask of the connections a worker owns (`api::tcp`): an active open, a read,
//! a write, a shutdown or a close. Each arrives in the worker's mailbox with an `Op` the
//! calling thread blocks on; the worker copies straight between the caller's buffer and the
//! connection's, then answers it.

use std::{
    net::{SocketAddr, SocketAddrV4},
    sync::{
        Arc,
        atomic::{AtomicI64, AtomicU32, Ordering},
    },
};

use super::{ConnRef, ConnTimers, TcpEngine, slots::Slot};
use crate::{
    iface::frame::FrameAddrs,
    phy::FrameSink,
    socket::{
        Socket,
        sync::{futex_wait, futex_wake_all},
        table::SocketNumber,
    },
    steer::RuleGuard,
    tcp::{self, Connection, Endpoints, State},
    time::Instant,
    wire::ethernet::MacAddr,
};

const PENDING: u32 = 0;
const WAITED: u32 = 1;
const DONE: u32 = 2;

/// Why a thread's operation did not move bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpError {
    /// Nothing to read, or no room to write, yet.
    WouldBlock,
    /// The connection is closed or was never this worker's.
    Gone,
    /// The runtime stopped before a worker ran the operation.
    Stopped,
}

impl OpError {
    fn code(self) -> i64 {
        match self {
            OpError::WouldBlock => -1,
            OpError::Gone => -2,
            OpError::Stopped => -3,
        }
    }

    fn from_code(code: i64) -> Result<usize, OpError> {
        match code {
            -1 => Err(OpError::WouldBlock),
            -2 => Err(OpError::Gone),
            -3 => Err(OpError::Stopped),
            n => Ok(n as usize),
        }
    }
}

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

    /// The worker's answer: bytes moved, or why not; after this it holds no pointer of the
    /// caller's.
    pub fn complete(&self, result: Result<usize, OpError>) {
        let code = match result {
            Ok(n) => n.min(i64::MAX as usize) as i64,
            Err(e) => e.code(),
        };
        self.result.store(code, Ordering::Relaxed);
        if self.state.swap(DONE, Ordering::Release) == WAITED {
            futex_wake_all(&self.state);
        }
    }

    /// Blocks until answered (every command is: see the module comment).
    pub fn wait(&self) -> Result<usize, OpError> {
        let _ = self
            .state
            .compare_exchange(PENDING, WAITED, Ordering::Acquire, Ordering::Acquire);
        while self.state.load(Ordering::Acquire) != DONE {
            futex_wait(&self.state, WAITED, None);
        }
        OpError::from_code(self.result.load(Ordering::Relaxed))
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

impl TcpEngine {
    /// A thread's active open (`Stack::tcp_connect`): the SYN goes out now; the request's
    /// op is answered with the new connection's number.
    #[expect(
        clippy::boxed_local,
        reason = "the request arrives boxed in a mailbox Command, which the box keeps small"
    )]
    pub fn connect(
        &mut self,
        now: Instant,
        request: Box<ConnectRequest>,
        timers: &mut dyn ConnTimers,
        tx: &mut dyn FrameSink,
    ) {
        let ConnectRequest {
            local,
            remote,
            dst_mac,
            rule,
            op,
        } = *request;
        let addrs = FrameAddrs {
            src_mac: self.mac,
            dst_mac,
            src: local,
            dst: remote,
        };
        let endpoints = Endpoints {
            local: SocketAddr::V4(local),
            remote: SocketAddr::V4(remote),
        };
        let config = tcp::TcpConfig {
            mss: self.max_payload.clamp(536, usize::from(u16::MAX)) as u16,
            ..tcp::TcpConfig::default()
        };
        let isn = tcp::isn::isn(&self.keys, &endpoints, now);
        let mut conn = Connection::connect(&config, endpoints, isn, now);
        conn.set_ts_offset(tcp::isn::ts_offset(&self.keys, &endpoints));
        let Some((at, number)) = self.open_slot(conn, addrs, |slot| Slot {
            api: true,
            rule,
            ..slot
        }) else {
            op.complete(Err(OpError::Gone));
            return;
        };
        self.settle(now, at, timers, tx);
        // Answered once the snapshot says SYN-SENT (the caller waits on it).
        *op.number.lock().unwrap_or_else(|p| p.into_inner()) = Some(number);
        op.complete(Ok(0));
    }

    /// A thread's read, write, shutdown or close of connection `number`: copies straight
    /// between the caller's buffer and the connection's, then answers `op`.
    pub fn api_op(
        &mut self,
        now: Instant,
        number: SocketNumber,
        kind: OpKind,
        op: &Op,
        timers: &mut dyn ConnTimers,
        tx: &mut dyn FrameSink,
    ) {
        let at = self
            .host
            .table
            .get(number)
            .ok()
            .and_then(|e| match &e.value {
                Socket::TcpConnection(c) if c.owner == self.worker => Some(ConnRef {
                    slot: c.slot,
                    generation: c.generation,
                }),
                _ => None,
            });
        let Some(conn) = at.and_then(|at| self.slot_mut(at)?.conn.as_mut()) else {
            op.complete(Err(OpError::Gone));
            return;
        };
        let result = match kind {
            OpKind::Read { ptr, len } => {
                // Safety: the caller's buffer, which it does not touch until `op` is
                // complete (it blocks in `Op::wait`).
                let buf = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
                match conn.read(buf) {
                    0 => match conn.state() {
                        State::CloseWait | State::LastAck | State::Closing | State::TimeWait => {
                            Ok(0)
                        }
                        State::Closed => Err(OpError::Gone),
                        _ => Err(OpError::WouldBlock),
                    },
                    n => Ok(n),
                }
            }
            OpKind::Write { ptr, len } => {
                // Safety: as for a read; the caller's bytes stay put until `op` is complete.
                let data = unsafe { std::slice::from_raw_parts(ptr, len) };
                match conn.write(data) {
                    0 => match conn.state() {
                        State::SynSent
                        | State::SynReceived
                        | State::Established
                        | State::CloseWait => Err(OpError::WouldBlock),
                        _ => Err(OpError::Gone),
                    },
                    n => Ok(n),
                }
            }
            OpKind::Shutdown => {
                conn.shutdown();
                Ok(0)
            }
            OpKind::Close => {
                conn.close();
                Ok(0)
            }
        };
        op.complete(result);
        if let Some(at) = at {
            self.settle(now, at, timers, tx);
        }
    }
}
