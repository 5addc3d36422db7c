//! curl from the peer namespace: one GET's status, and a download checked byte for byte.

use anyhow::{Context, bail};

use super::LARGE_FILE;
use crate::netns::{SERVER_ADDR, VethPair};

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
