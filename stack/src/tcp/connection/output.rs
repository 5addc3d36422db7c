//! What a connection sends next, most urgent first: a RST owed, our SYN (or SYN-ACK), data
//! and FIN (retransmissions first in loss recovery, RFC 6675 NextSeg), a zero-window or
//! keepalive probe, then a bare ACK or window update. Every segment carries the current
//! ACK, window, timestamp and SACK blocks, so any of them settles an ACK that was owed.

use super::{Connection, Counters, State, Timer};
use crate::{
    tcp::{congestion::CongestionControl, options, seq::SeqNumber},
    time::Instant,
    wire::tcp::{TcpOptions, TcpRepr, flags},
};

/// Linux's effective `tcp_orphan_retries` ("8 corresponds to >100 seconds with minimal
/// RTO of 200msec", tcp_timer.c): unanswered zero-window probes an orphan gets.
const ORPHAN_RETRIES: u32 = 8;

/// How a range of sequence space goes out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// New data, or data again after a timeout rewound `snd_nxt`.
    Normal,
    /// A hole or the first unacknowledged segment, resent in fast recovery: `snd_nxt`
    /// stays where it is.
    Recovery,
    /// A zero-window probe: one unit past the window, `snd_nxt` unmoved.
    Probe,
}

impl Connection {
    /// The next segment to send, if any: call until `None`. `payload` is the room for the
    /// segment's payload (the caller reserves up to 60 bytes of TCP header in front of it,
    /// then writes `header` there); at most that many bytes are copied into it.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        payload: &mut [u8],
        counters: &mut Counters,
    ) -> Option<super::Transmit> {
        let t = self.next_segment(now, payload, counters)?;
        counters.segments_out += 1;
        if t.header.flags & flags::RST != 0 {
            counters.rst_sent += 1;
        }
        Some(t)
    }

    fn next_segment(
        &mut self,
        now: Instant,
        payload: &mut [u8],
        counters: &mut Counters,
    ) -> Option<super::Transmit> {
        if let Some((seq, ack)) = self.rst_pending.take() {
            return Some(self.rst(seq, ack));
        }
        match self.state {
            State::Closed | State::Listen => return None,
            State::SynSent | State::SynReceived if self.snd_nxt == self.iss => {
                return Some(self.syn(now, counters));
            }
            State::SynSent => return None,
            _ => {}
        }
        if let Some(t) = self.data(now, payload, counters) {
            return Some(t);
        }
        if std::mem::take(&mut self.persist_probe_due)
            && let Some(t) = self.persist_probe(now, payload, counters)
        {
            return Some(t);
        }
        if std::mem::take(&mut self.keepalive_due) {
            // RFC 9293 3.8.4: "SEG.SEQ = SND.NXT-1", which the peer must ACK.
            let header = self.header(now, self.snd_una - 1, flags::ACK);
            return Some(super::Transmit {
                header,
                payload_len: 0,
            });
        }
        if self.ack_now || self.ack_due.is_some_and(|at| at <= now) {
            // SND.NXT in RFC terms: the highest sent, not the rewound send pointer.
            let header = self.header(now, self.snd_max, flags::ACK);
            return Some(super::Transmit {
                header,
                payload_len: 0,
            });
        }
        None
    }

    fn rst(&self, seq: SeqNumber, ack: Option<SeqNumber>) -> super::Transmit {
        super::Transmit {
            header: TcpRepr {
                src_port: self.endpoints.local.port(),
                dst_port: self.endpoints.remote.port(),
                seq: seq.0,
                ack: ack.map_or(0, |a| a.0),
                flags: flags::RST | if ack.is_some() { flags::ACK } else { 0 },
                window: 0,
                options: TcpOptions::default(),
            },
            payload_len: 0,
        }
    }

    fn syn(&mut self, now: Instant, counters: &mut Counters) -> super::Transmit {
        let tsval = options::ts_clock(now, self.ts_offset);
        let (flags, options) = if self.state == State::SynSent {
            (flags::SYN, self.config.offer().syn_options(None, tsval))
        } else {
            let o = TcpOptions {
                mss: Some(self.config.mss),
                window_scale: self.opts.window_scaling.then_some(self.opts.rcv_wscale),
                sack_permitted: self.opts.sack,
                sack_blocks: [None; 4],
                timestamp: self.opts.timestamps.then_some((tsval, self.ts_recent)),
            };
            (flags::SYN | flags::ACK, o)
        };
        let window = self.syn_window();
        if self.snd_max != self.iss {
            counters.retransmits += 1;
            self.retransmits += 1;
            self.rtt_probe = None;
        } else {
            self.rtt_probe = Some((self.iss + 1, now));
        }
        self.snd_nxt = self.iss + 1;
        self.snd_max = self.snd_max.max(self.snd_nxt);
        self.arm_retransmit(now);
        let ack = if flags & flags::ACK != 0 {
            self.rcv_adv = self.rcv_nxt + window;
            self.last_ack_sent = self.rcv_nxt;
            self.ack_now = false;
            self.ack_due = None;
            self.rcv_nxt.0
        } else {
            0
        };
        super::Transmit {
            header: TcpRepr {
                src_port: self.endpoints.local.port(),
                dst_port: self.endpoints.remote.port(),
                seq: self.iss.0,
                ack,
                flags,
                window: window as u16,
                options,
            },
            payload_len: 0,
        }
    }

    /// A header with our current ACK, window, timestamp and SACK blocks. Sending it
    /// settles any ACK owed.
    fn header(&mut self, now: Instant, seq: SeqNumber, flags: u8) -> TcpRepr {
        let mut options = TcpOptions::default();
        if self.opts.timestamps {
            options.timestamp = Some((options::ts_clock(now, self.ts_offset), self.ts_recent));
        }
        if self.opts.sack {
            let max = if self.opts.timestamps { 3 } else { 4 };
            let mut first = 0;
            if let Some((l, r)) = self.dsack.take() {
                options.sack_blocks[0] = Some((l.0, r.0));
                first = 1;
            }
            self.recv
                .sack_blocks(max - first, &mut options.sack_blocks[first..]);
        }
        let window = self.window_to_advertise();
        self.last_ack_sent = self.rcv_nxt;
        self.ack_now = false;
        self.ack_due = None;
        self.unacked_segments = 0;
        TcpRepr {
            src_port: self.endpoints.local.port(),
            dst_port: self.endpoints.remote.port(),
            seq: seq.0,
            ack: self.rcv_nxt.0,
            flags,
            window,
            options,
        }
    }

    /// The window field, scaled. The right edge never moves left (RFC 9293 3.8.6), and
    /// moves right only by at least min(RCV.BUFF / 2, MSS) (3.8.6.2.2, receiver-side
    /// silly window avoidance). Rounding up to the scale's unit may promise up to
    /// 2^rcv_wscale - 1 bytes beyond the buffer: the buffer takes them.
    fn window_to_advertise(&mut self) -> u16 {
        let ws = self.opts.rcv_wscale;
        let promised = self.rcv_adv.since(self.rcv_nxt);
        let open = self.advertisable_window();
        let step = (self.recv.limit() / 2).min(usize::from(self.config.mss)) as u32;
        let win = if open >= promised.saturating_add(step) {
            open
        } else {
            promised
        };
        let unit = 1u32 << ws;
        let scaled = win.div_ceil(unit).min(u32::from(u16::MAX));
        self.rcv_adv = self.rcv_nxt + (scaled << ws);
        scaled as u16
    }

    /// Payload per segment now: the effective MSS less the SACK blocks this segment
    /// carries (RFC 6691: options come out of the MSS).
    fn segment_room(&self, room: usize) -> u32 {
        let mut mss = self.eff_mss;
        if self.opts.sack {
            let blocks = self.recv_sack_count();
            if blocks > 0 {
                mss = mss.saturating_sub(((2 + 8 * blocks) as u32).div_ceil(4) * 4);
            }
        }
        mss.min(room.min(u32::MAX as usize) as u32)
    }

    fn recv_sack_count(&self) -> usize {
        let max = if self.opts.timestamps { 3 } else { 4 };
        let mut blocks = [None; 4];
        self.recv.sack_blocks(max, &mut blocks);
        (blocks.iter().flatten().count() + usize::from(self.dsack.is_some())).min(max)
    }

    /// The states that send data and a FIN: after the handshake, until our FIN is ACKed.
    fn sends_data(&self) -> bool {
        matches!(
            self.state,
            State::Established
                | State::CloseWait
                | State::FinWait1
                | State::Closing
                | State::LastAck
        )
    }

    /// Data and FIN, in loss recovery retransmissions first (RFC 6675 NextSeg).
    fn data(
        &mut self,
        now: Instant,
        payload: &mut [u8],
        counters: &mut Counters,
    ) -> Option<super::Transmit> {
        if !self.sends_data() {
            return None;
        }
        let mss = self.segment_room(payload.len());
        if mss == 0 {
            return None;
        }
        let data_end = self.data_start() + self.send.len() as u32;

        // Fast retransmit, and NewReno's partial ACK: the first unacknowledged segment goes
        // whatever the windows say (RFC 5681 3.2 step 3, RFC 6582 3.2 step 5).
        if std::mem::take(&mut self.rtx_una) && self.snd_una < self.snd_max {
            return Some(self.first_unacked(now, mss, data_end, payload, counters));
        }
        if self.recovery.is_some() && self.opts.sack {
            return self.sack_recovery(now, mss, data_end, payload, counters);
        }
        self.new_data(now, mss, data_end, payload, counters)
    }

    /// The first unacknowledged segment again.
    fn first_unacked(
        &mut self,
        now: Instant,
        mss: u32,
        data_end: SeqNumber,
        payload: &mut [u8],
        counters: &mut Counters,
    ) -> super::Transmit {
        let seq = self.snd_una;
        let len = data_end.since(seq).min(mss);
        let fin = self.fin_queued && seq + len == data_end;
        if self.opts.sack {
            self.scoreboard.high_rxt = self.scoreboard.high_rxt.max(seq + len);
        }
        self.send_range(now, seq, len, fin, payload, Kind::Recovery, counters)
    }

    /// SACK loss recovery (RFC 6675 5, step C): send while cwnd - pipe >= 1 SMSS.
    fn sack_recovery(
        &mut self,
        now: Instant,
        mss: u32,
        data_end: SeqNumber,
        payload: &mut [u8],
        counters: &mut Counters,
    ) -> Option<super::Transmit> {
        let cwnd = self.cc.window();
        let pipe = self
            .scoreboard
            .pipe(self.snd_una, self.snd_max, self.eff_mss);
        if cwnd.saturating_sub(pipe) < self.eff_mss {
            return None;
        }
        // NextSeg rule 1: a lost hole.
        if let Some((s, e)) = self.scoreboard.next_retransmit(self.snd_una, mss, true) {
            self.scoreboard.high_rxt = e;
            let len = e.since(s).min(data_end.since(s));
            let fin = self.fin_queued && s + len == data_end && e > data_end;
            return Some(self.send_range(now, s, len, fin, payload, Kind::Recovery, counters));
        }
        // Rule 2: new data the peer's window allows.
        let wnd_end = self.snd_una + self.snd_wnd;
        let seq = self.snd_nxt;
        let avail = data_end.since(seq);
        let len = avail.min(mss).min(wnd_end.since(seq));
        let fin = self.fin_queued && seq <= data_end && len == avail && wnd_end.since(seq) > len;
        if (len > 0 && (len == mss || avail == len)) || fin {
            return Some(self.send_range(now, seq, len, fin, payload, Kind::Normal, counters));
        }
        // Rule 3: a hole not yet deemed lost.
        if let Some((s, e)) = self.scoreboard.next_retransmit(self.snd_una, mss, false) {
            self.scoreboard.high_rxt = e;
            let len = e.since(s).min(data_end.since(s));
            let fin = self.fin_queued && s + len == data_end && e > data_end;
            return Some(self.send_range(now, s, len, fin, payload, Kind::Recovery, counters));
        }
        None
    }

    /// New data (or data again after a timeout rewound `snd_nxt`) and the FIN, as the
    /// windows, silly window avoidance and Nagle allow.
    fn new_data(
        &mut self,
        now: Instant,
        mss: u32,
        data_end: SeqNumber,
        payload: &mut [u8],
        counters: &mut Counters,
    ) -> Option<super::Transmit> {
        let seq = self.snd_nxt;
        let avail = data_end.since(seq);
        // The FIN goes after the last byte, unless this pass already sent it.
        let fin_pending = self.fin_queued && seq <= data_end;
        if avail == 0 && !fin_pending {
            return None;
        }
        let wnd_end = self.snd_una + self.snd_wnd;
        let win_room = wnd_end.since(seq);
        let in_flight = self.snd_nxt.since(self.snd_una);
        let cwnd_room = self
            .cc
            .window()
            .saturating_add(self.inflation)
            .saturating_sub(in_flight);
        let len = avail.min(mss).min(win_room).min(cwnd_room);
        // A FIN takes a unit of the window like a byte does.
        let fin = fin_pending && len == avail && win_room > len;
        if len == 0 && !fin {
            return self.hold(now);
        }
        if len < mss && len < avail {
            // Sender silly window avoidance (RFC 9293 3.8.6.2.1): a short segment only
            // when it fills at least half the largest window the peer has offered; a
            // congestion window short of a segment waits for ACKs.
            let window_limited = len == win_room && len < cwnd_room;
            if !(window_limited && len >= self.max_snd_wnd / 2) {
                return self.hold(now);
            }
        }
        if len < mss
            && len == avail
            && !self.fin_queued
            && self.config.nagle
            && self.small_unacked()
        {
            // Nagle (RFC 9293 3.7.4) in Minshall's variant, as Linux: one small segment
            // unacknowledged at a time, but a full-sized one in flight does not hold the
            // tail of a write back (which a delayed ACK would cost >= 40 ms).
            return None;
        }
        if len < mss {
            self.snd_sml = seq + len;
        }
        Some(self.send_range(now, seq, len, fin, payload, Kind::Normal, counters))
    }

    /// Is a segment shorter than a full one unacknowledged (Linux `tcp_minshall_check`)?
    fn small_unacked(&self) -> bool {
        self.snd_sml > self.snd_una && self.snd_sml <= self.snd_max
    }

    /// Data (or a FIN) is queued but may not go now. With nothing in flight no ACK will
    /// come to release it, so a timer must run: the zero-window probe timer, which for
    /// a window that is open but too small to send into is RFC 9293 3.8.6.2.1's override
    /// timeout (Linux arms its probe timer whenever data is queued and nothing is in
    /// flight). A lost window update then cannot stall the connection.
    fn hold(&mut self, now: Instant) -> Option<super::Transmit> {
        if self.snd_max == self.snd_una && self.timer == Timer::Idle {
            self.arm_persist(now);
        }
        None
    }

    /// The override timeout fired with the window open but below what silly window
    /// avoidance sends into, nothing in flight: send what the window takes (as Linux's
    /// `tcp_write_wakeup`).
    fn override_send(
        &mut self,
        now: Instant,
        payload: &mut [u8],
        counters: &mut Counters,
    ) -> Option<super::Transmit> {
        if !self.sends_data() || self.snd_max != self.snd_una {
            return None;
        }
        let data_end = self.data_start() + self.send.len() as u32;
        let seq = self.snd_nxt;
        let avail = data_end.since(seq);
        let len = avail
            .min(self.segment_room(payload.len()))
            .min(self.snd_wnd);
        if len == 0 {
            return None;
        }
        let fin = self.fin_queued && len == avail && self.snd_wnd > len;
        Some(self.send_range(now, seq, len, fin, payload, Kind::Normal, counters))
    }

    fn arm_persist(&mut self, now: Instant) {
        self.timer = Timer::Persist {
            at: now + self.persist_interval(),
        };
    }

    /// The zero-window probe interval: the RTO doubled per probe sent, at most `max_rto`.
    fn persist_interval(&self) -> std::time::Duration {
        let shift = self.persist_backoff.min(16);
        self.rtt
            .rto()
            .saturating_mul(1 << shift)
            .min(self.config.max_rto)
    }

    /// An orphan (closed by the application, FIN-WAIT-1, CLOSING or LAST-ACK with data or
    /// FIN unsent behind a zero window) is given up as Linux gives it up
    /// (`tcp_probe_timer`, `tcp_orphan_retries` with the sysctl at its default 0): once
    /// the backed-off probe interval has reached the maximum RTO the orphan is "not
    /// alive" and aborted however the peer answers; before that, after
    /// ORPHAN_RETRIES probes in a row unanswered. Otherwise any ACK would keep it, its
    /// send buffer and its table entry, forever.
    fn orphan_given_up(&self) -> bool {
        self.persist_interval() >= self.config.max_rto || self.retries >= ORPHAN_RETRIES
    }

    /// RFC 9293 3.8.6.1: with the window closed, one octet past it, repeatedly, with
    /// backoff; the FIN if no data is left. With the window open, the override timeout's
    /// segment.
    fn persist_probe(
        &mut self,
        now: Instant,
        payload: &mut [u8],
        counters: &mut Counters,
    ) -> Option<super::Transmit> {
        if self.snd_wnd != 0 {
            return self.override_send(now, payload, counters);
        }
        let data_end = self.data_start() + self.send.len() as u32;
        let seq = self.snd_una;
        let has_data = data_end > seq;
        // Our FIN acknowledged (FIN-WAIT-2, TIME-WAIT): nothing is left to probe with, and a
        // FIN past the acknowledged one would be a byte that never existed (found by the
        // tcp_connection fuzz target).
        let fin_acked = matches!(self.state, super::State::FinWait2 | super::State::TimeWait);
        if self.snd_wnd != 0
            || !(has_data || self.fin_queued)
            || self.snd_nxt != self.snd_una
            || (fin_acked && !has_data)
        {
            return None;
        }
        if self.orphaned && self.orphan_given_up() {
            counters.orphan_probes_exhausted += 1;
            self.rst_pending = Some((self.snd_max, Some(self.rcv_nxt)));
            self.close_with(super::CloseReason::TimedOut);
            return self.next_segment(now, payload, counters);
        }
        self.retries += 1;
        if self.retries > self.config.max_retransmits {
            self.rst_pending = Some((self.snd_max, Some(self.rcv_nxt)));
            self.close_with(super::CloseReason::TimedOut);
            return self.next_segment(now, payload, counters);
        }
        let len = u32::from(has_data && !payload.is_empty());
        if len == 0 && !self.fin_queued {
            return None;
        }
        let t = self.send_range(now, seq, len, len == 0, payload, Kind::Probe, counters);
        self.probe_outstanding = true;
        self.persist_backoff += 1;
        self.arm_persist(now);
        Some(t)
    }

    /// Sends `len` bytes from `seq`, and the FIN after them if `fin`.
    #[expect(
        clippy::too_many_arguments,
        reason = "one call per way a range goes out"
    )]
    fn send_range(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        len: u32,
        fin: bool,
        payload: &mut [u8],
        kind: Kind,
        counters: &mut Counters,
    ) -> super::Transmit {
        let data_start = self.data_start();
        let data_end = data_start + self.send.len() as u32;
        let offset = seq.since(data_start) as usize;
        let n = self.send.copy_out(offset, &mut payload[..len as usize]);
        debug_assert_eq!(n, len as usize);
        let end_data = seq + n as u32;
        let mut f = flags::ACK;
        if n > 0 && end_data == data_end {
            f |= flags::PSH;
        }
        if fin {
            f |= flags::FIN;
        }
        let end = end_data + u32::from(fin);
        if seq < self.snd_max && kind != Kind::Probe {
            counters.retransmits += 1;
            self.retransmits += 1;
            // Karn's rule (RFC 6298 3): a retransmitted segment times nothing.
            self.rtt_probe = None;
        } else if self.rtt_probe.is_none() && end > seq && kind == Kind::Normal {
            self.rtt_probe = Some((end, now));
        }
        if kind == Kind::Normal && seq <= self.snd_nxt {
            self.snd_nxt = self.snd_nxt.max(end);
        }
        if kind != Kind::Probe {
            // A probe's unit is not counted as sent: a peer that drops it (its window
            // still closed) must not see later ACKs beyond its window.
            self.snd_max = self.snd_max.max(end);
            self.arm_retransmit(now);
        }
        let header = self.header(now, seq, f);
        super::Transmit {
            header,
            payload_len: n,
        }
    }
}
