//! RFC 9293's eleven states as the socket layer shows them: the one table of each state's
//! index (the order of the connections-by-state gauges and the published snapshot), its
//! name (`fastpath sockets`, as `ss` names it) and its gauge.

use crate::tcp::State;

/// Each state with its name and gauge, in index order (`state_index`).
pub const STATES: [(State, &str, &str); 11] = [
    (State::Closed, "closed", "tcp_state_closed"),
    (State::Listen, "listen", "tcp_state_listen"),
    (State::SynSent, "syn-sent", "tcp_state_syn_sent"),
    (State::SynReceived, "syn-received", "tcp_state_syn_received"),
    (State::Established, "established", "tcp_state_established"),
    (State::FinWait1, "fin-wait-1", "tcp_state_fin_wait_1"),
    (State::FinWait2, "fin-wait-2", "tcp_state_fin_wait_2"),
    (State::CloseWait, "close-wait", "tcp_state_close_wait"),
    (State::Closing, "closing", "tcp_state_closing"),
    (State::LastAck, "last-ack", "tcp_state_last_ack"),
    (State::TimeWait, "time-wait", "tcp_state_time_wait"),
];

/// The state's row in `STATES`: its place in RFC 9293's list, which `State` declares in
/// the same order (the test below holds the two together). O(1): `settle` asks on every
/// interaction.
#[inline]
pub fn state_index(state: State) -> usize {
    state as usize
}

/// The state at `index` (out of range: the last).
pub fn state_at(index: usize) -> State {
    STATES[index.min(STATES.len() - 1)].0
}

/// The state as `fastpath sockets` and `ss` name it.
pub fn state_name(state: State) -> &'static str {
    STATES[state_index(state)].1
}

/// The names of the connections-by-state gauges, in index order.
pub fn gauge_names() -> impl Iterator<Item = &'static str> {
    STATES.iter().map(|(_, _, gauge)| *gauge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_one_row_and_round_trips() {
        for (i, (state, name, gauge)) in STATES.iter().enumerate() {
            assert_eq!(state_index(*state), i);
            assert_eq!(state_at(i), *state);
            assert_eq!(state_name(*state), *name);
            assert_eq!(*gauge, format!("tcp_state_{}", name.replace('-', "_")));
        }
    }
}
