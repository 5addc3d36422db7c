//! AF_XDP I/O: the UMEM, the four rings and the socket that binds them to one RX queue.
//!
//! Written on libc's if_xdp.h bindings rather than xsk-rs: no vendored libbpf/libxdp C
//! build, rings typed by direction, and ring logic testable without root.

pub mod ring;
pub mod socket;
pub mod umem;

pub use socket::{
    BindMode, FrameWriter, KernelXskStats, RxBatch, TxResult, XskConfig, XskError, XskSocket,
    kernel_stats,
};
pub use umem::{FrameCounts, FrameLedger, FrameState, Umem};
