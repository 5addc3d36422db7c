//! The test bed's line rate: what AF_XDP alone pushes through the pair, the bound for a
//! download.

use std::{
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{
    netns::{CLIENT_ADDR, SERVER_ADDR, VethPair, fmt_mac},
    process::{ChildGuard, fastpath_binary},
};

/// Where the line-rate receiver listens in the peer namespace.
const SINK_PORT: u16 = 9999;

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
