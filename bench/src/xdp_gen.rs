//! The harness's AF_XDP load generator, in the manner of pktgen and TRex: a UDP request per
//! flow (source port) is built once into frames the generator keeps in its UMEM, and those
//! frames are sent again and again with only the sequence number, the timestamp and the UDP
//! checksum changed (RFC 1624's incremental update). Replies come back through fastpath's
//! own XDP program on the client's veth: one rule per flow port steers them into the
//! generator's AF_XDP socket, so no kernel UDP socket is on the client's path.
//!
//! Open loop at a fixed rate: requests leave in small bursts on a fixed schedule whatever
//! the replies do, and a reply's latency is measured from the time its burst was *meant* to
//! leave (wrk2's correction for coordinated omission). A server that stalls, or a generator
//! that falls behind, shows as latency and as loss, never as a silently lower rate: what
//! was scheduled in the window and never sent counts as lost (`unsent`). Or as fast as the
//! rings allow: every kept frame goes out as soon as it is back. Loss is counted by
//! sequence number; sequence numbers never repeat across runs, so a late reply from an
//! earlier run is never taken for a new one.

use std::{
    collections::VecDeque,
    os::fd::AsRawFd,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use fastpath::{
    phy::xsk::{BindMode, KeptFrame, XskConfig, XskSocket, kernel_stats},
    steer::{AttachMode, RuleGuard, Steering, XdpLogLevel},
    wire::{checksum, ipv4::Ipv4Repr, udp::UdpRepr},
};
use fastpath_common::{
    IPPROTO_UDP, RuleKey,
    layout::{ETH_HLEN, ETHERTYPE_IPV4, IPV4_MIN_HLEN, IPV4_PROTO, UDP_HLEN},
};
use hdrhistogram::Histogram;

use crate::{
    generator::{HEADER_LEN, new_histogram, pin_current_thread, thread_cpu_time},
    netns::VethPair,
};

/// The first flow's source port; flow i uses `FIRST_FLOW_PORT + i`. Below the kernel's
/// ephemeral range (32768–60999), so no kernel socket of the client shares them.
pub const FIRST_FLOW_PORT: u16 = 20000;
/// Where the headers end and the UDP payload begins (untagged IPv4, no options).
const L4: usize = ETH_HLEN + IPV4_MIN_HLEN;
const PAYLOAD: usize = L4 + UDP_HLEN;
/// In the payload: sockperf's header (sequence u64, flags u16, length u32), then the
/// intended send time (u64 ns), all big-endian.
const SEQ_AT: usize = PAYLOAD;
const TIME_AT: usize = PAYLOAD + HEADER_LEN;
/// The smallest payload that holds the sequence number, sockperf's header and the time.
pub const MIN_PAYLOAD: usize = HEADER_LEN + 8;
const UDP_CHECKSUM_AT: usize = L4 + 6;
const FLAGS_PING: u16 = 0x0003;

/// Frames the generator keeps for requests: the most it can have in flight.
const KEPT_FRAMES: u32 = 1024;
const UMEM_FRAMES: u32 = 4096;
const RING_SIZE: u32 = 2048;
const FRAME_SIZE: u32 = 2048;
/// Requests per TX submit and replies per RX batch.
const BATCH: usize = 64;
/// Spinning, bursts leave about this often: small enough not to queue at the server.
pub const SPIN_SPACING: Duration = Duration::from_micros(16);
const MAX_BURST: u64 = 64;
/// After the window: how long replies still in flight are waited for.
const DRAIN: Duration = Duration::from_millis(100);
/// Below this gap to the next burst a sleeping generator spins instead.
const SPIN_BELOW: Duration = Duration::from_micros(4);

/// How the generator waits between bursts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pacing {
    /// Bursts about every `SPIN_SPACING`, spinning in between: the lowest latency and the
    /// highest rate the generator can offer; it takes its core whole. For limits and
    /// latency.
    Spin,
    /// Bursts about every `spacing_us`, sleeping in between (a reply wakes it): its core
    /// stays mostly idle, so the CPU the machine spends is the server's. For CPU per
    /// request. (A sleep and a wake-up cost this VM several µs, so a burst per request
    /// would make the generator the largest cost of all.)
    Sleep { spacing_us: u32 },
}

#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Flows, one source port each.
    pub flows: u16,
    /// UDP payload bytes (at least `MIN_PAYLOAD`).
    pub payload: usize,
    /// The server's UDP port.
    pub server_port: u16,
}

