//! A listening socket (RFC 9293 3.10.1 passive OPEN, 3.10.7.2 LISTEN): SYNs become
//! connections in SYN-RECEIVED while the SYN queue (half-open connections, bounded by the
//! backlog) has room, and stateless SYN cookies (RFC 4987 3.6) when it has none.
//!
//! The listener owns no connection: it hands each new one to its owner, which keeps it in
//! its own table and reports back when a connection it got in SYN-RECEIVED becomes
//! established or dies, so the SYN queue's count stays true. The accept queue is the
//! owner's, not the listener's (state kept once): the owner says whether it is full with
//! each segment, and while it is, SYNs and cookie ACKs are dropped and counted, as Linux
//! does (the application is behind; the client will retry).

use std::net::SocketAddr;

use crate::{
    tcp::{
        connection::{Connection, Counters, Endpoints, Segment, TcpConfig, Transmit},
        isn::{self, CookieParams, IsnKeys},
        options,
        seq::SeqNumber,
    },
    time::Instant,
    wire::tcp::{TcpOptions, TcpRepr, flags},
};

/// What the worker should do with a segment that reached the listener.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "the worker moves a new connection straight into its table; a Box would cost an allocation per SYN"
)]
pub enum ListenerAction {
    /// Nothing (dropped; counted where it is a drop).
    Ignore,
    /// Send this header-only segment (a RST, or a cookie SYN-ACK).
    Reply(Transmit),
    /// A new connection for the worker's table. In SYN-RECEIVED (its SYN-ACK comes out of
    /// `poll_transmit`; report its fate with `on_established` / `on_half_open_closed`), or
    /// ESTABLISHED from a valid cookie (the owner queues it for the application at once).
    NewConnection(Connection),
}

#[derive(Debug)]
pub struct Listener {
    config: TcpConfig,
    local: SocketAddr,
    backlog: usize,
    keys: IsnKeys,
    half_open: usize,
    /// Cookies are checked only while some may be outstanding (Linux's "recent
    /// overflow"): otherwise a stray ACK gets a RST without a hash.
    last_cookie: Option<Instant>,
}

impl Listener {
    /// A listener on `local`; `backlog` bounds the SYN queue.
    pub fn new(config: TcpConfig, local: SocketAddr, backlog: usize, keys: IsnKeys) -> Listener {
        Listener {
            config,
            local,
            backlog: backlog.max(1),
            keys,
            half_open: 0,
            last_cookie: None,
        }
    }

    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Connections in SYN-RECEIVED that the listener handed out.
    pub fn half_open(&self) -> usize {
        self.half_open
    }

    /// A segment for this listener from `endpoints.remote`, where no connection exists for
    /// the four-tuple; `accept_full`: the owner's accept queue has no room.
    pub fn handle_segment(
        &mut self,
        now: Instant,
        endpoints: Endpoints,
        segment: &Segment<'_>,
        accept_full: bool,
        counters: &mut Counters,
    ) -> ListenerAction {
        counters.segments_in += 1;
        let h = &segment.header;
        if h.flags & flags::RST != 0 {
            // RFC 9293 3.10.7.2: "An incoming RST segment could not be valid ... ignore".
            counters.rst_received += 1;
            return ListenerAction::Ignore;
        }
        if h.flags & flags::ACK != 0 {
            if h.flags & flags::SYN == 0 && self.cookies_recent(now) {
                let peer_isn = SeqNumber(h.seq.wrapping_sub(1));
                let cookie = SeqNumber(h.ack.wrapping_sub(1));
                match isn::check_syn_cookie(&self.keys, &endpoints, peer_isn, cookie, now) {
                    Some(_) if accept_full => {
                        counters.accept_queue_full += 1;
                        return ListenerAction::Ignore;
                    }
                    Some(params) => {
                        return self.cookie_connection(now, endpoints, segment, params, counters);
                    }
                    None => counters.syn_cookies_invalid += 1,
                }
            }
            // "any acknowledgment is bad if it arrives on a connection still in the LISTEN
            // state. An acceptable reset segment should be formed ... <SEQ=SEG.ACK><CTL=RST>".
            counters.listen_rst += 1;
            return self.reply(counters, rst(endpoints, SeqNumber(h.ack)));
        }
        if h.flags & flags::SYN == 0 {
            // "Any other control or text-bearing segment ... drop it and return."
            return ListenerAction::Ignore;
        }
        if h.flags & flags::FIN != 0 {
            // SYN+FIN makes no sense (a scanner's probe): Linux discards it in LISTEN, and
            // so do we, rather than open a connection for it.
            counters.bad_options += 1;
            return ListenerAction::Ignore;
        }
        if accept_full {
            // Linux drops SYNs while the accept queue is full: the application is behind,
            // and the client will retry.
            counters.accept_queue_full += 1;
            return ListenerAction::Ignore;
        }
        if self.half_open >= self.backlog {
            counters.syn_queue_full += 1;
            counters.syn_cookies_sent += 1;
            self.last_cookie = Some(now);
            let reply = self.cookie_syn_ack(now, endpoints, h);
            return self.reply(counters, reply);
        }
        let iss = isn::isn(&self.keys, &endpoints, now);
        let mut c = Connection::accept_syn(&self.config, endpoints, segment, iss, now);
        c.set_ts_offset(isn::ts_offset(&self.keys, &endpoints));
        self.half_open += 1;
        ListenerAction::NewConnection(c)
    }

