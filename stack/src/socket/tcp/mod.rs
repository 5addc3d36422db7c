//! The worker's TCP engine: the connections this worker owns (a slab of `tcp::Connection`s, each
//! with one timer in the worker's wheel), its share of every listening socket (a
//! `tcp::Listener` per listener: SYN queue counts, cookies), and the frames between them
//! and the link.
//!
//! A segment finds its socket in the four-tuple table: a connection (exact four-tuple), a
//! listener (the port), or nothing (answered with RST, RFC 9293 3.10.7.1). A connection is
//! owned by the worker whose RX queue its SYN arrived on; a segment that lands on another
//! worker goes to the owner through its mailbox. After every interaction — a segment, a
//! timer, an application's call — `settle` hands events to the application, sends what the
//! connection has (as far as the batch's TX budget goes; the rest waits for `poll`),
//! re-arms its timer from `poll_timeout`, publishes its snapshot and frees it once closed.
//!
//! By concern: `slots` (the slab and its one generation-checked lookup), `listeners` (each
//! listener's per-worker state and passive opens), `ops` (what threads ask: active opens,
//! reads, writes, closes), `settle` (events, output, timer, snapshot after every
//! interaction); `app` holds the application traits, `entry` what the shared table holds,
//! `states` the one table of TCP states.

mod listeners;
mod settle;
mod slots;

pub mod app;
pub mod entry;
pub mod ops;
pub mod states;

use std::{net::SocketAddrV4, sync::Arc};

use crate::{
    counter_set,
    counters::{Counters, SharedCounters},
    iface::{
        checksum::{Judgement, RxChecksum},
        frame::{self, FrameAddrs},
        timer::TimerId,
    },
    phy::{FrameSink, TxResult},
    socket::{
        Command, Host, Socket,
        table::{Protocol, SocketNumber},
    },
    tcp::{self, Segment, reset::reset_for},
    time::Instant,
    wire::{
        ethernet::MacAddr,
        tcp::{TcpPacket, TcpRepr},
    },
};
use entry::TcpListenerSocket;
use listeners::WorkerListener;
use slots::Slot;

counter_set! {
    "tcp",
    /// What the workers' TCP I/O did with frames, beside the core's own counters
    /// (`tcp::Counters`, published in the same layer).
    pub enum TcpIoCounter {
        /// Received with only the pseudo-header sum (peer TX checksum offload).
        ChecksumPartial = "tcp_csum_partial",
        DropChecksum = "drop_tcp_checksum",
        DropMalformed = "drop_tcp_malformed",
        /// Segments to a steered port with no listener or connection (answered with RST).
        NoSocket = "tcp_no_socket",
        /// Segments that arrived on a worker other than their connection's owner and were
        /// handed to the owner through its mailbox.
        Forwarded = "tcp_forwarded",
        /// Forwarding failed: no pooled buffer or the owner's mailbox was full.
        DropForward = "drop_tcp_forward",
        /// Segments the connection had to hold for a later batch (TX budget spent).
        TxDeferred = "tcp_tx_deferred",
        /// A RST or cookie SYN-ACK (no connection keeps it) found no TX room.
        DropControl = "drop_tcp_control",
        /// A segment built but not written: the frame could not hold it, or no next hop.
        DropTx = "drop_tcp_tx",
        /// A new connection found its four-tuple taken in the table (or the table full).
        DropTableFull = "drop_tcp_table",
        /// Connections freed on entering TIME-WAIT because the worker already held its
        /// most (`TcpEngine::set_max_time_wait`; Linux's `tcp_max_tw_buckets`).
        TimeWaitOverflow = "tcp_time_wait_overflow",
        ConnectionsOpened = "tcp_conns_opened",
        ConnectionsClosed = "tcp_conns_closed",
    }
}

/// Judges a received segment's checksum; false means drop (counted).
#[inline]
fn accept_checksum(
    policy: RxChecksum,
    packet: &TcpPacket<&[u8]>,
    src: [u8; 4],
    dst: [u8; 4],
    c: &mut Counters<TcpIoCounter>,
) -> bool {
    match policy.judge(|| packet.check(src, dst)) {
        Judgement::Valid => true,
        Judgement::Partial => {
            c.bump(TcpIoCounter::ChecksumPartial);
            true
        }
        // TCP has no "no checksum" (a zero is a checksum like any other, and wrong here).
        Judgement::Absent | Judgement::Drop => {
            c.bump(TcpIoCounter::DropChecksum);
            false
        }
    }
}

/// A connection in a worker's slab: its index and the generation that index had, so a
/// timer or a table entry that outlived it finds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnRef {
    slot: u32,
    generation: u32,
}

