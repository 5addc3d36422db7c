//! AF_XDP I/O on xsk-rs: the UMEM, the four rings and the socket that binds them to one
//! RX queue, with fastpath's frame ledger on top.

pub mod ledger;
pub mod socket;

pub use ledger::{FrameCounts, FrameLedger, FrameState};
pub use socket::{
    BindMode, KeptFrame, KernelXskStats, RxBatch, Transmitter, TxBatch, XskConfig, XskError,
    XskSocket, kernel_stats,
};
