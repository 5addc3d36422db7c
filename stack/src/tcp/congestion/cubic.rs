//! CUBIC (RFC 9438): after a loss the window follows a cubic curve in the time since
//! congestion avoidance began, flat around the window where the loss happened and steep
//! away from it, so it refills a long fat pipe in seconds rather than Reno's minutes.
//!
//! Windows are kept in segments (`f64`), as the RFC writes its formulas, and become bytes
//! only at the trait's edge. Slow start is RFC 5681's with RFC 3465's byte counting (RFC
//! 9438 §4.10 allows it where HyStart++ is not used). Not done: HyStart++ (§4.10),
//! undoing spurious congestion events (§4.9), and §5.8's rule that application-limited
//! periods do not count in `t` (the trait does not say when the sender was app-limited).
//! As with NewReno, the connection calls `on_ack` only outside fast recovery and does its
//! own recovery sending (RFC 6675 or RFC 6582); see `newreno.rs`.

use std::time::Duration;

use super::{CongestionControl, initial_window, slow_start_increase};
use crate::time::Instant;

/// RFC 9438 §5.1: "C SHOULD be set to 0.4" (segments per second cubed).
pub const C: f64 = 0.4;

/// RFC 9438 §4.6: "β_cubic SHOULD be set to 0.7".
pub const BETA_CUBIC: f64 = 0.7;

/// RFC 9438 §4.3, Figure 5: "α_cubic = 3 * (1 - β_cubic) / (1 + β_cubic)" (0.529…),
/// the additive increase that gives AIMD(α_cubic, β_cubic) Reno's average window.
pub const ALPHA_CUBIC: f64 = 3.0 * (1.0 - BETA_CUBIC) / (1.0 + BETA_CUBIC);

/// RFC 9438 §4.7: fast convergence is a SHOULD; it only matters between competing flows.
const FAST_CONVERGENCE: bool = true;

/// The current congestion avoidance stage (RFC 9438 §4.1.2's variables fixed at its
/// start).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Epoch {
    /// `t_epoch`: when this congestion avoidance stage began.
    pub start: Instant,
    /// `W_max` of this stage, in segments.
    pub w_max: f64,
    /// `K`, in seconds.
    pub k: f64,
    /// `W_est` (§4.3), in segments.
    pub w_est: f64,
}

impl Epoch {
    /// RFC 9438 §4.2, Figure 1: "W_cubic(t) = C * (t - K)^3 + W_max", in segments, where
    /// t is seconds since `t_epoch`.
    pub fn w_cubic(&self, t: f64) -> f64 {
        let d = t - self.k;
        C * d * d * d + self.w_max
    }

    /// Seconds from the start of the stage to `now`.
    pub fn t(&self, now: Instant) -> f64 {
        (now - self.start).as_secs_f64()
    }
}

#[derive(Clone, Debug)]
pub struct Cubic {
    /// SMSS in bytes: the unit of every window below.
    mss: u32,
    /// `cwnd` in segments.
    cwnd: f64,
    /// `ssthresh` in bytes (`u32::MAX` before the first loss).
    ssthresh: u32,
    /// RFC 9438 §4.1.2 `cwnd_prior`: "Size of cwnd in segments at the time of setting
    /// ssthresh most recently".
    cwnd_prior: f64,
    /// RFC 9438 §4.1.2 `W_max`: "Size of cwnd in segments just before cwnd was reduced
    /// in the last congestion event when fast convergence is disabled", less with it.
    w_max: f64,
    /// `None` outside congestion avoidance (slow start, recovery): the next stage starts
    /// at `on_recovery_end` or at the first ACK past ssthresh.
    epoch: Option<Epoch>,
    /// The next stage is the first after a timeout (or began from slow start with no
    /// loss): RFC 9438 §4.8 sets K = 0 and W_max = cwnd_epoch for it.
    probe_from_cwnd: bool,
    /// Set by a timeout and cleared by the next ACK: a repeated timeout holds ssthresh.
    timed_out: bool,
}

