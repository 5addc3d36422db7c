//! Hostile frames from the peer, injected with a packet socket: the XDP program counts
//! and drops (or passes) each one, the verifier never objects, and service goes on.

use std::time::Duration;

use fastpath_e2e::*;

const PORT: u16 = 7000;
/// A port fastpath does not serve.
const UNSTEERED: u16 = 7001;

/// Checksum drops of both layers: the IPv4 header (demux) and UDP.
fn checksum_drops(stats: &serde_json::Value) -> u64 {
    queue_counter(stats, 0, "drop_ip_checksum") + queue_counter(stats, 0, "drop_checksum")
}

/// A UDP header to `port` whose length claims 200 bytes in a 12-byte datagram.
fn lying_udp(port: u16) -> Vec<u8> {
    let mut u = FrameBuilder::udp(200, b"abcd", 0);
    u[2..4].copy_from_slice(&port.to_be_bytes());
    u
}

struct FrameBuilder {
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
}

impl FrameBuilder {
    fn ethernet(&self, ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An IPv4 header (valid checksum unless `bad_checksum`) followed by `l4`.
    fn ipv4(
        ihl: u8,
        total_len: u16,
        flags_frag: u16,
        proto: u8,
        l4: &[u8],
        bad_checksum: bool,
    ) -> Vec<u8> {
        let mut h = vec![0u8; usize::from(ihl.max(5)) * 4];
        h[0] = 0x40 | ihl;
        h[2..4].copy_from_slice(&total_len.to_be_bytes());
        h[6..8].copy_from_slice(&flags_frag.to_be_bytes());
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(&CLIENT_ADDR.octets());
        h[16..20].copy_from_slice(&SERVER_ADDR.octets());
        let mut sum = 0u32;
        for w in h.chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let c = !(sum as u16) ^ u16::from(bad_checksum);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(l4);
        h
    }

    fn udp(len_field: u16, body: &[u8], checksum: u16) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&40000u16.to_be_bytes());
        u.extend_from_slice(&PORT.to_be_bytes());
        u.extend_from_slice(&len_field.to_be_bytes());
        u.extend_from_slice(&checksum.to_be_bytes());
        u.extend_from_slice(body);
        u
    }
}

