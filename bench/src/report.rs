//! Reports: the terminal table, HdrHistogram percentile distributions (`.hgrm`, loadable
//! in the HdrHistogram plotter), V2 interval logs (`.hlog`), `report.json`, and a plot of
//! latency by percentile with every system overlaid (SVG; PNG too where rsvg-convert is).
//!
//! Latencies are round-trip times, recorded in nanoseconds and reported in microseconds.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use anyhow::Context;
use hdrhistogram::{
    Histogram,
    serialization::{
        V2Serializer,
        interval_log::{IntervalLogWriterBuilder, Tag},
    },
};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};

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

/// The Java HdrHistogram `outputPercentileDistribution` format, values in microseconds.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = v.value_iterated_to() as f64 / 1000.0;
            if q < 1.0 {
                let _ = writeln!(
                    s,
                    "{value:12.3} {q:2.12} {total:10} {:14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(s, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / 1000.0,
        h.stdev() / 1000.0
    );
    let _ = writeln!(
        s,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / 1000.0,
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        h.distinct_values()
    );
    s
}

/// Parses the value/percentile rows of an `.hgrm` file (for tests and re-plotting).
pub fn parse_hgrm(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let value = f.next()?.parse().ok()?;
            let q = f.next()?.parse().ok()?;
            Some((value, q))
        })
        .collect()
}

fn write_hlog(path: &Path, series: &Series) -> anyhow::Result<()> {
    let mut out = Vec::new();
    let mut serializer = V2Serializer::new();
    let start = SystemTime::now();
    {
        let mut writer = IntervalLogWriterBuilder::new()
            .with_start_time(start)
            .begin_log_with(&mut out, &mut serializer)
            .map_err(|e| anyhow::anyhow!("hlog header: {e:?}"))?;
        let mut offset = Duration::ZERO;
        let tag = format!("{}-{}", series.system, series.client);
        for (h, dur) in &series.rounds {
            writer
                .write_histogram(h, offset, *dur, Tag::new(&tag))
                .map_err(|e| anyhow::anyhow!("hlog interval: {e:?}"))?;
            offset += *dur;
        }
    }
    std::fs::write(path, out)?;
    Ok(())
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
    let table = table_with(report, section.map(|s| s.table.as_str()));
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

/// Each series' rounds, merged into `.hgrm` and one interval each in `.hlog`.
pub fn write_histograms(dir: &Path, scenario: &str, series: &[Series]) -> anyhow::Result<()> {
    for s in series {
        let stem = s.file_stem(scenario);
        let merged = s.merged();
        std::fs::write(dir.join(format!("{stem}.hgrm")), hgrm(&merged))?;
        write_hlog(&dir.join(format!("{stem}.hlog")), s)?;
    }
    Ok(())
}

/// `value` as pretty JSON, with a final newline.
pub fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let mut f = std::fs::File::create(path)?;
    serde_json::to_writer_pretty(&mut f, value)?;
    f.write_all(b"\n")?;
    Ok(())
}

pub fn svg_to_png(svg: &Path) -> Option<PathBuf> {
    let png = svg.with_extension("png");
    let ok = std::process::Command::new("rsvg-convert")
        .args(["-b", "white", "-o"])
        .arg(&png)
        .arg(svg)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(png)
}

