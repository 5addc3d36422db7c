//! The harness's own UDP load generator.
//!
//! It speaks sockperf's message header (sequence u64, flags u16, length u32, big-endian;
//! a ping carries flags 0x0003 and `sockperf server` answers 0x0002), so the same client
//! drives fastpath, a plain kernel echo and `sockperf server` alike.
//!
//! Closed loop keeps N requests outstanding; open loop sends at a fixed rate and measures
//! each reply from the time its request was *meant* to leave (the coordinated-omission
//! correction of wrk2), so a stalled server shows up as latency, not as a lower rate.
//! Throughput modes batch 64 datagrams per sendmmsg/recvmmsg so the client is not the
//! limit; ping-pong sends one and blocks for the reply, as sockperf does.
//! Every run is bounded by time and by count, and stops when `stop` is set.

use std::{
    io::ErrorKind,
    net::UdpSocket,
    os::fd::AsRawFd,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::bail;
use hdrhistogram::Histogram;

pub const HEADER_LEN: usize = 14;
const FLAGS_PING: u16 = 0x0003;
/// Slots for in-flight send times; a reply whose slot was reused is ignored.
const SLOTS: usize = 1 << 16;
/// No reply for this long: the outstanding requests are counted lost and the window refilled.
const LOSS_TIMEOUT: Duration = Duration::from_millis(20);
/// Datagrams per sendmmsg/recvmmsg call.
const BATCH: usize = 64;
const RX_BUF: usize = 2048;

#[derive(Clone, Copy, Debug, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Pattern {
    /// `outstanding` requests in flight at all times.
    Closed { outstanding: u32 },
    /// A request every 1/rate seconds, whatever the replies do.
    Open { rate: u64 },
    /// Send only, as fast as possible: how fast the client can generate.
    SendOnly,
}

#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub pattern: Pattern,
    pub duration: Duration,
    pub warmup: Duration,
    pub max_packets: u64,
    pub payload: usize,
    /// Core to pin the generator thread to.
    pub cpu: Option<usize>,
}

pub struct LoadResult {
    /// Round-trip times in nanoseconds (open loop: from the intended send time).
    pub histogram: Histogram<u64>,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub elapsed: Duration,
    /// CPU time the generator thread used.
    pub cpu_time: Duration,
}

