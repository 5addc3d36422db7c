//! NewReno's window (RFC 5681 §3.1, RFC 6582): slow start with appropriate byte counting
//! (RFC 3465), congestion avoidance adding one SMSS per window of ACKed bytes, halving on
//! loss, the loss window after a timeout.
//!
//! What the connection does, not this file: the fast-recovery inflation of RFC 5681 §3.2
//! steps 4–5 ("cwnd = ssthresh + 3*SMSS", then one SMSS per further duplicate ACK) and
//! RFC 6582's partial-ACK handling. `window()` is the deflated window; during recovery the
//! connection sends while `flight < window() + its own inflation` (or, with SACK, while
//! RFC 6675's `pipe < window()`), and it calls `on_ack` only outside recovery.

use std::time::Duration;

use super::{CongestionControl, initial_window, slow_start_increase};
use crate::time::Instant;

#[derive(Clone, Debug)]
pub struct NewReno {
    mss: u32,
    cwnd: u32,
    ssthresh: u32,
    /// RFC 3465 §2.1 / RFC 5681 §3.1: bytes ACKed in congestion avoidance since cwnd last
    /// grew.
    bytes_acked: u32,
    /// Set by a timeout and cleared by the next ACK: a repeated timeout holds ssthresh.
    timed_out: bool,
}

impl NewReno {
    pub fn new(mss: u32) -> Self {
        Self::with_window(mss, initial_window(mss))
    }

    /// A controller starting from `cwnd` bytes (at least one segment) instead of the
    /// initial window.
    pub fn with_window(mss: u32, cwnd: u32) -> Self {
        let mss = mss.max(1);
        Self {
            mss,
            cwnd: cwnd.max(mss),
            // RFC 5681 §3.1: "The initial value of ssthresh SHOULD be set arbitrarily
            // high (e.g., to the size of the largest possible advertised window)".
            ssthresh: u32::MAX,
            bytes_acked: 0,
            timed_out: false,
        }
    }

    /// RFC 5681 §3.1 equation (4): "ssthresh = max (FlightSize / 2, 2*SMSS)".
    fn halved(&self, flight: u32) -> u32 {
        (flight / 2).max(2 * self.mss)
    }
}

impl CongestionControl for NewReno {
    fn window(&self) -> u32 {
        self.cwnd
    }

    fn ssthresh(&self) -> u32 {
        self.ssthresh
    }

    fn on_ack(&mut self, _now: Instant, bytes: u32, _srtt: Duration) {
        self.timed_out = false;
        if self.cwnd < self.ssthresh {
            // RFC 5681 §3.1: "The slow start algorithm is used when cwnd < ssthresh".
            self.cwnd = slow_start_increase(self.cwnd, self.ssthresh, bytes, self.mss);
            return;
        }
        // RFC 5681 §3.1: "The RECOMMENDED way to increase cwnd during congestion
        // avoidance is to count the number of bytes that have been acknowledged by ACKs
        // for new data. [...] When the number of bytes acknowledged reaches cwnd, then
        // cwnd can be incremented by up to SMSS bytes." (RFC 3465 §2.1's counting.)
        self.bytes_acked = self.bytes_acked.saturating_add(bytes);
        if self.bytes_acked >= self.cwnd {
            self.bytes_acked -= self.cwnd;
            self.cwnd = self.cwnd.saturating_add(self.mss);
        }
    }

    fn on_congestion_event(&mut self, _now: Instant, flight: u32) {
        // RFC 5681 §3.2 step 2: ssthresh per equation (4); step 3 would set
        // "cwnd = ssthresh + 3*SMSS": the 3*SMSS is the connection's inflation.
        self.ssthresh = self.halved(flight);
        self.cwnd = self.ssthresh;
        self.bytes_acked = 0;
    }

    fn on_recovery_end(&mut self, _now: Instant) {
        // RFC 6582 §3.2 step 3: on a full acknowledgment, "Set cwnd to either (1)
        // min (ssthresh, max(FlightSize, SMSS) + SMSS) or (2) ssthresh". Option (2): the
        // deflated window, which the connection's inflation already sat on top of.
        self.cwnd = self.ssthresh;
        self.bytes_acked = 0;
    }

    fn on_retransmission_timeout(&mut self, _now: Instant, flight: u32) {
        // RFC 5681 §3.1: "when a TCP sender detects segment loss using the retransmission
        // timer and the given segment has already been retransmitted by way of the
        // retransmission timer at least once, the value of ssthresh is held constant."
        if !self.timed_out {
            self.ssthresh = self.halved(flight);
        }
        // "upon a timeout [...] cwnd MUST be set to no more than the loss window, LW,
        // which equals 1 full-sized segment".
        self.cwnd = self.mss;
        self.bytes_acked = 0;
        self.timed_out = true;
    }

