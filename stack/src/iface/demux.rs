//! The demux: the worker's side of the stack. It parses each received frame once
//! (Ethernet, IPv4, the transport header), finds its socket by four-tuple and dispatches
//! by protocol; and, once per batch with no frame, it fires the worker's timers and carries
//! out what applications posted to this worker's mailbox.
//!
//! A frame in may produce zero, one or many frames out: an answer written in place, and
//! new frames from the UMEM through the batch's `Transmitter`. Frames also go out with no
//! frame in, when a timer fires or an application sends.

use std::{net::SocketAddrV4, sync::Arc, time::Duration};

use fastpath_common::{IPPROTO_TCP, IPPROTO_UDP, layout::ETHERTYPE_IPV4};

use crate::{
    counter_set,
    counters::{Counters, SharedCounters},
    iface::{
        frame::{self, FrameAddrs, LinkInfo},
        timer::{TimerId, TimerWheel},
    },
    phy::{FrameHandler, FrameSink, TxResult},
    socket::{
        Command, Host, Socket,
        table::Protocol,
        tcp::{Arrival, ConnRef, ConnTimers, TcpEngine},
        udp::{self, Located, Outcome, UdpCounter, UdpTimer, UdpTimers},
    },
    time::Instant,
    wire::{ethernet::EthernetFrame, ipv4::Ipv4Packet, udp::UdpPacket},
};

counter_set! {
    "ipv4",
    /// What the demux did with frames that never reached a protocol.
    #[expect(clippy::enum_variant_names, reason = "every one of them is a drop, and says so")]
    pub enum DemuxCounter {
        DropMalformed = "drop_malformed",
        DropIpChecksum = "drop_ip_checksum",
        /// Frames the XDP rules steered here that no protocol here takes.
        DropUnsteered = "drop_unsteered",
    }
}

/// A timer in the worker's wheel, by the protocol that armed it.
#[derive(Clone, Copy, Debug)]
enum Timer {
    Udp(UdpTimer),
    Tcp(ConnRef),
}

/// Resolution of the worker's timer wheel.
const TIMER_TICK: Duration = Duration::from_micros(100);

/// UDP handlers arm timers in the worker's wheel through this.
struct Timers<'a>(&'a mut TimerWheel<Timer>);

impl UdpTimers for Timers<'_> {
    fn arm(&mut self, deadline: Instant, timer: UdpTimer) {
        self.0.insert(deadline, Timer::Udp(timer));
    }
}

impl ConnTimers for Timers<'_> {
    fn arm(&mut self, at: Instant, conn: ConnRef) -> TimerId {
        self.0.insert(at, Timer::Tcp(conn))
    }

    fn reset(&mut self, id: TimerId, at: Instant) -> bool {
        self.0.reset(id, at)
    }

    fn cancel(&mut self, id: TimerId) {
        self.0.cancel(id);
    }
}

/// Application sends handled per `poll`, so a flood of them cannot starve reception.
const COMMANDS_PER_POLL: usize = 64;

/// The demux of one worker.
pub struct Demux {
    host: Arc<Host>,
    worker: usize,
    link: LinkInfo,
    counters: Counters<DemuxCounter>,
    udp: Counters<UdpCounter>,
    tcp: TcpEngine,
    timers: TimerWheel<Timer>,
    /// Timers fired in this poll, dispatched after the wheel is released (reused).
    fired: Vec<(TimerId, Timer)>,
    /// A command that found no frame last time.
    pending: Option<Command>,
}

impl Demux {
    pub fn new(host: Arc<Host>, worker: usize) -> Self {
        Self {
            link: host.link_info(),
            tcp: TcpEngine::new(host.clone(), worker),
            host,
            worker,
            counters: Counters::default(),
            udp: Counters::default(),
            timers: TimerWheel::new(Instant::ZERO, TIMER_TICK),
            fired: Vec::with_capacity(256),
            pending: None,
        }
    }

    pub fn counters(&self) -> &Counters<DemuxCounter> {
        &self.counters
    }

