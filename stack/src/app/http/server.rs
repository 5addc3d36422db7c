//! The HTTP server on the workers: a `TcpHandler` whose sessions are `HttpConnection`s,
//! run to completion on the worker that owns each TCP connection (no thread hop per
//! request). Received bytes are copied once, from the TCP receive buffer into the session's
//! input buffer where `httparse` reads them in place; responses are copied once, from the
//! head buffer or the shared file bytes into the TCP send buffer.
//!
//! Each worker adds its connections' counts to its own cache line of `ServerStats`, which
//! the per-second summary reads.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crossbeam_utils::CachePadded;

use super::{HttpConnection, HttpStats, Site, Status};
use crate::{
    api::tcp::{Connection, Event, State, TcpHandler, TcpSession},
    time::Instant,
};

/// Input a session holds beyond what `httparse` needs for one head: room for a few
/// pipelined requests, so one read takes a burst of them.
const INPUT_SLACK: usize = 8 * 1024;

/// How long a connection the server has half-closed keeps reading and dropping what the
/// peer still sends. RFC 9112 §9.6 closes in stages so that a reset does not destroy the
/// last response at the client: "the server performs a half-close by closing only the
/// write side", then "continues to read from the connection until it receives a
/// corresponding close by the client, or until the server is reasonably certain that its
/// own TCP stack has received the client's acknowledgement". Not for ever, though, or a
/// peer that never closes its end holds the connection for good. Then `Connection::close`
/// hands it to TCP's orphan handling: FIN-WAIT-2 ends 2 × MSL after the peer was last
/// heard, and data that still arrives is answered with a reset. 5 s is nginx's
/// `lingering_timeout`.
const LINGER: Duration = Duration::from_secs(5);

/// One worker's running totals, written only by that worker.
#[derive(Default)]
struct WorkerStats {
    requests: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    by_status: [AtomicU64; Status::ALL.len()],
}

/// The counts of every connection a server has had, per worker; `total` sums them.
pub struct ServerStats {
    workers: Box<[CachePadded<WorkerStats>]>,
}

impl ServerStats {
    pub fn new(workers: usize) -> Self {
        Self {
            workers: (0..workers.max(1))
                .map(|_| CachePadded::new(WorkerStats::default()))
                .collect(),
        }
    }

    /// What every worker counted so far.
    pub fn total(&self) -> HttpStats {
        let mut total = HttpStats::default();
        for w in self.workers.iter() {
            total.requests += w.requests.load(Ordering::Relaxed);
            total.bytes_in += w.bytes_in.load(Ordering::Relaxed);
            total.bytes_out += w.bytes_out.load(Ordering::Relaxed);
            for (t, c) in total.by_status.iter_mut().zip(w.by_status.iter()) {
                *t += c.load(Ordering::Relaxed);
            }
        }
        total
    }

    fn add(&self, worker: usize, s: &HttpStats) {
        let w = &self.workers[worker % self.workers.len()];
        // One writer per line: a load and a store, no locked read-modify-write.
        let bump = |cell: &AtomicU64, n: u64| {
            if n > 0 {
                cell.store(cell.load(Ordering::Relaxed) + n, Ordering::Relaxed);
            }
        };
        bump(&w.requests, s.requests);
        bump(&w.bytes_in, s.bytes_in);
        bump(&w.bytes_out, s.bytes_out);
        for (cell, n) in w.by_status.iter().zip(s.by_status) {
            bump(cell, n);
        }
    }
}

/// The difference between two totals (for a per-second line).
pub fn delta(now: &HttpStats, before: &HttpStats) -> HttpStats {
    let mut d = HttpStats {
        requests: now.requests - before.requests,
        bytes_in: now.bytes_in - before.bytes_in,
        bytes_out: now.bytes_out - before.bytes_out,
        ..HttpStats::default()
    };
    for ((d, n), b) in d
        .by_status
        .iter_mut()
        .zip(now.by_status)
        .zip(before.by_status)
    {
        *d = n - b;
    }
    d
}

/// Serves `site` on every connection of the listener it is given to
/// (`Stack::tcp_listen(addr, backlog, Arc::new(HttpServer::new(site, workers)))`).
pub struct HttpServer {
    site: Arc<Site>,
    stats: Arc<ServerStats>,
}

impl HttpServer {
    pub fn new(site: Arc<Site>, workers: usize) -> Self {
        Self {
            site,
            stats: Arc::new(ServerStats::new(workers)),
        }
    }

