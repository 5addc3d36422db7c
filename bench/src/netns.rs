//! The test bed: two network namespaces joined by a veth pair, with addresses from the
//! benchmarking range 198.18.0.0/15, unique names, and removal on every exit path.
//!
//! Deleting a namespace destroys the veth end inside it, so `Drop` deletes the two
//! namespaces and nothing else. The veth is created directly inside the namespaces
//! (`ip link add … netns`), so it never exists in the root namespace.

use std::{
    fs::File,
    net::Ipv4Addr,
    os::fd::AsRawFd,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context, bail};

/// Every namespace the harness makes starts with this followed by the pid, so leftovers of a
/// killed run can be found (`cargo xtask clean-netns` deletes those whose process is gone).
pub const NETNS_PREFIX: &str = "fpt-";

static NEXT: AtomicU32 = AtomicU32::new(0);

#[derive(Clone, Debug)]
pub struct VethConfig {
    /// RX and TX queues on each end (a default veth has one active queue).
    pub queues: u32,
    pub mtu: u32,
    /// TX checksum offload on the client (peer) end: on, as the kernel sets it, by default.
    pub peer_tx_checksum: bool,
}

impl Default for VethConfig {
    fn default() -> Self {
        Self {
            queues: 1,
            mtu: 1500,
            peer_tx_checksum: true,
        }
    }
}

/// One end of the pair: a namespace, its veth, its address.
#[derive(Clone, Debug)]
pub struct Host {
    pub netns: String,
    pub iface: String,
    pub addr: Ipv4Addr,
    pub mac: [u8; 6],
    pub ifindex: u32,
}

/// Two namespaces, `server` (where fastpath runs) and `client` (the kernel peer).
pub struct VethPair {
    pub server: Host,
    pub client: Host,
    pub config: VethConfig,
    created: Vec<String>,
}

pub const SERVER_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn run(args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (is iproute2 installed? `cargo xtask deps`)",
                args[0]
            )
        })?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

