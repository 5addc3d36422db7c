//! Start-up: attaches the XDP program, opens one AF_XDP socket and pinned worker per RX
//! queue, wires each worker to its demux and mailbox, and starts the control socket.
//! `main.rs` only parses the command line and calls this.

use std::{
    net::Ipv4Addr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{
    api::Stack,
    app::echo::ReflectService,
    control::{self, ControlState, QueueHandle},
    iface::demux::Demux,
    phy::{
        capture::{Capture, CaptureFilter, CaptureTap, PcapSink},
        impair::{ImpairConfig, Impaired},
        worker::{self, IdleStrategy, WorkerConfig},
        xsk::{BindMode, XskConfig, XskSocket},
    },
    socket::{Host, Link},
    steer::{AttachMode, Steering, XdpLogLevel},
    system,
};
pub use crate::{iface::checksum::RxChecksum, socket::host::ACTIVE_PORTS};

/// What `Runtime::start` needs to know.
#[derive(Clone, Debug)]
pub struct StackConfig {
    pub iface: String,
    pub queues: Option<u32>,
    pub mode: AttachMode,
    /// What the XDP program logs (aya-log), fixed at load.
    pub xdp_log: XdpLogLevel,
    pub bind: BindMode,
    pub idle: IdleStrategy,
    pub rx_checksum: RxChecksum,
    pub frame_size: u32,
    pub frames: u32,
    pub batch: u32,
    pub cpus: Vec<usize>,
    pub control: Option<PathBuf>,
    /// Bounce frames with no stack (the bench ceiling) instead of serving sockets.
    pub reflect: bool,
    /// Capture every frame the workers receive and send into this pcap file, from start to
    /// stop (a device for tests: a failing test leaves what happened next to its log).
    pub pcap: Option<PathBuf>,
    /// Impair the frames between the rings and the demux (a device for tests).
    pub impair: Option<ImpairConfig>,
}

impl StackConfig {
    pub fn new(iface: &str) -> Self {
        Self {
            iface: iface.to_string(),
            queues: None,
            mode: AttachMode::Driver,
            xdp_log: XdpLogLevel::Warn,
            bind: BindMode::Auto,
            idle: IdleStrategy::Hybrid,
            rx_checksum: RxChecksum::AcceptPartial,
            frame_size: 4096,
            frames: 4096,
            batch: 64,
            cpus: Vec::new(),
            control: None,
            reflect: false,
            pcap: None,
            impair: None,
        }
    }
}

/// A running fast path: XDP attached, one AF_XDP socket and pinned worker per queue,
/// the control socket answering.
pub struct Runtime {
    stack: Stack,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<XskSocket>>,
    control: JoinHandle<()>,
    state: Arc<ControlState>,
    control_path: PathBuf,
    pcap: Option<JoinHandle<()>>,
    /// Keeps `tcp_api::ACTIVE_PORTS` in `ip_local_reserved_ports` until the runtime ends.
    _ports: ReservedPorts,
}

const RESERVED_PORTS: &str = "/proc/sys/net/ipv4/ip_local_reserved_ports";
const LOCAL_PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// The active-open port range added to this network namespace's
/// `net.ipv4.ip_local_reserved_ports`, so the kernel never picks one of them for its own
/// sockets; the previous value comes back on drop.
pub struct ReservedPorts {
    previous: String,
}

impl ReservedPorts {
    pub fn reserve() -> anyhow::Result<Self> {
        let range = crate::socket::host::ACTIVE_PORTS;
        let previous = std::fs::read_to_string(RESERVED_PORTS)
            .with_context(|| format!("reading {RESERVED_PORTS}"))?
            .trim()
            .to_string();
        if let Ok(local) = std::fs::read_to_string(LOCAL_PORT_RANGE) {
            let bounds: Vec<u16> = local
                .split_whitespace()
                .filter_map(|w| w.parse().ok())
                .collect();
            if let [low, high] = bounds[..]
                && low <= *range.end()
                && *range.start() <= high
            {
                log::info!(
                    "ports {}-{} overlap ip_local_port_range {low}-{high}: reserved for fastpath's active opens",
                    range.start(),
                    range.end()
                );
            }
        }
        let ours = format!("{}-{}", range.start(), range.end());
        let value = if previous.is_empty() {
            ours
        } else {
            format!("{previous},{ours}")
        };
        std::fs::write(RESERVED_PORTS, &value).with_context(|| {
            format!(
                "cannot reserve ports {}-{} for TCP active opens: writing {RESERVED_PORTS} (needs root in this network namespace)",
                range.start(),
                range.end()
            )
        })?;
        Ok(Self { previous })
    }
}

impl Drop for ReservedPorts {
    fn drop(&mut self) {
        // An empty write is refused; a newline clears the list.
        let value = format!("{}\n", self.previous);
        if let Err(e) = std::fs::write(RESERVED_PORTS, value) {
            log::warn!("restoring {RESERVED_PORTS} to {:?}: {e}", self.previous);
        }
    }
}

impl Runtime {
    pub fn start(cfg: StackConfig) -> anyhow::Result<Self> {
        let ifindex = system::ifindex(&cfg.iface)?;
        system::check_privileges()?;
        let ports = ReservedPorts::reserve()?;
        let available = system::rx_queue_count(&cfg.iface);
        let queues = cfg.queues.unwrap_or(available);
        if queues > available {
            bail!(
                "{} has {available} RX queue(s) but --queues {queues} was asked; lower --queues (see `ethtool -l {}`)",
                cfg.iface,
                cfg.iface
            );
        }
        let cores = core_affinity::get_core_ids().map_or(1, |c| c.len()).max(1);
        let control_path = cfg
            .control
            .clone()
            .unwrap_or_else(|| control::default_path(&cfg.iface));
        let listener = control::claim(&control_path)?;
        let steering = Steering::attach(&cfg.iface, cfg.mode, cfg.xdp_log)?;
        log::info!("attached XDP to {} in {:?} mode", cfg.iface, cfg.mode);
        let link = Link {
            steering: steering.clone(),
            ifindex,
            mac: system::mac_address(&cfg.iface)?,
            addr: system::ipv4_address(&cfg.iface).unwrap_or(Ipv4Addr::UNSPECIFIED),
            mtu: system::mtu(&cfg.iface),
        };
        let host = Arc::new(Host::new(Some(link), queues as usize, cfg.rx_checksum)?);
        let stack = Stack::new(host.clone());
        let xsk = XskConfig {
            frame_size: cfg.frame_size,
            frame_count: cfg.frames,
            ring_size: (cfg.frames / 2).clamp(64, 4096),
            bind_mode: cfg.bind,
        };
        let stop = Arc::new(AtomicBool::new(false));
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, stop.clone())
                .context("installing signal handlers")?;
        }
        let mut workers = Vec::new();
        let mut handles = Vec::new();
        for queue in 0..queues {
            let cpu = cfg
                .cpus
                .get(queue as usize)
                .copied()
                .unwrap_or(queue as usize % cores);
            let (handle, queue_handle) =
                start_queue(&cfg, queue, cpu, &xsk, &steering, &host, &stop)?;
            handles.push(queue_handle);
            workers.push(handle);
        }
        let state = Arc::new(ControlState {
            steering,
            stack: stack.clone(),
            queues: handles,
            service: if cfg.reflect {
                "udp reflect (no stack)".into()
            } else {
                "udp and tcp sockets".into()
            },
            started: Instant::now(),
        });
        let control = control::serve(listener, control_path.clone(), state.clone(), stop.clone())?;
        let pcap = match &cfg.pcap {
            Some(path) => Some(start_pcap_device(path, &state, stop.clone())?),
            None => None,
        };
        Ok(Self {
            stack,
            stop,
            workers,
            control,
            state,
            control_path,
            pcap,
            _ports: ports,
        })
    }

    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// Set to stop the runtime (Ctrl-C and SIGTERM set it too).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Workers running: one per RX queue served.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    pub fn control_path(&self) -> &std::path::Path {
        &self.control_path
    }

    /// Serves until stopped (or `duration` passes), then stops the workers and reports.
    pub fn run(self, duration: Option<Duration>) -> anyhow::Result<String> {
        let deadline = duration.map(|d| Instant::now() + d);
        while !self.stop.load(Ordering::Relaxed) {
            if deadline.is_some_and(|d| Instant::now() >= d)
                || self.workers.iter().any(|h| h.is_finished())
            {
                self.stop.store(true, Ordering::Relaxed);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Workers sleep until a frame, a deadline or a wake-up: wake them to see the flag.
        self.stack.host().wake_all();
        let mut ledger_errors = 0;
        let mut panicked = false;
        for h in self.workers {
            match h.join() {
                Ok(socket) => ledger_errors += socket.ledger_errors(),
                Err(_) => panicked = true,
            }
        }
        // Commands the workers left in their mailboxes, and any posted from now on, are
        // answered here: no thread stays blocked on a worker that is gone.
        self.stack.host().stop_and_answer();
        if panicked {
            bail!("a worker panicked");
        }
        let report = self.state.report();
        let _ = self.control.join();
        if let Some(pcap) = self.pcap {
            let _ = pcap.join();
        }
        let total: u64 = report.queues.iter().map(|q| q.rx).sum();
        Ok(format!(
            "stopped: {total} frames received, XDP {:?}, ledger errors {ledger_errors}",
            report.xdp
        ))
    }
}

/// Opens queue `queue`'s AF_XDP socket, registers it with the XDP program and starts its
/// worker on core `cpu`, with the demux (or the reflect ceiling, or the fault device in
/// front of the demux) as its frame handler.
fn start_queue(
    cfg: &StackConfig,
    queue: u32,
    cpu: usize,
    xsk: &XskConfig,
    steering: &Steering,
    host: &Arc<Host>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<(JoinHandle<XskSocket>, QueueHandle)> {
    let socket = XskSocket::open(&cfg.iface, queue, xsk).map_err(|e| {
        anyhow::anyhow!(
            "{e}; check that queue {queue} exists on {} and no other AF_XDP socket is bound to it",
            cfg.iface
        )
    })?;
    steering.register_socket(queue, &*socket.fd())?;
    log::info!(
        "queue {queue}: AF_XDP socket ({}) on core {cpu}",
        if socket.zero_copy() {
            "zero-copy"
        } else {
            "copy"
        }
    );
    let config = WorkerConfig {
        batch: cfg.batch,
        idle: cfg.idle,
        cpu: Some(cpu),
        waker: Some(host.mailboxes[queue as usize].waker.fd()),
    };
    let (fd, zero_copy) = (socket.fd(), socket.zero_copy());
    let tap = Arc::new(CaptureTap::default());
    let stop = stop.clone();
    let (handle, shared) = if cfg.reflect {
        worker::spawn(socket, ReflectService::default(), stop, tap.clone(), config)?
    } else {
        let demux = Demux::new(host.clone(), queue as usize);
        match cfg.impair {
            // Each queue draws its own stream: the seed plus the queue number.
            Some(faults) => {
                let faults = ImpairConfig {
                    seed: faults.seed.wrapping_add(queue.into()),
                    ..faults
                };
                log::warn!("queue {queue}: impairing frames: {faults}");
                let impaired = Impaired::new(demux, faults);
                worker::spawn(socket, impaired, stop, tap.clone(), config)?
            }
            None => worker::spawn(socket, demux, stop, tap.clone(), config)?,
        }
    };
    let handle_info = QueueHandle {
        queue,
        fd,
        shared,
        zero_copy,
        tap,
    };
    Ok((handle, handle_info))
}

/// The pcap device: captures everything into `path` on a thread beside the data path,
/// draining every 10 ms, until `stop`; the file is flushed at every drain, so it is valid
/// even if the process is killed.
fn start_pcap_device(
    path: &std::path::Path,
    state: &ControlState,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<JoinHandle<()>> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create the pcap file {}", path.display()))?;
    let taps: Vec<_> = state.queues.iter().map(|q| q.tap.clone()).collect();
    let capture = Capture::start(&taps, CaptureFilter::default());
    let path = path.to_path_buf();
    Ok(std::thread::Builder::new()
        .name("pcap".into())
        .spawn(move || {
            let Ok(mut sink) = PcapSink::new(file) else {
                log::warn!("cannot write the pcap header to {}", path.display());
                return;
            };
            let mut failed = false;
            let mut write_all = |capture: &Capture| {
                capture.drain(|c| {
                    if !failed && sink.write(c.timestamp, c.orig_len, c.data).is_err() {
                        failed = true;
                    }
                });
                failed |= sink.flush().is_err();
            };
            while !stop.load(Ordering::Relaxed) {
                write_all(&capture);
                std::thread::sleep(Duration::from_millis(10));
            }
            // The workers stop after this flag too: take what they copied last.
            std::thread::sleep(Duration::from_millis(50));
            write_all(&capture);
            if failed {
                log::warn!(
                    "writing {} failed; the capture is incomplete",
                    path.display()
                );
            }
            if capture.dropped() > 0 {
                log::warn!(
                    "{} frames found no room in the capture rings and are not in {}",
                    capture.dropped(),
                    path.display()
                );
            }
        })?)
}