impl LoadResult {
    pub fn send_rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

pub fn new_histogram() -> Histogram<u64> {
    // 1 ns to 10 s at 3 significant digits.
    Histogram::new_with_bounds(1, 10_000_000_000, 3).expect("valid histogram bounds")
}

pub fn pin_current_thread(cpu: usize) {
    // Safety: a zeroed cpu_set_t is empty; CPU_SET stays in bounds for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % 1024, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

pub fn thread_cpu_time() -> Duration {
    // Safety: clock_gettime writes the timespec we pass.
    let mut ts = unsafe { std::mem::zeroed::<libc::timespec>() };
    // Safety: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock
            | ErrorKind::TimedOut
            | ErrorKind::Interrupted
            | ErrorKind::ConnectionRefused
    ) || e.raw_os_error() == Some(libc::ENOBUFS)
}

/// Runs the load on `socket` (connected to the server; created in the client namespace).
pub fn run(socket: &UdpSocket, spec: &LoadSpec, stop: &AtomicBool) -> anyhow::Result<LoadResult> {
    if spec.payload < HEADER_LEN {
        bail!(
            "payload of {} bytes is below sockperf's 14-byte header",
            spec.payload
        );
    }
    if let Some(cpu) = spec.cpu {
        pin_current_thread(cpu);
    }
    let ping_pong = matches!(spec.pattern, Pattern::Closed { outstanding: 1 });
    // Ping-pong blocks in recv (with a timeout) like sockperf; the rest polls.
    socket.set_nonblocking(!ping_pong)?;
    socket.set_read_timeout(ping_pong.then_some(LOSS_TIMEOUT))?;
    let mut load = Generator::new(socket, spec.payload);
    if !spec.warmup.is_zero() {
        load.drive(spec, spec.warmup, u64::MAX, stop, false)?;
        load.reset();
    }
    let cpu_before = thread_cpu_time();
    let start = Instant::now();
    load.drive(spec, spec.duration, spec.max_packets, stop, true)?;
    let elapsed = start.elapsed();
    // Replies still in flight at the end are not losses: take them for a moment.
    socket.set_nonblocking(true)?;
    let drain_until = Instant::now() + Duration::from_millis(50);
    while Instant::now() < drain_until
        && load.received < load.sent
        && !matches!(spec.pattern, Pattern::SendOnly)
    {
        if load.receive_batch(true)? == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let cpu_time = thread_cpu_time().saturating_sub(cpu_before);
    let lost = match spec.pattern {
        Pattern::SendOnly => 0,
        _ => load.sent.saturating_sub(load.received),
    };
    Ok(LoadResult {
        histogram: load.histogram,
        sent: load.sent,
        received: load.received,
        lost,
        elapsed,
        cpu_time,
    })
}

struct Generator<'a> {
    socket: &'a UdpSocket,
    payload: usize,
    /// BATCH requests back to back, for sendmmsg.
    out_bufs: Vec<u8>,
    /// BATCH receive buffers, for recvmmsg.
    in_bufs: Vec<u8>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    slot_seq: Vec<u64>,
    slot_time: Vec<u64>,
    histogram: Histogram<u64>,
    epoch: Instant,
    seq: u64,
    sent: u64,
    received: u64,
}

impl<'a> Generator<'a> {
    fn new(socket: &'a UdpSocket, payload: usize) -> Self {
        let mut message = vec![0u8; payload];
        message[8..10].copy_from_slice(&FLAGS_PING.to_be_bytes());
        message[10..14].copy_from_slice(&(payload as u32).to_be_bytes());
        Self {
            socket,
            payload,
            out_bufs: message.repeat(BATCH),
            in_bufs: vec![0u8; BATCH * RX_BUF],
            // Safety: zeroed iovec/mmsghdr are valid empty values; `prepare` fills them.
            iovs: vec![unsafe { std::mem::zeroed() }; BATCH],
            // Safety: as above.
            hdrs: vec![unsafe { std::mem::zeroed() }; BATCH],
            slot_seq: vec![u64::MAX; SLOTS],
            slot_time: vec![0; SLOTS],
            histogram: new_histogram(),
            epoch: Instant::now(),
            seq: 0,
            sent: 0,
            received: 0,
        }
    }

    fn reset(&mut self) {
        self.histogram.reset();
        self.slot_seq.fill(u64::MAX);
        self.sent = 0;
        self.received = 0;
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Points the first `n` headers at the outgoing or incoming buffers.
    fn prepare(&mut self, outgoing: bool, n: usize) {
        let (base, stride) = if outgoing {
            (self.out_bufs.as_mut_ptr(), self.payload)
        } else {
            (self.in_bufs.as_mut_ptr(), RX_BUF)
        };
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                // Safety: i < BATCH, so the offset stays inside the buffer.
                iov_base: unsafe { base.add(i * stride) }.cast(),
                iov_len: stride,
            };
            // Safety: an all-zero msghdr is valid; the name stays null (connected socket).
            self.hdrs[i].msg_hdr = unsafe { std::mem::zeroed() };
            self.hdrs[i].msg_hdr.msg_iov = &mut self.iovs[i];
            self.hdrs[i].msg_hdr.msg_iovlen = 1;
            self.hdrs[i].msg_len = 0;
        }
    }