impl VethPair {
    /// Creates the pair. Needs root; fails (never skips) without it.
    pub fn create(config: VethConfig) -> anyhow::Result<Self> {
        // Safety: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("creating network namespaces needs root: run the tests as root (CI does)");
        }
        let mut pair = Self::named(config);
        // From here on, Drop removes whatever was made, also if a later step fails.
        for ns in [pair.server.netns.clone(), pair.client.netns.clone()] {
            run(&["ip", "netns", "add", &ns])?;
            pair.created.push(ns);
        }
        pair.add_veth()?;
        let mtu = pair.config.mtu.to_string();
        for host in [&pair.server, &pair.client] {
            configure_host(host, &mtu)?;
        }
        pair.set_peer_tx_checksum()?;
        for host in [&mut pair.server, &mut pair.client] {
            let (mac, ifindex) = link_info(&host.netns, &host.iface)?;
            host.mac = mac;
            host.ifindex = ifindex;
        }
        pair.add_static_neighbours()?;
        Ok(pair)
    }

    /// The pair's unique names (the pid and a counter), nothing made yet.
    fn named(config: VethConfig) -> Self {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{pid}n{n}");
        VethPair {
            server: Host {
                netns: format!("{NETNS_PREFIX}{tag}-s"),
                iface: format!("fps{tag}"),
                addr: SERVER_ADDR,
                mac: [0; 6],
                ifindex: 0,
            },
            client: Host {
                netns: format!("{NETNS_PREFIX}{tag}-c"),
                iface: format!("fpc{tag}"),
                addr: CLIENT_ADDR,
                mac: [0; 6],
                ifindex: 0,
            },
            config,
            created: Vec::new(),
        }
    }

    /// The veth, made directly inside the two namespaces, with the configured queues.
    fn add_veth(&self) -> anyhow::Result<()> {
        let q = self.config.queues.to_string();
        run(&[
            "ip",
            "link",
            "add",
            &self.server.iface,
            "netns",
            &self.server.netns,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &self.client.iface,
            "netns",
            &self.client.netns,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
        ])?;
        Ok(())
    }

    /// TX checksum offload on the client (peer) end, on or off as configured.
    fn set_peer_tx_checksum(&self) -> anyhow::Result<()> {
        let offload = if self.config.peer_tx_checksum {
            "on"
        } else {
            "off"
        };
        run(&[
            "ip",
            "netns",
            "exec",
            &self.client.netns,
            "ethtool",
            "-K",
            &self.client.iface,
            "tx",
            offload,
        ])
        .context(
            "setting the peer's TX checksum offload (is ethtool installed? `cargo xtask deps`)",
        )?;
        Ok(())
    }

    /// Static neighbours: no ARP round trip before the first datagram of a run.
    fn add_static_neighbours(&self) -> anyhow::Result<()> {
        for (here, there) in [(&self.server, &self.client), (&self.client, &self.server)] {
            run(&[
                "ip",
                "-n",
                &here.netns,
                "neigh",
                "replace",
                &there.addr.to_string(),
                "lladdr",
                &fmt_mac(&there.mac),
                "dev",
                &here.iface,
                "nud",
                "permanent",
            ])?;
        }
        Ok(())
    }

    /// Runs `f` on a thread inside `host`'s namespace: sockets it creates live there.
    pub fn in_netns<R: Send>(host: &Host, f: impl FnOnce() -> R + Send) -> R {
        in_netns(&host.netns, f)
    }

    /// `ip netns exec NS program args…` for the server namespace.
    pub fn server_command(&self, program: &str) -> Command {
        netns_command(&self.server.netns, program)
    }

    pub fn client_command(&self, program: &str) -> Command {
        netns_command(&self.client.netns, program)
    }

    /// Whether an XDP program is attached to the server's veth.
    pub fn server_has_xdp(&self) -> anyhow::Result<bool> {
        let out = run(&[
            "ip",
            "-n",
            &self.server.netns,
            "-d",
            "link",
            "show",
            "dev",
            &self.server.iface,
        ])?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.contains("prog/xdp") || text.contains(" xdp"))
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in self.created.drain(..).rev() {
            let result = Command::new("ip").args(["netns", "del", &ns]).output();
            let failed = match &result {
                Ok(out) => (!out.status.success())
                    .then(|| String::from_utf8_lossy(&out.stderr).into_owned()),
                Err(e) => Some(e.to_string()),
            };
            // Report, never panic: a panic while unwinding would abort and skip the rest.
            if let Some(why) = failed {
                eprintln!("warning: could not delete network namespace {ns}: {why}");
            }
        }
    }
}

/// One end, inside its namespace: IPv6 off, the MTU, the address, the links up.
fn configure_host(host: &Host, mtu: &str) -> anyhow::Result<()> {
    let ns = host.netns.as_str();
    // No IPv6: its neighbour discovery would add stray frames to every counter.
    run(&[
        "ip",
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=1",
    ])?;
    run(&["ip", "-n", ns, "link", "set", &host.iface, "mtu", mtu])?;
    run(&[
        "ip",
        "-n",
        ns,
        "addr",
        "add",
        &format!("{}/24", host.addr),
        "dev",
        &host.iface,
    ])?;
    run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    run(&["ip", "-n", ns, "link", "set", &host.iface, "up"])?;
    Ok(())
}

pub fn netns_command(netns: &str, program: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, program]);
    cmd
}

/// Runs `f` on a fresh thread that has entered `netns` (network namespaces are per thread).
pub fn in_netns<R: Send>(netns: &str, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let file = File::open(format!("/run/netns/{netns}"))
                .unwrap_or_else(|e| panic!("cannot open network namespace {netns}: {e}"));
            // Safety: setns on this thread only, with a namespace fd we hold open.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({netns}): {}", std::io::Error::last_os_error());
            f()
        });
        handle
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn link_info(netns: &str, iface: &str) -> anyhow::Result<([u8; 6], u32)> {
    let out = run(&["ip", "-n", netns, "-o", "link", "show", "dev", iface])?;
    let text = String::from_utf8_lossy(&out.stdout);
    let ifindex = text
        .split(':')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .with_context(|| format!("no ifindex in {text:?}"))?;
    let mac_text = text
        .split("link/ether ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .with_context(|| format!("no MAC in {text:?}"))?;
    let mut mac = [0u8; 6];
    for (i, part) in mac_text.split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(part, 16)?;
    }
    Ok((mac, ifindex))
}

pub fn fmt_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
