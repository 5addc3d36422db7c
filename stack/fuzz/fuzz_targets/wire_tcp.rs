//! TCP and its options: parse never panics; parsed options round-trip through emit.
#![no_main]
use fastpath::wire::tcp::{TcpOptions, TcpPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = TcpOptions::parse(data);
    let Ok(p) = TcpPacket::new_checked(data) else { return };
    let _ = (p.src_port(), p.dst_port(), p.seq(), p.ack(), p.flags(), p.window(), p.urgent());
    let _ = p.verify_checksum([1, 2, 3, 4], [5, 6, 7, 8]);
    assert_eq!(p.header_len() - 20, p.options().len());
    if let Ok(opts) = TcpOptions::parse(p.options()) {
        let mut out = [0u8; 40];
        if let Ok(n) = opts.emit(&mut out) {
            assert_eq!(TcpOptions::parse(&out[..n]).expect("emitted options parse"), opts);
        }
    }
});
