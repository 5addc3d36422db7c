//! The TCP side of the simulator: a `Peer` is a client `Connection`, or a server that
//! opens one passively (`Connection::accept_syn`) when the SYN arrives, as a simulator
//! `Endpoint`; and `Transfer`
//! drives a bidirectional bulk transfer of seeded data between two of them, checking
//! every byte.

use std::{net::SocketAddr, time::Duration};

use super::{CwndTrace, Endpoint, LinkConfig, Network, Outcome};
use crate::{
    tcp::{
        connection::{Connection, Counters, Endpoints, Event, Segment, TcpConfig},
        seq::SeqNumber,
    },
    time::Instant,
    wire::tcp::{TcpRepr, flags},
};

/// One end of a simulated TCP path.
pub struct Peer {
    pub connection: Option<Connection>,
    /// A server's settings and ISN, until its SYN arrives.
    passive: Option<(TcpConfig, SeqNumber)>,
    pub counters: Counters,
    local: SocketAddr,
    remote: SocketAddr,
}

impl Peer {
    /// A client that sends its SYN at `now`.
    pub fn client(
        config: &TcpConfig,
        local: SocketAddr,
        remote: SocketAddr,
        isn: SeqNumber,
        now: Instant,
    ) -> Peer {
        let endpoints = Endpoints { local, remote };
        Peer {
            connection: Some(Connection::connect(config, endpoints, isn, now)),
            passive: None,
            counters: Counters::default(),
            local,
            remote,
        }
    }

    /// A server on `local` waiting for `remote`'s SYN; its ISN will be `isn`.
    pub fn server(
        config: &TcpConfig,
        local: SocketAddr,
        remote: SocketAddr,
        isn: SeqNumber,
    ) -> Peer {
        Peer {
            connection: None,
            passive: Some((config.clone(), isn)),
            counters: Counters::default(),
            local,
            remote,
        }
    }

    /// The connection, once there is one.
    pub fn connection(&mut self) -> Option<&mut Connection> {
        self.connection.as_mut()
    }
}

impl Endpoint for Peer {
    fn handle_segment(&mut self, now: Instant, header: &TcpRepr, payload: &[u8]) {
        let segment = Segment {
            header: *header,
            payload,
        };
        if let Some(connection) = &mut self.connection {
            connection.handle_segment(now, &segment, &mut self.counters);
            return;
        }
        // A listening server: only a SYN opens a connection (anything else would be
        // answered with a RST by a listener; the client retries its SYN meanwhile).
        let syn_only = header.flags & (flags::SYN | flags::ACK | flags::RST) == flags::SYN;
        if let Some((config, isn)) = self.passive.as_ref().filter(|_| syn_only) {
            let endpoints = Endpoints {
                local: self.local,
                remote: self.remote,
            };
            // (Data on a SYN is not taken; the client here sends none.)
            let c = Connection::accept_syn(config, endpoints, &segment, *isn, now);
            self.connection = Some(c);
            self.passive = None;
        }
    }

    fn poll_transmit(&mut self, now: Instant, payload: &mut [u8]) -> Option<(TcpRepr, usize)> {
        let transmit = self
            .connection
            .as_mut()?
            .poll_transmit(now, payload, &mut self.counters)?;
        Some((transmit.header, transmit.payload_len))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.connection.as_ref()?.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some(connection) = &mut self.connection {
            connection.handle_timeout(now, &mut self.counters);
        }
    }
}

/// The seeded stream, 8 bytes at a time: a SplitMix64 output per word index, so any
/// stretch can be regenerated to check it without storing the stream.
fn pattern_word(seed: u64, index: u64) -> [u8; 8] {
    let mut z = seed.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).to_le_bytes()
}

/// The stream seeded with `seed` from `offset`, into `out`.
pub fn fill_pattern(seed: u64, offset: u64, out: &mut [u8]) {
    let mut at = 0;
    while at < out.len() {
        let position = offset + at as u64;
        let word = pattern_word(seed, position / 8);
        let skip = (position % 8) as usize;
        let n = (8 - skip).min(out.len() - at);
        out[at..at + n].copy_from_slice(&word[skip..skip + n]);
        at += n;
    }
}

/// One direction of a transfer, as its sender and receiver see it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stream {
    pub seed: u64,
    pub total: u64,
    /// Accepted by the sender's `write`.
    pub written: u64,
    pub shut_down: bool,
    /// Read by the receiver and found equal to the pattern.
    pub read: u64,
    /// When the receiver had read all `total` bytes.
    pub completed: Option<Instant>,
    /// The receiver saw the sender's FIN.
    pub peer_closed: bool,
}