    fn name(&self) -> &'static str {
        "newreno"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u32 = 1000;
    const RTT: Duration = Duration::from_millis(100);

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    #[test]
    fn slow_start_loss_recovery_and_avoidance_step_by_step() {
        let mut cc = NewReno::new(MSS);
        // RFC 6928: min(10 * 1000, max(2 * 1000, 14600)) = 10 000.
        assert_eq!(cc.window(), 10_000);
        assert_eq!(cc.ssthresh(), u32::MAX);

        // Slow start, one ACK per segment: +1 MSS each.
        cc.on_ack(at(100), MSS, RTT);
        assert_eq!(cc.window(), 11_000);
        // A stretch ACK of 4 segments counts at most L = 2 * SMSS (RFC 3465).
        cc.on_ack(at(100), 4 * MSS, RTT);
        assert_eq!(cc.window(), 13_000);
        // Seven more one-segment ACKs: 20 000.
        for _ in 0..7 {
            cc.on_ack(at(100), MSS, RTT);
        }
        assert_eq!(cc.window(), 20_000);

        // Loss with 20 000 in flight: ssthresh = cwnd = 10 000.
        cc.on_congestion_event(at(150), 20_000);
        assert_eq!((cc.window(), cc.ssthresh()), (10_000, 10_000));
        cc.on_recovery_end(at(250));
        assert_eq!(cc.window(), 10_000);

        // Congestion avoidance: 10 000 ACKed bytes add one MSS; the remainder carries.
        for _ in 0..9 {
            cc.on_ack(at(300), MSS, RTT);
        }
        assert_eq!(cc.window(), 10_000);
        cc.on_ack(at(350), MSS, RTT);
        assert_eq!(cc.window(), 11_000);
        cc.on_ack(at(400), 10_500, RTT);
        assert_eq!(cc.window(), 11_000, "10 500 of 11 000 counted");
        cc.on_ack(at(410), 500, RTT);
        assert_eq!(cc.window(), 12_000);

        // A tiny flight still leaves ssthresh at 2 * SMSS.
        cc.on_congestion_event(at(500), 1_000);
        assert_eq!((cc.window(), cc.ssthresh()), (2_000, 2_000));
    }

    #[test]
    fn timeout_gives_the_loss_window_and_a_repeat_holds_ssthresh() {
        let mut cc = NewReno::new(MSS);
        cc.on_retransmission_timeout(at(1_000), 30_000);
        assert_eq!((cc.window(), cc.ssthresh()), (1_000, 15_000));
        // The same segment times out again: flight is now one segment, ssthresh holds.
        cc.on_retransmission_timeout(at(3_000), 1_000);
        assert_eq!((cc.window(), cc.ssthresh()), (1_000, 15_000));
        // Slow start back up to ssthresh, then congestion avoidance.
        let mut now = 3_100;
        while cc.window() < cc.ssthresh() {
            let w = cc.window();
            cc.on_ack(at(now), w, RTT); // one stretch ACK per RTT
            now += 100;
        }
        // 1 000 → 2 000 → 4 000 → … → 14 000 (L = 2 * SMSS caps each stretch ACK), then
        // 15 000: slow start stops at ssthresh.
        assert_eq!(cc.window(), 15_000);
        cc.on_ack(at(now), 15_000, RTT);
        assert_eq!(cc.window(), 16_000);
        // After that ACK a new timeout halves again.
        cc.on_retransmission_timeout(at(now + 500), 16_000);
        assert_eq!((cc.window(), cc.ssthresh()), (1_000, 8_000));
    }

    /// RFC 5681 §3.1: "During congestion avoidance, cwnd is incremented by roughly 1
    /// full-sized segment per round-trip time (RTT)". Drive an ACK clock (one ACK per
    /// segment, a window per RTT) for 50 RTTs after a loss.
    #[test]
    fn congestion_avoidance_adds_one_mss_per_rtt() {
        let mut cc = NewReno::new(MSS);
        cc.on_congestion_event(at(0), 40_000);
        cc.on_recovery_end(at(100));
        let start = cc.window();
        let mut now = at(100);
        for round in 1..=50u32 {
            let segments = cc.window() / MSS;
            for _ in 0..segments {
                cc.on_ack(now, MSS, RTT);
            }
            now += RTT;
            assert_eq!(cc.window(), start + round * MSS, "round {round}");
        }
    }
}
