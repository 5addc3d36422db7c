//! The application API: sockets by host-local number. This is all an application holds.
//!
//! Two ways to use a socket:
//! - **on the worker** (run to completion): a [`UdpHandler`](udp::UdpHandler) sees each datagram in place on
//!   the worker that received it and may answer by rewriting it — no thread hop, no copy —
//!   send more datagrams and arm timers;
//! - **from any thread**: [`Stack::recv_from`] takes datagrams from the socket's bounded
//!   queue and [`Stack::send_to`] posts datagrams to the worker that sends for that
//!   destination, through its lock-free mailbox.
//!
//! A UDP echo server on the fast path:
//!
//! ```no_run
//! use fastpath::runtime::{Runtime, StackConfig};
//! use fastpath::api::udp::{Datagram, Delivery, UdpHandler, Verdict};
//!
//! /// Answers every datagram with itself.
//! struct Echo;
//!
//! impl UdpHandler for Echo {
//!     fn on_datagram(&self, datagram: &mut Datagram<'_, '_>) -> Verdict {
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
    sync::Arc,
    time::{Duration, Instant},
};

use fastpath_common::{IPPROTO_TCP, IPPROTO_UDP, RuleKey};

use crate::{
    iface::checksum::RxChecksum,
    socket::{
        Command, Host, Socket, SocketInfo,
        table::{FourTuple, Protocol, TableError},
        tcp::entry::TcpListenerSocket,
        udp::{TxRequest, UdpSocketState},
    },
};

pub mod tcp;
pub mod udp;

pub use crate::socket::table::SocketNumber;
use tcp::{TcpConfig, TcpHandler};
use udp::Delivery;

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
    #[error("the worker's mailbox is full; retry")]
    TxQueueFull,
    #[error("socket {0} delivers on the worker; it has no queue to receive from")]
    NotQueued(SocketNumber),
    #[error("timed out")]
    TimedOut,
    #[error("no socket {0} is open (see `fastpath sockets`)")]
    NoSuchSocket(u32),
    #[error("a {len}-byte datagram does not fit the link: at most {max} bytes of UDP payload")]
    TooBig { len: usize, max: usize },

    #[error("socket {0} is not a UDP socket")]
    NotUdp(SocketNumber),
    #[error("socket {0} is a TCP connection: its worker ends it (close the listener instead)")]
    NotClosable(SocketNumber),
    #[error("would block")]
    WouldBlock,
    #[error("the runtime stopped")]
    Stopped,
    #[error("no local port left for an active open")]
    NoPort,
    #[error("the connection was refused, reset or timed out")]
    Refused,
    #[error("connection {0} is gone (reset, timed out or closed)")]
    ConnectionGone(SocketNumber),
    #[error("socket {0} is not a TCP connection")]
    NotTcpConnection(SocketNumber),
    #[error("steering: {0}")]
    Steer(#[from] crate::steer::SteerError),
}

/// The sockets of this host, as applications use them.
#[derive(Clone)]
pub struct Stack {
    host: Arc<Host>,
}

impl Stack {
    pub fn new(host: Arc<Host>) -> Self {
        Self { host }
    }

    /// A stack with no interface: sockets and the worker-side demux work, sending does not.
    /// For tests and fuzzing.
    pub fn detached(workers: usize) -> Self {
        Self::new(Arc::new(
            Host::new(None, workers, RxChecksum::AcceptPartial).expect("eventfd"),
        ))
    }

    /// What the workers share with the API (for the runtime and tests).
    pub fn host(&self) -> &Arc<Host> {
        &self.host
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
        let workers = self.host.workers();
        let number = self.host.table.insert(tuple, |_| {
            Socket::Udp(Arc::new(UdpSocketState::new(&delivery, workers)))
        })?;
        if let Some(link) = &self.host.link {
            let key = RuleKey::new(IPPROTO_UDP, local.ip().octets(), local.port());
            match link.steering.add_rule(key) {
                Ok(guard) => {
                    if let Ok(entry) = self.host.table.get(number)
                        && let Socket::Udp(udp) = &entry.value
                    {
                        *udp.rule.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
                    }
                }
                Err(e) => {
                    let _ = self.host.table.remove(number);
                    return Err(e.into());
                }
            }
        }
        Ok(number)
    }

    /// Connects a bound socket: from now on only datagrams from `remote` reach it, and its
    /// number stays the same.
    pub fn udp_connect(&self, number: SocketNumber, remote: SocketAddrV4) -> Result<(), ApiError> {
        let entry = self.host.table.get(number)?;
        let tuple = FourTuple::connected(Protocol::Udp, entry.tuple.local, remote);
        self.host.table.rekey(number, tuple)?;
        Ok(())
    }