/// Latency by percentile, log x axis as in the HdrHistogram plotter (x = 1/(1-p)).
pub fn plot_latency(path: &Path, scenario: &str, series: &[Series]) -> anyhow::Result<()> {
    let curves: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .filter(|s| s.rounds.iter().any(|(h, _)| !h.is_empty()))
        .map(|s| {
            let h = s.merged();
            let points = h
                .iter_quantiles(5)
                .map(|v| {
                    let q = v.quantile_iterated_to().min(0.999_999);
                    (1.0 / (1.0 - q), v.value_iterated_to() as f64 / 1000.0)
                })
                .collect();
            (format!("{} ({})", s.system, s.client), points)
        })
        .collect();
    // Log on both axes: the body (tens of µs) and the tail (ms) both stay readable.
    let ys = || curves.iter().flat_map(|(_, p)| p.iter().map(|(_, y)| *y));
    let y_max = ys().fold(1.0f64, f64::max) * 1.5;
    let y_min = (ys().fold(f64::MAX, f64::min) * 0.7).clamp(0.01, y_max / 10.0);
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{scenario}: round-trip latency by percentile"),
            ("sans-serif", 22),
        )
        .margin(16)
        .margin_right(48)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (1.0f64..1_000_000.0f64).log_scale(),
            (y_min..y_max).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .x_labels(7)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| {
            if *y >= 10.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.1}")
            }
        })
        .draw()?;
    let palette = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    for (i, (label, points)) in curves.into_iter().enumerate() {
        let color = palette[i % palette.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One system's measurements at increasing offered load.
pub struct LoadCurve {
    pub name: String,
    pub points: Vec<LoadPoint>,
}

#[derive(Clone, Copy, Debug)]
pub struct LoadPoint {
    pub offered_pps: f64,
    /// Fraction of what was offered that was not answered.
    pub loss: f64,
    pub p99_us: f64,
}

/// Loss and p99 against offered load, one line per system: loss on top with the 0.1 %
/// line, p99 below; both on log axes, a loss of zero drawn at the axis floor ("0").
pub fn plot_load(path: &Path, scenario: &str, curves: &[LoadCurve]) -> anyhow::Result<()> {
    const LOSS_FLOOR: f64 = 1e-4;
    let xs = || {
        curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.offered_pps))
    };
    let x_max = xs().fold(1e4f64, f64::max) * 1.3;
    let x_min = (xs().fold(f64::MAX, f64::min) * 0.7).clamp(1e3, x_max / 2.0);
    let p99s = || {
        curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.p99_us))
            .filter(|v| v.is_finite() && *v > 0.0)
    };
    let y_max = p99s().fold(10.0f64, f64::max) * 1.5;
    let y_min = (p99s().fold(f64::MAX, f64::min) * 0.7).clamp(0.1, y_max / 10.0);
    let root = SVGBackend::new(path, (960, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(450);
    let palette = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];
    let mut loss_chart = ChartBuilder::on(&top)
        .caption(
            format!("{scenario}: loss against offered load"),
            ("sans-serif", 22),
        )
        .margin(16)
        .margin_right(48)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(
            (x_min..x_max).log_scale(),
            (LOSS_FLOOR * 100.0..100.0f64).log_scale(),
        )?;
    loss_chart
        .configure_mesh()
        .x_desc("offered load (requests/s)")
        .y_desc("loss (%)")
        .x_label_formatter(&|x| fmt_rate(*x))
        .y_label_formatter(&|y| {
            if *y <= LOSS_FLOOR * 100.0 * 1.001 {
                "0".into()
            } else {
                format!("{y}")
            }
        })
        .draw()?;
    loss_chart
        .draw_series(LineSeries::new(
            [(x_min, 0.1), (x_max, 0.1)],
            BLACK.mix(0.4).stroke_width(1),
        ))?
        .label("0.1 % (loss-free bound)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    let mut p99_chart = ChartBuilder::on(&bottom)
        .caption(
            format!("{scenario}: p99 round trip against offered load"),
            ("sans-serif", 22),
        )
        .margin(16)
        .margin_right(48)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())?;
    p99_chart
        .configure_mesh()
        .x_desc("offered load (requests/s)")
        .y_desc("p99 (µs)")
        .x_label_formatter(&|x| fmt_rate(*x))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (i, curve) in curves.iter().enumerate() {
        let (name, points) = (&curve.name, &curve.points);
        let color = palette[i % palette.len()];
        let loss: Vec<(f64, f64)> = points
            .iter()
            .map(|p| (p.offered_pps, (p.loss * 100.0).max(LOSS_FLOOR * 100.0)))
            .collect();
        loss_chart
            .draw_series(LineSeries::new(loss.clone(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        loss_chart.draw_series(loss.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        let p99: Vec<(f64, f64)> = points
            .iter()
            .filter(|p| p.p99_us.is_finite() && p.p99_us > 0.0)
            .map(|p| (p.offered_pps, p.p99_us))
            .collect();
        p99_chart
            .draw_series(LineSeries::new(p99.clone(), color.stroke_width(2)))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        p99_chart.draw_series(p99.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
    }
    for chart in [&mut loss_chart, &mut p99_chart] {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// A congestion window over time (CSV rows `seconds,cwnd_segments,w_cubic_segments`, as
/// `cargo run -p fastpath --example cwnd_trace` writes them) against RFC 9438's curve.
/// Writes `out` (SVG) and, where rsvg-convert is, a PNG beside it.
pub fn plot_cwnd(csv: &Path, out: &Path) -> anyhow::Result<Option<PathBuf>> {
    let text = std::fs::read_to_string(csv)?;
    let mut cwnd = Vec::new();
    let mut curve: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut last_w_max_row: Option<f64> = None;
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (Some(t), Some(w)) = (
            fields.first().and_then(|f| f.parse::<f64>().ok()),
            fields.get(1).and_then(|f| f.parse::<f64>().ok()),
        ) else {
            continue;
        };
        cwnd.push((t, w));
        match fields.get(2).and_then(|f| f.parse::<f64>().ok()) {
            Some(c) => {
                // A new epoch when the curve jumps down: start a new line.
                if last_w_max_row.is_none_or(|prev| c < prev - 1.0) || curve.is_empty() {
                    curve.push(Vec::new());
                }
                if let Some(line) = curve.last_mut() {
                    line.push((t, c));
                }
                last_w_max_row = Some(c);
            }
            None => last_w_max_row = None,
        }
    }
    anyhow::ensure!(!cwnd.is_empty(), "{} has no rows", csv.display());
    let t_max = cwnd.iter().map(|p| p.0).fold(0.0, f64::max);
    let w_max = cwnd.iter().map(|p| p.1).fold(0.0, f64::max) * 1.15;
    let root = SVGBackend::new(out, (960, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "CUBIC in the TCP simulator: cwnd against RFC 9438's W_cubic(t)",
            ("sans-serif", 22),
        )
        .margin(16)
        .margin_right(40)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..t_max, 0.0..w_max)?;
    chart
        .configure_mesh()
        .x_desc("time (s, virtual)")
        .y_desc("window (segments)")
        .draw()?;
    chart
        .draw_series(LineSeries::new(cwnd, BLUE.stroke_width(2)))?
        .label("cwnd (fastpath's CUBIC)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    for (i, line) in curve.into_iter().enumerate() {
        let series = chart.draw_series(LineSeries::new(
            line.into_iter().filter(|(_, c)| *c >= 0.0 && *c <= w_max),
            RED.stroke_width(1),
        ))?;
        if i == 0 {
            series
                .label("W_cubic(t) = C(t-K)^3 + W_max from each reduction")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(1)));
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(svg_to_png(out))
}

/// x = 1/(1-p) back to "90%", "99.9%".
fn percentile_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x);
    let text = format!("{p:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}%")
}

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

/// The terminal table: one row per (client, system), then the ratio rows.
pub fn table(r: &Report) -> String {
    table_with(r, None)
}

/// The terminal table, with a scenario's own part after the goals.
fn table_with(r: &Report, section: Option<&str>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} — round-trip latency in µs; {} on {} cores, kernel {}, {} veth queue(s), {}",
        r.scenario,
        r.machine.cpu_model,
        r.machine.cores,
        r.machine.kernel,
        r.machine.veth_queues,
        r.machine.date
    );
    let _ = writeln!(
        s,
        "{:<10} {:<10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}  {:<22} saturated",
        "client",
        "system",
        "rate/s",
        "p50",
        "p90",
        "p99",
        "p99.9",
        "p99.99",
        "max",
        "cpu% srv-core/cli-core",
    );
    for sum in &r.summary {
        let p = |k: &str| sum.percentiles_us.get(k).copied().unwrap_or(0.0);
        let last_cpu = r
            .runs
            .iter()
            .rev()
            .find(|run| run.system == sum.system && run.client == sum.client)
            .map(|run| &run.cpu);
        let (cpu, sat) = match last_cpu {
            Some(c) => {
                let core = |k: Option<usize>| {
                    k.and_then(|k| c.cores.get(&k))
                        .map_or("-".into(), |v| format!("{v:.0}"))
                };
                (
                    format!("{}/{}", core(c.server_core), core(c.client_core)),
                    c.saturated.clone(),
                )
            }
            None => ("-".into(), "-".into()),
        };
        let _ = writeln!(
            s,
            "{:<10} {:<10} {:>9} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>9.1}  {:<22} {}",
            sum.client,
            sum.system,
            fmt_rate(sum.rate_pps),
            p("p50"),
            p("p90"),
            p("p99"),
            p("p99.9"),
            p("p99.99"),
            p("max"),
            cpu,
            sat
        );
    }
    for ratio in &r.ratios {
        let v = |k: &str| ratio.values.get(k).copied().unwrap_or(f64::NAN);
        let _ = writeln!(
            s,
            "{:<10} {:<10} {:>8.2}x {:>7.2}x {:>7.2}x {:>7.2}x {:>7.2}x {:>7.2}x {:>8.2}x",
            ratio.client,
            format!("{}/{}", short(&ratio.numerator), short(&ratio.denominator)),
            v("rate"),
            v("p50"),
            v("p90"),
            v("p99"),
            v("p99.9"),
            v("p99.99"),
            v("max"),
        );
    }
    for g in &r.goals {
        let _ = writeln!(
            s,
            "goal: {} — measured {:.2}, target {}: {}",
            g.goal,
            g.measured,
            g.target,
            if g.met { "met" } else { "NOT met" }
        );
    }
    if let Some(section) = section {
        s.push_str(section);
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

fn short(system: &str) -> &str {
    match system {
        "fastpath" => "fp",
        "kernel" => "kern",
        "ceiling" => "ceil",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_rows_are_ordered_and_parse_back() {
        let mut h = crate::generator::new_histogram();
        for v in 1..=10_000u64 {
            h.record(v * 1000).unwrap();
        }
        let text = hgrm(&h);
        let rows = parse_hgrm(&text);
        assert!(rows.len() > 20);
        assert!(
            rows.windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1)
        );
        assert!((rows.last().unwrap().1 - 1.0).abs() < 1e-9);
        assert!(text.contains("#[Max     ="));
        let p = percentiles_us(&h);
        assert!((p["p50"] - 5000.0).abs() / 5000.0 < 0.01);
    }
}
