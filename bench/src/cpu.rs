//! What a request costs in CPU. Two measures:
//!
//! - **CPU time per request**: busy time summed over every core of the machine, from
//!   `/proc/stat`, divided by the requests answered. Summing every core matters on a veth
//!   pair: the sender's core runs the receiver's RX (softirq), so a server's work is partly
//!   charged to the client's core. Busy is user + nice + system + irq + softirq; idle,
//!   iowait and steal (time the hypervisor gave to someone else) are not.
//! - **User-space cycles per request** of one thread (a worker): `cycles:u` from
//!   `perf_event_open` where the machine has a PMU, else the thread's user time from
//!   `/proc/PID/task/TID/stat` times the TSC rate (a VM without a virtual PMU counts no
//!   hardware events; its TSC is constant, so user seconds × TSC Hz are the cycles the
//!   thread spent in user space at the nominal clock).

use std::{io, os::fd::FromRawFd};

/// One core's times from `/proc/stat`, in clock ticks (`USER_HZ`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoreTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CoreTimes {
    /// Ticks the core spent working: everything but idle, iowait and steal.
    pub fn busy(&self) -> u64 {
        self.user + self.nice + self.system + self.irq + self.softirq
    }

    fn since(&self, before: &CoreTimes) -> CoreTimes {
        CoreTimes {
            user: self.user.saturating_sub(before.user),
            nice: self.nice.saturating_sub(before.nice),
            system: self.system.saturating_sub(before.system),
            idle: self.idle.saturating_sub(before.idle),
            iowait: self.iowait.saturating_sub(before.iowait),
            irq: self.irq.saturating_sub(before.irq),
            softirq: self.softirq.saturating_sub(before.softirq),
            steal: self.steal.saturating_sub(before.steal),
        }
    }
}

/// The per-core lines (`cpu0`, `cpu1`, …) of `/proc/stat`, by core number; the `cpu`
/// total line and everything else are skipped.
pub fn parse_proc_stat(text: &str) -> Vec<(usize, CoreTimes)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let core = fields.next()?.strip_prefix("cpu")?.parse().ok()?;
            let v: Vec<u64> = fields.map_while(|f| f.parse().ok()).collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            Some((
                core,
                CoreTimes {
                    user: at(0),
                    nice: at(1),
                    system: at(2),
                    idle: at(3),
                    iowait: at(4),
                    irq: at(5),
                    softirq: at(6),
                    steal: at(7),
                },
            ))
        })
        .collect()
}

/// `/proc/stat` at one moment.
#[derive(Clone, Debug)]
pub struct StatSnapshot(Vec<(usize, CoreTimes)>);

impl StatSnapshot {
    pub fn read() -> io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string("/proc/stat")?))
    }

    pub fn parse(text: &str) -> Self {
        Self(parse_proc_stat(text))
    }
}

/// Busy CPU time over a window, per core and in all.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BusyTime {
    /// Busy seconds per core, by core number.
    pub per_core_secs: Vec<(usize, f64)>,
    /// Of which in softirq, per core (the other side's RX on a veth lands here).
    pub softirq_secs: Vec<(usize, f64)>,
    pub total_secs: f64,
}

impl BusyTime {
    /// The busy time between two snapshots, with `ticks_per_sec` clock ticks a second.
    pub fn between(before: &StatSnapshot, after: &StatSnapshot, ticks_per_sec: f64) -> Self {
        let mut per_core_secs = Vec::new();
        let mut softirq_secs = Vec::new();
        for (core, now) in &after.0 {
            let Some((_, then)) = before.0.iter().find(|(c, _)| c == core) else {
                continue;
            };
            let d = now.since(then);
            per_core_secs.push((*core, d.busy() as f64 / ticks_per_sec));
            softirq_secs.push((*core, d.softirq as f64 / ticks_per_sec));
        }
        let total_secs = per_core_secs.iter().map(|(_, s)| s).sum();
        Self {
            per_core_secs,
            softirq_secs,
            total_secs,
        }
    }
}