impl Cubic {
    pub fn new(mss: u32, now: Instant) -> Self {
        Self::with_window(mss, initial_window(mss), now)
    }

    /// A controller starting from `cwnd` bytes (at least one segment) instead of the
    /// initial window.
    pub fn with_window(mss: u32, cwnd: u32, _now: Instant) -> Self {
        let mss = mss.max(1);
        Self {
            mss,
            cwnd: f64::from(cwnd.max(mss)) / f64::from(mss),
            ssthresh: u32::MAX,
            cwnd_prior: 0.0,
            w_max: 0.0,
            epoch: None,
            probe_from_cwnd: true,
            timed_out: false,
        }
    }

    /// The current congestion avoidance stage, if in one (for tests and traces).
    pub fn epoch(&self) -> Option<Epoch> {
        self.epoch
    }

    /// `W_max`, in segments.
    pub fn w_max(&self) -> f64 {
        self.w_max
    }

    /// `cwnd` in segments, unrounded.
    pub fn cwnd_segments(&self) -> f64 {
        self.cwnd
    }

    fn segments(&self, bytes: u32) -> f64 {
        f64::from(bytes) / f64::from(self.mss)
    }

    /// The largest window `window()` can report, in segments.
    fn max_cwnd(&self) -> f64 {
        f64::from(u32::MAX / 2) / f64::from(self.mss)
    }

    /// RFC 9438 §4.6, from `flight` bytes: "ssthresh = flight_size * β_cubic", at least
    /// 2 SMSS ("ssthresh = max(ssthresh, 2)"). In integers, so 0.7 of 10 000 is 7 000.
    fn reduced_ssthresh(&self, flight: u32) -> u32 {
        let reduced = u64::from(flight) * 7 / 10;
        u32::try_from(reduced).unwrap_or(u32::MAX).max(2 * self.mss)
    }

    fn start_epoch(&mut self, now: Instant) -> Epoch {
        let cwnd_epoch = self.cwnd;
        if self.probe_from_cwnd {
            // RFC 9438 §4.8: "During the first congestion avoidance stage after a
            // timeout, CUBIC increases its congestion window size using Figure 1, where t
            // is the elapsed time since the beginning of the current congestion avoidance
            // stage, K is set to 0, and W_max is set to the congestion window size at the
            // beginning of the current congestion avoidance stage." (§4.10 says the same
            // for leaving slow start without a loss.)
            self.w_max = cwnd_epoch;
            self.probe_from_cwnd = false;
        }
        // RFC 9438 §4.2, Figure 2: "K = cubic_root((W_max - cwnd_epoch) / C)", "where
        // cwnd_epoch is the congestion window at the beginning of the current congestion
        // avoidance stage". Without fast convergence cwnd_epoch = β_cubic * W_max and this
        // is RFC 8312's cbrt(W_max * (1 - β_cubic) / C). A negative K (cwnd_epoch above
        // W_max) still gives W_cubic(0) = cwnd_epoch: the stage starts convex.
        let k = ((self.w_max - cwnd_epoch) / C).cbrt();
        // RFC 9438 §4.3: "W_est is set equal to cwnd_epoch at the start of the congestion
        // avoidance stage."
        Epoch {
            start: now,
            w_max: self.w_max,
            k,
            w_est: cwnd_epoch,
        }
    }

