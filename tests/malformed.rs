//! Hostile frames from the peer, injected with a packet socket: the XDP program counts
//! and drops (or passes) each one, the verifier never objects, and service goes on.

use std::time::Duration;

use fastpath_e2e::*;

const PORT: u16 = 7000;

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
    let malformed = vec![
        // A VLAN tag cut short.
        b.ethernet(0x8100, &[0x00]),
        // IPv4 EtherType with 10 bytes of header.
        b.ethernet(0x0800, &[0x45; 10]),
        // IHL 4 (< 5).
        b.ethernet(0x0800, &FrameBuilder::ipv4(4, 40, 0, 17, &[0; 20], false)),
        // Total length far beyond the frame.
        b.ethernet(0x0800, &FrameBuilder::ipv4(5, 1000, 0, 17, &ok_udp, false)),
        // Total length below the header length.
        b.ethernet(0x0800, &FrameBuilder::ipv4(5, 12, 0, 17, &ok_udp, false)),
        // A UDP header cut to 4 bytes.
        b.ethernet(
            0x0800,
            &FrameBuilder::ipv4(5, tot(4), 0, 17, &ok_udp[..4], false),
        ),
        // A UDP length that lies (claims 200 in a 12-byte datagram).
        b.ethernet(
            0x0800,
            &FrameBuilder::ipv4(
                5,
                tot(12),
                0,
                17,
                &FrameBuilder::udp(200, b"abcd", 0),
                false,
            ),
        ),
        // A UDP length below the header size.
        b.ethernet(
            0x0800,
            &FrameBuilder::ipv4(5, tot(12), 0, 17, &FrameBuilder::udp(4, b"abcd", 0), false),
        ),
        // A TCP header with data offset 2.
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
    inject_frames(&pair, &malformed);
    inject_frames(&pair, &fragments);
    inject_frames(&pair, &bad_checksums);
    let delta = |after: &serde_json::Value, name: &str| {
        xdp_counter(after, name) - xdp_counter(&before, name)
    };
    let settled = eventually(Duration::from_secs(3), || {
        let s = stats(&fastpath);
        delta(&s, "malformed") >= malformed.len() as u64
            && queue_counter(&s, 0, "drop_checksum") >= bad_checksums.len() as u64
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
    assert_eq!(
        queue_counter(&after, 0, "drop_checksum"),
        bad_checksums.len() as u64
    );
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
