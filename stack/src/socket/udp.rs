//! UDP (RFC 768) on the fast path: the sockets, their receive verdicts, the replies and
//! the frames they send.
//!
//! A socket either runs its application on the worker that received the datagram (run to
//! completion: the handler sees the payload in place and may answer by rewriting it, send
//! more datagrams and arm timers), or queues datagrams for an ordinary thread, in a bounded
//! lock-free queue whose buffers come from a pool allocated at bind time. A full queue is a
//! counted drop, never a block.
//!
//! Received checksums are judged by the interface's policy (`iface::checksum`); what UDP
//! sends is built by the interface's one frame builder (`iface::frame`).

use std::{
    net::SocketAddrV4,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crossbeam_queue::ArrayQueue;

use crate::{
    counter_set,
    counters::Counters,
    iface::{
        checksum::{Judgement, RxChecksum},
        frame::{FrameAddrs, LinkInfo, write_udp},
        neighbor::Neighbors,
    },
    phy::{FrameSink, TxResult},
    socket::table::SocketNumber,
    steer::RuleGuard,
    time::Instant,
    wire::{
        ethernet::{EthernetFrame, MacAddr},
        ipv4::Ipv4Packet,
        udp::UdpPacket,
    },
};

counter_set! {
    "udp",
    /// What UDP did with datagrams, per worker.
    pub enum UdpCounter {
        /// Datagrams answered in place.
        Replied = "replied",
        /// New datagrams sent from the worker (handlers' `send_to`, applications' sends).
        Sent = "udp_sent",
        /// Received with only the pseudo-header sum (peer TX checksum offload).
        ChecksumPartial = "csum_partial",
        ChecksumAbsent = "csum_absent",
        DropChecksum = "drop_checksum",
        /// Datagrams to a steered port with no socket for their four-tuple.
        DropNoSocket = "drop_no_socket",
        /// Datagrams for a socket whose receive queue was full.
        DropQueueFull = "drop_queue_full",
        /// Datagrams sent by applications through `Stack::send_to`.
        AppTx = "app_tx",
        /// Datagrams too large for a UMEM frame, or a handler's send with no known next hop.
        DropTooBig = "drop_too_big",
        DropNoNeighbor = "drop_no_neighbor",
        /// Sends that waited for a later batch because the TX budget was spent.
        TxDeferred = "tx_deferred",
    }
}

/// Judges a received datagram's checksum by `policy`; false means drop (counted).
#[inline]
pub fn accept_checksum(
    policy: RxChecksum,
    udp: &UdpPacket<&[u8]>,
    src: [u8; 4],
    dst: [u8; 4],
    c: &mut Counters<UdpCounter>,
) -> bool {
    match policy.judge(|| udp.check(src, dst)) {
        Judgement::Valid => true,
        Judgement::Absent => {
            c.bump(UdpCounter::ChecksumAbsent);
            true
        }
        Judgement::Partial => {
            c.bump(UdpCounter::ChecksumPartial);
            true
        }
        Judgement::Drop => {
            c.bump(UdpCounter::DropChecksum);
            false
        }
    }
}

/// A timer a UDP handler armed: fires `UdpHandler::on_timer` with `token` on the worker
/// that armed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpTimer {
    pub socket: SocketNumber,
    pub token: u64,
}

/// Where a handler's timers go: the worker's timer facility.
pub trait UdpTimers {
    fn arm(&mut self, deadline: Instant, timer: UdpTimer);
}

/// What a handler running on a worker may do besides answering in place: send new
/// datagrams from its socket and arm timers. Nothing here blocks or allocates.
pub struct Egress<'a> {
    now: Instant,
    socket: SocketNumber,
    local: SocketAddrV4,
    tx: &'a mut dyn FrameSink,
    timers: &'a mut dyn UdpTimers,
    link: &'a LinkInfo,
    neighbors: &'a Neighbors,
    counters: &'a mut Counters<UdpCounter>,
}

/// Why a handler's send did not go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("no next hop known for the destination (the worker never blocks to resolve one)")]
    NoNeighbor,
    #[error("the datagram does not fit the link")]
    TooBig,
    #[error("no frame or TX slot in this batch")]
    Full,
}

