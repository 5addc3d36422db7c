//! Applications: the UDP and TCP echoes and the bench ceiling.
//!
//! `EchoApp` is an ordinary application on the socket API (`udp::UdpHandler`): it runs on
//! the worker and answers each datagram with itself; `--sockperf` also clears sockperf's
//! client bit, as `sockperf server` does. The stack below it does the rest: validation
//! (`iface::demux`), received checksums and the reply's full checksums (`socket::udp`), the
//! four-tuple lookup (`socket::table`). `tcp_thread_accept`, `tcp_thread_echo` and
//! `udp_thread_echo` are the same echoes on the any-thread API.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use crate::{
    api::{
        ApiError, SocketNumber, Stack,
        tcp::{Connection, Event, State, TcpHandler},
        udp::{Datagram, UdpHandler, Verdict},
    },
    counter_set,
    counters::{Counters, SharedCounters},
    phy::{FrameHandler, FrameSink},
    time::Instant,
    wire::{checksum::ChecksumStatus, udp::UdpPacket},
};

/// Offset of sockperf's 16-bit message flags: after its 8-byte sequence number.
const SOCKPERF_FLAGS: usize = 8;
/// sockperf's client bit; `sockperf server` answers a ping by clearing it (0x0003 → 0x0002).
const SOCKPERF_CLIENT: u16 = 0x0001;

/// Answers each datagram with itself.
#[derive(Clone, Copy, Debug, Default)]
pub struct EchoApp {
    /// Clear sockperf's client bit in the reply, as `sockperf server` does.
    pub sockperf: bool,
}

impl UdpHandler for EchoApp {
    #[inline]
    fn on_datagram(&self, d: &mut Datagram<'_, '_>) -> Verdict {
        let len = d.payload().len();
        if self.sockperf
            && let Some(flags) = d.buffer_mut().get_mut(SOCKPERF_FLAGS..SOCKPERF_FLAGS + 2)
            && len >= SOCKPERF_FLAGS + 2
        {
            let value = u16::from_be_bytes([flags[0], flags[1]]) & !SOCKPERF_CLIENT;
            flags.copy_from_slice(&value.to_be_bytes());
        }
        Verdict::Reply(len)
    }
}

/// The bench ceiling: bounces steered frames back with the least work that still gets
/// them accepted — swap MACs, addresses and ports at fixed offsets (untagged IPv4 with a
/// 20-byte header), and compute the UDP checksum only when the peer left it partial.
/// No validation: it measures the rings and the kernel's AF_XDP path, not a stack.
#[derive(Clone, Default)]
pub struct ReflectService {
    counters: Counters<ReflectCounter>,
}

counter_set! {
    "reflect",
    /// What the ceiling did.
    pub enum ReflectCounter {
        Replied = "replied",
        DropMalformed = "drop_malformed",
    }
}

impl FrameHandler for ReflectService {
    fn handle(
        &mut self,
        _now: Instant,
        frame: &mut [u8],
        len: usize,
        _tx: &mut dyn FrameSink,
    ) -> Option<usize> {
        let c = &mut self.counters;
        use fastpath_common::layout::*;
        const L3: usize = ETH_HLEN;
        const L4: usize = ETH_HLEN + IPV4_MIN_HLEN;
        if len < L4 + UDP_HLEN || frame[L3 + IPV4_VER_IHL] != 0x45 {
            c.bump(ReflectCounter::DropMalformed);
            return None;
        }
        let frame = &mut frame[..len];
        for i in 0..6 {
            frame.swap(ETH_DST + i, ETH_SRC + i);
        }
        for i in 0..4 {
            frame.swap(L3 + IPV4_SRC + i, L3 + IPV4_DST + i);
        }
        for i in 0..2 {
            frame.swap(L4 + UDP_SRC_PORT + i, L4 + UDP_DST_PORT + i);
        }
        // Swapping addresses and ports leaves both one's-complement sums unchanged; only a
        // partial (offloaded) UDP checksum needs computing.
        let (src, dst) = {
            let ip = &frame[L3..];
            (
                [
                    ip[IPV4_SRC],
                    ip[IPV4_SRC + 1],
                    ip[IPV4_SRC + 2],
                    ip[IPV4_SRC + 3],
                ],
                [
                    ip[IPV4_DST],
                    ip[IPV4_DST + 1],
                    ip[IPV4_DST + 2],
                    ip[IPV4_DST + 3],
                ],
            )
        };
        if let Ok(mut udp) = UdpPacket::new_checked(&mut frame[L4..])
            && udp.check(src, dst) == ChecksumStatus::Partial
        {
            udp.fill_checksum(src, dst);
        }
        c.bump(ReflectCounter::Replied);
        Some(len)
    }

