//! The worker's slab of connections: a slot per connection, reused through a free list,
//! with a generation so a timer or a table entry that outlived its connection finds
//! nothing. Every way in goes through `slot_mut` (the one generation-checked lookup);
//! `open_slot` is the one way a connection gets a slot and a table entry.

use std::sync::Arc;

use super::{
    ConnRef, ConnTimers, TcpEngine, TcpIoCounter,
    app::{TcpHandler, TcpSession},
    entry::{TcpConnectionSocket, TcpListenerSocket},
    states,
};
use crate::{
    iface::{frame::FrameAddrs, timer::TimerId},
    socket::{
        Socket,
        table::{FourTuple, Protocol, SocketNumber},
    },
    steer::RuleGuard,
    tcp::{Connection, State},
    time::Instant,
};

pub(super) struct Slot {
    pub(super) conn: Option<Connection>,
    pub(super) generation: u32,
    pub(super) number: Option<SocketNumber>,
    pub(super) shared: Option<Arc<TcpConnectionSocket>>,
    pub(super) handler: Option<Arc<dyn TcpHandler>>,
    /// The application's own state for it (`TcpHandler::session`); events go here then.
    pub(super) session: Option<Box<dyn TcpSession>>,
    /// The listener that made it, until it has told that listener how its handshake ended.
    pub(super) listener: Option<SocketNumber>,
    pub(super) timer: Option<TimerId>,
    pub(super) deadline: Option<Instant>,
    pub(super) addrs: FrameAddrs,
    /// The state it is counted under in `by_state`.
    pub(super) counted: Option<State>,
    /// Waiting in `deferred` for TX room.
    pub(super) deferred: bool,
    /// A thread uses it (`tcp_api`): its events bump the shared signal.
    pub(super) api: bool,
    /// The listener whose accept queue it joins once established.
    pub(super) accept_into: Option<Arc<TcpListenerSocket>>,
    /// The steering rule of an active open's local port.
    pub(super) rule: Option<RuleGuard>,
}

impl Slot {
    /// A slot at `generation` that holds no connection yet.
    pub(super) fn empty(generation: u32, addrs: FrameAddrs) -> Self {
        Slot {
            conn: None,
            generation,
            number: None,
            shared: None,
            handler: None,
            session: None,
            listener: None,
            timer: None,
            deadline: None,
            addrs,
            counted: None,
            deferred: false,
            api: false,
            accept_into: None,
            rule: None,
        }
    }
}

/// The slot `at` names in `slots`, if it still holds that generation (for callers that
/// borrow other fields of the engine beside it).
pub(super) fn slot_in(slots: &mut [Slot], at: ConnRef) -> Option<&mut Slot> {
    slots
        .get_mut(at.slot as usize)
        .filter(|s| s.generation == at.generation)
}

impl TcpEngine {
    /// The slot `at` names, if it still holds that generation.
    pub(super) fn slot_mut(&mut self, at: ConnRef) -> Option<&mut Slot> {
        slot_in(&mut self.slots, at)
    }

    /// Gives `conn` a slot and a table entry; `fill` completes the slot (its application,
    /// listener, rule …). None, counted, when the table refused the four-tuple.
    pub(super) fn open_slot(
        &mut self,
        conn: Connection,
        addrs: FrameAddrs,
        fill: impl FnOnce(Slot) -> Slot,
    ) -> Option<(ConnRef, SocketNumber)> {
        let index = self.alloc_slot(addrs);
        let generation = self.slots[index as usize].generation;
        let shared = Arc::new(TcpConnectionSocket::new(self.worker, index, generation));
        let tuple = FourTuple::connected(Protocol::Tcp, addrs.src, addrs.dst);
        let number = match self
            .host
            .table
            .insert(tuple, |_| Socket::TcpConnection(shared.clone()))
        {
            Ok(n) => n,
            Err(e) => {
                log::debug!("tcp {} -> {}: not opened: {e}", addrs.src, addrs.dst);
                self.io.bump(TcpIoCounter::DropTableFull);
                self.free.push(index);
                return None;
            }
        };
        self.slots[index as usize] = fill(Slot {
            conn: Some(conn),
            number: Some(number),
            shared: Some(shared),
            ..Slot::empty(generation, addrs)
        });
        self.io.bump(TcpIoCounter::ConnectionsOpened);
        Some((
            ConnRef {
                slot: index,
                generation,
            },
            number,
        ))
    }

    /// A free slot (a new one if none is free).
    fn alloc_slot(&mut self, addrs: FrameAddrs) -> u32 {
        match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::empty(0, addrs));
                (self.slots.len() - 1) as u32
            }
        }
    }

    /// Frees a connection: its table entry, its timer, its slot.
    pub(super) fn release(&mut self, at: ConnRef, timers: &mut dyn ConnTimers) {
        let Some(slot) = slot_in(&mut self.slots, at) else {
            return;
        };
        if slot.conn.is_none() {
            return;
        }
        if let Some(id) = slot.timer.take() {
            timers.cancel(id);
        }
        if let Some(number) = slot.number.take() {
            let _ = self.host.table.remove(number);
        }
        if let Some(state) = slot.counted.take() {
            self.by_state[states::state_index(state)] -= 1;
        }
        if let Some(conn) = slot.conn.take()
            && let Some(number) = slot.listener.take()
            && let Some(l) = self.listeners.iter_mut().find(|l| l.number == number)
        {
            l.state.on_half_open_closed(conn.endpoints());
        }
        if let Some(shared) = slot.shared.take()
            && slot.api
        {
            shared.signal.notify();
        }
        slot.api = false;
        slot.accept_into = None;
        slot.rule = None;
        slot.handler = None;
        slot.session = None;
        slot.deadline = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(at.slot);
        self.io.bump(TcpIoCounter::ConnectionsClosed);
    }
}
