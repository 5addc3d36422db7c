//! The test bed as the TCP scenarios set it: the veth ends' offloads (TSO, GSO, GRO), and
//! the client namespace's sysctls for tens of thousands of connections a second.

use anyhow::{Context, bail};

use crate::netns::{VethPair, netns_command};

/// TSO, GSO and GRO of one veth end, as `ethtool -k` shows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Offloads {
    tso: bool,
    gso: bool,
    gro: bool,
}

impl Offloads {
    const OFF: Offloads = Offloads {
        tso: false,
        gso: false,
        gro: false,
    };

    pub(super) fn read(netns: &str, iface: &str) -> anyhow::Result<Self> {
        let out = netns_command(netns, "ethtool")
            .args(["-k", iface])
            .output()
            .context("ethtool -k (is ethtool installed? `cargo xtask deps`)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let on = |key: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .is_some_and(|v| v.trim_start_matches(':').trim().starts_with("on"))
        };
        Ok(Self {
            tso: on("tcp-segmentation-offload"),
            gso: on("generic-segmentation-offload"),
            gro: on("generic-receive-offload"),
        })
    }

    fn apply(&self, netns: &str, iface: &str) -> anyhow::Result<()> {
        let word = |b: bool| if b { "on" } else { "off" };
        let out = netns_command(netns, "ethtool")
            .args(["-K", iface])
            .args(["tso", word(self.tso), "gso", word(self.gso)])
            .args(["gro", word(self.gro)])
            .output()
            .context("ethtool -K")?;
        if !out.status.success() {
            bail!(
                "ethtool -K {iface} in {netns} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    pub(super) fn describe(&self) -> String {
        let word = |b: bool| if b { "on" } else { "off" };
        format!(
            "tso {} gso {} gro {}",
            word(self.tso),
            word(self.gso),
            word(self.gro)
        )
    }
}

/// The pair's two ends' offloads as the kernel made them.
pub(super) struct DefaultOffloads {
    server: Offloads,
    client: Offloads,
}

impl DefaultOffloads {
    pub(super) fn read(pair: &VethPair) -> anyhow::Result<Self> {
        Ok(Self {
            server: Offloads::read(&pair.server.netns, &pair.server.iface)?,
            client: Offloads::read(&pair.client.netns, &pair.client.iface)?,
        })
    }

    /// Matched to fastpath's MTU-sized frames (all off), or the defaults.
    pub(super) fn set(&self, pair: &VethPair, matched: bool) -> anyhow::Result<()> {
        let (server, client) = if matched {
            (&Offloads::OFF, &Offloads::OFF)
        } else {
            (&self.server, &self.client)
        };
        server.apply(&pair.server.netns, &pair.server.iface)?;
        client.apply(&pair.client.netns, &pair.client.iface)
    }
}

/// Sysctls of the client namespace only: crr opens tens of thousands of connections a
/// second from one address, and each closed one waits in TIME-WAIT (60 s). The whole port
/// range and `tcp_tw_reuse=1` (a TIME-WAIT port may be reused for a new connect() 1 s
/// after its last segment, as timestamps make safe) keep connect() from running out.
pub(super) const CLIENT_SYSCTLS: [&str; 2] = [
    "net.ipv4.ip_local_port_range=1024 65535",
    "net.ipv4.tcp_tw_reuse=1",
];

pub(super) fn client_sysctls(pair: &VethPair) -> anyhow::Result<()> {
    for setting in CLIENT_SYSCTLS {
        let out = pair
            .client_command("sysctl")
            .args(["-qw", setting])
            .output()
            .context("sysctl")?;
        if !out.status.success() {
            bail!(
                "sysctl -w {setting} in the client namespace failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}