    fn reply(&self, counters: &mut Counters, header: TcpRepr) -> ListenerAction {
        counters.segments_out += 1;
        if header.flags & flags::RST != 0 {
            counters.rst_sent += 1;
        }
        ListenerAction::Reply(Transmit {
            header,
            payload_len: 0,
        })
    }

    fn cookies_recent(&self, now: Instant) -> bool {
        let horizon = isn::COOKIE_PERIOD * (isn::COOKIE_MAX_AGE + 1);
        self.last_cookie
            .is_some_and(|at| now.saturating_duration_since(at) <= horizon)
    }

    fn cookie_syn_ack(&self, now: Instant, endpoints: Endpoints, syn: &TcpRepr) -> TcpRepr {
        let offer = self.config_offer();
        let settled = offer.settle(&syn.options, endpoints.remote.is_ipv6());
        let params = CookieParams {
            mss: settled.send_mss,
            sack: settled.sack,
            window_scale: syn.options.window_scale.filter(|_| settled.window_scaling),
        };
        let peer_isn = SeqNumber(syn.seq);
        let cookie = isn::syn_cookie(&self.keys, &endpoints, peer_isn, params, now);
        let tsval = options::ts_clock(now, isn::ts_offset(&self.keys, &endpoints));
        TcpRepr {
            src_port: endpoints.local.port(),
            dst_port: endpoints.remote.port(),
            seq: cookie.0,
            ack: (peer_isn + 1).0,
            flags: flags::SYN | flags::ACK,
            window: self.config.recv_buffer.min(usize::from(u16::MAX)) as u16,
            options: offer.syn_options(Some(&syn.options), tsval),
        }
    }

    fn config_offer(&self) -> options::Offer {
        options::Offer {
            mss: self.config.mss,
            window_scale: self
                .config
                .window_scale
                .then(|| options::window_scale_for(self.config.recv_buffer)),
            sack: self.config.sack,
            timestamps: self.config.timestamps,
        }
    }

    fn cookie_connection(
        &mut self,
        now: Instant,
        endpoints: Endpoints,
        segment: &Segment<'_>,
        params: CookieParams,
        counters: &mut Counters,
    ) -> ListenerAction {
        counters.syn_cookies_valid += 1;
        let ts_offset = isn::ts_offset(&self.keys, &endpoints);
        let c = Connection::from_cookie(
            &self.config,
            endpoints,
            segment,
            params,
            ts_offset,
            now,
            counters,
        );
        ListenerAction::NewConnection(c)
    }

    /// A connection this listener handed out in SYN-RECEIVED reported `Event::Connected`:
    /// it leaves the SYN queue (for the owner's accept queue).
    pub fn on_established(&mut self, _endpoints: Endpoints) {
        self.half_open = self.half_open.saturating_sub(1);
    }

    /// A connection handed out in SYN-RECEIVED closed before it was established (a RST,
    /// SYN-ACK retries ran out).
    pub fn on_half_open_closed(&mut self, _endpoints: Endpoints) {
        self.half_open = self.half_open.saturating_sub(1);
    }
}

fn rst(endpoints: Endpoints, seq: SeqNumber) -> TcpRepr {
    TcpRepr {
        src_port: endpoints.local.port(),
        dst_port: endpoints.remote.port(),
        seq: seq.0,
        ack: 0,
        flags: flags::RST,
        window: 0,
        options: TcpOptions::default(),
    }
}
