//! The values the TCP core hands in and out: a connection's `Endpoints`, a `Segment` that
//! arrived and a `Transmit` to send, its `State`, the `Event`s and `CloseReason` the
//! application learns, and the `ConnectionInfo` snapshot.

use std::net::SocketAddr;

use crate::wire::tcp::TcpRepr;

/// The two ends of a connection, IPv4 or IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoints {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

impl Endpoints {
    pub(super) fn is_v6(&self) -> bool {
        self.remote.is_ipv6()
    }
}

/// A segment that arrived (its checksum already verified by the caller).
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub header: TcpRepr,
    pub payload: &'a [u8],
}

/// A segment to send: the header, and how many bytes `poll_transmit` wrote at the start
/// of the payload buffer it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub header: TcpRepr,
    pub payload_len: usize,
}

/// RFC 9293 3.3.2's states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Closed,
    Listen,
    SynSent,
    SynReceived,
    Established,
    FinWait1,
    FinWait2,
    CloseWait,
    Closing,
    LastAck,
    TimeWait,
}

impl State {
    /// RFC 9293's "synchronized states": ESTABLISHED and after.
    pub fn is_synchronized(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }
}

/// What the application should learn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed.
    Connected,
    /// New bytes can be read.
    Readable,
    /// Acknowledged bytes freed room in the send buffer.
    Writable,
    /// The peer's FIN arrived: after the buffered bytes, reads return nothing more.
    PeerClosed,
    /// The connection is gone; `is_closed()` is true.
    Closed(CloseReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CloseReason {
    /// Both FINs exchanged and acknowledged (and TIME-WAIT over, where it applies).
    Normal,
    /// The peer reset it.
    Reset,
    /// Retransmissions, SYN retries, keepalive probes or an orphaned FIN-WAIT-2 ran out.
    TimedOut,
    /// We reset it (`abort`, `close` with unread data, data after `close`).
    Aborted,
    /// The peer answered our SYN with a RST.
    Refused,
}

/// A snapshot for `fastpath sockets`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ConnectionInfo {
    pub state: State,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Bytes written and not yet acknowledged.
    pub send_queued: usize,
    /// Bytes received and not yet read.
    pub recv_queued: usize,
    /// Bytes held out of order.
    pub out_of_order: usize,
    pub send_mss: u16,
    pub snd_wnd: u32,
    pub rcv_wnd: u32,
    pub congestion: &'static str,
    pub cwnd: u32,
    pub ssthresh: u32,
    pub in_flight: u32,
    pub srtt_us: Option<u64>,
    pub rttvar_us: u64,
    pub rto_us: u64,
    pub retransmits: u64,
    pub in_recovery: bool,
    pub sack: bool,
    pub timestamps: bool,
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    /// Bytes of buffer memory held.
    pub buffer_capacity: usize,
}
