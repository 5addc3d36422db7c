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

/// RFC 6928 §2: "The upper bound for the initial window will be
///     min (10*MSS, max (2*MSS, 14600))".
pub fn initial_window(mss: u32) -> u32 {
    (10 * mss).min((2 * mss).max(14_600))
}

/// RFC 3465 §2.2 (appropriate byte counting in slow start): cwnd grows by the bytes ACKed,
/// but "L [...] SHOULD be set to 2*SMSS bytes" per ACK, so a stretch ACK cannot burst the
/// window. The increase stops at `ssthresh`, where congestion avoidance takes over (RFC
/// 5681 §3.1: slow start "when cwnd < ssthresh").
fn slow_start_increase(cwnd: u32, ssthresh: u32, bytes: u32, mss: u32) -> u32 {
    let limit = 2 * mss;
    cwnd.saturating_add(bytes.min(limit))
        .min(ssthresh.max(cwnd))
}

/// The controller a connection runs, chosen at run time without a `Box<dyn …>`.
#[derive(Clone, Debug)]
pub enum Controller {
    Cubic(cubic::Cubic),
    NewReno(newreno::NewReno),
}

impl Controller {
    /// A controller for `algorithm` with the initial window of RFC 6928 for `mss`.
    pub fn new(algorithm: Algorithm, mss: u32, now: Instant) -> Controller {
        match algorithm {
            Algorithm::Cubic => Controller::Cubic(cubic::Cubic::new(mss, now)),
            Algorithm::NewReno => Controller::NewReno(newreno::NewReno::new(mss)),
        }
    }

    /// A controller for `algorithm` whose window starts at one segment: RFC 5681 3.1, "if
    /// the SYN or SYN/ACK is lost, the initial window used by a sender after a correctly
    /// transmitted SYN MUST be one segment consisting of at most SMSS bytes".
    pub fn after_lost_syn(algorithm: Algorithm, mss: u32, now: Instant) -> Controller {
        match algorithm {
            Algorithm::Cubic => Controller::Cubic(cubic::Cubic::with_window(mss, mss, now)),
            Algorithm::NewReno => Controller::NewReno(newreno::NewReno::with_window(mss, mss)),
        }
    }

    fn inner(&self) -> &dyn CongestionControl {
        match self {
            Controller::Cubic(c) => c,
            Controller::NewReno(c) => c,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn CongestionControl {
        match self {
            Controller::Cubic(c) => c,
            Controller::NewReno(c) => c,
        }
    }
}

impl CongestionControl for Controller {
    fn window(&self) -> u32 {
        self.inner().window()
    }
    fn ssthresh(&self) -> u32 {
        self.inner().ssthresh()
    }
    fn on_ack(&mut self, now: Instant, bytes: u32, srtt: Duration) {
        self.inner_mut().on_ack(now, bytes, srtt)
    }
    fn on_congestion_event(&mut self, now: Instant, flight: u32) {
        self.inner_mut().on_congestion_event(now, flight)
    }
    fn on_recovery_end(&mut self, now: Instant) {
        self.inner_mut().on_recovery_end(now)
    }
    fn on_retransmission_timeout(&mut self, now: Instant, flight: u32) {
        self.inner_mut().on_retransmission_timeout(now, flight)
    }
    fn name(&self) -> &'static str {
        self.inner().name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_window_per_rfc6928() {
        assert_eq!(initial_window(1460), 14_600);
        assert_eq!(initial_window(536), 5_360);
        assert_eq!(initial_window(1000), 10_000);
        // Jumbo segments: max(2 * MSS, 14600) wins.
        assert_eq!(initial_window(8960), 17_920);
        assert_eq!(initial_window(4000), 14_600);
    }

    #[test]
    fn controller_delegates() {
        let now = Instant::ZERO;
        let mut cubic = Controller::new(Algorithm::Cubic, 1000, now);
        let mut reno = Controller::new(Algorithm::NewReno, 1000, now);
        assert_eq!((cubic.name(), reno.name()), ("cubic", "newreno"));
        for cc in [&mut cubic, &mut reno] {
            assert_eq!(cc.window(), 10_000);
            cc.on_ack(now, 1000, Duration::from_millis(10));
            assert_eq!(cc.window(), 11_000);
        }
        cubic.on_congestion_event(now, 10_000);
        reno.on_congestion_event(now, 10_000);
        // β_cubic = 0.7 against Reno's 1/2.
        assert_eq!((cubic.ssthresh(), reno.ssthresh()), (7_000, 5_000));
    }
}
