//! Steering: loads the XDP program built from `ebpf/xdp`, attaches it to one interface
//! as a BPF link (the kernel detaches it when the process dies, SIGKILL included), and
//! owns its maps: the rules, the XSKMAP and the per-CPU outcome counters.
//!
//! Rules are reference-counted: `add_rule` returns a `RuleGuard` and the rule leaves
//! the map when its last guard drops, so binding a service adds its steering and
//! closing it removes it; nobody keeps a rule list by hand.

use std::{
    collections::BTreeMap,
    io,
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, XskMap},
    programs::{Xdp, XdpMode},
};
use aya_log::EbpfLogger;
use fastpath_common::{
    COUNTERS_MAP, IPPROTO_TCP, IPPROTO_UDP, PROGRAM_NAME, RULES_MAP, RuleKey, RuleValue, XSKS_MAP,
    XdpCounter,
};

static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fastpath-xdp"));

/// Where the XDP program runs.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum AttachMode {
    /// In the driver, before an skb exists (native XDP): the fast one.
    Driver,
    /// After the kernel built an skb (generic XDP): works on every interface, slower.
    Generic,
}

impl AttachMode {
    fn xdp_mode(self) -> XdpMode {
        match self {
            AttachMode::Driver => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

/// What the XDP program logs (through aya-log), fixed when it is loaded: a disabled level's
/// calls are dead code to the verifier and cost nothing per frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpLogLevel {
    /// Nothing.
    Off,
    /// Events that should never happen (a queue with no socket while rules exist), at most
    /// once a second per CPU.
    #[default]
    Warn,
    /// Also why each steered frame was judged malformed: header, field and offset.
    Debug,
}

impl XdpLogLevel {
    /// The value of aya-log's `AYA_LOG_LEVEL` global for this level.
    fn global(self) -> u8 {
        match self {
            XdpLogLevel::Off => 0,
            XdpLogLevel::Warn => aya_log::Level::Warn as u8,
            XdpLogLevel::Debug => aya_log::Level::Debug as u8,
        }
    }
}

/// Drains the XDP program's log records into the `log` crate on a thread of its own,
/// beside the data path (never on a worker).
struct XdpLogDrain {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl XdpLogDrain {
    fn start(mut logger: EbpfLogger<&'static dyn log::Log>) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("xdp-log".into())
            .spawn(move || {
                let fd = logger.as_raw_fd();
                while !stopped.load(Ordering::Relaxed) {
                    let mut pfd = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // Safety: one valid pollfd; the ring buffer's fd lives as long as `logger`.
                    unsafe { libc::poll(&mut pfd, 1, 100) };
                    logger.flush();
                }
                logger.flush();
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for XdpLogDrain {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A failure to steer, worded as cause and fix on one line.
#[derive(Debug, thiserror::Error)]
pub enum SteerError {
    #[error(
        "this binary carries no XDP program (built with AYA_BUILD_SKIP=1); rebuild it without AYA_BUILD_SKIP"
    )]
    NoObject,
    #[error(
        "cannot load the XDP program: {0}; fastpath needs root (CAP_BPF, CAP_NET_ADMIN, CAP_NET_RAW): run it with sudo"
    )]
    Permission(String),
    #[error("cannot load the XDP program: {0}")]
    Load(String),
    #[error(
        "interface {iface} already has an XDP program attached; see it with `ip link show dev {iface}`, then stop its owner or detach it with `ip link set dev {iface} xdp off`"
    )]
    Busy { iface: String },
    #[error(
        "the driver of {iface} does not support driver-mode XDP ({reason}); rerun with --mode generic"
    )]
    DriverRefused { iface: String, reason: String },
    #[error("cannot attach XDP to {iface}: {reason}")]
    Attach { iface: String, reason: String },
    #[error("steering map update failed: {0}")]
    Map(String),
}

/// The first OS error number in an error's source chain.
fn errno_of(mut e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    loop {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(code) = io.raw_os_error()
        {
            return Some(code);
        }
        e = e.source()?;
    }
}

/// The whole source chain on one line.
fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        cur = s.source();
    }
    text.lines().next().unwrap_or_default().to_string()
}

struct Rules {
    map: HashMap<MapData, RuleKey, RuleValue>,
    refs: BTreeMap<RuleKey, usize>,
}

/// The loaded, attached program and its maps.
pub struct Steering {
    iface: String,
    mode: AttachMode,
    rules: Mutex<Rules>,
    xsks: Mutex<XskMap<MapData>>,
    counters: Mutex<PerCpuArray<MapData, u64>>,
    _log: Option<XdpLogDrain>,
    // Last: dropping it detaches the program (after the maps above are released).
    _ebpf: Mutex<Ebpf>,
}

