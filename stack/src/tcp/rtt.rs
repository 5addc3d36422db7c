//! The retransmission timeout (RFC 6298): a smoothed RTT and its variation from samples,
//! and exponential backoff while the timer keeps expiring. Karn's rule (RFC 6298 §3: no
//! samples from retransmitted segments unless timestamps tell them apart) is the
//! connection's job; this estimator trusts every sample it is given.

use std::time::Duration;

/// RFC 6298 §2: "G" in `RTO <- SRTT + max (G, K*RTTVAR)`, the clock granularity. Instants
/// are nanoseconds, but the worker's timers fire with about a millisecond of slack, so an
/// RTO closer than that to SRTT would fire before the ACK could.
pub const CLOCK_GRANULARITY: Duration = Duration::from_millis(1);

/// RFC 6298 §2.2: "where K = 4".
const K: u32 = 4;

/// RFC 6298 §5.5 doubles the RTO per expiry; past 2^16 any sane `max_rto` has long been
/// reached, so the count saturates there (and the shift cannot overflow).
const MAX_BACKOFF_SHIFT: u32 = 16;

/// RFC 6298 state for one connection.
#[derive(Clone, Debug)]
pub struct RttEstimator {
    /// SRTT; `None` until the first sample (RFC 6298 §2.1).
    srtt: Option<Duration>,
    rttvar: Duration,
    /// The RTO before backoff, already clamped to `[min_rto, max_rto]`.
    base_rto: Duration,
    min_rto: Duration,
    max_rto: Duration,
    backoff: u32,
}

impl RttEstimator {
    /// RFC 6298 §2.1: "Until a round-trip time (RTT) measurement has been made for a
    /// segment sent between the sender and receiver, the sender SHOULD set RTO <- 1
    /// second" — `initial_rto` is that value (clamped to `[min_rto, max_rto]`).
    /// RFC 6298 §2.4 asks for a minimum of one second, which suits neither a datacenter
    /// nor a simulator; the caller picks `min_rto` (Linux uses 200 ms).
    pub fn new(initial_rto: Duration, min_rto: Duration, max_rto: Duration) -> Self {
        let max_rto = max_rto.max(min_rto);
        Self {
            srtt: None,
            rttvar: Duration::ZERO,
            base_rto: initial_rto.clamp(min_rto, max_rto),
            min_rto,
            max_rto,
            backoff: 0,
        }
    }