    pub fn stats(&self) -> Arc<ServerStats> {
        self.stats.clone()
    }

    pub fn site(&self) -> &Arc<Site> {
        &self.site
    }
}

impl TcpHandler for HttpServer {
    fn on_event(&self, conn: &mut Connection, _event: Event, _scratch: &mut [u8]) {
        // Every connection gets a session; one without (none is made) is not served.
        conn.abort();
    }

    fn session(&self, now: Instant, worker: usize) -> Option<Box<dyn TcpSession>> {
        // The wall-clock time of this worker's `Instant::ZERO`, for the `Date` header.
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let origin = wall.saturating_sub(now.as_nanos());
        let capacity = self.site.config.min_receive_buffer() + INPUT_SLACK;
        Some(Box::new(HttpSession {
            http: HttpConnection::new(self.site.clone(), now, origin),
            input: Vec::with_capacity(capacity),
            stats: self.stats.clone(),
            worker,
            closing: false,
            linger_until: None,
        }))
    }
}

/// One connection's HTTP state and its unparsed input.
struct HttpSession {
    http: HttpConnection,
    /// Bytes read from TCP and not yet consumed by `on_data` (a partial head, or requests
    /// past the pipeline limit).
    input: Vec<u8>,
    stats: Arc<ServerStats>,
    worker: usize,
    /// The TCP connection was shut down or aborted after the last response.
    closing: bool,
    /// When a shut-down connection stops lingering and is closed (`LINGER`).
    linger_until: Option<Instant>,
}

impl HttpSession {
    /// Moves bytes both ways until neither moves: responses into the send buffer, received
    /// bytes into the parser. Then closes the connection if HTTP asks to.
    fn pump(&mut self, now: Instant, conn: &mut Connection) {
        loop {
            let mut moved = false;
            if self.http.has_output() {
                moved |= self.http.poll_output(now, &mut |b| conn.write(b)) > 0;
            }
            let room = self.input.capacity() - self.input.len();
            let readable = conn.readable();
            if room > 0 && readable > 0 {
                let len = self.input.len();
                self.input.resize(len + room.min(readable), 0);
                let got = conn.read(&mut self.input[len..]);
                self.input.truncate(len + got);
            }
            if !self.input.is_empty() {
                let used = self.http.on_data(now, &self.input);
                if used > 0 {
                    self.input.drain(..used);
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        let peer_done = matches!(
            conn.state(),
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait | State::Closed
        );
        if peer_done && conn.readable() == 0 {
            // What is left in `input` is a request that can never complete.
            self.input.clear();
            self.http.on_eof();
        }
        if self.http.wants_close() && !self.closing {
            self.closing = true;
            if self.http.aborted() {
                // The peer stopped taking bytes: what is queued will never leave.
                conn.abort();
            } else {
                // FIN after the last response; what the peer still sends is read and
                // dropped, for `LINGER`.
                conn.shutdown();
                self.linger_until = Some(now + LINGER);
            }
        }
        let s = self.http.take_stats();
        if s.requests > 0 || s.bytes_in > 0 || s.bytes_out > 0 {
            self.stats.add(self.worker, &s);
        }
    }
}

impl TcpSession for HttpSession {
    fn on_event(&mut self, now: Instant, conn: &mut Connection, event: Event, scratch: &mut [u8]) {
        if let Event::Closed(_) = event {
            return;
        }
        if self.closing {
            discard_input(conn, scratch);
            return;
        }
        self.pump(now, conn);
    }

    fn deadline(&self) -> Option<Instant> {
        if self.closing {
            self.linger_until
        } else {
            self.http.deadline()
        }
    }

    fn on_timeout(&mut self, now: Instant, conn: &mut Connection, scratch: &mut [u8]) {
        if self.closing {
            if self.linger_until.is_some_and(|at| at <= now) {
                self.linger_until = None;
                // Nothing unread, so `close` does not reset: the peer may still be reading.
                discard_input(conn, scratch);
                conn.close();
            }
            return;
        }
        self.http.on_timeout(now);
        self.pump(now, conn);
    }
}

/// Reads and drops whatever arrived, so the window stays open for the peer's FIN.
fn discard_input(conn: &mut Connection, scratch: &mut [u8]) {
    while conn.readable() > 0 {
        let n = conn.readable().min(scratch.len());
        conn.read(&mut scratch[..n]);
    }
}