    fn congestion_avoidance(&mut self, now: Instant, bytes: u32, srtt: Duration) {
        let epoch = match self.epoch {
            Some(epoch) => epoch,
            None => self.start_epoch(now),
        };
        let mut epoch = epoch;
        let segments_acked = self.segments(bytes);
        let t = epoch.t(now);

        // RFC 9438 §4.3, Figure 4: "W_est = W_est + α_cubic * segments_acked / cwnd".
        // "Once W_est has grown to reach the cwnd at the time of most recently setting
        // ssthresh -- that is, W_est >= cwnd_prior -- the sender SHOULD set α_cubic to 1".
        let alpha = if epoch.w_est >= self.cwnd_prior {
            1.0
        } else {
            ALPHA_CUBIC
        };
        epoch.w_est += alpha * segments_acked / self.cwnd;

        if epoch.w_cubic(t) < epoch.w_est {
            // RFC 9438 §4.3: "if W_cubic(t) is less than W_est, then CUBIC is in the
            // Reno-friendly region and cwnd SHOULD be set to W_est at each reception of a
            // new ACK."
            self.cwnd = self.cwnd.max(epoch.w_est);
        } else {
            // RFC 9438 §4.2: "Upon receiving a new ACK during congestion avoidance, CUBIC
            // computes the target congestion window size after the next RTT [...] where
            // RTT is the smoothed round-trip time":
            //     target = cwnd               if W_cubic(t + RTT) < cwnd
            //              1.5 * cwnd         if W_cubic(t + RTT) > 1.5 * cwnd
            //              W_cubic(t + RTT)   otherwise
            let target = epoch
                .w_cubic(t + srtt.as_secs_f64())
                .clamp(self.cwnd, 1.5 * self.cwnd);
            // RFC 9438 §4.4 (concave) and §4.5 (convex): "cwnd MUST be incremented by
            // (target - cwnd) / cwnd for each received new ACK" — per SMSS ACKed here, so
            // delayed and stretch ACKs grow it alike; never past the target.
            let increase = (target - self.cwnd) / self.cwnd * segments_acked;
            self.cwnd = (self.cwnd + increase).min(target);
        }
        self.cwnd = self.cwnd.min(self.max_cwnd());
        self.epoch = Some(epoch);
    }
}

impl CongestionControl for Cubic {
    fn window(&self) -> u32 {
        // Rounded, not truncated: 0.7 * 36 segments is 25 200 bytes, not 25 199.
        (self.cwnd * f64::from(self.mss)).round() as u32
    }

    fn ssthresh(&self) -> u32 {
        self.ssthresh
    }

    fn on_ack(&mut self, now: Instant, bytes: u32, srtt: Duration) {
        self.timed_out = false;
        let window = self.window();
        if window < self.ssthresh {
            // RFC 9438 §4.10: "When cwnd is no more than ssthresh, CUBIC MUST employ a
            // slow-start algorithm."
            let grown = slow_start_increase(window, self.ssthresh, bytes, self.mss);
            self.cwnd = self.segments(grown);
            return;
        }
        self.congestion_avoidance(now, bytes, srtt);
    }

    fn on_congestion_event(&mut self, _now: Instant, flight: u32) {
        let cwnd = self.cwnd;
        // RFC 9438 §4.7:
        //     if (cwnd < W_max and fast convergence enabled) {
        //         // should we make room for others?
        //         W_max = cwnd * (1 + β_cubic) / 2
        //     } else {
        //         // remember cwnd before reduction
        //         W_max = cwnd
        //     }
        self.w_max = if FAST_CONVERGENCE && cwnd < self.w_max {
            cwnd * (1.0 + BETA_CUBIC) / 2.0
        } else {
            cwnd
        };
        // RFC 9438 §4.6:
        //     ssthresh = flight_size * β_cubic  // new ssthresh
        //     cwnd_prior = cwnd                 // for Fast Convergence
        //     cwnd = max(ssthresh, 2)           // reduction on loss, cwnd >= 2 SMSS
        //     ssthresh = max(ssthresh, 2)       // ssthresh >= 2 SMSS
        self.ssthresh = self.reduced_ssthresh(flight);
        self.cwnd_prior = cwnd;
        self.cwnd = self.segments(self.ssthresh);
        self.probe_from_cwnd = false;
        self.epoch = None;
    }

    fn on_recovery_end(&mut self, now: Instant) {
        // RFC 9438 §4.2: t counts "from the beginning of the current congestion avoidance
        // stage", which begins as recovery ends.
        self.epoch = Some(self.start_epoch(now));
    }

