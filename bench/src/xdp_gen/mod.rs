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
//!
//! `frame` builds, stamps and reads the frames; `schedule` is the open loop's timetable;
//! `run` is one load, driven on the calling thread.

mod frame;
mod run;
mod schedule;

use std::{
    collections::VecDeque,
    os::fd::AsRawFd,
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use fastpath::{
    phy::xsk::{BindMode, KeptFrame, XskConfig, XskSocket, kernel_stats},
    steer::{AttachMode, RuleGuard, Steering, XdpLogLevel},
};
use fastpath_common::{IPPROTO_UDP, RuleKey};
use frame::{FlowTemplate, build_request};
use hdrhistogram::Histogram;
use run::Run;

use crate::{
    generator::{HEADER_LEN, pin_current_thread},
    netns::VethPair,
};

/// The first flow's source port; flow i uses `FIRST_FLOW_PORT + i`. Below the kernel's
/// ephemeral range (32768–60999), so no kernel socket of the client shares them.
pub const FIRST_FLOW_PORT: u16 = 20000;
/// The smallest payload that holds the sequence number, sockperf's header and the time.
pub const MIN_PAYLOAD: usize = HEADER_LEN + 8;

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
