//! One TCP connection's state machine (RFC 9293 3.10), sans-IO: `handle_segment` and
//! `handle_timeout` take `now` and change state; `poll_transmit` hands out segments,
//! `poll_timeout` the next deadline and `poll_event` what the application should learn.
//!
//! Split by direction: `input` (RFC 9293 3.10.7, the segment-arrival checks in order),
//! `output` (what to send next: control, data, retransmissions, probes, ACKs) and `timer`
//! (the one timer a connection runs at a time, plus the delayed ACK). Its settings, its
//! counters and the values it takes and gives live beside it (`tcp::config`, `counters`,
//! `types`) and are re-exported here.

use std::time::Duration;

use super::{
    congestion::{CongestionControl, Controller},
    options::Negotiated,
    recv::RecvBuffer,
    rtt::RttEstimator,
    send::{Scoreboard, SendBuffer},
    seq::SeqNumber,
};
use crate::{time::Instant, wire::tcp::TcpRepr};

mod input;
mod output;
mod timer;

pub use super::{
    config::{KeepAlive, TcpConfig},
    counters::Counters,
    types::{CloseReason, ConnectionInfo, Endpoints, Event, Segment, State, Transmit},
};
pub use timer::Timer;

const EV_CONNECTED: u8 = 1;
const EV_READABLE: u8 = 2;
const EV_WRITABLE: u8 = 4;
const EV_PEER_CLOSED: u8 = 8;
const EV_CLOSED: u8 = 16;

/// One TCP connection. See the module documentation for how a worker drives it.
#[derive(Debug)]
pub struct Connection {
    state: State,
    endpoints: Endpoints,
    config: TcpConfig,
    opts: Negotiated,
    /// The payload of a full segment once the options every segment carries are
    /// deducted (RFC 6691).
    eff_mss: u32,

    // Send sequence space (RFC 9293 3.3.1). `snd_nxt` is the next byte to send, rewound
    // to `snd_una` by a timeout; `snd_max` the highest ever sent.
    iss: SeqNumber,
    snd_una: SeqNumber,
    snd_nxt: SeqNumber,
    snd_max: SeqNumber,
    snd_wnd: u32,
    max_snd_wnd: u32,
    snd_wl1: SeqNumber,
    snd_wl2: SeqNumber,
    send: SendBuffer,
    /// `shutdown` or `close` asked for a FIN after the queued bytes.
    fin_queued: bool,
    /// The end of the last segment of new data sent shorter than a full one (Linux's
    /// `snd_sml`): Minshall's Nagle waits only while it is unacknowledged.
    snd_sml: SeqNumber,
    /// `close` was called: nothing more will be read, data arriving is answered by RST.
    orphaned: bool,
    /// The peer acknowledged our FIN.
    fin_was_acked: bool,

    // Receive sequence space. `rcv_adv` is the right edge of the window last advertised;
    // it never moves left (RFC 9293 3.8.6: "SHOULD NOT shrink the window").
    irs: SeqNumber,
    rcv_nxt: SeqNumber,
    rcv_adv: SeqNumber,
    recv: RecvBuffer,
    /// The sequence number of a FIN that arrived ahead of a hole.
    peer_fin: Option<SeqNumber>,
    peer_fin_seen: bool,

    // Timestamps (RFC 7323).
    ts_offset: u32,
    ts_recent: u32,
    ts_recent_at: Instant,
    last_ack_sent: SeqNumber,

    // Timers.
    timer: Timer,
    ack_due: Option<Instant>,
    ack_now: bool,
    unacked_segments: u32,
    rtt: RttEstimator,
    /// The segment being timed for an RTT sample: its end and when it left (Karn's rule:
    /// cleared by any retransmission).
    rtt_probe: Option<(SeqNumber, Instant)>,
    /// Consecutive timeouts (or unanswered persist probes), reset by an ACK of new data.
    retries: u32,
    keepalive_sent: u32,
    last_recv: Instant,
    persist_probe_due: bool,
    /// Zero-window probes sent since the window closed (their interval doubles).
    persist_backoff: u32,
    /// A zero-window probe's unit is out (the peer may ACK one past `snd_max`).
    probe_outstanding: bool,
    /// When we last answered an unacceptable bare segment (rate-limited, see input).
    last_oow_ack: Option<Instant>,
    keepalive_due: bool,