    pub fn udp_counters(&self) -> &Counters<UdpCounter> {
        &self.udp
    }

    pub fn tcp(&self) -> &TcpEngine {
        &self.tcp
    }

    pub fn tcp_mut(&mut self) -> &mut TcpEngine {
        &mut self.tcp
    }

    /// Timers armed and not yet fired.
    pub fn timers_armed(&self) -> usize {
        self.timers.len()
    }

    fn handle_udp(
        &mut self,
        now: Instant,
        frame: &mut [u8],
        at: Located,
        tx: &mut dyn FrameSink,
    ) -> Option<usize> {
        let remote = SocketAddrV4::new(at.src.into(), at.src_port);
        let local = SocketAddrV4::new(at.dst.into(), at.dst_port);
        // Room for a reply: what the link's MTU allows (never less than the request, which
        // the frame holds), within the UMEM frame.
        let mtu_payload = udp::max_payload(self.link.mtu).saturating_sub(at.ihl - 20);
        let room = (frame.len() - at.payload_at()).min(mtu_payload.max(at.payload_len));
        let Self {
            host,
            worker,
            link,
            udp,
            timers,
            ..
        } = self;
        // The socket's work runs under the table's guard: no reference count per datagram.
        let outcome = host
            .table
            .lookup_with(Protocol::Udp, local, remote, |entry| match &entry.value {
                Socket::TcpListener(_) | Socket::TcpConnection(_) => Outcome::Consumed,
                Socket::Udp(socket) => udp::deliver(
                    socket,
                    entry.number,
                    frame,
                    &at,
                    room,
                    udp::Receiver {
                        worker: *worker,
                        now,
                        tx,
                        timers: &mut Timers(timers),
                        link,
                        neighbors: &host.neighbors,
                        counters: udp,
                    },
                ),
            });
        match outcome {
            None => {
                self.udp.bump(UdpCounter::DropNoSocket);
                None
            }
            Some(Outcome::Queued(true) | Outcome::Consumed) => None,
            Some(Outcome::Queued(false)) => {
                self.udp.bump(UdpCounter::DropQueueFull);
                None
            }
            Some(Outcome::Reply(n)) => {
                self.udp.bump(UdpCounter::Replied);
                udp::rewrite_reply(frame, &at, n)
            }
        }
    }

