//! The test bed's line rate: AF_XDP alone, with no stack, pushing one pre-built MTU-sized
//! UDP frame out of an interface as fast as the TX ring and completions allow. The bench
//! harness divides a download's byte rate by this (`fastpath blast`, issue "HTTP at line
//! rate"). A bench tool, like `fastpath reflect`: never pointed at a real network.

use std::{
    net::SocketAddrV4,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::Context;
use fastpath_common::layout::{ETH_HLEN, IPV4_MIN_HLEN, UDP_HLEN};

use crate::{
    iface::frame::{FrameAddrs, write_udp},
    phy::{
        TxResult,
        xsk::{XskConfig, XskSocket},
    },
    wire::ethernet::MacAddr,
};

/// What to send and for how long.
#[derive(Clone, Debug)]
pub struct BlastSpec {
    pub iface: String,
    pub queue: u32,
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    /// The Ethernet frame's length (no FCS): MTU + 14 for full-sized frames.
    pub frame_len: usize,
    pub duration: Duration,
}

/// What left: frames the kernel completed, and their bytes.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct BlastReport {
    pub frames: u64,
    /// Ethernet frame bytes (headers included).
    pub bytes: u64,
    /// UDP payload bytes, the figure to compare with a TCP download's goodput.
    pub payload_bytes: u64,
    pub secs: f64,
    /// Ethernet bytes per second.
    pub bytes_per_sec: f64,
    pub payload_bytes_per_sec: f64,
}

/// An Ethernet + IPv4 + UDP frame of `spec.frame_len` bytes from `src` to `dst`, checksums
/// filled (`iface::frame::write_udp`).
pub fn udp_frame(spec: &BlastSpec) -> anyhow::Result<Vec<u8>> {
    let min = ETH_HLEN + IPV4_MIN_HLEN + UDP_HLEN;
    anyhow::ensure!(
        (min..=9000 + ETH_HLEN).contains(&spec.frame_len),
        "frame length {} is not within {min}..={}",
        spec.frame_len,
        9000 + ETH_HLEN
    );
    let payload: Vec<u8> = (0..spec.frame_len - min).map(|i| (i % 251) as u8).collect();
    let mut f = vec![0u8; spec.frame_len];
    let header = FrameAddrs {
        src_mac: spec.src_mac,
        dst_mac: spec.dst_mac,
        src: spec.src,
        dst: spec.dst,
    };
    let len = write_udp(&mut f, &header, &payload).context("the frame does not fit")?;
    debug_assert_eq!(len, spec.frame_len);
    Ok(f)
}

/// Sends `spec`'s frame over and over until `spec.duration` passes or `stop` is set.
pub fn blast(spec: &BlastSpec, stop: &AtomicBool) -> anyhow::Result<BlastReport> {
    let frame = udp_frame(spec)?;
    let mut socket = XskSocket::open(&spec.iface, spec.queue, &XskConfig::default())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let start = Instant::now();
    let mut sent = 0u64;
    let mut completed = 0u64;
    while start.elapsed() < spec.duration && !stop.load(Ordering::Relaxed) {
        completed += u64::from(socket.complete(u32::MAX));
        let batch = socket.transmit(|tx| {
            while tx.room() > 0 {
                let r = tx.send(&mut |buf: &mut [u8]| {
                    let out = buf.get_mut(..frame.len())?;
                    out.copy_from_slice(&frame);
                    Some(frame.len())
                });
                if r != TxResult::Sent {
                    break;
                }
            }
        });
        sent += u64::from(batch.transmitted);
        socket.kick_tx();
    }
    let secs = start.elapsed().as_secs_f64();
    // What is still in flight completes within a moment; it left inside the window.
    let drain = Instant::now();
    while completed < sent && drain.elapsed() < Duration::from_millis(200) {
        socket.kick_tx();
        completed += u64::from(socket.complete(u32::MAX));
    }
    let payload = (spec.frame_len - ETH_HLEN - IPV4_MIN_HLEN - UDP_HLEN) as u64;
    Ok(BlastReport {
        frames: completed,
        bytes: completed * spec.frame_len as u64,
        payload_bytes: completed * payload,
        secs,
        bytes_per_sec: (completed * spec.frame_len as u64) as f64 / secs,
        payload_bytes_per_sec: (completed * payload) as f64 / secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ipv4::Ipv4Packet, udp::UdpPacket};

    #[test]
    fn the_frame_is_valid_udp_with_good_checksums() {
        let spec = BlastSpec {
            iface: "x".into(),
            queue: 0,
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src: "198.18.0.1:9".parse().unwrap(),
            dst: "198.18.0.2:9999".parse().unwrap(),
            frame_len: 1514,
            duration: Duration::ZERO,
        };
        let f = udp_frame(&spec).unwrap();
        assert_eq!(f.len(), 1514);
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.total_len(), 1500);
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(
            udp.check(spec.src.ip().octets(), spec.dst.ip().octets()),
            crate::wire::checksum::ChecksumStatus::Valid
        );
        assert!(
            udp_frame(&BlastSpec {
                frame_len: 20,
                ..spec
            })
            .is_err()
        );
    }
}