impl<'a> Egress<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        now: Instant,
        socket: SocketNumber,
        local: SocketAddrV4,
        tx: &'a mut dyn FrameSink,
        timers: &'a mut dyn UdpTimers,
        link: &'a LinkInfo,
        neighbors: &'a Neighbors,
        counters: &'a mut Counters<UdpCounter>,
    ) -> Self {
        Self {
            now,
            socket,
            local,
            tx,
            timers,
            link,
            neighbors,
            counters,
        }
    }

    /// The worker's clock when this batch began.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Sends `payload` from this socket to `to`, in a new frame, in this batch. The next
    /// hop must be known already (learned from a received frame or resolved before).
    pub fn send_to(&mut self, to: SocketAddrV4, payload: &[u8]) -> Result<(), SendError> {
        if payload.len() > max_payload(self.link.mtu) {
            self.counters.bump(UdpCounter::DropTooBig);
            return Err(SendError::TooBig);
        }
        let Some(dst_mac) = self.neighbors.cached(to.ip().octets()) else {
            self.counters.bump(UdpCounter::DropNoNeighbor);
            return Err(SendError::NoNeighbor);
        };
        let src = SocketAddrV4::new(
            if self.local.ip().is_unspecified() {
                self.link.addr
            } else {
                *self.local.ip()
            },
            self.local.port(),
        );
        let header = FrameAddrs {
            src_mac: self.link.mac,
            dst_mac,
            src,
            dst: to,
        };
        match self
            .tx
            .send(&mut |buf: &mut [u8]| write_udp(buf, &header, payload))
        {
            TxResult::Sent => {
                self.counters.bump(UdpCounter::Sent);
                Ok(())
            }
            TxResult::Full => {
                self.counters.bump(UdpCounter::TxDeferred);
                Err(SendError::Full)
            }
            TxResult::Declined => {
                self.counters.bump(UdpCounter::DropTooBig);
                Err(SendError::TooBig)
            }
        }
    }

    /// Arms a timer: `UdpHandler::on_timer` runs with `token` after `after`, on this worker.
    pub fn set_timer(&mut self, after: Duration, token: u64) {
        self.timers.arm(
            self.now + after,
            UdpTimer {
                socket: self.socket,
                token,
            },
        );
    }
}

/// A received datagram, seen in place on the worker.
pub struct Datagram<'a, 'b> {
    pub socket: SocketNumber,
    pub from: SocketAddrV4,
    pub to: SocketAddrV4,
    buffer: &'a mut [u8],
    len: usize,
    /// New datagrams and timers.
    pub egress: Egress<'b>,
}

impl<'a, 'b> Datagram<'a, 'b> {
    pub(crate) fn new(
        from: SocketAddrV4,
        buffer: &'a mut [u8],
        len: usize,
        egress: Egress<'b>,
    ) -> Self {
        Self {
            socket: egress.socket,
            from,
            to: egress.local,
            buffer,
            len,
            egress,
        }
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer[..self.len]
    }

    /// The payload and the room after it, for writing a reply in place.
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        self.buffer
    }

    /// The worker's clock when this batch began.
    pub fn now(&self) -> Instant {
        self.egress.now
    }
}

/// What a worker-side handler does with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send the first `n` bytes of the buffer back to the sender.
    Reply(usize),
    /// Done with it; nothing to send in place.
    Consume,
}

/// An application that runs on the workers (possibly on several at once).
pub trait UdpHandler: Send + Sync {
    fn on_datagram(&self, datagram: &mut Datagram<'_, '_>) -> Verdict;

