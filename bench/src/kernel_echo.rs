//! The kernel-stack baseline: a UDP echo server on ordinary sockets, batched with
//! recvmmsg/sendmmsg (up to 64 datagrams a syscall), so fastpath is compared with a
//! strong kernel server, not a naive one. Runs in the server namespace as its own process.
//! Its receive buffer holds about as many small datagrams as fastpath's RX ring (2 MiB:
//! ~2000 at the ~1 KiB an skb of a 64-byte datagram takes), so an open-loop load that
//! outlasts a scheduling hiccup meets the same depth of queue in both.

use std::{
    net::{Ipv4Addr, UdpSocket},
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

const BATCH: usize = 64;
/// SO_RCVBUF, forced past `net.core.rmem_max` (we are root).
const RECEIVE_BUFFER: libc::c_int = 2 << 20;

pub fn serve(addr: Ipv4Addr, port: u16, cpu: Option<usize>, limit: Duration) -> anyhow::Result<()> {
    if let Some(cpu) = cpu {
        crate::generator::pin_current_thread(cpu);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let socket = UdpSocket::bind((addr, port))?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let fd = socket.as_raw_fd();
    // Safety: setsockopt on our socket with a c_int option value of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&RECEIVE_BUFFER as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        eprintln!(
            "kernel-echo: SO_RCVBUFFORCE: {}; keeping the default receive buffer",
            std::io::Error::last_os_error()
        );
    }
    let mut bufs = vec![[0u8; 2048]; BATCH];
    // Safety: zeroed sockaddr_in / iovec / mmsghdr are valid "empty" values, filled below.
    let mut addrs: Vec<libc::sockaddr_in> = vec![unsafe { std::mem::zeroed() }; BATCH];
    // Safety: as above.
    let mut iovs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; BATCH];
    // Safety: as above.
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let deadline = Instant::now() + limit;
    eprintln!("kernel-echo: serving udp {addr}:{port}");
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        for i in 0..BATCH {
            iovs[i] = libc::iovec {
                iov_base: bufs[i].as_mut_ptr().cast(),
                iov_len: bufs[i].len(),
            };
            msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_in).cast();
            msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_len = 0;
        }
        // Safety: msgs points at BATCH initialised headers whose buffers outlive the call.
        // MSG_WAITFORONE: block for the first datagram, then take what is already queued.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n <= 0 {
            continue;
        }
        let n = n as usize;
        for i in 0..n {
            iovs[i].iov_len = msgs[i].msg_len as usize;
        }
        let mut sent = 0;
        while sent < n {
            // Safety: the first n headers now describe the received datagrams and their senders.
            let m = unsafe { libc::sendmmsg(fd, msgs[sent..].as_mut_ptr(), (n - sent) as u32, 0) };
            if m <= 0 {
                break;
            }
            sent += m as usize;
        }
    }
    Ok(())
}