    /// A TCP frame another worker received for a connection this worker owns (already
    /// checked there once; parsed again here, where it is rare).
    fn handle_forwarded(&mut self, now: Instant, frame: &[u8], tx: &mut dyn FrameSink) {
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return;
        };
        let (l3, src_mac) = (eth.payload_offset(), eth.src());
        let Ok(ip) = Ipv4Packet::new_checked(&frame[l3..]) else {
            return;
        };
        let arrival = Arrival {
            src: ip.src(),
            dst: ip.dst(),
            src_mac,
            segment: ip.payload(),
            frame,
            forwarded: true,
        };
        self.tcp
            .on_segment(now, arrival, &mut Timers(&mut self.timers), tx);
    }

    fn fire_timers(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        let fired = &mut self.fired;
        self.timers.poll(now, |id, timer| fired.push((id, timer)));
        let mut fired = std::mem::take(&mut self.fired);
        for (id, timer) in fired.drain(..) {
            match timer {
                Timer::Tcp(conn) => {
                    self.tcp
                        .on_timer(now, conn, id, &mut Timers(&mut self.timers), tx);
                }
                Timer::Udp(t) => {
                    let Ok(entry) = self.host.table.get(t.socket) else {
                        continue; // closed since: its timers die with it
                    };
                    let Socket::Udp(socket) = &entry.value else {
                        continue;
                    };
                    let Some(handler) = &socket.handler else {
                        continue;
                    };
                    let local = entry.tuple.local;
                    let mut timers = Timers(&mut self.timers);
                    let mut egress = udp::Egress::new(
                        now,
                        t.socket,
                        local,
                        tx,
                        &mut timers,
                        &self.link,
                        &self.host.neighbors,
                        &mut self.udp,
                    );
                    handler.on_timer(t.token, &mut egress);
                }
            }
        }
        self.fired = fired;
    }

    fn run_commands(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        let mailbox = self.worker % self.host.mailboxes.len();
        for _ in 0..COMMANDS_PER_POLL {
            let Some(command) = self
                .pending
                .take()
                .or_else(|| self.host.mailboxes[mailbox].queue.pop())
            else {
                return;
            };
            match command {
                Command::TcpSegment(frame) => {
                    self.handle_forwarded(now, &frame, tx);
                    let _ = self.host.tx_pool.push(frame);
                }
                Command::TcpConnect(request) => {
                    self.tcp
                        .connect(now, request, &mut Timers(&mut self.timers), tx);
                }
                Command::TcpOp { number, kind, op } => {
                    self.tcp
                        .api_op(now, number, kind, &op, &mut Timers(&mut self.timers), tx);
                }
                Command::UdpSend(req) => {
                    let header = FrameAddrs {
                        src_mac: self.link.mac,
                        dst_mac: req.dst_mac,
                        src: req.src,
                        dst: req.dst,
                    };
                    match tx
                        .send(&mut |buf: &mut [u8]| frame::write_udp(buf, &header, &req.payload))
                    {
                        TxResult::Sent => {
                            self.udp.bump(UdpCounter::AppTx);
                            if let Ok(entry) = self.host.table.get(req.socket)
                                && let Socket::Udp(socket) = &entry.value
                            {
                                socket.count_tx(self.worker);
                            }
                        }
                        TxResult::Full => {
                            // No frame or TX slot in this batch: keep it, in order, for the next.
                            self.udp.bump(UdpCounter::TxDeferred);
                            self.pending = Some(Command::UdpSend(req));
                            return;
                        }
                        // It cannot be written into a frame (larger than a UMEM frame).
                        TxResult::Declined => self.udp.bump(UdpCounter::DropTooBig),
                    }
                    let _ = self.host.tx_pool.push(req.payload);
                }
            }
        }
    }
}

impl FrameHandler for Demux {
    fn handle(
        &mut self,
        now: Instant,
        frame: &mut [u8],
        len: usize,
        tx: &mut dyn FrameSink,
    ) -> Option<usize> {
        let Some(data) = frame.get(..len) else {
            self.counters.bump(DemuxCounter::DropMalformed);
            return None;
        };
        let (l3, src_mac) = match EthernetFrame::new_checked(data) {
            Ok(eth) if eth.ethertype() == ETHERTYPE_IPV4 => (eth.payload_offset(), eth.src()),
            Ok(_) => {
                self.counters.bump(DemuxCounter::DropUnsteered);
                return None;
            }
            Err(_) => {
                self.counters.bump(DemuxCounter::DropMalformed);
                return None;
            }
        };
        let Ok(ip) = Ipv4Packet::new_checked(&data[l3..]) else {
            self.counters.bump(DemuxCounter::DropMalformed);
            return None;
        };
        // The fuzzer cannot forge checksums: let it reach the layers behind this one.
        if !cfg!(fuzzing) && !ip.verify_checksum() {
            self.counters.bump(DemuxCounter::DropIpChecksum);
            return None;
        }
        if ip.is_fragment() || !matches!(ip.protocol(), IPPROTO_UDP | IPPROTO_TCP) {
            self.counters.bump(DemuxCounter::DropUnsteered);
            return None;
        }
        if ip.protocol() == IPPROTO_TCP {
            let (src, dst) = (ip.src(), ip.dst());
            self.host.neighbors.learn(src, src_mac);
            let arrival = Arrival {
                src,
                dst,
                src_mac,
                segment: ip.payload(),
                frame: data,
                forwarded: false,
            };
            self.tcp
                .on_segment(now, arrival, &mut Timers(&mut self.timers), tx);
            return None;
        }
        let (src, dst, ihl) = (ip.src(), ip.dst(), ip.header_len());
        let Ok(packet) = UdpPacket::new_checked(ip.payload()) else {
            self.counters.bump(DemuxCounter::DropMalformed);
            return None;
        };
        if !udp::accept_checksum(self.host.rx_checksum, &packet, src, dst, &mut self.udp) {
            return None;
        }
        let at = Located {
            l3,
            ihl,
            src,
            dst,
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.len() - 8,
        };
        self.host.neighbors.learn(src, src_mac);
        self.handle_udp(now, frame, at, tx)
    }

