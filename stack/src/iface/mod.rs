//! The interface: between the rings and the sockets. `demux` parses each received frame
//! once (Ethernet, IPv4, the transport header) and dispatches it by protocol; `frame` is
//! the one builder of the link and IP headers of every frame sent, UDP and TCP alike;
//! `neighbor` finds next hops; `checksum` judges received transport checksums; `timer` is
//! the worker's timer wheel.

pub mod checksum;
pub mod demux;
pub mod frame;
pub mod neighbor;
pub mod timer;
