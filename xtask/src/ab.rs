//! `cargo xtask ab --baseline OLD SCENARIO [ARGS…]`: an earlier `fastpath` build against the
//! current one on any bench scenario, alternating old, new, old, new in one sitting, so the
//! machine's drift lands on both. Each run is an ordinary `fastpath-bench` run (with the
//! kernel or nginx beside fastpath as always); the comparison reads fastpath's rows of each
//! run's report.json and prints, per row, the rates and p99s of every round and the
//! medians' ratios new ÷ old, against the bounds a move must keep (rate ≥ 0.95×, p99
//! ≤ 1.05×).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

/// A move keeps performance if new ÷ old stays within these.
const MIN_RATE: f64 = 0.95;
const MAX_P99: f64 = 1.05;

/// One fastpath row of one run: (system, client) → (rate, p99 in µs).
type Rows = BTreeMap<(String, String), (f64, f64)>;

fn fastpath_rows(report: &Path) -> anyhow::Result<Rows> {
    let text =
        std::fs::read_to_string(report).with_context(|| format!("reading {}", report.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text)?;
    let mut rows = Rows::new();
    for s in json["summary"].as_array().into_iter().flatten() {
        let system = s["system"].as_str().unwrap_or_default().to_string();
        if !system.starts_with("fastpath") {
            continue;
        }
        let client = s["client"].as_str().unwrap_or_default().to_string();
        let rate = s["rate_pps"].as_f64().unwrap_or(f64::NAN);
        let p99 = s["percentiles_us"]["p99"].as_f64().unwrap_or(f64::NAN);
        rows.insert((system, client), (rate, p99));
    }
    if rows.is_empty() {
        bail!("{} has no fastpath row in its summary", report.display());
    }
    Ok(rows)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Runs `scenario` `rounds` times with each binary, alternating, under `out`; prints the
/// comparison and returns whether every row kept the bounds.
pub fn run(
    bench: &Path,
    new: &Path,
    old: &Path,
    rounds: u32,
    out: &Path,
    args: &[String],
) -> anyhow::Result<bool> {
    let Some(scenario) = args.first() else {
        bail!("name a scenario: cargo xtask ab --baseline OLD SCENARIO [OPTIONS]");
    };
    if !old.is_file() {
        bail!(
            "the baseline {} is not a file: build the earlier commit's `fastpath` (e.g. in a git worktree, `cargo build --release -p fastpath`) and name its binary",
            old.display()
        );
    }
    let mut runs: BTreeMap<&str, Vec<Rows>> = BTreeMap::new();
    for round in 0..rounds {
        for (label, bin) in [("old", old), ("new", new)] {
            let dir = out.join(format!("{scenario}-{label}-{round}"));
            eprintln!(
                "==> ab: {scenario}, {label} build, round {} of {rounds} → {}",
                round + 1,
                dir.display()
            );
            let status = Command::new(bench)
                .args(args)
                .arg("--out")
                .arg(&dir)
                .env("FASTPATH_BIN", bin)
                .status()
                .with_context(|| format!("running {}", bench.display()))?;
            if !status.success() {
                bail!("{scenario} with the {label} build failed ({status})");
            }
            runs.entry(label)
                .or_default()
                .push(fastpath_rows(&dir.join("report.json"))?);
        }
    }
    Ok(print_comparison(scenario, &runs))
}

fn print_comparison(scenario: &str, runs: &BTreeMap<&str, Vec<Rows>>) -> bool {
    let keys: Vec<(String, String)> = runs["new"][0].keys().cloned().collect();
    let mut kept = true;
    println!(
        "\n{scenario}: old build against new, alternating (medians of the rounds; ratios new ÷ old)"
    );
    println!(
        "{:<28} {:>12} {:>12} {:>7} {:>10} {:>10} {:>7}  per round (rate old/new)",
        "system, client", "rate old", "rate new", "ratio", "p99 old", "p99 new", "ratio"
    );
    for key in keys {
        let series = |label: &str, f: fn(&(f64, f64)) -> f64| -> Vec<f64> {
            runs[label]
                .iter()
                .filter_map(|r| r.get(&key).map(f))
                .collect()
        };
        let (rate_old, rate_new) = (series("old", |r| r.0), series("new", |r| r.0));
        let (p99_old, p99_new) = (series("old", |r| r.1), series("new", |r| r.1));
        let rate_ratio = median(rate_new.clone()) / median(rate_old.clone());
        let p99_ratio = median(p99_new.clone()) / median(p99_old.clone());
        let ok = rate_ratio >= MIN_RATE && p99_ratio <= MAX_P99;
        kept &= ok;
        let rounds: Vec<String> = rate_old
            .iter()
            .zip(&rate_new)
            .map(|(o, n)| format!("{:.0}/{:.0}", o, n))
            .collect();
        println!(
            "{:<28} {:>12.0} {:>12.0} {:>6.3}× {:>9.1}µs {:>9.1}µs {:>6.3}×  {}{}",
            format!("{}, {}", key.0, key.1),
            median(rate_old),
            median(rate_new),
            rate_ratio,
            median(p99_old),
            median(p99_new),
            p99_ratio,
            rounds.join(" "),
            if ok { "" } else { "  OUTSIDE the bounds" }
        );
    }
    println!("bounds: rate ≥ {MIN_RATE}×, p99 ≤ {MAX_P99}×");
    kept
}

/// Where the comparison's runs go by default.
pub fn default_out() -> PathBuf {
    PathBuf::from("bench-results/ab")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_rows_are_read_from_a_report() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        let dir = std::env::temp_dir().join(format!("xtask-ab-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let report = dir.join("report.json");
        std::fs::write(
            &report,
            r#"{"summary":[
                {"system":"fastpath","client":"sockperf","rate_pps":1000.0,"percentiles_us":{"p99":12.5}},
                {"system":"kernel","client":"sockperf","rate_pps":500.0,"percentiles_us":{"p99":30.0}}]}"#,
        )
        .unwrap();
        let rows = fastpath_rows(&report).unwrap();
        assert_eq!(rows.len(), 1, "the kernel's row is not fastpath's");
        assert_eq!(
            rows[&("fastpath".to_string(), "sockperf".to_string())],
            (1000.0, 12.5)
        );
        let mut runs = BTreeMap::new();
        runs.insert("old", vec![rows.clone()]);
        let mut slower = rows.clone();
        slower.values_mut().for_each(|v| v.0 *= 0.9);
        runs.insert("new", vec![slower]);
        assert!(
            !print_comparison("t", &runs),
            "a 10 % slower rate is outside"
        );
        runs.insert("new", vec![rows]);
        assert!(print_comparison("t", &runs));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