    fn counter_names(&self) -> Vec<(&'static str, &'static str)> {
        Counters::<ReflectCounter>::names().collect()
    }

    fn publish(&self, shared: &SharedCounters, offset: usize) {
        shared.store(offset, self.counters.values());
    }
}

/// The any-thread TCP API in use: accept connections, each served by its own thread.
pub fn tcp_thread_accept(stack: &Stack, listener: SocketNumber, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match stack.tcp_accept(listener, Duration::from_millis(100)) {
            Ok(n) => {
                let stack = stack.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("tcp-echo-{n}"))
                    .spawn(move || tcp_thread_echo(&stack, n));
                if let Err(e) = spawned {
                    log::warn!("socket {n}: no thread to serve it: {e}");
                }
            }
            Err(ApiError::TimedOut) => {}
            Err(e) => {
                log::warn!("socket {listener}: accept: {e}");
                return;
            }
        }
    }
}

/// Reads and writes back until the peer's FIN, then closes.
pub fn tcp_thread_echo(stack: &Stack, n: SocketNumber) {
    let mut buf = vec![0u8; 64 * 1024];
    let idle = Duration::from_secs(60);
    loop {
        let got = match stack.tcp_read(n, &mut buf, idle) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) => {
                log::debug!("socket {n}: read: {e}");
                break;
            }
        };
        let mut off = 0;
        while off < got {
            match stack.tcp_write(n, &buf[off..got], idle) {
                Ok(w) => off += w,
                Err(e) => {
                    log::debug!("socket {n}: write: {e}");
                    let _ = stack.tcp_close(n);
                    return;
                }
            }
        }
    }
    let _ = stack.tcp_close(n);
}

