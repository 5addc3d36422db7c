//! AF_XDP I/O on xsk-rs: the UMEM, the four rings and the socket that binds them to one
//! RX queue, with fastpath's frame ledger on top.

pub mod ledger;
pub mod socket;
pub mod testing;

pub use ledger::{FrameCounts, FrameLedger, FrameState};
pub use socket::{
    BindMode, FrameSink, FrameWriter, KeptFrame, KernelXskStats, RxBatch, Transmitter, TxBatch,
    TxResult, XskConfig, XskError, XskSocket, kernel_stats,
};
