//! wrk from the peer namespace, pinned to the client core: one load, its output read
//! back into a histogram, and a progress bar that moves while it runs.

use std::{
    collections::BTreeMap,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

use super::{HttpSettings, SMALL_FILE, systems::HttpSystem};
use crate::{
    generator::new_histogram,
    machine::{CpuSampler, CpuUse},
    netns::{SERVER_ADDR, VethPair},
    report,
};

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

/// A progress bar over the planned seconds.
pub(super) fn progress_bar(total_secs: u64, label: &str) -> indicatif::ProgressBar {
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
pub(super) fn wrk_with_progress(
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
