//! TCP sockets as the socket table holds them: what every worker, the API and the control
//! plane share of a listener or a connection. The connections themselves (`tcp::Connection`,
//! sans-IO) live in their owning worker's demux; the table entry holds an `Arc` with what
//! others need: the owner, a snapshot for `fastpath sockets`, the application.
//!
//! Also here: the received-checksum policy for TCP and the frames TCP sends (Ethernet +
//! IPv4 + TCP, full checksums: AF_XDP frames get no offload).

use std::{
    net::SocketAddrV4,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
};

use crossbeam_queue::ArrayQueue;
use fastpath_common::{IPPROTO_TCP, layout::ETHERTYPE_IPV4};

use crate::{
    counter_set,
    counters::Counters,
    steer::RuleGuard,
    table::SocketNumber,
    tcp::{Connection, ConnectionInfo, Event, IsnKeys, State, TcpConfig, Transmit},
    tcp_api::Signal,
    time::Instant,
    udp::RxChecksum,
    wire::{
        ethernet::MacAddr,
        ipv4::Ipv4Repr,
        tcp::{TcpPacket, TcpRepr},
        udp::ChecksumStatus,
    },
};

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
pub fn accept_checksum(
    policy: RxChecksum,
    packet: &TcpPacket<&[u8]>,
    src: [u8; 4],
    dst: [u8; 4],
    c: &mut Counters<TcpIoCounter>,
) -> bool {
    // The fuzzer cannot forge checksums: let it reach the layers behind this one.
    if policy == RxChecksum::Skip || cfg!(fuzzing) {
        return true;
    }
    match packet.check(src, dst) {
        ChecksumStatus::Valid => true,
        ChecksumStatus::Partial if policy == RxChecksum::AcceptPartial => {
            c.bump(TcpIoCounter::ChecksumPartial);
            true
        }
        _ => {
            c.bump(TcpIoCounter::DropChecksum);
            false
        }
    }
}

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

/// A listening socket: the settings its connections start with and the application that
/// serves them. Each worker keeps its own `tcp::Listener` state for it (SYN queue counts),
/// with the same ISN and cookie keys, so a SYN may land on any worker.
pub struct TcpListenerSocket {
    pub config: TcpConfig,
    pub backlog: usize,
    pub keys: IsnKeys,
    /// Serves each connection on its worker; or, when None, the connections wait in
    /// `accepted` for a thread's `Stack::tcp_accept`.
    pub handler: Option<Arc<dyn TcpHandler>>,
    pub accepted: Option<ArrayQueue<SocketNumber>>,
    /// Bumped when a connection joins `accepted`.
    pub signal: Signal,
    /// The steering rule this socket holds; released on close.
    pub(crate) rule: Mutex<Option<RuleGuard>>,
}

impl TcpListenerSocket {
    pub fn new(config: TcpConfig, backlog: usize, handler: Arc<dyn TcpHandler>) -> Self {
        Self {
            config,
            backlog,
            keys: IsnKeys::random(),
            handler: Some(handler),
            accepted: None,
            signal: Signal::default(),
            rule: Mutex::new(None),
        }
    }

    /// A listener whose connections a thread accepts (up to `depth` waiting).
    pub fn queued(config: TcpConfig, backlog: usize, depth: usize) -> Self {
        Self {
            config,
            backlog,
            keys: IsnKeys::random(),
            handler: None,
            accepted: Some(ArrayQueue::new(depth.max(1))),
            signal: Signal::default(),
            rule: Mutex::new(None),
        }
    }
}

/// A connection as others see it: who owns it, where in the owner's slab it sits, and the
/// snapshot the owner publishes after each interaction (relaxed stores to a line only the
/// owner writes).
pub struct TcpConnectionSocket {
    pub owner: usize,
    pub slot: u32,
    pub generation: u32,
    /// Bumped on every event of a connection a thread uses (`tcp_api`).
    pub signal: Signal,
    info: PublishedInfo,
}

#[derive(Default)]
#[repr(align(128))]
struct PublishedInfo {
    state: AtomicU8,
    send_queued: AtomicU64,
    recv_queued: AtomicU64,
    cwnd: AtomicU64,
    in_flight: AtomicU64,
    srtt_us: AtomicU64,
    rttvar_us: AtomicU64,
    rto_us: AtomicU64,
    retransmits: AtomicU64,
    snd_wnd: AtomicU64,
    rcv_wnd: AtomicU64,
}

/// The TCP part of a `fastpath sockets` row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TcpInfo {
    /// Bytes written and not yet acknowledged.
    pub send_queued: u64,
    /// Bytes received and not yet read.
    pub recv_queued: u64,
    pub cwnd: u64,
    pub in_flight: u64,
    pub srtt_us: Option<u64>,
    pub rttvar_us: u64,
    pub rto_us: u64,
    pub retransmits: u64,
    pub snd_wnd: u64,
    pub rcv_wnd: u64,
}

impl TcpConnectionSocket {
    pub fn new(owner: usize, slot: u32, generation: u32) -> Self {
        Self {
            owner,
            slot,
            generation,
            signal: Signal::default(),
            info: PublishedInfo::default(),
        }
    }

    /// Stores a snapshot of the owner's connection (the owner is the only writer).
    pub fn publish(&self, i: &ConnectionInfo) {
        let p = &self.info;
        p.state.store(state_index(i.state), Ordering::Relaxed);
        p.send_queued.store(i.send_queued as u64, Ordering::Relaxed);
        p.recv_queued.store(i.recv_queued as u64, Ordering::Relaxed);
        p.cwnd.store(i.cwnd.into(), Ordering::Relaxed);
        p.in_flight.store(i.in_flight.into(), Ordering::Relaxed);
        p.srtt_us
            .store(i.srtt_us.unwrap_or(u64::MAX), Ordering::Relaxed);
        p.rttvar_us.store(i.rttvar_us, Ordering::Relaxed);
        p.rto_us.store(i.rto_us, Ordering::Relaxed);
        p.retransmits.store(i.retransmits, Ordering::Relaxed);
        p.snd_wnd.store(i.snd_wnd.into(), Ordering::Relaxed);
        p.rcv_wnd.store(i.rcv_wnd.into(), Ordering::Relaxed);
    }

