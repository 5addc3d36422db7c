//! HTTP: `fastpath serve` against nginx, one worker each, serving the same directory on the
//! same veth pair, driven by the same wrk from the peer namespace, alternating; a 10 MiB
//! download by curl from each, against the test bed's line rate (`fastpath blast`: AF_XDP
//! alone pushing MTU-sized frames to a receiver in the peer namespace). Used by the `http`
//! scenario and by the demo (the README's main job).
//!
//! Each system runs alone on the pair: fastpath is started for its runs and stopped after,
//! so nginx never pays for an XDP program on its interface.

use std::{
    collections::BTreeMap,
    io::Write,
    path::{Path, PathBuf},
    process::Stdio,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

use crate::{
    generator::new_histogram,
    machine::{CpuSampler, CpuUse, Machine},
    netns::{CLIENT_ADDR, SERVER_ADDR, VethConfig, VethPair, fmt_mac},
    process::{ChildGuard, FastpathProcess, fastpath_binary, require_program},
    report::{self, Goal, Ratio, Report, RunReport, Series, SeriesSummary},
};

/// fastpath's port and nginx's (both on the server address).
pub const FASTPATH_PORT: u16 = 8080;
pub const NGINX_PORT: u16 = 8081;
/// Where the line-rate receiver listens in the peer namespace.
const SINK_PORT: u16 = 9999;

/// The files every system serves.
pub const SMALL_FILE: &str = "100b.txt";
pub const PAGE_FILE: &str = "index.html";
pub const LARGE_FILE: &str = "10mib.bin";
const LARGE_BYTES: usize = 10 * 1024 * 1024;

/// A directory of files to serve, removed on drop.
pub struct SiteDir {
    pub path: PathBuf,
}

impl SiteDir {
    /// A small page, a 100-byte file and a 10 MiB file of deterministic bytes.
    pub fn create() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("fastpath-site-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)?;
        // Make it readable by nginx's workers whatever user they run as.
        std::fs::write(
            path.join(PAGE_FILE),
            "<!doctype html>\n<html><head><title>fastpath</title></head>\n<body><h1>Served by the fast path</h1></body></html>\n",
        )?;
        let small: Vec<u8> = (0..100u32)
            .map(|i| {
                if i == 99 {
                    b'\n'
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect();
        std::fs::write(path.join(SMALL_FILE), small)?;
        std::fs::write(path.join(LARGE_FILE), large_bytes())?;
        Ok(Self { path })
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for SiteDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The 10 MiB file's bytes: xorshift, so a truncation or reordering shows.
pub fn large_bytes() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(LARGE_BYTES);
    while out.len() < LARGE_BYTES {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(LARGE_BYTES);
    out
}

/// The programs the HTTP scenario and the demo need, with the fix when one is missing.
pub fn require_tools() -> anyhow::Result<()> {
    for (program, package) in [
        ("wrk", "wrk"),
        ("nginx", "nginx-light"),
        ("curl", "curl"),
        ("taskset", "util-linux"),
    ] {
        require_program(program, package)?;
    }
    Ok(())
}

/// nginx with one worker process (`master_process off`: the one process serves), pinned to
/// `core`, serving `site` on the server address; stopped on drop.
pub struct Nginx {
    guard: ChildGuard,
    dir: PathBuf,
}

impl Nginx {
    pub fn start(pair: &VethPair, site: &Path, core: usize) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("fastpath-nginx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
events {{ worker_connections 8192; multi_accept on; }}\n\
http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  tcp_nodelay on;\n  keepalive_timeout 65;\n  keepalive_requests 10000000;\n  open_file_cache max=64;\n\
  types {{ text/html html; text/plain txt; application/octet-stream bin; }}\n  default_type application/octet-stream;\n\
  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
  server {{ listen {SERVER_ADDR}:{NGINX_PORT} backlog=4096; root {root}; }}\n}}\n",
            root = site.display()
        );
        std::fs::write(dir.join("nginx.conf"), conf)?;
        let child = pair
            .server_command("taskset")
            .args(["-c", &core.to_string()])
            .arg(require_program("nginx", "nginx-light")?)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start nginx (install it with `cargo xtask deps`)")?;
        let mut nginx = Self {
            guard: ChildGuard::new("nginx", child),
            dir,
        };
        // Ready when it answers.
        let start = Instant::now();
        loop {
            if nginx.guard.exited() {
                let log = std::fs::read_to_string(nginx.dir.join("error.log")).unwrap_or_default();
                bail!("nginx exited at start: {}", log.trim());
            }
            if curl_status(pair, NGINX_PORT, SMALL_FILE).is_ok_and(|s| s == 200) {
                return Ok(nginx);
            }
            if start.elapsed() > Duration::from_secs(10) {
                bail!("nginx did not answer on {SERVER_ADDR}:{NGINX_PORT} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.guard.pid()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.guard.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `fastpath serve` with one worker pinned to `core`, serving `site`.
pub fn start_fastpath(
    pair: &VethPair,
    site: &Path,
    core: usize,
    extra: &[String],
) -> anyhow::Result<FastpathProcess> {
    let mut args: Vec<String> = vec![
        "--port".into(),
        FASTPATH_PORT.to_string(),
        "--root".into(),
        site.display().to_string(),
        "--queues".into(),
        "1".into(),
        "--cpus".into(),
        core.to_string(),
    ];
    args.extend(extra.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    FastpathProcess::start(pair, "serve", &refs)
}

/// The status of one GET by curl from the peer namespace.
pub fn curl_status(pair: &VethPair, port: u16, file: &str) -> anyhow::Result<u16> {
    let out = pair
        .client_command("curl")
        .args(["-s", "-o", "/dev/null", "-m", "2", "-w", "%{http_code}"])
        .arg(format!("http://{SERVER_ADDR}:{port}/{file}"))
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// A 10 MiB download by curl over one connection: bytes per second, and whether the bytes
/// were right.
pub fn curl_download(pair: &VethPair, port: u16, expect: &[u8]) -> anyhow::Result<(f64, bool)> {
    let target = std::env::temp_dir().join(format!(
        "fastpath-download-{}-{port}.bin",
        std::process::id()
    ));
    let out = pair
        .client_command("curl")
        .args(["-s", "-S", "-m", "60", "-o"])
        .arg(&target)
        .args(["-w", "%{size_download} %{time_total} %{speed_download}"])
        .arg(format!("http://{SERVER_ADDR}:{port}/{LARGE_FILE}"))
        .output()?;
    let got = std::fs::read(&target).unwrap_or_default();
    let _ = std::fs::remove_file(&target);
    if !out.status.success() {
        bail!(
            "curl download from port {port} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let speed: f64 = text
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .context("curl printed no speed")?;
    Ok((speed, got == expect))
}

/// What one wrk run measured.
#[derive(Clone, Debug)]
pub struct WrkResult {
    pub requests: u64,
    pub secs: f64,
    pub rate: f64,
    pub socket_errors: u64,
    pub non_2xx: u64,
    /// Reconstructed from wrk's own percentiles (its histogram is not exported whole).
    pub latency: Histogram<u64>,
    pub percentiles_us: BTreeMap<String, f64>,
    pub cpu: CpuUse,
}

/// wrk's `done` hook: totals, errors, and latency percentiles dense enough to rebuild a
/// histogram.
const WRK_SCRIPT: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("FPTOTAL %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout))
  local ps = {}
  for p = 1, 99 do ps[#ps + 1] = p end
  for p = 99.1, 99.95, 0.1 do ps[#ps + 1] = p end
  ps[#ps + 1] = 99.99
  ps[#ps + 1] = 99.999
  for _, p in ipairs(ps) do
    io.write(string.format("FPPCT %.3f %d\n", p, latency:percentile(p)))
  end
  io.write(string.format("FPPCT 100.000 %d\n", latency.max))
end
"#;

/// One wrk load: its target, connections and length, and where things run.
#[derive(Clone, Copy, Debug)]
pub struct WrkRun {
    pub port: u16,
    pub connections: u32,
    pub secs: u64,
    /// `Connection: close` on every request (a connection per request).
    pub close: bool,
    pub client_core: usize,
    pub server_core: usize,
    /// The server process, for its CPU time.
    pub server_pid: Option<u32>,
}

/// Runs wrk from the peer namespace, pinned to the client core.
pub fn run_wrk(pair: &VethPair, w: &WrkRun) -> anyhow::Result<WrkResult> {
    let WrkRun {
        port,
        connections,
        secs,
        close,
        client_core,
        server_core,
        server_pid,
    } = *w;
    let script = std::env::temp_dir().join(format!("fastpath-wrk-{}.lua", std::process::id()));
    std::fs::write(&script, WRK_SCRIPT)?;
    let mut cmd = pair.client_command("taskset");
    cmd.args(["-c", &client_core.to_string(), "wrk", "-t1"])
        .arg(format!("-c{connections}"))
        .arg(format!("-d{secs}s"))
        .args(["--timeout", "5s", "-s"])
        .arg(&script);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(format!("http://{SERVER_ADDR}:{port}/{SMALL_FILE}"));
    let sampler = CpuSampler::start(server_pid);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context("cannot run wrk (install it with `cargo xtask deps`)")?;
    let cpu = sampler.finish(None, Some(server_core), Some(client_core));
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "wrk failed: {}{}",
            text.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    parse_wrk(&text, cpu)
}

/// Reads the `FPTOTAL`/`FPPCT` lines and wrk's own summary lines.
pub fn parse_wrk(text: &str, cpu: CpuUse) -> anyhow::Result<WrkResult> {
    let total = text
        .lines()
        .find_map(|l| l.strip_prefix("FPTOTAL "))
        .context("wrk printed no totals (its Lua script did not run)")?;
    let f: Vec<u64> = total
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    anyhow::ensure!(f.len() == 7, "wrk totals {total:?}");
    let (requests, micros) = (f[0], f[1].max(1));
    let socket_errors = f[2] + f[3] + f[4] + f[6];
    let non_2xx = f[5];
    let pcts: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("FPPCT "))
        .filter_map(|l| {
            let (p, v) = l.split_once(' ')?;
            Some((p.parse().ok()?, v.trim().parse().ok()?))
        })
        .collect();
    // Each percentile step holds its share of the requests at that step's value (µs → ns).
    let mut latency = new_histogram();
    let mut last = 0.0;
    for &(p, us) in &pcts {
        let share = ((p - last) / 100.0 * requests as f64).round() as u64;
        if share > 0 {
            latency.record_n(us.max(1) * 1000, share).ok();
        }
        last = p;
    }
    let secs = micros as f64 / 1e6;
    Ok(WrkResult {
        requests,
        secs,
        rate: requests as f64 / secs,
        socket_errors,
        non_2xx,
        percentiles_us: report::percentiles_us(&latency),
        latency,
        cpu,
    })
}

/// The test bed's line rate: `fastpath blast` from the server namespace to `fastpath echo
/// --udp-sink` on the peer's veth; the receiver's count over the sender's window.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct LineRate {
    /// UDP payload bytes per second that reached the receiver.
    pub delivered_payload_bytes_per_sec: f64,
    /// Ethernet bytes per second the sender's ring completed.
    pub sent_bytes_per_sec: f64,
    pub sent_frames: u64,
    pub received_frames: u64,
}

pub fn line_rate(pair: &VethPair, secs: u64, core: usize) -> anyhow::Result<LineRate> {
    let bin = fastpath_binary()?;
    let control = std::env::temp_dir().join(format!(
        "fastpath-sink-{}-{}.sock",
        pair.client.iface,
        std::process::id()
    ));
    let log = std::env::temp_dir().join(format!("fastpath-sink-{}.log", std::process::id()));
    let receiver_core = if core == 0 { 1 } else { 0 };
    let child = pair
        .client_command(bin.to_str().context("non-UTF-8 path")?)
        .args(["echo", "--iface", &pair.client.iface, "--udp-sink"])
        .arg(SINK_PORT.to_string())
        .args(["--queues", "1", "--cpus", &receiver_core.to_string()])
        // Spinning keeps its fill ring stocked: a sleeping receiver would drop what the
        // sender pushed, and the line rate would measure the receiver.
        .args(["--idle", "busy", "--frames", "16384"])
        .arg("--control")
        .arg(&control)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut receiver = ChildGuard::new("line-rate receiver", child);
    let start = Instant::now();
    while crate::process::stats_json(&control).is_err() {
        if receiver.exited() || start.elapsed() > Duration::from_secs(15) {
            bail!(
                "the line-rate receiver did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default().trim()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rx = |control: &Path| -> u64 {
        crate::process::stats_json(control)
            .ok()
            .and_then(|v| {
                v["queues"].as_array().map(|qs| {
                    qs.iter()
                        .map(|q| q["rx"].as_u64().unwrap_or(0))
                        .sum::<u64>()
                })
            })
            .unwrap_or(0)
    };
    let before = rx(&control);
    let out = pair
        .server_command("taskset")
        .args(["-c", &core.to_string()])
        .arg(&bin)
        .args(["blast", "--iface", &pair.server.iface])
        .arg("--src")
        .arg(format!("{SERVER_ADDR}:9"))
        .arg("--dst")
        .arg(format!("{CLIENT_ADDR}:{SINK_PORT}"))
        .arg("--dst-mac")
        .arg(fmt_mac(&pair.client.mac))
        .arg("--duration")
        .arg(secs.to_string())
        .output()?;
    if !out.status.success() {
        bail!(
            "fastpath blast failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let received = rx(&control) - before;
    receiver.stop();
    let _ = std::fs::remove_file(&log);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let secs = v["secs"].as_f64().unwrap_or(1.0).max(1e-6);
    let frames = v["frames"].as_u64().unwrap_or(0);
    let frame_len = v["bytes"].as_u64().unwrap_or(0) / frames.max(1);
    let payload = frame_len.saturating_sub(14 + 20 + 8);
    Ok(LineRate {
        delivered_payload_bytes_per_sec: (received.min(frames) * payload) as f64 / secs,
        sent_bytes_per_sec: v["bytes_per_sec"].as_f64().unwrap_or(0.0),
        sent_frames: frames,
        received_frames: received,
    })
}

/// The `http` scenario's knobs.
#[derive(Clone, Debug, serde::Serialize)]
pub struct HttpSettings {
    pub duration_secs: u64,
    pub rounds: u32,
    pub connections: u32,
    pub server_core: usize,
    pub client_core: usize,
    pub fastpath_args: Vec<String>,
    #[serde(skip)]
    pub out: PathBuf,
    pub command: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum HttpSystem {
    Fastpath,
    Nginx,
}

impl HttpSystem {
    fn name(self) -> &'static str {
        match self {
            HttpSystem::Fastpath => "fastpath",
            HttpSystem::Nginx => "nginx",
        }
    }

    fn port(self) -> u16 {
        match self {
            HttpSystem::Fastpath => FASTPATH_PORT,
            HttpSystem::Nginx => NGINX_PORT,
        }
    }
}

/// One system running on the pair.
enum Running {
    Fastpath(FastpathProcess),
    Nginx(Nginx),
}

impl Running {
    fn start(
        system: HttpSystem,
        pair: &VethPair,
        site: &SiteDir,
        s: &HttpSettings,
    ) -> anyhow::Result<Self> {
        Ok(match system {
            HttpSystem::Fastpath => Running::Fastpath(start_fastpath(
                pair,
                &site.path,
                s.server_core,
                &s.fastpath_args,
            )?),
            HttpSystem::Nginx => Running::Nginx(Nginx::start(pair, &site.path, s.server_core)?),
        })
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Running::Fastpath(p) => p.pid(),
            Running::Nginx(n) => n.pid(),
        }
    }
}

/// A progress bar over the planned seconds.
fn progress_bar(total_secs: u64, label: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total_secs.max(1));
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:40}] {msg} ({elapsed} of ~{duration})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// wrk for `secs` with the bar moving each second (wrk runs on its own thread).
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per mode, all named"
)]
fn wrk_with_progress(
    bar: &indicatif::ProgressBar,
    pair: &VethPair,
    system: HttpSystem,
    connections: u32,
    secs: u64,
    close: bool,
    server_pid: Option<u32>,
    s: &HttpSettings,
) -> anyhow::Result<WrkResult> {
    bar.set_message(format!(
        "{} {}",
        system.name(),
        if close { "close" } else { "keep-alive" }
    ));
    let start = bar.position();
    std::thread::scope(|scope| {
        let job = scope.spawn(|| {
            run_wrk(
                pair,
                &WrkRun {
                    port: system.port(),
                    connections,
                    secs,
                    close,
                    client_core: s.client_core,
                    server_core: s.server_core,
                    server_pid,
                },
            )
        });
        let t0 = Instant::now();
        while !job.is_finished() {
            bar.set_position(start + t0.elapsed().as_secs().min(secs));
            std::thread::sleep(Duration::from_millis(200));
        }
        bar.set_position(start + secs);
        job.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Runs the scenario: for each round, fastpath then nginx, each with keep-alive and
/// `Connection: close` wrk loads; then downloads and the line rate. Writes the report.
pub fn run(s: &HttpSettings, stop: &AtomicBool) -> anyhow::Result<(Report, String)> {
    require_tools()?;
    let pair = VethPair::create(VethConfig::default())?;
    let site = SiteDir::create()?;
    let large = large_bytes();
    let systems = [HttpSystem::Fastpath, HttpSystem::Nginx];
    let planned = u64::from(s.rounds) * 2 * 2 * (s.duration_secs + 2) + 12;
    let bar = progress_bar(planned, "http");
    let mut series: BTreeMap<(&str, &str), Series> = BTreeMap::new();
    let mut runs = Vec::new();
    let mut notes = Vec::new();
    let mut downloads: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut cpu_per_request: BTreeMap<(&str, &str), Vec<f64>> = BTreeMap::new();
    for round in 0..s.rounds {
        for system in systems {
            if stop.load(Ordering::Relaxed) {
                bail!("stopped");
            }
            let running = Running::start(system, &pair, &site, s)?;
            for (client, close) in [("wrk-keepalive", false), ("wrk-close", true)] {
                let r = wrk_with_progress(
                    &bar,
                    &pair,
                    system,
                    s.connections,
                    s.duration_secs,
                    close,
                    running.pid(),
                    s,
                )?;
                if r.socket_errors > 0 || r.non_2xx > 0 {
                    notes.push(format!(
                        "round {round}: {} {client}: {} socket errors, {} non-2xx responses",
                        system.name(),
                        r.socket_errors,
                        r.non_2xx
                    ));
                }
                let busy = r.cpu.cores.get(&s.server_core).copied().unwrap_or(0.0);
                cpu_per_request
                    .entry((system.name(), client))
                    .or_default()
                    .push(busy / 100.0 * r.secs / r.requests.max(1) as f64 * 1e6);
                series
                    .entry((system.name(), client))
                    .or_insert_with(|| Series::new(system.name(), client))
                    .add_round(r.latency.clone(), Duration::from_secs_f64(r.secs), r.rate);
                runs.push(RunReport {
                    system: system.name().into(),
                    client: client.into(),
                    round,
                    rate_pps: r.rate,
                    send_rate_pps: r.rate,
                    sent: r.requests,
                    received: r.requests,
                    lost: r.socket_errors + r.non_2xx,
                    duration_secs: r.secs,
                    samples: r.requests,
                    percentiles_us: r.percentiles_us.clone(),
                    cpu: r.cpu.clone(),
                });
            }
            for _ in 0..2 {
                let (speed, same) = curl_download(&pair, system.port(), &large)?;
                if !same {
                    bail!(
                        "{}: the 10 MiB download was not byte-identical",
                        system.name()
                    );
                }
                downloads.entry(system.name()).or_default().push(speed);
            }
            bar.inc(2);
            drop(running);
        }
    }
    bar.set_message("line rate");
    let line = line_rate(&pair, 3, s.server_core)?;
    bar.finish_and_clear();

    let series: Vec<Series> = series.into_values().collect();
    let summary: Vec<SeriesSummary> = report::summarize("http", &series);
    let ratios: Vec<Ratio> = ["wrk-keepalive", "wrk-close"]
        .into_iter()
        .filter_map(|client| Ratio::between(&summary, client, "fastpath", "nginx"))
        .collect();
    let ratio = |client: &str, key: &str| {
        ratios
            .iter()
            .find(|r| r.client == client)
            .and_then(|r| r.values.get(key).copied())
    };
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(0.0)
    };
    let fp_download = median(downloads.get("fastpath").map_or(&[][..], Vec::as_slice));
    let nginx_download = median(downloads.get("nginx").map_or(&[][..], Vec::as_slice));
    let mut goals = Vec::new();
    let mut goal = |name: &str, measured: Option<f64>, target: &str, met: fn(f64) -> bool| {
        if let Some(m) = measured {
            goals.push(Goal::new(name, m, target, met(m)));
        }
    };
    goal(
        "keep-alive requests/s, fastpath/nginx (wrk -c50)",
        ratio("wrk-keepalive", "rate"),
        ">= 2.0",
        |m| m >= 2.0,
    );
    goal(
        "keep-alive p99, fastpath/nginx",
        ratio("wrk-keepalive", "p99"),
        "<= 0.5",
        |m| m <= 0.5,
    );
    goal(
        "Connection: close rate, fastpath/nginx",
        ratio("wrk-close", "rate"),
        ">= 3.0",
        |m| m >= 3.0,
    );
    goal(
        "10 MiB download by curl, fastpath / line rate",
        Some(fp_download / line.delivered_payload_bytes_per_sec.max(1.0)),
        ">= 0.8",
        |m| m >= 0.8,
    );
    notes.push(format!(
        "line rate (fastpath blast → fastpath echo --udp-sink on the peer, 1514-byte frames, 3 s): {:.0} MB/s of UDP payload delivered ({} of {} frames sent arrived; sender ring {:.0} MB/s)",
        line.delivered_payload_bytes_per_sec / 1e6,
        line.received_frames,
        line.sent_frames,
        line.sent_bytes_per_sec / 1e6
    ));
    notes.push(format!(
        "10 MiB download by curl, median: fastpath {:.0} MB/s ({:.2}× line rate), nginx {:.0} MB/s ({:.2}× line rate)",
        fp_download / 1e6,
        fp_download / line.delivered_payload_bytes_per_sec.max(1.0),
        nginx_download / 1e6,
        nginx_download / line.delivered_payload_bytes_per_sec.max(1.0)
    ));
    for ((system, client), v) in &cpu_per_request {
        notes.push(format!(
            "{system} {client}: server core busy time per request {:.2} µs (mean of rounds; fastpath's worker spins when idle, so its figure includes spinning)",
            v.iter().sum::<f64>() / v.len().max(1) as f64
        ));
    }
    for r in runs.iter().filter(|r| r.cpu.saturated == "client") {
        notes.push(format!(
            "round {} {} {}: wrk's core was the limit (client core {:.0}% busy)",
            r.round,
            r.system,
            r.client,
            r.cpu.cores.get(&s.client_core).copied().unwrap_or(0.0)
        ));
    }
    let mut report = Report {
        scenario: "http".into(),
        command: s.command.clone(),
        machine: Machine::read(1, 1500, true),
        settings: serde_json::to_value(s)?,
        runs,
        summary,
        ratios,
        goals,
        notes,
    };
    let table = report::write_all(&s.out, &mut report, &series)?;
    std::fs::File::create(s.out.join("line-rate.json"))?
        .write_all(serde_json::to_string_pretty(&line)?.as_bytes())?;
    drop(pair);
    Ok((report, table))
}

/// The README's main job: `fastpath serve` on a fresh veth pair, checked with curl, then
/// wrk for `secs` against it and against nginx (one worker each, alone on the pair in
/// turn), with a report and plot in `out`. Fails if a check fails.
pub fn demo(secs: u64, out: &Path, stop: &AtomicBool) -> anyhow::Result<()> {
    require_tools()?;
    let pair = VethPair::create(VethConfig::default())?;
    let site = SiteDir::create()?;
    let cores = crate::machine::online_cores();
    let (server_core, client_core) = if cores >= 2 { (1, 0) } else { (0, 0) };
    let s = HttpSettings {
        duration_secs: secs,
        rounds: 1,
        connections: 50,
        server_core,
        client_core,
        fastpath_args: Vec::new(),
        out: out.to_path_buf(),
        command: "cargo xtask demo".into(),
    };
    println!("fastpath demo: HTTP on the fast path against nginx");
    println!(
        "  test bed: namespaces {} ({SERVER_ADDR}) and {} ({CLIENT_ADDR}) joined by veth {} ⇄ {}",
        pair.server.netns, pair.client.netns, pair.server.iface, pair.client.iface
    );
    println!(
        "  site: {} ({PAGE_FILE}, {SMALL_FILE}, {LARGE_FILE})",
        site.path.display()
    );
    let fastpath = Running::start(HttpSystem::Fastpath, &pair, &site, &s)?;
    println!(
        "  started: fastpath serve --iface {} --port {FASTPATH_PORT} --root {} --queues 1",
        pair.server.iface,
        site.path.display()
    );
    let mut failures = Vec::new();
    let page = std::fs::read(site.file(PAGE_FILE))?;
    let got = pair
        .client_command("curl")
        .args(["-s", "-S", "-m", "5", "-D", "-"])
        .arg(format!("http://{SERVER_ADDR}:{FASTPATH_PORT}/{PAGE_FILE}"))
        .output()?;
    let text = String::from_utf8_lossy(&got.stdout).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").trim().to_string();
    let page_ok = status.starts_with("HTTP/1.1 200") && body.as_bytes() == page.as_slice();
    println!(
        "  curl http://{SERVER_ADDR}:{FASTPATH_PORT}/{PAGE_FILE}: {status}, {} bytes, {}",
        body.len(),
        if page_ok {
            "identical to the file"
        } else {
            "WRONG"
        }
    );
    if !page_ok {
        failures.push(format!("{PAGE_FILE}: {status}"));
    }
    let large = large_bytes();
    let (speed, same) = curl_download(&pair, FASTPATH_PORT, &large)?;
    println!(
        "  curl http://{SERVER_ADDR}:{FASTPATH_PORT}/{LARGE_FILE}: 10 MiB at {:.0} MB/s, {}",
        speed / 1e6,
        if same { "byte-identical" } else { "WRONG" }
    );
    if !same {
        failures.push(format!("{LARGE_FILE} differs"));
    }
    let ping = pair
        .client_command("ping")
        .args([
            "-c",
            "2",
            "-i",
            "0.2",
            "-W",
            "1",
            "-q",
            &SERVER_ADDR.to_string(),
        ])
        .output()?;
    println!(
        "  ping {SERVER_ADDR} (not steered, answered by the kernel): {}",
        if ping.status.success() {
            "ok"
        } else {
            "FAILED"
        }
    );
    if !ping.status.success() {
        failures.push("ping".into());
    }
    if !failures.is_empty() {
        bail!("the checks failed: {}", failures.join("; "));
    }

    println!(
        "\nwrk -t1 -c{} -d{secs}s from {}, each server with one worker on core {server_core} (wrk on core {client_core}):",
        s.connections, pair.client.netns
    );
    let bar = progress_bar(2 * secs, "wrk");
    let mut results = Vec::new();
    let fp = wrk_with_progress(
        &bar,
        &pair,
        HttpSystem::Fastpath,
        s.connections,
        secs,
        false,
        fastpath.pid(),
        &s,
    )?;
    drop(fastpath);
    if stop.load(Ordering::Relaxed) {
        bail!("stopped");
    }
    let nginx = Running::start(HttpSystem::Nginx, &pair, &site, &s)?;
    let ng = wrk_with_progress(
        &bar,
        &pair,
        HttpSystem::Nginx,
        s.connections,
        secs,
        false,
        nginx.pid(),
        &s,
    )?;
    drop(nginx);
    bar.finish_and_clear();
    results.push((HttpSystem::Fastpath, fp));
    results.push((HttpSystem::Nginx, ng));
    println!(
        "  {:<9} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "server", "requests/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "errors"
    );
    for (system, r) in &results {
        let p = &r.percentiles_us;
        println!(
            "  {:<9} {:>12.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>9.0} {:>8}",
            system.name(),
            r.rate,
            p["p50"],
            p["p90"],
            p["p99"],
            p["p99.9"],
            p["max"],
            r.socket_errors + r.non_2xx
        );
    }
    let (f, n) = (&results[0].1, &results[1].1);
    println!(
        "  fastpath/nginx: requests/s {:.2}×, p50 {:.2}×, p99 {:.2}×",
        f.rate / n.rate.max(1e-9),
        f.percentiles_us["p50"] / n.percentiles_us["p50"].max(1e-9),
        f.percentiles_us["p99"] / n.percentiles_us["p99"].max(1e-9)
    );
    let series: Vec<Series> = results
        .iter()
        .map(|(system, r)| Series {
            system: system.name().into(),
            client: "wrk-keepalive".into(),
            rounds: vec![(r.latency.clone(), Duration::from_secs_f64(r.secs))],
            rates: vec![r.rate],
        })
        .collect();
    let summary = report::summarize("demo", &series);
    let mut report = Report {
        scenario: "demo".into(),
        command: s.command.clone(),
        machine: Machine::read(1, 1500, true),
        settings: serde_json::to_value(&s)?,
        runs: results
            .iter()
            .map(|(system, r)| RunReport {
                system: system.name().into(),
                client: "wrk-keepalive".into(),
                round: 0,
                rate_pps: r.rate,
                send_rate_pps: r.rate,
                sent: r.requests,
                received: r.requests,
                lost: r.socket_errors + r.non_2xx,
                duration_secs: r.secs,
                samples: r.requests,
                percentiles_us: r.percentiles_us.clone(),
                cpu: r.cpu.clone(),
            })
            .collect(),
        summary,
        ratios: Vec::new(),
        goals: Vec::new(),
        notes: vec![
            "latency percentiles rebuilt from wrk's own (wrk, not wrk2: closed loop)".into(),
        ],
    };
    report::write_all(out, &mut report, &series)?;
    println!("  report, .hgrm files and latency plot: {}", out.display());
    for (system, r) in &results {
        if r.socket_errors + r.non_2xx > 0 {
            bail!(
                "{}: {} socket errors and {} non-2xx responses under wrk",
                system.name(),
                r.socket_errors,
                r.non_2xx
            );
        }
    }
    drop(site);
    drop(pair);
    println!("  removed the namespaces, the veth pair and the site");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_becomes_a_histogram_with_its_percentiles() {
        let mut text = String::from("Running 1s test\nFPTOTAL 10000 2000000 0 0 0 3 0\n");
        for p in 1..=99 {
            text.push_str(&format!("FPPCT {p}.000 {}\n", 100 + p));
        }
        text.push_str("FPPCT 99.990 500\nFPPCT 100.000 900\n");
        let r = parse_wrk(&text, CpuUse::default()).unwrap();
        assert_eq!(r.requests, 10_000);
        assert_eq!(r.non_2xx, 3);
        assert_eq!(r.socket_errors, 0);
        assert!((r.rate - 5000.0).abs() < 1e-6);
        // About the request count, within the rounding of each step.
        assert!(
            (r.latency.len() as i64 - 10_000).abs() <= 100,
            "{}",
            r.latency.len()
        );
        let p50 = r.percentiles_us["p50"];
        assert!((149.0..=152.0).contains(&p50), "p50 {p50}");
        assert!(r.percentiles_us["max"] >= 899.0);
        assert!(parse_wrk("no totals", CpuUse::default()).is_err());
    }
}
