//! UDP: parse never panics; filling the checksum always makes it verify.
#![no_main]
use fastpath::wire::{
    checksum::ChecksumStatus,
    udp::{UdpPacket, UdpRepr},
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        let _ = UdpPacket::new_checked(data);
        return;
    }
    let (addrs, rest) = data.split_at(8);
    let src = [addrs[0], addrs[1], addrs[2], addrs[3]];
    let dst = [addrs[4], addrs[5], addrs[6], addrs[7]];
    let mut buf = rest.to_vec();
    let Ok(mut p) = UdpPacket::new_checked(&mut buf[..]) else { return };
    assert!(p.len() >= 8 && p.len() <= rest.len());
    let _ = (p.check(src, dst), UdpRepr::parse(&p, src, dst), p.payload().len());
    p.fill_checksum(src, dst);
    assert_eq!(p.check(src, dst), ChecksumStatus::Valid);
});
