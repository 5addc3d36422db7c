//! `Counters`: what happened to segments, on the listener and on every connection, one
//! `u64` per event and one per reason a segment was dropped.

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// What happened to segments, summed per worker for `fastpath stats`. Every drop
        /// has a counter.
        #[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
        pub struct Counters {
            $($(#[$doc])* pub $name: u64,)*
        }

        impl Counters {
            /// Adds `other` into `self` (a worker's threads, or connections).
            pub fn add(&mut self, other: &Counters) {
                $(self.$name = self.$name.wrapping_add(other.$name);)*
            }

            /// Every counter's name, in the order `values` gives them (for publishing).
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];

            /// Every counter's value, in the order of `NAMES`.
            pub fn values(&self) -> impl Iterator<Item = u64> + '_ {
                [$(self.$name),*].into_iter()
            }
        }
    };
}

counters! {
    segments_in,
    segments_out,
    /// Segments sent again (RTO, fast retransmit, SACK holes, SYN and FIN retries).
    retransmits,
    /// Fast retransmits (entries into loss recovery by duplicate ACKs or SACK).
    fast_retransmits,
    /// Retransmission timer expirations.
    timeouts,
    rst_sent,
    rst_received,
    challenge_acks,
    challenge_acks_suppressed,
    syn_cookies_sent,
    syn_cookies_valid,
    syn_cookies_invalid,
    dsack_received,
    /// Dropped: PAWS (an old timestamp, RFC 7323 5).
    paws_rejected,
    /// Dropped: outside the receive window (RFC 9293 3.10.7.4's acceptability test).
    out_of_window,
    /// Dropped: an ACK for data never sent or too old (RFC 5961 5.2).
    bad_ack,
    /// Dropped: an out-of-order segment beyond `max_out_of_order` or the range bound.
    ooo_overflow,
    /// Dropped: payload past the window we advertised.
    recv_buffer_full,
    /// A SYN answered with a cookie instead of a SYN-RECEIVED connection.
    syn_queue_full,
    /// A SYN or cookie ACK dropped, or a handshake just completed reset, because the
    /// owner's accept queue was full.
    accept_queue_full,
    /// Dropped: a segment missing the timestamp both sides agreed on, or with flags that
    /// make no sense (SYN with RST).
    bad_options,
    /// Dropped: a RST that matched no acceptable sequence (RFC 5961 3.2, out of window).
    rst_ignored,
    /// Segments for a listener that were neither SYN nor a valid cookie ACK, answered
    /// with RST.
    listen_rst,
    /// Orphaned connections (closed by the application) given up while probing a zero
    /// window (Linux `tcp_orphan_retries`): closed as TimedOut, with a RST.
    orphan_probes_exhausted,
}
