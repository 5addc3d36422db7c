//! Per-connection settings: `TcpConfig`, whose defaults say why beside each value, and
//! `KeepAlive`.

use std::time::Duration;

use super::{
    congestion::Algorithm,
    options::{self, Offer},
};

/// Keepalive probing (RFC 9293 3.8.4, RFC 1122 4.2.3.6): off by default, as the RFC asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    /// Silence before the first probe (RFC 1122: "MUST default to no less than two hours").
    pub idle: Duration,
    /// Between unanswered probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is reset and closed as `TimedOut`.
    pub probes: u32,
}

/// Per-connection settings. The defaults aim at a datacenter (sub-millisecond RTTs, 10-100
/// Gb/s links) talking to ordinary TCP stacks, and say why beside each value.
#[derive(Clone, Debug)]
pub struct TcpConfig {
    /// The MSS we advertise and the most payload we send per segment (RFC 6691: the
    /// link MTU less 40 bytes of IPv4 + TCP headers; 60 for IPv6). Default 1460.
    pub mss: u16,
    /// Most bytes written and not yet acknowledged. The buffer starts empty and grows on
    /// demand to this. Default 1 MiB: above the bandwidth-delay product of 100 Gb/s at a
    /// 50 µs RTT (625 KB).
    pub send_buffer: usize,
    /// Most bytes received and not yet read (the window we can offer). Default 1 MiB.
    pub recv_buffer: usize,
    /// Maximum segment lifetime; TIME-WAIT lasts 2 × MSL. Default 30 s (Linux's 60 s
    /// TIME-WAIT; RFC 9293's 2 minutes is for the Internet of 1981).
    pub msl: Duration,
    /// Floor of the retransmission timeout. Default 50 ms: RFC 6298 2.4 asks for 1 s and
    /// Linux uses 200 ms, both far above datacenter RTTs, which would make every tail loss
    /// cost hundreds of RTTs. It cannot go much lower while peers delay their ACKs: Linux
    /// holds an ACK for up to its 40 ms minimum ATO, and an RTO below that retransmits a
    /// lone segment spuriously and collapses cwnd. Lower it (5 ms or less) between peers
    /// that ACK promptly (e.g. two fastpath hosts with `delayed_ack` of 1 ms).
    pub min_rto: Duration,
    /// Ceiling of the backed-off RTO. Default 60 s (RFC 6298 2.5: "at least 60 seconds").
    pub max_rto: Duration,
    /// RTO before the first RTT sample, also the SYN's (RFC 6298 2.1: 1 s).
    pub initial_rto: Duration,
    pub congestion: Algorithm,
    /// Nagle's algorithm (RFC 9293 3.7.4, RFC 896): on by default, as RFC 1122 asks.
    pub nagle: bool,
    /// How long an ACK may wait for a second segment or a reply to ride on (RFC 9293
    /// 3.8.6.3: at most 500 ms, and every second full segment is ACKed at once). `None`
    /// ACKs every segment. Default 1 ms: datacenter RTTs are tens of microseconds, and
    /// a peer's RTO floor is rarely below a few milliseconds.
    pub delayed_ack: Option<Duration>,
    pub keepalive: Option<KeepAlive>,
    /// Offer SACK (RFC 2018) and use it for loss recovery (RFC 6675).
    pub sack: bool,
    /// Offer timestamps (RFC 7323): PAWS and TIME-WAIT reuse (RFC 6191).
    pub timestamps: bool,
    /// Offer window scaling (RFC 7323), needed for windows above 64 KiB.
    pub window_scale: bool,
    /// Most bytes held out of order for reassembly (they also always lie within the
    /// window); a segment beyond it is dropped and counted (`ooo_overflow`). Default 1 MiB,
    /// the receive buffer: a burst loss early in a window should not cost the rest of it.
    pub max_out_of_order: usize,
    /// RFC 5961 7: most challenge ACKs per second, per connection (a per-connection limit
    /// avoids the global counter side channel of CVE-2016-5696). Default 10.
    pub challenge_ack_per_sec: u32,
    /// SYN (or SYN-ACK) retransmissions before giving up. Default 6 (Linux), about 127 s
    /// at a 1 s initial RTO.
    pub max_syn_retries: u32,
    /// Consecutive RTO expirations (and unanswered zero-window probes) before the
    /// connection closes as `TimedOut` (RFC 9293 3.8.3's R2). Default 15 (Linux).
    pub max_retransmits: u32,
}

impl Default for TcpConfig {
    fn default() -> TcpConfig {
        TcpConfig {
            mss: 1460,
            send_buffer: 1 << 20,
            recv_buffer: 1 << 20,
            msl: Duration::from_secs(30),
            min_rto: Duration::from_millis(50),
            max_rto: Duration::from_secs(60),
            initial_rto: Duration::from_secs(1),
            congestion: Algorithm::default(),
            nagle: true,
            delayed_ack: Some(Duration::from_millis(1)),
            keepalive: None,
            sack: true,
            timestamps: true,
            window_scale: true,
            max_out_of_order: 1 << 20,
            challenge_ack_per_sec: 10,
            max_syn_retries: 6,
            max_retransmits: 15,
        }
    }
}

impl TcpConfig {
    pub(super) fn offer(&self) -> Offer {
        Offer {
            mss: self.mss,
            window_scale: self
                .window_scale
                .then(|| options::window_scale_for(self.recv_buffer)),
            sack: self.sack,
            timestamps: self.timestamps,
        }
    }
}