/// One run of the generator.
#[derive(Clone, Debug)]
pub struct LoadPlan {
    /// Requests per second, open loop; None: as fast as the rings allow.
    pub rate: Option<u64>,
    /// The measured window.
    pub duration: Duration,
    /// Load before the window, not measured.
    pub warmup: Duration,
    /// Core the calling thread is pinned to.
    pub cpu: Option<usize>,
    pub pacing: Pacing,
}

/// The edges of the measured window, reported from the generator's thread as they pass
/// (to sample CPU counters over exactly the window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    Open,
    Close,
}

#[derive(Debug)]
pub struct XdpLoadResult {
    /// Requests scheduled in the window (open loop); as fast as possible, those sent.
    pub offered: u64,
    pub sent: u64,
    /// Distinct replies to requests of the window.
    pub received: u64,
    /// Replies seen more than once.
    pub duplicates: u64,
    /// Frames that were not replies to this generator (counted, ignored).
    pub foreign: u64,
    /// What the generator's own socket dropped (XDP_STATISTICS over the run: no fill
    /// frame, RX ring full): loss on the generator's side, not the server's.
    pub generator_rx_dropped: u64,
    pub elapsed: Duration,
    /// Round-trip times in ns from the intended send time.
    pub histogram: Histogram<u64>,
    /// CPU time of the generator's thread over the window.
    pub cpu_time: Duration,
    /// Over the window: turns of the generator's loop, and how many of them ended in a
    /// sleep (until the next burst or a reply).
    pub turns: u64,
    pub sleeps: u64,
}

impl XdpLoadResult {
    /// Sent and never answered.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }

    /// Scheduled in the window and never sent: the generator fell behind.
    pub fn unsent(&self) -> u64 {
        self.offered.saturating_sub(self.sent)
    }

    /// The fraction of offered requests not answered (unsent ones included).
    pub fn loss(&self) -> f64 {
        if self.offered == 0 {
            return 1.0;
        }
        self.offered.saturating_sub(self.received) as f64 / self.offered as f64
    }

    fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn offered_rate(&self) -> f64 {
        self.per_sec(self.offered)
    }

    pub fn send_rate(&self) -> f64 {
        self.per_sec(self.sent)
    }

    pub fn receive_rate(&self) -> f64 {
        self.per_sec(self.received)
    }
}

/// The request template of one flow: its checksum's sum over everything but the sequence
/// number and the time, which `stamp` adds per send.
#[derive(Clone, Copy, Debug)]
struct FlowTemplate {
    base_sum: u64,
}

