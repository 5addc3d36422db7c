//! The harness's own UDP load generator.
//!
//! It speaks sockperf's message header (sequence u64, flags u16, length u32, big-endian;
//! a ping carries flags 0x0003 and `sockperf server` answers 0x0002), so the same client
//! drives fastpath, a plain kernel echo and `sockperf server` alike.
//!
//! Closed loop keeps N requests outstanding; open loop sends at a fixed rate and measures
//! each reply from the time its request was *meant* to leave (the coordinated-omission
//! correction of wrk2), so a stalled server shows up as latency, not as a lower rate.
//! Every run is bounded by time and by count, and stops when `stop` is set.

use std::{
    io::ErrorKind,
    net::UdpSocket,
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
    pub fn reply_rate(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
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

fn thread_cpu_time() -> Duration {
    // Safety: clock_gettime writes the timespec we pass.
    let mut ts = unsafe { std::mem::zeroed::<libc::timespec>() };
    // Safety: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
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
    let blocking = matches!(spec.pattern, Pattern::Closed { outstanding: 1 });
    socket.set_nonblocking(!blocking)?;
    if blocking {
        socket.set_read_timeout(Some(LOSS_TIMEOUT))?;
    }
    let mut load = Generator::new(spec.payload);
    // Warm-up: same traffic, nothing recorded.
    if !spec.warmup.is_zero() {
        load.drive(socket, spec, spec.warmup, u64::MAX, stop, false)?;
        load.reset();
    }
    let cpu_before = thread_cpu_time();
    let start = Instant::now();
    load.drive(socket, spec, spec.duration, spec.max_packets, stop, true)?;
    let elapsed = start.elapsed();
    // Replies still in flight at the end are not losses: drain them briefly.
    let drain_until = Instant::now() + Duration::from_millis(50);
    while Instant::now() < drain_until && load.received + load.lost < load.sent {
        if !load.receive(socket, true, None)? {
            std::thread::sleep(Duration::from_micros(100));
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

struct Generator {
    message: Vec<u8>,
    reply: Vec<u8>,
    slot_seq: Vec<u64>,
    slot_time: Vec<u64>,
    histogram: Histogram<u64>,
    epoch: Instant,
    seq: u64,
    sent: u64,
    received: u64,
    lost: u64,
}

impl Generator {
    fn new(payload: usize) -> Self {
        let mut message = vec![0u8; payload];
        message[8..10].copy_from_slice(&FLAGS_PING.to_be_bytes());
        message[10..14].copy_from_slice(&(payload as u32).to_be_bytes());
        Self {
            message,
            reply: vec![0u8; 65536],
            slot_seq: vec![u64::MAX; SLOTS],
            slot_time: vec![0; SLOTS],
            histogram: new_histogram(),
            epoch: Instant::now(),
            seq: 0,
            sent: 0,
            received: 0,
            lost: 0,
        }
    }

    fn reset(&mut self) {
        self.histogram.reset();
        self.slot_seq.fill(u64::MAX);
        self.sent = 0;
        self.received = 0;
        self.lost = 0;
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Sends one request stamped as meant to leave at `intended_ns`. False if the socket is full.
    fn send(&mut self, socket: &UdpSocket, intended_ns: u64) -> anyhow::Result<bool> {
        let seq = self.seq;
        self.message[..8].copy_from_slice(&seq.to_be_bytes());
        match socket.send(&self.message) {
            Ok(_) => {
                let slot = (seq as usize) & (SLOTS - 1);
                self.slot_seq[slot] = seq;
                self.slot_time[slot] = intended_ns;
                self.seq += 1;
                self.sent += 1;
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                Ok(false)
            }
            // ECONNREFUSED: an ICMP port unreachable from an earlier datagram; keep going.
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Receives one reply if there is one. Returns whether one was consumed.
    fn receive(
        &mut self,
        socket: &UdpSocket,
        record: bool,
        _deadline: Option<Instant>,
    ) -> anyhow::Result<bool> {
        match socket.recv(&mut self.reply) {
            Ok(n) if n >= 8 => {
                let seq = u64::from_be_bytes(self.reply[..8].try_into().expect("8 bytes"));
                let slot = (seq as usize) & (SLOTS - 1);
                if self.slot_seq[slot] == seq {
                    self.slot_seq[slot] = u64::MAX;
                    self.received += 1;
                    if record {
                        let rtt = self.now_ns().saturating_sub(self.slot_time[slot]).max(1);
                        self.histogram.saturating_record(rtt);
                    }
                }
                Ok(true)
            }
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock
                        | ErrorKind::TimedOut
                        | ErrorKind::Interrupted
                        | ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn drive(
        &mut self,
        socket: &UdpSocket,
        spec: &LoadSpec,
        duration: Duration,
        max_packets: u64,
        stop: &AtomicBool,
        record: bool,
    ) -> anyhow::Result<()> {
        let start_ns = self.now_ns();
        let end_ns = start_ns + duration.as_nanos() as u64;
        let mut last_progress = start_ns;
        let mut outstanding: u64 = 0;
        let mut iterations = 0u32;
        loop {
            iterations = iterations.wrapping_add(1);
            if iterations % 64 == 0 && stop.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            let now = self.now_ns();
            if now >= end_ns || self.sent >= max_packets {
                return Ok(());
            }
            match spec.pattern {
                Pattern::Closed {
                    outstanding: window,
                } => {
                    while outstanding < u64::from(window) && self.sent < max_packets {
                        if !self.send(socket, self.now_ns())? {
                            break;
                        }
                        outstanding += 1;
                    }
                    let before = self.received;
                    while self.receive(socket, record, None)? {
                        if window == 1 {
                            break;
                        }
                    }
                    let got = self.received - before;
                    outstanding = outstanding.saturating_sub(got);
                    let now = self.now_ns();
                    if got > 0 {
                        last_progress = now;
                    } else if now - last_progress > LOSS_TIMEOUT.as_nanos() as u64 {
                        // The window is stuck: count what is out as lost and start again.
                        self.lost += outstanding;
                        outstanding = 0;
                        last_progress = now;
                    }
                }
                Pattern::Open { rate } => {
                    let interval = 1_000_000_000 / rate.max(1);
                    let due = (now - start_ns) / interval + 1;
                    while self.sent < due.min(max_packets) {
                        let intended = start_ns + self.sent * interval;
                        if !self.send(socket, intended)? {
                            break;
                        }
                    }
                    while self.receive(socket, record, None)? {}
                }
                Pattern::SendOnly => {
                    for _ in 0..32 {
                        if !self.send(socket, now)? {
                            break;
                        }
                    }
                    while self.receive(socket, false, None)? {}
                }
            }
        }
    }
}