/// The thread-safe API in use: take each datagram from the socket's queue, send it back.
pub fn udp_thread_echo(stack: &Stack, number: SocketNumber, stop: &AtomicBool) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        match stack.recv_from(number, &mut buf, Duration::from_millis(100)) {
            Ok((n, from)) => {
                if let Err(e) = stack.send_to(number, &buf[..n], from) {
                    log::warn!("socket {number}: send_to {from}: {e}");
                }
            }
            Err(ApiError::TimedOut) => {}
            Err(e) => {
                log::warn!("socket {number}: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use fastpath_common::IPPROTO_UDP;

    use super::*;
    use crate::{
        api::Stack,
        iface::demux::Demux,
        phy::testing::VecSink,
        socket::udp::{Delivery, UdpCounter},
        wire::{
            checksum,
            ipv4::Ipv4Packet,
            testing::{CLIENT, SERVER},
        },
    };

    fn request(payload: &[u8], dst_port: u16) -> Vec<u8> {
        crate::wire::testing::udp_request(dst_port, payload)
    }

    fn echo_stack(sockperf: bool, port: u16) -> Demux {
        let stack = Stack::detached(1);
        stack
            .udp_bind(
                std::net::SocketAddrV4::new(std::net::Ipv4Addr::UNSPECIFIED, port),
                None,
                Delivery::on_worker(EchoApp { sockperf }),
            )
            .unwrap();
        Demux::new(stack.host().clone(), 0)
    }

    /// Echoes one frame; returns the answer's length and the UDP counters it moved.
    fn echo(d: &mut Demux, f: &mut Vec<u8>) -> (Option<usize>, Counters<UdpCounter>) {
        let len = f.len();
        f.resize(len + 64, 0);
        let before = d.udp_counters().clone();
        let mut sink = VecSink::new(0);
        let r = d.handle(Instant::ZERO, f, len, &mut sink);
        let mut delta = Counters::<UdpCounter>::default();
        for c in <UdpCounter as crate::counters::CounterSet>::ALL {
            delta.add(*c, d.udp_counters().get(*c) - before.get(*c));
        }
        (r, delta)
    }

    #[test]
    fn echoes_with_swapped_addresses_and_valid_checksums() {
        let mut d = echo_stack(false, 7000);
        // 2000 is past what a 1500-byte MTU carries: the reply room must still hold it.
        for size in [0usize, 1, 64, 1400, 1472, 2000] {
            let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
            let mut f = request(&payload, 7000);
            let (reply, c) = echo(&mut d, &mut f);
            assert_eq!(reply, Some(14 + 20 + 8 + size));
            assert_eq!(c.get(UdpCounter::Replied), 1);
            assert_eq!(&f[0..6], &[2, 0, 0, 0, 0, 2]);
            let ip = Ipv4Packet::new_checked(&f[14..14 + 28 + size]).unwrap();
            assert_eq!((ip.src(), ip.dst()), (SERVER, CLIENT));
            assert!(ip.verify_checksum());
            let udp = UdpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!((udp.src_port(), udp.dst_port()), (7000, 40000));
            assert_eq!(udp.check(SERVER, CLIENT), ChecksumStatus::Valid);
            assert_eq!(udp.payload(), &payload[..]);
        }
    }

    #[test]
    fn accepts_an_offloaded_checksum_and_drops_a_bad_one() {
        let mut d = echo_stack(false, 7000);
        let mut f = request(b"abc", 7000);
        let pseudo = checksum::fold(checksum::pseudo_header_v4(CLIENT, SERVER, IPPROTO_UDP, 11));
        f[40..42].copy_from_slice(&pseudo.to_be_bytes());
        let (reply, c) = echo(&mut d, &mut f);
        assert!(reply.is_some());
        assert_eq!(c.get(UdpCounter::ChecksumPartial), 1);
        let mut bad = request(b"abc", 7000);
        bad[43] ^= 0x40;
        let (reply, c) = echo(&mut d, &mut bad);
        assert_eq!((reply, c.get(UdpCounter::DropChecksum)), (None, 1));
    }

    #[test]
    fn truncations_are_counted_drops_never_replies() {
        let mut d = echo_stack(false, 7000);
        let full = request(b"0123456789", 7000);
        for cut in 0..full.len() {
            let mut f = full[..cut].to_vec();
            let (reply, c) = echo(&mut d, &mut f);
            assert_eq!(reply, None, "cut at {cut}");
            assert_eq!(c.get(UdpCounter::Replied), 0);
        }
    }

    #[test]
    fn sockperf_mode_clears_the_client_bit() {
        let mut d = echo_stack(true, 11111);
        let mut payload = [0u8; 16];
        payload[8..10].copy_from_slice(&0x0003u16.to_be_bytes());
        let mut f = request(&payload, 11111);
        let (reply, _) = echo(&mut d, &mut f);
        assert!(reply.is_some());
        assert_eq!(&f[42 + 8..42 + 10], &0x0002u16.to_be_bytes());
        let ip = Ipv4Packet::new_checked(&f[14..14 + 20 + 8 + 16]).unwrap();
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(udp.check(SERVER, CLIENT), ChecksumStatus::Valid);
    }
}

/// The TCP echo: what arrives goes back, as much as the send buffer takes; reading stops
/// while it is full (the window closes, the peer waits) and resumes on `Writable`. Once
/// the peer has closed and everything was echoed, it closes its side too.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpEcho;

impl TcpHandler for TcpEcho {
    fn on_event(&self, conn: &mut Connection, _event: Event, scratch: &mut [u8]) {
        loop {
            let n = conn.readable().min(conn.writable()).min(scratch.len());
            if n == 0 {
                break;
            }
            let got = conn.read(&mut scratch[..n]);
            let put = conn.write(&scratch[..got]);
            debug_assert_eq!(put, got, "writable() promised the room");
            if got == 0 {
                break;
            }
        }
        if conn.state() == State::CloseWait && conn.readable() == 0 {
            conn.shutdown();
        }
    }
}
