//! One AF_XDP socket bound to one RX queue, with its own UMEM and four rings.
//!
//! Setup follows the kernel's order (af_xdp.rst): register the UMEM, size the fill,
//! completion, RX and TX rings, read their mmap offsets, map them, bind. The data
//! path is batched: one RX batch, one TX submit and at most one kick per loop.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::Arc,
};

use super::{
    ring::{CompletionRing, FillRing, RxRing, TxRing, map_ring},
    umem::{FrameCounts, FrameLedger, FrameState, Umem},
};

/// How the socket is bound to the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BindMode {
    /// Zero-copy if the driver supports it, else copy.
    Auto,
    /// The kernel copies frames between its buffers and the UMEM (works on every driver).
    Copy,
    /// The driver DMAs into the UMEM directly (fails where unsupported, e.g. veth).
    ZeroCopy,
}

#[derive(Clone, Debug)]
pub struct XskConfig {
    pub frame_size: u32,
    pub frame_count: u32,
    pub ring_size: u32,
    pub bind_mode: BindMode,
}

impl Default for XskConfig {
    fn default() -> Self {
        Self {
            // Measured on veth: 2048 and 4096 both work; 4096 leaves room for any 1500-MTU frame
            // after the 256 bytes of XDP headroom.
            frame_size: 4096,
            frame_count: 4096,
            ring_size: 2048,
            bind_mode: BindMode::Auto,
        }
    }
}

/// The kernel's per-socket statistics (XDP_STATISTICS).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct KernelXskStats {
    /// Frames dropped for lack of room: no fill-ring frame, or bigger than a frame.
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// Fills a frame buffer from its start and returns the frame's length (None: it cannot).
pub type FrameWriter<'a> = dyn FnMut(&mut [u8]) -> Option<usize> + 'a;

/// What became of a frame an application wanted to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxResult {
    Sent,
    /// No free frame or TX slot now; try again later.
    Full,
    /// The writer could not fit it into a frame; trying again will not help.
    Declined,
}

/// What one `receive` call did.
#[derive(Clone, Copy, Debug, Default)]
pub struct RxBatch {
    pub received: u32,
    pub transmitted: u32,
    /// Replies dropped because the TX ring was full.
    pub tx_full: u32,
    /// Descriptors naming memory outside the UMEM or a frame the kernel did not own.
    pub invalid: u32,
}

