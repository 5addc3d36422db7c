//! The systems a UDP scenario compares, and starting them on the pair: fastpath (also
//! from a baseline binary, or with a capture copying its flow), the AF_XDP ceiling, and
//! the kernel's echo servers (the harness's own, or sockperf's for ping-pong).

use std::{
    net::UdpSocket,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use super::{PORT, ScenarioKind, Settings};
use crate::{
    netns::{CLIENT_ADDR, SERVER_ADDR, VethPair, netns_command},
    process::{ChildGuard, FastpathProcess, sibling_binary},
    sockperf,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum System {
    Fastpath,
    Kernel,
    Ceiling,
    /// fastpath from the `--baseline-bin` binary (an earlier build), for a regression check.
    FastpathBaseline,
    /// The ceiling from the `--baseline-bin` binary.
    CeilingBaseline,
    /// fastpath while `fastpath capture` copies every frame of the flow (`--with-capture`).
    FastpathCapturing,
}

impl System {
    pub(crate) fn name(self) -> &'static str {
        match self {
            System::Fastpath => "fastpath",
            System::Kernel => "kernel",
            System::Ceiling => "ceiling",
            System::FastpathBaseline => "fastpath@baseline",
            System::CeilingBaseline => "ceiling@baseline",
            System::FastpathCapturing => "fastpath+capture",
        }
    }

    /// The same system run from the baseline binary, for systems that are fastpath's.
    pub(crate) fn baseline(self) -> Option<System> {
        match self {
            System::Fastpath => Some(System::FastpathBaseline),
            System::Ceiling => Some(System::CeilingBaseline),
            _ => None,
        }
    }
}

pub(crate) enum Server {
    Fastpath(FastpathProcess),
    Child(ChildGuard),
    /// fastpath, and a `fastpath capture` child whose report goes to `report`.
    Capturing(FastpathProcess, ChildGuard, PathBuf),
}

impl Server {
    pub(crate) fn pid(&self) -> Option<u32> {
        match self {
            Server::Fastpath(p) | Server::Capturing(p, _, _) => p.pid(),
            Server::Child(c) => c.pid(),
        }
    }

    /// Datagrams the server has answered so far, by its own count: fastpath's workers'
    /// TX (from its control socket), or the kernel's UDP `OutDatagrams` in the server's
    /// namespace (the kernel echo is the only UDP sender there).
    pub(crate) fn answered(&self) -> Option<u64> {
        match self {
            Server::Fastpath(p) | Server::Capturing(p, _, _) => {
                let stats = crate::process::request(p.control(), "stats").ok()?;
                stats["queues"]
                    .as_array()?
                    .iter()
                    .map(|q| q["tx"].as_u64())
                    .sum()
            }
            Server::Child(c) => {
                let snmp = std::fs::read_to_string(format!("/proc/{}/net/snmp", c.pid()?)).ok()?;
                udp_out_datagrams(&snmp)
            }
        }
    }

    /// What the capture reported when it ended (it runs for the measurement and a second
    /// more), for the report's notes.
    pub(crate) fn capture_summary(&mut self) -> Option<String> {
        let Server::Capturing(_, child, report) = self else {
            return None;
        };
        let start = Instant::now();
        while !child.exited() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let text = std::fs::read_to_string(&*report).unwrap_or_default();
        let _ = std::fs::remove_file(&*report);
        text.lines()
            .find(|l| l.contains("captured"))
            .map(|l| l.trim_start_matches("fastpath: ").to_string())
    }
}

pub(crate) fn start_server(
    pair: &VethPair,
    kind: ScenarioKind,
    system: System,
    s: &Settings,
    cpu: usize,
) -> anyhow::Result<Server> {
    let port = PORT.to_string();
    let cpu_arg = cpu.to_string();
    let queues = s.queues.to_string();
    // fastpath's subcommand and extra flags for the systems it plays.
    let fastpath = match (kind, system) {
        (
            ScenarioKind::UdpPingpong,
            System::Fastpath | System::FastpathBaseline | System::FastpathCapturing,
        ) => Some(("echo", Some("--sockperf"))),
        (_, System::Fastpath | System::FastpathBaseline | System::FastpathCapturing) => {
            Some(("echo", None))
        }
        (_, System::Ceiling | System::CeilingBaseline) => Some(("reflect", None)),
        (_, System::Kernel) => None,
    };
    let binary = match system {
        System::FastpathBaseline | System::CeilingBaseline => s.baseline_bin.clone(),
        _ => None,
    };
    let server = match (kind, system, fastpath) {
        (_, _, Some((command, flag))) => {
            let mut args = vec![
                "--udp",
                port.as_str(),
                "--cpus",
                cpu_arg.as_str(),
                "--queues",
                queues.as_str(),
            ];
            args.extend(flag);
            args.extend(s.fastpath_args.iter().map(String::as_str));
            let process = match binary {
                Some(bin) => FastpathProcess::start_binary(&bin, pair, command, &args)?,
                None => FastpathProcess::start(pair, command, &args)?,
            };
            if system == System::FastpathCapturing {
                let (child, report) = start_capture(&process, s)?;
                Server::Capturing(process, child, report)
            } else {
                Server::Fastpath(process)
            }
        }
        (ScenarioKind::UdpPingpong, _, None) => {
            Server::Child(sockperf::start_server(pair, PORT, cpu)?)
        }
        (_, _, None) => {
            let me = sibling_binary("fastpath-bench")?;
            let child = netns_command(&pair.server.netns, me.to_str().context("non-UTF-8 path")?)
                .args([
                    "kernel-echo",
                    "--addr",
                    &SERVER_ADDR.to_string(),
                    "--port",
                    &port,
                    "--cpu",
                    &cpu_arg,
                ])
                .args(["--limit", &(s.duration_secs * 4 + 300).to_string()])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .context("starting the kernel echo server")?;
            Server::Child(ChildGuard::new("kernel-echo", child))
        }
    };
    probe(pair)?;
    Ok(server)
}

/// `Udp: … OutDatagrams …` of a `/proc/net/snmp` text: the header line names the fields,
/// the next line holds their values.
pub(crate) fn udp_out_datagrams(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let at = names.split_whitespace().position(|n| n == "OutDatagrams")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// `fastpath capture` of the bench port into /dev/null, for the measurement and a second
/// more; its report (frames copied, frames the ring had no room for) goes to a file.
fn start_capture(process: &FastpathProcess, s: &Settings) -> anyhow::Result<(ChildGuard, PathBuf)> {
    let report = std::env::temp_dir().join(format!(
        "fastpath-capture-{}-{}.txt",
        std::process::id(),
        process.pid().unwrap_or_default()
    ));
    let child = std::process::Command::new(crate::process::fastpath_binary()?)
        .arg("capture")
        .arg("--control")
        .arg(process.control())
        .args(["--port", &PORT.to_string()])
        .args(["--duration", &(s.duration_secs + 1).to_string()])
        .args(["-w", "/dev/null"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&report)?)
        .spawn()
        .context("starting fastpath capture")?;
    let guard = ChildGuard::new("fastpath capture", child);
    // Until it says it is capturing (its first line), bounded.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5)
        && !std::fs::read_to_string(&report).is_ok_and(|t| t.contains("capturing"))
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((guard, report))
}

/// Waits until the server answers a sockperf-format ping.
fn probe(pair: &VethPair) -> anyhow::Result<()> {
    let socket = client_socket(pair)?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut msg = [0u8; 64];
    msg[8..10].copy_from_slice(&0x0003u16.to_be_bytes());
    msg[10..14].copy_from_slice(&64u32.to_be_bytes());
    let start = Instant::now();
    let mut buf = [0u8; 128];
    while start.elapsed() < Duration::from_secs(10) {
        let _ = socket.send(&msg);
        if socket.recv(&mut buf).is_ok() {
            return Ok(());
        }
    }
    bail!("the server did not answer within 10 s")
}

pub(crate) fn client_socket(pair: &VethPair) -> anyhow::Result<UdpSocket> {
    VethPair::in_netns(&pair.client, || -> anyhow::Result<UdpSocket> {
        let s = UdpSocket::bind((CLIENT_ADDR, 0))?;
        s.connect((SERVER_ADDR, PORT))?;
        Ok(s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_out_datagrams_is_read_by_its_name() {
        let snmp = "\
Ip: Forwarding DefaultTTL\n\
Ip: 1 64\n\
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors\n\
Udp: 1000 3 0 998 2\n\
UdpLite: InDatagrams NoPorts InErrors OutDatagrams\n\
UdpLite: 0 0 0 0\n";
        assert_eq!(udp_out_datagrams(snmp), Some(998));
        assert_eq!(udp_out_datagrams("Ip: 1\n"), None);
    }
}
