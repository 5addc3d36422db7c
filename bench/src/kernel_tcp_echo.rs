//! The kernel-stack TCP baseline: an echo server on ordinary sockets, one thread pinned to
//! the server core (as fastpath runs one worker on it), epoll over non-blocking sockets
//! with TCP_NODELAY, so the TCP scenarios compare fastpath with a lean kernel server.
//!
//! It does what `fastpath echo --tcp` does: every byte read is written back; while a
//! connection's reply cannot be written the server stops reading it (the window closes, the
//! peer waits), and once the peer has closed and all was echoed it closes too.

use std::{
    io,
    net::{Ipv4Addr, TcpListener},
    os::fd::{AsRawFd, RawFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

const EVENTS: usize = 256;
const BUF: usize = 256 * 1024;
/// The listener's epoll tag; connections are tagged with their fd (never this value).
const LISTENER: u64 = u64::MAX;

/// Bytes read but not yet written back, for one connection.
#[derive(Default)]
struct Pending {
    data: Vec<u8>,
    at: usize,
    /// Watched for EPOLLOUT (a reply is pending) rather than EPOLLIN.
    watching_out: bool,
}

struct Server {
    epoll: RawFd,
    /// Indexed by fd: `Some` while the connection is open.
    conns: Vec<Option<Pending>>,
    buf: Vec<u8>,
}

pub fn serve(addr: Ipv4Addr, port: u16, cpu: Option<usize>, limit: Duration) -> anyhow::Result<()> {
    if let Some(cpu) = cpu {
        crate::generator::pin_current_thread(cpu);
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    // std's listener has a backlog of 128; crr opens connections one after another, and the
    // 32-connection rr opens 32 at once, so that is enough.
    let listener = TcpListener::bind((addr, port))?;
    listener.set_nonblocking(true)?;
    // Safety: epoll_create1 has no preconditions.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epoll < 0 {
        return Err(io::Error::last_os_error().into());
    }
    let mut server = Server {
        epoll,
        conns: Vec::new(),
        buf: vec![0u8; BUF],
    };
    server.watch(listener.as_raw_fd(), libc::EPOLLIN as u32, LISTENER, false)?;
    eprintln!("kernel-tcp-echo: serving tcp {addr}:{port}");
    let deadline = Instant::now() + limit;
    // Safety: a zeroed epoll_event is a valid value; epoll_wait fills them.
    let mut events: Vec<libc::epoll_event> = vec![unsafe { std::mem::zeroed() }; EVENTS];
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        // Safety: events has EVENTS slots; the kernel writes at most that many.
        let n = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), EVENTS as i32, 100) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        for event in &events[..n as usize] {
            let (tag, flags) = (event.u64, event.events);
            if tag == LISTENER {
                server.accept_all(listener.as_raw_fd());
            } else {
                server.serve(tag as RawFd, flags);
            }
        }
    }
    for fd in 0..server.conns.len() {
        if server.conns[fd].is_some() {
            server.close(fd as RawFd);
        }
    }
    // Safety: closing the epoll fd we created.
    unsafe { libc::close(epoll) };
    Ok(())
}

impl Server {
    fn watch(&self, fd: RawFd, events: u32, tag: u64, modify: bool) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: tag };
        let op = if modify {
            libc::EPOLL_CTL_MOD
        } else {
            libc::EPOLL_CTL_ADD
        };
        // Safety: a valid epoll fd, an fd we own, and an initialised event.
        if unsafe { libc::epoll_ctl(self.epoll, op, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn accept_all(&mut self, listener: RawFd) {
        loop {
            // Safety: accept4 on our listening socket; the peer address is not wanted.
            let fd = unsafe {
                libc::accept4(
                    listener,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                return; // EAGAIN: all taken (or a transient error: the next event retries).
            }
            set_nodelay(fd);
            if self
                .watch(fd, libc::EPOLLIN as u32, fd as u64, false)
                .is_err()
            {
                // Safety: closing the fd accept4 just gave us.
                unsafe { libc::close(fd) };
                continue;
            }
            let i = fd as usize;
            if self.conns.len() <= i {
                self.conns.resize_with(i + 1, || None);
            }
            self.conns[i] = Some(Pending::default());
        }
    }

    /// Drains what is pending, then echoes what is readable until the socket is empty or
    /// a reply cannot be written in full (then waits for EPOLLOUT, not reading meanwhile).
    fn serve(&mut self, fd: RawFd, flags: u32) {
        let Some(Some(pending)) = self.conns.get_mut(fd as usize) else {
            return;
        };
        if flags & (libc::EPOLLERR as u32) != 0 {
            self.close(fd);
            return;
        }
        let mut pending = std::mem::take(pending);
        match self.echo(fd, &mut pending) {
            Ok(true) => {
                let blocked = pending.at < pending.data.len();
                if blocked != pending.watching_out {
                    let events = if blocked {
                        libc::EPOLLOUT as u32
                    } else {
                        libc::EPOLLIN as u32
                    };
                    if self.watch(fd, events, fd as u64, true).is_err() {
                        self.close(fd);
                        return;
                    }
                    pending.watching_out = blocked;
                }
                self.conns[fd as usize] = Some(pending);
            }
            // The peer closed (everything was echoed) or the connection failed.
            Ok(false) | Err(_) => self.close(fd),
        }
    }

    /// Ok(true) while the connection stays open.
    fn echo(&mut self, fd: RawFd, pending: &mut Pending) -> io::Result<bool> {
        if !write_out(fd, pending)? {
            return Ok(true);
        }
        loop {
            // Safety: buf is BUF bytes we own.
            let n = unsafe { libc::read(fd, self.buf.as_mut_ptr().cast(), BUF) };
            if n == 0 {
                return Ok(false);
            }
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock => Ok(true),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            let n = n as usize;
            let mut written = 0;
            while written < n {
                // Safety: the first n bytes of buf were just read.
                let m =
                    unsafe { libc::write(fd, self.buf[written..n].as_ptr().cast(), n - written) };
                if m < 0 {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::Interrupted => continue,
                        io::ErrorKind::WouldBlock => break,
                        _ => return Err(e),
                    }
                }
                written += m as usize;
            }
            if written < n {
                pending.data.clear();
                pending.data.extend_from_slice(&self.buf[written..n]);
                pending.at = 0;
                return Ok(true);
            }
            if n < BUF {
                return Ok(true); // The socket is most likely empty: back to epoll.
            }
        }
    }

    fn close(&mut self, fd: RawFd) {
        if let Some(slot) = self.conns.get_mut(fd as usize) {
            *slot = None;
        }
        // Safety: fd is a connection we accepted and still own; closing removes it from epoll.
        unsafe { libc::close(fd) };
    }
}

/// Writes what is pending. Ok(true) when nothing is left.
fn write_out(fd: RawFd, pending: &mut Pending) -> io::Result<bool> {
    while pending.at < pending.data.len() {
        let rest = &pending.data[pending.at..];
        // Safety: rest is initialised bytes we own.
        let m = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
        if m < 0 {
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(false),
                _ => return Err(e),
            }
        }
        pending.at += m as usize;
    }
    pending.data.clear();
    pending.at = 0;
    Ok(true)
}

pub(crate) fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // Safety: setsockopt with a pointer to a c_int and its size, on a socket we own.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
}
