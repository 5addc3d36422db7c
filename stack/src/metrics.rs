//! Every counter in the Prometheus text exposition format (version 0.0.4), for
//! `fastpath stats --prometheus` and for a scraper at `fastpath stats --listen ADDR:PORT`
//! (`/metrics`, served over an ordinary kernel socket by `tiny_http`).
//!
//! Families: the XDP program's outcomes; per queue, each layer's counters (drops as one
//! family with `protocol` and `reason` labels), the kernel's XDP_STATISTICS and where the
//! UMEM frames are; sockets by protocol and state.

use std::{collections::BTreeMap, fmt::Write};

use crate::{
    control::{QueueStats, StatsReport},
    socket::SocketInfo,
};

/// One metric family being written: HELP and TYPE once, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Self { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

fn escape_help(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\n', "\\n")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A metric name from free text: [a-zA-Z0-9_] only.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// A family of the kernel's XDP_STATISTICS: name, help, and how to read it off a queue.
type KernelCounter = (&'static str, &'static str, fn(&QueueStats) -> u64);

/// Renders `report` and `sockets` as Prometheus text.
pub fn render(report: &StatsReport, sockets: &[SocketInfo]) -> String {
    let mut out = String::new();
    let iface = report.iface.as_str();
    write_uptime(&mut out, iface, report);
    write_xdp(&mut out, iface, report);
    Layers::collect(report).write(&mut out, iface);
    write_kernel(&mut out, iface, report);
    write_frames(&mut out, iface, report);
    write_sockets(&mut out, iface, sockets);
    out
}

fn write_uptime(out: &mut String, iface: &str, report: &StatsReport) {
    let f = Family::new(
        out,
        "fastpath_uptime_seconds",
        "gauge",
        "Seconds since this fastpath instance started.",
    );
    let _ = writeln!(
        f.out,
        "fastpath_uptime_seconds{{iface=\"{}\"}} {:.3}",
        escape_label(iface),
        report.uptime_secs
    );
}

fn write_xdp(out: &mut String, iface: &str, report: &StatsReport) {
    let mut f = Family::new(
        out,
        "fastpath_xdp_frames_total",
        "counter",
        "Frames the XDP program saw, by outcome (steered into AF_XDP, passed to the kernel, malformed and dropped, no socket on the queue, IPv4 fragment).",
    );
    for (outcome, value) in &report.xdp {
        f.sample(
            "fastpath_xdp_frames_total",
            &[("iface", iface), ("outcome", outcome)],
            *value,
        );
    }
}

/// Each layer's counters: drops by reason in one family, the rest one family each.
#[derive(Default)]
struct Layers {
    drops: Vec<(String, String, String, u64)>,
    families: BTreeMap<String, Vec<(String, u64)>>,
    // Gauges the workers publish beside their counters: TCP connections by state, timers.
    tcp_states: Vec<(String, String, u64)>,
    timers: Vec<(String, u64)>,
}

impl Layers {
    fn collect(report: &StatsReport) -> Layers {
        let mut l = Layers::default();
        for q in &report.queues {
            let queue = q.queue.to_string();
            for (layer, counters) in &q.layers {
                for (name, value) in counters {
                    if let Some(state) = name.strip_prefix("tcp_state_") {
                        l.tcp_states
                            .push((queue.clone(), state.to_string(), *value));
                        continue;
                    }
                    if name == "timers_armed" {
                        l.timers.push((queue.clone(), *value));
                        continue;
                    }
                    match name.strip_prefix("drop_") {
                        Some(reason) => {
                            l.drops
                                .push((queue.clone(), layer.clone(), reason.to_string(), *value))
                        }
                        None => l
                            .families
                            .entry(format!(
                                "fastpath_{}_{}_total",
                                sanitize(layer),
                                sanitize(name)
                            ))
                            .or_default()
                            .push((queue.clone(), *value)),
                    }
                }
            }
        }
        l
    }

    fn write(&self, out: &mut String, iface: &str) {
        let mut f = Family::new(
            out,
            "fastpath_drops_total",
            "counter",
            "Frames or datagrams a layer of the stack dropped, by queue, protocol (layer) and reason.",
        );
        for (queue, protocol, reason, value) in &self.drops {
            f.sample(
                "fastpath_drops_total",
                &[
                    ("iface", iface),
                    ("queue", queue),
                    ("protocol", protocol),
                    ("reason", reason),
                ],
                *value,
            );
        }
        for (name, samples) in &self.families {
            let help = format!(
                "The {} counter of fastpath's {} layer, per queue.",
                name.trim_start_matches("fastpath_")
                    .trim_end_matches("_total"),
                name.trim_start_matches("fastpath_")
                    .split('_')
                    .next()
                    .unwrap_or("")
            );
            let mut f = Family::new(out, name, "counter", &help);
            for (queue, value) in samples {
                f.sample(name, &[("iface", iface), ("queue", queue)], *value);
            }
        }

        let mut f = Family::new(
            out,
            "fastpath_tcp_connections",
            "gauge",
            "TCP connections each worker owns, by state.",
        );
        for (queue, state, value) in &self.tcp_states {
            f.sample(
                "fastpath_tcp_connections",
                &[("iface", iface), ("queue", queue), ("state", state)],
                *value,
            );
        }
        let mut f = Family::new(
            out,
            "fastpath_timers_armed",
            "gauge",
            "Timers armed in each worker's timer wheel.",
        );
        for (queue, value) in &self.timers {
            f.sample(
                "fastpath_timers_armed",
                &[("iface", iface), ("queue", queue)],
                *value,
            );
        }
    }
}

/// The kernel's XDP_STATISTICS, a family each.
fn write_kernel(out: &mut String, iface: &str, report: &StatsReport) {
    let kernel: [KernelCounter; 5] = [
        (
            "fastpath_xsk_rx_dropped_total",
            "Frames the kernel dropped for the AF_XDP socket (no fill frame, or larger than a frame), from XDP_STATISTICS.",
            |q| q.rx_dropped,
        ),
        (
            "fastpath_xsk_rx_ring_full_total",
            "Frames the kernel dropped because the RX ring was full, from XDP_STATISTICS.",
            |q| q.rx_ring_full,
        ),
        (
            "fastpath_xsk_fill_ring_empty_total",
            "Times the kernel found the fill ring empty, from XDP_STATISTICS.",
            |q| q.fill_empty,
        ),
        (
            "fastpath_xsk_rx_invalid_descs_total",
            "Invalid RX descriptors, from XDP_STATISTICS.",
            |q| q.rx_invalid_descs,
        ),
        (
            "fastpath_xsk_tx_invalid_descs_total",
            "Invalid TX descriptors, from XDP_STATISTICS.",
            |q| q.tx_invalid_descs,
        ),
    ];
    for (name, help, get) in kernel {
        let mut f = Family::new(out, name, "counter", help);
        for q in &report.queues {
            f.sample(
                name,
                &[("iface", iface), ("queue", &q.queue.to_string())],
                get(q),
            );
        }
    }
}

/// Where the UMEM frames are, and the frame ledger's errors.
fn write_frames(out: &mut String, iface: &str, report: &StatsReport) {
    let mut f = Family::new(
        out,
        "fastpath_umem_frames",
        "gauge",
        "UMEM frames by place in the frame ledger (free, fill, rx, in_use, tx, completion).",
    );
    for q in &report.queues {
        let queue = q.queue.to_string();
        let fr = &q.frames;
        for (place, value) in [
            ("free", fr.free),
            ("fill", fr.fill),
            ("rx", fr.rx),
            ("in_use", fr.in_use),
            ("tx", fr.tx),
            ("completion", fr.completion),
        ] {
            f.sample(
                "fastpath_umem_frames",
                &[("iface", iface), ("queue", &queue), ("place", place)],
                value.into(),
            );
        }
    }
    let mut f = Family::new(
        out,
        "fastpath_frame_ledger_errors_total",
        "counter",
        "Frames found where the ledger did not expect them (zero in a correct run).",
    );
    for q in &report.queues {
        f.sample(
            "fastpath_frame_ledger_errors_total",
            &[("iface", iface), ("queue", &q.queue.to_string())],
            q.ledger_errors,
        );
    }
}

fn write_sockets(out: &mut String, iface: &str, sockets: &[SocketInfo]) {
    let mut by_state: BTreeMap<(String, String), u64> = BTreeMap::new();
    for s in sockets {
        *by_state
            .entry((s.proto.clone(), s.state.clone()))
            .or_default() += 1;
    }
    let mut f = Family::new(
        out,
        "fastpath_sockets",
        "gauge",
        "Open sockets by protocol and state.",
    );
    for ((protocol, state), n) in &by_state {
        f.sample(
            "fastpath_sockets",
            &[("iface", iface), ("protocol", protocol), ("state", state)],
            *n,
        );
    }
}

/// Serves `render()` of what `fetch` returns at `/metrics` on `addr` until `stop` is set.
pub fn serve(
    addr: &str,
    stop: &std::sync::atomic::AtomicBool,
    mut fetch: impl FnMut() -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    let server = tiny_http::Server::http(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}; give a free ADDR:PORT"))?;
    log::info!("serving metrics at http://{addr}/metrics");
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let Some(request) = server.recv_timeout(std::time::Duration::from_millis(200))? else {
            continue;
        };
        let response = if request.url() == "/metrics" {
            match fetch() {
                Ok(body) => tiny_http::Response::from_string(body).with_header(
                    tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        &b"text/plain; version=0.0.4; charset=utf-8"[..],
                    )
                    .expect("a valid header"),
                ),
                Err(e) => {
                    tiny_http::Response::from_string(format!("{e:#}\n")).with_status_code(503)
                }
            }
        } else {
            tiny_http::Response::from_string("fastpath serves /metrics only\n")
                .with_status_code(404)
        };
        let _ = request.respond(response);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::FrameCountsJson;

    fn report() -> StatsReport {
        let mut layers = BTreeMap::new();
        layers.insert(
            "udp".to_string(),
            BTreeMap::from([("replied".to_string(), 7), ("drop_checksum".to_string(), 2)]),
        );
        layers.insert(
            "worker".to_string(),
            BTreeMap::from([("rx".to_string(), 9)]),
        );
        StatsReport {
            iface: "veth0".into(),
            pid: 1,
            mode: "driver".into(),
            service: "udp sockets".into(),
            uptime_secs: 1.5,
            rules: vec![],
            xdp: BTreeMap::from([("steered".to_string(), 11), ("passed".to_string(), 3)]),
            queues: vec![QueueStats {
                queue: 0,
                cpu: Some(1),
                zero_copy: false,
                rx: 9,
                tx: 7,
                fill_empty: 0,
                tx_full: 0,
                rx_dropped: 4,
                rx_ring_full: 0,
                rx_invalid_descs: 0,
                tx_invalid_descs: 0,
                counters: BTreeMap::new(),
                layers,
                frames: FrameCountsJson {
                    free: 10,
                    fill: 20,
                    rx: 0,
                    in_use: 0,
                    tx: 1,
                    completion: 0,
                },
                ledger_errors: 0,
            }],
        }
    }

    #[test]
    fn a_scraper_parses_every_family_with_its_labels() {
        let text = render(&report(), &[]);
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("valid exposition text");
        let value = |name: &str, label: (&str, &str)| {
            scrape
                .samples
                .iter()
                .find(|s| s.metric == name && s.labels.get(label.0) == Some(label.1))
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => f64::NAN,
                })
        };
        assert_eq!(
            value("fastpath_xdp_frames_total", ("outcome", "steered")),
            Some(11.0)
        );
        assert_eq!(
            value("fastpath_drops_total", ("reason", "checksum")),
            Some(2.0)
        );
        assert_eq!(
            value("fastpath_udp_replied_total", ("queue", "0")),
            Some(7.0)
        );
        assert_eq!(value("fastpath_worker_rx_total", ("queue", "0")), Some(9.0));
        assert_eq!(
            value("fastpath_xsk_rx_dropped_total", ("queue", "0")),
            Some(4.0)
        );
        assert_eq!(value("fastpath_umem_frames", ("place", "fill")), Some(20.0));
        assert!(
            scrape
                .samples
                .iter()
                .all(|s| s.labels.get("iface") == Some("veth0"))
        );
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        for family in ["fastpath_drops_total", "fastpath_umem_frames"] {
            assert!(text.contains(&format!("# HELP {family} ")), "{text}");
            assert!(text.contains(&format!("# TYPE {family} ")), "{text}");
        }
        let types = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
        let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
        assert_eq!(types, helps, "one HELP and one TYPE per family");
    }
}