    /// A timer armed with `Egress::set_timer` fired.
    fn on_timer(&self, _token: u64, _egress: &mut Egress<'_>) {}
}

/// How a socket's datagrams reach its application.
#[derive(Clone)]
pub enum Delivery {
    /// Called on the worker, no thread hop.
    OnWorker(Arc<dyn UdpHandler>),
    /// Queued (at most `depth` datagrams) for `Stack::recv_from` on any thread.
    Queue { depth: usize },
}

impl Delivery {
    pub fn on_worker(handler: impl UdpHandler + 'static) -> Self {
        Delivery::OnWorker(Arc::new(handler))
    }
}

/// One worker's counts for one socket, on a cache line of its own.
#[derive(Default)]
#[repr(align(128))]
struct TrafficSlot {
    rx: AtomicU64,
    tx: AtomicU64,
}

/// Largest datagram payload a queued socket keeps (a 1500-byte MTU's worth, and then some).
pub const QUEUE_BUFFER: usize = 2048;

/// A socket as the workers and the control plane see it. Its addresses are its key in the
/// socket table (one truth: `connect` moves the key).
pub struct UdpSocketState {
    pub handler: Option<Arc<dyn UdpHandler>>,
    queue: Option<ArrayQueue<(SocketAddrV4, Vec<u8>)>>,
    pool: ArrayQueue<Vec<u8>>,
    /// Datagrams received and sent, one slot per worker plus one for application threads.
    traffic: Box<[TrafficSlot]>,
    pub drops_queue_full: AtomicU64,
    queued_bytes: AtomicU64,
    /// The steering rule this socket holds; released on close.
    pub(crate) rule: Mutex<Option<RuleGuard>>,
}

impl UdpSocketState {
    /// `workers`: how many workers may serve the socket (each gets its own counter slot).
    pub(crate) fn new(delivery: &Delivery, workers: usize) -> Self {
        let (handler, queue, pool) = match delivery {
            Delivery::OnWorker(h) => (Some(h.clone()), None, ArrayQueue::new(1)),
            Delivery::Queue { depth } => {
                let depth = (*depth).max(1);
                let pool = ArrayQueue::new(depth);
                for _ in 0..depth {
                    let _ = pool.push(Vec::with_capacity(QUEUE_BUFFER));
                }
                (None, Some(ArrayQueue::new(depth)), pool)
            }
        };
        Self {
            handler,
            queue,
            pool,
            traffic: (0..=workers).map(|_| TrafficSlot::default()).collect(),
            drops_queue_full: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            rule: Mutex::new(None),
        }
    }