/// Builds the request frame of flow port `src_port` into `frame` and returns its length
/// and the flow's template (sequence number and time zero).
fn build_request(
    frame: &mut [u8],
    macs: ([u8; 6], [u8; 6]),
    addrs: ([u8; 4], [u8; 4]),
    ports: (u16, u16),
    payload: usize,
) -> anyhow::Result<(usize, FlowTemplate)> {
    let len = PAYLOAD + payload;
    let frame = frame
        .get_mut(..len)
        .context("the request does not fit in a UMEM frame")?;
    let (client_mac, server_mac) = macs;
    let (client, server) = addrs;
    frame[0..6].copy_from_slice(&server_mac);
    frame[6..12].copy_from_slice(&client_mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    Ipv4Repr {
        src: client,
        dst: server,
        protocol: IPPROTO_UDP,
        payload_len: UDP_HLEN + payload,
        ttl: 64,
    }
    .emit(&mut frame[ETH_HLEN..])
    .map_err(|e| anyhow::anyhow!("IPv4 header: {e}"))?;
    let body = &mut frame[PAYLOAD..];
    body.fill(0);
    body[8..10].copy_from_slice(&FLAGS_PING.to_be_bytes());
    body[10..14].copy_from_slice(&(payload as u32).to_be_bytes());
    UdpRepr {
        src_port: ports.0,
        dst_port: ports.1,
    }
    .emit(&mut frame[L4..], payload, client, server)
    .map_err(|e| anyhow::anyhow!("UDP header: {e}"))?;
    // The sum the checksum was computed from, less nothing: sequence and time are zero.
    let udp_len = (UDP_HLEN + payload) as u16;
    let mut udp = frame[L4..].to_vec();
    udp[6..8].copy_from_slice(&[0, 0]);
    let base_sum =
        checksum::pseudo_header_v4(client, server, IPPROTO_UDP, udp_len) + checksum::sum(&udp);
    Ok((len, FlowTemplate { base_sum }))
}

/// Writes the sequence number and the time into a request built by `build_request`, and
/// its UDP checksum from the flow's sum plus theirs. Both fields sit at even offsets from
/// the UDP header, so each u64 adds as two 32-bit big-endian words (2^16 ≡ 1 mod 2^16 − 1).
fn stamp(frame: &mut [u8], template: FlowTemplate, seq: u64, time_ns: u64) {
    frame[SEQ_AT..SEQ_AT + 8].copy_from_slice(&seq.to_be_bytes());
    frame[TIME_AT..TIME_AT + 8].copy_from_slice(&time_ns.to_be_bytes());
    let words = |v: u64| (v >> 32) + (v & 0xffff_ffff);
    let mut c = !checksum::fold(template.base_sum + words(seq) + words(time_ns));
    if c == 0 {
        // RFC 768: a computed zero is sent as all ones.
        c = 0xffff;
    }
    frame[UDP_CHECKSUM_AT..UDP_CHECKSUM_AT + 2].copy_from_slice(&c.to_be_bytes());
}

/// A reply to one of our flows: its (sequence number, intended send time).
fn parse_reply(frame: &[u8], server_port: u16, flows: u16) -> Option<(u64, u64)> {
    if frame.len() < TIME_AT + 8
        || frame[12..14] != ETHERTYPE_IPV4.to_be_bytes()
        || frame[ETH_HLEN] != 0x45
        || frame[ETH_HLEN + IPV4_PROTO] != IPPROTO_UDP
    {
        return None;
    }
    let src_port = u16::from_be_bytes([frame[L4], frame[L4 + 1]]);
    let dst_port = u16::from_be_bytes([frame[L4 + 2], frame[L4 + 3]]);
    if src_port != server_port || !(FIRST_FLOW_PORT..FIRST_FLOW_PORT + flows).contains(&dst_port) {
        return None;
    }
    let seq = u64::from_be_bytes(frame[SEQ_AT..SEQ_AT + 8].try_into().ok()?);
    let time = u64::from_be_bytes(frame[TIME_AT..TIME_AT + 8].try_into().ok()?);
    Some((seq, time))
}

/// The open-loop schedule: bursts of `burst` requests, burst j in the j-th slot of
/// `spacing_ns`; request k is meant to leave with burst k / burst. Jittered, each burst
/// sits at a pseudo-random point of its slot (the same point every time: a hash of j), so
/// that a load that is periodic does not alias with the 250 Hz tick that `/proc/stat`'s
/// accounting samples (a burst every 100 µs would otherwise meet the tick at the same
/// phase every time and be counted all busy or all idle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Schedule {
    burst: u64,
    spacing_ns: u64,
    jitter: bool,
}

impl Schedule {
    fn for_rate(rate: u64, spacing: Duration, jitter: bool) -> Self {
        let rate = rate.max(1);
        let per_spacing = rate as f64 * spacing.as_secs_f64();
        let burst = (per_spacing.round() as u64).clamp(1, MAX_BURST);
        Self {
            burst,
            spacing_ns: ((burst as f64 * 1e9 / rate as f64).round() as u64).max(1),
            jitter,
        }
    }

    /// Where in its slot burst j leaves.
    fn offset(&self, j: u64) -> u64 {
        if !self.jitter {
            return 0;
        }
        // splitmix64's finaliser: well spread, no state.
        let mut z = j.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % self.spacing_ns
    }

    /// When request k (counted from the schedule's start) is meant to leave, from the start.
    fn intended(&self, k: u64) -> u64 {
        let j = k / self.burst;
        j * self.spacing_ns + self.offset(j)
    }

    /// Bursts that have left by `t` ns after the start.
    fn bursts_by(&self, t: u64) -> u64 {
        let j = t / self.spacing_ns;
        j + u64::from(t - j * self.spacing_ns >= self.offset(j))
    }

    /// Requests due by `t` ns after the start.
    fn due(&self, t: u64) -> u64 {
        self.bursts_by(t) * self.burst
    }

    /// The first request meant to leave at or after `t`.
    fn first_at_or_after(&self, t: u64) -> u64 {
        let j = t / self.spacing_ns;
        let first_burst = if j * self.spacing_ns + self.offset(j) >= t {
            j
        } else {
            j + 1
        };
        first_burst * self.burst
    }
}

