//! Scenarios: a server pair (fastpath and a kernel-stack server doing the same work, or the
//! AF_XDP ceiling), a client, and a report. Each system runs on the same veth pair in the
//! same run, one after the other, alternating A B A B across rounds, with the same client
//! and settings. TCP and HTTP scenarios plug in as more `System`s and `Client`s;
//! `udp-capacity` has its own steps (`capacity`). The kinds, the settings and the servers
//! are `udp`'s, which both share.
//!
//! `run` reads as its steps: the rounds (each system measured by each client, `rounds`),
//! the client's own capacity (ceiling), then the summary, the ratios and the goals
//! (`results`).

mod results;
mod rounds;

use std::{sync::atomic::AtomicBool, time::Duration};

use rounds::{Rounds, client_capacity, run_round};

pub use crate::udp::{ScenarioKind, Settings};
use crate::{
    machine::Machine,
    netns::{VethConfig, VethPair},
    progress::Progress,
    report::{self, Report, Series},
    sockperf,
    udp::System,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Sockperf,
    Harness,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Sockperf => "sockperf",
            Client::Harness => "harness",
        }
    }
}

fn plans(kind: ScenarioKind, s: &Settings) -> Vec<(Client, Vec<System>)> {
    let plans = base_plans(kind);
    if s.with_capture {
        // Capture mode: fastpath alone, then fastpath while a capture copies every frame.
        return plans
            .into_iter()
            .map(|(c, _)| (c, vec![System::Fastpath, System::FastpathCapturing]))
            .collect();
    }
    if s.baseline_bin.is_none() {
        return plans
            .into_iter()
            .map(|(c, sys)| (c, sys.to_vec()))
            .collect();
    }
    // Regression mode: old, new for each of fastpath's systems; the kernel sits out.
    plans
        .into_iter()
        .map(|(client, systems)| {
            let systems = systems
                .iter()
                .filter_map(|sys| sys.baseline().map(|old| [old, *sys]))
                .flatten()
                .collect();
            (client, systems)
        })
        .collect()
}

/// (numerator, denominator) of the scenario's ratios.
fn ratio_pairs(kind: ScenarioKind, s: &Settings) -> Vec<(&'static str, &'static str)> {
    if s.with_capture {
        return vec![("fastpath+capture", "fastpath")];
    }
    if s.baseline_bin.is_some() {
        return base_plans(kind)
            .iter()
            .flat_map(|(_, systems)| systems.iter())
            .filter_map(|sys| sys.baseline().map(|old| (sys.name(), old.name())))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
    }
    match kind {
        ScenarioKind::Ceiling => vec![("fastpath", "ceiling")],
        _ => vec![("fastpath", "kernel")],
    }
}

fn base_plans(kind: ScenarioKind) -> Vec<(Client, [System; 2])> {
    match kind {
        ScenarioKind::UdpPingpong => vec![
            (Client::Sockperf, [System::Fastpath, System::Kernel]),
            (Client::Harness, [System::Fastpath, System::Kernel]),
        ],
        ScenarioKind::UdpFlood => vec![(Client::Harness, [System::Fastpath, System::Kernel])],
        ScenarioKind::Ceiling => vec![(Client::Harness, [System::Ceiling, System::Fastpath])],
        // Its own steps (`capacity::run`), with the AF_XDP generator.
        ScenarioKind::UdpCapacity => Vec::new(),
    }
}

/// Seconds the scenario will take, roughly (for the progress bar and the time bound).
pub fn planned_secs(kind: ScenarioKind, s: &Settings) -> u64 {
    if kind == ScenarioKind::UdpCapacity {
        return crate::capacity::planned_secs(s);
    }
    let runs: u64 = plans(kind, s)
        .iter()
        .map(|(_, systems)| systems.len() as u64)
        .sum();
    let extra = if kind == ScenarioKind::Ceiling {
        s.duration_secs
    } else {
        0
    };
    runs * u64::from(s.rounds) * (s.duration_secs + 1) + extra
}

/// Runs one scenario, writes its report into `s.out`, and returns the report and table.
pub fn run(
    kind: ScenarioKind,
    s: &Settings,
    stop: &AtomicBool,
) -> anyhow::Result<(Report, String)> {
    if kind == ScenarioKind::UdpCapacity {
        return crate::capacity::run(s, &crate::capacity::Options::default(), stop);
    }
    if plans(kind, s).iter().any(|(c, _)| *c == Client::Sockperf) {
        sockperf::require()?;
    }
    let pair = VethPair::create(VethConfig {
        queues: s.queues,
        mtu: s.mtu,
        peer_tx_checksum: s.peer_tx_checksum,
    })?;
    let cores = s.cores();
    let mut progress = Progress::new(planned_secs(kind, s), kind.name());
    let mut rounds = Rounds::default();
    for round in 0..s.rounds {
        run_round(
            &pair,
            kind,
            s,
            &cores,
            round,
            stop,
            &mut progress,
            &mut rounds,
        )?;
    }
    if kind == ScenarioKind::Ceiling {
        let note = client_capacity(&pair, s, &cores, stop)?;
        progress.advance(Duration::from_secs(s.duration_secs));
        rounds.notes.push(note);
    }
    progress.bar.finish_and_clear();

    let series: Vec<Series> = rounds.series.into_values().collect();
    let summary = report::summarize(kind.name(), &series);
    let ratios = results::ratios(kind, s, &summary);
    let goals = results::goals(kind, s, &summary, &ratios);
    let mut notes = rounds.notes;
    if cores.server == cores.client {
        notes.push("one core only: server and client share it".into());
    }
    let mut report = Report {
        scenario: kind.name().into(),
        command: s.command.clone(),
        machine: Machine::read(s.queues, s.mtu, s.peer_tx_checksum),
        settings: serde_json::to_value(s)?,
        runs: rounds.runs,
        summary,
        ratios,
        goals,
        notes,
    };
    let table = report::write_all(&s.out, &mut report, &series)?;
    drop(pair);
    Ok((report, table))
}
