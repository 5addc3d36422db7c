//! The host's sockets: the four-tuple table and socket numbers (`table`), the host that
//! every worker, the API and the control plane share with one mailbox per worker (`host`),
//! what a thread waits on (`sync`), the UDP socket (`udp`), and each worker's TCP engine
//! (`tcp`), which drives the sans-IO core for the connections that worker owns.

pub mod host;
pub mod sync;
pub mod table;
pub mod tcp;
pub mod udp;

pub use host::{Command, Host, Link, Socket, SocketInfo};
