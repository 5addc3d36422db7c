//! One load of the generator: what it sends when, what comes back, and what that adds up
//! to over the measured window.

use std::{
    collections::VecDeque,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::bail;
use fastpath::phy::xsk::KeptFrame;
use hdrhistogram::Histogram;

use super::{
    BATCH, DRAIN, Edge, LoadPlan, Pacing, SPIN_BELOW, SPIN_SPACING, XdpGenerator, XdpLoadResult,
    frame::{parse_reply, stamp},
    schedule::Schedule,
};
use crate::generator::{new_histogram, thread_cpu_time};

/// The state of one run.
pub(super) struct Run {
    pub(super) free: VecDeque<KeptFrame>,
    schedule: Option<Schedule>,
    sleep: bool,
    /// Sequence number of the run's first request (its schedule's request 0).
    base: u64,
    start_ns: u64,
    window_open_ns: u64,
    window_close_ns: u64,
    /// The window's requests: [first, end); `end` is known once the window has closed
    /// (open loop: from the schedule at once).
    first: u64,
    end: u64,
    seen: Vec<u64>,
    received: u64,
    duplicates: u64,
    foreign: u64,
    histogram: Histogram<u64>,
    batch: Vec<KeptFrame>,
}

impl Run {
    pub(super) fn new(generator: &XdpGenerator, plan: &LoadPlan) -> Self {
        let spacing = match plan.pacing {
            Pacing::Spin => SPIN_SPACING,
            Pacing::Sleep { spacing_us } => Duration::from_micros(spacing_us.into()),
        };
        let jitter = matches!(plan.pacing, Pacing::Sleep { .. });
        let schedule = plan
            .rate
            .map(|rate| Schedule::for_rate(rate, spacing, jitter));
        let base = generator.next_seq;
        let start_ns = generator.now_ns();
        let window_open_ns = start_ns + plan.warmup.as_nanos() as u64;
        let window_close_ns = window_open_ns + plan.duration.as_nanos() as u64;
        let (first, end, capacity) = match schedule {
            Some(s) => {
                let first = base + s.first_at_or_after(window_open_ns - start_ns);
                let end = base + s.first_at_or_after(window_close_ns - start_ns);
                (first, end, end - first)
            }
            // As fast as possible: the window's range is known as it passes; room for
            // 20 M requests a second.
            None => (
                u64::MAX,
                u64::MAX,
                plan.duration.as_secs_f64() as u64 * 20_000_000 + 1,
            ),
        };
        Self {
            free: generator.frames.iter().copied().collect(),
            schedule,
            sleep: matches!(plan.pacing, Pacing::Sleep { .. }),
            base,
            start_ns,
            window_open_ns,
            window_close_ns,
            first,
            end,
            seen: vec![0; capacity.div_ceil(64) as usize + 1],
            received: 0,
            duplicates: 0,
            foreign: 0,
            histogram: new_histogram(),
            batch: Vec::with_capacity(BATCH),
        }
    }

    pub(super) fn drive(
        &mut self,
        generator: &mut XdpGenerator,
        stop: &AtomicBool,
        edge: &mut dyn FnMut(Edge),
    ) -> anyhow::Result<XdpLoadResult> {
        let mut window_open = false;
        let mut cpu_at_open = Duration::ZERO;
        let mut sent_in_window = 0u64;
        let (mut turns, mut sleeps) = (0u64, 0u64);
        let mut iterations = 0u32;
        loop {
            iterations = iterations.wrapping_add(1);
            if iterations.is_multiple_of(256) && stop.load(Ordering::Relaxed) {
                bail!("interrupted");
            }
            let now = generator.now_ns();
            if !window_open && now >= self.window_open_ns {
                window_open = true;
                if self.schedule.is_none() {
                    self.first = generator.next_seq;
                }
                cpu_at_open = thread_cpu_time();
                edge(Edge::Open);
            }
            if now >= self.window_close_ns {
                break;
            }
            self.reap(generator);
            let received = self.receive(generator, now);
            let sent = self.send(generator, now);
            if window_open {
                sent_in_window += sent as u64;
                turns += 1;
            }
            let kicked = generator.socket.kick_tx();
            if received > 0 || sent > 0 || kicked {
                continue;
            }
            // Nothing to do now: sleep until the next burst or a reply, whichever is first.
            if let Some(s) = self.schedule.filter(|_| self.sleep) {
                let next = self.start_ns + s.intended(generator.next_seq - self.base);
                let gap = Duration::from_nanos(next.saturating_sub(generator.now_ns()));
                if gap >= SPIN_BELOW && !self.free.is_empty() {
                    generator
                        .socket
                        .wait_readable(gap.min(Duration::from_millis(1)), None);
                    sleeps += u64::from(window_open);
                }
            }
        }
        let cpu_time = thread_cpu_time().saturating_sub(cpu_at_open);
        edge(Edge::Close);
        let elapsed = Duration::from_nanos(self.window_close_ns - self.window_open_ns);
        let sent = match self.schedule {
            Some(_) => {
                // Requests of the window that left (those scheduled after it did not).
                generator.next_seq.min(self.end).saturating_sub(self.first)
            }
            None => {
                self.end = generator.next_seq;
                sent_in_window
            }
        };
        let offered = match self.schedule {
            Some(_) => self.end - self.first,
            None => sent,
        };
        // Replies still in flight are not losses: wait for them a moment.
        let drain_until = generator.now_ns() + DRAIN.as_nanos() as u64;
        while generator.now_ns() < drain_until && self.received < sent {
            self.reap(generator);
            if self.receive(generator, generator.now_ns()) == 0 {
                generator
                    .socket
                    .wait_readable(Duration::from_millis(1), None);
            }
        }
        Ok(XdpLoadResult {
            offered,
            sent,
            received: self.received,
            duplicates: self.duplicates,
            foreign: self.foreign,
            generator_rx_dropped: 0,
            elapsed,
            histogram: std::mem::replace(&mut self.histogram, new_histogram()),
            cpu_time,
            turns,
            sleeps,
        })
    }

    /// Takes back the kept frames the kernel has sent and gives the fill ring its frames.
    fn reap(&mut self, generator: &mut XdpGenerator) {
        generator.socket.complete(u32::MAX);
        generator.socket.take_returned(&mut self.free);
        generator.socket.refill();
    }

    /// Takes one batch of replies; returns how many frames came in.
    fn receive(&mut self, generator: &mut XdpGenerator, now: u64) -> u32 {
        let (server_port, flows) = (generator.config.server_port, generator.config.flows);
        let batch = generator.socket.receive(BATCH as u32, |frame, len, _| {
            match parse_reply(&frame[..len], server_port, flows) {
                Some((seq, time)) => self.record(seq, time, now),
                None => self.foreign += 1,
            }
            None
        });
        batch.received
    }

    fn record(&mut self, seq: u64, time: u64, now: u64) {
        if seq < self.first
            || seq
                >= self
                    .end
                    .min(self.first.saturating_add(self.seen.len() as u64 * 64))
        {
            // Warm-up, an earlier run, or after the window: not counted.
            return;
        }
        let i = (seq - self.first) as usize;
        let (word, bit) = (i / 64, 1u64 << (i % 64));
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[word] |= bit;
        self.received += 1;
        self.histogram
            .saturating_record(now.saturating_sub(time).max(1));
    }

    /// Sends what is due (open loop) or what the free frames allow; returns how many left.
    fn send(&mut self, generator: &mut XdpGenerator, now: u64) -> usize {
        let want = match self.schedule {
            Some(s) => {
                let due = self.base + s.due(now - self.start_ns);
                due.saturating_sub(generator.next_seq)
            }
            None => u64::MAX,
        };
        let n = (want.min(BATCH as u64) as usize).min(self.free.len());
        if n == 0 {
            return 0;
        }
        self.batch.clear();
        self.batch.extend(self.free.drain(..n));
        let XdpGenerator {
            socket,
            template_of,
            frame_len,
            next_seq,
            ..
        } = generator;
        let (schedule, base, start_ns) = (self.schedule, self.base, self.start_ns);
        let sent = socket.send_kept(&self.batch, |frame, buf| {
            let seq = *next_seq;
            *next_seq += 1;
            let time = match schedule {
                Some(s) => start_ns + s.intended(seq - base),
                None => now,
            };
            if let Some(template) = template_of[frame.index() as usize] {
                stamp(buf, template, seq, time);
            }
            *frame_len
        });
        // What the ring had no room for goes back to the front, in order.
        for &frame in self.batch[sent..].iter().rev() {
            self.free.push_front(frame);
        }
        sent
    }
}