    fn on_retransmission_timeout(&mut self, _now: Instant, flight: u32) {
        // RFC 9438 §4.8: "In the case of a timeout, CUBIC follows Reno to reduce cwnd
        // [RFC5681] but sets ssthresh using β_cubic (same as in Section 4.6)". RFC 5681
        // holds ssthresh when the same segment times out again.
        if !self.timed_out {
            self.ssthresh = self.reduced_ssthresh(flight);
            self.cwnd_prior = self.cwnd;
        }
        // RFC 5681 §3.1: the loss window, "1 full-sized segment".
        self.cwnd = 1.0;
        self.epoch = None;
        self.probe_from_cwnd = true;
        self.timed_out = true;
    }

    fn name(&self) -> &'static str {
        "cubic"
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

    #[track_caller]
    fn assert_close(actual: f64, expected: f64, what: &str) {
        assert!(
            (actual - expected).abs() < 1e-9,
            "{what}: {actual} != {expected}"
        );
    }

    /// Slow start to 36 segments, a loss, recovery, then the curve: chosen so that
    /// K = cbrt((36 - 25.2) / 0.4) = cbrt(27) = 3 s exactly.
    fn after_loss_at_36() -> Cubic {
        let mut cc = Cubic::new(MSS, at(0));
        assert_eq!(cc.window(), 10_000);
        for _ in 0..26 {
            cc.on_ack(at(50), MSS, RTT);
        }
        assert_eq!(cc.window(), 36_000);
        cc.on_congestion_event(at(100), 36_000);
        assert_eq!(cc.window(), 25_200, "β_cubic * 36 000");
        assert_eq!(cc.ssthresh(), 25_200);
        assert_eq!(cc.w_max(), 36.0);
        assert_eq!(cc.epoch(), None, "no stage during recovery");
        cc.on_recovery_end(at(10_000));
        cc
    }

    #[test]
    fn slow_start_loss_recovery_and_the_curve_step_by_step() {
        let mut cc = after_loss_at_36();
        let epoch = cc.epoch().unwrap();
        assert_eq!(epoch.start, at(10_000));
        assert_close(epoch.k, 3.0, "K");
        assert_close(epoch.w_est, 25.2, "W_est starts at cwnd_epoch");
        assert_close(epoch.w_cubic(0.0), 25.2, "W_cubic(0) = cwnd_epoch");
        assert_close(epoch.w_cubic(3.0), 36.0, "W_cubic(K) = W_max");

        // t = 1 s, one segment ACKed. W_est = 25.2 + 0.529… / 25.2 = 25.221 is below
        // W_cubic(1) = 0.4 * (1 - 3)^3 + 36 = 32.8: not Reno-friendly.
        // target = W_cubic(1.1) = 0.4 * (-1.9)^3 + 36 = 33.2564, inside [cwnd, 1.5 cwnd];
        // cwnd += (33.2564 - 25.2) / 25.2 = 0.319698… → 25.519698… segments.
        cc.on_ack(at(11_000), MSS, RTT);
        let expected = 25.2 + (33.2564 - 25.2) / 25.2;
        assert_close(cc.cwnd_segments(), expected, "cwnd at t = 1 s");
        assert_eq!(cc.window(), 25_520);
        assert_close(
            cc.epoch().unwrap().w_est,
            25.2 + ALPHA_CUBIC / 25.2,
            "W_est at t = 1 s",
        );

        // Two segments in one ACK at t = 2 s: target = W_cubic(2.1) = 36 - 0.4 * 0.729
        // = 35.7084, and the increase counts both segments.
        let cwnd = cc.cwnd_segments();
        cc.on_ack(at(12_000), 2 * MSS, RTT);
        let expected = cwnd + (35.7084 - cwnd) / cwnd * 2.0;
        assert_close(cc.cwnd_segments(), expected, "cwnd at t = 2 s");

        // Far beyond K (t = 20 s): W_cubic(20.1) = 0.4 * 17.1^3 + 36 ≈ 2036 is clamped to
        // 1.5 * cwnd, so one ACKed segment adds exactly half a segment.
        let cwnd = cc.cwnd_segments();
        cc.on_ack(at(30_000), MSS, RTT);
        assert_close(cc.cwnd_segments(), cwnd + 0.5, "clamped at 1.5 cwnd");
    }

