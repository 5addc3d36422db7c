//! What `fastpath stats` and `fastpath sockets` print: the tables a person reads.

use super::*;

/// The `ss`-like table of `fastpath sockets`.
pub fn render_sockets(rows: &[SocketInfo]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>6} {:<5} {:<22} {:<22} {:<10} {:<6} {:<10} {:>8} {:>10} {:>10} {:>10}",
        "number",
        "proto",
        "local",
        "remote",
        "state",
        "worker",
        "delivery",
        "queued",
        "rx",
        "tx",
        "drops"
    );
    for r in rows {
        let _ = write!(
            s,
            "{:>6} {:<5} {:<22} {:<22} {:<10} {:<6} {:<10} {:>8} {:>10} {:>10} {:>10}",
            r.number,
            r.proto,
            r.local,
            r.remote,
            r.state,
            r.worker,
            r.delivery,
            r.queued_bytes,
            r.rx,
            r.tx,
            r.drops_queue_full
        );
        // A TCP connection also shows its queues, window and RTT, as `ss -ti` does.
        if let Some(t) = &r.tcp {
            let _ = write!(
                s,
                "  send-q {} recv-q {} cwnd {} in-flight {} srtt {} rttvar {}us rto {}us retrans {}",
                t.send_queued,
                t.recv_queued,
                t.cwnd,
                t.in_flight,
                t.srtt_us.map_or("-".into(), |v| format!("{v}us")),
                t.rttvar_us,
                t.rto_us,
                t.retransmits
            );
        }
        s.push('\n');
    }
    s
}

/// The human table of `fastpath stats`.
pub fn render_table(r: &StatsReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "fastpath pid {} on {} ({} mode), {}, up {:.1}s",
        r.pid, r.iface, r.mode, r.service, r.uptime_secs
    );
    let _ = writeln!(
        s,
        "rules: {}",
        if r.rules.is_empty() {
            "none".into()
        } else {
            r.rules.join(", ")
        }
    );
    let _ = writeln!(s, "\nXDP program (all CPUs)");
    for (k, v) in &r.xdp {
        let _ = writeln!(s, "  {k:<12} {v:>12}");
    }
    let _ = writeln!(
        s,
        "\n{:>5} {:>4} {:>12} {:>12} {:>10} {:>8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10}",
        "queue",
        "cpu",
        "rx",
        "tx",
        "fill_empty",
        "tx_full",
        "rx_dropped",
        "replied",
        "malformed",
        "checksum",
        "no_socket",
        "queue_full"
    );
    for q in &r.queues {
        let c = |k: &str| q.counters.get(k).copied().unwrap_or(0);
        let _ = writeln!(
            s,
            "{:>5} {:>4} {:>12} {:>12} {:>10} {:>8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10}",
            q.queue,
            q.cpu.map_or("-".to_string(), |c| c.to_string()),
            q.rx,
            q.tx,
            q.fill_empty,
            q.tx_full,
            q.rx_dropped,
            c("replied"),
            c("drop_malformed"),
            c("drop_checksum"),
            c("drop_no_socket"),
            c("drop_queue_full"),
        );
    }
    render_idle(&mut s, r);
    s
}

/// Per worker: where its time went on an empty ring, and why the idle policy slept.
fn render_idle(s: &mut String, r: &StatsReport) {
    use std::fmt::Write as _;
    let _ = writeln!(
        s,
        "\n{:>5} {:>10} {:>10} {:>8} {:>10} {:>10} {:>10} {:>10}",
        "queue", "spin_s", "sleep_s", "sleeps", "caught", "long_gap", "quiet", "shared"
    );
    for q in &r.queues {
        let c = |k: &str| q.counters.get(k).copied().unwrap_or(0);
        let secs = |k: &str| c(k) as f64 / 1e9;
        let _ = writeln!(
            s,
            "{:>5} {:>10.3} {:>10.3} {:>8} {:>10} {:>10} {:>10} {:>10}",
            q.queue,
            secs("idle_spin_ns"),
            secs("idle_sleep_ns"),
            c("idle_waits"),
            c("spins_caught"),
            c("sleep_long_gap"),
            c("sleep_quiet"),
            c("sleep_shared_core"),
        );
    }
}
