//! What machine a report was made on, and how busy each core and process was during a run.

use std::{collections::BTreeMap, time::Instant};

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub veth_queues: u32,
    pub mtu: u32,
    pub peer_tx_checksum: bool,
    pub date: String,
}

impl Machine {
    pub fn read(veth_queues: u32, mtu: u32, peer_tx_checksum: bool) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let date = std::process::Command::new("date")
            .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Self {
            cpu_model,
            cores: online_cores(),
            kernel,
            veth_queues,
            mtu,
            peer_tx_checksum,
            date,
        }
    }
}

/// The cores a scenario pins its server and its client to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cores {
    pub(crate) server: usize,
    pub(crate) client: usize,
}

impl Cores {
    /// As asked; by default the server on core 1 and the client on core 0 (both on core 0
    /// on a machine with one).
    pub(crate) fn pick(server: Option<usize>, client: Option<usize>) -> Self {
        let (default_server, default_client) = if online_cores() >= 2 { (1, 0) } else { (0, 0) };
        Self {
            server: server.unwrap_or(default_server),
            client: client.unwrap_or(default_client),
        }
    }
}

/// Online CPUs of the machine (not of this thread's affinity mask, which pinning narrows).
pub fn online_cores() -> usize {
    // Safety: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Busy and total jiffies of each core, from /proc/stat.
fn core_jiffies() -> Vec<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal
            let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
            let total: u64 = v.iter().take(8).sum();
            (total - idle, total)
        })
        .collect()
}

fn clock_ticks() -> f64 {
    // Safety: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as f64
}

/// CPU seconds (user + system) a process has used so far.
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

/// How busy each core and the server process were between `start` and `finish`.
pub struct CpuSampler {
    cores: Vec<(u64, u64)>,
    server_pid: Option<u32>,
    server_cpu: Option<f64>,
    started: Instant,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct CpuUse {
    /// Percent busy per core (user + system + irq + softirq), by core number.
    pub cores: BTreeMap<usize, f64>,
    /// The server process, percent of one core (not counting softirq work done for it).
    pub server_process: Option<f64>,
    /// The client (generator thread or sockperf), percent of one core.
    pub client_process: Option<f64>,
    pub server_core: Option<usize>,
    pub client_core: Option<usize>,
    /// Which side ran out of CPU: "client", "server", "both" or "neither".
    pub saturated: String,
}

impl CpuSampler {
    pub fn start(server_pid: Option<u32>) -> Self {
        Self {
            cores: core_jiffies(),
            server_pid,
            server_cpu: server_pid.and_then(process_cpu_secs),
            started: Instant::now(),
        }
    }

    pub fn finish(
        self,
        client_cpu_secs: Option<f64>,
        server_core: Option<usize>,
        client_core: Option<usize>,
    ) -> CpuUse {
        let wall = self.started.elapsed().as_secs_f64().max(1e-6);
        let after = core_jiffies();
        let cores: BTreeMap<usize, f64> = self
            .cores
            .iter()
            .zip(after.iter())
            .enumerate()
            .map(|(i, ((b0, t0), (b1, t1)))| {
                let total = (t1 - t0).max(1) as f64;
                (i, 100.0 * (b1 - b0) as f64 / total)
            })
            .collect();
        let server_process = match (self.server_pid, self.server_cpu) {
            (Some(pid), Some(before)) => {
                process_cpu_secs(pid).map(|now| 100.0 * (now - before) / wall)
            }
            _ => None,
        };
        let client_process = client_cpu_secs.map(|s| 100.0 * s / wall);
        let busy =
            |core: Option<usize>| core.and_then(|c| cores.get(&c)).is_some_and(|&p| p >= 90.0);
        let saturated = match (busy(server_core), busy(client_core)) {
            (true, true) => "both",
            (true, false) => "server",
            (false, true) => "client",
            (false, false) => "neither",
        }
        .to_string();
        CpuUse {
            cores,
            server_process,
            client_process,
            server_core,
            client_core,
            saturated,
        }
    }
}
