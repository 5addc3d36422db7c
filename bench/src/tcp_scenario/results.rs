//! What a TCP scenario's summary says: fastpath against each kernel system, issue 10's
//! goals, and how it was measured.

use super::{System, TcpScenarioKind, TcpSettings, plans, setup::CLIENT_SYSCTLS};
use crate::report::{Goal, Ratio, SeriesSummary};

pub(super) fn ratios(
    kind: TcpScenarioKind,
    s: &TcpSettings,
    summary: &[SeriesSummary],
) -> Vec<Ratio> {
    let mut ratios = Vec::new();
    for (client, _, systems) in plans(kind, s) {
        for &denominator in systems.iter().filter(|&&d| d != System::Fastpath) {
            ratios.extend(Ratio::between(
                summary,
                &client,
                System::Fastpath.name(),
                denominator.name(),
            ));
        }
    }
    ratios
}

/// Issue 10's goals, each reported with what was measured.
pub(super) fn goals(kind: TcpScenarioKind, ratios: &[Ratio]) -> Vec<Goal> {
    let ratio = |client: &str, denominator: &str, key: &str| {
        ratios
            .iter()
            .find(|r| r.client == client && r.denominator == denominator)
            .and_then(|r| r.values.get(key).copied())
    };
    let mut goals = Vec::new();
    let mut goal = |goal: String, measured: Option<f64>, target: &str, met: fn(f64) -> bool| {
        if let Some(v) = measured {
            goals.push(Goal::new(goal, v, target, met(v)));
        }
    };
    match kind {
        TcpScenarioKind::Rr => {
            for r in ratios {
                goal(
                    format!("tcp-rr p99 round trip, fastpath/kernel ({})", r.client),
                    r.values.get("p99").copied(),
                    "<= 0.50",
                    |v| v <= 0.5,
                );
            }
            goal(
                "tcp-rr rate with one request outstanding, fastpath/kernel (1-conn)".into(),
                ratio("1-conn", "kernel", "rate"),
                ">= 2.0",
                |v| v >= 2.0,
            );
        }
        TcpScenarioKind::Crr => goal(
            "tcp-crr transactions per second, fastpath/kernel".into(),
            ratio("crr", "kernel", "rate"),
            ">= 3.0",
            |v| v >= 3.0,
        ),
        TcpScenarioKind::Bulk => goal(
            "tcp-bulk bytes echoed per second, fastpath/kernel (TSO, GSO, GRO off on both ends)"
                .into(),
            ratio("bulk", "kernel", "rate"),
            ">= 1.0",
            |v| v >= 1.0,
        ),
    }
    goals
}

/// What was measured and how, for whoever reads the report.
pub(super) fn method_notes(
    kind: TcpScenarioKind,
    s: &TcpSettings,
    summary: &[SeriesSummary],
    most_left: u64,
) -> Vec<String> {
    let mut notes = vec![
        "servers: `fastpath echo --tcp` (one worker) and `fastpath-bench kernel-tcp-echo` (one epoll thread, TCP_NODELAY), both pinned to the server core and echoing every byte".into(),
    ];
    match kind {
        TcpScenarioKind::Rr => notes.push(format!(
            "tcp-rr: {}-byte request and response on N long-lived connections (TCP_NODELAY), one request outstanding on each; rate = round trips per second; latency = write of the request to the last byte of the response",
            s.payload
        )),
        TcpScenarioKind::Crr => notes.push(format!(
            "tcp-crr: one transaction at a time: socket, connect, {0}-byte request, {0}-byte response, close; latency = the whole transaction. The client closes first, so its sockets wait in TIME-WAIT; its namespace has {1} so connect() does not run out of ports",
            s.payload,
            CLIENT_SYSCTLS.join(" and ")
        )),
        TcpScenarioKind::Bulk => {
            notes.push(
                "tcp-bulk: one connection writes 128 KiB at a time while reading the echo back (neither server has a discard mode, so both echo: the same work on each side); rate = bytes echoed back per second; latency = a write until its last byte is back".into(),
            );
            notes.push(
                "fastpath and kernel ran with TSO, GSO and GRO off on both veth ends (fastpath sends MTU-sized frames); kernel+offload with the veth's default offloads".into(),
            );
            for row in summary {
                notes.push(format!(
                    "{}: {:.2} Gbit/s echoed back ({:.0} MB/s)",
                    row.system,
                    row.rate_pps * 8.0 / 1e9,
                    row.rate_pps / 1e6
                ));
            }
        }
    }
    if most_left == 0 {
        notes.push("after every fastpath run `fastpath sockets` listed no connection but the listener within 2 s".into());
    }
    notes
}
