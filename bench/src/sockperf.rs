//! sockperf as a client (a real one nobody here wrote) and as the kernel's ping-pong server.
//!
//! The client's `--full-log` records each message's send and receive times; we read those
//! into the same HdrHistogram as our own generator (round-trip time = rx − tx), so both
//! clients are reported the same way.

use std::{
    path::Path,
    process::Stdio,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;

use crate::{
    generator::new_histogram,
    netns::{VethPair, netns_command},
    process::ChildGuard,
};

/// Fails with the fix if sockperf is not installed.
pub fn require() -> anyhow::Result<()> {
    crate::process::require_program("sockperf", "sockperf").map(drop)
}

pub fn start_server(pair: &VethPair, port: u16, cpu: usize) -> anyhow::Result<ChildGuard> {
    let child = netns_command(&pair.server.netns, "taskset")
        .args([
            "-c",
            &cpu.to_string(),
            "sockperf",
            "server",
            "-i",
            &pair.server.addr.to_string(),
            "-p",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting sockperf server")?;
    Ok(ChildGuard::new("sockperf server", child))
}

pub struct SockperfResult {
    pub histogram: Histogram<u64>,
    /// sockperf's own counts over the valid duration (after its warm-up), as its summary
    /// line `[Valid Duration] … SentMessages=N; ReceivedMessages=M` says.
    pub received: u64,
    pub sent: u64,
    /// Sent and never answered: `sent − received`.
    pub lost: u64,
    pub duration: Duration,
    pub pid: u32,
    pub cpu_secs: Option<f64>,
}

/// One `sockperf ping-pong` run.
pub struct PingPong<'a> {
    pub port: u16,
    pub seconds: u64,
    pub payload: usize,
    pub cpu: usize,
    /// Where sockperf writes its full log.
    pub log: &'a Path,
}

/// Runs `sockperf ping-pong` from the client namespace and reads its full log.
pub fn ping_pong(
    pair: &VethPair,
    run: &PingPong,
    stop: &AtomicBool,
    on_tick: &mut dyn FnMut(),
) -> anyhow::Result<SockperfResult> {
    let PingPong {
        port,
        seconds,
        payload,
        cpu,
        log,
    } = *run;
    let child = netns_command(&pair.client.netns, "taskset")
        .args([
            "-c",
            &cpu.to_string(),
            "sockperf",
            "ping-pong",
            "-i",
            &pair.server.addr.to_string(),
            "-p",
            &port.to_string(),
            "-t",
            &seconds.to_string(),
            "--msg-size",
            &payload.to_string(),
            "--full-log",
        ])
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting sockperf ping-pong")?;
    let mut guard = ChildGuard::new("sockperf ping-pong", child);
    let pid = guard.pid().unwrap_or(0);
    let start = Instant::now();
    let limit = Duration::from_secs(seconds + 15);
    let mut cpu_secs = None;
    while !guard.exited() {
        if stop.load(Ordering::Relaxed) {
            guard.stop();
            bail!("interrupted");
        }
        if start.elapsed() > limit {
            guard.stop();
            bail!("sockperf ping-pong did not finish within {limit:?}");
        }
        cpu_secs = crate::machine::process_cpu_secs(pid).or(cpu_secs);
        on_tick();
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = guard.wait()?;
    if !status.success() {
        bail!("sockperf ping-pong failed with {status}");
    }
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let (histogram, first, last) = parse_full_log(&text)?;
    let (sent, received) = parse_message_counts(&text)?;
    Ok(SockperfResult {
        received,
        sent,
        lost: sent.saturating_sub(received),
        histogram,
        duration: Duration::from_secs_f64((last - first).max(1e-6)),
        pid,
        cpu_secs,
    })
}

/// Rows `packet, txTime, rxTime, rtt/2` (seconds, seconds, µs): returns RTT histogram in ns
/// and the first and last send times.
pub fn parse_full_log(text: &str) -> anyhow::Result<(Histogram<u64>, f64, f64)> {
    let mut h = new_histogram();
    let (mut first, mut last) = (f64::MAX, 0.0f64);
    for line in text.lines() {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 4 {
            continue;
        }
        let (Ok(_), Ok(tx), Ok(rx)) = (
            f[0].parse::<u64>(),
            f[1].parse::<f64>(),
            f[2].parse::<f64>(),
        ) else {
            continue;
        };
        if rx <= 0.0 || rx < tx {
            continue;
        }
        h.saturating_record((((rx - tx) * 1e9) as u64).max(1));
        first = first.min(tx);
        last = last.max(rx);
    }
    if h.is_empty() {
        bail!("sockperf's full log has no samples");
    }
    Ok((h, first, last))
}

/// sockperf's message counts over the valid duration, from the summary it writes at the top
/// of its full log: `sockperf: [Valid Duration] RunTime=0.552 sec; SentMessages=21329;
/// ReceivedMessages=21329`. The log's rows are only the answered messages, so the loss is
/// read here, not counted from them.
pub fn parse_message_counts(text: &str) -> anyhow::Result<(u64, u64)> {
    let count = |line: &str, key: &str| -> Option<u64> {
        let rest = &line[line.find(key)? + key.len()..];
        let digits = rest.split(|c: char| !c.is_ascii_digit()).next()?;
        digits.parse().ok()
    };
    text.lines()
        .filter(|l| l.contains("[Valid Duration]"))
        .find_map(|l| Some((count(l, "SentMessages=")?, count(l, "ReceivedMessages=")?)))
        .context("sockperf's full log has no `[Valid Duration] … SentMessages=N; ReceivedMessages=M` line, so the loss is unknown")
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_sent_and_received_from_the_valid_duration_line() {
        let text = "sockperf: [Total Run] RunTime=1.000 sec; Warm up time=400 msec; SentMessages=44416; ReceivedMessages=44415\n\
            sockperf: ========= Printing statistics for Server No: 0\n\
            sockperf: [Valid Duration] RunTime=0.552 sec; SentMessages=21329; ReceivedMessages=21300\n";
        assert_eq!(super::parse_message_counts(text).unwrap(), (21329, 21300));
        assert!(super::parse_message_counts("1, 2.0, 2.1, 50.0\n").is_err());
    }

    #[test]
    fn parses_full_log_rows() {
        let text = "header\n------\n1, 2.000000000, 2.000050000, 25.000\n2, 2.000050010, 2.000090010, 20.000\nbad, line\n";
        let (h, first, last) = super::parse_full_log(text).unwrap();
        assert_eq!(h.len(), 2);
        assert!((h.max() as f64 - 50_000.0).abs() < 100.0);
        assert!(first == 2.0 && (last - 2.00009001).abs() < 1e-9);
    }
}