/// The worker's timer wheel as TCP uses it: one timer per connection.
pub trait ConnTimers {
    fn arm(&mut self, at: Instant, conn: ConnRef) -> TimerId;
    /// False if `id` already fired or was cancelled.
    fn reset(&mut self, id: TimerId, at: Instant) -> bool;
    fn cancel(&mut self, id: TimerId);
}

/// A received segment, where the demux found it.
#[derive(Clone, Copy)]
pub struct Arrival<'a> {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub src_mac: MacAddr,
    /// The IP payload: TCP header and data.
    pub segment: &'a [u8],
    /// The whole frame, to hand to another worker.
    pub frame: &'a [u8],
    /// It came from another worker's mailbox (never forwarded twice).
    pub forwarded: bool,
}

/// What the table said of a segment's four-tuple.
enum Found {
    Connection { owner: usize, at: ConnRef },
    Listener(SocketNumber, SocketAddrV4, Arc<TcpListenerSocket>),
    Nothing,
}

/// The most connections a worker keeps in TIME-WAIT; one more entering it is freed at once
/// (after its last ACK left), as Linux does beyond `net.ipv4.tcp_max_tw_buckets`. A server
/// that closes first (HTTP with `Connection: close`) would otherwise hold every connection
/// of the last 2 × MSL (60 s): at 10k connections a second, 600k slots and table entries.
/// Safe with timestamps (RFC 6191 and PAWS guard the next incarnation of a four-tuple).
pub const MAX_TIME_WAIT: u64 = 16 * 1024;

/// Room for the application's copies (echo: what it reads before writing it back).
const SCRATCH: usize = 64 * 1024;

/// One worker's TCP.
pub struct TcpEngine {
    host: Arc<Host>,
    worker: usize,
    mac: MacAddr,
    /// The most payload a segment carries on this link (MTU less IPv4 and TCP headers).
    max_payload: usize,
    slots: Vec<Slot>,
    free: Vec<u32>,
    listeners: Vec<WorkerListener>,
    core: tcp::Counters,
    io: Counters<TcpIoCounter>,
    by_state: [u64; states::STATES.len()],
    scratch: Box<[u8]>,
    /// Connections with segments waiting for TX room, and a spare list to swap with.
    deferred: Vec<ConnRef>,
    deferred_spare: Vec<ConnRef>,
    /// Keys for the ISNs of active opens.
    keys: tcp::IsnKeys,
    /// See `MAX_TIME_WAIT`.
    max_time_wait: u64,
}

impl TcpEngine {
    pub fn new(host: Arc<Host>, worker: usize) -> Self {
        let link = host.link_info();
        Self {
            host,
            worker,
            mac: link.mac,
            max_payload: (link.mtu as usize).saturating_sub(40).max(1),
            slots: Vec::with_capacity(1024),
            free: Vec::with_capacity(1024),
            listeners: Vec::new(),
            core: tcp::Counters::default(),
            io: Counters::default(),
            by_state: [0; states::STATES.len()],
            scratch: vec![0; SCRATCH].into_boxed_slice(),
            deferred: Vec::with_capacity(1024),
            deferred_spare: Vec::with_capacity(1024),
            keys: tcp::IsnKeys::random(),
            max_time_wait: MAX_TIME_WAIT,
        }
    }

    /// How many connections this worker may hold in TIME-WAIT (default `MAX_TIME_WAIT`).
    pub fn set_max_time_wait(&mut self, max: u64) {
        self.max_time_wait = max;
    }

    pub fn core_counters(&self) -> &tcp::Counters {
        &self.core
    }

    pub fn io_counters(&self) -> &Counters<TcpIoCounter> {
        &self.io
    }

