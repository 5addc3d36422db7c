//! What a scenario's summary says: the ratios of its systems, per client, and its goals.

use super::{ScenarioKind, Settings, plans, ratio_pairs};
use crate::report::{self, Goal, Ratio, SeriesSummary};

/// numerator ÷ denominator for the rate and each percentile, per client.
pub(super) fn ratios(kind: ScenarioKind, s: &Settings, summary: &[SeriesSummary]) -> Vec<Ratio> {
    let mut ratios = Vec::new();
    for (client, _) in plans(kind, s) {
        for (numerator, denominator) in ratio_pairs(kind, s) {
            ratios.extend(Ratio::between(
                summary,
                client.name(),
                numerator,
                denominator,
            ));
        }
    }
    ratios
}

/// The scenario's goals, from its ratios (and, in regression mode, the 5 % bound).
pub(super) fn goals(
    kind: ScenarioKind,
    s: &Settings,
    summary: &[SeriesSummary],
    ratios: &[Ratio],
) -> Vec<Goal> {
    let ratio = |client: &str, key: &str| {
        ratios
            .iter()
            .find(|r| r.client == client)
            .and_then(|r| r.values.get(key).copied())
    };
    let mut goals = Vec::new();
    if s.baseline_bin.is_some() {
        // A change to the data path may cost at most 5 % of the rate it had.
        for r in ratios {
            if let Some(&v) = r.values.get("rate") {
                let name = format!(
                    "{} rate, {}/{} ({})",
                    r.numerator, r.numerator, r.denominator, r.client
                );
                goals.push(Goal::new(name, v, ">= 0.95", v >= 0.95));
            }
        }
        return goals;
    }
    if s.with_capture {
        return goals;
    }
    match kind {
        ScenarioKind::UdpPingpong => {
            if let Some(v) = ratio("sockperf", "p99") {
                let name = "sockperf p99 half-RTT, fastpath/kernel";
                goals.push(Goal::new(name, v, "<= 0.35", v <= 0.35));
            }
            if let Some(v) = ratio("sockperf", "p99.9") {
                let name = "sockperf p99.9 half-RTT, fastpath/kernel";
                goals.push(Goal::new(name, v, "<= 0.50", v <= 0.5));
            }
            if let (Some(h), Some(sp)) = (
                report::find(summary, "harness", "kernel"),
                report::find(summary, "sockperf", "kernel"),
            ) {
                let v = h.percentiles_us["p50"] / sp.percentiles_us["p50"].max(1e-9);
                let name = "harness p50 / sockperf p50 against the same kernel server (agreement)";
                goals.push(Goal::new(name, v, "0.80 to 1.20", (0.8..=1.2).contains(&v)));
            }
        }
        ScenarioKind::UdpFlood => {
            if let Some(v) = ratio("harness", "rate") {
                goals.push(Goal::new(
                    "UDP echo rate, fastpath/kernel",
                    v,
                    ">= 2.5",
                    v >= 2.5,
                ));
            }
        }
        ScenarioKind::Ceiling => {
            if let Some(v) = ratio("harness", "rate") {
                goals.push(Goal::new(
                    "UDP echo rate, fastpath/ceiling",
                    v,
                    ">= 0.8",
                    v >= 0.8,
                ));
            }
        }
        ScenarioKind::UdpCapacity => {}
    }
    goals
}
