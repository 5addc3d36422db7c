//! UDP sockets (RFC 768) on the fast path.
//!
//! A socket either runs its application on the worker that received the datagram (run to
//! completion: the handler sees the payload in place and may answer by rewriting it), or
//! queues datagrams for an ordinary thread, in a bounded lock-free queue whose buffers come
//! from a pool allocated at bind time. A full queue is a counted drop, never a block.

use std::{
    net::SocketAddrV4,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use crossbeam_queue::ArrayQueue;

use crate::{steer::RuleGuard, table::SocketNumber};

/// A received datagram, seen in place on the worker.
pub struct Datagram<'a> {
    pub socket: SocketNumber,
    pub from: SocketAddrV4,
    pub to: SocketAddrV4,
    buffer: &'a mut [u8],
    len: usize,
}

impl<'a> Datagram<'a> {
    pub(crate) fn new(
        socket: SocketNumber,
        from: SocketAddrV4,
        to: SocketAddrV4,
        buffer: &'a mut [u8],
        len: usize,
    ) -> Self {
        Self {
            socket,
            from,
            to,
            buffer,
            len,
        }
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer[..self.len]
    }

    /// The payload and the room after it, for writing a reply in place.
    pub fn buffer_mut(&mut self) -> &mut [u8] {
        self.buffer
    }
}

/// What a worker-side handler does with a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send the first `n` bytes of the buffer back to the sender.
    Reply(usize),
    /// Done with it; nothing to send.
    Consume,
}

/// An application that runs on the workers (possibly on several at once).
pub trait UdpHandler: Send + Sync {
    fn on_datagram(&self, datagram: &mut Datagram<'_>) -> Verdict;
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

    /// Counts a reply sent by `worker` on the worker.
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
