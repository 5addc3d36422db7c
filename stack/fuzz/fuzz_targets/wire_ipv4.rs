//! IPv4: parse never panics; a header that parses round-trips through Repr::emit.
#![no_main]
use fastpath::wire::ipv4::{Ipv4Packet, Ipv4Repr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Ipv4Packet::new_checked(data) else { return };
    assert!(p.header_len() >= 20 && p.header_len() <= p.total_len() && p.total_len() <= data.len());
    let _ = (p.is_fragment(), p.ttl(), p.payload().len());
    if let Ok(repr) = Ipv4Repr::parse(&p) {
        let mut out = vec![0u8; repr.buffer_len() + repr.payload_len];
        if repr.emit(&mut out).is_ok() {
            let q = Ipv4Packet::new_checked(&out[..]).expect("emitted header parses");
            let again = Ipv4Repr::parse(&q).expect("emitted checksum verifies");
            assert_eq!(again.src, repr.src);
            assert_eq!(again.dst, repr.dst);
            assert_eq!(again.protocol, repr.protocol);
            assert_eq!(again.payload_len, repr.payload_len);
        }
    }
});
