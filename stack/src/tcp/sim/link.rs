//! One direction of a simulated path: a transmitter with a bounded tail-drop queue that
//! serialises segments at the link rate, then a wire with a propagation delay that may
//! lose, duplicate, delay (reorder), corrupt, or — during an outage — swallow them.
//! Randomness comes from a ChaCha8 stream seeded per link, so a seed replays exactly.

use std::{cmp::Ordering, collections::BinaryHeap, time::Duration};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::time::Instant;

/// The link is down from `from` (inclusive) to `until` (exclusive): nothing sent in that
/// time arrives, nor does anything that would have arrived in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outage {
    pub from: Instant,
    pub until: Instant,
}

impl Outage {
    fn covers(&self, t: Instant) -> bool {
        self.from <= t && t < self.until
    }
}

/// What one direction of the path does to segments. Probabilities are per segment.
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Bits per second on the wire; 0 means no serialisation delay and no queue.
    pub rate: u64,
    /// Bytes that may wait for the transmitter; a segment that does not fit is
    /// tail-dropped (a drop-tail router buffer).
    pub queue: usize,
    /// Bytes a segment occupies on the wire besides the TCP segment itself (the IPv4
    /// header: 20).
    pub overhead: usize,
    /// Lost on the wire (after using its share of the bandwidth).
    pub loss: f64,
    /// Delivered twice (the copy `duplicate_delay` later at most).
    pub duplicate: f64,
    /// Held back by a uniform extra delay in `[0, reorder_delay]`, so later segments pass
    /// it.
    pub reorder: f64,
    pub reorder_delay: Duration,
    /// One bit flipped: the receiver's checksum fails and drops it.
    pub corrupt: f64,
    pub outages: Vec<Outage>,
}

impl LinkConfig {
    /// A perfect link: `delay`, `rate` bits/s and a `queue`-byte buffer, nothing else.
    pub fn clean(delay: Duration, rate: u64, queue: usize) -> Self {
        Self {
            delay,
            rate,
            queue,
            overhead: 20,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            corrupt: 0.0,
            outages: Vec::new(),
        }
    }

    /// Serialisation time of `bytes` on the wire at `rate`.
    pub fn transmission_time(&self, bytes: usize) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let bits = (bytes as u128) * 8;
        Duration::from_nanos((bits * 1_000_000_000 / u128::from(self.rate)) as u64)
    }
}

/// What happened to the segments offered to a link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Segments handed to `send`.
    pub offered: u64,
    /// Tail-dropped at the full queue.
    pub queue_drops: u64,
    /// Lost on the wire at random.
    pub lost: u64,
    /// Lost to an outage.
    pub outage_drops: u64,
    /// Copies added by duplication.
    pub duplicated: u64,
    /// Segments held back by a reordering delay.
    pub reordered: u64,
    /// Copies delivered with a flipped bit.
    pub corrupted: u64,
    /// Copies handed to the receiver (corrupted ones included).
    pub delivered: u64,
    /// Their TCP bytes (headers and payload).
    pub delivered_bytes: u64,
    /// The longest the queue ever was, in bytes.
    pub max_queue: usize,
}

/// A segment on the wire, ordered by arrival (then by sending order, so equal arrival
/// times keep FIFO order and the heap pops deterministically).
#[derive(Debug)]
struct InFlight {
    arrival: Instant,
    order: u64,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.arrival, self.order) == (other.arrival, other.order)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest arrival must come first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.arrival, other.order).cmp(&(self.arrival, self.order))
    }
}

/// One direction of the path.
#[derive(Debug)]
pub struct Link {
    config: LinkConfig,
    rng: ChaCha8Rng,
    /// When the transmitter finishes the last segment queued for it.
    busy_until: Instant,
    in_flight: BinaryHeap<InFlight>,
    order: u64,
    stats: LinkStats,
}