    /// Listens for TCP connections on `local`; each one is served on the worker that
    /// receives it, by `handler` (run to completion). `backlog` bounds each worker's SYN
    /// queue (SYN cookies beyond it). Adds the steering rule for the port. Returns the
    /// listener's number.
    pub fn tcp_listen(
        &self,
        local: SocketAddrV4,
        backlog: usize,
        handler: Arc<dyn TcpHandler>,
    ) -> Result<SocketNumber, ApiError> {
        let config = self.tcp_config();
        self.listen_with(
            local,
            Arc::new(TcpListenerSocket::new(config, backlog, handler)),
        )
    }

    /// `tcp_listen` with the connections' settings adjusted by `adjust` (Nagle off, other
    /// buffer sizes …).
    pub fn tcp_listen_with(
        &self,
        local: SocketAddrV4,
        backlog: usize,
        handler: Arc<dyn TcpHandler>,
        adjust: impl FnOnce(&mut TcpConfig),
    ) -> Result<SocketNumber, ApiError> {
        let mut config = self.tcp_config();
        adjust(&mut config);
        self.listen_with(
            local,
            Arc::new(TcpListenerSocket::new(config, backlog, handler)),
        )
    }

    /// Listens for TCP connections on `local` for threads: each established connection
    /// waits (up to `depth` of them) for [`Stack::tcp_accept`].
    pub fn tcp_listen_queued(
        &self,
        local: SocketAddrV4,
        backlog: usize,
        depth: usize,
    ) -> Result<SocketNumber, ApiError> {
        let config = self.tcp_config();
        self.listen_with(
            local,
            Arc::new(TcpListenerSocket::queued(config, backlog, depth)),
        )
    }

    /// The settings new connections start with (the MSS from the link).
    pub(crate) fn tcp_config(&self) -> TcpConfig {
        let mut config = TcpConfig::default();
        if let Some(link) = &self.host.link {
            // RFC 6691: the MSS is the link MTU less the IPv4 and TCP headers.
            config.mss = link.mtu.saturating_sub(40).clamp(536, u32::from(u16::MAX)) as u16;
        }
        config
    }

    fn listen_with(
        &self,
        local: SocketAddrV4,
        socket: Arc<TcpListenerSocket>,
    ) -> Result<SocketNumber, ApiError> {
        if local.port() == 0 {
            return Err(ApiError::BadAddress(local));
        }
        let tuple = FourTuple::bound(Protocol::Tcp, local);
        let number = self
            .host
            .table
            .insert(tuple, |_| Socket::TcpListener(socket.clone()))?;
        if let Some(link) = &self.host.link {
            let key = RuleKey::new(IPPROTO_TCP, local.ip().octets(), local.port());
            match link.steering.add_rule(key) {
                Ok(guard) => {
                    *socket.rule.lock().unwrap_or_else(|p| p.into_inner()) = Some(guard);
                }
                Err(e) => {
                    let _ = self.host.table.remove(number);
                    return Err(e.into());
                }
            }
        }
        Ok(number)
    }

    /// Closes the socket the current holder of `number` is (whatever its generation): for
    /// the operator's `fastpath close N`, who knows numbers as the listing shows them.
    pub fn close_number(&self, number: u32) -> Result<SocketNumber, ApiError> {
        let current = self
            .host
            .table
            .entries()
            .into_iter()
            .find(|e| e.number.get() == number)
            .map(|e| e.number)
            .ok_or(ApiError::NoSuchSocket(number))?;
        self.close(current)?;
        Ok(current)
    }

    /// Closes a socket; its steering rule goes when no other socket holds it. A UDP socket
    /// has no per-flow state on a worker, so it leaves the table at once (timers it armed
    /// find it gone and die).
    pub fn close(&self, number: SocketNumber) -> Result<(), ApiError> {
        if let Socket::TcpConnection(_) = self.host.table.get(number)?.value {
            return Err(ApiError::NotClosable(number));
        }
        let entry = self.host.table.remove(number)?;
        match &entry.value {
            Socket::Udp(udp) => {
                udp.rule.lock().unwrap_or_else(|p| p.into_inner()).take();
            }
            Socket::TcpListener(listener) => {
                listener
                    .rule
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
            }
            // Refused above: a connection is its worker's to end.
            Socket::TcpConnection(_) => {}
        }
        Ok(())
    }

