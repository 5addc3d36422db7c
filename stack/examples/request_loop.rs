//! The stack's own work per request as a plain loop, for instruction counts that no noise
//! moves: `valgrind --tool=lackey --basic-counts=yes target/release/examples/request_loop
//! tcp 20000`, minus the same with 10000, over 10000 (docs/results.md). A UDP echo datagram,
//! or a TCP echo request/response on an established connection, handed to a worker's demux
//! in place, the answer written into memory (`benches/common/frames.rs`).

use frames::Client;

#[path = "../benches/common/frames.rs"]
mod frames;

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "udp".into());
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let mut client = Client::new();
    for _ in 0..n {
        if mode == "udp" {
            client.udp_echo();
        } else {
            client.tcp_request();
        }
    }
}
