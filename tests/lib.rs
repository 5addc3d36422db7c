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

/// TCP helpers shared by the impaired and hostile TCP tests: a kernel client, an echo
/// transfer checked byte for byte, the instance's counters and idle state, and raw TCP
/// segments with checksums computed over whatever bytes they hold.
pub mod tcp {
    use std::{
        io::{Read, Write},
        net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream},
        thread,
        time::Duration,
    };

    use serde_json::Value;

    use super::*;

    /// The `i`-th byte of stream `seed` (a keyed hash of its 8-byte block).
    pub fn byte_at(seed: u64, i: u64) -> u8 {
        let mut z = (i / 8) ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        z.to_le_bytes()[(i % 8) as usize]
    }

    pub fn fill(seed: u64, from: u64, buf: &mut [u8]) {
        for (k, b) in buf.iter_mut().enumerate() {
            *b = byte_at(seed, from + k as u64);
        }
    }

    /// A kernel TCP connection from the client namespace to `SERVER_ADDR:port`, with
    /// read and write timeouts of `timeout`.
    #[track_caller]
    pub fn connect(pair: &VethPair, port: u16, timeout: Duration) -> TcpStream {
        let to = SocketAddr::from((SERVER_ADDR, port));
        let stream = VethPair::in_netns(&pair.client, || {
            TcpStream::connect_timeout(&to, Duration::from_secs(10))
        })
        .unwrap_or_else(|e| panic!("connect to {to}: {e}"));
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream.set_write_timeout(Some(timeout)).unwrap();
        stream
    }

    /// Reads the echo of stream `seed` until EOF (at most `limit` bytes), checking every
    /// byte; returns how many came back.
    pub fn check_echo(mut reader: TcpStream, seed: u64, limit: u64) -> Result<u64, String> {
        let mut buf = vec![0u8; 256 * 1024];
        let mut want = vec![0u8; buf.len()];
        let mut at = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| format!("read at byte {at}: {e}"))?;
            if n == 0 {
                return Ok(at);
            }
            fill(seed, at, &mut want[..n]);
            if let Some(k) = (0..n).find(|&k| buf[k] != want[k]) {
                return Err(format!("byte {} differs", at + k as u64));
            }
            at += n as u64;
            if at > limit {
                return Err(format!("more bytes came back than were sent: {at}"));
            }
        }
    }

    /// Sends `len` bytes of stream `seed` while a reader thread checks the echo; then
    /// half-closes and expects the server's FIN once everything came back.
    pub fn echo_transfer(stream: TcpStream, len: u64, seed: u64) -> Result<(), String> {
        let reader = stream.try_clone().map_err(|e| e.to_string())?;
        let check = thread::spawn(move || check_echo(reader, seed, len));
        let mut writer = stream;
        let mut chunk = vec![0u8; 64 * 1024];
        let mut sent = 0u64;
        while sent < len {
            let n = chunk.len().min((len - sent) as usize);
            fill(seed, sent, &mut chunk[..n]);
            writer
                .write_all(&chunk[..n])
                .map_err(|e| format!("write at byte {sent}: {e}"))?;
            sent += n as u64;
        }
        writer
            .shutdown(Shutdown::Write)
            .map_err(|e| e.to_string())?;
        let got = check
            .join()
            .map_err(|_| "the reader panicked".to_string())??;
        if got != len {
            return Err(format!("{got} of {len} bytes came back"));
        }
        Ok(())
    }

    /// Starts `fastpath echo --tcp port <extra>` without a capture and waits for its listener.
    #[track_caller]
    pub fn start_tcp_echo(pair: &VethPair, port: u16, extra: &[&str]) -> FastpathProcess {
        let port_arg = port.to_string();
        let mut args = vec!["--tcp", port_arg.as_str()];
        args.extend_from_slice(extra);
        let fastpath = FastpathProcess::start(pair, "echo", &args)
            .unwrap_or_else(|e| panic!("cannot start fastpath: {e:#}"));
        let listening = eventually(Duration::from_secs(5), || {
            tcp_rows(&fastpath).iter().any(|r| r["state"] == "listen")
        });
        assert!(listening, "no listener: {}", fastpath.log_text());
        fastpath
    }

    /// TCP rows of `fastpath sockets --json`.
    pub fn tcp_rows(fastpath: &FastpathProcess) -> Vec<Value> {
        let out = std::process::Command::new(fastpath_binary().unwrap())
            .args(["sockets", "--json", "--control"])
            .arg(fastpath.control())
            .output()
            .expect("fastpath sockets");
        let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "sockets --json: {e}: {}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        rows.as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r["proto"] == "tcp")
            .collect()
    }

    /// A counter summed over the queues (0 where a queue lacks it).
    #[track_caller]
    pub fn sum_counter(fastpath: &FastpathProcess, name: &str) -> u64 {
        sum_in(&stats(fastpath), name)
    }

    /// A counter of a stats snapshot, summed over the queues.
    pub fn sum_in(s: &Value, name: &str) -> u64 {
        s["queues"]
            .as_array()
            .map(|qs| {
                qs.iter()
                    .map(|q| q["counters"][name].as_u64().unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Whether the instance is back to idle: only the listener in the table, no timer armed,
    /// every UMEM frame free or in the fill ring, no connection counted open.
    pub fn idle(fastpath: &FastpathProcess) -> Result<(), String> {
        let rows = tcp_rows(fastpath);
        let connections: Vec<_> = rows.iter().filter(|r| r["state"] != "listen").collect();
        if !connections.is_empty() {
            return Err(format!("connections left: {connections:?}"));
        }
        let s = stats(fastpath);
        for q in s["queues"].as_array().unwrap() {
            let f = &q["frames"];
            if ["rx", "in_use", "tx", "completion"]
                .iter()
                .any(|k| f[k] != 0)
            {
                return Err(format!("frames not back: {f}"));
            }
            let c = &q["counters"];
            let open: u64 = c
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| {
                            k.starts_with("tcp_state_")
                                && !matches!(k.as_str(), "tcp_state_listen" | "tcp_state_closed")
                        })
                        .map(|(_, v)| v.as_u64().unwrap_or(0))
                        .sum()
                })
                .unwrap_or(0);
            if open != 0 {
                return Err(format!("connections counted open: {c}"));
            }
            if c["timers_armed"].as_u64() != Some(0) {
                return Err(format!("timers armed: {}", c["timers_armed"]));
            }
            if q["ledger_errors"] != 0 {
                return Err(format!("ledger errors: {}", q["ledger_errors"]));
            }
        }
        Ok(())
    }

    /// Waits up to `limit` for `idle`.
    #[track_caller]
    pub fn assert_idle(fastpath: &FastpathProcess, limit: Duration) {
        let mut last = Ok(());
        let settled = eventually(limit, || {
            last = idle(fastpath);
            last.is_ok()
        });
        assert!(settled, "not idle: {last:?}\n{}", fastpath.log_text());
    }

    /// The Internet checksum of `data` with `initial` added in.
    fn checksum(initial: u32, data: &[u8]) -> u16 {
        let mut sum = initial;
        for w in data.chunks(2) {
            let hi = u32::from(w[0]) << 8;
            sum += hi | w.get(1).copied().map_or(0, u32::from);
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// One raw TCP segment from the peer's side, to be framed by `frame`.
    #[derive(Clone, Debug)]
    pub struct RawSegment {
        pub src: Ipv4Addr,
        pub src_port: u16,
        pub dst_port: u16,
        pub seq: u32,
        pub ack: u32,
        /// The flag byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10).
        pub flags: u8,
        pub window: u16,
        /// Option bytes as they go on the wire (padded to 4 by `frame` unless `data_offset`).
        pub options: Vec<u8>,
        pub payload: Vec<u8>,
        /// The data offset field in 32-bit words, whatever the header really holds.
        pub data_offset: Option<u8>,
    }

    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;

    impl RawSegment {
        pub fn new(src: Ipv4Addr, src_port: u16, dst_port: u16, flags: u8) -> Self {
            Self {
                src,
                src_port,
                dst_port,
                seq: 0,
                ack: 0,
                flags,
                window: 1024,
                options: Vec::new(),
                payload: Vec::new(),
                data_offset: None,
            }
        }

        /// Ethernet + IPv4 + TCP, from the client's MAC to the server's, both checksums
        /// right for the bytes sent.
        pub fn frame(&self, pair: &VethPair) -> Vec<u8> {
            let mut options = self.options.clone();
            if self.data_offset.is_none() {
                while !options.len().is_multiple_of(4) {
                    options.push(0);
                }
            }
            let offset = self.data_offset.unwrap_or((5 + options.len() / 4) as u8);
            let mut t = Vec::new();
            t.extend_from_slice(&self.src_port.to_be_bytes());
            t.extend_from_slice(&self.dst_port.to_be_bytes());
            t.extend_from_slice(&self.seq.to_be_bytes());
            t.extend_from_slice(&self.ack.to_be_bytes());
            t.push(offset << 4);
            t.push(self.flags);
            t.extend_from_slice(&self.window.to_be_bytes());
            t.extend_from_slice(&[0, 0, 0, 0]);
            t.extend_from_slice(&options);
            t.extend_from_slice(&self.payload);
            let (s, d) = (self.src.octets(), SERVER_ADDR.octets());
            let pseudo = u32::from(u16::from_be_bytes([s[0], s[1]]))
                + u32::from(u16::from_be_bytes([s[2], s[3]]))
                + u32::from(u16::from_be_bytes([d[0], d[1]]))
                + u32::from(u16::from_be_bytes([d[2], d[3]]))
                + 6
                + t.len() as u32;
            let c = checksum(pseudo, &t);
            t[16..18].copy_from_slice(&c.to_be_bytes());
            let mut ip = vec![0u8; 20];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&((20 + t.len()) as u16).to_be_bytes());
            ip[6] = 0x40; // DF
            ip[8] = 64;
            ip[9] = 6;
            ip[12..16].copy_from_slice(&s);
            ip[16..20].copy_from_slice(&d);
            let c = checksum(0, &ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            let mut f = Vec::new();
            f.extend_from_slice(&pair.server.mac);
            f.extend_from_slice(&pair.client.mac);
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            f.extend_from_slice(&ip);
            f.extend_from_slice(&t);
            f
        }
    }

    /// A TCP segment seen on the client's veth.
    #[derive(Clone, Debug)]
    pub struct Seen {
        pub src: (Ipv4Addr, u16),
        pub dst: (Ipv4Addr, u16),
        pub seq: u32,
        pub ack: u32,
        pub flags: u8,
        pub payload_len: u32,
        /// (TSval, TSecr) when the segment carries timestamps.
        pub timestamp: Option<(u32, u32)>,
    }

    /// Parses an Ethernet frame holding IPv4 TCP.
    pub fn parse_seen(f: &[u8]) -> Option<Seen> {
        if f.len() < 14 + 20 + 20 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 6 {
            return None;
        }
        let ip = &f[14..];
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        let t = ip.get(ihl..total)?;
        let doff = usize::from(t.get(12)? >> 4) * 4;
        if doff < 20 || doff > t.len() {
            return None;
        }
        let mut timestamp = None;
        let opts = &t[20..doff];
        let mut i = 0;
        while i < opts.len() {
            match opts[i] {
                0 => break,
                1 => i += 1,
                kind => {
                    let len = usize::from(*opts.get(i + 1)?);
                    if len < 2 || i + len > opts.len() {
                        break;
                    }
                    if kind == 8 && len == 10 {
                        let v = &opts[i + 2..i + 10];
                        timestamp = Some((
                            u32::from_be_bytes(v[..4].try_into().unwrap()),
                            u32::from_be_bytes(v[4..].try_into().unwrap()),
                        ));
                    }
                    i += len;
                }
            }
        }
        let addr = |o: usize| Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]);
        Some(Seen {
            src: (addr(12), u16::from_be_bytes([t[0], t[1]])),
            dst: (addr(16), u16::from_be_bytes([t[2], t[3]])),
            seq: u32::from_be_bytes(t[4..8].try_into().unwrap()),
            ack: u32::from_be_bytes(t[8..12].try_into().unwrap()),
            flags: t[13],
            payload_len: (t.len() - doff) as u32,
            timestamp,
        })
    }

    /// An `AF_PACKET` socket on the client's veth that sees every frame both ways.
    pub struct Sniffer {
        fd: std::os::fd::OwnedFd,
    }

    impl Sniffer {
        #[track_caller]
        pub fn open(pair: &VethPair) -> Self {
            use std::os::fd::FromRawFd;
            let ifindex = pair.client.ifindex;
            VethPair::in_netns(&pair.client, || {
                let proto = (libc::ETH_P_ALL as u16).to_be();
                // Safety: a plain socket(2) call; the descriptor is owned below.
                let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
                assert!(
                    fd >= 0,
                    "packet socket: {}",
                    std::io::Error::last_os_error()
                );
                // Safety: fd was just opened and nothing else owns it.
                let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
                // Safety: sockaddr_ll is plain integers; zero is a valid start.
                let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
                addr.sll_family = libc::AF_PACKET as u16;
                addr.sll_protocol = proto;
                addr.sll_ifindex = ifindex as i32;
                // Safety: addr is valid for the size passed.
                let rc = unsafe {
                    libc::bind(
                        fd,
                        (&addr as *const libc::sockaddr_ll).cast(),
                        std::mem::size_of::<libc::sockaddr_ll>() as u32,
                    )
                };
                assert_eq!(
                    rc,
                    0,
                    "bind packet socket: {}",
                    std::io::Error::last_os_error()
                );
                Self { fd: owned }
            })
        }

        /// Every TCP segment queued so far (at most `max`), without waiting.
        pub fn drain(&self, max: usize) -> Vec<Seen> {
            use std::os::fd::AsRawFd;
            let mut out = Vec::new();
            let mut buf = vec![0u8; 65536 + 64];
            for _ in 0..max {
                // Safety: buf is valid for its length.
                let n = unsafe {
                    libc::recv(
                        self.fd.as_raw_fd(),
                        buf.as_mut_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT,
                    )
                };
                if n <= 0 {
                    break;
                }
                if let Some(s) = parse_seen(&buf[..n as usize]) {
                    out.push(s);
                }
            }
            out
        }
    }
}
