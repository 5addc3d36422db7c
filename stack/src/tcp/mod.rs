//! TCP (RFC 9293) as a sans-IO library: a connection takes segments and `now` in, and gives
//! segments, its next deadline and application events out. It knows nothing of frames,
//! rings or threads; the worker drives it (quinn-proto's and smoltcp's shape).
//!
//! One file per concern: `seq` (sequence-space arithmetic), `types` (the values handed in
//! and out: endpoints, segments, states, events), `config` (per-connection settings),
//! `counters` (what happened to segments), `options` (what a SYN negotiates), `isn` (RFC
//! 6528 initial sequence numbers and SYN cookies), `send` (send buffer, SACK scoreboard),
//! `recv` (reassembly, SACK blocks to send), `rtt` (RFC 6298), `congestion` (CUBIC and
//! NewReno behind one trait), `connection` (the state machine), `listener` (SYN queue and
//! accept queue), `reset` (the answer to a segment for no connection), `sim` (a seeded link
//! in virtual time joining two connections: a development tool, built for tests and with
//! the `sim` feature, never shipped in the library).

mod config;
pub mod congestion;
pub mod connection;
mod counters;
pub mod isn;
pub mod listener;
pub mod options;
pub mod recv;
pub mod reset;
pub mod rtt;
pub mod send;
pub mod seq;
#[cfg(any(test, feature = "sim"))]
pub mod sim;
mod types;

#[cfg(test)]
mod tests;

pub use config::{KeepAlive, TcpConfig};
pub use connection::Connection;
pub use counters::Counters;
pub use isn::IsnKeys;
pub use listener::{Listener, ListenerAction};
pub use seq::SeqNumber;
pub use types::{CloseReason, ConnectionInfo, Endpoints, Event, Segment, State, Transmit};
