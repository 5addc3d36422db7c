//! Histograms on disk: the Java HdrHistogram percentile distribution (`.hgrm`), read
//! back for tests and re-plotting, and V2 interval logs (`.hlog`), one interval a round.

use std::{
    fmt::Write as _,
    path::Path,
    time::{Duration, SystemTime},
};

use hdrhistogram::{
    Histogram,
    serialization::{
        V2Serializer,
        interval_log::{IntervalLogWriterBuilder, Tag},
    },
};

use super::Series;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::percentiles_us;

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