    pub fn state(&self) -> State {
        STATES[usize::from(self.info.state.load(Ordering::Relaxed)).min(STATES.len() - 1)]
    }

    pub fn info(&self) -> TcpInfo {
        let p = &self.info;
        let srtt = p.srtt_us.load(Ordering::Relaxed);
        TcpInfo {
            send_queued: p.send_queued.load(Ordering::Relaxed),
            recv_queued: p.recv_queued.load(Ordering::Relaxed),
            cwnd: p.cwnd.load(Ordering::Relaxed),
            in_flight: p.in_flight.load(Ordering::Relaxed),
            srtt_us: (srtt != u64::MAX).then_some(srtt),
            rttvar_us: p.rttvar_us.load(Ordering::Relaxed),
            rto_us: p.rto_us.load(Ordering::Relaxed),
            retransmits: p.retransmits.load(Ordering::Relaxed),
            snd_wnd: p.snd_wnd.load(Ordering::Relaxed),
            rcv_wnd: p.rcv_wnd.load(Ordering::Relaxed),
        }
    }
}

/// RFC 9293's states, in the order of `state_index`.
pub const STATES: [State; 11] = [
    State::Closed,
    State::Listen,
    State::SynSent,
    State::SynReceived,
    State::Established,
    State::FinWait1,
    State::FinWait2,
    State::CloseWait,
    State::Closing,
    State::LastAck,
    State::TimeWait,
];

pub fn state_index(state: State) -> u8 {
    STATES.iter().position(|s| *s == state).unwrap_or(0) as u8
}

/// The state as `fastpath sockets` and `ss` name it.
pub fn state_name(state: State) -> &'static str {
    match state {
        State::Closed => "closed",
        State::Listen => "listen",
        State::SynSent => "syn-sent",
        State::SynReceived => "syn-received",
        State::Established => "established",
        State::FinWait1 => "fin-wait-1",
        State::FinWait2 => "fin-wait-2",
        State::CloseWait => "close-wait",
        State::Closing => "closing",
        State::LastAck => "last-ack",
        State::TimeWait => "time-wait",
    }
}

/// Room in front of a segment's payload for the largest headers: Ethernet, IPv4 (no
/// options), TCP with 40 bytes of options. `poll_transmit` writes the payload here.
pub const HEADROOM: usize = 14 + 20 + 60;
const L3: usize = 14;
const L4: usize = 14 + 20;

/// The addresses of a segment's frame.
#[derive(Clone, Copy, Debug)]
pub struct SegmentAddrs {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

/// Finishes a frame whose payload (`t.payload_len` bytes) sits at `buf[HEADROOM..]`: moves
/// it to follow the actual headers and writes Ethernet, IPv4 and TCP with full checksums.
/// Returns the frame's length.
pub fn finish_segment(buf: &mut [u8], a: &SegmentAddrs, t: &Transmit) -> Option<usize> {
    let hlen = t.header.header_len();
    let payload_at = L4 + hlen;
    let total = payload_at + t.payload_len;
    if buf.len() < total.max(HEADROOM + t.payload_len) || payload_at > HEADROOM {
        return None;
    }
    if payload_at != HEADROOM && t.payload_len > 0 {
        buf.copy_within(HEADROOM..HEADROOM + t.payload_len, payload_at);
    }
    buf[0..6].copy_from_slice(&a.dst_mac);
    buf[6..12].copy_from_slice(&a.src_mac);
    buf[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    Ipv4Repr {
        src: a.src.ip().octets(),
        dst: a.dst.ip().octets(),
        protocol: IPPROTO_TCP,
        payload_len: hlen + t.payload_len,
        ttl: 64,
    }
    .emit(&mut buf[L3..])
    .ok()?;
    t.header
        .emit(
            &mut buf[L4..total],
            t.payload_len,
            a.src.ip().octets(),
            a.dst.ip().octets(),
        )
        .ok()?;
    Some(total)
}

/// Writes a header-only segment (a RST, a cookie SYN-ACK) into `buf`.
pub fn write_control(buf: &mut [u8], a: &SegmentAddrs, header: &TcpRepr) -> Option<usize> {
    finish_segment(
        buf,
        a,
        &Transmit {
            header: *header,
            payload_len: 0,
        },
    )
}

/// RFC 9293 3.10.7.1: the answer to a segment for a connection that does not exist. None
/// for a RST (never answered).
pub fn reset_for(h: &TcpRepr, payload_len: usize) -> Option<TcpRepr> {
    use crate::wire::tcp::{TcpOptions, flags};
    if h.flags & flags::RST != 0 {
        return None;
    }
    let (seq, ack, f) = if h.flags & flags::ACK != 0 {
        // "<SEQ=SEG.ACK><CTL=RST>"
        (h.ack, 0, flags::RST)
    } else {
        // "<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>" (SYN and FIN count in SEG.LEN).
        let len = payload_len as u32
            + u32::from(h.flags & flags::SYN != 0)
            + u32::from(h.flags & flags::FIN != 0);
        (0, h.seq.wrapping_add(len), flags::RST | flags::ACK)
    };
    Some(TcpRepr {
        src_port: h.dst_port,
        dst_port: h.src_port,
        seq,
        ack,
        flags: f,
        window: 0,
        options: TcpOptions::default(),
    })
}