/// Nanoseconds of CPU per request; None when nothing was answered.
pub fn ns_per_request(cpu_secs: f64, requests: u64) -> Option<f64> {
    (requests > 0).then(|| cpu_secs * 1e9 / requests as f64)
}

/// Clock ticks a second (`USER_HZ`), the unit of `/proc/stat` and `/proc/PID/stat`.
pub fn ticks_per_sec() -> f64 {
    // Safety: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

/// A thread's user and system time in seconds, from a `/proc/PID/task/TID/stat` line.
pub fn parse_thread_stat(text: &str, ticks_per_sec: f64) -> Option<(f64, f64)> {
    // Fields after the parenthesised name (which may hold spaces); utime and stime are the
    // 14th and 15th fields of the line, the 12th and 13th after the name.
    let after = text.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime as f64 / ticks_per_sec, stime as f64 / ticks_per_sec))
}

/// User and system seconds of one thread so far.
pub fn thread_times(pid: u32, tid: u32) -> Option<(f64, f64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    parse_thread_stat(&text, ticks_per_sec())
}

/// The first thread of `pid` whose name starts with `prefix` (fastpath's workers are
/// `fastpath-q0`, `fastpath-q1`, …).
pub fn find_thread(pid: u32, prefix: &str) -> Option<u32> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut tids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids.into_iter().find(|tid| {
        std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
            .is_ok_and(|name| name.trim_end().starts_with(prefix))
    })
}

/// The TSC rate in Hz: `cpu MHz` of `/proc/cpuinfo` on a machine with a constant TSC.
pub fn tsc_hz() -> Option<f64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    if !cpuinfo.contains("constant_tsc") {
        return None;
    }
    let mhz: f64 = cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse()
        .ok()?;
    Some(mhz * 1e6)
}

/// CPU ticks (user + system) of every process so far, with its name, by pid.
#[derive(Clone, Debug, Default)]
pub struct ProcessSnapshot(std::collections::BTreeMap<u32, (String, u64)>);

/// A process's name and its user + system ticks, from its `/proc/PID/stat` line.
pub fn parse_process_stat(text: &str) -> Option<(String, u64)> {
    let name = text.get(text.find('(')? + 1..text.rfind(')')?)?;
    let after = text.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((name.to_string(), utime + stime))
}

impl ProcessSnapshot {
    pub fn read() -> Self {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Self::default();
        };
        Self(
            dir.filter_map(|e| {
                let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
                let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                Some((pid, parse_process_stat(&text)?))
            })
            .collect(),
        )
    }

    /// The processes other than `ours` that used CPU since `before`, by name, most first,
    /// in seconds. Kernel threads count too: ksoftirqd may be doing the network's work.
    pub fn others_since(
        &self,
        before: &ProcessSnapshot,
        ours: &[u32],
        ticks_per_sec: f64,
    ) -> Vec<(String, f64)> {
        let mut by_name: std::collections::BTreeMap<String, u64> = Default::default();
        for (pid, (name, ticks)) in &self.0 {
            if ours.contains(pid) {
                continue;
            }
            let was = before.0.get(pid).map_or(0, |(_, t)| *t);
            let used = ticks.saturating_sub(was);
            if used > 0 {
                *by_name.entry(name.clone()).or_default() += used;
            }
        }
        let mut others: Vec<(String, f64)> = by_name
            .into_iter()
            .map(|(name, t)| (name, t as f64 / ticks_per_sec))
            .collect();
        others.sort_by(|a, b| b.1.total_cmp(&a.1));
        others
    }
}

/// `struct perf_event_attr` up to `config1` (`PERF_ATTR_SIZE_VER0`, 64 bytes): all a
/// counting event needs.
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    /// disabled, inherit, pinned, exclusive, exclude_user, exclude_kernel, exclude_hv, …
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
}