    fn wants_poll(&self, now: Instant) -> bool {
        self.pending.is_some()
            || self.tcp.has_deferred()
            || !self.host.mailboxes[self.worker % self.host.mailboxes.len()]
                .queue
                .is_empty()
            || self.timers.next_deadline().is_some_and(|d| d <= now)
    }

    fn poll(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        if !self.timers.is_empty() {
            self.fire_timers(now, tx);
        }
        if self.tcp.has_deferred() {
            self.tcp
                .poll_deferred(now, &mut Timers(&mut self.timers), tx);
        }
        self.run_commands(now, tx);
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.timers.next_deadline()
    }

    fn counter_names(&self) -> Vec<(&'static str, &'static str)> {
        Counters::<DemuxCounter>::names()
            .chain(Counters::<UdpCounter>::names())
            .chain(TcpEngine::counter_names())
            .chain([("timer", "timers_armed")])
            .collect()
    }

    fn publish(&self, shared: &SharedCounters, offset: usize) {
        shared.store(offset, self.counters.values());
        let udp_at = offset + self.counters.values().len();
        shared.store(udp_at, self.udp.values());
        let tcp_at = udp_at + self.udp.values().len();
        self.tcp.publish(shared, tcp_at);
        let timers_at = tcp_at + TcpEngine::counter_names().count();
        shared.store(timers_at, &[self.timers.len() as u64]);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;

    use super::*;
    use crate::{
        api::Stack,
        phy::testing::VecSink,
        socket::udp::{Datagram, Delivery, Egress, UdpHandler, Verdict},
        wire::{
            checksum::ChecksumStatus,
            ipv4::Ipv4Packet,
            testing::{CLIENT, SERVER, udp_request},
            udp::UdpPacket,
        },
    };

    /// Answers in place and sends two more datagrams: one frame in, three out.
    struct Fanout;

    impl UdpHandler for Fanout {
        fn on_datagram(&self, d: &mut Datagram<'_, '_>) -> Verdict {
            let from = d.from;
            let payload = d.payload().to_vec();
            for n in [b'1', b'2'] {
                let mut copy = payload.clone();
                copy.push(n);
                d.egress.send_to(from, &copy).expect("room in the batch");
            }
            Verdict::Reply(payload.len())
        }
    }

    /// Answers nothing now; 5 ms later sends "late" to whoever asked.
    struct Later;

    impl UdpHandler for Later {
        fn on_datagram(&self, d: &mut Datagram<'_, '_>) -> Verdict {
            let token = u64::from(u32::from_be_bytes(d.from.ip().octets())) << 16
                | u64::from(d.from.port());
            d.egress.set_timer(Duration::from_millis(5), token);
            Verdict::Consume
        }

        fn on_timer(&self, token: u64, egress: &mut Egress<'_>) {
            let to = SocketAddrV4::new(((token >> 16) as u32).into(), token as u16);
            // A spent budget is counted (tx_deferred); this handler does not retry.
            let _ = egress.send_to(to, b"late");
        }
    }

    fn demux_with(port: u16, handler: impl UdpHandler + 'static) -> (Stack, Demux) {
        let stack = Stack::detached(1);
        stack
            .udp_bind(
                SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, port),
                None,
                Delivery::on_worker(handler),
            )
            .unwrap();
        let demux = Demux::new(stack.host().clone(), 0);
        (stack, demux)
    }