    // Congestion and loss recovery.
    cc: Controller,
    /// In fast recovery until the cumulative ACK reaches this (RFC 6582 / RFC 6675).
    recovery: Option<SeqNumber>,
    /// RFC 6582's `recover`: no new recovery for duplicate ACKs below it.
    recover: SeqNumber,
    dupacks: u32,
    /// RFC 5681 3.2 fast-recovery inflation (without SACK).
    inflation: u32,
    /// Retransmit the segment at `snd_una` next, whatever the window (fast retransmit,
    /// NewReno partial ACK).
    rtx_una: bool,
    first_partial_ack: bool,
    scoreboard: Scoreboard,

    // Control segments owed.
    rst_pending: Option<(SeqNumber, Option<SeqNumber>)>,
    dsack: Option<(SeqNumber, SeqNumber)>,
    challenge_start: Instant,
    challenge_count: u32,

    events: u8,
    close_reason: CloseReason,
    /// A SYN arrived in TIME-WAIT that may open a new incarnation (RFC 6191).
    syn_reopens: bool,
    /// Times our SYN or SYN-ACK went again on a timeout.
    syn_timeouts: u32,
    retransmits: u64,
}

impl Connection {
    fn new(config: &TcpConfig, endpoints: Endpoints, isn: SeqNumber, now: Instant) -> Connection {
        let opts = Negotiated {
            send_mss: config.mss,
            ..Negotiated::default()
        };
        Connection {
            state: State::Closed,
            endpoints,
            config: config.clone(),
            opts,
            eff_mss: u32::from(config.mss).max(1),
            iss: isn,
            snd_una: isn,
            snd_nxt: isn,
            snd_max: isn,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: SeqNumber(0),
            snd_wl2: isn,
            send: SendBuffer::new(config.send_buffer),
            fin_queued: false,
            snd_sml: isn,
            orphaned: false,
            fin_was_acked: false,
            irs: SeqNumber(0),
            rcv_nxt: SeqNumber(0),
            rcv_adv: SeqNumber(0),
            recv: RecvBuffer::new(config.recv_buffer, config.max_out_of_order),
            peer_fin: None,
            peer_fin_seen: false,
            // Derived from the ISN, itself keyed-random; the listener sets a separate
            // keyed offset (`isn::ts_offset`) through `set_ts_offset`.
            ts_offset: isn.0.rotate_left(13) ^ 0x5bd1_e995,
            ts_recent: 0,
            ts_recent_at: now,
            last_ack_sent: SeqNumber(0),
            timer: Timer::Idle,
            ack_due: None,
            ack_now: false,
            unacked_segments: 0,
            rtt: RttEstimator::new(config.initial_rto, config.min_rto, config.max_rto),
            rtt_probe: None,
            retries: 0,
            keepalive_sent: 0,
            last_recv: now,
            persist_probe_due: false,
            persist_backoff: 0,
            probe_outstanding: false,
            last_oow_ack: None,
            keepalive_due: false,
            cc: Controller::new(config.congestion, u32::from(config.mss), now),
            recovery: None,
            recover: isn,
            dupacks: 0,
            inflation: 0,
            rtx_una: false,
            first_partial_ack: false,
            scoreboard: Scoreboard::default(),
            rst_pending: None,
            dsack: None,
            challenge_start: now,
            challenge_count: 0,
            events: 0,
            close_reason: CloseReason::Normal,
            syn_reopens: false,
            syn_timeouts: 0,
            retransmits: 0,
        }
    }

    /// Active open: the SYN comes out of the next `poll_transmit`.
    pub fn connect(
        config: &TcpConfig,
        endpoints: Endpoints,
        isn: SeqNumber,
        now: Instant,
    ) -> Connection {
        let mut c = Connection::new(config, endpoints, isn, now);
        c.set_state(State::SynSent);
        c
    }

