//! fastpath: a kernel-bypass UDP (and, later, TCP) fast path.
//!
//! A frame's way reads as the modules do: the XDP program (`ebpf/`, loaded by `steer`)
//! redirects it into an AF_XDP socket (`xsk`); on a pinned `worker`, `api::Demux` parses it
//! (`wire`), finds its socket by four-tuple (`table`) and hands it to the socket's
//! application (`udp`, e.g. `echo`), which may answer in place. `neighbor` finds next hops
//! for new destinations, and `control` answers `fastpath stats` / `sockets` beside the data
//! path. `api::Runtime` starts it all; `main.rs` only parses the command line.

pub mod api;
pub mod control;
pub mod echo;
pub mod neighbor;
pub mod steer;
pub mod system;
pub mod table;
pub mod time;
pub mod timer;
pub mod udp;
pub mod wire;
pub mod worker;
pub mod xsk;
