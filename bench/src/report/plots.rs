//! Plots, as SVG (and PNG beside it where rsvg-convert is): latency by percentile with
//! every system overlaid, loss and p99 against offered load, and a congestion window
//! against RFC 9438's curve.

use std::{
    ops::Range,
    path::{Path, PathBuf},
};

use plotters::{coord::Shift, prelude::*};

use super::{Series, fmt_rate};

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

/// The systems' colours, in the order the curves come.
const PALETTE: [RGBColor; 6] = [RED, BLUE, GREEN, MAGENTA, CYAN, BLACK];

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
    for (i, (label, points)) in curves.into_iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
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
    let (x, p99) = load_ranges(curves);
    let root = SVGBackend::new(path, (960, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(450);
    let mut loss_chart = loss_chart(&top, scenario, x.clone())?;
    let mut p99_chart = p99_chart(&bottom, scenario, x, p99)?;
    for (i, curve) in curves.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let loss = curve
            .points
            .iter()
            .map(|p| (p.offered_pps, (p.loss * 100.0).max(LOSS_FLOOR * 100.0)))
            .collect();
        draw_load_line(&mut loss_chart, &curve.name, loss, color)?;
        let p99 = curve
            .points
            .iter()
            .filter(|p| p.p99_us.is_finite() && p.p99_us > 0.0)
            .map(|p| (p.offered_pps, p.p99_us))
            .collect();
        draw_load_line(&mut p99_chart, &curve.name, p99, color)?;
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

/// A loss of zero is drawn at this fraction, the floor of the log axis.
const LOSS_FLOOR: f64 = 1e-4;

/// Both of `plot_load`'s charts: offered load (x, log) against loss or p99 (y, log).
type LoadChart<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<LogCoord<f64>, LogCoord<f64>>>;

/// The offered-load axis, and the p99 axis (finite, positive values only).
fn load_ranges(curves: &[LoadCurve]) -> (Range<f64>, Range<f64>) {
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
    (x_min..x_max, y_min..y_max)
}

/// The loss chart, its mesh and the 0.1 % line.
fn loss_chart<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    scenario: &str,
    x: Range<f64>,
) -> anyhow::Result<LoadChart<'a, 'b>> {
    let (x_min, x_max) = (x.start, x.end);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{scenario}: loss against offered load"),
            ("sans-serif", 22),
        )
        .margin(16)
        .margin_right(48)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(x.log_scale(), (LOSS_FLOOR * 100.0..100.0f64).log_scale())?;
    chart
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
    chart
        .draw_series(LineSeries::new(
            [(x_min, 0.1), (x_max, 0.1)],
            BLACK.mix(0.4).stroke_width(1),
        ))?
        .label("0.1 % (loss-free bound)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    Ok(chart)
}

/// The p99 chart and its mesh.
fn p99_chart<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    scenario: &str,
    x: Range<f64>,
    y: Range<f64>,
) -> anyhow::Result<LoadChart<'a, 'b>> {
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{scenario}: p99 round trip against offered load"),
            ("sans-serif", 22),
        )
        .margin(16)
        .margin_right(48)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(x.log_scale(), y.log_scale())?;
    chart
        .configure_mesh()
        .x_desc("offered load (requests/s)")
        .y_desc("p99 (µs)")
        .x_label_formatter(&|x| fmt_rate(*x))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    Ok(chart)
}

/// One system's line, labelled for the legend, with a dot at each measurement.
fn draw_load_line(
    chart: &mut LoadChart<'_, '_>,
    name: &str,
    points: Vec<(f64, f64)>,
    color: RGBColor,
) -> anyhow::Result<()> {
    chart
        .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    chart.draw_series(
        points
            .into_iter()
            .map(|p| Circle::new(p, 3, color.filled())),
    )?;
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