    /// Passive open: a connection in SYN-RECEIVED for the SYN `syn` (the listener calls
    /// this); the SYN-ACK comes out of the next `poll_transmit`.
    pub fn accept_syn(
        config: &TcpConfig,
        endpoints: Endpoints,
        syn: &Segment<'_>,
        isn: SeqNumber,
        now: Instant,
    ) -> Connection {
        let mut c = Connection::new(config, endpoints, isn, now);
        c.on_peer_syn(&syn.header, now);
        c.set_state(State::SynReceived);
        c
    }

    /// A connection established by a valid SYN cookie in `ack` (the listener calls this).
    /// `params` is what the cookie remembered of the SYN.
    pub(crate) fn from_cookie(
        config: &TcpConfig,
        endpoints: Endpoints,
        ack: &Segment<'_>,
        params: super::isn::CookieParams,
        ts_offset: u32,
        now: Instant,
        counters: &mut Counters,
    ) -> Connection {
        let h = &ack.header;
        let iss = SeqNumber(h.ack.wrapping_sub(1));
        let mut c = Connection::new(config, endpoints, iss, now);
        c.ts_offset = ts_offset;
        // Rebuild the SYN the cookie answered, so negotiation runs as for any SYN.
        let syn = crate::wire::tcp::TcpOptions {
            mss: Some(params.mss),
            window_scale: params.window_scale,
            sack_permitted: params.sack,
            sack_blocks: [None; 4],
            // Timestamps were on iff the ACK carries one (RFC 7323 3.2: only then is it
            // sent on non-SYN segments).
            timestamp: h.options.timestamp,
        };
        let mut syn_header = *h;
        syn_header.seq = h.seq.wrapping_sub(1);
        syn_header.options = syn;
        c.on_peer_syn(&syn_header, now);
        c.rcv_adv = c.rcv_nxt + c.syn_window();
        c.snd_una = c.iss + 1;
        c.snd_nxt = c.snd_una;
        c.snd_max = c.snd_una;
        c.snd_wnd = u32::from(h.window) << c.opts.snd_wscale;
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = SeqNumber(h.seq);
        c.snd_wl2 = SeqNumber(h.ack);
        c.set_state(State::Established);
        c.events |= EV_CONNECTED | EV_WRITABLE;
        if !ack.payload.is_empty() || h.flags & crate::wire::tcp::flags::FIN != 0 {
            c.handle_segment(now, ack, counters);
            counters.segments_in = counters.segments_in.wrapping_sub(1);
        }
        c
    }

    /// Sets the timestamp clock's offset (RFC 7323 7.1); call before the first
    /// `poll_transmit`. `isn::ts_offset` gives a keyed one.
    pub fn set_ts_offset(&mut self, offset: u32) {
        self.ts_offset = offset;
    }

    /// Takes the options and sequence number of the peer's SYN.
    fn on_peer_syn(&mut self, h: &TcpRepr, now: Instant) {
        self.irs = SeqNumber(h.seq);
        self.rcv_nxt = self.irs + 1;
        self.opts = self
            .config
            .offer()
            .settle(&h.options, self.endpoints.is_v6());
        if let Some((val, _)) = h.options.timestamp.filter(|_| self.opts.timestamps) {
            self.ts_recent = val;
            self.ts_recent_at = now;
        }
        self.eff_mss = u32::from(self.opts.send_mss)
            .saturating_sub(if self.opts.timestamps { 12 } else { 0 })
            .max(1);
        self.cc = Controller::new(self.config.congestion, self.eff_mss, now);
        // A SYN's window is never scaled (RFC 7323 2.2).
        self.snd_wnd = u32::from(h.window);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = self.irs;
        self.snd_wl2 = SeqNumber(h.ack);
    }

    fn set_state(&mut self, state: State) {
        if self.state != state {
            log::trace!(
                "tcp {} -> {}: {:?} -> {:?}",
                self.endpoints.local,
                self.endpoints.remote,
                self.state,
                state
            );
            self.state = state;
        }
    }

