//! Impairs the kernel peer's own frames: a tc classifier (`ebpf/impair`) on the egress of a
//! veth end, inside that end's namespace, drops, duplicates and corrupts what the kernel
//! sends there at rates held in a map. This kernel has no netem; clsact and cls_bpf are
//! built in. fastpath's own frames leave through AF_XDP, which skips the qdisc layer:
//! `fastpath::phy::impair` impairs those.
//!
//! `TcImpair::attach` adds a clsact qdisc (unless one is there) and the filter; dropping
//! the guard removes both, from inside the namespace (netlink works in the calling thread's
//! namespace, so a detach from anywhere else would look for the wrong interface).

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, bail};
use aya::{
    Ebpf,
    maps::{Array, PerCpuArray},
    programs::{
        SchedClassifier,
        tc::{self, NlOptions, SchedClassifierLinkId, TcAttachOptions, TcAttachType, TcError},
    },
};
use fastpath_common::{
    IPPROTO_TCP, IPPROTO_UDP,
    impair::{
        IMPAIR_CONFIG_MAP, IMPAIR_COUNTERS_MAP, IMPAIR_PROGRAM_NAME, PER_MILLION, TcImpairConfig,
        TcImpairCounter,
    },
};

use crate::netns::{Host, in_netns, netns_command};

/// The program, built by build.rs (empty with AYA_BUILD_SKIP=1).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/fastpath-impair"));

/// What the program does to the frames it matches: rates, and which frames it matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcRates {
    config: TcImpairConfig,
}

/// A percentage as parts per million (clamped to 0 ..= 100 %).
fn ppm(percent: f64) -> u32 {
    (percent.clamp(0.0, 100.0) * f64::from(PER_MILLION) / 100.0).round() as u32
}

impl TcRates {
    /// No impairment: every frame passes.
    pub fn none() -> Self {
        Self::default()
    }

    /// Drops `percent` % of the matched frames.
    pub fn loss(self, percent: f64) -> Self {
        self.with(|c| c.loss_ppm = ppm(percent))
    }

    /// Sends `percent` % of the matched frames twice.
    pub fn duplicate(self, percent: f64) -> Self {
        self.with(|c| c.duplicate_ppm = ppm(percent))
    }

    /// Flips one byte after the Ethernet header in `percent` % of the matched frames.
    /// Checksums catch it only if the peer computes them (`VethConfig::peer_tx_checksum`
    /// off); a partial checksum is accepted whatever the payload. Not for TCP: the kernel
    /// fills a TCP segment's checksum in software after tc egress (`validate_xmit_skb`),
    /// so the flipped byte leaves with a valid checksum, a corruption no receiver can
    /// catch (it reset a connection once, as a flipped RST bit). Corrupt TCP on the
    /// receiving side instead (fastpath's `--impair rx-corrupt=`).
    pub fn corrupt(self, percent: f64) -> Self {
        self.with(|c| c.corrupt_ppm = ppm(percent))
    }

    /// Only TCP segments from or to `port` (0: any TCP segment).
    pub fn only_tcp(self, port: u16) -> Self {
        self.with(|c| (c.proto, c.port) = (IPPROTO_TCP, port))
    }

    /// Only UDP datagrams from or to `port` (0: any UDP datagram).
    pub fn only_udp(self, port: u16) -> Self {
        self.with(|c| (c.proto, c.port) = (IPPROTO_UDP, port))
    }

    /// The configuration the program reads.
    pub fn config(&self) -> TcImpairConfig {
        self.config
    }

    fn with(mut self, f: impl FnOnce(&mut TcImpairConfig)) -> Self {
        f(&mut self.config);
        self
    }
}

/// The program attached to a veth end's egress; removed when dropped.
pub struct TcImpair<'a> {
    host: &'a Host,
    /// Taken by `detach`, which drops it inside the namespace.
    ebpf: Option<Ebpf>,
    link: Option<SchedClassifierLinkId>,
    /// Whether we added the clsact qdisc (and so remove it).
    added_qdisc: bool,
}

