//! `udp-capacity`'s part of the terminal table: the limits, CPU per request, and cycles
//! per request under flood.

use std::fmt::Write as _;

use super::results::{CapacityReport, Trial};
use crate::cpu;

/// The capacity section of the terminal table.
pub fn table_section(c: &CapacityReport) -> String {
    let mut s = limits(c);
    s.push_str(&cpu_per_request(c));
    s.push_str(&cycles_per_request(c));
    s
}

/// Each system's loss-free rate, its trials, and its latency at 50 % and 90 % of it.
fn limits(c: &CapacityReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nloss-free rate: the highest offered rate with <= {} % loss (AF_XDP generator, {} flows)",
        c.loss_threshold * 100.0,
        c.flows
    );
    if let Some(g) = &c.generator_alone {
        let _ = writeln!(
            s,
            "the generator alone (nothing answers): {} sent",
            fmt_rate(g.send_pps)
        );
    }
    let _ = writeln!(
        s,
        "{:<10} {:>11} {:>6}  {:>28}  {:>28}",
        "system", "loss-free", "trials", "at 50 %: p50 / p99 / p99.9", "at 90 %: p50 / p99 / p99.9"
    );
    for sys in &c.systems {
        let at = |t: &Option<Trial>| {
            t.as_ref().map_or("-".into(), |t| {
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    t.p("p50"),
                    t.p("p99"),
                    t.p("p99.9")
                )
            })
        };
        let _ = writeln!(
            s,
            "{:<10} {:>11} {:>6}  {:>28}  {:>28}",
            sys.system,
            fmt_rate(sys.loss_free_pps as f64),
            sys.trials.len(),
            at(&sys.at_50),
            at(&sys.at_90)
        );
    }
    s
}

/// Busy time of every core ÷ answers at the fixed rate, per system and idle strategy.
fn cpu_per_request(c: &CapacityReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nCPU per request at {} offered: busy time of every core (/proc/stat) ÷ answers",
        fmt_rate(c.cpu_rate_pps as f64)
    );
    let _ = writeln!(
        s,
        "{:<10} {:<7} {:>10} {:>8} {:>10} {:>22} {:>14} {:>14}  other tasks (CPU s)",
        "system",
        "idle",
        "answered",
        "loss %",
        "ns/req",
        "busy s per core",
        "srv user ns/req",
        "srv user cyc/req"
    );
    for r in &c.cpu {
        let cores = r
            .busy
            .per_core_secs
            .iter()
            .map(|(core, secs)| format!("{core}:{secs:.2}"))
            .collect::<Vec<_>>()
            .join(" ");
        let user_ns = r
            .server_thread
            .as_ref()
            .and_then(|t| cpu::ns_per_request(t.user_secs, r.trial.received));
        let _ = writeln!(
            s,
            "{:<10} {:<7} {:>10} {:>8.3} {:>10} {:>22} {:>14} {:>14}  {}",
            r.system,
            r.idle,
            fmt_rate(r.trial.receive_pps),
            r.trial.loss * 100.0,
            fmt_opt(r.ns_per_request),
            cores,
            fmt_opt(user_ns),
            fmt_opt(r.server_user_cycles_per_request),
            fmt_others(&r.other_tasks)
        );
    }
    s
}

/// The server thread's cycles per answer under flood.
fn cycles_per_request(c: &CapacityReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\nserver thread cycles per request under flood ({})",
        c.cycles_method
    );
    let _ = writeln!(
        s,
        "{:<10} {:<7} {:>10} {:>8} {:>14} {:>18} {:>16}",
        "system",
        "idle",
        "answered",
        "loss %",
        "user cyc/req",
        "user+sys cyc/req",
        "all cores cyc/req"
    );
    for r in &c.cycles {
        let _ = writeln!(
            s,
            "{:<10} {:<7} {:>10} {:>8.2} {:>14} {:>18} {:>16}  {}",
            r.system,
            r.idle,
            fmt_rate(
                r.answered_by_server
                    .map_or(r.trial.receive_pps, |a| a as f64 / r.trial.duration_secs)
            ),
            r.trial.loss * 100.0,
            fmt_opt(r.user_cycles_per_request),
            fmt_opt(r.thread_cycles_per_request),
            fmt_opt(r.all_cores_cycles_per_request),
            fmt_others(&r.other_tasks)
        );
    }
    s
}

/// The three busiest other tasks of a run, those over 10 ms.
pub(super) fn fmt_others(others: &[(String, f64)]) -> String {
    let shown: Vec<String> = others
        .iter()
        .filter(|(_, secs)| *secs >= 0.01)
        .take(3)
        .map(|(name, secs)| format!("{name} {secs:.2}"))
        .collect();
    if shown.is_empty() {
        "-".into()
    } else {
        shown.join(", ")
    }
}

pub(super) fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

pub(super) fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M/s", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k/s", r / 1e3)
    } else {
        format!("{r:.0}/s")
    }
}
