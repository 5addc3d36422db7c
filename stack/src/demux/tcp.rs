//! The worker's TCP: the connections this worker owns (a slab of `tcp::Connection`s, each
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

use std::{
    net::{SocketAddr, SocketAddrV4},
    sync::Arc,
};

use crate::{
    counters::{Counters, SharedCounters},
    socket::{Command, Host, Socket},
    steer::RuleGuard,
    table::{FourTuple, Protocol, SocketNumber},
    tcp::{self, Connection, Endpoints, Event, Listener, ListenerAction, Segment, State},
    tcp_api::{self, ConnectRequest, Op, OpKind},
    tcp_socket::{
        self, HEADROOM, STATES, SegmentAddrs, TcpConnectionSocket, TcpHandler, TcpIoCounter,
        TcpListenerSocket, TcpSession,
    },
    time::Instant,
    timer::TimerId,
    wire::{
        ethernet::MacAddr,
        tcp::{TcpPacket, TcpRepr},
    },
    xsk::{FrameSink, TxResult},
};

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

struct Slot {
    conn: Option<Connection>,
    generation: u32,
    number: Option<SocketNumber>,
    shared: Option<Arc<TcpConnectionSocket>>,
    handler: Option<Arc<dyn TcpHandler>>,
    /// The application's own state for it (`TcpHandler::session`); events go here then.
    session: Option<Box<dyn TcpSession>>,
    /// The listener that made it, until it has told that listener how its handshake ended.
    listener: Option<SocketNumber>,
    timer: Option<TimerId>,
    deadline: Option<Instant>,
    addrs: SegmentAddrs,
    /// The state it is counted under in `by_state`.
    counted: Option<State>,
    /// Waiting in `deferred` for TX room.
    deferred: bool,
    /// A thread uses it (`tcp_api`): its events bump the shared signal.
    api: bool,
    /// The listener whose accept queue it joins once established.
    accept_into: Option<Arc<TcpListenerSocket>>,
    /// The steering rule of an active open's local port.
    rule: Option<RuleGuard>,
}

impl Slot {
    /// A slot at `generation` that holds no connection yet.
    fn empty(generation: u32, addrs: SegmentAddrs) -> Self {
        Slot {
            conn: None,
            generation,
            number: None,
            shared: None,
            handler: None,
            session: None,
            listener: None,
            timer: None,
            deadline: None,
            addrs,
            counted: None,
            deferred: false,
            api: false,
            accept_into: None,
            rule: None,
        }
    }
}

struct WorkerListener {
    number: SocketNumber,
    state: Listener,
}

/// What the table said of a segment's four-tuple.
enum Found {
    Connection { owner: usize, at: ConnRef },
    Listener(SocketNumber, SocketAddrV4, Arc<TcpListenerSocket>),
    Nothing,
}

