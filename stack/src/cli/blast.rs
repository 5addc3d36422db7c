//! `fastpath blast`: the test bed's line rate.
use std::{net::SocketAddrV4, time::Duration};

use anyhow::Context;

#[derive(clap::Args)]
pub(crate) struct BlastArgs {
    /// Interface to send from (must exist in this network namespace).
    #[arg(long, short = 'i', value_name = "IF")]
    iface: String,
    /// TX queue to send on.
    #[arg(long, default_value_t = 0)]
    queue: u32,
    /// Source address and port of the frames.
    #[arg(long, value_name = "IP:PORT")]
    src: SocketAddrV4,
    /// Destination address and port.
    #[arg(long, value_name = "IP:PORT")]
    dst: SocketAddrV4,
    /// Destination MAC (the receiver's interface), e.g. 02:00:00:00:00:02.
    #[arg(long, value_name = "MAC", value_parser = parse_mac)]
    dst_mac: [u8; 6],
    /// Ethernet frame length (default: the interface's MTU + 14, a full-sized frame).
    #[arg(long, value_name = "BYTES")]
    frame_len: Option<usize>,
    /// Seconds to send.
    #[arg(long, default_value_t = 5.0, value_parser = super::parse_seconds)]
    duration: f64,
}

pub(crate) fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("{s:?} is not a MAC address like 02:00:00:00:00:02"));
    }
    for (b, p) in mac.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16).map_err(|_| format!("{s:?} is not a MAC address"))?;
    }
    Ok(mac)
}

pub(crate) fn blast(args: BlastArgs) -> anyhow::Result<()> {
    let src_mac = fastpath::system::mac_address(&args.iface).with_context(|| {
        format!(
            "interface {:?} is not in this network namespace (list them with `ip link`)",
            args.iface
        )
    })?;
    let frame_len = match args.frame_len {
        Some(n) => n,
        None => {
            let mtu: usize = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", args.iface))?
                .trim()
                .parse()?;
            mtu + 14
        }
    };
    let spec = fastpath::app::blast::BlastSpec {
        iface: args.iface,
        queue: args.queue,
        src_mac,
        dst_mac: args.dst_mac,
        src: args.src,
        dst: args.dst,
        frame_len,
        duration: Duration::from_secs_f64(args.duration),
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let report = fastpath::app::blast::blast(&spec, &stop)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
