//! Reports, from generic pieces every scenario builds its own from: the common record of
//! a run (`Report`: runs, summary rows, ratios, goals, notes) and `report.json`, the
//! terminal table (`tables`), HdrHistogram percentile distributions (`.hgrm`, loadable in
//! the HdrHistogram plotter) and V2 interval logs (`.hlog`) (`histograms`), and plots
//! (`plots`: latency by percentile with every system overlaid, loss and p99 against
//! offered load, a congestion window; SVG, PNG too where rsvg-convert is). A scenario
//! with results of its own adds them as a `Section`. Nothing here knows any scenario.
//!
//! Latencies are round-trip times, recorded in nanoseconds and reported in microseconds.

mod histograms;
mod plots;
mod tables;

use std::{collections::BTreeMap, io::Write, path::Path, time::Duration};

use anyhow::Context;
use hdrhistogram::Histogram;
pub use histograms::{hgrm, parse_hgrm, write_histograms};
pub use plots::{LoadCurve, LoadPoint, plot_cwnd, plot_latency, plot_load, svg_to_png};
use serde::{Deserialize, Serialize};
pub use tables::table;

use crate::machine::{CpuUse, Machine};

pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 50.0),
    ("p90", 90.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
];

/// Percentiles and max, in microseconds.
pub fn percentiles_us(h: &Histogram<u64>) -> BTreeMap<String, f64> {
    let mut m: BTreeMap<String, f64> = PERCENTILES
        .iter()
        .map(|(name, p)| (name.to_string(), h.value_at_percentile(*p) as f64 / 1000.0))
        .collect();
    m.insert("max".into(), h.max() as f64 / 1000.0);
    m.insert("mean".into(), h.mean() / 1000.0);
    m
}

/// One measurement: a system (server) driven by a client for one round.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub system: String,
    pub client: String,
    pub round: u32,
    pub rate_pps: f64,
    pub send_rate_pps: f64,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub duration_secs: f64,
    pub samples: u64,
    pub percentiles_us: BTreeMap<String, f64>,
    pub cpu: CpuUse,
}

/// All rounds of one (client, system), histograms merged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeriesSummary {
    pub system: String,
    pub client: String,
    pub rounds: u32,
    pub rate_pps: f64,
    pub samples: u64,
    pub percentiles_us: BTreeMap<String, f64>,
    pub hgrm: String,
    pub hlog: String,
}

/// One row per (client, system): the rounds' histograms merged, the mean of their rates.
pub fn summarize(scenario: &str, series: &[Series]) -> Vec<SeriesSummary> {
    series
        .iter()
        .map(|se| {
            let merged = se.merged();
            let stem = se.file_stem(scenario);
            SeriesSummary {
                system: se.system.clone(),
                client: se.client.clone(),
                rounds: se.rounds.len() as u32,
                rate_pps: se.rates.iter().sum::<f64>() / se.rates.len().max(1) as f64,
                samples: merged.len(),
                percentiles_us: percentiles_us(&merged),
                hgrm: format!("{stem}.hgrm"),
                hlog: format!("{stem}.hlog"),
            }
        })
        .collect()
}

/// The summary row of (client, system).
pub fn find<'a>(
    summary: &'a [SeriesSummary],
    client: &str,
    system: &str,
) -> Option<&'a SeriesSummary> {
    summary
        .iter()
        .find(|x| x.client == client && x.system == system)
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ratio {
    pub client: String,
    pub numerator: String,
    pub denominator: String,
    /// numerator / denominator for the rate and each latency percentile.
    pub values: BTreeMap<String, f64>,
}

