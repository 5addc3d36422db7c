//! The one timer a connection runs at a time (smoltcp's shape) and what its expiry does:
//! retransmission with backoff (RFC 6298 5), zero-window probes (RFC 9293 3.8.6.1),
//! TIME-WAIT (2 × MSL) and an orphaned FIN-WAIT-2's end. Keepalive (RFC 9293 3.8.4) needs
//! no arming: while the timer is idle its deadline follows from the last segment received.
//! The delayed ACK has its own deadline beside them.

use super::{CloseReason, Connection, Counters, State};
use crate::{tcp::congestion::CongestionControl, time::Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    Idle,
    /// Data (or a SYN or FIN) is unacknowledged.
    Retransmit {
        at: Instant,
    },
    /// Data waits on a zero window.
    Persist {
        at: Instant,
    },
    TimeWait {
        at: Instant,
    },
    /// `close` was called and the peer has not sent its FIN.
    FinWait2 {
        at: Instant,
    },
}

impl Connection {
    /// The next instant `handle_timeout` should be called, if any. Call after
    /// `poll_transmit` returned `None` (sending arms timers).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let timer = match self.timer {
            Timer::Idle => self.keepalive_deadline(),
            Timer::Retransmit { at }
            | Timer::Persist { at }
            | Timer::TimeWait { at }
            | Timer::FinWait2 { at } => Some(at),
        };
        match (timer, self.ack_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn keepalive_deadline(&self) -> Option<Instant> {
        let ka = self.config.keepalive?;
        if !matches!(self.state, State::Established | State::CloseWait)
            || self.snd_max != self.snd_una
        {
            return None;
        }
        Some(self.last_recv + ka.idle + ka.interval * self.keepalive_sent)
    }

    /// Does what fell due by `now`.
    pub fn handle_timeout(&mut self, now: Instant, counters: &mut Counters) {
        if self.state == State::Closed {
            return;
        }
        if self.ack_due.is_some_and(|at| at <= now) {
            self.ack_due = None;
            self.ack_now = true;
        }
        match self.timer {
            Timer::Idle if self.keepalive_deadline().is_some_and(|at| at <= now) => {
                self.on_keepalive_timeout()
            }
            Timer::Retransmit { at } if at <= now => self.on_retransmit_timeout(now, counters),
            Timer::Persist { at } if at <= now => {
                self.timer = Timer::Idle;
                self.persist_probe_due = true;
            }
            Timer::TimeWait { at } if at <= now => self.close_with(CloseReason::Normal),
            Timer::FinWait2 { at } if at <= now => self.close_with(CloseReason::TimedOut),
            _ => {}
        }
    }

    fn on_keepalive_timeout(&mut self) {
        let Some(ka) = self.config.keepalive else {
            return;
        };
        if self.keepalive_sent >= ka.probes {
            // Linux resets a connection whose keepalives went unanswered.
            self.rst_pending = Some((self.snd_max, Some(self.rcv_nxt)));
            self.close_with(CloseReason::TimedOut);
            return;
        }
        self.keepalive_sent += 1;
        self.keepalive_due = true;
    }

    fn on_retransmit_timeout(&mut self, now: Instant, counters: &mut Counters) {
        self.timer = Timer::Idle;
        counters.timeouts += 1;
        self.retries += 1;
        let limit = if self.state.is_synchronized() {
            self.config.max_retransmits
        } else {
            self.config.max_syn_retries
        };
        if self.retries > limit {
            log::debug!(
                "tcp {} -> {}: gave up after {} timeouts",
                self.endpoints.local,
                self.endpoints.remote,
                self.retries - 1
            );
            // No RST: the path is probably gone (Linux does the same).
            self.close_with(CloseReason::TimedOut);
            return;
        }
        let flight = self.snd_max.since(self.snd_una);
        if self.state.is_synchronized() {
            self.cc.on_retransmission_timeout(now, flight);
        } else {
            self.syn_timeouts += 1;
        }
        // RFC 6298 5.5: back off; 5.6: restart the timer when the retransmission goes.
        self.rtt.backoff();
        // Karn's rule: nothing sent before now can time a sample.
        self.rtt_probe = None;
        // RFC 6582 4.1 / RFC 6675 5.1: leave recovery; record the highest sequence sent
        // so duplicate ACKs for it cannot start a false fast retransmit.
        self.recovery = None;
        self.recover = self.snd_max;
        self.dupacks = 0;
        self.inflation = 0;
        self.rtx_una = false;
        // RFC 2018 8: "after a retransmit timeout the data sender SHOULD turn off all of
        // the SACKed bits", since the receiver may have reneged.
        self.scoreboard.clear();
        // Go back N: send again from the oldest unacknowledged byte (or the SYN).
        self.snd_nxt = self.snd_una;
    }

    /// The RTO to arm now (backed off).
    pub(super) fn arm_retransmit(&mut self, now: Instant) {
        if !matches!(self.timer, Timer::Retransmit { .. }) {
            self.timer = Timer::Retransmit {
                at: now + self.rtt.rto(),
            };
        }
    }

    pub(super) fn restart_retransmit(&mut self, now: Instant) {
        self.timer = Timer::Retransmit {
            at: now + self.rtt.rto(),
        };
    }

    pub(super) fn enter_time_wait(&mut self, now: Instant) {
        self.set_state(State::TimeWait);
        self.timer = Timer::TimeWait {
            at: now + self.config.msl * 2,
        };
        self.send = crate::tcp::send::SendBuffer::new(0);
    }
}