/// Names of the connections-by-state gauges, in `STATES` order.
const STATE_GAUGES: [&str; 11] = [
    "tcp_state_closed",
    "tcp_state_listen",
    "tcp_state_syn_sent",
    "tcp_state_syn_received",
    "tcp_state_established",
    "tcp_state_fin_wait_1",
    "tcp_state_fin_wait_2",
    "tcp_state_close_wait",
    "tcp_state_closing",
    "tcp_state_last_ack",
    "tcp_state_time_wait",
];

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
    by_state: [u64; 11],
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
            by_state: [0; 11],
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
        if !tcp_socket::accept_checksum(self.host.rx_checksum, &packet, a.src, a.dst, &mut self.io)
        {
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
        let addrs = SegmentAddrs {
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
                let Some(conn) = self
                    .slots
                    .get_mut(at.slot as usize)
                    .filter(|s| s.generation == at.generation)
                    .and_then(|s| s.conn.as_mut())
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
    fn no_socket(&mut self, segment: &Segment<'_>, addrs: &SegmentAddrs, tx: &mut dyn FrameSink) {
        self.io.bump(TcpIoCounter::NoSocket);
        self.core.segments_in += 1;
        if let Some(rst) = tcp_socket::reset_for(&segment.header, segment.payload.len())
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
        addrs: &SegmentAddrs,
        header: &TcpRepr,
        tx: &mut dyn FrameSink,
    ) -> bool {
        match tx.send(&mut |buf: &mut [u8]| tcp_socket::write_control(buf, addrs, header)) {
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

    #[expect(
        clippy::too_many_arguments,
        reason = "the segment's whole context; a struct for one call site adds nothing"
    )]
    fn on_listener(
        &mut self,
        now: Instant,
        number: SocketNumber,
        bound: SocketAddrV4,
        socket: &Arc<TcpListenerSocket>,
        segment: &Segment<'_>,
        addrs: SegmentAddrs,
        timers: &mut dyn ConnTimers,
        tx: &mut dyn FrameSink,
    ) {
        let index = self.listener_index(number, bound, socket);
        let endpoints = Endpoints {
            local: SocketAddr::V4(addrs.src),
            remote: SocketAddr::V4(addrs.dst),
        };
        let action =
            self.listeners[index]
                .state
                .handle_segment(now, endpoints, segment, &mut self.core);
        match action {
            ListenerAction::Ignore => {}
            ListenerAction::Reply(t) => {
                self.send_control(&addrs, &t.header, tx);
            }
            ListenerAction::NewConnection(conn) => {
                self.open(now, conn, number, socket, addrs, timers, tx)
            }
        }
    }

    /// This worker's state for listener `number`, made on its first SYN here.
    fn listener_index(
        &mut self,
        number: SocketNumber,
        bound: SocketAddrV4,
        socket: &TcpListenerSocket,
    ) -> usize {
        if let Some(i) = self.listeners.iter().position(|l| l.number == number) {
            return i;
        }
        // Listeners closed since are forgotten here (rarely: a new listener is rare).
        let table = &self.host.table;
        self.listeners.retain(|l| table.get(l.number).is_ok());
        self.listeners.push(WorkerListener {
            number,
            state: Listener::new(
                socket.config.clone(),
                SocketAddr::V4(bound),
                socket.backlog,
                socket.keys.clone(),
            ),
        });
        self.listeners.len() - 1
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the new connection's whole context"
    )]
    fn open(
        &mut self,
        now: Instant,
        conn: Connection,
        listener: SocketNumber,
        socket: &Arc<TcpListenerSocket>,
        addrs: SegmentAddrs,
        timers: &mut dyn ConnTimers,
        tx: &mut dyn FrameSink,
    ) {
        let endpoints = conn.endpoints();
        // A cookie's connection is established already, and in the accept queue: the
        // application on the worker takes it now.
        let established = conn.state() == State::Established;
        let index = self.alloc_slot(addrs);
        let generation = self.slots[index as usize].generation;
        let shared = Arc::new(TcpConnectionSocket::new(self.worker, index, generation));
        let tuple = FourTuple::connected(Protocol::Tcp, addrs.src, addrs.dst);
        let inserted = self
            .host
            .table
            .insert(tuple, |_| Socket::TcpConnection(shared.clone()));
        let number = match inserted {
            Ok(n) => n,
            Err(e) => {
                log::debug!("tcp {} -> {}: not opened: {e}", addrs.src, addrs.dst);
                self.io.bump(TcpIoCounter::DropTableFull);
                self.free.push(index);
                if let Some(l) = self.listeners.iter_mut().find(|l| l.number == listener) {
                    if established {
                        l.state.forget(endpoints);
                    } else {
                        l.state.on_half_open_closed(endpoints);
                    }
                }
                return;
            }
        };
        if established && let Some(l) = self.listeners.iter_mut().find(|l| l.number == listener) {
            l.state.forget(endpoints);
        }
        let api = socket.handler.is_none();
        self.slots[index as usize] = Slot {
            conn: Some(conn),
            number: Some(number),
            shared: Some(shared),
            handler: socket.handler.clone(),
            session: socket
                .handler
                .as_ref()
                .and_then(|h| h.session(now, self.worker)),
            api,
            accept_into: api.then(|| socket.clone()),
            listener: (!established).then_some(listener),
            ..Slot::empty(generation, addrs)
        };
        self.io.bump(TcpIoCounter::ConnectionsOpened);
        self.settle(
            now,
            ConnRef {
                slot: index,
                generation,
            },
            timers,
            tx,
        );
    }

    /// A free slot (a new one if none is free).
    fn alloc_slot(&mut self, addrs: SegmentAddrs) -> u32 {
        match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::empty(0, addrs));
                (self.slots.len() - 1) as u32
            }
        }
    }

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
        let addrs = SegmentAddrs {
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
        let index = self.alloc_slot(addrs);
        let generation = self.slots[index as usize].generation;
        let shared = Arc::new(TcpConnectionSocket::new(self.worker, index, generation));
        let tuple = FourTuple::connected(Protocol::Tcp, local, remote);
        let number = match self
            .host
            .table
            .insert(tuple, |_| Socket::TcpConnection(shared.clone()))
        {
            Ok(n) => n,
            Err(e) => {
                log::debug!("tcp {local} -> {remote}: not opened: {e}");
                self.io.bump(TcpIoCounter::DropTableFull);
                self.free.push(index);
                op.complete(tcp_api::GONE);
                return;
            }
        };
        self.slots[index as usize] = Slot {
            conn: Some(conn),
            number: Some(number),
            shared: Some(shared),
            api: true,
            rule,
            ..Slot::empty(generation, addrs)
        };
        self.io.bump(TcpIoCounter::ConnectionsOpened);
        self.settle(
            now,
            ConnRef {
                slot: index,
                generation,
            },
            timers,
            tx,
        );
        // Answered once the snapshot says SYN-SENT (the caller waits on it).
        *op.number.lock().unwrap_or_else(|p| p.into_inner()) = Some(number);
        op.complete(0);
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
        let Some(conn) = at.and_then(|at| {
            self.slots
                .get_mut(at.slot as usize)
                .filter(|s| s.generation == at.generation)
                .and_then(|s| s.conn.as_mut())
        }) else {
            op.complete(tcp_api::GONE);
            return;
        };
        let result = match kind {
            OpKind::Read { ptr, len } => {
                // Safety: the caller's buffer, which it does not touch until `op` is
                // complete (it blocks in `Op::wait`).
                let buf = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
                match conn.read(buf) {
                    0 => match conn.state() {
                        State::CloseWait | State::LastAck | State::Closing | State::TimeWait => 0,
                        State::Closed => tcp_api::GONE,
                        _ => tcp_api::WOULD_BLOCK,
                    },
                    n => n as i64,
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
                        | State::CloseWait => tcp_api::WOULD_BLOCK,
                        _ => tcp_api::GONE,
                    },
                    n => n as i64,
                }
            }
            OpKind::Shutdown => {
                conn.shutdown();
                0
            }
            OpKind::Close => {
                conn.close();
                0
            }
        };
        op.complete(result);
        if let Some(at) = at {
            self.settle(now, at, timers, tx);
        }
    }

    /// The connection's timer fired.
    pub fn on_timer(
        &mut self,
        now: Instant,
        at: ConnRef,
        id: TimerId,
        timers: &mut dyn ConnTimers,
        tx: &mut dyn FrameSink,
    ) {
        let Some(slot) = self.slots.get_mut(at.slot as usize) else {
            return;
        };
        if slot.generation != at.generation || slot.timer != Some(id) {
            return; // a timer of a connection freed since, or replaced
        }
        slot.timer = None;
        slot.deadline = None;
        if let Some(conn) = slot.conn.as_mut() {
            conn.handle_timeout(now, &mut self.core);
            if let Some(session) = slot.session.as_mut()
                && session.deadline().is_some_and(|d| d <= now)
            {
                session.on_timeout(now, conn, &mut self.scratch);
            }
        }
        self.settle(now, at, timers, tx);
    }

    /// Gives connections that waited for TX room another turn.
    pub fn poll_deferred(
        &mut self,
        now: Instant,
        timers: &mut dyn ConnTimers,
        tx: &mut dyn FrameSink,
    ) {
        // The two lists trade places: what `settle` defers again goes into the spare one,
        // and neither allocation is ever dropped.
        let spare = std::mem::take(&mut self.deferred_spare);
        let mut list = std::mem::replace(&mut self.deferred, spare);
        for at in list.drain(..) {
            if let Some(slot) = self.slots.get_mut(at.slot as usize)
                && slot.generation == at.generation
            {
                slot.deferred = false;
                self.settle(now, at, timers, tx);
            }
        }
        self.deferred_spare = list;
    }

    /// After any interaction: events to the application, segments out, the timer re-armed,
    /// the snapshot published; the slot freed once the connection is closed.
    fn settle(
        &mut self,
        now: Instant,
        at: ConnRef,
        timers: &mut dyn ConnTimers,
        tx: &mut dyn FrameSink,
    ) {
        let Self {
            slots,
            listeners,
            core,
            io,
            scratch,
            deferred,
            by_state,
            max_payload,
            max_time_wait,
            ..
        } = self;
        let Some(slot) = slots.get_mut(at.slot as usize) else {
            return;
        };
        if slot.generation != at.generation {
            return;
        }
        let Some(conn) = slot.conn.as_mut() else {
            return;
        };
        // Events, then output: what the application wrote goes out in the same batch. The
        // application's calls may raise events again (a read opening the window does not;
        // an abort does), so loop until none is left.
        let mut happened = false;
        while let Some(event) = conn.poll_event() {
            happened = true;
            match event {
                Event::Connected => {
                    if let Some(l) = slot.accept_into.take()
                        && let (Some(queue), Some(number)) = (&l.accepted, slot.number)
                    {
                        if queue.push(number).is_ok() {
                            l.signal.notify();
                        } else {
                            conn.abort();
                        }
                    }
                    if let Some(number) = slot.listener.take()
                        && let Some(l) = listeners.iter_mut().find(|l| l.number == number)
                    {
                        let endpoints = conn.endpoints();
                        if l.state.on_established(endpoints, core) {
                            l.state.forget(endpoints);
                        } else {
                            conn.abort();
                        }
                    }
                }
                Event::Closed(_) => {
                    if let Some(number) = slot.listener.take()
                        && let Some(l) = listeners.iter_mut().find(|l| l.number == number)
                    {
                        l.state.on_half_open_closed(conn.endpoints());
                    }
                }
                _ => {}
            }
            if let Some(session) = slot.session.as_mut() {
                session.on_event(now, conn, event, scratch);
            } else if let Some(handler) = &slot.handler {
                handler.on_event(conn, event, scratch);
            }
        }
        let addrs = slot.addrs;
        let room = *max_payload;
        loop {
            if tx.room() == 0 {
                if !slot.deferred {
                    slot.deferred = true;
                    deferred.push(at);
                }
                break;
            }
            let mut built = false;
            let sent = tx.send(&mut |buf: &mut [u8]| {
                let end = buf.len().min(HEADROOM + room);
                let t = conn.poll_transmit(now, buf.get_mut(HEADROOM..end)?, core)?;
                built = true;
                tcp_socket::finish_segment(buf, &addrs, &t)
            });
            match sent {
                TxResult::Sent => {}
                TxResult::Declined if built => io.bump(TcpIoCounter::DropTx),
                TxResult::Declined => break,
                TxResult::Full => {
                    io.bump(TcpIoCounter::TxDeferred);
                    if !slot.deferred {
                        slot.deferred = true;
                        deferred.push(at);
                    }
                    break;
                }
            }
        }
        let deadline = match (
            conn.poll_timeout(),
            slot.session.as_ref().and_then(|s| s.deadline()),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if deadline != slot.deadline {
            slot.timer = match (deadline, slot.timer) {
                (Some(d), Some(id)) if timers.reset(id, d) => Some(id),
                (Some(d), _) => Some(timers.arm(d, at)),
                (None, Some(id)) => {
                    timers.cancel(id);
                    None
                }
                (None, None) => None,
            };
            slot.deadline = deadline;
        }
        let state = conn.state();
        if slot.counted != Some(state) {
            if let Some(old) = slot.counted {
                by_state[usize::from(tcp_socket::state_index(old))] -= 1;
            }
            by_state[usize::from(tcp_socket::state_index(state))] += 1;
            slot.counted = Some(state);
        }
        if let Some(shared) = &slot.shared {
            shared.publish(&conn.info());
            if slot.api && happened {
                shared.signal.notify();
            }
        }
        let overflow = state == State::TimeWait
            && by_state[usize::from(tcp_socket::state_index(State::TimeWait))] > *max_time_wait;
        if (conn.is_closed() || overflow) && !slot.deferred {
            if overflow {
                io.bump(TcpIoCounter::TimeWaitOverflow);
            }
            self.release(at, timers);
        }
    }

    /// Frees a connection: its table entry, its timer, its slot.
    fn release(&mut self, at: ConnRef, timers: &mut dyn ConnTimers) {
        let Some(slot) = self.slots.get_mut(at.slot as usize) else {
            return;
        };
        if slot.generation != at.generation || slot.conn.is_none() {
            return;
        }
        if let Some(id) = slot.timer.take() {
            timers.cancel(id);
        }
        if let Some(number) = slot.number.take() {
            let _ = self.host.table.remove(number);
        }
        if let Some(state) = slot.counted.take() {
            self.by_state[usize::from(tcp_socket::state_index(state))] -= 1;
        }
        if let Some(conn) = slot.conn.take()
            && let Some(number) = slot.listener.take()
            && let Some(l) = self.listeners.iter_mut().find(|l| l.number == number)
        {
            l.state.on_half_open_closed(conn.endpoints());
        }
        if let Some(shared) = slot.shared.take()
            && slot.api
        {
            shared.signal.notify();
        }
        slot.api = false;
        slot.accept_into = None;
        slot.rule = None;
        slot.handler = None;
        slot.session = None;
        slot.deadline = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(at.slot);
        self.io.bump(TcpIoCounter::ConnectionsClosed);
    }

    /// (layer, name) of what `publish` stores: the I/O counters, the core's, the gauges.
    pub fn counter_names() -> impl Iterator<Item = (&'static str, &'static str)> {
        Counters::<TcpIoCounter>::names()
            .chain(tcp::Counters::NAMES.iter().map(|n| ("tcp", *n)))
            .chain(STATE_GAUGES.iter().map(|n| ("tcp", *n)))
    }

    /// Stores everything `counter_names` names from slot `offset` on.
    pub fn publish(&self, shared: &SharedCounters, offset: usize) {
        shared.store(offset, self.io.values());
        let mut at = offset + self.io.values().len();
        for value in self.core.values() {
            shared.store(at, &[value]);
            at += 1;
        }
        debug_assert_eq!(STATES.len(), self.by_state.len());
        shared.store(at, &self.by_state);
    }
}

#[cfg(test)]
mod tests;
