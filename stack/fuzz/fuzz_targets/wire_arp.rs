//! ARP: parse never panics; what parses round-trips.
#![no_main]
use fastpath::wire::arp::ArpRepr;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(repr) = ArpRepr::parse(data) {
        let mut out = [0u8; 28];
        repr.emit(&mut out).expect("28 bytes fit");
        assert_eq!(ArpRepr::parse(&out).expect("emitted ARP parses"), repr);
    }
});
