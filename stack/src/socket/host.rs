//! The sockets of this host, as every worker, the application API and the control plane
//! share them: the four-tuple table of sockets (a closed set of kinds), the link, the
//! neighbours, and one mailbox per worker through which applications reach the worker that
//! owns a socket or sends for it.
//!
//! A socket that holds per-flow state has an owning worker (the one its flow's RX queue
//! feeds; TCP connections, next). A socket with no single owner (a bound UDP socket) sends
//! each destination's datagrams from one worker, chosen by hashing the destination, so one
//! flow's datagrams leave in order.

use std::{
    hash::BuildHasher,
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{Arc, atomic::Ordering},
};

use crossbeam_queue::ArrayQueue;

use crate::{
    iface::{checksum::RxChecksum, frame::LinkInfo, neighbor::Neighbors},
    socket::{
        table::{Entry, SocketTable},
        tcp::{
            entry::{TcpConnectionSocket, TcpInfo, TcpListenerSocket},
            states::state_name,
        },
        udp::{TxRequest, UdpSocketState},
    },
    steer::Steering,
    wire::ethernet::MacAddr,
};

/// The local ports fastpath opens connections from. `Runtime::start` adds them to
/// `net.ipv4.ip_local_reserved_ports` so the kernel never hands them out itself.
pub const ACTIVE_PORTS: std::ops::RangeInclusive<u16> = 61000..=61999;

/// A socket: one of a closed set of kinds.
#[derive(Clone)]
pub enum Socket {
    Udp(Arc<UdpSocketState>),
    TcpListener(Arc<TcpListenerSocket>),
    TcpConnection(Arc<TcpConnectionSocket>),
}

impl Socket {
    /// The worker that owns the socket's per-flow state, if it has one.
    pub fn owner(&self) -> Option<usize> {
        match self {
            Socket::Udp(_) | Socket::TcpListener(_) => None,
            Socket::TcpConnection(c) => Some(c.owner),
        }
    }
}

/// One row of `fastpath sockets`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SocketInfo {
    pub number: u32,
    pub generation: u32,
    pub proto: String,
    pub local: String,
    pub remote: String,
    pub state: String,
    /// The worker (queue) that owns it, or "all" for sockets any queue can receive on.
    pub worker: String,
    pub delivery: String,
    pub queued_bytes: u64,
    pub rx: u64,
    pub tx: u64,
    pub drops_queue_full: u64,
    /// A TCP connection's send and receive queues, window and RTT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpInfo>,
}

impl SocketInfo {
    fn of(entry: &Entry<Socket>) -> Self {
        let connected = entry.tuple.is_connected();
        match &entry.value {
            Socket::Udp(udp) => SocketInfo {
                number: entry.number.get(),
                generation: entry.number.generation(),
                proto: "udp".into(),
                local: entry.tuple.local.to_string(),
                remote: if connected {
                    entry.tuple.remote.to_string()
                } else {
                    "*:*".into()
                },
                state: if connected { "connected" } else { "bound" }.into(),
                worker: entry
                    .value
                    .owner()
                    .map_or_else(|| "all".into(), |w| w.to_string()),
                delivery: udp.delivery_name().into(),
                queued_bytes: udp.queued_bytes(),
                rx: udp.traffic().0,
                tx: udp.traffic().1,
                drops_queue_full: udp.drops_queue_full.load(Ordering::Relaxed),
                tcp: None,
            },
            Socket::TcpListener(_) => SocketInfo {
                number: entry.number.get(),
                generation: entry.number.generation(),
                proto: "tcp".into(),
                local: entry.tuple.local.to_string(),
                remote: "*:*".into(),
                state: "listen".into(),
                worker: "all".into(),
                delivery: "on-worker".into(),
                queued_bytes: 0,
                rx: 0,
                tx: 0,
                drops_queue_full: 0,
                tcp: None,
            },
            Socket::TcpConnection(c) => {
                let info = c.info();
                SocketInfo {
                    number: entry.number.get(),
                    generation: entry.number.generation(),
                    proto: "tcp".into(),
                    local: entry.tuple.local.to_string(),
                    remote: entry.tuple.remote.to_string(),
                    state: state_name(c.state()).into(),
                    worker: c.owner.to_string(),
                    delivery: "on-worker".into(),
                    queued_bytes: info.send_queued + info.recv_queued,
                    rx: 0,
                    tx: 0,
                    drops_queue_full: 0,
                    tcp: Some(info),
                }
            }
        }
    }
}

