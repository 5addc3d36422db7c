//! After every interaction with a connection — a segment, a timer, an application's call —
//! `settle` brings the rest up to date in four steps: the connection's events to its
//! application (`deliver_events`), what it has to send into TX frames (`send_output`), its
//! one timer re-armed (`rearm`), and the snapshot others read published (`publish_slot`);
//! then the slot is freed once the connection is closed.

use super::{
    ConnRef, ConnTimers, TcpEngine, TcpIoCounter,
    listeners::WorkerListener,
    slots::{Slot, slot_in},
    states,
};
use crate::{
    iface::frame::{self, TCP_HEADROOM},
    iface::timer::TimerId,
    phy::{FrameSink, TxResult},
    tcp::{self, Connection, Event, State},
    time::Instant,
};

impl TcpEngine {
    /// The connection's timer fired.
    pub fn on_timer(
        &mut self,
        now: Instant,
        at: ConnRef,
        id: TimerId,
        timers: &mut dyn ConnTimers,
        tx: &mut dyn FrameSink,
    ) {
        let Some(slot) = slot_in(&mut self.slots, at) else {
            return;
        };
        if slot.timer != Some(id) {
            return; // a timer of a connection freed since, or replaced
        }
        slot.timer = None;
        slot.deadline = None;
        let scratch = &mut self.scratch;
        if let Some(conn) = slot.conn.as_mut() {
            conn.handle_timeout(now, &mut self.core);
            if let Some(session) = slot.session.as_mut()
                && session.deadline().is_some_and(|d| d <= now)
            {
                session.on_timeout(now, conn, scratch);
            }
        }
        self.settle(now, at, timers, tx);
    }

    /// Gives connections that waited for TX room another turn.
    pub fn poll_deferred(
        &mut self,
        now: Instant,
        timers: &mut dyn ConnTimers,
        tx: &mut dyn FrameSink,
    ) {
        // The two lists trade places: what `settle` defers again goes into the spare one,
        // and neither allocation is ever dropped.
        let spare = std::mem::take(&mut self.deferred_spare);
        let mut list = std::mem::replace(&mut self.deferred, spare);
        for at in list.drain(..) {
            if let Some(slot) = self.slot_mut(at) {
                slot.deferred = false;
                self.settle(now, at, timers, tx);
            }
        }
        self.deferred_spare = list;
    }

    /// After any interaction: events to the application, segments out, the timer re-armed,
    /// the snapshot published; the slot freed once the connection is closed.
    pub(super) fn settle(
        &mut self,
        now: Instant,
        at: ConnRef,
        timers: &mut dyn ConnTimers,
        tx: &mut dyn FrameSink,
    ) {
        let Self {
            slots,
            listeners,
            core,
            io,
            scratch,
            deferred,
            by_state,
            max_payload,
            max_time_wait,
            ..
        } = self;
        let Some(slot) = slot_in(slots, at).filter(|s| s.conn.is_some()) else {
            return;
        };
        let happened = deliver_events(slot, listeners, core, scratch, now);
        if !send_output(slot, *max_payload, core, io, tx, now) && !slot.deferred {
            slot.deferred = true;
            deferred.push(at);
        }
        rearm(slot, at, timers);
        let state = publish_slot(slot, by_state, happened);
        let overflow = state == State::TimeWait
            && by_state[states::state_index(State::TimeWait)] > *max_time_wait;
        let closed = slot.conn.as_ref().is_some_and(Connection::is_closed);
        if (closed || overflow) && !slot.deferred {
            if overflow {
                io.bump(TcpIoCounter::TimeWaitOverflow);
            }
            self.release(at, timers);
        }
    }
}