    #[test]
    fn an_app_limited_loss_starts_lower_and_never_overshoots() {
        // After a loss at 36 segments with only 20 000 bytes in flight (app-limited), the
        // stage starts at cwnd_epoch = 14 and K = cbrt((36 - 14) / 0.4) = 3.80 s.
        let mut cc = Cubic::new(MSS, at(0));
        for _ in 0..26 {
            cc.on_ack(at(50), MSS, RTT);
        }
        cc.on_congestion_event(at(100), 20_000);
        assert_eq!(cc.window(), 14_000);
        cc.on_recovery_end(at(200));
        assert_close(cc.epoch().unwrap().k, (22.0f64 / 0.4).cbrt(), "K");
        // Near the plateau the target stays at most 1.5 cwnd and cwnd never passes it.
        let mut now = at(200);
        for _ in 0..2_000 {
            now += Duration::from_millis(2);
            let before = cc.cwnd_segments();
            cc.on_ack(now, MSS, RTT);
            let epoch = cc.epoch().unwrap();
            let target = epoch.w_cubic(epoch.t(now) + RTT.as_secs_f64());
            assert!(cc.cwnd_segments() >= before, "cwnd never shrinks on an ACK");
            assert!(
                cc.cwnd_segments() <= target.max(before).max(epoch.w_est) + 1e-9,
                "cwnd {} past target {target} at {now:?}",
                cc.cwnd_segments()
            );
        }
    }

    #[test]
    fn reno_friendly_region_on_a_short_rtt() {
        // W_max = 1000 segments, cwnd_epoch = 700: K = cbrt(750) = 9.09 s. With a 1 ms RTT
        // Reno would add 0.53 segments per millisecond, far faster than the curve's
        // 3 * C * K^2 ≈ 99 segments per second at t = 0: CUBIC must follow W_est.
        let mut cc = Cubic::new(MSS, at(0));
        while cc.window() < 1_000_000 {
            cc.on_ack(at(0), MSS, Duration::from_millis(1));
        }
        cc.on_congestion_event(at(1), 1_000_000);
        cc.on_recovery_end(at(2));
        let rtt = Duration::from_millis(1);
        let mut now = at(2);
        let mut w_est = 700.0;
        // 100 RTTs, one ACK per segment spread over each RTT.
        for _ in 0..100 {
            let segments = cc.cwnd_segments().floor() as u32;
            let step = rtt / segments;
            for _ in 0..segments {
                let cwnd = cc.cwnd_segments();
                now += step;
                cc.on_ack(now, MSS, rtt);
                w_est += ALPHA_CUBIC / cwnd;
                let epoch = cc.epoch().unwrap();
                assert!(epoch.w_cubic(epoch.t(now)) < w_est, "in the Reno region");
                assert_close(epoch.w_est, w_est, "W_est");
                assert_close(cc.cwnd_segments(), w_est, "cwnd = W_est");
            }
        }
        // α_cubic per RTT: about 100 * 0.529 = 52.9 segments in 100 RTTs.
        assert!(
            (cc.cwnd_segments() - 752.9).abs() < 1.0,
            "{}",
            cc.cwnd_segments()
        );
    }

