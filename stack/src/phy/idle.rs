//! The hybrid idle policy: whether a worker that found its RX ring empty spins on or sleeps,
//! decided from facts it observes rather than from how often spinning succeeded (a ratio
//! that locks itself off: a worker that stops spinning makes round trips longer, which makes
//! spinning fail more).
//!
//! The facts:
//! - **arrival gaps**: how long the ring stays empty before the next frame, as a moving
//!   average of the gaps the worker measures (from the first empty batch to the next busy
//!   one, sleep and wake-up included);
//! - **the cost of a sleep**: how much later a sleeping worker sees a frame than a spinning
//!   one (a wake-up through poll(); `WAKE_COST`);
//! - **the core's other tasks**: the time this thread spent runnable but waiting for its CPU
//!   (the kernel's run delay, `/proc/thread-self/schedstat`'s second field), sampled while
//!   it spins. A spinning worker that waits for its CPU is taking the core from a task that
//!   shares it — the peer on a test bed, or anything else — and must sleep instead. The
//!   samples span busy batches and sleeps too: a worker preempted mid-spin comes back to
//!   frames, so the delay shows only against the sample before (sleeping adds none).
//!
//! The rule: spin while the expected gap is worth catching — no longer than
//! `SPIN_GAPS` × the average gap, at least `WAKE_COST` (so sleeping is never chosen for
//! gaps a wake-up would double), at most `MAX_SPIN` — and only while the core is not shared
//! and a frame arrived within `QUIET_AFTER`. With no traffic the worker sleeps at once
//! (under 5 % of a core); on a shared core it sleeps until a probe finds the core free
//! again. Pure logic with time passed in: `tests` drives it in virtual time.

use std::time::Duration;

use crate::time::Instant;

/// A sleep-wake through poll() costs about this much latency over spinning: the kernel's
/// wake-up of the worker's thread and its return from ppoll on this kind of machine
/// (measured on the test bed's VMs: 15-40 µs of added p50 RTT between `--idle poll` and
/// `--idle busy`).
pub const WAKE_COST: Duration = Duration::from_micros(30);
/// Spin for at most this many average gaps before sleeping.
const SPIN_GAPS: u64 = 4;
/// The longest spin on an empty ring, however the gaps look.
pub const MAX_SPIN: Duration = Duration::from_micros(200);
/// No frame for this long: the traffic stopped; sleep at once.
pub const QUIET_AFTER: Duration = Duration::from_millis(100);
/// How often a spinning worker samples its run delay.
pub const SAMPLE_EVERY: Duration = Duration::from_micros(500);
/// Run delay over this share of the time sampled (in 1/1000) means the core is shared. A
/// core shared with a busy task gives the worker about half of it (it waits ~50 %); a core
/// of its own on the test bed still shows some (kernel threads doing the veth's softirq
/// work): measured 2026-12-02, thresholds of 5 % and 25 % made the worker sleep on a core of
/// its own (sockperf p50 63 µs against 22 µs spinning), 40 % did not, and still found a
/// core shared with the client (`udp-flood --server-core 0 --client-core 0`: 44.5k/s against
/// `--idle poll`'s 47k/s).
const CONTENDED_PER_MILLE: u64 = 400;
/// Once the core was found shared, sleep for this long before probing it again.
const SHARED_BACKOFF: Duration = Duration::from_millis(100);
/// The weight of a new gap in the moving average, as 1/2^GAP_SHIFT.
const GAP_SHIFT: u32 = 3;

/// What the policy chose for an empty ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Spin,
    /// Frames arrive, but further apart than spinning pays for.
    SleepLongGap,
    /// No frame for `QUIET_AFTER`.
    SleepQuiet,
    /// Another task wants this core.
    SleepSharedCore,
}

/// The hybrid policy's state for one worker.
#[derive(Debug)]
pub struct IdleGovernor {
    /// Moving average of the empty-ring gaps, in ns (0 until one was measured).
    gap_ns: u64,
    last_arrival: Option<Instant>,
    /// The last run-delay sample: (when, the thread's cumulative run delay in ns).
    last_sample: Option<(Instant, u64)>,
    /// The core was found shared; sleep until then.
    shared_until: Option<Instant>,
}

impl Default for IdleGovernor {
    fn default() -> Self {
        Self::new()
    }
}

