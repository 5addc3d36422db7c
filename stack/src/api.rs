//! The application API: sockets by host-local number.
//!
//! Two ways to use a socket:
//! - **on the worker** (run to completion): a [`UdpHandler`](crate::udp::UdpHandler) sees each datagram in place on
//!   the worker that received it and may answer by rewriting it — no thread hop, no copy;
//! - **from any thread**: [`Stack::recv_from`] takes datagrams from the socket's bounded
//!   queue and [`Stack::send_to`] hands datagrams to a worker through a lock-free queue.
//!
//! A UDP echo server on the fast path:
//!
//! ```no_run
//! use fastpath::api::{Runtime, StackConfig};
//! use fastpath::udp::{Datagram, Delivery, UdpHandler, Verdict};
//!
//! /// Answers every datagram with itself.
//! struct Echo;
//!
//! impl UdpHandler for Echo {
//!     fn on_datagram(&self, datagram: &mut Datagram<'_>) -> Verdict {
//!         Verdict::Reply(datagram.payload().len())
//!     }
//! }
//!
//! fn main() -> anyhow::Result<()> {
//!     // Attaches XDP to veth0, opens one AF_XDP socket and worker per RX queue.
//!     let runtime = Runtime::start(StackConfig::new("veth0"))?;
//!     // Binding adds the XDP steering rule for udp/7000; closing removes it.
//!     let socket = runtime.stack().udp_bind("0.0.0.0:7000".parse()?, None, Delivery::on_worker(Echo))?;
//!     println!("socket {socket} serves udp echo on port 7000");
//!     runtime.run(None)?; // until Ctrl-C or SIGTERM
//!     Ok(())
//! }
//! ```

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use crossbeam_queue::ArrayQueue;
use fastpath_common::{IPPROTO_UDP, RuleKey, layout::ETHERTYPE_IPV4};