impl Link {
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Self {
            config,
            rng: ChaCha8Rng::seed_from_u64(seed),
            busy_until: Instant::ZERO,
            in_flight: BinaryHeap::new(),
            order: 0,
            stats: LinkStats::default(),
        }
    }

    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    pub fn stats(&self) -> &LinkStats {
        &self.stats
    }

    /// Bytes waiting for the transmitter at `now` (the one being serialised included).
    pub fn queued_bytes(&self, now: Instant) -> usize {
        let backlog = self.busy_until - now;
        (backlog.as_nanos() * u128::from(self.config.rate) / 8_000_000_000) as usize
    }

    fn down_at(&self, t: Instant) -> bool {
        self.config.outages.iter().any(|o| o.covers(t))
    }

    /// Offers a TCP segment (header and payload) to the link at `now`.
    pub fn send(&mut self, now: Instant, mut segment: Vec<u8>) {
        self.stats.offered += 1;
        let wire_len = segment.len() + self.config.overhead;
        // The transmitter: a segment waits behind the queue, then takes its serialisation
        // time. An idle transmitter always takes one.
        let start = self.busy_until.max(now);
        if self.config.rate > 0 {
            let queued = self.queued_bytes(now);
            if queued > 0 && queued + wire_len > self.config.queue {
                self.stats.queue_drops += 1;
                return;
            }
            self.stats.max_queue = self.stats.max_queue.max(queued + wire_len);
        }
        let departed = start + self.config.transmission_time(wire_len);
        self.busy_until = departed;
        // The wire: every draw is made whatever the outcome, so one segment's fate does
        // not shift the random stream of those after it.
        let lost = self.rng.random_bool(self.config.loss);
        let duplicated = self.rng.random_bool(self.config.duplicate);
        let reordered = self.rng.random_bool(self.config.reorder);
        let extra = self.extra_delay(self.config.reorder_delay);
        let duplicate_extra = self.extra_delay(self.config.reorder_delay);
        let arrival = departed + self.config.delay;
        if self.down_at(start) || self.down_at(departed) || self.down_at(arrival) {
            self.stats.outage_drops += 1;
            return;
        }
        if lost {
            self.stats.lost += 1;
            return;
        }
        let arrival = if reordered {
            self.stats.reordered += 1;
            arrival + extra
        } else {
            arrival
        };
        if duplicated {
            self.stats.duplicated += 1;
            let mut copy = segment.clone();
            self.maybe_corrupt(&mut copy);
            self.put(arrival + duplicate_extra, copy);
        }
        self.maybe_corrupt(&mut segment);
        self.put(arrival, segment);
    }

    fn extra_delay(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.rng.random_range(0..=nanos))
    }

    fn maybe_corrupt(&mut self, segment: &mut [u8]) {
        let corrupt = self.rng.random_bool(self.config.corrupt);
        let bit = self.rng.random_range(0..segment.len().max(1) * 8);
        if corrupt && !segment.is_empty() {
            self.stats.corrupted += 1;
            segment[bit / 8] ^= 1 << (bit % 8);
        }
    }

    fn put(&mut self, arrival: Instant, bytes: Vec<u8>) {
        self.order += 1;
        self.in_flight.push(InFlight {
            arrival,
            order: self.order,
            bytes,
        });
    }

    /// When the next segment arrives, if any is on the wire.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.in_flight.peek().map(|p| p.arrival)
    }

    /// The next segment to arrive by `now`.
    pub fn receive(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.next_arrival()? > now {
            return None;
        }
        let p = self.in_flight.pop()?;
        self.stats.delivered += 1;
        self.stats.delivered_bytes += p.bytes.len() as u64;
        Some(p.bytes)
    }

    /// Segments still on the wire.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn drain(link: &mut Link) -> Vec<(Instant, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(t) = link.next_arrival() {
            out.push((t, link.receive(t).unwrap()));
        }
        out
    }

    #[test]
    fn delay_serialisation_and_tail_drop() {
        // 8 Mbit/s: 1 000 wire bytes take 1 ms. 10 ms delay, 3 000-byte queue.
        let mut config = LinkConfig::clean(10 * MS, 8_000_000, 3_000);
        config.overhead = 0;
        let mut link = Link::new(config, 1);
        let t0 = Instant::from_millis(100);
        for i in 0..5u8 {
            link.send(t0, vec![i; 1_000]);
        }
        // The first goes at once; two more fit behind it (the queue counts the one on the
        // transmitter: 1 000 + 1 000 + 1 000); the fourth and fifth are tail-dropped.
        assert_eq!(link.stats().queue_drops, 2);
        let got = drain(&mut link);
        let times: Vec<_> = got.iter().map(|(t, _)| t.as_millis()).collect();
        assert_eq!(times, [111, 112, 113]);
        assert_eq!(got[2].1[0], 2);
        // Once the queue has drained, the link is idle again and one more waits nowhere.
        link.send(Instant::from_millis(200), vec![9; 500]);
        assert_eq!(link.next_arrival(), Some(Instant::from_micros(210_500)));
        assert_eq!(link.stats().max_queue, 3_000);
    }

    #[test]
    fn a_seed_replays_and_rates_are_as_configured() {
        let mut config = LinkConfig::clean(5 * MS, 0, 0);
        config.loss = 0.1;
        config.duplicate = 0.05;
        config.reorder = 0.2;
        config.reorder_delay = 3 * MS;
        config.corrupt = 0.02;
        let run = |seed| {
            let mut link = Link::new(config.clone(), seed);
            for i in 0..20_000u32 {
                link.send(
                    Instant::from_micros(u64::from(i) * 100),
                    i.to_be_bytes().to_vec(),
                );
            }
            let got = drain(&mut link);
            (*link.stats(), got)
        };
        let (stats, got) = run(7);
        assert_eq!(run(7).1, got, "same seed, same deliveries");
        assert_ne!(run(8).1, got);
        let near = |n: u64, p: f64| (n as f64 - 20_000.0 * p).abs() < 20_000.0 * p * 0.15;
        assert!(near(stats.lost, 0.1), "{stats:?}");
        assert!(near(stats.duplicated, 0.9 * 0.05), "{stats:?}");
        assert!(near(stats.reordered, 0.9 * 0.2), "{stats:?}");
        assert!(near(stats.corrupted, 0.02 * 0.945), "{stats:?}");
        assert_eq!(stats.delivered, 20_000 - stats.lost + stats.duplicated);
        // Reordering really reorders: some segment arrives after a later-sent one.
        let order: Vec<u32> = got
            .iter()
            .map(|(_, b)| u32::from_be_bytes(b[..4].try_into().unwrap()))
            .collect();
        assert!(order.windows(2).any(|w| w[0] > w[1]));
    }

    #[test]
    fn an_outage_swallows_what_crosses_it() {
        let mut config = LinkConfig::clean(10 * MS, 0, 0);
        config.outages = vec![Outage {
            from: Instant::from_millis(100),
            until: Instant::from_millis(200),
        }];
        let mut link = Link::new(config, 1);
        for ms in [50, 89, 90, 95, 150, 199, 200, 250] {
            link.send(Instant::from_millis(ms), vec![ms as u8]);
        }
        // Sent at 90 and 95 it would arrive at 100 and 105: gone; 89 arrives at 99.
        let got: Vec<u8> = drain(&mut link).into_iter().map(|(_, b)| b[0]).collect();
        assert_eq!(got, [50, 89, 200, 250u64 as u8]);
        assert_eq!(link.stats().outage_drops, 4);
    }
}