impl IdleGovernor {
    pub fn new() -> Self {
        Self {
            gap_ns: 0,
            last_arrival: None,
            last_sample: None,
            shared_until: None,
        }
    }

    /// A busy batch at `now` after the ring was empty since `idle_since`.
    pub fn on_arrival(&mut self, now: Instant, idle_since: Option<Instant>) {
        if let Some(since) = idle_since {
            let gap = (now - since).as_nanos().min(u128::from(u64::MAX)) as u64;
            self.gap_ns = if self.gap_ns == 0 {
                gap
            } else {
                // gap_ns += (gap - gap_ns) / 2^GAP_SHIFT, in integers.
                self.gap_ns - (self.gap_ns >> GAP_SHIFT) + (gap >> GAP_SHIFT)
            };
        }
        self.last_arrival = Some(now);
    }

    /// The thread's cumulative run delay (ns) read at `now` while it spins. Returns true
    /// when the sample shows the core shared (the caller counts it).
    pub fn on_run_delay(&mut self, now: Instant, run_delay_ns: u64) -> bool {
        let shared = match self.last_sample {
            Some((at, before)) if now > at => {
                let span = (now - at).as_nanos() as u64;
                let waited = run_delay_ns.saturating_sub(before);
                waited.saturating_mul(1000) > span.saturating_mul(CONTENDED_PER_MILLE)
            }
            _ => false,
        };
        self.last_sample = Some((now, run_delay_ns));
        if shared {
            self.shared_until = Some(now + SHARED_BACKOFF);
        }
        shared
    }

    /// How long a spin on an empty ring may last now.
    pub fn spin_budget(&self) -> Duration {
        if self.gap_ns == 0 {
            return MAX_SPIN;
        }
        let gaps = Duration::from_nanos(self.gap_ns.saturating_mul(SPIN_GAPS));
        gaps.clamp(WAKE_COST, MAX_SPIN)
    }

    /// Spin on or sleep, the ring having been empty (spinning) for `spun` at `now`.
    pub fn decide(&mut self, now: Instant, spun: Duration) -> Decision {
        if let Some(until) = self.shared_until {
            if now < until {
                return Decision::SleepSharedCore;
            }
            self.shared_until = None;
        }
        match self.last_arrival {
            None => return Decision::SleepQuiet,
            Some(at) if now - at > QUIET_AFTER => return Decision::SleepQuiet,
            Some(_) => {}
        }
        if spun < self.spin_budget() {
            Decision::Spin
        } else {
            Decision::SleepLongGap
        }
    }

    /// The average gap (for tests and stats).
    pub fn average_gap(&self) -> Duration {
        Duration::from_nanos(self.gap_ns)
    }
}

/// The calling thread's cumulative run delay in ns: time runnable but waiting for a CPU
/// (`/proc/thread-self/schedstat`, second field). None where the kernel does not keep it.
pub struct RunDelay {
    file: Option<std::fs::File>,
}

impl RunDelay {
    /// Opens the calling thread's schedstat (once; each read is one pread).
    pub fn for_current_thread() -> Self {
        Self {
            file: std::fs::File::open("/proc/thread-self/schedstat").ok(),
        }
    }