use crate::{
    control::{self, ControlState, QueueHandle},
    echo::{ReflectService, RxChecksum},
    neighbor::Neighbors,
    steer::{AttachMode, Steering, XdpLogLevel},
    system,
    table::{FourTuple, Protocol, SocketNumber, SocketTable, TableError},
    udp::{Datagram, Delivery, UdpSocketState, Verdict},
    wire::{
        ethernet::{EthernetFrame, MacAddr},
        ipv4::{Ipv4Packet, Ipv4Repr},
        udp::{ChecksumStatus, UdpPacket, UdpRepr},
    },
    worker::{
        self, FrameHandler, IdleStrategy, LocalCounters, QueueCounter, QueueShared, Transmit,
        TxResult, WorkerConfig,
    },
    xsk::{BindMode, XskConfig, XskSocket},
};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Table(#[from] TableError),
    #[error("{0} is not a fast-path socket address: give a port above 0")]
    BadAddress(SocketAddrV4),
    #[error("the stack is not attached to an interface")]
    NotAttached,
    #[error("no neighbour entry for {0}: the kernel could not resolve it (is it on the link?)")]
    NoNeighbor(Ipv4Addr),
    #[error("the transmit queue is full; retry")]
    TxQueueFull,
    #[error("socket {0} delivers on the worker; it has no queue to receive from")]
    NotQueued(SocketNumber),
    #[error("timed out")]
    TimedOut,
    #[error("no socket {0} is open (see `fastpath sockets`)")]
    NoSuchSocket(u32),
    #[error("a {len}-byte datagram does not fit the link: at most {max} bytes of UDP payload")]
    TooBig { len: usize, max: usize },

    #[error("steering: {0}")]
    Steer(#[from] crate::steer::SteerError),
}

/// A datagram on its way from an application thread to a worker.
struct TxRequest {
    src: SocketAddrV4,
    dst: SocketAddrV4,
    dst_mac: MacAddr,
    payload: Vec<u8>,
}

/// Wakes a worker sleeping in poll() (an eventfd it polls beside its AF_XDP socket).
pub struct Waker(OwnedFd);

impl Waker {
    fn new() -> std::io::Result<Self> {
        // Safety: eventfd(2) returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Safety: a fresh descriptor we own.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn wake(&self) {
        let one = 1u64;
        // Safety: writes 8 bytes from a live u64 to our eventfd.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
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

impl Link {
    /// The largest UDP payload one unfragmented IPv4 packet carries on this link.
    pub fn max_payload(&self) -> usize {
        max_payload(self.mtu)
    }
}

fn max_payload(mtu: u32) -> usize {
    (mtu as usize).saturating_sub(20 + 8)
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
    /// The worker (queue) that serves it, or "all" for sockets any queue can receive on.
    pub worker: String,
    pub delivery: String,
    pub queued_bytes: u64,
    pub rx: u64,
    pub tx: u64,
    pub drops_queue_full: u64,
}

/// The sockets of this host and what the workers need to serve them.
pub struct Stack {
    table: SocketTable<Arc<UdpSocketState>>,
    neighbors: Neighbors,
    link: Option<Link>,
    tx: Vec<(ArrayQueue<TxRequest>, Waker)>,
    tx_pool: ArrayQueue<Vec<u8>>,
    next_tx: AtomicUsize,
    rx_checksum: RxChecksum,
}

const TX_QUEUE: usize = 4096;
const TX_POOL: usize = 4096;

impl Stack {
    /// A stack with no interface: sockets and the worker-side demux work, sending does not.
    /// For tests and fuzzing.
    pub fn detached(workers: usize) -> Arc<Self> {
        Arc::new(Self::build(None, workers, RxChecksum::AcceptPartial).expect("eventfd"))
    }

    fn build(link: Option<Link>, workers: usize, rx_checksum: RxChecksum) -> std::io::Result<Self> {
        let tx = (0..workers.max(1))
            .map(|_| Ok((ArrayQueue::new(TX_QUEUE), Waker::new()?)))
            .collect::<std::io::Result<Vec<_>>>()?;
        let tx_pool = ArrayQueue::new(TX_POOL);
        for _ in 0..TX_POOL {
            let _ = tx_pool.push(Vec::with_capacity(crate::udp::QUEUE_BUFFER));
        }
        Ok(Self {
            table: SocketTable::new(crate::table::DEFAULT_CAPACITY),
            neighbors: Neighbors::default(),
            link,
            tx,
            tx_pool,
            next_tx: AtomicUsize::new(0),
            rx_checksum,
        })
    }

    pub fn link(&self) -> Option<&Link> {
        self.link.as_ref()
    }

    /// Binds a UDP socket to `local` (and, with `remote`, connects it: only datagrams from
    /// `remote` reach it). Returns its host-local number. Adds the steering rule.
    pub fn udp_bind(
        &self,
        local: SocketAddrV4,
        remote: Option<SocketAddrV4>,
        delivery: Delivery,
    ) -> Result<SocketNumber, ApiError> {
        if local.port() == 0 {
            return Err(ApiError::BadAddress(local));
        }
        let tuple = match remote {
            Some(r) => FourTuple::connected(Protocol::Udp, local, r),
            None => FourTuple::bound(Protocol::Udp, local),
        };
        let number = self.table.insert(tuple, |_| {
            Arc::new(UdpSocketState::new(&delivery, self.tx.len()))
        })?;
        if let Some(link) = &self.link {
            let key = RuleKey::new(IPPROTO_UDP, local.ip().octets(), local.port());
            match link.steering.add_rule(key) {
                Ok(guard) => {
                    if let Ok(entry) = self.table.get(number) {
                        *entry.value.rule.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
                    }
                }
                Err(e) => {
                    let _ = self.table.remove(number);
                    return Err(e.into());
                }
            }
        }
        Ok(number)
    }

    /// Connects a bound socket: from now on only datagrams from `remote` reach it, and its
    /// number stays the same.
    pub fn udp_connect(&self, number: SocketNumber, remote: SocketAddrV4) -> Result<(), ApiError> {
        let entry = self.table.get(number)?;
        let tuple = FourTuple::connected(Protocol::Udp, entry.tuple.local, remote);
        self.table.rekey(number, tuple)?;
        Ok(())
    }

    /// Closes the socket the current holder of `number` is (whatever its generation): for
    /// the operator's `fastpath close N`, who knows numbers as the listing shows them.
    pub fn close_number(&self, number: u32) -> Result<SocketNumber, ApiError> {
        let current = self
            .table
            .entries()
            .into_iter()
            .find(|e| e.number.get() == number)
            .map(|e| e.number)
            .ok_or(ApiError::NoSuchSocket(number))?;
        self.close(current)?;
        Ok(current)
    }

    /// Closes a socket; its steering rule goes when no other socket holds it.
    pub fn close(&self, number: SocketNumber) -> Result<(), ApiError> {
        let entry = self.table.remove(number)?;
        entry
            .value
            .rule
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        Ok(())
    }

    /// Sends `payload` from socket `number` to `to` (resolving the next hop if needed).
    pub fn send_to(
        &self,
        number: SocketNumber,
        payload: &[u8],
        to: SocketAddrV4,
    ) -> Result<(), ApiError> {
        let entry = self.table.get(number)?;
        let link = self.link.as_ref().ok_or(ApiError::NotAttached)?;
        if payload.len() > link.max_payload() {
            return Err(ApiError::TooBig {
                len: payload.len(),
                max: link.max_payload(),
            });
        }
        let src_ip = match *entry.tuple.local.ip() {
            ip if ip.is_unspecified() => link.addr,
            ip => ip,
        };
        let dst_mac = self
            .neighbors
            .resolve(*to.ip(), link.ifindex, Duration::from_secs(1))
            .ok_or(ApiError::NoNeighbor(*to.ip()))?;
        let mut buf = self.tx_pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(payload);
        let (queue, waker) = &self.tx[self.next_tx.fetch_add(1, Ordering::Relaxed) % self.tx.len()];
        queue
            .push(TxRequest {
                src: SocketAddrV4::new(src_ip, entry.tuple.local.port()),
                dst: to,
                dst_mac,
                payload: buf,
            })
            .map_err(|_| ApiError::TxQueueFull)?;
        entry.value.count_app_tx();
        waker.wake();
        Ok(())
    }

    /// Takes a datagram from a queued socket, waiting up to `timeout`.
    pub fn recv_from(
        &self,
        number: SocketNumber,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<(usize, SocketAddrV4), ApiError> {
        let entry = self.table.get(number)?;
        if entry.value.handler.is_some() {
            return Err(ApiError::NotQueued(number));
        }
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(5);
        loop {
            if let Some(got) = entry.value.dequeue(buf) {
                return Ok(got);
            }
            if Instant::now() >= deadline {
                return Err(ApiError::TimedOut);
            }
            // No lock on the worker's side means no condvar here: back off up to 1 ms.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
            // A socket closed meanwhile is reported as such.
            self.table.get(number)?;
        }
    }

    /// Every socket, for `fastpath sockets`.
    pub fn sockets(&self) -> Vec<SocketInfo> {
        self.table
            .entries()
            .into_iter()
            .map(|e| SocketInfo {
                number: e.number.get(),
                generation: e.number.generation(),
                proto: "udp".into(),
                local: e.tuple.local.to_string(),
                remote: if e.tuple.is_connected() {
                    e.tuple.remote.to_string()
                } else {
                    "*:*".into()
                },
                state: if e.tuple.is_connected() {
                    "connected"
                } else {
                    "bound"
                }
                .into(),
                worker: "all".into(),
                delivery: e.value.delivery_name().into(),
                queued_bytes: e.value.queued_bytes(),
                rx: e.value.traffic().0,
                tx: e.value.traffic().1,
                drops_queue_full: e.value.drops_queue_full.load(Ordering::Relaxed),
            })
            .collect()
    }

    pub fn worker_waker_fd(&self, worker: usize) -> Option<RawFd> {
        self.tx.get(worker).map(|(_, w)| w.fd())
    }
}

/// What a socket did with a datagram.
enum Outcome {
    /// Queued for a thread (false: the queue was full).
    Queued(bool),
    /// The handler took it and answers nothing.
    Consumed,
    /// The handler wrote an `n`-byte reply in place.
    Reply(usize),
}

/// The worker-side face of the stack: demultiplexes each received frame to its socket.
pub struct Demux {
    stack: Arc<Stack>,
    worker: usize,
    /// A request that found no free frame last time.
    pending: Option<TxRequest>,
}

impl Demux {
    pub fn new(stack: Arc<Stack>, worker: usize) -> Self {
        Self {
            stack,
            worker,
            pending: None,
        }
    }
}

impl FrameHandler for Demux {
    fn handle(&mut self, frame: &mut [u8], len: usize, c: &mut LocalCounters) -> Option<usize> {
        let Some(data) = frame.get(..len) else {
            c.bump(QueueCounter::DropMalformed);
            return None;
        };
        let (l3, src_mac) = match EthernetFrame::new_checked(data) {
            Ok(eth) if eth.ethertype() == ETHERTYPE_IPV4 => (eth.payload_offset(), eth.src()),
            Ok(_) => {
                c.bump(QueueCounter::DropUnsteered);
                return None;
            }
            Err(_) => {
                c.bump(QueueCounter::DropMalformed);
                return None;
            }
        };
        let Ok(ip) = Ipv4Packet::new_checked(&data[l3..]) else {
            c.bump(QueueCounter::DropMalformed);
            return None;
        };
        if !ip.verify_checksum() {
            c.bump(QueueCounter::DropChecksum);
            return None;
        }
        if ip.protocol() != IPPROTO_UDP || ip.is_fragment() {
            c.bump(QueueCounter::DropUnsteered);
            return None;
        }
        let (src, dst, ihl) = (ip.src(), ip.dst(), ip.header_len());
        let Ok(udp) = UdpPacket::new_checked(ip.payload()) else {
            c.bump(QueueCounter::DropMalformed);
            return None;
        };
        let remote = SocketAddrV4::new(src.into(), udp.src_port());
        let local = SocketAddrV4::new(dst.into(), udp.dst_port());
        if self.stack.rx_checksum != RxChecksum::Skip {
            match udp.check(src, dst) {
                ChecksumStatus::Valid => {}
                ChecksumStatus::Absent => c.bump(QueueCounter::ChecksumAbsent),
                ChecksumStatus::Partial if self.stack.rx_checksum == RxChecksum::AcceptPartial => {
                    c.bump(QueueCounter::ChecksumPartial)
                }
                ChecksumStatus::Partial | ChecksumStatus::Bad => {
                    c.bump(QueueCounter::DropChecksum);
                    return None;
                }
            }
        }
        let payload_len = udp.len() - 8;
        let l4 = l3 + ihl;
        let payload_at = l4 + 8;
        self.stack.neighbors.learn(src, src_mac);
        // Room for a reply: what the link's MTU allows (never less than the request, which
        // the frame holds), within the UMEM frame.
        let link_mtu = self.stack.link.as_ref().map_or(1500, |l| l.mtu);
        let mtu_payload = max_payload(link_mtu).saturating_sub(ihl - 20);
        let room = (frame.len() - payload_at).min(mtu_payload.max(payload_len));

        // The socket's work runs under the table's guard: no reference count per datagram.
        let worker = self.worker;
        let outcome = self
            .stack
            .table
            .lookup_with(Protocol::Udp, local, remote, |entry| {
                let socket = &entry.value;
                socket.count_rx(worker);
                let Some(handler) = &socket.handler else {
                    let payload = &frame[payload_at..payload_at + payload_len];
                    return Outcome::Queued(socket.enqueue(remote, payload));
                };
                let buffer = &mut frame[payload_at..payload_at + room];
                let mut datagram = Datagram::new(entry.number, remote, local, buffer, payload_len);
                match handler.on_datagram(&mut datagram) {
                    Verdict::Reply(n) if n <= room => {
                        socket.count_tx(worker);

                        Outcome::Reply(n)
                    }
                    _ => Outcome::Consumed,
                }
            });
        let reply = match outcome {
            None => {
                c.bump(QueueCounter::DropNoSocket);
                return None;
            }
            Some(Outcome::Queued(true) | Outcome::Consumed) => return None,
            Some(Outcome::Queued(false)) => {
                c.bump(QueueCounter::DropQueueFull);
                return None;
            }
            Some(Outcome::Reply(n)) => n,
        };
        c.bump(QueueCounter::Replied);
        // Turn the request into the reply in place.
        let udp_len = 8 + reply;
        let total = ihl + udp_len;
        frame[l3 + 2..l3 + 4].copy_from_slice(&(total as u16).to_be_bytes());
        frame[l4 + 4..l4 + 6].copy_from_slice(&(udp_len as u16).to_be_bytes());
        let mut ip = Ipv4Packet::new_checked(&mut frame[l3..l3 + total]).ok()?;
        ip.swap_addresses();
        ip.set_ttl(64);
        ip.fill_checksum();
        let mut udp = UdpPacket::new_checked(ip.payload_mut()).ok()?;
        udp.swap_ports();
        udp.fill_checksum(dst, src);
        EthernetFrame::new_checked(&mut frame[..])
            .ok()?
            .swap_addresses();
        Some(l3 + total)
    }

    fn produce(&mut self, transmit: &mut Transmit<'_>, c: &mut LocalCounters) {
        let Some(link) = self.stack.link.as_ref() else {
            return;
        };
        // Lock-free pops only: the worker drains the eventfd after a sleep, not here.
        let (queue, _) = &self.stack.tx[self.worker % self.stack.tx.len()];
        // Two loads; an empty pop would also fence (perf: 5% of a spinning worker).
        if self.pending.is_none() && queue.is_empty() {
            return;
        }

        for _ in 0..64 {
            let Some(req) = self.pending.take().or_else(|| queue.pop()) else {
                return;
            };
            match transmit(&mut |buf: &mut [u8]| build_udp_frame(buf, link.mac, &req)) {
                TxResult::Sent => c.bump(QueueCounter::AppTx),
                TxResult::Full => {
                    // No free frame or TX slot now: keep it for the next batch.
                    self.pending = Some(req);
                    return;
                }
                // It cannot be written into a frame (larger than a UMEM frame): drop it.
                TxResult::Declined => c.bump(QueueCounter::DropTooBig),
            }
            let _ = self.stack.tx_pool.push(req.payload);
        }
    }
}

/// Writes Ethernet + IPv4 + UDP (full checksums) and the payload into `buf`.
fn build_udp_frame(buf: &mut [u8], src_mac: MacAddr, req: &TxRequest) -> Option<usize> {
    let total = 14 + 20 + 8 + req.payload.len();
    let frame = buf.get_mut(..total)?;
    frame[0..6].copy_from_slice(&req.dst_mac);
    frame[6..12].copy_from_slice(&src_mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    Ipv4Repr {
        src: req.src.ip().octets(),
        dst: req.dst.ip().octets(),
        protocol: IPPROTO_UDP,
        payload_len: 8 + req.payload.len(),
        ttl: 64,
    }
    .emit(&mut frame[14..])
    .ok()?;
    frame[42..].copy_from_slice(&req.payload);
    UdpRepr {
        src_port: req.src.port(),
        dst_port: req.dst.port(),
    }
    .emit(
        &mut frame[34..],
        req.payload.len(),
        req.src.ip().octets(),
        req.dst.ip().octets(),
    )
    .ok()?;
    Some(total)
}

/// What `Runtime::start` needs to know.
#[derive(Clone, Debug)]
pub struct StackConfig {
    pub iface: String,
    pub queues: Option<u32>,
    pub mode: AttachMode,
    /// What the XDP program logs (aya-log), fixed at load.
    pub xdp_log: XdpLogLevel,
    pub bind: BindMode,
    pub idle: IdleStrategy,
    pub rx_checksum: RxChecksum,
    pub frame_size: u32,
    pub frames: u32,
    pub batch: u32,
    pub cpus: Vec<usize>,
    pub control: Option<PathBuf>,
    /// Bounce frames with no stack (the bench ceiling) instead of serving sockets.
    pub reflect: bool,
}

impl StackConfig {
    pub fn new(iface: &str) -> Self {
        Self {
            iface: iface.to_string(),
            queues: None,
            mode: AttachMode::Driver,
            xdp_log: XdpLogLevel::Warn,
            bind: BindMode::Auto,
            idle: IdleStrategy::Hybrid,
            rx_checksum: RxChecksum::AcceptPartial,
            frame_size: 4096,
            frames: 4096,
            batch: 64,
            cpus: Vec::new(),
            control: None,
            reflect: false,
        }
    }
}

/// A running fast path: XDP attached, one AF_XDP socket and pinned worker per queue,
/// the control socket answering.
pub struct Runtime {
    stack: Arc<Stack>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<XskSocket>>,
    control: JoinHandle<()>,
    state: Arc<ControlState>,
    control_path: PathBuf,
}

impl Runtime {
    pub fn start(cfg: StackConfig) -> anyhow::Result<Self> {
        let ifindex = system::ifindex(&cfg.iface)?;
        system::check_privileges()?;
        let available = system::rx_queue_count(&cfg.iface);
        let queues = cfg.queues.unwrap_or(available);
        if queues > available {
            bail!(
                "{} has {available} RX queue(s) but --queues {queues} was asked; lower --queues (see `ethtool -l {}`)",
                cfg.iface,
                cfg.iface
            );
        }
        let cores = core_affinity::get_core_ids().map_or(1, |c| c.len()).max(1);
        let control_path = cfg
            .control
            .clone()
            .unwrap_or_else(|| control::default_path(&cfg.iface));
        let listener = control::claim(&control_path)?;
        let steering = Steering::attach(&cfg.iface, cfg.mode, cfg.xdp_log)?;
        log::info!("attached XDP to {} in {:?} mode", cfg.iface, cfg.mode);
        let link = Link {
            steering: steering.clone(),
            ifindex,
            mac: system::mac_address(&cfg.iface)?,
            addr: system::ipv4_address(&cfg.iface).unwrap_or(Ipv4Addr::UNSPECIFIED),
            mtu: system::mtu(&cfg.iface),
        };
        let stack = Arc::new(Stack::build(Some(link), queues as usize, cfg.rx_checksum)?);
        let xsk = XskConfig {
            frame_size: cfg.frame_size,
            frame_count: cfg.frames,
            ring_size: (cfg.frames / 2).clamp(64, 4096),
            bind_mode: cfg.bind,
        };
        let stop = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, stop.clone())
                .context("installing signal handlers")?;
        }
        let mut workers = Vec::new();
        let mut handles = Vec::new();
        for queue in 0..queues {
            let socket = XskSocket::open(&cfg.iface, queue, &xsk).map_err(|e| {
                anyhow::anyhow!(
                    "{e}; check that queue {queue} exists on {} and no other AF_XDP socket is bound to it",
                    cfg.iface
                )
            })?;
            steering.register_socket(queue, &*socket.fd())?;
            let cpu = cfg
                .cpus
                .get(queue as usize)
                .copied()
                .unwrap_or(queue as usize % cores);
            let shared = Arc::new(QueueShared::default());
            handles.push(QueueHandle {
                queue,
                fd: socket.fd(),
                shared: shared.clone(),
                zero_copy: socket.zero_copy(),
            });
            log::info!(
                "queue {queue}: AF_XDP socket ({}) on core {cpu}",
                if socket.zero_copy() {
                    "zero-copy"
                } else {
                    "copy"
                }
            );
            let config = WorkerConfig {
                batch: cfg.batch,
                idle: cfg.idle,
                cpu: Some(cpu),
                waker: stack.worker_waker_fd(queue as usize),
            };
            let handle = if cfg.reflect {
                worker::spawn(socket, ReflectService, shared, stop.clone(), config)?
            } else {
                worker::spawn(
                    socket,
                    Demux::new(stack.clone(), queue as usize),
                    shared,
                    stop.clone(),
                    config,
                )?
            };
            workers.push(handle);
        }
        let state = Arc::new(ControlState {
            steering,
            stack: stack.clone(),
            queues: handles,
            service: if cfg.reflect {
                "udp reflect (no stack)".into()
            } else {
                "udp sockets".into()
            },
            started: Instant::now(),
        });
        let control = control::serve(listener, control_path.clone(), state.clone(), stop.clone())?;
        Ok(Self {
            stack,
            stop,
            workers,
            control,
            state,
            control_path,
        })
    }

    pub fn stack(&self) -> &Arc<Stack> {
        &self.stack
    }

    /// Set to stop the runtime (Ctrl-C and SIGTERM set it too).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    pub fn control_path(&self) -> &std::path::Path {
        &self.control_path
    }

    /// Serves until stopped (or `duration` passes), then stops the workers and reports.
    pub fn run(self, duration: Option<Duration>) -> anyhow::Result<String> {
        let deadline = duration.map(|d| Instant::now() + d);
        while !self.stop.load(Ordering::Relaxed) {
            if deadline.is_some_and(|d| Instant::now() >= d)
                || self.workers.iter().any(|h| h.is_finished())
            {
                self.stop.store(true, Ordering::Relaxed);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut ledger_errors = 0;
        for h in self.workers {
            match h.join() {
                Ok(socket) => ledger_errors += socket.ledger_errors(),
                Err(_) => bail!("a worker panicked"),
            }
        }
        let report = self.state.report();
        let _ = self.control.join();
        let total: u64 = report.queues.iter().map(|q| q.rx).sum();
        Ok(format!(
            "stopped: {total} frames received, XDP {:?}, ledger errors {ledger_errors}",
            report.xdp
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;
    impl crate::udp::UdpHandler for Echo {
        fn on_datagram(&self, d: &mut Datagram<'_>) -> Verdict {
            Verdict::Reply(d.payload().len())
        }
    }

    fn frame(dst_port: u16, payload: &[u8]) -> Vec<u8> {
        crate::wire::testing::udp_request(dst_port, payload)
    }

    fn deliver(d: &mut Demux, mut f: Vec<u8>) -> (Option<usize>, LocalCounters, Vec<u8>) {
        let len = f.len();
        f.resize(4096, 0);
        let mut c = LocalCounters::default();
        let r = d.handle(&mut f, len, &mut c);
        (r, c, f)
    }

    #[test]
    fn each_socket_gets_only_its_own_datagrams() {
        let stack = Stack::detached(1);
        let echo = stack
            .udp_bind(
                "0.0.0.0:5353".parse().unwrap(),
                None,
                Delivery::on_worker(Echo),
            )
            .unwrap();
        let queued = stack
            .udp_bind(
                "0.0.0.0:7777".parse().unwrap(),
                None,
                Delivery::Queue { depth: 4 },
            )
            .unwrap();
        assert_eq!((echo.get(), queued.get()), (1, 2));
        let mut d = Demux::new(stack.clone(), 0);
        let (reply, c, f) = deliver(&mut d, frame(5353, b"ping"));
        assert_eq!(reply, Some(46));
        assert_eq!(c.get(QueueCounter::Replied), 1);
        assert_eq!(
            &f[0..6],
            &[2, 0, 0, 0, 0, 2],
            "the reply goes back to the sender's MAC"
        );
        let (reply, _, _) = deliver(&mut d, frame(7777, b"queued"));
        assert_eq!(reply, None);
        let mut buf = [0u8; 64];
        let (n, from) = stack
            .recv_from(queued, &mut buf, Duration::from_millis(10))
            .unwrap();
        assert_eq!(
            (&buf[..n], from),
            (&b"queued"[..], "198.18.0.2:40000".parse().unwrap())
        );
        assert!(matches!(
            stack.recv_from(queued, &mut buf, Duration::from_millis(1)),
            Err(ApiError::TimedOut)
        ));
        let (reply, c, _) = deliver(&mut d, frame(9999, b"nobody"));
        assert_eq!((reply, c.get(QueueCounter::DropNoSocket)), (None, 1));
    }

    #[test]
    fn a_full_queue_and_a_bad_checksum_are_counted_by_reason() {
        let stack = Stack::detached(1);
        stack
            .udp_bind(
                "0.0.0.0:7777".parse().unwrap(),
                None,
                Delivery::Queue { depth: 1 },
            )
            .unwrap();
        let mut d = Demux::new(stack.clone(), 0);
        deliver(&mut d, frame(7777, b"one"));
        let (_, c, _) = deliver(&mut d, frame(7777, b"two"));
        assert_eq!(c.get(QueueCounter::DropQueueFull), 1);
        let mut bad = frame(7777, b"bad");
        bad[43] ^= 0x10;
        let (_, c, _) = deliver(&mut d, bad);
        assert_eq!(c.get(QueueCounter::DropChecksum), 1);
        let rows = stack.sockets();
        assert_eq!(rows[0].drops_queue_full, 1);
        assert_eq!(rows[0].queued_bytes, 3);
    }

    #[test]
    fn a_connected_socket_takes_its_peer_and_leaves_the_rest_to_the_bound_one() {
        let stack = Stack::detached(1);
        let bound = stack
            .udp_bind(
                "0.0.0.0:9000".parse().unwrap(),
                None,
                Delivery::Queue { depth: 4 },
            )
            .unwrap();
        let conn = stack
            .udp_bind(
                "198.18.0.1:9000".parse().unwrap(),
                Some("198.18.0.2:40000".parse().unwrap()),
                Delivery::Queue { depth: 4 },
            )
            .unwrap();
        let mut d = Demux::new(stack.clone(), 0);
        deliver(&mut d, frame(9000, b"from-peer"));
        let mut buf = [0u8; 64];
        assert_eq!(
            stack
                .recv_from(conn, &mut buf, Duration::from_millis(10))
                .unwrap()
                .0,
            9
        );
        assert!(
            stack
                .recv_from(bound, &mut buf, Duration::from_millis(1))
                .is_err()
        );
        let rows = stack.sockets();
        let row = rows.iter().find(|r| r.number == conn.get()).unwrap();
        assert_eq!(
            (row.state.as_str(), row.remote.as_str(), row.local.as_str()),
            ("connected", "198.18.0.2:40000", "198.18.0.1:9000")
        );
    }

    #[test]
    fn a_connected_socket_on_any_local_address_is_found() {
        let stack = Stack::detached(1);
        let conn = stack
            .udp_bind(
                "0.0.0.0:9000".parse().unwrap(),
                Some("198.18.0.2:40000".parse().unwrap()),
                Delivery::Queue { depth: 4 },
            )
            .unwrap();
        let mut d = Demux::new(stack.clone(), 0);
        let (_, c, _) = deliver(&mut d, frame(9000, b"hi"));
        assert_eq!(c.get(QueueCounter::DropNoSocket), 0);
        let mut buf = [0u8; 8];
        assert_eq!(
            stack
                .recv_from(conn, &mut buf, Duration::from_millis(10))
                .unwrap()
                .0,
            2
        );
    }

    #[test]
    fn connect_narrows_a_bound_socket() {
        let stack = Stack::detached(1);
        let s = stack
            .udp_bind(
                "0.0.0.0:9100".parse().unwrap(),
                None,
                Delivery::Queue { depth: 4 },
            )
            .unwrap();
        stack
            .udp_connect(s, "198.18.0.2:1".parse().unwrap())
            .unwrap();
        let mut d = Demux::new(stack.clone(), 0);
        // The test frames come from port 40000, not 1: no socket takes them now.
        let (_, c, _) = deliver(&mut d, frame(9100, b"x"));
        assert_eq!(c.get(QueueCounter::DropNoSocket), 1);
        stack
            .udp_connect(s, "198.18.0.2:40000".parse().unwrap())
            .unwrap();
        let (_, c, _) = deliver(&mut d, frame(9100, b"y"));
        assert_eq!(c.get(QueueCounter::DropNoSocket), 0);
        let row = &stack.sockets()[0];
        assert_eq!(
            (row.number, row.state.as_str(), row.remote.as_str()),
            (1, "connected", "198.18.0.2:40000")
        );
        assert!(stack.close_number(7).is_err());
        assert_eq!(stack.close_number(1).unwrap(), s);
        assert!(stack.sockets().is_empty());
    }

    #[test]
    fn a_stale_number_gets_a_clear_error_even_after_reuse() {
        let stack = Stack::detached(1);
        let old = stack
            .udp_bind(
                "0.0.0.0:1111".parse().unwrap(),
                None,
                Delivery::Queue { depth: 1 },
            )
            .unwrap();
        stack.close(old).unwrap();
        let mut buf = [0u8; 8];
        let err = stack.recv_from(old, &mut buf, Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("socket 1 is closed"), "{err}");
        let new = stack
            .udp_bind(
                "0.0.0.0:2222".parse().unwrap(),
                None,
                Delivery::Queue { depth: 1 },
            )
            .unwrap();
        assert_eq!(new.get(), old.get());
        let err = stack.recv_from(old, &mut buf, Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("socket 1 is closed"), "{err}");
        assert!(stack.close(old).is_err());
        assert!(
            matches!(
                stack.recv_from(new, &mut buf, Duration::ZERO),
                Err(ApiError::TimedOut)
            ),
            "the new socket is fine"
        );
        assert!(matches!(
            stack.send_to(old, b"x", "198.18.0.2:1".parse().unwrap()),
            Err(ApiError::Table(_))
        ));
    }
}