    /// Sends up to `n` requests in one sendmmsg; request k of the batch is stamped
    /// `stamp(k)` (None: the time of sending). Returns how many left.
    fn send_batch(&mut self, n: usize, stamp: Option<(u64, u64)>) -> anyhow::Result<usize> {
        let n = n.min(BATCH);
        if n == 0 {
            return Ok(0);
        }
        for i in 0..n {
            let at = i * self.payload;
            self.out_bufs[at..at + 8].copy_from_slice(&(self.seq + i as u64).to_be_bytes());
        }
        self.prepare(true, n);
        let now = self.now_ns();
        // Safety: the first n headers point at n initialised requests in out_bufs.
        let rc = unsafe {
            libc::sendmmsg(
                self.socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            return if transient(&e) { Ok(0) } else { Err(e.into()) };
        }
        let sent = rc as usize;
        for i in 0..sent {
            let seq = self.seq + i as u64;
            let slot = (seq as usize) & (SLOTS - 1);
            self.slot_seq[slot] = seq;
            // Open loop: (first intended time, interval); closed loop: now.
            self.slot_time[slot] =
                stamp.map_or(now, |(first, interval)| first + i as u64 * interval);
        }
        self.seq += sent as u64;
        self.sent += sent as u64;
        Ok(sent)
    }

    fn record(&mut self, seq: u64, now: u64, record: bool) {
        let slot = (seq as usize) & (SLOTS - 1);
        if self.slot_seq[slot] == seq {
            self.slot_seq[slot] = u64::MAX;
            self.received += 1;
            if record {
                self.histogram
                    .saturating_record(now.saturating_sub(self.slot_time[slot]).max(1));
            }
        }
    }

    /// Takes the replies already queued, up to BATCH, in one recvmmsg. Returns how many.
    fn receive_batch(&mut self, record: bool) -> anyhow::Result<usize> {
        self.prepare(false, BATCH);
        // Safety: BATCH headers point at BATCH receive buffers in in_bufs.
        let rc = unsafe {
            libc::recvmmsg(
                self.socket.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            return if transient(&e) { Ok(0) } else { Err(e.into()) };
        }
        let now = self.now_ns();
        for i in 0..rc as usize {
            if self.hdrs[i].msg_len >= 8 {
                let at = i * RX_BUF;
                let seq = u64::from_be_bytes(self.in_bufs[at..at + 8].try_into().expect("8 bytes"));
                self.record(seq, now, record);
            }
        }
        Ok(rc as usize)
    }

    /// Ping-pong: one request, then a blocking wait for its reply (or the loss timeout).
    fn ping(&mut self, record: bool) -> anyhow::Result<()> {
        let sent = self.send_batch(1, None)?;
        if sent == 0 {
            return Ok(());
        }
        let want = self.seq - 1;
        let deadline = Instant::now() + LOSS_TIMEOUT;
        let mut buf = [0u8; RX_BUF];
        while Instant::now() < deadline {
            match self.socket.recv(&mut buf) {
                Ok(n) if n >= 8 => {
                    let seq = u64::from_be_bytes(buf[..8].try_into().expect("8 bytes"));
                    let now = self.now_ns();
                    self.record(seq, now, record);
                    if seq == want {
                        return Ok(());
                    }
                }
                Ok(_) => {}
                Err(e) if transient(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn drive(
        &mut self,
        spec: &LoadSpec,
        duration: Duration,
        max_packets: u64,
        stop: &AtomicBool,
        record: bool,
    ) -> anyhow::Result<()> {
        let start_ns = self.now_ns();
        let end_ns = start_ns + duration.as_nanos() as u64;
        let first_seq = self.sent;
        let mut last_progress = start_ns;
        let mut outstanding: u64 = 0;
        let mut iterations = 0u32;
        loop {
            iterations = iterations.wrapping_add(1);
            if iterations.is_multiple_of(64) && stop.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            let now = self.now_ns();
            if now >= end_ns || self.sent >= max_packets {
                return Ok(());
            }
            match spec.pattern {
                Pattern::Closed { outstanding: 1 } => self.ping(record)?,
                Pattern::Closed {
                    outstanding: window,
                } => {
                    let room = u64::from(window)
                        .saturating_sub(outstanding)
                        .min(max_packets - self.sent);
                    outstanding += self.send_batch(room as usize, None)? as u64;
                    let before = self.received;
                    self.receive_batch(record)?;
                    let got = self.received - before;
                    outstanding = outstanding.saturating_sub(got);
                    let now = self.now_ns();
                    if got > 0 {
                        last_progress = now;
                    } else if now - last_progress > LOSS_TIMEOUT.as_nanos() as u64 {
                        // The window is stuck: what is out is lost; start again.
                        outstanding = 0;
                        last_progress = now;
                    }
                }
                Pattern::Open { rate } => {
                    let interval = 1_000_000_000 / rate.max(1);
                    let due = ((now - start_ns) / interval + 1).min(max_packets);
                    let behind = due.saturating_sub(self.sent - first_seq);
                    if behind > 0 {
                        // Each request carries the time it was meant to leave.
                        let first_intended = start_ns + (self.sent - first_seq) * interval;
                        self.send_batch(behind as usize, Some((first_intended, interval)))?;
                    }
                    self.receive_batch(record)?;
                }
                Pattern::SendOnly => {
                    self.send_batch(BATCH, None)?;
                    self.receive_batch(false)?;
                }
            }
        }
    }
}