    pub fn read(&self) -> Option<u64> {
        use std::os::unix::fs::FileExt;
        let file = self.file.as_ref()?;
        let mut buf = [0u8; 96];
        let n = file.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        text.split_whitespace().nth(1)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    fn at(us: u64) -> Instant {
        Instant::from_micros(us)
    }

    /// Frames every `gap` µs from `start` for `n` arrivals (the ring empty in between).
    fn feed(g: &mut IdleGovernor, start: u64, gap: u64, n: u64) -> u64 {
        let mut t = start;
        for _ in 0..n {
            g.on_arrival(at(t + gap), Some(at(t)));
            t += gap;
        }
        t
    }

    #[test]
    fn short_gaps_on_a_free_core_spin_through_them() {
        let mut g = IdleGovernor::new();
        let t = feed(&mut g, 0, 5, 100);
        assert_eq!(g.average_gap(), 5 * US);
        assert_eq!(
            g.spin_budget(),
            WAKE_COST,
            "4 × 5 µs is below a wake-up: spin that long"
        );
        assert_eq!(g.decide(at(t + 5), 5 * US), Decision::Spin);
        assert_eq!(g.decide(at(t + 25), 25 * US), Decision::Spin);
        assert_eq!(g.decide(at(t + 31), 31 * US), Decision::SleepLongGap);
        let t = feed(&mut g, t, 40, 200);
        let budget = g.spin_budget();
        assert!(
            budget >= 159 * US && budget <= 160 * US,
            "{budget:?}: 4 gaps of 40 µs"
        );
        assert_eq!(g.decide(at(t + 100), 100 * US), Decision::Spin);
        assert_eq!(g.decide(at(t + 161), 161 * US), Decision::SleepLongGap);
    }

    #[test]
    fn long_gaps_sleep_after_a_short_spin_and_never_spin_past_the_cap() {
        let mut g = IdleGovernor::new();
        let t = feed(&mut g, 0, 5_000, 100);
        assert_eq!(g.spin_budget(), MAX_SPIN);
        assert_eq!(g.decide(at(t + 100), 100 * US), Decision::Spin);
        assert_eq!(
            g.decide(at(t + 201), 201 * US),
            Decision::SleepLongGap,
            "5 ms gaps: a 30 µs wake-up is cheap next to them"
        );
    }

    #[test]
    fn no_traffic_sleeps_at_once() {
        let mut g = IdleGovernor::new();
        assert_eq!(
            g.decide(at(0), Duration::ZERO),
            Decision::SleepQuiet,
            "nothing yet"
        );
        let t = feed(&mut g, 0, 10, 10);
        assert_eq!(g.decide(at(t + 50), Duration::ZERO), Decision::Spin);
        let later = t + QUIET_AFTER.as_micros() as u64 + 1;
        assert_eq!(g.decide(at(later), Duration::ZERO), Decision::SleepQuiet);
    }

    #[test]
    fn a_shared_core_sleeps_and_is_probed_again_later() {
        let mut g = IdleGovernor::new();
        let t = feed(&mut g, 0, 10, 100);
        // Spinning, the thread waited 1 µs of every 500 for its CPU: the core is its own.
        assert!(!g.on_run_delay(at(t), 1_000_000));
        assert!(!g.on_run_delay(at(t + 500), 1_001_000));
        assert_eq!(g.decide(at(t + 501), Duration::ZERO), Decision::Spin);
        // Then 250 µs of the next 500: another task wants this core.
        assert!(g.on_run_delay(at(t + 1000), 1_251_000));
        assert_eq!(
            g.decide(at(t + 1001), Duration::ZERO),
            Decision::SleepSharedCore
        );
        // Traffic goes on meanwhile (the arrivals do not end the backoff)...
        let t2 = feed(&mut g, t + 1001, 10, 10);
        assert_eq!(g.decide(at(t2), Duration::ZERO), Decision::SleepSharedCore);
        // ...and once it is over, a probe spins again: the decision never locks itself off.
        let after = t + 1000 + SHARED_BACKOFF.as_micros() as u64;
        g.on_arrival(at(after), Some(at(after - 10)));
        assert_eq!(g.decide(at(after + 1), Duration::ZERO), Decision::Spin);
        assert!(
            !g.on_run_delay(at(after + 1), 1_350_000),
            "0.1 ms waited over the 100 ms asleep"
        );
        assert!(!g.on_run_delay(at(after + 501), 1_350_010));
        assert_eq!(g.decide(at(after + 502), Duration::ZERO), Decision::Spin);
    }

    #[test]
    fn gaps_measured_through_sleeps_bring_spinning_back() {
        // A worker that slept through long gaps sees short ones again: each measured gap
        // includes the wake-up, and the budget follows them down to spinning.
        let mut g = IdleGovernor::new();
        let t = feed(&mut g, 0, 5_000, 50);
        assert_eq!(g.spin_budget(), MAX_SPIN);
        let t = feed(&mut g, t, 35, 100);
        assert!(g.spin_budget() < MAX_SPIN && g.spin_budget() >= WAKE_COST);
        assert_eq!(g.decide(at(t + 20), 20 * US), Decision::Spin);
    }

    #[test]
    fn the_run_delay_of_this_thread_is_readable_here() {
        // Debian's kernels keep schedstats; the policy without them still works (no samples:
        // the core is taken as free), but this machine must have them for the test bed.
        let d = RunDelay::for_current_thread();
        assert!(d.read().is_some(), "/proc/thread-self/schedstat unreadable");
    }
}