    /// Sends `payload` from socket `number` to `to` (resolving the next hop if needed): the
    /// datagram goes to the worker that sends for `to` (one destination, one worker, so a
    /// flow's datagrams leave in the order they were sent).
    pub fn send_to(
        &self,
        number: SocketNumber,
        payload: &[u8],
        to: SocketAddrV4,
    ) -> Result<(), ApiError> {
        let entry = self.host.table.get(number)?;
        let link = self.host.link.as_ref().ok_or(ApiError::NotAttached)?;
        let max = crate::socket::udp::max_payload(link.mtu);
        if payload.len() > max {
            return Err(ApiError::TooBig {
                len: payload.len(),
                max,
            });
        }
        let src_ip = match *entry.tuple.local.ip() {
            ip if ip.is_unspecified() => link.addr,
            ip => ip,
        };
        let dst_mac = self
            .host
            .neighbors
            .resolve(*to.ip(), link.ifindex, Duration::from_secs(1))
            .ok_or(ApiError::NoNeighbor(*to.ip()))?;
        let mut buf = self.host.tx_pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(payload);
        let worker = self.host.worker_for(&entry.value, to);
        let request = TxRequest {
            socket: number,
            src: SocketAddrV4::new(src_ip, entry.tuple.local.port()),
            dst: to,
            dst_mac,
            payload: buf,
        };
        match self.host.post(worker, Command::UdpSend(request)) {
            Ok(()) => {
                if let Socket::Udp(udp) = &entry.value {
                    udp.count_app_tx();
                }
                Ok(())
            }
            Err(Command::UdpSend(request)) => {
                let _ = self.host.tx_pool.push(request.payload);
                Err(ApiError::TxQueueFull)
            }
            Err(_) => Err(ApiError::TxQueueFull),
        }
    }

    /// Takes a datagram from a queued socket, waiting up to `timeout`.
    pub fn recv_from(
        &self,
        number: SocketNumber,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<(usize, SocketAddrV4), ApiError> {
        let entry = self.host.table.get(number)?;
        let Socket::Udp(udp) = &entry.value else {
            return Err(ApiError::NotUdp(number));
        };
        if udp.handler.is_some() {
            return Err(ApiError::NotQueued(number));
        }
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_micros(5);
        loop {
            if let Some(got) = udp.dequeue(buf) {
                return Ok(got);
            }
            if Instant::now() >= deadline {
                return Err(ApiError::TimedOut);
            }
            // No lock on the worker's side means no condvar here: back off up to 1 ms.
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
            // A socket closed meanwhile is reported as such.
            self.host.table.get(number)?;
        }
    }

    /// Every socket, for `fastpath sockets`.
    pub fn sockets(&self) -> Vec<SocketInfo> {
        self.host.sockets()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        counters::Counters,
        iface::demux::Demux,
        phy::{FrameHandler, testing::VecSink},
        socket::udp::{Datagram, UdpCounter, Verdict},
    };

    struct Echo;
    impl crate::socket::udp::UdpHandler for Echo {
        fn on_datagram(&self, d: &mut Datagram<'_, '_>) -> Verdict {
            Verdict::Reply(d.payload().len())
        }
    }

    fn frame(dst_port: u16, payload: &[u8]) -> Vec<u8> {
        crate::wire::testing::udp_request(dst_port, payload)
    }

    /// UDP counters moved by one delivery.
    struct Delta(Counters<UdpCounter>, Counters<UdpCounter>);

    impl Delta {
        fn get(&self, c: UdpCounter) -> u64 {
            self.1.get(c) - self.0.get(c)
        }
    }

    fn deliver(d: &mut Demux, mut f: Vec<u8>) -> (Option<usize>, Delta, Vec<u8>) {
        let len = f.len();
        f.resize(4096, 0);
        let before = d.udp_counters().clone();
        let mut sink = VecSink::new(16);
        let r = d.handle(crate::time::Instant::ZERO, &mut f, len, &mut sink);
        (r, Delta(before, d.udp_counters().clone()), f)
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
        let mut d = Demux::new(stack.host().clone(), 0);
        let (reply, c, f) = deliver(&mut d, frame(5353, b"ping"));
        assert_eq!(reply, Some(46));
        assert_eq!(c.get(UdpCounter::Replied), 1);
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
        assert_eq!((reply, c.get(UdpCounter::DropNoSocket)), (None, 1));
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
        let mut d = Demux::new(stack.host().clone(), 0);
        deliver(&mut d, frame(7777, b"one"));
        let (_, c, _) = deliver(&mut d, frame(7777, b"two"));
        assert_eq!(c.get(UdpCounter::DropQueueFull), 1);
        let mut bad = frame(7777, b"bad");
        bad[43] ^= 0x10;
        let (_, c, _) = deliver(&mut d, bad);
        assert_eq!(c.get(UdpCounter::DropChecksum), 1);
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
        let mut d = Demux::new(stack.host().clone(), 0);
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
        let mut d = Demux::new(stack.host().clone(), 0);
        let (_, c, _) = deliver(&mut d, frame(9000, b"hi"));
        assert_eq!(c.get(UdpCounter::DropNoSocket), 0);
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
        let mut d = Demux::new(stack.host().clone(), 0);
        // The test frames come from port 40000, not 1: no socket takes them now.
        let (_, c, _) = deliver(&mut d, frame(9100, b"x"));
        assert_eq!(c.get(UdpCounter::DropNoSocket), 1);
        stack
            .udp_connect(s, "198.18.0.2:40000".parse().unwrap())
            .unwrap();
        let (_, c, _) = deliver(&mut d, frame(9100, b"y"));
        assert_eq!(c.get(UdpCounter::DropNoSocket), 0);
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