pub struct XskSocket {
    fill: FillRing,
    completion: CompletionRing,
    rx: RxRing,
    tx: TxRing,
    fd: Arc<OwnedFd>,
    ledger: FrameLedger,
    umem: Umem,
    queue: u32,
    zero_copy: bool,
}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // Safety: `value` points at a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// # Safety
/// `T` must be a plain-integer C struct (all-zero bytes valid) that the kernel fills for `name`.
unsafe fn getsockopt<T>(fd: RawFd, name: libc::c_int) -> io::Result<T> {
    // Safety: the caller guarantees all-zero is a valid T.
    let mut value: T = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // Safety: `value` is a writable T and `len` its size.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads the kernel's statistics of an AF_XDP socket.
pub fn kernel_stats(fd: RawFd) -> io::Result<KernelXskStats> {
    // Safety: xdp_statistics is plain u64s.
    let s: libc::xdp_statistics = unsafe { getsockopt(fd, libc::XDP_STATISTICS)? };
    Ok(KernelXskStats {
        rx_dropped: s.rx_dropped,
        rx_invalid_descs: s.rx_invalid_descs,
        tx_invalid_descs: s.tx_invalid_descs,
        rx_ring_full: s.rx_ring_full,
        rx_fill_ring_empty_descs: s.rx_fill_ring_empty_descs,
        tx_ring_empty_descs: s.tx_ring_empty_descs,
    })
}

/// Why a socket could not be opened, with the step that failed.
#[derive(Debug, thiserror::Error)]
#[error("AF_XDP socket for queue {queue}: {step}: {source}")]
pub struct XskError {
    pub queue: u32,
    pub step: &'static str,
    #[source]
    pub source: io::Error,
}

impl XskSocket {
    /// Opens a socket on `ifindex` / `queue` and binds it. The XDP program must already
    /// be attached for frames to arrive; registering the fd in the XSKMAP is the caller's.
    pub fn open(ifindex: u32, queue: u32, config: &XskConfig) -> Result<Self, XskError> {
        let err = |step: &'static str| {
            move |source: io::Error| XskError {
                queue,
                step,
                source,
            }
        };
        let umem = Umem::new(config.frame_size, config.frame_count).map_err(err("umem"))?;
        // Safety: plain socket(2) call; the result is checked.
        let raw = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(err("socket(AF_XDP)")(io::Error::last_os_error()));
        }
        // Safety: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let raw = fd.as_raw_fd();
        setsockopt(raw, libc::XDP_UMEM_REG, &umem.registration()).map_err(err("XDP_UMEM_REG"))?;
        let size = config.ring_size as libc::c_int;
        for (name, step) in [
            (libc::XDP_UMEM_FILL_RING, "XDP_UMEM_FILL_RING"),
            (libc::XDP_UMEM_COMPLETION_RING, "XDP_UMEM_COMPLETION_RING"),
            (libc::XDP_RX_RING, "XDP_RX_RING"),
            (libc::XDP_TX_RING, "XDP_TX_RING"),
        ] {
            setsockopt(raw, name, &size).map_err(err(step))?;
        }
        // Safety: xdp_mmap_offsets is plain u64s.
        let offsets: libc::xdp_mmap_offsets =
            unsafe { getsockopt(raw, libc::XDP_MMAP_OFFSETS) }.map_err(err("XDP_MMAP_OFFSETS"))?;
        let ring_size = config.ring_size;
        // Safety: each ring was sized above and the offsets are the kernel's for it.
        let (fill, completion, rx, tx) = unsafe {
            (
                map_ring::<u64>(
                    raw,
                    libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t,
                    &offsets.fr,
                    ring_size,
                )
                .map_err(err("mmap fill ring"))?
                .producer(),
                map_ring::<u64>(
                    raw,
                    libc::XDP_UMEM_PGOFF_COMPLETION_RING as libc::off_t,
                    &offsets.cr,
                    ring_size,
                )
                .map_err(err("mmap completion ring"))?
                .consumer(),
                map_ring::<libc::xdp_desc>(raw, libc::XDP_PGOFF_RX_RING, &offsets.rx, ring_size)
                    .map_err(err("mmap rx ring"))?
                    .consumer(),
                map_ring::<libc::xdp_desc>(raw, libc::XDP_PGOFF_TX_RING, &offsets.tx, ring_size)
                    .map_err(err("mmap tx ring"))?
                    .producer(),
            )
        };

        let bind = |flags: u16| -> io::Result<()> {
            let addr = libc::sockaddr_xdp {
                sxdp_family: libc::AF_XDP as u16,
                sxdp_flags: flags | libc::XDP_USE_NEED_WAKEUP,
                sxdp_ifindex: ifindex,
                sxdp_queue_id: queue,
                sxdp_shared_umem_fd: 0,
            };
            // Safety: `addr` is a valid sockaddr_xdp of the size passed.
            let rc = unsafe {
                libc::bind(
                    raw,
                    (&addr as *const libc::sockaddr_xdp).cast(),
                    std::mem::size_of::<libc::sockaddr_xdp>() as libc::socklen_t,
                )
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        };
        let zero_copy = match config.bind_mode {
            BindMode::ZeroCopy => {
                bind(libc::XDP_ZEROCOPY).map_err(err("bind (zero-copy)"))?;
                true
            }
            BindMode::Copy => {
                bind(libc::XDP_COPY).map_err(err("bind (copy)"))?;
                false
            }
            BindMode::Auto => match bind(libc::XDP_ZEROCOPY) {
                Ok(()) => true,
                Err(_) => {
                    bind(libc::XDP_COPY).map_err(err("bind (copy)"))?;
                    false
                }
            },
        };

        let mut socket = Self {
            fill,
            completion,
            rx,
            tx,
            fd: Arc::new(fd),
            ledger: FrameLedger::new(config.frame_count),
            umem,
            queue,
            zero_copy,
        };
        socket.refill();
        Ok(socket)
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The descriptor, shared with the control plane (statistics) and the XSKMAP.
    pub fn fd(&self) -> Arc<OwnedFd> {
        self.fd.clone()
    }

    /// Gives free frames to the kernel to receive into. Returns how many.
    pub fn refill(&mut self) -> u32 {
        let free = self.ledger.free_count();
        if free == 0 {
            return 0;
        }
        let n = self.fill.reserve(free);
        let frame_size = u64::from(self.umem.frame_size());
        let mut given = 0;
        while given < n {
            let Some(frame) = self.ledger.take_free(FrameState::Fill) else {
                break;
            };
            self.fill.write(given, u64::from(frame) * frame_size);
            given += 1;
        }
        self.fill.submit(given);
        given
    }

    /// Takes back the frames the kernel has finished sending. Returns how many.
    pub fn complete(&mut self, max: u32) -> u32 {
        let n = self.completion.peek(max);
        for i in 0..n {
            let addr = self.completion.read(i);
            match self.umem.frame_of(addr) {
                Some(frame) => self.ledger.release(frame, FrameState::Tx),
                None => self.ledger.note_invalid(),
            }
        }
        self.completion.release(n);
        n
    }

    /// Receives up to `max` frames and hands each to `handle(buffer, len)`, where `buffer`
    /// runs from the frame's first byte to the end of its UMEM chunk. `handle` returns the
    /// length of a reply written in place, to transmit, or None to drop the frame.
    pub fn receive<F>(&mut self, max: u32, mut handle: F) -> RxBatch
    where
        F: FnMut(&mut [u8], usize) -> Option<usize>,
    {
        let mut batch = RxBatch::default();
        let n = self.rx.peek(max);
        if n == 0 {
            return batch;
        }
        let tx_room = self.tx.reserve(n);
        for i in 0..n {
            let desc = self.rx.read(i);
            let Some(frame) = self.umem.frame_of(desc.addr) else {
                batch.invalid += 1;
                continue;
            };
            if !self
                .ledger
                .transition(frame, FrameState::Fill, FrameState::InUse)
            {
                batch.invalid += 1;
                continue;
            }
            batch.received += 1;
            let reply = match self.umem.frame_mut(desc.addr) {
                Some(buffer) if (desc.len as usize) <= buffer.len() => {
                    handle(buffer, desc.len as usize).filter(|&len| len <= buffer.len())
                }
                _ => {
                    batch.invalid += 1;
                    None
                }
            };
            match reply {
                Some(len) if batch.transmitted < tx_room => {
                    self.tx.write(
                        batch.transmitted,
                        libc::xdp_desc {
                            addr: desc.addr,
                            len: len as u32,
                            options: 0,
                        },
                    );
                    self.ledger
                        .transition(frame, FrameState::InUse, FrameState::Tx);
                    batch.transmitted += 1;
                }
                Some(_) => {
                    batch.tx_full += 1;
                    self.ledger.release(frame, FrameState::InUse);
                }
                None => self.ledger.release(frame, FrameState::InUse),
            }
        }
        self.rx.release(n);
        self.tx.submit(batch.transmitted);
        batch
    }

    /// Frames submitted to TX whose completion has not been reaped.
    pub fn has_pending_tx(&self) -> bool {
        self.ledger.count(FrameState::Tx) > 0
    }

    /// Asks the kernel to send what is in the TX ring, if it wants to be asked (on veth
    /// copy mode it always does: without the kick nothing is sent). One syscall per batch.
    pub fn kick_tx(&mut self) -> bool {
        if self.tx.pending() == 0 || !self.tx.needs_wakeup() {
            return false;
        }
        // Safety: sendto with no buffer on our own socket; errors are transient (EAGAIN,
        // EBUSY, ENOBUFS) and retried on the next batch.
        unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        true
    }

    /// Wakes the kernel's RX path if it asked (fill ring NEED_WAKEUP), without blocking.
    pub fn kick_rx(&mut self) {
        if self.fill.needs_wakeup() {
            // Safety: a zero-length non-blocking recvfrom on our own socket.
            unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
        }
    }

    /// Blocks until a frame may be ready, `extra` (an eventfd) is signalled, or
    /// `timeout_ms` passes.
    pub fn wait_readable(&self, timeout_ms: i32, extra: Option<RawFd>) {
        let mut pfds = [
            libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: extra.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let n = if extra.is_some() { 2 } else { 1 };
        // Safety: `n` valid pollfds.
        unsafe { libc::poll(pfds.as_mut_ptr(), n, timeout_ms) };
    }

    /// Sends a new frame: takes a free frame, lets `write` fill it from the start and return
    /// its length, and queues it for TX. `Full` when no frame or TX slot is free, `Declined`
    /// when `write` could not fill one; either way everything is left as it was.
    pub fn transmit_new(&mut self, write: &mut FrameWriter<'_>) -> TxResult {
        if self.tx.reserve(1) == 0 {
            return TxResult::Full;
        }
        let Some(frame) = self.ledger.take_free(FrameState::InUse) else {
            return TxResult::Full;
        };
        let addr = u64::from(frame) * u64::from(self.umem.frame_size());
        let len = self
            .umem
            .frame_mut(addr)
            .and_then(|buf| write(buf).filter(|&n| n <= buf.len()));
        let Some(len) = len else {
            self.ledger.release(frame, FrameState::InUse);
            return TxResult::Declined;
        };
        self.tx.write(
            0,
            libc::xdp_desc {
                addr,
                len: len as u32,
                options: 0,
            },
        );
        self.ledger
            .transition(frame, FrameState::InUse, FrameState::Tx);
        self.tx.submit(1);
        TxResult::Sent
    }

    /// Where every frame is right now.
    pub fn frame_counts(&self) -> FrameCounts {
        let rx = self.rx.pending();
        let completion = self.completion.pending();
        FrameCounts {
            free: self.ledger.count(FrameState::Free),
            fill: self.ledger.count(FrameState::Fill).saturating_sub(rx),
            rx,
            in_use: self.ledger.count(FrameState::InUse),
            tx: self.ledger.count(FrameState::Tx).saturating_sub(completion),
            completion,
        }
    }

    pub fn ledger_errors(&self) -> u64 {
        self.ledger.errors()
    }

    pub fn frame_count(&self) -> u32 {
        self.ledger.frame_count()
    }
}
