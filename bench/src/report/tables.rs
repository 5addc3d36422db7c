//! The terminal table: one row per (client, system), the ratio rows, the goals, a
//! scenario's own section, the notes.

use std::fmt::Write as _;

use super::{Ratio, Report, SeriesSummary, fmt_rate};

/// The terminal table: one row per (client, system), then the ratio rows.
pub fn table(r: &Report) -> String {
    table_with(r, None)
}

/// The terminal table, with a scenario's own part after the goals.
pub(super) fn table_with(r: &Report, section: Option<&str>) -> String {
    let mut s = header(r);
    for sum in &r.summary {
        s.push_str(&summary_row(r, sum));
    }
    for ratio in &r.ratios {
        s.push_str(&ratio_row(ratio));
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

/// The scenario, the machine and the column headings.
fn header(r: &Report) -> String {
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
    s
}

/// One (client, system): its rate, its percentiles, and the CPU of its last run.
fn summary_row(r: &Report, sum: &SeriesSummary) -> String {
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
    format!(
        "{:<10} {:<10} {:>9} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>9.1}  {:<22} {}\n",
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
    )
}

/// numerator/denominator for the rate and each percentile.
fn ratio_row(ratio: &Ratio) -> String {
    let v = |k: &str| ratio.values.get(k).copied().unwrap_or(f64::NAN);
    format!(
        "{:<10} {:<10} {:>8.2}x {:>7.2}x {:>7.2}x {:>7.2}x {:>7.2}x {:>7.2}x {:>8.2}x\n",
        ratio.client,
        format!("{}/{}", short(&ratio.numerator), short(&ratio.denominator)),
        v("rate"),
        v("p50"),
        v("p90"),
        v("p99"),
        v("p99.9"),
        v("p99.99"),
        v("max"),
    )
}
fn short(system: &str) -> &str {
    match system {
        "fastpath" => "fp",
        "kernel" => "kern",
        "ceiling" => "ceil",
        other => other,
    }
}
