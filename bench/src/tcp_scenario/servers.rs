//! The TCP echo servers on the pair: fastpath's (`fastpath echo --tcp`) and the kernel's
//! (`kernel-tcp-echo`), started, probed, and fastpath's connections after a run.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddrV4, TcpStream},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use super::{PORT, System, TcpSettings};
use crate::{
    netns::{SERVER_ADDR, VethPair, netns_command},
    process::{ChildGuard, FastpathProcess, fastpath_binary, sibling_binary},
};

pub(super) enum Server {
    Fastpath(FastpathProcess),
    Kernel(ChildGuard),
}

impl Server {
    pub(super) fn pid(&self) -> Option<u32> {
        match self {
            Server::Fastpath(p) => p.pid(),
            Server::Kernel(c) => c.pid(),
        }
    }
}

pub(super) fn start_server(
    pair: &VethPair,
    system: System,
    s: &TcpSettings,
    core: usize,
) -> anyhow::Result<Server> {
    let (port, core, queues) = (PORT.to_string(), core.to_string(), s.queues.to_string());
    let server = match system {
        System::Fastpath => {
            // `start`, not `start_echo`: that one captures every frame into a pcap (tests).
            let mut args = vec![
                "--tcp",
                port.as_str(),
                "--cpus",
                core.as_str(),
                "--queues",
                queues.as_str(),
            ];
            args.extend(s.fastpath_args.iter().map(String::as_str));
            Server::Fastpath(FastpathProcess::start(pair, "echo", &args)?)
        }
        System::Kernel | System::KernelOffload => {
            let me = sibling_binary("fastpath-bench")?;
            let child = netns_command(&pair.server.netns, me.to_str().context("non-UTF-8 path")?)
                .args(["kernel-tcp-echo", "--addr", &SERVER_ADDR.to_string()])
                .args(["--port", &port, "--cpu", &core])
                .args(["--limit", &(s.duration_secs * 4 + 60).to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting the kernel TCP echo server")?;
            Server::Kernel(ChildGuard::new("kernel-tcp-echo", child))
        }
    };
    probe(pair)?;
    Ok(server)
}

/// Waits until the server echoes a byte on a fresh connection.
fn probe(pair: &VethPair) -> anyhow::Result<()> {
    let server = SocketAddrV4::new(SERVER_ADDR, PORT);
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < Duration::from_secs(10) {
        let echoed = VethPair::in_netns(&pair.client, || -> std::io::Result<()> {
            let mut s = TcpStream::connect_timeout(&server.into(), Duration::from_millis(300))?;
            s.set_read_timeout(Some(Duration::from_millis(300)))?;
            s.write_all(b"?")?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b)
        });
        match echoed {
            Ok(()) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("the TCP echo server did not answer within 10 s ({last})")
}

/// fastpath's TCP connections other than listeners, by state (`fastpath sockets --json`).
fn fastpath_connections(process: &FastpathProcess) -> anyhow::Result<BTreeMap<String, u64>> {
    let out = std::process::Command::new(fastpath_binary()?)
        .args(["sockets", "--json", "--control"])
        .arg(process.control())
        .output()?;
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let mut states = BTreeMap::new();
    for row in rows.as_array().into_iter().flatten() {
        if row["proto"] == "tcp" && row["state"] != "listen" {
            let state = row["state"].as_str().unwrap_or("?").to_string();
            *states.entry(state).or_insert(0) += 1;
        }
    }
    Ok(states)
}

/// Waits up to 2 s for fastpath's connections to close; returns what is left.
pub(super) fn settle(process: &FastpathProcess) -> BTreeMap<String, u64> {
    let start = Instant::now();
    loop {
        let left = fastpath_connections(process).unwrap_or_default();
        if left.is_empty() || start.elapsed() > Duration::from_secs(2) {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
