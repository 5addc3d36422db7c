//! The applications a TCP listener serves on its workers: a `TcpHandler` runs on the worker
//! that owns each connection (run to completion), with a `TcpSession` of its own per
//! connection where it needs one.

use crate::{
    tcp::{Connection, Event},
    time::Instant,
};

/// An application that runs on the worker owning each connection (run to completion).
pub trait TcpHandler: Send + Sync {
    /// `event` happened on `conn`; the handler may read, write, shut down or close it.
    /// `scratch` is the worker's buffer for copies (no allocation per event). Not called
    /// for a connection that has a session (`session`).
    fn on_event(&self, conn: &mut Connection, event: Event, scratch: &mut [u8]);

    /// State of its own for a connection that worker `worker` just accepted at `now` (an
    /// HTTP connection's parser and response queue, say). `None`, the default, serves every
    /// connection with `on_event` alone.
    fn session(&self, _now: Instant, _worker: usize) -> Option<Box<dyn TcpSession>> {
        None
    }
}

/// A connection's own application state (`TcpHandler::session`), on its owning worker: it
/// gets the connection's events, and may keep a deadline of its own, which shares the
/// connection's one timer in the worker's wheel. Dropped when the connection is freed.
pub trait TcpSession: Send {
    fn on_event(&mut self, now: Instant, conn: &mut Connection, event: Event, scratch: &mut [u8]);

    /// When `on_timeout` must next run; `None` when the session waits for nothing.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// The clock reached the session's deadline (or a little later).
    fn on_timeout(&mut self, _now: Instant, _conn: &mut Connection, _scratch: &mut [u8]) {}
}