impl Ratio {
    /// numerator ÷ denominator for the rate and each percentile of `client`'s rows, when
    /// the summary has both.
    pub fn between(
        summary: &[SeriesSummary],
        client: &str,
        numerator: &str,
        denominator: &str,
    ) -> Option<Self> {
        let (n, d) = (
            find(summary, client, numerator)?,
            find(summary, client, denominator)?,
        );
        let mut values = BTreeMap::new();
        values.insert("rate".to_string(), n.rate_pps / d.rate_pps.max(1e-9));
        for (k, v) in &n.percentiles_us {
            if let Some(dv) = d.percentiles_us.get(k) {
                values.insert(k.clone(), v / dv.max(1e-9));
            }
        }
        Some(Self {
            client: client.into(),
            numerator: numerator.into(),
            denominator: denominator.into(),
            values,
        })
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Goal {
    pub goal: String,
    pub measured: f64,
    pub target: String,
    pub met: bool,
}

impl Goal {
    pub fn new(goal: impl Into<String>, measured: f64, target: &str, met: bool) -> Self {
        Self {
            goal: goal.into(),
            measured,
            target: target.into(),
            met,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub command: String,
    pub machine: Machine,
    pub settings: serde_json::Value,
    pub runs: Vec<RunReport>,
    pub summary: Vec<SeriesSummary>,
    pub ratios: Vec<Ratio>,
    pub goals: Vec<Goal>,
    pub notes: Vec<String>,
}

/// A scenario's own results beyond what every report has: `results` under `key` in
/// report.json, after the common fields, and `table` in the terminal table, after the goals.
pub struct Section<'a, T: Serialize> {
    pub key: &'a str,
    pub results: &'a T,
    pub table: String,
}

/// report.json of a report with a section: the common fields, then the section's key.
#[derive(Serialize)]
struct WithSection<'a, T: Serialize> {
    #[serde(flatten)]
    report: &'a Report,
    #[serde(flatten)]
    section: BTreeMap<&'a str, &'a T>,
}

/// Histograms of one (client, system), per round, kept for the files.
pub struct Series {
    pub system: String,
    pub client: String,
    pub rounds: Vec<(Histogram<u64>, Duration)>,
    pub rates: Vec<f64>,
}

impl Series {
    pub fn new(system: &str, client: &str) -> Self {
        Self {
            system: system.into(),
            client: client.into(),
            rounds: Vec::new(),
            rates: Vec::new(),
        }
    }

    /// One more round: its histogram, how long it ran, and its rate.
    pub fn add_round(&mut self, histogram: Histogram<u64>, elapsed: Duration, rate: f64) {
        self.rounds.push((histogram, elapsed));
        self.rates.push(rate);
    }

    pub fn merged(&self) -> Histogram<u64> {
        let mut all = crate::generator::new_histogram();
        for (h, _) in &self.rounds {
            all.add(h).expect("same bounds");
        }
        all
    }

    pub fn file_stem(&self, scenario: &str) -> String {
        format!("{scenario}-{}-{}", self.system, self.client)
    }
}

/// Writes every file of a report into `dir` and returns the terminal table.
pub fn write_all(dir: &Path, report: &mut Report, series: &[Series]) -> anyhow::Result<String> {
    write_with_section::<()>(dir, report, series, None)
}

/// `write_all`, with a scenario's own section in report.json and in the table.
pub fn write_with_section<T: Serialize>(
    dir: &Path,
    report: &mut Report,
    series: &[Series],
    section: Option<&Section<'_, T>>,
) -> anyhow::Result<String> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_histograms(dir, &report.scenario, series)?;
    let table = tables::table_with(report, section.map(|s| s.table.as_str()));
    std::fs::write(dir.join("table.txt"), &table)?;
    let plot = dir.join(format!("{}-latency.svg", report.scenario));
    plot_latency(&plot, &report.scenario, series)?;
    if let Some(png) = svg_to_png(&plot) {
        report.notes.push(format!("plot: {}", png.display()));
    }
    let json = dir.join("report.json");
    match section {
        Some(s) => write_json(
            &json,
            &WithSection {
                report,
                section: BTreeMap::from([(s.key, s.results)]),
            },
        )?,
        None => write_json(&json, report)?,
    }
    Ok(table)
}

/// `value` as pretty JSON, with a final newline.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(path)?;
    serde_json::to_writer_pretty(&mut f, value)?;
    f.write_all(b"\n")?;
    Ok(())
}

/// A rate with k, M or G, for the table and the plots' axes.
fn fmt_rate(r: f64) -> String {
    if r >= 1e9 {
        format!("{:.2}G", r / 1e9)
    } else if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}