/// What the application on one side saw.
#[derive(Clone, Debug, Default)]
pub struct AppLog {
    pub connected: Option<Instant>,
    pub closed: bool,
    pub close_reason: Option<String>,
}

/// A's congestion state at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CcSample {
    pub at: Instant,
    pub cwnd: u32,
    pub ssthresh: u32,
    pub in_recovery: bool,
}

/// A transfer in both directions at once: A sends `a_to_b`, B sends `b_to_a`.
pub struct Transfer {
    pub net: Network<Peer, Peer>,
    pub a_to_b: Stream,
    pub b_to_a: Stream,
    pub a_log: AppLog,
    pub b_log: AppLog,
    /// A's congestion window over time.
    pub a_cwnd: CwndTrace,
    /// A's congestion state at every change of cwnd, ssthresh or recovery.
    pub a_cc: Vec<CcSample>,
    chunk: Vec<u8>,
}

impl Transfer {
    /// A client A at 198.18.0.1:40000 connecting at time zero to a server B listening at
    /// 198.18.0.2:80, `bytes` to send each way (0 for a one-way transfer).
    pub fn new(
        config: &TcpConfig,
        a_to_b: LinkConfig,
        b_to_a: LinkConfig,
        seed: u64,
        bytes_a_to_b: u64,
        bytes_b_to_a: u64,
    ) -> Transfer {
        let a_addr: SocketAddr = ([198, 18, 0, 1], 40_000).into();
        let b_addr: SocketAddr = ([198, 18, 0, 2], 80).into();
        // ISNs from the seed, one of them near the wrap so runs cross it.
        let a_isn = SeqNumber((seed as u32).wrapping_mul(0x9e37_79b9));
        let b_isn = SeqNumber(u32::MAX - (seed as u32 % 1_000_000));
        let a = Peer::client(config, a_addr, b_addr, a_isn, Instant::ZERO);
        let b = Peer::server(config, b_addr, a_addr, b_isn);
        let mut net = Network::new(a, b, a_to_b, b_to_a, seed);
        net.a_addr = [198, 18, 0, 1];
        net.b_addr = [198, 18, 0, 2];
        Transfer {
            net,
            a_to_b: Stream {
                seed: seed.wrapping_mul(3).wrapping_add(1),
                total: bytes_a_to_b,
                ..Stream::default()
            },
            b_to_a: Stream {
                seed: seed.wrapping_mul(5).wrapping_add(2),
                total: bytes_b_to_a,
                ..Stream::default()
            },
            a_log: AppLog::default(),
            b_log: AppLog::default(),
            a_cwnd: CwndTrace::default(),
            a_cc: Vec::new(),
            chunk: vec![0; 64 * 1024],
        }
    }

    /// Both streams read in full by their receivers.
    pub fn delivered(&self) -> bool {
        self.a_to_b.read == self.a_to_b.total && self.b_to_a.read == self.b_to_a.total
    }

    /// The time both streams were complete.
    pub fn completed(&self) -> Option<Instant> {
        // An empty stream is complete from the start.
        let done = |s: &Stream| s.completed.or((s.total == 0).then_some(Instant::ZERO));
        Some(done(&self.a_to_b)?.max(done(&self.b_to_a)?))
    }

    /// Runs until both streams are delivered (or `deadline`). A data mismatch is an
    /// `Err` naming the offset.
    pub fn run(&mut self, deadline: Instant) -> Result<Outcome, String> {
        let mut error = None;
        let outcome = {
            let Transfer {
                net,
                a_to_b,
                b_to_a,
                a_log,
                b_log,
                a_cwnd,
                a_cc,
                chunk,
            } = self;
            net.run_until(deadline, |net| {
                let now = net.now();
                if let Some(c) = net.a.connection.as_mut() {
                    let info = c.info();
                    a_cwnd.record(now, info.cwnd);
                    let sample = CcSample {
                        at: now,
                        cwnd: info.cwnd,
                        ssthresh: info.ssthresh,
                        in_recovery: info.in_recovery,
                    };
                    let changed = |last: &CcSample| {
                        (last.cwnd, last.ssthresh, last.in_recovery)
                            != (sample.cwnd, sample.ssthresh, sample.in_recovery)
                    };
                    if a_cc.last().is_none_or(changed) {
                        a_cc.push(sample);
                    }
                    if let Err(e) = pump(c, now, a_to_b, b_to_a, a_log, chunk) {
                        error = Some(format!("A: {e}"));
                    }
                }
                if let Some(c) = net.b.connection.as_mut()
                    && let Err(e) = pump(c, now, b_to_a, a_to_b, b_log, chunk)
                {
                    error = Some(format!("B: {e}"));
                }
                error.is_some() || (a_to_b.read == a_to_b.total && b_to_a.read == b_to_a.total)
            })
        };
        match error {
            Some(e) => Err(e),
            None => Ok(outcome),
        }
    }

