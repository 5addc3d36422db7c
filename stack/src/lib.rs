//! fastpath: a kernel-bypass UDP and TCP fast path.
//!
//! A frame's way reads as the modules do, each importing only those below it: the XDP
//! program (`ebpf/`, loaded by `steer`) redirects it into an AF_XDP socket (`xsk`); a pinned
//! `worker` receives it and hands it to its `demux`, which parses it once (`wire`), finds
//! its socket by four-tuple (`table`, through `socket`) and dispatches it by protocol
//! (`udp`), whose application (`echo`, or any `UdpHandler`) may answer in place, send new
//! frames and arm timers (`timer`, on the worker's clock: `time`). TCP segments go to the
//! demux's TCP engine (`demux::tcp`), which drives the sans-IO core (`tcp`) for the
//! connections its worker owns and the listeners' per-worker state; what others share of
//! a TCP socket sits in the table (`tcp_socket`), and its application (`TcpHandler`, e.g.
//! `echo::TcpEcho`) runs on the owning worker. Applications hold `api`;
//! what they ask of a worker reaches it through its mailbox (`socket`). `neighbor` finds
//! next hops for new destinations, `control` answers `fastpath stats` / `sockets` beside
//! the data path, and `runtime` starts it all; `main.rs` only parses the command line.

pub mod api;
pub mod blast;
pub mod capture;
pub mod control;
pub mod counters;
pub mod demux;
pub mod echo;
pub mod http;
pub mod impair;
pub mod metrics;
pub mod neighbor;
pub mod runtime;
pub mod socket;
pub mod steer;
pub mod system;
pub mod table;
pub mod tcp;
pub mod tcp_api;
pub mod tcp_socket;
pub mod time;
pub mod timer;
pub mod udp;
pub mod wire;
pub mod worker;
pub mod xsk;