/// The generator, bound to the client end of a veth pair.
pub struct XdpGenerator {
    // Fields drop in order: the socket, then the rules, then the program.
    socket: XskSocket,
    _rules: Vec<RuleGuard>,
    _steering: Arc<Steering>,
    frames: Vec<KeptFrame>,
    /// The template of the flow each kept frame carries, by frame index.
    template_of: Vec<Option<FlowTemplate>>,
    frame_len: usize,
    config: GenConfig,
    epoch: Instant,
    /// The next sequence number: never reused, so replies from an earlier run are ignored.
    next_seq: u64,
}

impl XdpGenerator {
    /// Attaches fastpath's XDP program to the client's veth (inside the client namespace),
    /// opens an AF_XDP socket on its queue 0, steers replies to the flow ports into it, and
    /// writes the requests into the frames it keeps.
    pub fn open(pair: &VethPair, config: &GenConfig) -> anyhow::Result<Self> {
        if config.payload < MIN_PAYLOAD {
            bail!(
                "the AF_XDP generator needs a payload of at least {MIN_PAYLOAD} bytes (sequence number, sockperf's header, timestamp); got {}",
                config.payload
            );
        }
        if config.flows == 0 || u32::from(config.flows) > fastpath_common::MAX_RULES / 2 {
            bail!("--flows must be 1 to {}", fastpath_common::MAX_RULES / 2);
        }
        let iface = pair.client.iface.clone();
        let (socket, rules, steering) = VethPair::in_netns(&pair.client, || {
            let steering = Steering::attach(&iface, AttachMode::Driver, XdpLogLevel::Off)
                .with_context(|| format!("attaching XDP to the client's veth {iface}"))?;
            let socket = XskSocket::open(
                &iface,
                0,
                &XskConfig {
                    frame_size: FRAME_SIZE,
                    frame_count: UMEM_FRAMES,
                    ring_size: RING_SIZE,
                    bind_mode: BindMode::Auto,
                },
            )?;
            steering.register_socket(0, &*socket.fd())?;
            let rules = (0..config.flows)
                .map(|i| {
                    steering.add_rule(RuleKey::new(
                        IPPROTO_UDP,
                        pair.client.addr.octets(),
                        FIRST_FLOW_PORT + i,
                    ))
                })
                .collect::<Result<Vec<_>, _>>()?;
            anyhow::Ok((socket, rules, steering))
        })?;
        let mut generator = Self {
            socket,
            _rules: rules,
            _steering: steering,
            frames: Vec::new(),
            template_of: vec![None; UMEM_FRAMES as usize],
            frame_len: 0,
            config: config.clone(),
            epoch: Instant::now(),
            next_seq: 0,
        };
        generator.build_frames(pair)?;
        Ok(generator)
    }