/// The interface the stack is attached to.
pub struct Link {
    pub steering: Arc<Steering>,
    pub ifindex: u32,
    pub mac: MacAddr,
    pub addr: Ipv4Addr,
    pub mtu: u32,
}

/// Wakes a worker sleeping in poll() (an eventfd it polls beside its AF_XDP socket).
pub struct Waker(OwnedFd);

impl Waker {
    pub fn new() -> std::io::Result<Self> {
        // Safety: eventfd(2) returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Safety: a fresh descriptor we own.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn wake(&self) {
        let one = 1u64;
        // Safety: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// What an application asks of a worker.
pub enum Command {
    /// Send a datagram from a UDP socket.
    UdpSend(TxRequest),
    /// A TCP segment that arrived on another worker than its connection's owner: the whole
    /// frame, in a buffer from `Host::tx_pool` (give it back when done).
    TcpSegment(Vec<u8>),
    /// Open a connection from a thread (`Stack::tcp_connect`).
    TcpConnect(Box<crate::socket::tcp::ops::ConnectRequest>),
    /// A thread's read, write, shutdown or close of a connection this worker owns.
    TcpOp {
        number: crate::socket::table::SocketNumber,
        kind: crate::socket::tcp::ops::OpKind,
        op: Arc<crate::socket::tcp::ops::Op>,
    },
}

impl Command {
    /// Answers a command nobody will run (the runtime stopped): frees what it holds and
    /// wakes the thread waiting for it.
    pub fn answer_stopped(self, host: &Host) {
        match self {
            Command::UdpSend(req) => {
                let _ = host.tx_pool.push(req.payload);
            }
            Command::TcpSegment(buf) => {
                let _ = host.tx_pool.push(buf);
            }
            Command::TcpConnect(req) => req
                .op
                .complete(Err(crate::socket::tcp::ops::OpError::Stopped)),
            Command::TcpOp { op, .. } => {
                op.complete(Err(crate::socket::tcp::ops::OpError::Stopped))
            }
        }
    }
}

/// A worker's incoming commands and the eventfd that wakes it.
pub struct Mailbox {
    pub queue: ArrayQueue<Command>,
    pub waker: Waker,
}

const MAILBOX: usize = 4096;
const TX_POOL: usize = 4096;

/// The sockets, the link and the neighbours, shared by every worker and the API.
pub struct Host {
    pub table: SocketTable<Socket>,
    pub neighbors: Neighbors,
    pub link: Option<Link>,
    pub mailboxes: Box<[Mailbox]>,
    /// Payload buffers for application sends, allocated once.
    pub tx_pool: ArrayQueue<Vec<u8>>,
    pub rx_checksum: RxChecksum,
    /// Picks the worker that sends a destination's datagrams (fixed seed: one destination,
    /// one worker, for the life of the process).
    flow_hash: foldhash::fast::FixedState,
    /// Set once the workers stop: commands posted since are answered by whoever drains.
    stopped: std::sync::atomic::AtomicBool,
    /// The next local port to try for an active open.
    next_port: std::sync::atomic::AtomicU32,
}

impl Host {
    pub fn new(
        link: Option<Link>,
        workers: usize,
        rx_checksum: RxChecksum,
    ) -> std::io::Result<Self> {
        let mailboxes = (0..workers.max(1))
            .map(|_| {
                Ok(Mailbox {
                    queue: ArrayQueue::new(MAILBOX),
                    waker: Waker::new()?,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?
            .into_boxed_slice();
        let tx_pool = ArrayQueue::new(TX_POOL);
        for _ in 0..TX_POOL {
            let _ = tx_pool.push(Vec::with_capacity(crate::socket::udp::QUEUE_BUFFER));
        }
        Ok(Self {
            table: SocketTable::new(crate::socket::table::DEFAULT_CAPACITY),
            neighbors: Neighbors::default(),
            link,
            mailboxes,
            tx_pool,
            rx_checksum,
            flow_hash: foldhash::fast::FixedState::with_seed(0x6661_7374_7061_7468),
            stopped: std::sync::atomic::AtomicBool::new(false),
            next_port: std::sync::atomic::AtomicU32::new(std::process::id()),
        })
    }

    pub fn workers(&self) -> usize {
        self.mailboxes.len()
    }

    /// What UDP needs of the link to build frames (a detached host: zeros, MTU 1500).
    pub fn link_info(&self) -> LinkInfo {
        self.link.as_ref().map_or(
            LinkInfo {
                mac: [0; 6],
                addr: Ipv4Addr::UNSPECIFIED,
                mtu: 1500,
            },
            |l| LinkInfo {
                mac: l.mac,
                addr: l.addr,
                mtu: l.mtu,
            },
        )
    }

    /// The worker that sends `socket`'s datagrams to `dst`: its owner, or one chosen by
    /// hashing the destination.
    pub fn worker_for(&self, socket: &Socket, dst: SocketAddrV4) -> usize {
        socket.owner().unwrap_or_else(|| {
            (self.flow_hash.hash_one((dst.ip().octets(), dst.port())) % self.workers() as u64)
                as usize
        }) % self.workers()
    }

    /// The worker that owns a new active connection to `remote` (by hashing it).
    pub fn worker_for_remote(&self, remote: SocketAddrV4) -> usize {
        (self
            .flow_hash
            .hash_one((remote.ip().octets(), remote.port()))
            % self.workers() as u64) as usize
    }

    /// A local port of `tcp_api::ACTIVE_PORTS` no connection to `remote` uses.
    pub fn pick_active_port(&self, addr: Ipv4Addr, remote: SocketAddrV4) -> Option<SocketAddrV4> {
        let range = crate::socket::host::ACTIVE_PORTS;
        let span = u32::from(range.end() - range.start()) + 1;
        for _ in 0..span {
            let k = self.next_port.fetch_add(1, Ordering::Relaxed) % span;
            let local = SocketAddrV4::new(addr, range.start() + k as u16);
            let taken = self
                .table
                .lookup_with(crate::socket::table::Protocol::Tcp, local, remote, |e| {
                    e.tuple.is_connected()
                })
                .unwrap_or(false);
            if !taken {
                return Some(local);
            }
        }
        None
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The workers are gone: answers every command in every mailbox, and every command
    /// posted from now on (its poster drains after posting).
    pub fn stop_and_answer(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.answer_stopped();
    }

    /// Answers what waits in the mailboxes (after the workers stopped).
    pub fn answer_stopped(&self) {
        for m in self.mailboxes.iter() {
            while let Some(command) = m.queue.pop() {
                command.answer_stopped(self);
            }
        }
    }

    /// Puts `command` in `worker`'s mailbox and wakes it; gives it back when full.
    pub fn post(&self, worker: usize, command: Command) -> Result<(), Command> {
        let mailbox = &self.mailboxes[worker % self.mailboxes.len()];
        mailbox.queue.push(command)?;
        mailbox.waker.wake();
        Ok(())
    }

    /// Wakes every worker (to stop, or to look at its mailbox).
    pub fn wake_all(&self) {
        for m in self.mailboxes.iter() {
            m.waker.wake();
        }
    }

    /// Every socket, for `fastpath sockets`.
    pub fn sockets(&self) -> Vec<SocketInfo> {
        self.table.entries().iter().map(SocketInfo::of).collect()
    }
}