const PERF_TYPE_HARDWARE: u32 = 0;
const PERF_COUNT_HW_CPU_CYCLES: u64 = 0;
const EXCLUDE_KERNEL: u64 = 1 << 5;
const EXCLUDE_HV: u64 = 1 << 6;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// A `cycles:u` counter on one thread (of any process), as `perf stat -e cycles:u -t TID`.
fn open_user_cycles(tid: u32) -> io::Result<std::fs::File> {
    let attr = PerfEventAttr {
        kind: PERF_TYPE_HARDWARE,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: PERF_COUNT_HW_CPU_CYCLES,
        flags: EXCLUDE_KERNEL | EXCLUDE_HV,
        ..Default::default()
    };
    // Safety: perf_event_open(2) with a valid attr of the size it states, a thread id, any
    // CPU, no group; the returned descriptor is checked and owned below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            tid as libc::pid_t,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // Safety: a fresh descriptor that nothing else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd as i32) })
}

fn read_counter(file: &std::fs::File) -> io::Result<u64> {
    use std::io::Read;
    let mut buf = [0u8; 8];
    (&*file).read_exact(&mut buf)?;
    Ok(u64::from_ne_bytes(buf))
}

/// How user-space cycles were counted.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum CycleMethod {
    /// `cycles:u` from perf_event_open on the thread.
    Pmu,
    /// User seconds of the thread × the TSC rate (no PMU: the reason is kept).
    UserTimeTimesTsc { tsc_hz: f64, why: String },
    /// Neither was possible.
    Unavailable(String),
}

impl CycleMethod {
    pub fn describe(&self) -> String {
        match self {
            CycleMethod::Pmu => "cycles:u from perf_event_open on the thread".into(),
            CycleMethod::UserTimeTimesTsc { tsc_hz, why } => format!(
                "the thread's user time (/proc/PID/task/TID/stat) × the TSC rate ({:.3} GHz): cycles:u cannot be counted here ({why})",
                tsc_hz / 1e9
            ),
            CycleMethod::Unavailable(why) => format!("not measured: {why}"),
        }
    }
}

/// User-space cycles of one thread over a window.
pub struct UserCycles {
    pid: u32,
    tid: u32,
    counter: Option<std::fs::File>,
    start_cycles: u64,
    start_user: f64,
    start_system: f64,
    method: CycleMethod,
}

/// What one thread spent over a window.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ThreadCost {
    pub user_cycles: Option<f64>,
    pub user_secs: f64,
    pub system_secs: f64,
    pub method: CycleMethod,
}

