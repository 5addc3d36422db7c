//! The whole receive path on one frame — Ethernet, IPv4, UDP, the four-tuple lookup, the
//! echo application and the in-place reply: never panics, and a reply never claims more
//! bytes than the frame buffer has.
#![no_main]
use std::{
    net::{Ipv4Addr, SocketAddrV4},
    sync::OnceLock,
};

use fastpath::{
    api::{Stack, udp::Delivery},
    app::echo::EchoApp,
    internals::Demux,
    phy::{FrameHandler, testing::VecSink},
    time::Instant,
};
use libfuzzer_sys::fuzz_target;

fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| {
        let stack = Stack::detached(1);
        for port in [7, 7000, 11111] {
            let app = Delivery::on_worker(EchoApp { sockperf: port == 11111 });
            stack.udp_bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port), None, app).unwrap();
        }
        stack.udp_bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 9), None, Delivery::Queue { depth: 4 }).unwrap();
        stack
    })
}

fuzz_target!(|data: &[u8]| {
    let mut frame = data.to_vec();
    frame.resize(data.len() + 64, 0);
    let mut demux = Demux::new(stack().host().clone(), 0);
    let mut sink = VecSink::new(4);
    if let Some(len) = demux.handle(Instant::ZERO, &mut frame, data.len(), &mut sink) {
        assert!(len <= frame.len());
    }
});
