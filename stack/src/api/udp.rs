//! UDP as applications see it: the handler a socket runs on its worker (`UdpHandler`, with
//! the `Datagram` it sees in place and the `Egress` it may send through) or the queue a
//! thread reads. `Stack::udp_bind`, `udp_connect`, `send_to` and `recv_from` are the calls.

pub use crate::socket::udp::{Datagram, Delivery, Egress, SendError, UdpHandler, Verdict};