impl UserCycles {
    /// Starts counting thread `tid` of process `pid`.
    pub fn start(pid: u32, tid: u32) -> Self {
        let (counter, method) = match open_user_cycles(tid) {
            Ok(file) => (Some(file), CycleMethod::Pmu),
            Err(e) => {
                let why = match e.raw_os_error() {
                    Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) | Some(libc::ENODEV) => {
                        format!("no hardware cycle counter: perf_event_open says {e}")
                    }
                    _ => format!("perf_event_open: {e}"),
                };
                match tsc_hz() {
                    Some(tsc_hz) => (None, CycleMethod::UserTimeTimesTsc { tsc_hz, why }),
                    None => (
                        None,
                        CycleMethod::Unavailable(format!("{why}; and no constant TSC")),
                    ),
                }
            }
        };
        let start_cycles = counter
            .as_ref()
            .and_then(|c| read_counter(c).ok())
            .unwrap_or(0);
        let (start_user, start_system) = thread_times(pid, tid).unwrap_or((0.0, 0.0));
        Self {
            pid,
            tid,
            counter,
            start_cycles,
            start_user,
            start_system,
            method,
        }
    }

    pub fn finish(self) -> ThreadCost {
        let (user, system) = thread_times(self.pid, self.tid).unwrap_or((0.0, 0.0));
        let (user_secs, system_secs) = (
            (user - self.start_user).max(0.0),
            (system - self.start_system).max(0.0),
        );
        let user_cycles = match (&self.method, &self.counter) {
            (CycleMethod::Pmu, Some(c)) => read_counter(c)
                .ok()
                .map(|now| now.saturating_sub(self.start_cycles) as f64),
            (CycleMethod::UserTimeTimesTsc { tsc_hz, .. }, _) => Some(user_secs * tsc_hz),
            _ => None,
        };
        ThreadCost {
            user_cycles,
            user_secs,
            system_secs,
            method: self.method,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
cpu  1000 20 300 5000 10 0 40 7 0 0
cpu0 600 10 200 2000 5 0 30 3 0 0
cpu1 400 10 100 3000 5 0 10 4 0 0
intr 12345 0 0
ctxt 999
";
    // 2 s later at 100 ticks a second: core 0 busy 150 of 200 ticks (120 of them softirq),
    // core 1 busy 60 ticks; iowait and steal move too and are not counted.
    const AFTER: &str = "\
cpu  1130 20 330 5120 12 0 200 9 0 0
cpu0 620 10 210 2045 6 0 150 4 0 0
cpu1 420 10 120 3125 6 0 30 5 0 0
intr 22345 0 0
";

    #[test]
    fn proc_stat_lines_are_read_per_core() {
        let cores = parse_proc_stat(BEFORE);
        assert_eq!(cores.len(), 2, "the total line and the rest are skipped");
        assert_eq!(cores[0].0, 0);
        assert_eq!(
            cores[1].1,
            CoreTimes {
                user: 400,
                nice: 10,
                system: 100,
                idle: 3000,
                iowait: 5,
                irq: 0,
                softirq: 10,
                steal: 4,
            }
        );
        assert_eq!(cores[1].1.busy(), 400 + 10 + 100 + 10);
    }

    #[test]
    fn busy_time_sums_every_core_and_divides_by_requests() {
        let busy = BusyTime::between(
            &StatSnapshot::parse(BEFORE),
            &StatSnapshot::parse(AFTER),
            100.0,
        );
        // Core 0: user 20 + system 10 + softirq 120 = 150 ticks = 1.5 s.
        // Core 1: user 20 + system 20 + softirq 20 = 60 ticks = 0.6 s.
        assert_eq!(busy.per_core_secs, vec![(0, 1.5), (1, 0.6)]);
        assert_eq!(busy.softirq_secs, vec![(0, 1.2), (1, 0.2)]);
        assert!((busy.total_secs - 2.1).abs() < 1e-12);
        // 2.1 CPU seconds for 300,000 answers: 7 µs each.
        let ns = ns_per_request(busy.total_secs, 300_000).unwrap();
        assert!((ns - 7000.0).abs() < 1e-6, "{ns}");
        assert_eq!(ns_per_request(1.0, 0), None);
    }

    #[test]
    fn other_processes_are_summed_by_name_without_ours() {
        let snap = |rows: &[(u32, &str, u64)]| {
            ProcessSnapshot(
                rows.iter()
                    .map(|(pid, name, t)| (*pid, (name.to_string(), *t)))
                    .collect(),
            )
        };
        let before = snap(&[(1, "init", 10), (7, "kdamond.0", 100), (42, "bench", 5)]);
        let after = snap(&[
            (1, "init", 10),
            (7, "kdamond.0", 103),
            (42, "bench", 500),
            (99, "wrk", 150),
            (100, "wrk", 50),
        ]);
        assert_eq!(
            after.others_since(&before, &[42], 100.0),
            vec![("wrk".to_string(), 2.0), ("kdamond.0".to_string(), 0.03)]
        );
        assert_eq!(
            parse_process_stat("77 (kdamond.0) S 2 0 0 0 -1 0 0 0 0 0 12 34 0 0"),
            Some(("kdamond.0".to_string(), 46))
        );
    }

    #[test]
    fn thread_stat_takes_utime_and_stime_after_a_name_with_spaces() {
        let line = "4242 (fastpath q0) R 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 1 0 100 0 0";
        assert_eq!(parse_thread_stat(line, 100.0), Some((2.5, 0.75)));
        assert_eq!(parse_thread_stat("garbage", 100.0), None);
    }

    #[test]
    fn the_own_thread_is_counted_one_way_or_the_other() {
        // Safety: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        let counter = UserCycles::start(std::process::id(), tid);
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let cost = counter.finish();
        match cost.method {
            CycleMethod::Unavailable(_) => assert!(cost.user_cycles.is_none()),
            _ => assert!(
                cost.user_cycles.is_some_and(|c| c > 0.0),
                "300 ms of user-space spinning counted no cycles: {cost:?}"
            ),
        }
        assert!(!cost.method.describe().is_empty());
    }
}
