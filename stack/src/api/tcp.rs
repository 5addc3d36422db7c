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
    time::{Duration, Instant},
};

use crate::{
    api::{ApiError, Stack},
    socket::{
        Command, Socket,
        table::SocketNumber,
        tcp::ops::{ConnectRequest, Op, OpError, OpKind},
    },
};
pub use crate::{
    socket::tcp::app::{TcpHandler, TcpSession},
    tcp::{Connection, Event, State, TcpConfig},
};

impl Stack {
    /// Posts `command` and waits for its answer; every posted command is answered.
    fn submit(
        &self,
        worker: usize,
        command: Command,
        op: &Op,
    ) -> Result<Result<usize, OpError>, ApiError> {
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

    /// Opens a TCP connection to `remote` from a port of [`ACTIVE_PORTS`](crate::runtime::ACTIVE_PORTS), waiting up to
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
        if let Err(e) = self.submit(worker, Command::TcpConnect(Box::new(request)), &op)? {
            return Err(op_error(e, None));
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
            match self.submit(c.owner, command, &op)? {
                Ok(n) => return Ok(n),
                Err(OpError::WouldBlock) => {}
                Err(e) => return Err(op_error(e, Some(number))),
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

/// What an operation's failure means to the caller.
fn op_error(e: OpError, number: Option<SocketNumber>) -> ApiError {
    match e {
        OpError::Stopped => ApiError::Stopped,
        OpError::WouldBlock | OpError::Gone => {
            number.map_or(ApiError::Refused, ApiError::ConnectionGone)
        }
    }
}
