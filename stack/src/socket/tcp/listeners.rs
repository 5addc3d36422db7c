//! Each listener's per-worker state (a `tcp::Listener`: SYN queue counts, cookies, keyed
//! as every worker's copy is, so a SYN may land on any worker) and the passive opens it
//! makes.

use std::{
    net::{SocketAddr, SocketAddrV4},
    sync::Arc,
};

use super::{ConnTimers, TcpEngine, entry::TcpListenerSocket, slots::Slot};
use crate::{
    iface::frame::FrameAddrs,
    phy::FrameSink,
    socket::table::SocketNumber,
    tcp::{Connection, Endpoints, Listener, ListenerAction, Segment, State},
    time::Instant,
};

pub(super) struct WorkerListener {
    pub(super) number: SocketNumber,
    pub(super) state: Listener,
}

impl TcpEngine {
    #[expect(
        clippy::too_many_arguments,
        reason = "the segment's whole context; a struct for one call site adds nothing"
    )]
    pub(super) fn on_listener(
        &mut self,
        now: Instant,
        number: SocketNumber,
        bound: SocketAddrV4,
        socket: &Arc<TcpListenerSocket>,
        segment: &Segment<'_>,
        addrs: FrameAddrs,
        timers: &mut dyn ConnTimers,
        tx: &mut dyn FrameSink,
    ) {
        let index = self.listener_index(number, bound, socket);
        let endpoints = Endpoints {
            local: SocketAddr::V4(addrs.src),
            remote: SocketAddr::V4(addrs.dst),
        };
        // The one accept queue is the socket's (a thread's `tcp_accept` takes from it); a
        // listener served on the workers hands each connection to its application at once.
        let accept_full = socket.accepted.as_ref().is_some_and(|q| q.is_full());
        let action = self.listeners[index].state.handle_segment(
            now,
            endpoints,
            segment,
            accept_full,
            &mut self.core,
        );
        match action {
            ListenerAction::Ignore => {}
            ListenerAction::Reply(t) => {
                self.send_control(&addrs, &t.header, tx);
            }
            ListenerAction::NewConnection(conn) => {
                self.open(now, conn, number, socket, addrs, timers, tx)
            }
        }
    }

    /// This worker's state for listener `number`, made on its first SYN here.
    fn listener_index(
        &mut self,
        number: SocketNumber,
        bound: SocketAddrV4,
        socket: &TcpListenerSocket,
    ) -> usize {
        if let Some(i) = self.listeners.iter().position(|l| l.number == number) {
            return i;
        }
        // Listeners closed since are forgotten here (rarely: a new listener is rare).
        let table = &self.host.table;
        self.listeners.retain(|l| table.get(l.number).is_ok());
        self.listeners.push(WorkerListener {
            number,
            state: Listener::new(
                socket.config.clone(),
                SocketAddr::V4(bound),
                socket.backlog,
                socket.keys.clone(),
            ),
        });
        self.listeners.len() - 1
    }

    /// A passive open: the listener's new connection gets a slot, its application and a
    /// first `settle` (the SYN-ACK goes out).
    #[expect(
        clippy::too_many_arguments,
        reason = "the new connection's whole context"
    )]
    fn open(
        &mut self,
        now: Instant,
        conn: Connection,
        listener: SocketNumber,
        socket: &Arc<TcpListenerSocket>,
        addrs: FrameAddrs,
        timers: &mut dyn ConnTimers,
        tx: &mut dyn FrameSink,
    ) {
        let endpoints = conn.endpoints();
        // A cookie's connection is established already: it goes to the application (or the
        // accept queue) at once, and never was in the listener's SYN queue.
        let established = conn.state() == State::Established;
        let worker = self.worker;
        let api = socket.handler.is_none();
        let opened = self.open_slot(conn, addrs, |slot| Slot {
            handler: socket.handler.clone(),
            session: socket.handler.as_ref().and_then(|h| h.session(now, worker)),
            api,
            accept_into: api.then(|| socket.clone()),
            listener: (!established).then_some(listener),
            ..slot
        });
        if !established
            && opened.is_none()
            && let Some(l) = self.listeners.iter_mut().find(|l| l.number == listener)
        {
            l.state.on_half_open_closed(endpoints);
        }
        if let Some((at, _)) = opened {
            self.settle(now, at, timers, tx);
        }
    }
}