    /// Connections this worker owns.
    pub fn connections(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// A segment from the link (or from another worker's mailbox).
    pub fn on_segment(
        &mut self,
        now: Instant,
        a: Arrival<'_>,
        timers: &mut dyn ConnTimers,
        tx: &mut dyn FrameSink,
    ) {
        let Ok(packet) = TcpPacket::new_checked(a.segment) else {
            self.io.bump(TcpIoCounter::DropMalformed);
            return;
        };
        if !accept_checksum(self.host.rx_checksum, &packet, a.src, a.dst, &mut self.io) {
            return;
        }
        let Ok(header) = TcpRepr::parse_unverified(&packet) else {
            self.io.bump(TcpIoCounter::DropMalformed);
            return;
        };
        let segment = Segment {
            header,
            payload: packet.payload(),
        };
        self.dispatch(now, &a, &segment, timers, tx, true);
    }

    fn dispatch(
        &mut self,
        now: Instant,
        a: &Arrival<'_>,
        segment: &Segment<'_>,
        timers: &mut dyn ConnTimers,
        tx: &mut dyn FrameSink,
        may_reopen: bool,
    ) {
        let h = &segment.header;
        let local = SocketAddrV4::new(a.dst.into(), h.dst_port);
        let remote = SocketAddrV4::new(a.src.into(), h.src_port);
        let found = self
            .host
            .table
            .lookup_with(Protocol::Tcp, local, remote, |e| match &e.value {
                Socket::TcpConnection(c) => Found::Connection {
                    owner: c.owner,
                    at: ConnRef {
                        slot: c.slot,
                        generation: c.generation,
                    },
                },
                Socket::TcpListener(l) => Found::Listener(e.number, e.tuple.local, l.clone()),
                Socket::Udp(_) => Found::Nothing,
            })
            .unwrap_or(Found::Nothing);
        let addrs = FrameAddrs {
            src_mac: self.mac,
            dst_mac: a.src_mac,
            src: local,
            dst: remote,
        };
        match found {
            Found::Connection { owner, .. } if owner != self.worker => {
                self.forward(owner, a);
            }
            Found::Connection { at, .. } => {
                let Some(conn) = slots::slot_in(&mut self.slots, at).and_then(|s| s.conn.as_mut())
                else {
                    // Freed a moment ago, its table entry on the way out: as if unknown.
                    self.no_socket(segment, &addrs, tx);
                    return;
                };
                conn.handle_segment(now, segment, &mut self.core);
                let reopens = conn.syn_reopens();
                self.settle(now, at, timers, tx);
                if reopens && may_reopen {
                    // RFC 6191: the SYN that ended TIME-WAIT opens the next incarnation.
                    self.release(at, timers);
                    self.dispatch(now, a, segment, timers, tx, false);
                }
            }
            Found::Listener(number, bound, socket) => {
                self.on_listener(now, number, bound, &socket, segment, addrs, timers, tx)
            }
            Found::Nothing => self.no_socket(segment, &addrs, tx),
        }
    }

    /// RFC 9293 3.10.7.1: a segment for no connection and no listener gets a RST.
    fn no_socket(&mut self, segment: &Segment<'_>, addrs: &FrameAddrs, tx: &mut dyn FrameSink) {
        self.io.bump(TcpIoCounter::NoSocket);
        self.core.segments_in += 1;
        if let Some(rst) = reset_for(&segment.header, segment.payload.len())
            && self.send_control(addrs, &rst, tx)
        {
            self.core.segments_out += 1;
            self.core.rst_sent += 1;
        }
    }

    /// Sends a header-only segment no connection keeps (the listener counts its own).
    /// False if it did not go out.
    fn send_control(
        &mut self,
        addrs: &FrameAddrs,
        header: &TcpRepr,
        tx: &mut dyn FrameSink,
    ) -> bool {
        match tx.send(&mut |buf: &mut [u8]| frame::write_tcp_control(buf, addrs, header)) {
            TxResult::Sent => true,
            // Not kept for later: the peer's retransmission asks again.
            TxResult::Full => {
                self.io.bump(TcpIoCounter::DropControl);
                false
            }
            TxResult::Declined => {
                self.io.bump(TcpIoCounter::DropTx);
                false
            }
        }
    }

    fn forward(&mut self, owner: usize, a: &Arrival<'_>) {
        if a.forwarded {
            self.io.bump(TcpIoCounter::DropForward);
            return;
        }
        let Some(mut buf) = self.host.tx_pool.pop() else {
            self.io.bump(TcpIoCounter::DropForward);
            return;
        };
        buf.clear();
        buf.extend_from_slice(a.frame);
        match self.host.post(owner, Command::TcpSegment(buf)) {
            Ok(()) => self.io.bump(TcpIoCounter::Forwarded),
            Err(command) => {
                if let Command::TcpSegment(buf) = command {
                    let _ = self.host.tx_pool.push(buf);
                }
                self.io.bump(TcpIoCounter::DropForward);
            }
        }
    }

    /// (layer, name) of what `publish` stores: the I/O counters, the core's, the gauges.
    pub fn counter_names() -> impl Iterator<Item = (&'static str, &'static str)> {
        Counters::<TcpIoCounter>::names()
            .chain(tcp::Counters::NAMES.iter().map(|n| ("tcp", *n)))
            .chain(states::gauge_names().map(|n| ("tcp", n)))
    }

    /// Stores everything `counter_names` names from slot `offset` on.
    pub fn publish(&self, shared: &SharedCounters, offset: usize) {
        shared.store(offset, self.io.values());
        let mut at = offset + self.io.values().len();
        for value in self.core.values() {
            shared.store(at, &[value]);
            at += 1;
        }
        debug_assert_eq!(states::STATES.len(), self.by_state.len());
        shared.store(at, &self.by_state);
    }
}

#[cfg(test)]
mod tests;
