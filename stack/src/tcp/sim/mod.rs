//! A deterministic network simulator: two sans-IO endpoints joined by two seeded links
//! (`link`) in virtual time, after smoltcp's `tests/netsim.rs`. Every segment crosses
//! the wire as bytes — emitted with its checksum, parsed and verified on arrival — so a
//! corrupted segment is dropped exactly as a checksum failure would drop it.
//!
//! The loop never busy-steps: it jumps to the earliest event (a segment arriving or an
//! endpoint's deadline), handles it, lets the caller act (write, read, sample cwnd), and
//! lets both endpoints transmit. A seed replays the same run bit for bit.

use std::time::Duration;

use crate::{
    time::Instant,
    wire::{
        ipv4::Ipv4Addr,
        tcp::{TcpPacket, TcpRepr},
    },
};

pub mod link;
pub mod tcp;

pub use link::{Link, LinkConfig, LinkStats, Outage};

/// What the simulator needs of an endpoint: the sans-IO shape of quinn-proto and of
/// `tcp::connection::Connection`.
pub trait Endpoint {
    /// A segment arrived (its checksum was good).
    fn handle_segment(&mut self, now: Instant, header: &TcpRepr, payload: &[u8]);
    /// The next segment to send, its payload written at the start of `payload`; called
    /// until `None`.
    fn poll_transmit(&mut self, now: Instant, payload: &mut [u8]) -> Option<(TcpRepr, usize)>;
    /// When `handle_timeout` is next due.
    fn poll_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
}

/// Which endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// The largest TCP segment the simulator carries (a 64 KiB IP datagram's worth).
const MAX_SEGMENT: usize = 65_535;

/// More events than this at one instant is a livelock (an endpoint whose deadline never
/// moves past now, or two endpoints answering each other in zero time forever).
const MAX_EVENTS_PER_INSTANT: u32 = 1_000_000;

/// Two endpoints and the path between them.
pub struct Network<A: Endpoint, B: Endpoint> {
    pub a: A,
    pub b: B,
    pub a_addr: Ipv4Addr,
    pub b_addr: Ipv4Addr,
    /// A's segments towards B, and B's towards A.
    pub a_to_b: Link,
    pub b_to_a: Link,
    now: Instant,
    /// Segments each side dropped for a bad checksum (or, never expected, for a header
    /// that would not parse).
    pub bad_segments: [u64; 2],
    events_now: u32,
    scratch: Vec<u8>,
}

/// How a `run_until` ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The caller's condition held, at this time.
    Done(Instant),
    /// The deadline passed first.
    TimedOut(Instant),
    /// Nothing left to happen: no segment on the wire, no deadline.
    Idle(Instant),
}

