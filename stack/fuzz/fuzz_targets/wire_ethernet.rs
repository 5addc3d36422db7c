//! Ethernet (with one VLAN tag): parse never panics; every accessor is safe afterwards.
#![no_main]
use fastpath::wire::ethernet::EthernetFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    if let Ok(mut f) = EthernetFrame::new_checked(&mut buf[..]) {
        let (dst, src, t, off) = (f.dst(), f.src(), f.ethertype(), f.payload_offset());
        assert!(off == 14 || off == 18);
        assert_eq!(f.payload().len(), data.len() - off);
        f.swap_addresses();
        assert_eq!((f.dst(), f.src(), f.ethertype()), (src, dst, t));
        let _ = f.payload_mut().len();
    }
});
