//! The demo, the README's main job: `fastpath serve` on a fresh veth pair, checked with
//! curl and ping, then wrk against it and against nginx, with a report and plot.

use std::{
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::bail;

use super::{
    FASTPATH_PORT, HttpSettings, LARGE_FILE, PAGE_FILE, SMALL_FILE, SiteDir, WrkResult,
    curl_download, large_bytes, require_tools,
    systems::{HttpSystem, Running},
    wrk::{progress_bar, wrk_with_progress},
};
use crate::{
    machine::{Cores, Machine},
    netns::{CLIENT_ADDR, SERVER_ADDR, VethConfig, VethPair},
    report::{self, Report, RunReport, Series},
};

/// The README's main job: `fastpath serve` on a fresh veth pair, checked with curl, then
/// wrk for `secs` against it and against nginx (one worker each, alone on the pair in
/// turn), with a report and plot in `out`. Fails if a check fails.
pub fn demo(secs: u64, out: &Path, stop: &AtomicBool) -> anyhow::Result<()> {
    require_tools()?;
    let pair = VethPair::create(VethConfig::default())?;
    let site = SiteDir::create()?;
    let cores = Cores::pick(None, None);
    let s = HttpSettings {
        duration_secs: secs,
        rounds: 1,
        connections: 50,
        server_core: cores.server,
        client_core: cores.client,
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
    let failures = checks(&pair, &site)?;
    if !failures.is_empty() {
        bail!("the checks failed: {}", failures.join("; "));
    }

    let results = compare(&pair, &site, &s, fastpath, stop)?;
    print_results(&results);
    write_report(out, &s, &results)?;
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

/// The page, the 10 MiB file and a ping, each printed as it goes; what failed.
fn checks(pair: &VethPair, site: &SiteDir) -> anyhow::Result<Vec<String>> {
    let mut failures = Vec::new();
    failures.extend(check_page(pair, site)?);
    failures.extend(check_download(pair)?);
    failures.extend(check_ping(pair)?);
    Ok(failures)
}

/// The page by curl from fastpath: status 200 and the file's bytes.
fn check_page(pair: &VethPair, site: &SiteDir) -> anyhow::Result<Option<String>> {
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
    Ok((!page_ok).then(|| format!("{PAGE_FILE}: {status}")))
}

/// The 10 MiB file by curl from fastpath, byte for byte.
fn check_download(pair: &VethPair) -> anyhow::Result<Option<String>> {
    let large = large_bytes();
    let (speed, same) = curl_download(pair, FASTPATH_PORT, &large)?;
    println!(
        "  curl http://{SERVER_ADDR}:{FASTPATH_PORT}/{LARGE_FILE}: 10 MiB at {:.0} MB/s, {}",
        speed / 1e6,
        if same { "byte-identical" } else { "WRONG" }
    );
    Ok((!same).then(|| format!("{LARGE_FILE} differs")))
}

/// A ping of the server address: not steered, the kernel still answers it.
fn check_ping(pair: &VethPair) -> anyhow::Result<Option<String>> {
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
    Ok((!ping.status.success()).then(|| "ping".into()))
}

/// wrk against fastpath (already running; stopped after), then against nginx.
fn compare(
    pair: &VethPair,
    site: &SiteDir,
    s: &HttpSettings,
    fastpath: Running,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<(HttpSystem, WrkResult)>> {
    let secs = s.duration_secs;
    println!(
        "\nwrk -t1 -c{} -d{secs}s from {}, each server with one worker on core {} (wrk on core {}):",
        s.connections, pair.client.netns, s.server_core, s.client_core
    );
    let bar = progress_bar(2 * secs, "wrk");
    let mut results = Vec::new();
    let fp = wrk_with_progress(
        &bar,
        pair,
        HttpSystem::Fastpath,
        s.connections,
        secs,
        false,
        fastpath.pid(),
        s,
    )?;
    drop(fastpath);
    if stop.load(Ordering::Relaxed) {
        bail!("stopped");
    }
    let nginx = Running::start(HttpSystem::Nginx, pair, site, s)?;
    let ng = wrk_with_progress(
        &bar,
        pair,
        HttpSystem::Nginx,
        s.connections,
        secs,
        false,
        nginx.pid(),
        s,
    )?;
    drop(nginx);
    bar.finish_and_clear();
    results.push((HttpSystem::Fastpath, fp));
    results.push((HttpSystem::Nginx, ng));
    Ok(results)
}

/// A row per server, then fastpath/nginx.
fn print_results(results: &[(HttpSystem, WrkResult)]) {
    println!(
        "  {:<9} {:>12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "server", "requests/s", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "max µs", "errors"
    );
    for (system, r) in results {
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
}

/// The demo's report, as a scenario's: one keep-alive run per server.
fn write_report(
    out: &Path,
    s: &HttpSettings,
    results: &[(HttpSystem, WrkResult)],
) -> anyhow::Result<()> {
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
        settings: serde_json::to_value(s)?,
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
    Ok(())
}