    #[test]
    fn alpha_becomes_one_once_w_est_reaches_cwnd_prior() {
        let mut cc = Cubic::new(MSS, at(0));
        while cc.window() < 100_000 {
            cc.on_ack(at(0), MSS, Duration::from_millis(1));
        }
        cc.on_congestion_event(at(1), 100_000);
        cc.on_recovery_end(at(2));
        // Force the estimate over cwnd_prior = 100 and check the next increment is 1 / cwnd.
        let mut epoch = cc.epoch.unwrap();
        epoch.w_est = 100.0;
        cc.epoch = Some(epoch);
        let cwnd = cc.cwnd_segments();
        cc.on_ack(at(2), MSS, Duration::from_millis(1));
        assert_close(cc.epoch().unwrap().w_est, 100.0 + 1.0 / cwnd, "α = 1");
        assert_close(cc.cwnd_segments(), 100.0 + 1.0 / cwnd, "cwnd = W_est");
    }

    #[test]
    fn fast_convergence_lowers_w_max_on_a_second_loss_below_it() {
        let mut cc = after_loss_at_36();
        // Grow to 30 segments (below W_max = 36) and lose again.
        while cc.window() < 30_000 {
            cc.on_ack(at(11_000), MSS, RTT);
        }
        let cwnd = cc.cwnd_segments();
        cc.on_congestion_event(at(12_000), 30_000);
        // W_max = cwnd * (1 + 0.7) / 2, cwnd_prior = cwnd, cwnd = 0.7 * flight.
        assert_close(cc.w_max(), cwnd * 0.85, "W_max");
        assert_eq!(cc.window(), 21_000);
        cc.on_recovery_end(at(12_100));
        let epoch = cc.epoch().unwrap();
        assert_close(
            epoch.k,
            ((cwnd * 0.85 - 21.0) / C).cbrt(),
            "K from cwnd_epoch",
        );
        // A loss above W_max remembers cwnd itself.
        let mut now = at(12_100);
        while cc.cwnd_segments() < 40.0 {
            now += Duration::from_millis(10);
            cc.on_ack(now, MSS, RTT);
        }
        let cwnd = cc.cwnd_segments();
        cc.on_congestion_event(now, 40_000);
        assert_close(cc.w_max(), cwnd, "W_max = cwnd");
    }

    #[test]
    fn timeout_restarts_slow_start_and_probes_from_the_new_window() {
        let mut cc = after_loss_at_36();
        cc.on_ack(at(11_000), MSS, RTT);
        cc.on_retransmission_timeout(at(12_000), 30_000);
        assert_eq!((cc.window(), cc.ssthresh()), (1_000, 21_000));
        assert_eq!(cc.epoch(), None, "a timeout ends the stage");
        // A second timeout of the same segment holds ssthresh.
        cc.on_retransmission_timeout(at(14_000), 1_000);
        assert_eq!((cc.window(), cc.ssthresh()), (1_000, 21_000));
        // Slow start: +1 MSS per ACKed segment up to ssthresh, then the stage begins.
        for i in 0..20 {
            assert_eq!(cc.epoch(), None);
            cc.on_ack(at(14_100), MSS, RTT);
            assert_eq!(cc.window(), 2_000 + i * 1_000);
        }
        assert_eq!(cc.window(), 21_000);
        cc.on_ack(at(14_200), MSS, RTT);
        // §4.8: K = 0 and W_max = cwnd_epoch = 21: W_cubic(t) = 0.4 t^3 + 21.
        let epoch = cc.epoch().unwrap();
        assert_eq!(epoch.start, at(14_200));
        assert_eq!((epoch.k, epoch.w_max), (0.0, 21.0));
        // At t = 0 the target is W_cubic(0.1) = 21.0004; W_est = 21 + 0.529 / 21 is above
        // W_cubic(0) = 21, so this first ACK is Reno-friendly.
        assert_close(cc.cwnd_segments(), 21.0 + ALPHA_CUBIC / 21.0, "cwnd");
        // One second later the curve leads: target = W_cubic(1.1) = 21.5324.
        let cwnd = cc.cwnd_segments();
        cc.on_ack(at(15_200), MSS, RTT);
        assert_close(
            cc.cwnd_segments(),
            cwnd + (21.5324 - cwnd) / cwnd,
            "cwnd at t = 1 s",
        );
    }