    fn build_frames(&mut self, pair: &VethPair) -> anyhow::Result<()> {
        self.frames = self.socket.keep_frames(KEPT_FRAMES);
        if self.frames.len() < KEPT_FRAMES as usize {
            bail!(
                "the AF_XDP socket let the generator keep {} frames of {KEPT_FRAMES}",
                self.frames.len()
            );
        }
        let flows = self.config.flows;
        for (i, &frame) in self.frames.iter().enumerate() {
            let port = FIRST_FLOW_PORT + (i % usize::from(flows)) as u16;
            let mut built = None;
            self.socket.write_kept(frame, |buf| {
                built = Some(build_request(
                    buf,
                    (pair.client.mac, pair.server.mac),
                    (pair.client.addr.octets(), pair.server.addr.octets()),
                    (port, self.config.server_port),
                    self.config.payload,
                ));
            });
            let (len, template) = built.context("a kept frame was not writable")??;
            self.frame_len = len;
            self.template_of[frame.index() as usize] = Some(template);
        }
        Ok(())
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Runs one load on the calling thread (pinned to `plan.cpu`); `edge` is called as the
    /// measured window opens and closes.
    pub fn run(
        &mut self,
        plan: &LoadPlan,
        stop: &AtomicBool,
        edge: &mut dyn FnMut(Edge),
    ) -> anyhow::Result<XdpLoadResult> {
        if let Some(cpu) = plan.cpu {
            pin_current_thread(cpu);
        }
        // Safety: prctl(PR_SET_TIMERSLACK) on this thread only: wake-ups on time, not up to
        // the default 50 µs late.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
        let drops_before = self.rx_dropped();
        let mut run = Run::new(self, plan);
        let result = run.drive(self, stop, edge);
        // Every kept frame comes back before the next run, whatever happened.
        self.collect_frames(&mut run.free);
        let mut result = result?;
        result.generator_rx_dropped = self.rx_dropped().saturating_sub(drops_before);
        Ok(result)
    }

    fn rx_dropped(&self) -> u64 {
        kernel_stats(self.socket.fd().as_raw_fd())
            .map(|s| s.rx_dropped + s.rx_ring_full + s.rx_fill_ring_empty_descs)
            .unwrap_or(0)
    }

    /// Waits (bounded) until the kernel has given back every kept frame.
    fn collect_frames(&mut self, free: &mut VecDeque<KeptFrame>) {
        let deadline = Instant::now() + Duration::from_secs(1);
        while free.len() < self.frames.len() && Instant::now() < deadline {
            self.socket.complete(u32::MAX);
            self.socket.take_returned(free);
            self.socket.kick_tx();
            self.socket.refill();
            self.socket.receive(BATCH as u32, |_, _, _| None);
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// The state of one run.
struct Run {
    free: VecDeque<KeptFrame>,
    schedule: Option<Schedule>,
    sleep: bool,
    /// Sequence number of the run's first request (its schedule's request 0).
    base: u64,
    start_ns: u64,
    window_open_ns: u64,
    window_close_ns: u64,
    /// The window's requests: [first, end); `end` is known once the window has closed
    /// (open loop: from the schedule at once).
    first: u64,
    end: u64,
    seen: Vec<u64>,
    received: u64,
    duplicates: u64,
    foreign: u64,
    histogram: Histogram<u64>,
    batch: Vec<KeptFrame>,
}

impl Run {
    fn new(generator: &XdpGenerator, plan: &LoadPlan) -> Self {
        let spacing = match plan.pacing {
            Pacing::Spin => SPIN_SPACING,
            Pacing::Sleep { spacing_us } => Duration::from_micros(spacing_us.into()),
        };
        let jitter = matches!(plan.pacing, Pacing::Sleep { .. });
        let schedule = plan
            .rate
            .map(|rate| Schedule::for_rate(rate, spacing, jitter));
        let base = generator.next_seq;
        let start_ns = generator.now_ns();
        let window_open_ns = start_ns + plan.warmup.as_nanos() as u64;
        let window_close_ns = window_open_ns + plan.duration.as_nanos() as u64;
        let (first, end, capacity) = match schedule {
            Some(s) => {
                let first = base + s.first_at_or_after(window_open_ns - start_ns);
                let end = base + s.first_at_or_after(window_close_ns - start_ns);
                (first, end, end - first)
            }
            // As fast as possible: the window's range is known as it passes; room for
            // 20 M requests a second.
            None => (
                u64::MAX,
                u64::MAX,
                plan.duration.as_secs_f64() as u64 * 20_000_000 + 1,
            ),
        };
        Self {
            free: generator.frames.iter().copied().collect(),
            schedule,
            sleep: matches!(plan.pacing, Pacing::Sleep { .. }),
            base,
            start_ns,
            window_open_ns,
            window_close_ns,
            first,
            end,
            seen: vec![0; capacity.div_ceil(64) as usize + 1],
            received: 0,
            duplicates: 0,
            foreign: 0,
            histogram: new_histogram(),
            batch: Vec::with_capacity(BATCH),
        }
    }

    fn drive(
        &mut self,
        generator: &mut XdpGenerator,
        stop: &AtomicBool,
        edge: &mut dyn FnMut(Edge),
    ) -> anyhow::Result<XdpLoadResult> {
        let mut window_open = false;
        let mut cpu_at_open = Duration::ZERO;
        let mut sent_in_window = 0u64;
        let (mut turns, mut sleeps) = (0u64, 0u64);
        let mut iterations = 0u32;
        loop {
            iterations = iterations.wrapping_add(1);
            if iterations.is_multiple_of(256) && stop.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            let now = generator.now_ns();
            if !window_open && now >= self.window_open_ns {
                window_open = true;
                if self.schedule.is_none() {
                    self.first = generator.next_seq;
                }
                cpu_at_open = thread_cpu_time();
                edge(Edge::Open);
            }
            if now >= self.window_close_ns {
                break;
            }
            self.reap(generator);
            let received = self.receive(generator, now);
            let sent = self.send(generator, now);
            if window_open {
                sent_in_window += sent as u64;
                turns += 1;
            }
            let kicked = generator.socket.kick_tx();
            if received > 0 || sent > 0 || kicked {
                continue;
            }
            // Nothing to do now: sleep until the next burst or a reply, whichever is first.
            if let Some(s) = self.schedule.filter(|_| self.sleep) {
                let next = self.start_ns + s.intended(generator.next_seq - self.base);
                let gap = Duration::from_nanos(next.saturating_sub(generator.now_ns()));
                if gap >= SPIN_BELOW && !self.free.is_empty() {
                    generator
                        .socket
                        .wait_readable(gap.min(Duration::from_millis(1)), None);
                    sleeps += u64::from(window_open);
                }
            }
        }
        let cpu_time = thread_cpu_time().saturating_sub(cpu_at_open);
        edge(Edge::Close);
        let elapsed = Duration::from_nanos(self.window_close_ns - self.window_open_ns);
        let sent = match self.schedule {
            Some(_) => {
                // Requests of the window that left (those scheduled after it did not).
                generator.next_seq.min(self.end).saturating_sub(self.first)
            }
            None => {
                self.end = generator.next_seq;
                sent_in_window
            }
        };
        let offered = match self.schedule {
            Some(_) => self.end - self.first,
            None => sent,
        };
        // Replies still in flight are not losses: wait for them a moment.
        let drain_until = generator.now_ns() + DRAIN.as_nanos() as u64;
        while generator.now_ns() < drain_until && self.received < sent {
            self.reap(generator);
            if self.receive(generator, generator.now_ns()) == 0 {
                generator
                    .socket
                    .wait_readable(Duration::from_millis(1), None);
            }
        }
        Ok(XdpLoadResult {
            offered,
            sent,
            received: self.received,
            duplicates: self.duplicates,
            foreign: self.foreign,
            generator_rx_dropped: 0,
            elapsed,
            histogram: std::mem::replace(&mut self.histogram, new_histogram()),
            cpu_time,
            turns,
            sleeps,
        })
    }

    /// Takes back the kept frames the kernel has sent and gives the fill ring its frames.
    fn reap(&mut self, generator: &mut XdpGenerator) {
        generator.socket.complete(u32::MAX);
        generator.socket.take_returned(&mut self.free);
        generator.socket.refill();
    }

    /// Takes one batch of replies; returns how many frames came in.
    fn receive(&mut self, generator: &mut XdpGenerator, now: u64) -> u32 {
        let (server_port, flows) = (generator.config.server_port, generator.config.flows);
        let batch = generator.socket.receive(BATCH as u32, |frame, len, _| {
            match parse_reply(&frame[..len], server_port, flows) {
                Some((seq, time)) => self.record(seq, time, now),
                None => self.foreign += 1,
            }
            None
        });
        batch.received
    }

    fn record(&mut self, seq: u64, time: u64, now: u64) {
        if seq < self.first
            || seq
                >= self
                    .end
                    .min(self.first.saturating_add(self.seen.len() as u64 * 64))
        {
            // Warm-up, an earlier run, or after the window: not counted.
            return;
        }
        let i = (seq - self.first) as usize;
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        self.received += 1;
        self.histogram
            .saturating_record(now.saturating_sub(time).max(1));
    }

    /// Sends what is due (open loop) or what the free frames allow; returns how many left.
    fn send(&mut self, generator: &mut XdpGenerator, now: u64) -> usize {
        let want = match self.schedule {
            Some(s) => {
                let due = self.base + s.due(now - self.start_ns);
                due.saturating_sub(generator.next_seq)
            }
            None => u64::MAX,
        };
        let n = (want.min(BATCH as u64) as usize).min(self.free.len());
        if n == 0 {
            return 0;
        }
        self.batch.clear();
        self.batch.extend(self.free.drain(..n));
        let XdpGenerator {
            socket,
            template_of,
            frame_len,
            next_seq,
            ..
        } = generator;
        let (schedule, base, start_ns) = (self.schedule, self.base, self.start_ns);
        let sent = socket.send_kept(&self.batch, |frame, buf| {
            let seq = *next_seq;
            *next_seq += 1;
            let time = match schedule {
                Some(s) => start_ns + s.intended(seq - base),
                None => now,
            };
            if let Some(template) = template_of[frame.index() as usize] {
                stamp(buf, template, seq, time);
            }
            *frame_len
        });
        // What the ring had no room for goes back to the front, in order.
        for &frame in self.batch[sent..].iter().rev() {
            self.free.push_front(frame);
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    use fastpath::wire::{checksum::ChecksumStatus, udp::UdpPacket};

    use super::*;

    const CLIENT: [u8; 4] = [198, 18, 0, 2];
    const SERVER: [u8; 4] = [198, 18, 0, 1];

    fn request(payload: usize, port: u16) -> (Vec<u8>, usize, FlowTemplate) {
        let mut frame = vec![0xa5u8; 2048];
        let (len, template) = build_request(
            &mut frame,
            ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]),
            (CLIENT, SERVER),
            (port, 11111),
            payload,
        )
        .unwrap();
        (frame, len, template)
    }

    #[test]
    fn a_stamped_request_carries_a_valid_checksum_for_any_sequence_and_time() {
        for payload in [MIN_PAYLOAD, 64, 1472] {
            let (mut frame, len, template) = request(payload, FIRST_FLOW_PORT + 3);
            for (seq, time) in [
                (0, 0),
                (1, 2),
                (u64::MAX, u64::MAX),
                (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
                (7, 0xffff_0000_ffff),
            ] {
                stamp(&mut frame, template, seq, time);
                let udp = UdpPacket::new_checked(&frame[L4..len]).unwrap();
                assert_eq!(
                    udp.check(CLIENT, SERVER),
                    ChecksumStatus::Valid,
                    "payload {payload}, seq {seq:#x}, time {time:#x}"
                );
                assert_eq!(udp.payload().len(), payload);
            }
        }
    }

    #[test]
    fn a_reply_is_read_back_and_anything_else_is_not() {
        let (mut frame, len, template) = request(64, FIRST_FLOW_PORT + 1);
        stamp(&mut frame, template, 42, 4242);
        // What a server sends back: ports (and addresses) swapped.
        frame.swap(L4, L4 + 2);
        frame.swap(L4 + 1, L4 + 3);
        assert_eq!(parse_reply(&frame[..len], 11111, 4), Some((42, 4242)));
        assert_eq!(parse_reply(&frame[..len], 11111, 1), None, "flow 1 of 1");
        assert_eq!(
            parse_reply(&frame[..len], 7, 4),
            None,
            "another server port"
        );
        assert_eq!(parse_reply(&frame[..40], 11111, 4), None, "truncated");
    }

    #[test]
    fn the_schedule_keeps_the_rate_in_small_bursts() {
        for jitter in [false, true] {
            for rate in [1_000u64, 20_000, 100_000, 1_000_000, 10_000_000] {
                let s = Schedule::for_rate(rate, SPIN_SPACING, jitter);
                assert!((1..=MAX_BURST).contains(&s.burst));
                // Requests due over one second, within one burst of the rate.
                let due = s.due(1_000_000_000 - 1);
                assert!(
                    due.abs_diff(rate) <= s.burst + rate / 1000,
                    "rate {rate}: {due} due in 1 s ({s:?})"
                );
                // Due, intended and first-at agree, and times never go backwards.
                let mut last = 0;
                for k in 0..2000 {
                    let t = s.intended(k);
                    assert!(t >= last, "request {k} before {}", k - 1);
                    last = t;
                    assert!(s.due(t) > k, "request {k} is due at its own time");
                    let first = s.first_at_or_after(t);
                    assert_eq!(first, k - k % s.burst, "the first request at {t} ns");
                    assert!(s.intended(first) >= t);
                }
            }
        }
        let fixed = Schedule::for_rate(100_000, SPIN_SPACING, false);
        assert_eq!(
            (fixed.burst, fixed.intended(2), fixed.intended(4)),
            (2, 20_000, 40_000)
        );
        assert_eq!(
            Schedule::for_rate(100_000, Duration::from_micros(100), true).burst,
            10
        );
    }

    #[test]
    fn jittered_bursts_fall_all_over_their_slots() {
        let s = Schedule::for_rate(100_000, Duration::from_micros(100), true);
        // Offsets in quarters of the slot: each quarter gets about a quarter of the bursts.
        let mut quarters = [0u32; 4];
        for j in 0..10_000 {
            quarters[(s.offset(j) * 4 / s.spacing_ns) as usize] += 1;
        }
        assert!(
            quarters.iter().all(|&q| (2200..2800).contains(&q)),
            "{quarters:?}"
        );
    }
}