/// Hands the connection's events to its application (and its listener, while the handshake
/// is its business). The application's calls may raise events again (a read opening the
/// window does not; an abort does), so loop until none is left. True if any happened.
fn deliver_events(
    slot: &mut Slot,
    listeners: &mut [WorkerListener],
    core: &mut tcp::Counters,
    scratch: &mut [u8],
    now: Instant,
) -> bool {
    let Some(conn) = slot.conn.as_mut() else {
        return false;
    };
    let mut happened = false;
    while let Some(event) = conn.poll_event() {
        happened = true;
        match event {
            Event::Connected => {
                if let Some(l) = slot.accept_into.take()
                    && let (Some(queue), Some(number)) = (&l.accepted, slot.number)
                {
                    if queue.push(number).is_ok() {
                        l.signal.notify();
                    } else {
                        // Filled since its SYN was taken: reset, as Linux does.
                        core.accept_queue_full += 1;
                        conn.abort();
                    }
                }
                if let Some(number) = slot.listener.take()
                    && let Some(l) = listeners.iter_mut().find(|l| l.number == number)
                {
                    l.state.on_established(conn.endpoints());
                }
            }
            Event::Closed(_) => {
                if let Some(number) = slot.listener.take()
                    && let Some(l) = listeners.iter_mut().find(|l| l.number == number)
                {
                    l.state.on_half_open_closed(conn.endpoints());
                }
            }
            _ => {}
        }
        if let Some(session) = slot.session.as_mut() {
            session.on_event(now, conn, event, scratch);
        } else if let Some(handler) = &slot.handler {
            handler.on_event(conn, event, scratch);
        }
    }
    happened
}

/// Writes what the connection has to send into TX frames, as far as the batch's budget
/// goes: what the application wrote goes out in the same batch. False if it must wait for
/// TX room (the caller defers it).
fn send_output(
    slot: &mut Slot,
    max_payload: usize,
    core: &mut tcp::Counters,
    io: &mut crate::counters::Counters<TcpIoCounter>,
    tx: &mut dyn FrameSink,
    now: Instant,
) -> bool {
    let addrs = slot.addrs;
    let Some(conn) = slot.conn.as_mut() else {
        return true;
    };
    loop {
        if tx.room() == 0 {
            return false;
        }
        let mut built = false;
        let sent = tx.send(&mut |buf: &mut [u8]| {
            let end = buf.len().min(TCP_HEADROOM + max_payload);
            let t = conn.poll_transmit(now, buf.get_mut(TCP_HEADROOM..end)?, core)?;
            built = true;
            frame::finish_tcp(buf, &addrs, &t)
        });
        match sent {
            TxResult::Sent => {}
            TxResult::Declined if built => io.bump(TcpIoCounter::DropTx),
            TxResult::Declined => return true,
            TxResult::Full => {
                io.bump(TcpIoCounter::TxDeferred);
                return false;
            }
        }
    }
}

/// Re-arms the slot's one timer for the earlier of the connection's and its session's
/// deadlines.
fn rearm(slot: &mut Slot, at: ConnRef, timers: &mut dyn ConnTimers) {
    let Some(conn) = slot.conn.as_ref() else {
        return;
    };
    let deadline = match (
        conn.poll_timeout(),
        slot.session.as_ref().and_then(|s| s.deadline()),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if deadline != slot.deadline {
        slot.timer = match (deadline, slot.timer) {
            (Some(d), Some(id)) if timers.reset(id, d) => Some(id),
            (Some(d), _) => Some(timers.arm(d, at)),
            (None, Some(id)) => {
                timers.cancel(id);
                None
            }
            (None, None) => None,
        };
        slot.deadline = deadline;
    }
}

/// Counts the connection under its state and publishes its snapshot (waking a thread that
/// uses it if anything happened). Returns the state.
fn publish_slot(slot: &mut Slot, by_state: &mut [u64], happened: bool) -> State {
    let Some(conn) = slot.conn.as_ref() else {
        return State::Closed;
    };
    let state = conn.state();
    if slot.counted != Some(state) {
        if let Some(old) = slot.counted {
            by_state[states::state_index(old)] -= 1;
        }
        by_state[states::state_index(state)] += 1;
        slot.counted = Some(state);
    }
    if let Some(shared) = &slot.shared {
        shared.publish(&conn.info());
        if slot.api && happened {
            shared.signal.notify();
        }
    }
    state
}