    /// After delivery: runs until both connections are closed (FINs exchanged, TIME-WAIT
    /// over) or `deadline`.
    pub fn close(&mut self, deadline: Instant) -> Outcome {
        let Transfer {
            net,
            a_to_b,
            b_to_a,
            a_log,
            b_log,
            chunk,
            ..
        } = self;
        net.run_until(deadline, |net| {
            let now = net.now();
            let mut closed = [false; 2];
            for (i, peer) in [&mut net.a, &mut net.b].into_iter().enumerate() {
                let Some(c) = peer.connection.as_mut() else {
                    continue;
                };
                let (out, inc, log) = if i == 0 {
                    (&mut *a_to_b, &mut *b_to_a, &mut *a_log)
                } else {
                    (&mut *b_to_a, &mut *a_to_b, &mut *b_log)
                };
                let _ = pump(c, now, out, inc, log, chunk);
                closed[i] = c.is_closed();
            }
            closed == [true, true]
        })
    }
}

/// The application on one side: writes its stream as fast as the send buffer takes it
/// (then shuts down), reads and checks the other stream, notes events.
fn pump(
    c: &mut Connection,
    now: Instant,
    out: &mut Stream,
    inc: &mut Stream,
    log: &mut AppLog,
    chunk: &mut [u8],
) -> Result<(), String> {
    while let Some(event) = c.poll_event() {
        match event {
            Event::Connected => log.connected = log.connected.or(Some(now)),
            Event::PeerClosed => inc.peer_closed = true,
            Event::Closed(reason) => {
                log.closed = true;
                log.close_reason = Some(format!("{reason:?}"));
            }
            _ => {}
        }
    }
    // Only as much as the send buffer takes: generating the pattern is the costly part.
    while out.written < out.total && c.writable() > 0 {
        let n = chunk
            .len()
            .min(c.writable())
            .min((out.total - out.written) as usize);
        fill_pattern(out.seed, out.written, &mut chunk[..n]);
        let accepted = c.write(&chunk[..n]);
        out.written += accepted as u64;
        if accepted < n {
            break;
        }
    }
    if out.written == out.total && !out.shut_down && log.connected.is_some() {
        c.shutdown();
        out.shut_down = true;
    }
    loop {
        // The first half takes what is read, the second half what it should be.
        let half = chunk.len() / 2;
        let n = c.read(&mut chunk[..half]);
        if n == 0 {
            break;
        }
        if inc.read + n as u64 > inc.total {
            return Err(format!(
                "{} bytes read at {now:?}, more than the {} sent",
                inc.read + n as u64,
                inc.total
            ));
        }
        let (got, expected) = chunk.split_at_mut(n);
        let expected = &mut expected[..n];
        fill_pattern(inc.seed, inc.read, expected);
        if got != expected {
            let i = got
                .iter()
                .zip(expected.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!(
                "byte {} of {} read at {now:?} is {:#04x}, not {:#04x}",
                inc.read + i as u64,
                inc.total,
                got[i],
                expected[i]
            ));
        }
        inc.read += n as u64;
        if inc.read == inc.total {
            inc.completed = Some(now);
        }
    }
    Ok(())
}

/// Rough time to move `bytes` at `rate` bits/s.
pub fn ideal_time(bytes: u64, rate: u64) -> Duration {
    Duration::from_secs_f64(bytes as f64 * 8.0 / rate as f64)
}

/// A one-way bulk transfer of `bytes` from A to B over `link` (both directions alike),
/// and A's congestion window over it: (time, cwnd in bytes) at every change, for plots.
pub fn bulk_cwnd_trace(
    config: &TcpConfig,
    link: LinkConfig,
    seed: u64,
    bytes: u64,
    deadline: Instant,
) -> Result<Vec<(Instant, u32)>, String> {
    let mut transfer = Transfer::new(config, link.clone(), link, seed, bytes, 0);
    match transfer.run(deadline)? {
        Outcome::Done(_) => Ok(transfer.a_cwnd.samples),
        other => Err(format!(
            "{} of {bytes} bytes delivered: {other:?}",
            transfer.a_to_b.read
        )),
    }
}
