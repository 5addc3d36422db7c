//! fastpath: a kernel-bypass UDP (and, later, TCP) fast path.
//!
//! A frame's way reads as the modules do: the XDP program (`ebpf/`) steers it into an
//! AF_XDP socket (`xsk`), `wire` parses it, a service (`echo`) answers it in place on a
//! pinned `worker`, and `steer` and `control` stand beside the data path.

pub mod api;
pub mod control;
pub mod echo;
pub mod neighbor;
pub mod steer;
pub mod system;
pub mod table;
pub mod udp;
pub mod wire;
pub mod worker;
pub mod xsk;
