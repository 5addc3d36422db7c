//! Frames for tests: a client at 198.18.0.2:40000 (MAC 02:00:00:00:00:02) sends a UDP
//! datagram to 198.18.0.1 (MAC 02:00:00:00:00:01); fields not set are 0xa5.

use fastpath_common::{IPPROTO_UDP, layout::ETHERTYPE_IPV4};

use super::{ipv4::Ipv4Repr, udp::UdpRepr};

pub const CLIENT: [u8; 4] = [198, 18, 0, 2];
pub const SERVER: [u8; 4] = [198, 18, 0, 1];

pub fn udp_request(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0xa5u8; 14 + 20 + 8 + payload.len()];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    Ipv4Repr {
        src: CLIENT,
        dst: SERVER,
        protocol: IPPROTO_UDP,
        payload_len: 8 + payload.len(),
        ttl: 61,
    }
    .emit(&mut f[14..])
    .expect("room for the header");
    f[42..].copy_from_slice(payload);
    UdpRepr {
        src_port: 40000,
        dst_port,
    }
    .emit(&mut f[34..], payload.len(), CLIENT, SERVER)
    .expect("room for the datagram");
    f
}