impl<'a> TcImpair<'a> {
    /// Loads the program, sets `rates` and attaches it to the egress of `host`'s veth.
    pub fn attach(host: &'a Host, rates: TcRates) -> anyhow::Result<Self> {
        if OBJECT.is_empty() {
            bail!(
                "the tc impairment program was not built (AYA_BUILD_SKIP was set when \
                 fastpath-bench was built); rebuild without it"
            );
        }
        let mut ebpf = Ebpf::load(OBJECT).context("loading the tc impairment object")?;
        set_config(&mut ebpf, rates)?;
        let program: &mut SchedClassifier = ebpf
            .program_mut(IMPAIR_PROGRAM_NAME)
            .with_context(|| format!("no program {IMPAIR_PROGRAM_NAME} in the object"))?
            .try_into()?;
        program
            .load()
            .context("the verifier refused the tc impairment program")?;
        let iface = host.iface.as_str();
        let (added_qdisc, link) = in_netns(&host.netns, || -> anyhow::Result<_> {
            let added = match tc::qdisc_add_clsact(iface) {
                Ok(()) => true,
                Err(TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => false,
                Err(e) => return Err(e).context(format!("adding a clsact qdisc to {iface}")),
            };
            let link = program
                .attach_with_options(
                    iface,
                    TcAttachType::Egress,
                    TcAttachOptions::Netlink(NlOptions::default()),
                )
                .with_context(|| format!("attaching to the egress of {iface}"));
            Ok((added, link))
        })?;
        let mut guard = Self {
            host,
            ebpf: Some(ebpf),
            link: None,
            added_qdisc,
        };
        // On failure the guard removes the qdisc it added.
        guard.link = Some(link?);
        Ok(guard)
    }

    /// Changes the rates of the attached program (frames in flight see either).
    pub fn set_rates(&mut self, rates: TcRates) -> anyhow::Result<()> {
        let ebpf = self.ebpf.as_mut().context("detached")?;
        set_config(ebpf, rates)
    }

    /// The program's counters summed over CPUs, by name (`TcImpairCounter::name`).
    pub fn counters(&self) -> anyhow::Result<BTreeMap<&'static str, u64>> {
        let ebpf = self.ebpf.as_ref().context("detached")?;
        let map = ebpf
            .map(IMPAIR_COUNTERS_MAP)
            .with_context(|| format!("no map {IMPAIR_COUNTERS_MAP}"))?;
        let array = PerCpuArray::<_, u64>::try_from(map)?;
        TcImpairCounter::ALL
            .iter()
            .map(|c| {
                let per_cpu = array.get(&(*c as u32), 0)?;
                Ok((c.name(), per_cpu.iter().sum()))
            })
            .collect()
    }

    /// One counter (see `counters`).
    pub fn counter(&self, counter: TcImpairCounter) -> anyhow::Result<u64> {
        Ok(self.counters()?[counter.name()])
    }

    /// Removes the filter and the qdisc it added, reporting what failed.
    pub fn detach(mut self) -> anyhow::Result<()> {
        self.remove()
    }

    fn remove(&mut self) -> anyhow::Result<()> {
        let Some(mut ebpf) = self.ebpf.take() else {
            return Ok(());
        };
        let netns = &self.host.netns;
        if !Path::new(&format!("/run/netns/{netns}")).exists() {
            // The namespace went first, and its veth with it: nothing is attached any more.
            // The netlink link must not be detached from this thread's namespace.
            std::mem::forget(ebpf);
            bail!("namespace {netns} is gone; the filter went with it");
        }
        let (link, iface) = (self.link.take(), self.host.iface.as_str());
        let detached = in_netns(netns, move || -> anyhow::Result<()> {
            if let Some(link) = link {
                let program: &mut SchedClassifier = ebpf
                    .program_mut(IMPAIR_PROGRAM_NAME)
                    .context("no program")?
                    .try_into()?;
                program
                    .detach(link)
                    .with_context(|| format!("detaching from the egress of {iface}"))?;
            }
            // Anything still attached is detached here, in the namespace.
            drop(ebpf);
            Ok(())
        });
        if self.added_qdisc {
            let out = netns_command(netns, "tc")
                .args(["qdisc", "del", "dev", iface, "clsact"])
                .output()
                .context("running tc (iproute2)")?;
            if !out.status.success() {
                bail!(
                    "removing the clsact qdisc of {iface}: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        detached
    }
}

impl Drop for TcImpair<'_> {
    fn drop(&mut self) {
        // Report, never panic: a panic while unwinding would abort.
        if let Err(e) = self.remove() {
            eprintln!("warning: tc impairment on {}: {e:#}", self.host.iface);
        }
    }
}

fn set_config(ebpf: &mut Ebpf, rates: TcRates) -> anyhow::Result<()> {
    let map = ebpf
        .map_mut(IMPAIR_CONFIG_MAP)
        .with_context(|| format!("no map {IMPAIR_CONFIG_MAP}"))?;
    let mut array = Array::<_, TcImpairConfig>::try_from(map)?;
    array.set(0, rates.config(), 0)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_parts_per_million() {
        let c = TcRates::none()
            .loss(20.0)
            .duplicate(0.1)
            .corrupt(150.0)
            .only_udp(7000)
            .config();
        assert_eq!(
            (c.loss_ppm, c.duplicate_ppm, c.corrupt_ppm),
            (200_000, 1_000, 1_000_000)
        );
        assert_eq!((c.proto, c.port), (IPPROTO_UDP, 7000));
        assert_eq!(TcRates::none().config(), TcImpairConfig::default());
    }
}
