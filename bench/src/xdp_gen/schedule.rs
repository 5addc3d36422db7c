//! The open loop's timetable: when each request is meant to leave.

use std::time::Duration;

use super::MAX_BURST;

/// The open-loop schedule: bursts of `burst` requests, burst j in the j-th slot of
/// `spacing_ns`; request k is meant to leave with burst k / burst. Jittered, each burst
/// sits at a pseudo-random point of its slot (the same point every time: a hash of j), so
/// that a load that is periodic does not alias with the 250 Hz tick that `/proc/stat`'s
/// accounting samples (a burst every 100 µs would otherwise meet the tick at the same
/// phase every time and be counted all busy or all idle).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Schedule {
    burst: u64,
    spacing_ns: u64,
    jitter: bool,
}

impl Schedule {
    pub(super) fn for_rate(rate: u64, spacing: Duration, jitter: bool) -> Self {
        let rate = rate.max(1);
        let per_spacing = rate as f64 * spacing.as_secs_f64();
        let burst = (per_spacing.round() as u64).clamp(1, MAX_BURST);
        Self {
            burst,
            spacing_ns: ((burst as f64 * 1e9 / rate as f64).round() as u64).max(1),
            jitter,
        }
    }

    /// Where in its slot burst j leaves.
    fn offset(&self, j: u64) -> u64 {
        if !self.jitter {
            return 0;
        }
        // splitmix64's finaliser: well spread, no state.
        let mut z = j.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % self.spacing_ns
    }

    /// When request k (counted from the schedule's start) is meant to leave, from the start.
    pub(super) fn intended(&self, k: u64) -> u64 {
        let j = k / self.burst;
        j * self.spacing_ns + self.offset(j)
    }

    /// Bursts that have left by `t` ns after the start.
    fn bursts_by(&self, t: u64) -> u64 {
        let j = t / self.spacing_ns;
        j + u64::from(t - j * self.spacing_ns >= self.offset(j))
    }

    /// Requests due by `t` ns after the start.
    pub(super) fn due(&self, t: u64) -> u64 {
        self.bursts_by(t) * self.burst
    }

    /// The first request meant to leave at or after `t`.
    pub(super) fn first_at_or_after(&self, t: u64) -> u64 {
        let j = t / self.spacing_ns;
        let first_burst = if j * self.spacing_ns + self.offset(j) >= t {
            j
        } else {
            j + 1
        };
        first_burst * self.burst
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdp_gen::SPIN_SPACING;

    #[test]
    fn the_schedule_keeps_the_rate_in_small_bursts() {
        for jitter in [false, true] {
            for rate in [1_000u64, 20_000, 100_000, 1_000_000, 10_000_000] {
                let s = Schedule::for_rate(rate, SPIN_SPACING, jitter);
                assert!((1..=MAX_BURST).contains(&s.burst));
                // Requests due over one second, within one burst of the rate.
                let due = s.due(1_000_000_000 - 1);
                assert!(
                    due.abs_diff(rate) <= s.burst + rate / 1000,
                    "rate {rate}: {due} due in 1 s ({s:?})"
                );
                // Due, intended and first-at agree, and times never go backwards.
                let mut last = 0;
                for k in 0..2000 {
                    let t = s.intended(k);
                    assert!(t >= last, "request {k} before {}", k - 1);
                    last = t;
                    assert!(s.due(t) > k, "request {k} is due at its own time");
                    let first = s.first_at_or_after(t);
                    assert_eq!(first, k - k % s.burst, "the first request at {t} ns");
                    assert!(s.intended(first) >= t);
                }
            }
        }
        let fixed = Schedule::for_rate(100_000, SPIN_SPACING, false);
        assert_eq!(
            (fixed.burst, fixed.intended(2), fixed.intended(4)),
            (2, 20_000, 40_000)
        );
        assert_eq!(
            Schedule::for_rate(100_000, Duration::from_micros(100), true).burst,
            10
        );
    }

    #[test]
    fn jittered_bursts_fall_all_over_their_slots() {
        let s = Schedule::for_rate(100_000, Duration::from_micros(100), true);
        // Offsets in quarters of the slot: each quarter gets about a quarter of the bursts.
        let mut quarters = [0u32; 4];
        for j in 0..10_000 {
            quarters[(s.offset(j) * 4 / s.spacing_ns) as usize] += 1;
        }
        assert!(
            quarters.iter().all(|&q| (2200..2800).contains(&q)),
            "{quarters:?}"
        );
    }
}