    /// Copies a datagram into the queue. False (and counted) when the queue is full.
    pub(crate) fn enqueue(&self, from: SocketAddrV4, payload: &[u8]) -> bool {
        let (Some(queue), Some(mut buf)) = (self.queue.as_ref(), self.pool.pop()) else {
            self.drops_queue_full.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        buf.clear();
        buf.extend_from_slice(&payload[..payload.len().min(QUEUE_BUFFER)]);
        let len = buf.len() as u64;
        match queue.push((from, buf)) {
            Ok(()) => {
                self.queued_bytes.fetch_add(len, Ordering::Relaxed);
                true
            }
            Err((_, buf)) => {
                let _ = self.pool.push(buf);
                self.drops_queue_full.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Takes the oldest queued datagram into `out`. Returns its length and sender.
    pub(crate) fn dequeue(&self, out: &mut [u8]) -> Option<(usize, SocketAddrV4)> {
        let (from, buf) = self.queue.as_ref()?.pop()?;
        let n = buf.len().min(out.len());
        out[..n].copy_from_slice(&buf[..n]);
        self.queued_bytes
            .fetch_sub(buf.len() as u64, Ordering::Relaxed);
        let _ = self.pool.push(buf);
        Some((n, from))
    }

    /// Counts a datagram received by `worker` (its own slot: a load and a store, no
    /// read-modify-write, no cache line shared with another worker).
    #[inline]
    pub(crate) fn count_rx(&self, worker: usize) {
        if let Some(slot) = self.traffic.get(worker) {
            slot.rx
                .store(slot.rx.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// Counts a datagram sent by `worker` on the worker.
    #[inline]
    pub(crate) fn count_tx(&self, worker: usize) {
        if let Some(slot) = self.traffic.get(worker) {
            slot.tx
                .store(slot.tx.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// Counts a datagram sent from an application thread (any number of them: an atomic add).
    pub(crate) fn count_app_tx(&self) {
        if let Some(slot) = self.traffic.last() {
            slot.tx.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (received, sent) over all slots.
    pub fn traffic(&self) -> (u64, u64) {
        self.traffic.iter().fold((0, 0), |(rx, tx), s| {
            (
                rx + s.rx.load(Ordering::Relaxed),
                tx + s.tx.load(Ordering::Relaxed),
            )
        })
    }

    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes.load(Ordering::Relaxed)
    }

    pub fn delivery_name(&self) -> &'static str {
        if self.handler.is_some() {
            "on-worker"
        } else {
            "queue"
        }
    }
}

/// The largest UDP payload one unfragmented IPv4 packet carries on a link of `mtu`.
pub fn max_payload(mtu: u32) -> usize {
    (mtu as usize).saturating_sub(20 + 8)
}

/// Where a received datagram sits in its frame, as the demux found it.
#[derive(Clone, Copy, Debug)]
pub struct Located {
    /// Offset of the IPv4 header.
    pub l3: usize,
    /// IPv4 header length.
    pub ihl: usize,
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl Located {
    pub fn payload_at(&self) -> usize {
        self.l3 + self.ihl + 8
    }
}

/// What a socket did with a datagram.
pub enum Outcome {
    /// Queued for a thread (false: the queue was full).
    Queued(bool),
    /// The handler took it and answers nothing in place.
    Consumed,
    /// The handler wrote an `n`-byte reply in place.
    Reply(usize),
}

/// The worker's side of a delivery: who receives, when, and where new frames and timers go.
pub struct Receiver<'a> {
    pub worker: usize,
    pub now: Instant,
    pub tx: &'a mut dyn FrameSink,
    pub timers: &'a mut dyn UdpTimers,
    pub link: &'a LinkInfo,
    pub neighbors: &'a Neighbors,
    pub counters: &'a mut Counters<UdpCounter>,
}

/// Hands a datagram to its socket: the handler on this worker (which may answer in place
/// within `room` bytes), or the socket's queue.
pub fn deliver(
    socket: &UdpSocketState,
    number: SocketNumber,
    frame: &mut [u8],
    at: &Located,
    room: usize,
    rx: Receiver<'_>,
) -> Outcome {
    socket.count_rx(rx.worker);
    let payload_at = at.payload_at();
    let remote = SocketAddrV4::new(at.src.into(), at.src_port);
    let Some(handler) = &socket.handler else {
        let payload = &frame[payload_at..payload_at + at.payload_len];
        return Outcome::Queued(socket.enqueue(remote, payload));
    };
    let local = SocketAddrV4::new(at.dst.into(), at.dst_port);
    let worker = rx.worker;
    let egress = Egress::new(
        rx.now,
        number,
        local,
        rx.tx,
        rx.timers,
        rx.link,
        rx.neighbors,
        rx.counters,
    );
    let buffer = &mut frame[payload_at..payload_at + room];
    let mut datagram = Datagram::new(remote, buffer, at.payload_len, egress);
    match handler.on_datagram(&mut datagram) {
        Verdict::Reply(n) if n <= room => {
            socket.count_tx(worker);
            Outcome::Reply(n)
        }
        _ => Outcome::Consumed,
    }
}

/// Rewrites a request into its `reply`-byte answer in place: lengths, swapped addresses
/// and ports, full checksums. Returns the frame's new length.
pub fn rewrite_reply(frame: &mut [u8], at: &Located, reply: usize) -> Option<usize> {
    let l3 = at.l3;
    let l4 = l3 + at.ihl;
    let udp_len = 8 + reply;
    let total = at.ihl + udp_len;
    frame[l3 + 2..l3 + 4].copy_from_slice(&(total as u16).to_be_bytes());
    frame[l4 + 4..l4 + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let mut ip = Ipv4Packet::new_checked(&mut frame[l3..l3 + total]).ok()?;
    ip.swap_addresses();
    ip.set_ttl(64);
    ip.fill_checksum();
    let mut udp = UdpPacket::new_checked(ip.payload_mut()).ok()?;
    udp.swap_ports();
    udp.fill_checksum(at.dst, at.src);
    EthernetFrame::new_checked(&mut frame[..])
        .ok()?
        .swap_addresses();
    Some(l3 + total)
}

/// A datagram on its way from an application thread to a worker.
pub struct TxRequest {
    pub socket: SocketNumber,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub dst_mac: MacAddr,
    pub payload: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let s = UdpSocketState::new(&Delivery::Queue { depth: 2 }, 1);

        let from: SocketAddrV4 = "198.18.0.2:9".parse().unwrap();
        assert!(s.enqueue(from, b"one"));
        assert!(s.enqueue(from, b"two"));
        assert!(!s.enqueue(from, b"three"));
        assert_eq!(s.drops_queue_full.load(Ordering::Relaxed), 1);
        assert_eq!(s.queued_bytes(), 6);
        let mut out = [0u8; 16];
        assert_eq!(s.dequeue(&mut out), Some((3, from)));
        assert_eq!(&out[..3], b"one");
        assert!(s.enqueue(from, b"four"), "the buffer went back to the pool");
        assert_eq!(s.dequeue(&mut out).unwrap().0, 3);
        assert_eq!(s.dequeue(&mut out).unwrap().0, 4);
        assert_eq!(s.dequeue(&mut out), None);
        assert_eq!(s.queued_bytes(), 0);
    }
}
