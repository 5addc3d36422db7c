//! The generator's frames: a flow's request built once (Ethernet, IPv4, UDP, sockperf's
//! header), stamped per send with a sequence number, a time and the checksum updated to
//! match, and a reply read back.

use anyhow::Context;
use fastpath::wire::{checksum, ipv4::Ipv4Repr, udp::UdpRepr};
use fastpath_common::{
    IPPROTO_UDP,
    layout::{ETH_HLEN, ETHERTYPE_IPV4, IPV4_MIN_HLEN, IPV4_PROTO, UDP_HLEN},
};

use super::FIRST_FLOW_PORT;
use crate::generator::HEADER_LEN;

/// Where the headers end and the UDP payload begins (untagged IPv4, no options).
const L4: usize = ETH_HLEN + IPV4_MIN_HLEN;
const PAYLOAD: usize = L4 + UDP_HLEN;
/// In the payload: sockperf's header (sequence u64, flags u16, length u32), then the
/// intended send time (u64 ns), all big-endian.
const SEQ_AT: usize = PAYLOAD;
const TIME_AT: usize = PAYLOAD + HEADER_LEN;
const UDP_CHECKSUM_AT: usize = L4 + 6;
const FLAGS_PING: u16 = 0x0003;

/// The request template of one flow: its checksum's sum over everything but the sequence
/// number and the time, which `stamp` adds per send.
#[derive(Clone, Copy, Debug)]
pub(super) struct FlowTemplate {
    base_sum: u64,
}

/// Builds the request frame of flow port `src_port` into `frame` and returns its length
/// and the flow's template (sequence number and time zero).
pub(super) fn build_request(
    frame: &mut [u8],
    macs: ([u8; 6], [u8; 6]),
    addrs: ([u8; 4], [u8; 4]),
    ports: (u16, u16),
    payload: usize,
) -> anyhow::Result<(usize, FlowTemplate)> {
    let len = PAYLOAD + payload;
    let frame = frame
        .get_mut(..len)
        .context("the request does not fit in a UMEM frame")?;
    let (client_mac, server_mac) = macs;
    let (client, server) = addrs;
    frame[0..6].copy_from_slice(&server_mac);
    frame[6..12].copy_from_slice(&client_mac);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    Ipv4Repr {
        src: client,
        dst: server,
        protocol: IPPROTO_UDP,
        payload_len: UDP_HLEN + payload,
        ttl: 64,
    }
    .emit(&mut frame[ETH_HLEN..])
    .map_err(|e| anyhow::anyhow!("IPv4 header: {e}"))?;
    let body = &mut frame[PAYLOAD..];
    body.fill(0);
    body[8..10].copy_from_slice(&FLAGS_PING.to_be_bytes());
    body[10..14].copy_from_slice(&(payload as u32).to_be_bytes());
    UdpRepr {
        src_port: ports.0,
        dst_port: ports.1,
    }
    .emit(&mut frame[L4..], payload, client, server)
    .map_err(|e| anyhow::anyhow!("UDP header: {e}"))?;
    // The sum the checksum was computed from, less nothing: sequence and time are zero.
    let udp_len = (UDP_HLEN + payload) as u16;
    let mut udp = frame[L4..].to_vec();
    udp[6..8].copy_from_slice(&[0, 0]);
    let base_sum =
        checksum::pseudo_header_v4(client, server, IPPROTO_UDP, udp_len) + checksum::sum(&udp);
    Ok((len, FlowTemplate { base_sum }))
}

