//! Congestion control behind one small trait (s2n-quic-core's recovery shape): CUBIC
//! (RFC 9438) by default, NewReno (RFC 5681, RFC 6582) selectable. Windows are in bytes.

use std::time::Duration;

use crate::time::Instant;

pub mod cubic;
pub mod newreno;

/// What a connection tells its congestion controller, and what it asks of it.
pub trait CongestionControl {
    /// The congestion window, in bytes.
    fn window(&self) -> u32;
    /// The slow-start threshold, in bytes (`u32::MAX` before the first loss).
    fn ssthresh(&self) -> u32;
    /// `bytes` were newly acknowledged (cumulative ACK advance plus newly SACKed bytes)
    /// outside loss recovery; `srtt` is the connection's smoothed RTT.
    fn on_ack(&mut self, now: Instant, bytes: u32, srtt: Duration);
    /// Loss detected by duplicate ACKs or SACK: entering fast recovery, at most once per
    /// window of data. `flight` is the bytes in flight when the loss was detected.
    fn on_congestion_event(&mut self, now: Instant, flight: u32);
    /// Fast recovery ended (the ACK covered the recovery point).
    fn on_recovery_end(&mut self, now: Instant);
    /// The retransmission timer expired. `flight` is the bytes in flight before it.
    fn on_retransmission_timeout(&mut self, now: Instant, flight: u32);
    fn name(&self) -> &'static str;
}

/// Which controller a connection runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    #[default]
    Cubic,
    NewReno,
}