    /// The UDP payload of a frame the stack sent, after checking its headers.
    #[track_caller]
    fn sent_payload(frame: &[u8], src: [u8; 4]) -> Vec<u8> {
        assert_eq!(&frame[0..6], &[2, 0, 0, 0, 0, 2], "to the client's MAC");
        let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src(), ip.dst()), (src, CLIENT));
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.check(ip.src(), ip.dst()), ChecksumStatus::Valid);
        assert_eq!(udp.dst_port(), 40000);
        udp.payload().to_vec()
    }

    #[test]
    fn one_frame_in_yields_three_frames_out() {
        let (_stack, mut demux) = demux_with(7000, Fanout);
        let mut frame = udp_request(7000, b"ping");
        let len = frame.len();
        frame.resize(4096, 0);
        let mut sink = VecSink::new(8);
        let reply = demux.handle(Instant::ZERO, &mut frame, len, &mut sink);
        assert_eq!(reply, Some(len), "the answer in place");
        let ip = Ipv4Packet::new_checked(&frame[14..len]).unwrap();
        assert_eq!((ip.src(), ip.dst()), (SERVER, CLIENT));
        assert_eq!(sink.frames.len(), 2, "two new frames");
        // From the address the request was sent to.
        assert_eq!(sent_payload(&sink.frames[0], SERVER), b"ping1");
        assert_eq!(sent_payload(&sink.frames[1], SERVER), b"ping2");
        assert_eq!(demux.udp_counters().get(UdpCounter::Sent), 2);
        assert_eq!(demux.udp_counters().get(UdpCounter::Replied), 1);
    }

    #[test]
    fn a_spent_budget_refuses_new_frames_and_counts_them() {
        let (_stack, mut demux) = demux_with(7000, Later);
        let mut frame = udp_request(7000, b"x");
        let len = frame.len();
        frame.resize(4096, 0);
        demux.handle(Instant::ZERO, &mut frame, len, &mut VecSink::new(0));
        let mut empty = VecSink::new(0);
        demux.poll(Instant::from_millis(6), &mut empty);
        assert!(empty.frames.is_empty());
        assert_eq!(demux.udp_counters().get(UdpCounter::TxDeferred), 1);
    }

    #[test]
    fn a_timer_alone_yields_a_frame_in_virtual_time() {
        let (_stack, mut demux) = demux_with(7000, Later);
        let mut frame = udp_request(7000, b"ask");
        let len = frame.len();
        frame.resize(4096, 0);
        let start = Instant::from_secs(3600);
        let mut sink = VecSink::new(8);
        assert_eq!(demux.handle(start, &mut frame, len, &mut sink), None);
        assert!(sink.frames.is_empty());
        let deadline = start + Duration::from_millis(5);
        // The wheel may ask for an earlier wake (a timer in a coarse slot), never a later one.
        assert!(demux.next_deadline().is_some_and(|d| d <= deadline));
        // Not yet: nothing sent.
        let early = start + Duration::from_millis(4);
        demux.poll(early, &mut sink);
        assert!(sink.frames.is_empty());
        // Due (the wheel fires at most one tick late): the timer alone sends a frame, once.
        let due = deadline + TIMER_TICK;
        assert!(demux.wants_poll(due));
        demux.poll(due, &mut sink);
        assert_eq!(sink.frames.len(), 1);
        // From the socket's own address: bound to any, so the link's (none when detached).
        assert_eq!(sent_payload(&sink.frames[0], [0; 4]), b"late");
        demux.poll(deadline + Duration::from_secs(60), &mut sink);
        assert_eq!(sink.frames.len(), 1, "a timer fires once");
        assert_eq!(demux.next_deadline(), None);
        assert_eq!(demux.timers_armed(), 0);
    }

    #[test]
    fn a_closed_socket_s_timers_die_with_it() {
        let (stack, mut demux) = demux_with(7000, Later);
        let mut frame = udp_request(7000, b"ask");
        let len = frame.len();
        frame.resize(4096, 0);
        let mut sink = VecSink::new(8);
        demux.handle(Instant::ZERO, &mut frame, len, &mut sink);
        stack.close_number(1).unwrap();
        demux.poll(Instant::from_secs(1), &mut sink);
        assert!(sink.frames.is_empty());
    }
}
