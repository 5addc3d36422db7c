//! Helpers for the end-to-end tests: a kernel UDP client in the peer namespace, raw frame
//! injection with a packet socket, and access to fastpath's stats.
//!
//! These tests need root (namespaces, XDP). Without it they fail with the reason; they
//! never skip.

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

pub use fastpath_bench::{
    netns::{CLIENT_ADDR, SERVER_ADDR, VethConfig, VethPair, in_netns},
    process::{FastpathProcess, fastpath_binary, stats_json},
};
use serde_json::Value;

/// A veth pair, or a panic that says why (the test fails, it does not skip).
#[track_caller]
pub fn veth_pair(config: VethConfig) -> VethPair {
    VethPair::create(config).unwrap_or_else(|e| panic!("cannot build the test bed: {e:#}"))
}

#[track_caller]
pub fn start_echo(pair: &VethPair, args: &[&str]) -> FastpathProcess {
    FastpathProcess::start_echo(pair, args)
        .unwrap_or_else(|e| panic!("cannot start fastpath: {e:#}"))
}

/// A UDP socket in the client namespace, bound to the client address.
pub fn client_socket(pair: &VethPair) -> UdpSocket {
    VethPair::in_netns(&pair.client, || {
        let s = UdpSocket::bind((CLIENT_ADDR, 0)).expect("bind client socket");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s
    })
}

/// Sends `payload` to the server and returns the reply, retrying a lost datagram a few times.
pub fn round_trip(socket: &UdpSocket, port: u16, payload: &[u8]) -> Option<Vec<u8>> {
    let to = SocketAddr::from((SERVER_ADDR, port));
    let mut buf = vec![0u8; 65536];
    for _ in 0..3 {
        socket.send_to(payload, to).expect("send_to");
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            assert_eq!(from, to, "reply from an unexpected address");
            return Some(buf[..n].to_vec());
        }
    }
    None
}

/// Deterministic bytes that differ by position and seed.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[track_caller]
pub fn stats(process: &FastpathProcess) -> Value {
    stats_json(process.control()).unwrap_or_else(|e| panic!("stats: {e:#}\n{}", process.log_text()))
}

pub fn xdp_counter(stats: &Value, name: &str) -> u64 {
    stats["xdp"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no xdp counter {name} in {stats}"))
}

pub fn queue_counter(stats: &Value, queue: usize, name: &str) -> u64 {
    let q = &stats["queues"][queue];
    q[name]
        .as_u64()
        .or_else(|| q["counters"][name].as_u64())
        .unwrap_or_else(|| panic!("no counter {name} for queue {queue} in {stats}"))
}

/// Reads a UDP counter (e.g. InCsumErrors) of the calling thread's namespace.
pub fn udp_snmp(name: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/net/snmp").expect("read snmp");
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    let (header, values) = (lines.next().unwrap(), lines.next().unwrap());
    let idx = header
        .split_whitespace()
        .position(|h| h == name)
        .expect("snmp field");
    values.split_whitespace().nth(idx).unwrap().parse().unwrap()
}

/// Sends raw Ethernet frames out of the client's veth with a packet socket.
pub fn inject_frames(pair: &VethPair, frames: &[Vec<u8>]) {
    let ifindex = pair.client.ifindex;
    VethPair::in_netns(&pair.client, || {
        // Safety: a plain socket(2) call; the descriptor is closed below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        // Safety: sockaddr_ll is plain integers; zero is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        for frame in frames {
            // Safety: frame and addr are valid for the sizes passed.
            let n = unsafe {
                libc::sendto(
                    fd,
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&addr as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(
                n,
                frame.len() as isize,
                "inject: {}",
                std::io::Error::last_os_error()
            );
        }
        // Safety: closing the descriptor opened above.
        unsafe { libc::close(fd) };
    });
}

/// Polls `f` until it returns true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