#[test]
fn malformed_frames_are_counted_and_service_goes_on() {
    let pair = veth_pair(VethConfig::default());
    let fastpath = start_echo(&pair, &["--udp", &PORT.to_string()]);
    let socket = client_socket(&pair);
    assert!(round_trip(&socket, PORT, b"warm-up").is_some());
    let b = FrameBuilder {
        dst_mac: pair.server.mac,
        src_mac: pair.client.mac,
    };
    let ok_udp = FrameBuilder::udp(12, b"abcd", 0);
    let tot = |l4: usize| (20 + l4) as u16;
    // Steered (udp/7000 matches the rule), so judged: dropped and counted malformed.
    let malformed = vec![
        // Total length far beyond the frame.
        b.ethernet(0x0800, &FrameBuilder::ipv4(5, 1000, 0, 17, &ok_udp, false)),
        // Total length below the header length.
        b.ethernet(0x0800, &FrameBuilder::ipv4(5, 12, 0, 17, &ok_udp, false)),
        // A UDP header cut to 4 bytes (the ports are there, the length is not).
        b.ethernet(
            0x0800,
            &FrameBuilder::ipv4(5, tot(4), 0, 17, &ok_udp[..4], false),
        ),
        // A UDP length that lies (claims 200 in a 12-byte datagram).
        b.ethernet(
            0x0800,
            &FrameBuilder::ipv4(5, tot(12), 0, 17, &lying_udp(PORT), false),
        ),
        // A UDP length below the header size.
        b.ethernet(
            0x0800,
            &FrameBuilder::ipv4(5, tot(12), 0, 17, &FrameBuilder::udp(4, b"abcd", 0), false),
        ),
    ];
    // Not judged: no port can be read, or the port is not steered. These go to the kernel
    // untouched (counted passed), whose own checks and counters see them.
    let unjudged = vec![
        // A VLAN tag cut short.
        b.ethernet(0x8100, &[0x00]),
        // IPv4 EtherType with 10 bytes of header.
        b.ethernet(0x0800, &[0x45; 10]),
        // IHL 4 (< 5): no port behind it.
        b.ethernet(0x0800, &FrameBuilder::ipv4(4, 40, 0, 17, &[0; 20], false)),
        // A TCP header with data offset 2, to a port fastpath does not serve over TCP.
        b.ethernet(
            0x0800,
            &FrameBuilder::ipv4(
                5,
                tot(20),
                0,
                6,
                &{
                    let mut t = vec![0u8; 20];
                    t[2..4].copy_from_slice(&PORT.to_be_bytes());
                    t[12] = 0x20;
                    t
                },
                false,
            ),
        ),
        // The lying UDP length again, to a port nobody steers: the kernel counts it.
        b.ethernet(
            0x0800,
            &FrameBuilder::ipv4(5, tot(12), 0, 17, &lying_udp(UNSTEERED), false),
        ),
    ];
    let fragments = vec![
        // First fragment (MF set) and a later one (offset 185 × 8).
        b.ethernet(
            0x0800,
            &FrameBuilder::ipv4(5, tot(12), 0x2000, 17, &ok_udp, false),
        ),
        b.ethernet(
            0x0800,
            &FrameBuilder::ipv4(5, tot(12), 185, 17, &ok_udp, false),
        ),
    ];
    // Well-formed headers, steered, but refused by the stack's checks.
    let bad_checksums = vec![
        b.ethernet(
            0x0800,
            &FrameBuilder::ipv4(5, tot(12), 0, 17, &ok_udp, true),
        ),
        b.ethernet(
            0x0800,
            &FrameBuilder::ipv4(
                5,
                tot(12),
                0,
                17,
                &FrameBuilder::udp(12, b"abcd", 0x1234),
                false,
            ),
        ),
    ];

    let before = stats(&fastpath);
    let kernel_udp_errors = || VethPair::in_netns(&pair.server, || udp_snmp("InErrors"));
    let kernel_before = kernel_udp_errors();
    inject_frames(&pair, &malformed);
    inject_frames(&pair, &unjudged);
    inject_frames(&pair, &fragments);
    inject_frames(&pair, &bad_checksums);
    let delta = |after: &serde_json::Value, name: &str| {
        xdp_counter(after, name) - xdp_counter(&before, name)
    };
    let settled = eventually(Duration::from_secs(3), || {
        let s = stats(&fastpath);
        delta(&s, "malformed") >= malformed.len() as u64
            && checksum_drops(&s) >= bad_checksums.len() as u64
    });
    let after = stats(&fastpath);
    assert!(
        settled,
        "counters did not reach the expected values: {after}"
    );
    assert_eq!(
        delta(&after, "malformed"),
        malformed.len() as u64,
        "{after}"
    );
    assert_eq!(delta(&after, "fragment"), fragments.len() as u64, "{after}");
    assert!(
        delta(&after, "passed") >= unjudged.len() as u64,
        "frames fastpath does not own go to the kernel: {after}"
    );
    assert!(
        eventually(Duration::from_secs(2), || kernel_udp_errors()
            > kernel_before),
        "the kernel never saw the bad UDP length sent to port {UNSTEERED}"
    );
    // One bad IPv4 header checksum (the demux's) and one bad UDP checksum (UDP's).
    assert_eq!(queue_counter(&after, 0, "drop_ip_checksum"), 1, "{after}");
    assert_eq!(queue_counter(&after, 0, "drop_checksum"), 1, "{after}");
    assert_eq!(checksum_drops(&after), bad_checksums.len() as u64);
    assert_eq!(
        queue_counter(&after, 0, "replied"),
        queue_counter(&before, 0, "replied"),
        "nothing malformed may be answered"
    );

    // Still serving, and still attached.
    assert_eq!(round_trip(&socket, PORT, b"after"), Some(b"after".to_vec()));
    assert!(pair.server_has_xdp().unwrap());
    assert!(
        fastpath.log_text().find("panic").is_none(),
        "{}",
        fastpath.log_text()
    );
}

/// A frame judged malformed, with `--xdp-log debug`, prints one line naming the header,
/// field and offset; at the default level (warn) the same frame prints nothing and is
/// still counted.
#[test]
fn xdp_log_debug_names_the_reason_and_the_default_stays_quiet() {
    for (level, expect_line) in [(Some("debug"), true), (None, false)] {
        let pair = veth_pair(VethConfig::default());
        let mut args = vec!["--udp".to_string(), PORT.to_string()];
        if let Some(level) = level {
            args.extend(["--xdp-log".to_string(), level.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let fastpath = start_echo(&pair, &args);
        let b = FrameBuilder {
            dst_mac: pair.server.mac,
            src_mac: pair.client.mac,
        };
        let before = stats(&fastpath);
        let frame = b.ethernet(
            0x0800,
            &FrameBuilder::ipv4(5, 20 + 12, 0, 17, &lying_udp(PORT), false),
        );
        inject_frames(&pair, &[frame]);
        let counted = eventually(Duration::from_secs(3), || {
            xdp_counter(&stats(&fastpath), "malformed") == xdp_counter(&before, "malformed") + 1
        });
        assert!(counted, "level {level:?}: {}", stats(&fastpath));
        // The log thread drains the ring buffer at least every 100 ms.
        let line = "malformed UDP frame: length at offset 38";
        let logged = eventually(Duration::from_secs(2), || {
            fastpath.log_text().contains(line)
        });
        let text = fastpath.log_text();
        assert_eq!(logged, expect_line, "level {level:?}, log:\n{text}");
        if expect_line {
            assert_eq!(text.matches(line).count(), 1, "one line per frame:\n{text}");
        } else {
            assert!(
                !text.contains("malformed"),
                "default level printed:\n{text}"
            );
        }
    }
}
