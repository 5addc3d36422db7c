//! The `http` scenario: for each round, fastpath then nginx, each with keep-alive and
//! `Connection: close` wrk loads and two downloads; then the line rate; then the report,
//! with fastpath/nginx ratios, the goals and what limited each run.

use std::{
    collections::BTreeMap,
    io::Write,
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::bail;
use indicatif::ProgressBar;

use super::{
    LineRate, SiteDir, WrkResult, curl_download, large_bytes, line_rate, require_tools,
    systems::{HttpSystem, Running},
    wrk::{progress_bar, wrk_with_progress},
};
use crate::{
    machine::Machine,
    netns::{VethConfig, VethPair},
    report::{self, Goal, Ratio, Report, RunReport, Series},
};

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

/// The wrk loads of each system in each round: the client's label, and whether every
/// request has `Connection: close`.
const LOADS: [(&str, bool); 2] = [("wrk-keepalive", false), ("wrk-close", true)];

/// What every measurement shares.
struct Bed<'a> {
    pair: &'a VethPair,
    site: &'a SiteDir,
    /// The 10 MiB file's bytes, each download's check.
    large: &'a [u8],
    s: &'a HttpSettings,
    bar: &'a ProgressBar,
}

/// Everything the rounds recorded, for the report.
#[derive(Default)]
struct Rounds {
    series: BTreeMap<(&'static str, &'static str), Series>,
    runs: Vec<RunReport>,
    notes: Vec<String>,
    /// Bytes per second of each download, by system.
    downloads: BTreeMap<&'static str, Vec<f64>>,
    /// The server core's busy µs per request, by (system, client), a value a round.
    cpu_per_request: BTreeMap<(&'static str, &'static str), Vec<f64>>,
}

/// Runs the scenario: for each round, fastpath then nginx, each with keep-alive and
/// `Connection: close` wrk loads; then downloads and the line rate. Writes the report.
pub fn run(s: &HttpSettings, stop: &AtomicBool) -> anyhow::Result<(Report, String)> {
    require_tools()?;
    let pair = VethPair::create(VethConfig::default())?;
    let site = SiteDir::create()?;
    let large = large_bytes();
    let planned = u64::from(s.rounds) * 2 * 2 * (s.duration_secs + 2) + 12;
    let bar = progress_bar(planned, "http");
    let bed = Bed {
        pair: &pair,
        site: &site,
        large: &large,
        s,
        bar: &bar,
    };
    let mut rounds = Rounds::default();
    for round in 0..s.rounds {
        for system in [HttpSystem::Fastpath, HttpSystem::Nginx] {
            if stop.load(Ordering::Relaxed) {
                bail!("stopped");
            }
            rounds.measure(&bed, system, round)?;
        }
    }
    bar.set_message("line rate");
    let line = line_rate(&pair, 3, s.server_core)?;
    bar.finish_and_clear();

    let (mut report, series) = rounds.into_report(s, &line)?;
    let table = report::write_all(&s.out, &mut report, &series)?;
    std::fs::File::create(s.out.join("line-rate.json"))?
        .write_all(serde_json::to_string_pretty(&line)?.as_bytes())?;
    drop(pair);
    Ok((report, table))
}

impl Rounds {
    /// One system in one round: its wrk loads, then two downloads checked byte for byte.
    fn measure(&mut self, bed: &Bed<'_>, system: HttpSystem, round: u32) -> anyhow::Result<()> {
        let s = bed.s;
        let running = Running::start(system, bed.pair, bed.site, s)?;
        for (client, close) in LOADS {
            let r = wrk_with_progress(
                bed.bar,
                bed.pair,
                system,
                s.connections,
                s.duration_secs,
                close,
                running.pid(),
                s,
            )?;
            self.record(round, system, client, &r, s.server_core);
        }
        for _ in 0..2 {
            let (speed, same) = curl_download(bed.pair, system.port(), bed.large)?;
            if !same {
                bail!(
                    "{}: the 10 MiB download was not byte-identical",
                    system.name()
                );
            }
            self.downloads.entry(system.name()).or_default().push(speed);
        }
        bed.bar.inc(2);
        drop(running);
        Ok(())
    }

    /// One wrk load: a note if it saw errors, the server's CPU per request, its round of
    /// the series, and its run.
    fn record(
        &mut self,
        round: u32,
        system: HttpSystem,
        client: &'static str,
        r: &WrkResult,
        server_core: usize,
    ) {
        if r.socket_errors > 0 || r.non_2xx > 0 {
            self.notes.push(format!(
                "round {round}: {} {client}: {} socket errors, {} non-2xx responses",
                system.name(),
                r.socket_errors,
                r.non_2xx
            ));
        }
        let busy = r.cpu.cores.get(&server_core).copied().unwrap_or(0.0);
        self.cpu_per_request
            .entry((system.name(), client))
            .or_default()
            .push(busy / 100.0 * r.secs / r.requests.max(1) as f64 * 1e6);
        self.series
            .entry((system.name(), client))
            .or_insert_with(|| Series::new(system.name(), client))
            .add_round(r.latency.clone(), Duration::from_secs_f64(r.secs), r.rate);
        self.runs.push(RunReport {
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

    /// The report of the rounds (its files not yet written), and their series.
    fn into_report(
        self,
        s: &HttpSettings,
        line: &LineRate,
    ) -> anyhow::Result<(Report, Vec<Series>)> {
        let Rounds {
            series,
            runs,
            mut notes,
            downloads,
            cpu_per_request,
        } = self;
        let series: Vec<Series> = series.into_values().collect();
        let summary = report::summarize("http", &series);
        let ratios: Vec<Ratio> = LOADS
            .into_iter()
            .filter_map(|(client, _)| Ratio::between(&summary, client, "fastpath", "nginx"))
            .collect();
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        let fp_download = median(downloads.get("fastpath").map_or(&[][..], Vec::as_slice));
        let nginx_download = median(downloads.get("nginx").map_or(&[][..], Vec::as_slice));
        let goals = goals(&ratios, fp_download, line);
        notes.extend(line_notes(line, fp_download, nginx_download));
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
        let report = Report {
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
        Ok((report, series))
    }
}

/// The scenario's goals: fastpath/nginx from the ratios, and the download against the
/// line rate.
fn goals(ratios: &[Ratio], fp_download: f64, line: &LineRate) -> Vec<Goal> {
    let ratio = |client: &str, key: &str| {
        ratios
            .iter()
            .find(|r| r.client == client)
            .and_then(|r| r.values.get(key).copied())
    };
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
    goals
}

/// The line rate, and each system's median download against it.
fn line_notes(line: &LineRate, fp_download: f64, nginx_download: f64) -> [String; 2] {
    [
        format!(
            "line rate (fastpath blast → fastpath echo --udp-sink on the peer, 1514-byte frames, 3 s): {:.0} MB/s of UDP payload delivered ({} of {} frames sent arrived; sender ring {:.0} MB/s)",
            line.delivered_payload_bytes_per_sec / 1e6,
            line.received_frames,
            line.sent_frames,
            line.sent_bytes_per_sec / 1e6
        ),
        format!(
            "10 MiB download by curl, median: fastpath {:.0} MB/s ({:.2}× line rate), nginx {:.0} MB/s ({:.2}× line rate)",
            fp_download / 1e6,
            fp_download / line.delivered_payload_bytes_per_sec.max(1.0),
            nginx_download / 1e6,
            nginx_download / line.delivered_payload_bytes_per_sec.max(1.0)
        ),
    ]
}
