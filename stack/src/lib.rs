//! fastpath: a kernel-bypass UDP and TCP fast path.
//!
//! Folders are layers, as in smoltcp, and a frame's walk reads as they do. The XDP program
//! (`ebpf/`, loaded by `steer`) redirects a flow into an AF_XDP socket; `phy` moves frames
//! (the xsk rings, the pinned `phy::worker`, device wrappers such as fault injection and
//! capture taps); `iface` parses a frame once and dispatches it by protocol, and builds the
//! link and IP headers of every frame sent; `socket` holds the four-tuple table, the
//! mailboxes, the UDP sockets and each worker's TCP engine, which drives the sans-IO TCP
//! core (`tcp`, with `wire` beneath it); `api` is what applications hold (`Stack`), and
//! `app` the applications fastpath ships (echo, HTTP, blast). `runtime` starts it all;
//! `control` and `metrics` answer beside the data path. `docs/design.md` walks a segment.

pub mod api;
pub mod app;
pub mod control;
pub(crate) mod counters;
pub(crate) mod iface;
pub mod metrics;
pub mod phy;
pub mod runtime;
pub(crate) mod socket;
pub mod steer;
pub mod system;
pub mod tcp;
pub mod time;
pub mod wire;

/// The insides that the crate's own criterion benchmarks and fuzz targets drive directly
/// (both build outside the crate). Not an API: it changes with any commit.
#[doc(hidden)]
pub mod internals {
    pub use crate::{
        iface::{demux::Demux, timer::TimerWheel},
        socket::table::{FourTuple, Layout, Protocol, SocketNumber, SocketTable, numbers_capacity},
    };
}