impl<A: Endpoint, B: Endpoint> Network<A, B> {
    /// A network at time zero. `seed` seeds both links (each its own stream).
    pub fn new(a: A, b: B, a_to_b: LinkConfig, b_to_a: LinkConfig, seed: u64) -> Self {
        // Two streams from one seed: a golden-ratio step keeps them unrelated.
        let seed_b = seed ^ 0x9e37_79b9_7f4a_7c15;
        Self {
            a,
            b,
            a_addr: [198, 18, 0, 1],
            b_addr: [198, 18, 0, 2],
            a_to_b: Link::new(a_to_b, seed),
            b_to_a: Link::new(b_to_a, seed_b),
            now: Instant::ZERO,
            bad_segments: [0; 2],
            events_now: 0,
            scratch: vec![0; MAX_SEGMENT],
        }
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// Lets both endpoints send everything they have now.
    pub fn flush(&mut self) {
        let now = self.now;
        transmit(
            &mut self.a,
            &mut self.a_to_b,
            now,
            self.a_addr,
            self.b_addr,
            &mut self.scratch,
        );
        transmit(
            &mut self.b,
            &mut self.b_to_a,
            now,
            self.b_addr,
            self.a_addr,
            &mut self.scratch,
        );
    }

    /// The earliest pending event, if any.
    pub fn next_event(&self) -> Option<Instant> {
        [
            self.a_to_b.next_arrival(),
            self.b_to_a.next_arrival(),
            self.a.poll_timeout(),
            self.b.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Advances to the next event (not past `deadline`) and handles everything due then:
    /// arrivals in arrival order, then deadlines. Returns false when nothing is due by
    /// `deadline`.
    pub fn step(&mut self, deadline: Instant) -> bool {
        let Some(next) = self.next_event() else {
            return false;
        };
        if next > deadline {
            return false;
        }
        // A deadline already past is due now; time never runs backwards.
        let next = next.max(self.now);
        if next == self.now {
            self.events_now += 1;
            assert!(
                self.events_now < MAX_EVENTS_PER_INSTANT,
                "livelock at {next:?}: events keep falling due without time passing"
            );
        } else {
            self.events_now = 0;
        }
        self.now = next;
        let now = self.now;
        while let Some(bytes) = self.a_to_b.receive(now) {
            let ok = deliver(&mut self.b, now, &bytes, self.a_addr, self.b_addr);
            self.bad_segments[1] += u64::from(!ok);
        }
        while let Some(bytes) = self.b_to_a.receive(now) {
            let ok = deliver(&mut self.a, now, &bytes, self.b_addr, self.a_addr);
            self.bad_segments[0] += u64::from(!ok);
        }
        if self.a.poll_timeout().is_some_and(|t| t <= now) {
            self.a.handle_timeout(now);
        }
        if self.b.poll_timeout().is_some_and(|t| t <= now) {
            self.b.handle_timeout(now);
        }
        true
    }

    /// Runs until `done` holds (checked after every event, with the network to act on:
    /// write, read, sample), the deadline passes, or nothing is left to happen.
    pub fn run_until(
        &mut self,
        deadline: Instant,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> Outcome {
        loop {
            if done(self) {
                return Outcome::Done(self.now);
            }
            self.flush();
            if !self.step(deadline) {
                return if self.next_event().is_some() {
                    Outcome::TimedOut(self.now)
                } else {
                    Outcome::Idle(self.now)
                };
            }
        }
    }

    /// Runs for `duration` of virtual time whatever happens.
    pub fn run_for(&mut self, duration: Duration) -> Outcome {
        let deadline = self.now + duration;
        let outcome = self.run_until(deadline, |_| false);
        self.now = self.now.max(deadline);
        outcome
    }
}

fn transmit(
    endpoint: &mut impl Endpoint,
    link: &mut Link,
    now: Instant,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    scratch: &mut [u8],
) {
    while let Some((header, payload_len)) = endpoint.poll_transmit(now, scratch) {
        let hlen = header.header_len();
        let mut segment = vec![0; hlen + payload_len];
        segment[hlen..].copy_from_slice(&scratch[..payload_len]);
        let len = header
            .emit(&mut segment, payload_len, src, dst)
            .expect("an endpoint emitted a segment the wire format cannot carry");
        segment.truncate(len);
        link.send(now, segment);
    }
}

/// Parses and checks a segment as the receiving stack would; false if it was dropped.
fn deliver(
    endpoint: &mut impl Endpoint,
    now: Instant,
    bytes: &[u8],
    src: Ipv4Addr,
    dst: Ipv4Addr,
) -> bool {
    let Ok(packet) = TcpPacket::new_checked(bytes) else {
        return false;
    };
    let Ok(header) = TcpRepr::parse(&packet, src, dst) else {
        return false;
    };
    endpoint.handle_segment(now, &header, packet.payload());
    true
}

/// (time, cwnd in bytes) samples of one sender, for plots: a sample is kept only when
/// the window changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CwndTrace {
    pub samples: Vec<(Instant, u32)>,
}

impl CwndTrace {
    pub fn record(&mut self, now: Instant, cwnd: u32) {
        if self.samples.last().is_none_or(|&(_, last)| last != cwnd) {
            self.samples.push((now, cwnd));
        }
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod transfer;