    /// The curve-following check: after one loss at W_max = 1000 segments, drive a steady
    /// ACK clock (fixed 100 ms RTT, one ACK per segment spread evenly over each RTT, no
    /// more loss) for 20 s, and compare cwnd with W_cubic(t) at every RTT boundary.
    ///
    /// Tolerance: the larger of 1 segment and 2 % of W_cubic(t). The window aims at
    /// W_cubic(t + RTT) one RTT ahead and gets most of the way within the RTT, so it
    /// tracks W_cubic(t) to well under 1 %; the slack is for the per-ACK steps in the
    /// steep convex part.
    #[test]
    fn cwnd_follows_w_cubic_under_a_steady_ack_clock() {
        let trace = steady_ack_clock_trace(1_000, RTT, Duration::from_secs(20));
        let mut worst: f64 = 0.0;
        for &(t, cwnd, w_cubic, w_est) in &trace {
            // With K = 9.09 s and 10 RTTs a second, Reno's estimate never leads here.
            assert!(w_est < w_cubic || t < 0.2, "t = {t}: W_est {w_est} leads");
            let tolerance = (0.02 * w_cubic).max(1.0);
            let error = cwnd - w_cubic;
            worst = worst.max(error.abs() / w_cubic);
            assert!(
                error.abs() <= tolerance,
                "t = {t:.2} s: cwnd {cwnd:.2} vs W_cubic {w_cubic:.2} (±{tolerance:.2})"
            );
        }
        // The curve was really walked: concave up to W_max at K = 9.09 s, convex after.
        let (_, last, _, _) = *trace.last().unwrap();
        assert!(last > 1_400.0, "ended at {last} segments");
        assert!(worst < 0.01, "worst relative error {worst}");
    }

    /// On a smaller window the Reno-friendly region takes over around the plateau (W_est
    /// reaches cwnd_prior = 100 after about 57 RTTs and then grows a segment per RTT,
    /// faster than the flat curve): the window is max(W_cubic(t), W_est), within the same
    /// tolerance.
    #[test]
    fn cwnd_follows_the_larger_of_w_cubic_and_w_est() {
        let trace = steady_ack_clock_trace(100, RTT, Duration::from_secs(12));
        let mut reno_friendly = 0;
        for &(t, cwnd, w_cubic, w_est) in &trace {
            let curve = w_cubic.max(w_est);
            reno_friendly += usize::from(w_est > w_cubic);
            let tolerance = (0.02 * curve).max(1.0);
            assert!(
                (cwnd - curve).abs() <= tolerance,
                "t = {t:.2} s: cwnd {cwnd:.2} vs {curve:.2} (W_cubic {w_cubic:.2}, W_est {w_est:.2})"
            );
        }
        assert!(
            reno_friendly > 10,
            "{reno_friendly} RTTs in the Reno-friendly region"
        );
    }

    /// (t since the stage began, cwnd, W_cubic(t), W_est) at each RTT boundary, in
    /// segments.
    fn steady_ack_clock_trace(
        w_max: u32,
        rtt: Duration,
        run: Duration,
    ) -> Vec<(f64, f64, f64, f64)> {
        let mut cc = Cubic::new(MSS, at(0));
        while cc.window() < w_max * MSS {
            cc.on_ack(at(0), MSS, rtt);
        }
        cc.on_congestion_event(at(100), w_max * MSS);
        let start = at(200);
        cc.on_recovery_end(start);
        let mut now = start;
        let mut trace = Vec::new();
        while now - start < run {
            let segments = (cc.cwnd_segments().floor() as u32).max(1);
            let step = rtt / segments;
            for _ in 0..segments {
                now += step;
                cc.on_ack(now, MSS, rtt);
            }
            let epoch = cc.epoch().unwrap();
            let t = epoch.t(now);
            trace.push((t, cc.cwnd_segments(), epoch.w_cubic(t), epoch.w_est));
        }
        trace
    }
}
