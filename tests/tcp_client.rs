//! fastpath as a TCP client, through the any-thread API (`Stack::tcp_connect`,
//! `tcp_read`, `tcp_write`): a kernel echo server listens in the peer namespace, the
//! runtime runs in-process in the server namespace. A reader thread takes the echo while
//! the test writes, and every byte is checked at its position. Every wait is bounded.
//!
//! Also: the thread-API echo server (`fastpath echo --tcp-thread`) against kernel clients.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    thread,
    time::Duration,
};

use fastpath::{
    api::{SocketNumber, Stack},
    runtime::{Runtime, StackConfig},
};
use fastpath_e2e::*;

const PORT: u16 = 7200;
const WAIT: Duration = Duration::from_secs(30);
const RESERVED: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";

fn byte_at(seed: u64, i: u64) -> u8 {
    let mut z = (i / 8) ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z.to_le_bytes()[(i % 8) as usize]
}

fn fill(seed: u64, from: u64, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = byte_at(seed, from + k as u64);
    }
}

/// A kernel echo server in the client namespace: each connection echoes until EOF, then
/// half-closes. Serves `connections` connections, then ends.
fn kernel_echo(pair: &VethPair, connections: usize) -> thread::JoinHandle<()> {
    let listener = VethPair::in_netns(&pair.client, || TcpListener::bind((CLIENT_ADDR, PORT)))
        .unwrap_or_else(|e| panic!("kernel listener: {e}"));
    thread::spawn(move || {
        for _ in 0..connections {
            let (mut s, _) = listener.accept().expect("accept");
            s.set_read_timeout(Some(WAIT)).unwrap();
            s.set_write_timeout(Some(WAIT)).unwrap();
            thread::spawn(move || {
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    })
}

/// Sends `len` bytes over `n` while a reader thread checks the echo; then half-closes and
/// expects the end of the stream once everything came back.
fn transfer(stack: &Stack, n: SocketNumber, len: u64, seed: u64) {
    let reader_stack = stack.clone();
    let reader = thread::spawn(move || -> Result<u64, String> {
        let mut buf = vec![0u8; 256 * 1024];
        let mut want = vec![0u8; buf.len()];
        let mut at = 0u64;
        loop {
            let got = reader_stack
                .tcp_read(n, &mut buf, WAIT)
                .map_err(|e| format!("read at byte {at}: {e}"))?;
            if got == 0 {
                return Ok(at);
            }
            fill(seed, at, &mut want[..got]);
            if let Some(k) = (0..got).find(|&k| buf[k] != want[k]) {
                return Err(format!("byte {} differs", at + k as u64));
            }
            at += got as u64;
            if at > len {
                return Err(format!("more bytes came back than were sent: {at}"));
            }
        }
    });
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < len {
        let take = (len - sent).min(chunk.len() as u64) as usize;
        fill(seed, sent, &mut chunk[..take]);
        let mut off = 0;
        while off < take {
            off += stack
                .tcp_write(n, &chunk[off..take], WAIT)
                .unwrap_or_else(|e| panic!("write at byte {}: {e}", sent + off as u64));
        }
        sent += take as u64;
    }
    stack.tcp_shutdown(n).expect("shutdown");
    let got = reader
        .join()
        .expect("reader")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got, len, "{len} bytes sent, {got} came back");
    let _ = stack.tcp_close(n);
}

/// In-process, the runtime reads this namespace's interfaces under /sys: give this thread
/// (and the threads it starts) a mount namespace with a sysfs of its network namespace, as
/// `ip netns exec` does for a process.
fn own_sysfs() {
    // Safety: plain syscalls on constant C strings; they affect only this thread's mounts.
    unsafe {
        assert_eq!(libc::unshare(libc::CLONE_NEWNS), 0, "unshare(CLONE_NEWNS)");
        let none = c"none".as_ptr();
        libc::mount(
            none,
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        );
        libc::umount2(c"/sys".as_ptr(), libc::MNT_DETACH);
        let rc = libc::mount(
            c"sysfs".as_ptr(),
            c"/sys".as_ptr(),
            c"sysfs".as_ptr(),
            0,
            std::ptr::null(),
        );
        assert_eq!(rc, 0, "mount sysfs: {}", std::io::Error::last_os_error());
    }
}

#[test]
fn fastpath_connects_to_a_kernel_echo_and_gets_every_byte_back() {
    client_transfers(&[1, 1024, 1 << 20]);
}

/// Regression: the echo's last ~0.6 MiB was still in the receive buffer when the kernel
/// closed, and a window update sent from TIME-WAIT drew its RST, which freed the connection
/// with the data unread.
#[test]
fn fastpath_as_the_client_moves_64_mib() {
    client_transfers(&[64 << 20]);
}

#[test]
fn fastpath_as_the_client_moves_256_mib() {
    client_transfers(&[256 << 20]);
}

/// fastpath as the client, in-process, against a kernel echo: one connection per size.
fn client_transfers(sizes: &[u64]) {
    let pair = veth_pair(VethConfig::default());
    let server = kernel_echo(&pair, sizes.len());
    let (before, after) = VethPair::in_netns(&pair.server, || {
        own_sysfs();
        let before = std::fs::read_to_string(RESERVED).unwrap();
        let runtime = Runtime::start(StackConfig::new(&pair.server.iface))
            .unwrap_or_else(|e| panic!("runtime: {e:#}"));
        let during = std::fs::read_to_string(RESERVED).unwrap();
        assert!(during.contains("61000-61999"), "reserved: {during}");
        let stack = runtime.stack().clone();
        let remote = SocketAddrV4::new(CLIENT_ADDR, PORT);
        for (i, &len) in sizes.iter().enumerate() {
            let n = stack
                .tcp_connect(remote, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connection {i}: connect to {remote}: {e}"));
            transfer(&stack, n, len, i as u64 + 1);
        }
        runtime
            .stop_flag()
            .store(true, std::sync::atomic::Ordering::Relaxed);
        runtime.run(None).expect("run");
        (before, std::fs::read_to_string(RESERVED).unwrap())
    });
    assert_eq!(before, after, "the reserved port range is restored");
    server.join().expect("kernel echo");
}

#[test]
fn a_zero_timeout_would_block_and_a_stopped_runtime_answers() {
    let pair = veth_pair(VethConfig::default());
    let server = kernel_echo(&pair, 1);
    VethPair::in_netns(&pair.server, || {
        own_sysfs();
        let runtime = Runtime::start(StackConfig::new(&pair.server.iface))
            .unwrap_or_else(|e| panic!("runtime: {e:#}"));
        let stack = runtime.stack().clone();
        let n = stack
            .tcp_connect(SocketAddrV4::new(CLIENT_ADDR, PORT), Duration::from_secs(5))
            .expect("connect");
        let mut buf = [0u8; 16];
        assert!(matches!(
            stack.tcp_read(n, &mut buf, Duration::ZERO),
            Err(fastpath::api::ApiError::WouldBlock)
        ));
        runtime
            .stop_flag()
            .store(true, std::sync::atomic::Ordering::Relaxed);
        runtime.run(None).expect("run");
        assert!(stack.tcp_read(n, &mut buf, Duration::from_secs(1)).is_err());
    });
    drop(server);
}

#[test]
fn the_thread_api_echo_server_serves_kernel_clients() {
    let pair = veth_pair(VethConfig::default());
    let _fastpath = start_echo(&pair, &["--tcp-thread", "7300"]);
    let to = SocketAddr::from((SERVER_ADDR, 7300));
    for (seed, len) in [(1u64, 1u64), (2, 1024), (3, 1 << 20), (4, 16 << 20)] {
        let mut stream = VethPair::in_netns(&pair.client, || {
            TcpStream::connect_timeout(&to, Duration::from_secs(5))
        })
        .unwrap_or_else(|e| panic!("connect to {to}: {e}"));
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        let mut reader = stream.try_clone().unwrap();
        let check = thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            let mut want = vec![0u8; buf.len()];
            let mut at = 0u64;
            loop {
                let n = reader.read(&mut buf).expect("read");
                if n == 0 {
                    return at;
                }
                fill(seed, at, &mut want[..n]);
                assert_eq!(&buf[..n], &want[..n], "at byte {at}");
                at += n as u64;
            }
        });
        let mut chunk = vec![0u8; 64 * 1024];
        let mut sent = 0;
        while sent < len {
            let take = (len - sent).min(chunk.len() as u64) as usize;
            fill(seed, sent, &mut chunk[..take]);
            stream.write_all(&chunk[..take]).expect("write");
            sent += take as u64;
        }
        stream.shutdown(Shutdown::Write).unwrap();
        assert_eq!(check.join().expect("reader"), len);
    }
}