    /// Takes one RTT measurement `rtt` (from a segment that was not retransmitted, or an
    /// echoed timestamp). A new sample also ends any backoff: the RTO is recomputed from
    /// it (RFC 6298 §2.3, after §5.5 doubled it).
    pub fn on_sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                // RFC 6298 §2.2: "When the first RTT measurement R is made, the host MUST
                // set
                //     SRTT <- R
                //     RTTVAR <- R/2"
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                // RFC 6298 §2.3: "When a subsequent RTT measurement R' is made, a host
                // MUST set
                //     RTTVAR <- (1 - beta) * RTTVAR + beta * |SRTT - R'|
                //     SRTT <- (1 - alpha) * SRTT + alpha * R'
                // The value of SRTT used in the update to RTTVAR is its value before
                // updating SRTT itself using the second assignment. [...] The above
                // SHOULD be computed using alpha=1/8 and beta=1/4".
                let deviation = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + deviation) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        // RFC 6298 §2.2/§2.3: "RTO <- SRTT + max (G, K*RTTVAR)"; §2.4: "if it is less
        // than 1 second, then the RTO SHOULD be rounded up" (to `min_rto` here), and "A
        // maximum value MAY be placed on RTO".
        let srtt = self.srtt.unwrap_or(rtt);
        let rto = srtt.saturating_add(CLOCK_GRANULARITY.max(self.rttvar.saturating_mul(K)));
        self.base_rto = rto.clamp(self.min_rto, self.max_rto);
        self.backoff = 0;
    }

    /// The smoothed RTT, once there has been a sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The RTT variation (zero before the first sample).
    pub fn rttvar(&self) -> Duration {
        self.rttvar
    }

    /// The retransmission timeout to arm now: the computed RTO doubled once per
    /// `backoff()`, never above `max_rto`.
    pub fn rto(&self) -> Duration {
        let factor = 1u32 << self.backoff.min(MAX_BACKOFF_SHIFT);
        self.base_rto.saturating_mul(factor).min(self.max_rto)
    }

    /// RFC 6298 §5.5: "The host MUST set RTO <- RTO * 2 ("back off the timer"). The
    /// maximum value discussed in (2.5) above may be used to provide an upper bound to
    /// this doubling operation."
    pub fn backoff(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// Forgets the backoff (e.g. when an ACK for new data arrives but gives no sample).
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// How many times the timer has been backed off since the last sample or reset (the
    /// connection gives up after some number of these).
    pub fn backoff_count(&self) -> u32 {
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn estimator() -> RttEstimator {
        RttEstimator::new(Duration::from_secs(1), ms(200), Duration::from_secs(60))
    }

    #[test]
    fn initial_rto_before_any_sample() {
        let rtt = estimator();
        assert_eq!(rtt.srtt(), None);
        assert_eq!(rtt.rttvar(), Duration::ZERO);
        assert_eq!(rtt.rto(), Duration::from_secs(1));
        // The initial RTO is clamped like any other.
        let clamped = RttEstimator::new(ms(50), ms(200), Duration::from_secs(60));
        assert_eq!(clamped.rto(), ms(200));
    }

    #[test]
    fn samples_follow_rfc6298_step_by_step() {
        let mut rtt = estimator();
        // §2.2: SRTT = 100, RTTVAR = 50, RTO = 100 + max(1, 4 * 50) = 300 ms.
        rtt.on_sample(ms(100));
        assert_eq!(rtt.srtt(), Some(ms(100)));
        assert_eq!(rtt.rttvar(), ms(50));
        assert_eq!(rtt.rto(), ms(300));
        // §2.3 with R' = 200: RTTVAR = 3/4 * 50 + 1/4 * |100 - 200| = 62.5 ms (computed
        // with the old SRTT), then SRTT = 7/8 * 100 + 1/8 * 200 = 112.5 ms;
        // RTO = 112.5 + 4 * 62.5 = 362.5 ms.
        rtt.on_sample(ms(200));
        assert_eq!(rtt.rttvar(), Duration::from_micros(62_500));
        assert_eq!(rtt.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(rtt.rto(), Duration::from_micros(362_500));
        // R' = 112.5 ms exactly: RTTVAR decays by 3/4 to 46.875 ms, SRTT stays.
        rtt.on_sample(Duration::from_micros(112_500));
        assert_eq!(rtt.rttvar(), Duration::from_nanos(46_875_000));
        assert_eq!(rtt.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(rtt.rto(), Duration::from_micros(300_000));
    }

    #[test]
    fn rto_is_clamped_and_granularity_applies() {
        // A steady 10 ms path: RTTVAR decays towards zero, RTO towards SRTT + G, but the
        // floor is min_rto.
        let mut rtt = estimator();
        for _ in 0..100 {
            rtt.on_sample(ms(10));
        }
        assert_eq!(rtt.srtt(), Some(ms(10)));
        assert!(
            rtt.rttvar() < Duration::from_micros(1),
            "{:?}",
            rtt.rttvar()
        );
        assert_eq!(rtt.rto(), ms(200));
        // Without the floor, RTO = SRTT + G once 4 * RTTVAR < G.
        let mut fine = RttEstimator::new(ms(1), Duration::ZERO, Duration::from_secs(60));
        for _ in 0..100 {
            fine.on_sample(ms(10));
        }
        assert_eq!(fine.rto(), ms(10) + CLOCK_GRANULARITY);
        // The ceiling: a 50 s sample gives 50 + 4 * 25 = 150 s, clamped to 60 s.
        let mut slow = estimator();
        slow.on_sample(Duration::from_secs(50));
        assert_eq!(slow.rto(), Duration::from_secs(60));
    }

    #[test]
    fn backoff_doubles_up_to_max_and_a_sample_ends_it() {
        let mut rtt = estimator();
        rtt.on_sample(ms(100));
        assert_eq!(rtt.rto(), ms(300));
        let expected = [
            600, 1_200, 2_400, 4_800, 9_600, 19_200, 38_400, 60_000, 60_000,
        ];
        for (i, want) in expected.into_iter().enumerate() {
            rtt.backoff();
            assert_eq!(rtt.backoff_count(), i as u32 + 1);
            assert_eq!(rtt.rto(), ms(want), "after {} backoffs", i + 1);
        }
        for _ in 0..100 {
            rtt.backoff();
        }
        assert_eq!(rtt.rto(), Duration::from_secs(60));
        rtt.reset_backoff();
        assert_eq!(rtt.backoff_count(), 0);
        assert_eq!(rtt.rto(), ms(300));
        rtt.backoff();
        rtt.on_sample(ms(100));
        assert_eq!(rtt.backoff_count(), 0);
        // SRTT 100, RTTVAR 3/4 * 50 = 37.5: RTO = 250 ms.
        assert_eq!(rtt.rto(), ms(250));
    }
}
