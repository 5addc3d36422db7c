//! TCP sockets as the socket table holds them: what every worker, the API and the control
//! plane share of a listener or a connection. The connections themselves (`tcp::Connection`,
//! sans-IO) live in their owning worker's TCP engine (`socket::tcp`); the table entry holds an `Arc` with what
//! others need: the owner, a snapshot for `fastpath sockets`, the application.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU8, AtomicU64, Ordering},
};

use crossbeam_queue::ArrayQueue;

use super::states;
use crate::{
    socket::{sync::Signal, table::SocketNumber},
    steer::RuleGuard,
    tcp::{ConnectionInfo, IsnKeys, State, TcpConfig},
};

/// A listening socket: the settings its connections start with and the application that
/// serves them. Each worker keeps its own `tcp::Listener` state for it (SYN queue counts),
/// with the same ISN and cookie keys, so a SYN may land on any worker.
pub struct TcpListenerSocket {
    pub config: TcpConfig,
    pub backlog: usize,
    pub keys: IsnKeys,
    /// Serves each connection on its worker; or, when None, the connections wait in
    /// `accepted` for a thread's `Stack::tcp_accept`.
    pub handler: Option<Arc<dyn super::app::TcpHandler>>,
    pub accepted: Option<ArrayQueue<SocketNumber>>,
    /// Bumped when a connection joins `accepted`.
    pub signal: Signal,
    /// The steering rule this socket holds; released on close.
    pub(crate) rule: Mutex<Option<RuleGuard>>,
}

impl TcpListenerSocket {
    pub fn new(
        config: TcpConfig,
        backlog: usize,
        handler: Arc<dyn super::app::TcpHandler>,
    ) -> Self {
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
        p.state
            .store(states::state_index(i.state) as u8, Ordering::Relaxed);
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
        states::state_at(usize::from(self.info.state.load(Ordering::Relaxed)))
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