    /// Ends the connection: no more segments, except a RST already owed.
    fn close_with(&mut self, reason: CloseReason) {
        if self.state == State::Closed {
            return;
        }
        self.set_state(State::Closed);
        self.close_reason = reason;
        self.events |= EV_CLOSED;
        self.timer = Timer::Idle;
        self.ack_due = None;
        self.ack_now = false;
        self.persist_probe_due = false;
        self.keepalive_due = false;
        self.send = SendBuffer::new(0);
        self.scoreboard.clear();
        if reason != CloseReason::Normal {
            // RFC 9293 3.10.7.4: a reset flushes the queues.
            self.recv = RecvBuffer::new(0, 0);
        }
    }

    /// The sequence number of the first byte in the send buffer: after our SYN.
    fn data_start(&self) -> SeqNumber {
        if matches!(self.state, State::SynSent | State::SynReceived) {
            self.iss + 1
        } else {
            self.snd_una
        }
    }

    /// Where our FIN sits (or will), once one is queued.
    fn fin_seq(&self) -> Option<SeqNumber> {
        self.fin_queued
            .then(|| self.data_start() + self.send.len() as u32)
    }

    fn fin_acked(&self) -> bool {
        self.fin_was_acked
    }

    /// The window to put in a SYN or SYN-ACK (never scaled).
    fn syn_window(&self) -> u32 {
        self.recv.room().min(usize::from(u16::MAX)) as u32
    }

    // The application's side.

    /// Copies what fits into the send buffer; 0 means it is full (or the connection no
    /// longer sends). Bytes written before the handshake completes wait for it.
    pub fn write(&mut self, data: &[u8]) -> usize {
        if self.fin_queued
            || !matches!(
                self.state,
                State::SynSent | State::SynReceived | State::Established | State::CloseWait
            )
        {
            return 0;
        }
        self.send.write(data)
    }

    /// Reads in-order received bytes.
    pub fn read(&mut self, buf: &mut [u8]) -> usize {
        let before = self.advertisable_window();
        let n = self.recv.read(buf);
        // A window update when reading opened the window by a lot (RFC 9293 3.8.6.2.2:
        // by at least min(RCV.BUFF/2, MSS) beyond what was advertised; Linux and smoltcp
        // also send one when the window opens from zero).
        // Once the peer's FIN is in (CLOSE-WAIT, LAST-ACK, CLOSING, TIME-WAIT) no data can
        // follow, so a window update says nothing; and sent from TIME-WAIT it reaches a peer
        // that has closed, whose RST would end the connection with data still unread.
        let fin_received = matches!(
            self.state,
            State::CloseWait | State::LastAck | State::Closing | State::TimeWait
        );
        if n > 0 && self.state.is_synchronized() && !fin_received {
            let advertised = self.rcv_adv.since(self.rcv_nxt);
            let now_open = self.advertisable_window();
            let threshold = (self.recv.limit() / 2).min(usize::from(self.config.mss)) as u32;
            if now_open >= advertised.saturating_add(threshold)
                && (advertised < threshold || now_open >= 2 * before.max(1))
            {
                self.ack_now = true;
            }
        }
        n
    }

    /// Bytes `read` would return now.
    pub fn readable(&self) -> usize {
        self.recv.len()
    }

    /// Bytes `write` would take now.
    pub fn writable(&self) -> usize {
        if self.fin_queued
            || !matches!(
                self.state,
                State::SynSent | State::SynReceived | State::Established | State::CloseWait
            )
        {
            return 0;
        }
        self.send.room()
    }

    /// Half-close (RFC 9293 3.10.4): a FIN follows the queued bytes; reading goes on.
    pub fn shutdown(&mut self) {
        match self.state {
            State::SynSent => self.close_with(CloseReason::Normal),
            State::SynReceived | State::Established => {
                self.fin_queued = true;
                if self.state == State::Established {
                    self.set_state(State::FinWait1);
                }
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.set_state(State::LastAck);
            }
            _ => {}
        }
    }