impl Steering {
    /// Loads the program with its log level and attaches it to `iface`.
    pub fn attach(
        iface: &str,
        mode: AttachMode,
        log_level: XdpLogLevel,
    ) -> Result<Arc<Self>, SteerError> {
        if XDP_OBJECT.is_empty() {
            return Err(SteerError::NoObject);
        }
        let load_error = |e: &(dyn std::error::Error + 'static)| match errno_of(e) {
            Some(libc::EPERM) | Some(libc::EACCES) => SteerError::Permission(one_line(e)),
            _ => SteerError::Load(one_line(e)),
        };
        let level = log_level.global();
        let mut ebpf = EbpfLoader::new()
            .override_global(aya_log::LEVEL, &level, true)
            .load(XDP_OBJECT)
            .map_err(|e| load_error(&e))?;
        let log =
            match log_level {
                XdpLogLevel::Off => None,
                _ => match EbpfLogger::init(&mut ebpf) {
                    Ok(logger) => Some(XdpLogDrain::start(logger).map_err(|e| {
                        SteerError::Load(format!("starting the XDP log thread: {e}"))
                    })?),
                    Err(e) => {
                        log::warn!(
                            "the XDP program's log cannot be read ({}); its counters still work",
                            one_line(&e)
                        );
                        None
                    }
                },
            };
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| SteerError::Load(format!("no program {PROGRAM_NAME} in the object")))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| load_error(&e))?;
        program.load().map_err(|e| {
            log::debug!("verifier: {e:?}");
            load_error(&e)
        })?;
        program.attach(iface, mode.xdp_mode()).map_err(|e| {
            let reason = one_line(&e);
            match errno_of(&e) {
                Some(libc::EBUSY) | Some(libc::EEXIST) => SteerError::Busy {
                    iface: iface.to_string(),
                },
                Some(libc::EOPNOTSUPP) if mode == AttachMode::Driver => SteerError::DriverRefused {
                    iface: iface.to_string(),
                    reason,
                },
                Some(libc::EPERM) => SteerError::Permission(reason),
                _ => SteerError::Attach {
                    iface: iface.to_string(),
                    reason,
                },
            }
        })?;
        let map_error = |e: aya::maps::MapError| SteerError::Map(one_line(&e));
        let take = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| SteerError::Load(format!("no map {name} in the object")))
        };
        let rules = HashMap::try_from(take(&mut ebpf, RULES_MAP)?).map_err(map_error)?;
        let xsks = XskMap::try_from(take(&mut ebpf, XSKS_MAP)?).map_err(map_error)?;
        let counters = PerCpuArray::try_from(take(&mut ebpf, COUNTERS_MAP)?).map_err(map_error)?;
        Ok(Arc::new(Self {
            iface: iface.to_string(),
            mode,
            rules: Mutex::new(Rules {
                map: rules,
                refs: BTreeMap::new(),
            }),
            xsks: Mutex::new(xsks),
            counters: Mutex::new(counters),
            _log: log,
            _ebpf: Mutex::new(ebpf),
        }))
    }

    pub fn iface(&self) -> &str {
        &self.iface
    }

    pub fn mode(&self) -> AttachMode {
        self.mode
    }

    /// Puts an AF_XDP socket in the XSKMAP slot of `queue`.
    pub fn register_socket(&self, queue: u32, fd: &impl AsRawFd) -> Result<(), SteerError> {
        let mut xsks = self.xsks.lock().unwrap_or_else(|p| p.into_inner());
        xsks.set(queue, fd.as_raw_fd(), 0)
            .map_err(|e| SteerError::Map(format!("XSKMAP slot {queue}: {}", one_line(&e))))
    }

    /// Steers `key` into the AF_XDP sockets until the returned guard (and every other
    /// guard of the same key) is dropped.
    pub fn add_rule(self: &Arc<Self>, key: RuleKey) -> Result<RuleGuard, SteerError> {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        let refs = rules.refs.get(&key).copied().unwrap_or(0);
        if refs == 0
            && let Err(e) = rules.map.insert(key, RuleValue::default(), 0)
        {
            // Should never happen (the map has room for MAX_RULES): say so loudly.
            log::warn!(
                "inserting steering rule {} failed: {}",
                describe_rule(&key),
                one_line(&e)
            );
            return Err(SteerError::Map(one_line(&e)));
        }
        rules.refs.insert(key, refs + 1);
        Ok(RuleGuard {
            steering: self.clone(),
            key,
        })
    }

    fn release_rule(&self, key: RuleKey) {
        let mut rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        match rules.refs.get(&key).copied() {
            Some(1) => {
                rules.refs.remove(&key);
                if let Err(e) = rules.map.remove(&key) {
                    log::warn!(
                        "removing steering rule {}: {}",
                        describe_rule(&key),
                        one_line(&e)
                    );
                }
            }
            Some(n) => {
                rules.refs.insert(key, n - 1);
            }
            None => log::warn!("released unknown rule {}", describe_rule(&key)),
        }
    }

    /// The rules in force, as the kernel map holds them.
    pub fn rules(&self) -> Vec<RuleKey> {
        let rules = self.rules.lock().unwrap_or_else(|p| p.into_inner());
        rules.map.keys().filter_map(Result::ok).collect()
    }

    /// The XDP outcome counters, summed over CPUs.
    pub fn counters(&self) -> BTreeMap<&'static str, u64> {
        let counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        XdpCounter::ALL
            .iter()
            .map(|c| {
                let total = counters
                    .get(&(*c as u32), 0)
                    .map(|per_cpu| per_cpu.iter().sum())
                    .unwrap_or(0);
                (c.name(), total)
            })
            .collect()
    }
}

/// Keeps one steering rule in force; dropping it releases the rule.
pub struct RuleGuard {
    steering: Arc<Steering>,
    key: RuleKey,
}

impl RuleGuard {
    pub fn key(&self) -> RuleKey {
        self.key
    }
}

impl Drop for RuleGuard {
    fn drop(&mut self) {
        self.steering.release_rule(self.key);
    }
}

/// `udp 198.18.0.1:7000` or `udp *:7000`.
pub fn describe_rule(key: &RuleKey) -> String {
    let proto = match key.proto {
        IPPROTO_UDP => "udp",
        IPPROTO_TCP => "tcp",
        _ => "?",
    };
    if key.addr == fastpath_common::ANY_ADDR {
        format!("{proto} *:{}", key.port)
    } else {
        let [a, b, c, d] = key.addr_bytes();
        format!("{proto} {a}.{b}.{c}.{d}:{}", key.port)
    }
}
