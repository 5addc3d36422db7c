//! The simulator's own checks, with toy endpoints; the TCP transfers are in `transfer`.

use super::*;
use crate::wire::tcp::{TcpOptions, flags};

/// Sends `count` segments of `size` bytes, one every `interval`, and records what arrives.
struct Toy {
    interval: Duration,
    next_send: Option<Instant>,
    sent: u32,
    count: u32,
    size: usize,
    /// (arrival, sequence number, payload length)
    received: Vec<(Instant, u32, usize)>,
}

impl Toy {
    fn sender(count: u32, size: usize, interval: Duration) -> Self {
        Self {
            interval,
            next_send: Some(Instant::ZERO),
            sent: 0,
            count,
            size,
            received: Vec::new(),
        }
    }

    fn receiver() -> Self {
        Self {
            next_send: None,
            ..Self::sender(0, 0, Duration::ZERO)
        }
    }
}

impl Endpoint for Toy {
    fn handle_segment(&mut self, now: Instant, header: &TcpRepr, payload: &[u8]) {
        assert!(payload.iter().all(|&b| b == header.seq as u8));
        self.received.push((now, header.seq, payload.len()));
    }

    fn poll_transmit(&mut self, now: Instant, payload: &mut [u8]) -> Option<(TcpRepr, usize)> {
        if self.next_send? > now || self.sent == self.count {
            return None;
        }
        let seq = self.sent;
        self.sent += 1;
        self.next_send = (self.sent < self.count).then(|| now + self.interval);
        payload[..self.size].fill(seq as u8);
        let header = TcpRepr {
            src_port: 1,
            dst_port: 2,
            seq,
            ack: 0,
            flags: flags::ACK,
            window: 1000,
            options: TcpOptions::default(),
        };
        Some((header, self.size))
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.next_send
    }

    fn handle_timeout(&mut self, _now: Instant) {}
}

#[test]
fn segments_cross_with_delay_and_serialisation() {
    // 10 Mbit/s, 5 ms: a 1 000-byte segment plus 20 + 20 bytes of headers takes
    // 1 040 * 8 / 10^7 s = 832 µs on the wire.
    let link = LinkConfig::clean(Duration::from_millis(5), 10_000_000, 100_000);
    let mut net = Network::new(
        Toy::sender(3, 1_000, Duration::ZERO),
        Toy::receiver(),
        link.clone(),
        link,
        1,
    );
    let outcome = net.run_until(Instant::from_secs(1), |net| net.b.received.len() == 3);
    let arrivals: Vec<u64> = net.b.received.iter().map(|r| r.0.as_micros()).collect();
    assert_eq!(arrivals, [5_832, 6_664, 7_496]);
    assert_eq!(outcome, Outcome::Done(Instant::from_micros(7_496)));
    assert_eq!(
        net.run_for(Duration::from_secs(1)),
        Outcome::Idle(Instant::from_micros(7_496))
    );
}

#[test]
fn corrupted_segments_fail_the_checksum() {
    let mut link = LinkConfig::clean(Duration::from_millis(1), 0, 0);
    link.corrupt = 0.1;
    link.duplicate = 0.05;
    let mut net = Network::new(
        Toy::sender(5_000, 100, Duration::from_micros(10)),
        Toy::receiver(),
        link.clone(),
        link,
        3,
    );
    assert!(matches!(
        net.run_for(Duration::from_secs(1)),
        Outcome::Idle(_)
    ));
    let stats = *net.a_to_b.stats();
    assert!(stats.corrupted > 400, "{stats:?}");
    // Every flipped bit was caught, and everything else arrived intact (the toy checks
    // its payload).
    assert_eq!(net.bad_segments, [0, stats.corrupted]);
    assert_eq!(
        net.b.received.len() as u64,
        5_000 + stats.duplicated - stats.corrupted
    );
}

#[test]
fn the_loop_jumps_to_the_next_event() {
    // One segment a second for an hour of virtual time: 3 600 steps, not 3.6 * 10^12.
    let link = LinkConfig::clean(Duration::from_millis(1), 0, 0);
    let mut net = Network::new(
        Toy::sender(3_600, 1, Duration::from_secs(1)),
        Toy::receiver(),
        link.clone(),
        link,
        1,
    );
    let mut steps = 0;
    net.run_until(Instant::from_secs(4_000), |_| {
        steps += 1;
        false
    });
    assert_eq!(net.b.received.len(), 3_600);
    assert!(steps <= 2 * 3_600 + 2, "{steps} steps");
}

#[test]
fn cwnd_trace_keeps_changes_only() {
    let mut trace = CwndTrace::default();
    for (ms, cwnd) in [(0, 10), (1, 10), (2, 20), (3, 20), (4, 10)] {
        trace.record(Instant::from_millis(ms), cwnd);
    }
    let kept: Vec<_> = trace
        .samples
        .iter()
        .map(|&(t, c)| (t.as_millis(), c))
        .collect();
    assert_eq!(kept, [(0, 10), (2, 20), (4, 10)]);
}