    /// Full close: like `shutdown`, but nothing more will be read. With unread bytes
    /// waiting, the connection is reset instead (RFC 9293 3.10.4, RFC 2525 2.17), and so
    /// is it if data arrives later.
    pub fn close(&mut self) {
        if !self.recv.is_empty() && self.state.is_synchronized() {
            self.abort();
            return;
        }
        self.orphaned = true;
        self.shutdown();
        if self.state == State::FinWait2 {
            self.timer = Timer::FinWait2 {
                at: self.last_recv + self.config.msl * 2,
            };
        }
    }

    /// Resets the connection now (RFC 9293 3.10.5 ABORT).
    pub fn abort(&mut self) {
        match self.state {
            State::Closed | State::Listen | State::TimeWait => {
                self.close_with(CloseReason::Aborted)
            }
            State::SynSent => self.close_with(CloseReason::Aborted),
            _ => {
                self.rst_pending = Some((self.snd_max, None));
                self.close_with(CloseReason::Aborted);
            }
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn endpoints(&self) -> Endpoints {
        self.endpoints
    }

    /// Fully done (after TIME-WAIT, a reset or a timeout, with any RST sent): the owner
    /// may free it.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed && self.rst_pending.is_none()
    }

    /// Set when a SYN arrived in TIME-WAIT that RFC 6191 lets open a new incarnation of
    /// the same four-tuple: this connection closed itself, and the owner should free it
    /// and hand that same SYN to the listener.
    pub fn syn_reopens(&self) -> bool {
        self.syn_reopens
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        for (bit, event) in [
            (EV_CONNECTED, Event::Connected),
            (EV_WRITABLE, Event::Writable),
            (EV_READABLE, Event::Readable),
            (EV_PEER_CLOSED, Event::PeerClosed),
            (EV_CLOSED, Event::Closed(self.close_reason)),
        ] {
            if self.events & bit != 0 {
                self.events &= !bit;
                return Some(event);
            }
        }
        None
    }

    pub fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            state: self.state,
            local: self.endpoints.local,
            remote: self.endpoints.remote,
            send_queued: self.send.len(),
            recv_queued: self.recv.len(),
            out_of_order: self.recv.ooo_bytes(),
            send_mss: self.opts.send_mss,
            snd_wnd: self.snd_wnd,
            rcv_wnd: self.rcv_adv.since(self.rcv_nxt),
            congestion: self.cc.name(),
            cwnd: self.cc.window(),
            ssthresh: self.cc.ssthresh(),
            in_flight: self.snd_max.since(self.snd_una),
            srtt_us: self.rtt.srtt().map(|d| d.as_micros() as u64),
            rttvar_us: self.rtt.rttvar().as_micros() as u64,
            rto_us: self.rtt.rto().as_micros() as u64,
            retransmits: self.retransmits,
            in_recovery: self.recovery.is_some(),
            sack: self.opts.sack,
            timestamps: self.opts.timestamps,
            snd_wscale: self.opts.snd_wscale,
            rcv_wscale: self.opts.rcv_wscale,
            buffer_capacity: self.send.capacity() + self.recv.capacity(),
        }
    }

    /// RFC 5961 7: a challenge ACK, unless this second's allowance is spent.
    fn challenge_ack(&mut self, now: Instant, counters: &mut Counters) {
        if now - self.challenge_start >= Duration::from_secs(1) {
            self.challenge_start = now;
            self.challenge_count = 0;
        }
        if self.challenge_count < self.config.challenge_ack_per_sec {
            self.challenge_count += 1;
            self.ack_now = true;
            counters.challenge_acks += 1;
        } else {
            counters.challenge_acks_suppressed += 1;
        }
    }

    /// The window we could offer now, before silly-window avoidance and scaling.
    fn advertisable_window(&self) -> u32 {
        let max = u32::from(u16::MAX) << self.opts.rcv_wscale;
        (self.recv.room().min(u32::MAX as usize) as u32).min(max)
    }
}