/// Writes the sequence number and the time into a request built by `build_request`, and
/// its UDP checksum from the flow's sum plus theirs. Both fields sit at even offsets from
/// the UDP header, so each u64 adds as two 32-bit big-endian words (2^16 ≡ 1 mod 2^16 − 1).
pub(super) fn stamp(frame: &mut [u8], template: FlowTemplate, seq: u64, time_ns: u64) {
    frame[SEQ_AT..SEQ_AT + 8].copy_from_slice(&seq.to_be_bytes());
    frame[TIME_AT..TIME_AT + 8].copy_from_slice(&time_ns.to_be_bytes());
    let words = |v: u64| (v >> 32) + (v & 0xffff_ffff);
    let mut c = !checksum::fold(template.base_sum + words(seq) + words(time_ns));
    if c == 0 {
        // RFC 768: a computed zero is sent as all ones.
        c = 0xffff;
    }
    frame[UDP_CHECKSUM_AT..UDP_CHECKSUM_AT + 2].copy_from_slice(&c.to_be_bytes());
}

/// A reply to one of our flows: its (sequence number, intended send time).
pub(super) fn parse_reply(frame: &[u8], server_port: u16, flows: u16) -> Option<(u64, u64)> {
    if frame.len() < TIME_AT + 8
        || frame[12..14] != ETHERTYPE_IPV4.to_be_bytes()
        || frame[ETH_HLEN] != 0x45
        || frame[ETH_HLEN + IPV4_PROTO] != IPPROTO_UDP
    {
        return None;
    }
    let src_port = u16::from_be_bytes([frame[L4], frame[L4 + 1]]);
    let dst_port = u16::from_be_bytes([frame[L4 + 2], frame[L4 + 3]]);
    if src_port != server_port || !(FIRST_FLOW_PORT..FIRST_FLOW_PORT + flows).contains(&dst_port) {
        return None;
    }
    let seq = u64::from_be_bytes(frame[SEQ_AT..SEQ_AT + 8].try_into().ok()?);
    let time = u64::from_be_bytes(frame[TIME_AT..TIME_AT + 8].try_into().ok()?);
    Some((seq, time))
}

#[cfg(test)]
mod tests {
    use fastpath::wire::{checksum::ChecksumStatus, udp::UdpPacket};

    use super::*;
    use crate::xdp_gen::MIN_PAYLOAD;

    const CLIENT: [u8; 4] = [198, 18, 0, 2];
    const SERVER: [u8; 4] = [198, 18, 0, 1];

    fn request(payload: usize, port: u16) -> (Vec<u8>, usize, FlowTemplate) {
        let mut frame = vec![0xa5u8; 2048];
        let (len, template) = build_request(
            &mut frame,
            ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]),
            (CLIENT, SERVER),
            (port, 11111),
            payload,
        )
        .unwrap();
        (frame, len, template)
    }

    #[test]
    fn a_stamped_request_carries_a_valid_checksum_for_any_sequence_and_time() {
        for payload in [MIN_PAYLOAD, 64, 1472] {
            let (mut frame, len, template) = request(payload, FIRST_FLOW_PORT + 3);
            for (seq, time) in [
                (0, 0),
                (1, 2),
                (u64::MAX, u64::MAX),
                (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
                (7, 0xffff_0000_ffff),
            ] {
                stamp(&mut frame, template, seq, time);
                let udp = UdpPacket::new_checked(&frame[L4..len]).unwrap();
                assert_eq!(
                    udp.check(CLIENT, SERVER),
                    ChecksumStatus::Valid,
                    "payload {payload}, seq {seq:#x}, time {time:#x}"
                );
                assert_eq!(udp.payload().len(), payload);
            }
        }
    }

    #[test]
    fn a_reply_is_read_back_and_anything_else_is_not() {
        let (mut frame, len, template) = request(64, FIRST_FLOW_PORT + 1);
        stamp(&mut frame, template, 42, 4242);
        // What a server sends back: ports (and addresses) swapped.
        frame.swap(L4, L4 + 2);
        frame.swap(L4 + 1, L4 + 3);
        assert_eq!(parse_reply(&frame[..len], 11111, 4), Some((42, 4242)));
        assert_eq!(parse_reply(&frame[..len], 11111, 1), None, "flow 1 of 1");
        assert_eq!(
            parse_reply(&frame[..len], 7, 4),
            None,
            "another server port"
        );
        assert_eq!(parse_reply(&frame[..40], 11111, 4), None, "truncated");
    }
}
