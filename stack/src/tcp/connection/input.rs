//! Segment arrival, RFC 9293 3.10.7 in its order: SYN-SENT's own rules; then for the
//! other states PAWS (RFC 7323 5), the sequence acceptability test, RST (with RFC 5961
//! 3's exact-match rule), SYN (RFC 5961 4, RFC 6191 in TIME-WAIT), the ACK (RFC 5961 5's
//! acceptable range, loss detection, window update), the text, and the FIN.
//!
//! Every value a peer controls goes through wrapping sequence arithmetic or saturating
//! sums; nothing here indexes by or allocates for a peer's number.

use super::{
    CloseReason, Connection, Counters, EV_CONNECTED, EV_PEER_CLOSED, EV_READABLE, EV_WRITABLE,
    Segment, State, Timer,
};
use crate::{
    tcp::{
        congestion::{CongestionControl, Controller},
        options::{self, PAWS_IDLE},
        recv::Placed,
        send::DUP_THRESH,
        seq::SeqNumber,
    },
    time::Instant,
    wire::tcp::{TcpRepr, flags},
};

/// Linux's `tcp_invalid_ratelimit` default.
const OOW_ACK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

impl Connection {
    /// Takes a segment that arrived for this connection's four-tuple.
    pub fn handle_segment(&mut self, now: Instant, segment: &Segment<'_>, counters: &mut Counters) {
        counters.segments_in += 1;
        let h = &segment.header;
        if h.flags & flags::RST != 0 {
            counters.rst_received += 1;
        }
        if h.flags & (flags::SYN | flags::RST) == flags::SYN | flags::RST {
            counters.bad_options += 1;
            return;
        }
        match self.state {
            State::Closed | State::Listen => {}
            State::SynSent => self.on_syn_sent(now, segment, counters),
            _ => self.on_segment(now, segment, counters),
        }
    }

    /// RFC 9293 3.10.7.3.
    fn on_syn_sent(&mut self, now: Instant, segment: &Segment<'_>, counters: &mut Counters) {
        let h = &segment.header;
        let ack = SeqNumber(h.ack);
        let has_ack = h.flags & flags::ACK != 0;
        if has_ack && (ack <= self.iss || ack > self.snd_max) {
            // "If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset (unless the RST bit is
            // set, if so drop the segment and return) <SEQ=SEG.ACK><CTL=RST>".
            counters.bad_ack += 1;
            if h.flags & flags::RST == 0 {
                self.rst_pending = Some((ack, None));
            }
            return;
        }
        if h.flags & flags::RST != 0 {
            // RFC 5961 3.2: in SYN-SENT a RST is acceptable if it acknowledges our SYN.
            if has_ack {
                self.close_with(CloseReason::Refused);
            } else {
                counters.rst_ignored += 1;
            }
            return;
        }
        if h.flags & flags::SYN == 0 {
            return;
        }
        self.on_peer_syn(h, now);
        self.last_recv = now;
        if has_ack {
            self.snd_una = ack;
            self.snd_nxt = self.snd_nxt.max(ack);
            self.take_rtt_sample(now, ack);
            self.timer = Timer::Idle;
            self.retries = 0;
            self.rcv_adv = self.rcv_nxt + self.syn_window();
            self.establish(now);
            // Data in a SYN-ACK is not taken (no TCP Fast Open): it is not ACKed, and the
            // peer sends it again.
            self.ack_now = true;
        } else {
            // Simultaneous open: our SYN again, now with an ACK (RFC 9293 3.5 figure 7).
            self.set_state(State::SynReceived);
            self.snd_nxt = self.iss;
        }
    }

    fn establish(&mut self, now: Instant) {
        // RFC 5681 3.1: "if the SYN or SYN/ACK is lost, the initial window used by a
        // sender after a correctly transmitted SYN MUST be one segment consisting of at
        // most SMSS bytes". RFC 6928 2, with a 1 s initial RTO making a spurious SYN
        // retransmission likely: "it is RECOMMENDED that implementations refrain from
        // resetting the initial window to 1 segment, unless there have been more than one
        // SYN or SYN/ACK retransmissions" (as Linux's `tcp_init_transfer`).
        if self.syn_timeouts > 1 {
            self.cc = Controller::after_lost_syn(self.config.congestion, self.eff_mss, now);
        }
        self.set_state(State::Established);
        self.events |= EV_CONNECTED;
        if self.send.room() > 0 {
            self.events |= EV_WRITABLE;
        }
        if self.fin_queued {
            self.set_state(State::FinWait1);
        }
    }

    /// RFC 9293 3.10.7.4, for SYN-RECEIVED and the synchronized states: its checks in
    /// order, one step each, the SYN check first (RFC 5961 4.2) and PAWS (RFC 7323 5.3)
    /// before the sequence number.
    fn on_segment(&mut self, now: Instant, segment: &Segment<'_>, counters: &mut Counters) {
        let h = &segment.header;
        let rst = h.flags & flags::RST != 0;
        let has_ack = h.flags & flags::ACK != 0;
        let ack = SeqNumber(h.ack);

        let Some((seq, syn)) = self.syn_in_syn_received(now, h) else {
            return;
        };

        if syn && !rst {
            self.on_syn(now, h, counters);
            return;
        }

        let payload_len = segment.payload.len().min(u32::MAX as usize / 2) as u32;
        let fin = h.flags & flags::FIN != 0;
        let seg_len = payload_len + u32::from(syn) + u32::from(fin);

        if !rst && !self.paws_passes(now, h, seg_len, counters) {
            return;
        }

        if !self.acceptable(seq, seg_len) {
            counters.out_of_window += 1;
            if rst {
                counters.rst_ignored += 1;
            } else {
                self.on_unacceptable(now, seq, payload_len, seg_len, fin);
            }
            return;
        }
        self.last_recv = now;
        self.keepalive_sent = 0;

        if rst {
            self.on_rst(now, seq, counters);
            return;
        }

        if !has_ack {
            // "if the ACK bit is off, drop the segment and return".
            return;
        }
        if self.state == State::SynReceived && !self.ack_in_syn_received(now, h, seq, ack, counters)
        {
            return;
        }
        if !self.on_ack(now, h, seq, ack, payload_len, fin, counters) {
            return;
        }
        if self.fin_acked() && !self.on_fin_acked(now) {
            return;
        }

        self.on_text(now, seq, segment.payload, fin, counters);
    }

    /// In SYN-RECEIVED, a SYN at the peer's ISN: the peer's SYN-ACK in a simultaneous
    /// open, or its SYN again. Returns the sequence number and SYN bit the later checks
    /// see, or `None` when the segment is done with.
    fn syn_in_syn_received(&mut self, now: Instant, h: &TcpRepr) -> Option<(SeqNumber, bool)> {
        let mut seq = SeqNumber(h.seq);
        let mut syn = h.flags & flags::SYN != 0;
        let rst = h.flags & flags::RST != 0;
        let has_ack = h.flags & flags::ACK != 0;
        let ack = SeqNumber(h.ack);
        if self.state == State::SynReceived && syn && seq == self.irs && !rst {
            if has_ack && ack > self.snd_una && ack <= self.snd_max {
                // Simultaneous open: the peer's SYN-ACK. Its SYN we hold already; its ACK
                // completes the handshake.
                seq += 1;
                syn = false;
            } else {
                // The peer's SYN again: our SYN-ACK was lost. Answered at most once per
                // OOW_ACK_INTERVAL, as Linux's `tcp_check_req` does through
                // `tcp_oow_rate_limited` (a SYN is limited although it occupies sequence
                // space), so a flood of duplicate SYNs gets no flood of SYN-ACKs; the
                // retransmission timer sends it in any case.
                if self.oow_answer(now, 0) {
                    self.snd_nxt = self.iss;
                }
                return None;
            }
        }
        Some((seq, syn))
    }

    /// A SYN (RFC 9293 3.10.7.4 fourth check, which RFC 5961 4.2 moves ahead of the
    /// others).
    fn on_syn(&mut self, now: Instant, h: &TcpRepr, counters: &mut Counters) {
        if self.state == State::TimeWait {
            // A new SYN for this four-tuple: RFC 6191 decides.
            self.time_wait_syn(h, counters, now);
        } else {
            // RFC 5961 4.2: "If the SYN bit is set, irrespective of the sequence
            // number, TCP MUST send an ACK (also referred to as challenge ACK)".
            self.challenge_ack(now, counters);
        }
    }

    /// PAWS (RFC 7323 5.3), before the sequence check, for a segment without RST: false
    /// if the segment is dropped. The ACK answering a reject is rate-limited as for a
    /// segment outside the window (`oow_answer`).
    fn paws_passes(
        &mut self,
        now: Instant,
        h: &TcpRepr,
        seg_len: u32,
        counters: &mut Counters,
    ) -> bool {
        if !self.opts.timestamps {
            return true;
        }
        match h.options.timestamp {
            Some((tsval, _))
                if options::ts_before(tsval, self.ts_recent)
                    && now - self.ts_recent_at < PAWS_IDLE =>
            {
                counters.paws_rejected += 1;
                if self.oow_answer(now, seg_len) {
                    self.ack_now = true;
                }
                false
            }
            Some(_) => true,
            None => {
                // RFC 7323 3.2: "If a non-<RST> segment is received without a TSopt, a
                // TCP SHOULD silently drop the segment."
                counters.bad_options += 1;
                false
            }
        }
    }

    /// A segment without RST that failed the sequence check (RFC 9293 3.10.7.4 first
    /// check): dropped, and answered.
    fn on_unacceptable(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        payload_len: u32,
        seg_len: u32,
        fin: bool,
    ) {
        if self.state == State::TimeWait && fin && seq + payload_len + 1 == self.rcv_nxt {
            // The peer's FIN again (our last ACK was lost): ACK, restart 2 MSL.
            self.enter_time_wait(now);
        }
        if payload_len > 0 && seq + payload_len <= self.rcv_nxt && self.opts.sack {
            // RFC 2883: report the duplicate.
            self.dsack = Some((seq, seq + payload_len));
        }
        // "an acknowledgment should be sent in reply".
        if self.oow_answer(now, seg_len) {
            self.ack_now = true;
        }
    }

    /// May a segment dropped by PAWS or the sequence test (or a SYN repeated in
    /// SYN-RECEIVED) be answered now? One limiter per connection for all of them, as
    /// Linux's `tcp_oow_rate_limited`: a segment occupying sequence space (data, FIN)
    /// always; a bare one at most once per OOW_ACK_INTERVAL (`tcp_invalid_ratelimit`),
    /// since two ends that each find the other's bare ACKs unacceptable would otherwise
    /// answer each other forever, and a poisoned or stale peer would get an ACK per
    /// segment.
    fn oow_answer(&mut self, now: Instant, seg_len: u32) -> bool {
        if seg_len > 0 {
            return true;
        }
        if self
            .last_oow_ack
            .is_some_and(|at| now - at < OOW_ACK_INTERVAL)
        {
            return false;
        }
        self.last_oow_ack = Some(now);
        true
    }

    /// An acceptable RST (RFC 9293 3.10.7.4 second check).
    fn on_rst(&mut self, now: Instant, seq: SeqNumber, counters: &mut Counters) {
        // RFC 5961 3.2: reset only on an exact match; in the window, challenge.
        if seq == self.rcv_nxt {
            let reason = match self.state {
                State::Closing | State::LastAck | State::TimeWait => CloseReason::Normal,
                _ => CloseReason::Reset,
            };
            self.close_with(reason);
        } else {
            self.challenge_ack(now, counters);
        }
    }

    /// RFC 7323 4.3: TS.Recent from a segment that covers Last.ACK.sent; called once the
    /// ACK is found acceptable (RFC 5961 5.2 first, as Linux's `tcp_ack` with
    /// `FLAG_UPDATE_TS_RECENT`), so a blind segment with a bogus ACK cannot poison it.
    fn update_ts_recent(&mut self, now: Instant, h: &TcpRepr, seq: SeqNumber) {
        if let Some((tsval, _)) = h.options.timestamp.filter(|_| self.opts.timestamps)
            && !options::ts_before(tsval, self.ts_recent)
            && seq <= self.last_ack_sent
        {
            self.ts_recent = tsval;
            self.ts_recent_at = now;
        }
    }

    /// The ACK in SYN-RECEIVED (RFC 9293 3.10.7.4 fifth check): an ACK of our SYN-ACK
    /// establishes the connection. False if the segment is dropped.
    fn ack_in_syn_received(
        &mut self,
        now: Instant,
        h: &TcpRepr,
        seq: SeqNumber,
        ack: SeqNumber,
        counters: &mut Counters,
    ) -> bool {
        if ack <= self.snd_una || ack > self.snd_max {
            // "If the segment acknowledgment is not acceptable, form a reset segment
            // <SEQ=SEG.ACK><CTL=RST> and send it."
            counters.bad_ack += 1;
            self.rst_pending = Some((ack, None));
            return false;
        }
        self.snd_wnd = u32::from(h.window) << self.opts.snd_wscale;
        self.max_snd_wnd = self.max_snd_wnd.max(self.snd_wnd);
        self.snd_wl1 = seq;
        self.snd_wl2 = ack;
        self.snd_una = self.iss + 1;
        self.take_rtt_sample(now, ack);
        self.timer = Timer::Idle;
        self.retries = 0;
        self.establish(now);
        true
    }

    /// Our FIN acknowledged (RFC 9293 3.10.7.4 fifth check, FIN-WAIT-1, CLOSING and
    /// LAST-ACK): false if that closed the connection.
    fn on_fin_acked(&mut self, now: Instant) -> bool {
        match self.state {
            State::FinWait1 => {
                self.set_state(State::FinWait2);
                if self.orphaned {
                    self.timer = super::Timer::FinWait2 {
                        at: now + self.config.msl * 2,
                    };
                }
            }
            State::Closing => self.enter_time_wait(now),
            State::LastAck => {
                self.close_with(CloseReason::Normal);
                return false;
            }
            _ => {}
        }
        true
    }

    /// RFC 9293 3.10.7.4's table: is any of the segment inside the receive window? A bare
    /// segment exactly at the right edge is taken too (as Linux does): a sender that
    /// filled our window sends its ACKs with SEG.SEQ = SND.NXT = that edge.
    fn acceptable(&self, seq: SeqNumber, seg_len: u32) -> bool {
        let wnd = self.rcv_adv.since(self.rcv_nxt);
        match (seg_len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            (0, _) => seq.in_window(self.rcv_nxt, wnd + 1),
            (_, 0) => false,
            // RFC 9293's two tests (first or last octet in the window) miss a segment
            // holding the whole window, from before RCV.NXT to past its right edge; it
            // overlaps the window as much as a segment can, and is taken (trimmed).
            (_, _) => {
                seq.in_window(self.rcv_nxt, wnd)
                    || (seq + (seg_len - 1)).in_window(self.rcv_nxt, wnd)
                    || self.rcv_nxt.in_window(seq, seg_len)
            }
        }
    }

    /// A SYN in TIME-WAIT (RFC 6191 2, RFC 9293 3.10.7.4 / RFC 1122 4.2.2.13): with
    /// timestamps, acceptable if its TSval is newer than TS.Recent; without, if its
    /// sequence number is above RCV.NXT. Then this incarnation ends and the owner gives the
    /// SYN to the listener. Otherwise it is a SYN in a synchronized state: challenge ACK.
    fn time_wait_syn(&mut self, h: &TcpRepr, counters: &mut Counters, now: Instant) {
        let seq = SeqNumber(h.seq);
        let acceptable = if h.flags & flags::ACK != 0 {
            false
        } else {
            match (self.opts.timestamps, h.options.timestamp) {
                (true, Some((tsval, _))) => options::ts_before(self.ts_recent, tsval),
                (true, None) => seq > self.rcv_nxt,
                (false, _) => seq > self.rcv_nxt,
            }
        };
        if acceptable {
            self.syn_reopens = true;
            self.close_with(CloseReason::Normal);
        } else {
            self.challenge_ack(now, counters);
        }
    }

    fn take_rtt_sample(&mut self, now: Instant, ack: SeqNumber) {
        if let Some((end, sent)) = self.rtt_probe
            && ack >= end
        {
            self.rtt.on_sample(now - sent);
            self.rtt_probe = None;
        }
    }

    /// The ACK field (RFC 9293 3.10.7.4 fifth check). Returns false if the segment is
    /// dropped.
    #[expect(clippy::too_many_arguments, reason = "the segment's parsed fields")]
    fn on_ack(
        &mut self,
        now: Instant,
        h: &TcpRepr,
        seq: SeqNumber,
        ack: SeqNumber,
        payload_len: u32,
        fin: bool,
        counters: &mut Counters,
    ) -> bool {
        // RFC 5961 5.2: acceptable if (SND.UNA - MAX.SND.WND) <= SEG.ACK <= SND.NXT.
        let oldest = self.snd_una - self.max_snd_wnd.max(1);
        let top = self.snd_max + u32::from(self.probe_outstanding);
        if ack > top || ack < oldest {
            counters.bad_ack += 1;
            self.challenge_ack(now, counters);
            return false;
        }
        self.update_ts_recent(now, h, seq);
        if ack > self.snd_max {
            // The peer took a zero-window probe's byte.
            self.snd_max = ack;
        }
        if self.snd_wnd == 0 && matches!(self.timer, Timer::Persist { .. }) {
            // Any ACK answers a zero-window probe: only silence counts towards giving up.
            self.retries = 0;
        }
        let window = u32::from(h.window) << self.opts.snd_wscale;
        let newly_sacked = self.on_sack_blocks(h, ack, counters);

        if ack > self.snd_una {
            self.on_ack_of_new_data(now, ack, newly_sacked);
        } else if ack == self.snd_una {
            // RFC 5681 2's duplicate ACK: data outstanding, nothing new in the segment,
            // the same window (RFC 6675 also counts an ACK that SACKs new data).
            // With SACK an ACK carrying data counts too when it SACKs new data, or loss
            // would go unseen while the peer sends as well.
            let dup = self.snd_max > self.snd_una
                && window != 0
                && (newly_sacked > 0
                    || (payload_len == 0 && !fin && window == self.snd_wnd && !self.opts.sack));
            if dup {
                self.on_dup_ack(now, counters);
            }
        }

        self.update_send_window(seq, ack, window);
        true
    }

    /// An ACK of new data (RFC 9293 3.10.7.4 fifth check, "SND.UNA < SEG.ACK =< SND.NXT"):
    /// the send buffer, SND.UNA, `recover`, the RTT sample, the retransmission timer, and
    /// congestion control.
    fn on_ack_of_new_data(&mut self, now: Instant, ack: SeqNumber, newly_sacked: u32) {
        let partial_ack = self.recovery.is_some_and(|point| ack < point);
        let acked = ack.since(self.snd_una);
        let data_start = self.data_start();
        let data_acked = (ack.since(data_start) as usize).min(self.send.len());
        if self.fin_seq().is_some_and(|f| ack > f) {
            self.fin_was_acked = true;
        }
        self.send.consume(data_acked);
        if data_acked > 0 && self.writable() > 0 {
            self.events |= EV_WRITABLE;
        }
        self.snd_una = ack;
        if self.recovery.is_none() && self.snd_una > self.recover {
            // RFC 6582's `recover` follows SND.UNA outside recovery (as Linux's
            // `high_seq` does in effect): left behind, it would fall 2^31 behind
            // after 2 GiB without a loss, seem ahead in wrapping arithmetic and hold
            // off every fast retransmit for the next 2 GiB.
            self.recover = self.snd_una;
        }
        self.snd_nxt = self.snd_nxt.max(ack);
        self.probe_outstanding = false;
        // RFC 5681 3.1 grows cwnd by "N ... the number of previously unacknowledged bytes
        // acknowledged in the incoming ACK": bytes SACKed earlier counted when SACKed, so
        // cumulatively acknowledged now they count no more (each byte once, as Linux's
        // `tcp_ack` counts `acked_sacked` from the delivered count).
        let sacked_before = self.scoreboard.sacked_bytes();
        self.scoreboard.advance(ack);
        let was_sacked = sacked_before.saturating_sub(self.scoreboard.sacked_bytes());
        let delivered = acked
            .saturating_sub(was_sacked)
            .saturating_add(newly_sacked);
        self.retries = 0;
        self.persist_backoff = 0;
        // Karn's rule: only a segment sent once times a sample, and only a sample
        // ends the backoff (RFC 6298 5.7's "collapse").
        self.take_rtt_sample(now, ack);
        if self.snd_una == self.snd_max {
            if matches!(self.timer, Timer::Retransmit { .. }) {
                self.timer = Timer::Idle;
            }
        } else if !partial_ack || self.opts.sack {
            // RFC 6298 5.3. A NewReno partial ACK restarts it only the first time
            // (RFC 6582 3.2 step 5, the impatient variant; see `on_new_ack`).
            self.restart_retransmit(now);
        }
        self.on_new_ack(now, ack, acked, delivered);
    }

    /// The send window from the newest segment only (RFC 9293 3.10.7.4: SND.WL1/SND.WL2).
    fn update_send_window(&mut self, seq: SeqNumber, ack: SeqNumber, window: u32) {
        // Window update (RFC 9293 3.10.7.4): from the newest segment only.
        if ack >= self.snd_una
            && (self.snd_wl1 < seq || (self.snd_wl1 == seq && self.snd_wl2 <= ack))
        {
            let was_zero = self.snd_wnd == 0;
            self.snd_wnd = window;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            self.snd_wl1 = seq;
            self.snd_wl2 = ack;
            if was_zero && window > 0 {
                self.persist_backoff = 0;
                self.probe_outstanding = false;
                if matches!(self.timer, Timer::Persist { .. }) {
                    self.timer = Timer::Idle;
                }
            }
        }
    }

    /// SACK blocks (RFC 2018) into the scoreboard; D-SACKs (RFC 2883 4) counted. Returns
    /// the bytes newly SACKed.
    fn on_sack_blocks(&mut self, h: &TcpRepr, ack: SeqNumber, counters: &mut Counters) -> u32 {
        if !self.opts.sack {
            return 0;
        }
        let blocks = &h.options.sack_blocks;
        let mut newly = 0u32;
        for (i, block) in blocks.iter().enumerate() {
            let Some((l, r)) = *block else { continue };
            let (l, r) = (SeqNumber(l), SeqNumber(r));
            if r <= l {
                continue;
            }
            if i == 0 {
                // RFC 2883 4: a first block below the cumulative ACK, or inside the
                // second block, reports a duplicate.
                let inside_second =
                    blocks[1].is_some_and(|(l2, r2)| SeqNumber(l2) <= l && r <= SeqNumber(r2));
                if r <= ack || inside_second {
                    counters.dsack_received += 1;
                    continue;
                }
            }
            let l = l.max(ack).max(self.snd_una);
            if r > self.snd_max || l >= r {
                continue;
            }
            newly = newly.saturating_add(self.scoreboard.add(l, r));
        }
        newly
    }

    /// Congestion control and recovery on an ACK of new data: `acked` bytes cumulatively
    /// acknowledged, `delivered` bytes delivered for the first time (newly SACKed, or
    /// acknowledged without having been SACKed before).
    fn on_new_ack(&mut self, now: Instant, ack: SeqNumber, acked: u32, delivered: u32) {
        match self.recovery {
            Some(point) if ack >= point => {
                // Full acknowledgment: recovery ends (RFC 6582 3.2 step 3, RFC 6675 5).
                self.recovery = None;
                self.inflation = 0;
                self.dupacks = 0;
                self.cc.on_recovery_end(now);
            }
            Some(_) => {
                if !self.opts.sack {
                    // RFC 6582 3.2 step 5, partial ACK: retransmit the first unacknowledged
                    // segment, deflate by the amount acknowledged and add back one SMSS if
                    // that was at least one SMSS.
                    self.rtx_una = true;
                    self.inflation = self.inflation.saturating_sub(acked);
                    if acked >= self.eff_mss {
                        self.inflation = self.inflation.saturating_add(self.eff_mss);
                    }
                    // "For the first partial ACK that arrives during fast recovery, also
                    // reset the retransmit timer" (the impatient variant): later partial
                    // ACKs leave it, so many losses in one window fall back on the
                    // timeout instead of repairing one segment per RTT.
                    if std::mem::take(&mut self.first_partial_ack) {
                        self.restart_retransmit(now);
                    }
                }
            }
            None => {
                self.dupacks = 0;
                let srtt = self.rtt.srtt().unwrap_or(self.rtt.rto());
                self.cc.on_ack(now, delivered, srtt);
            }
        }
    }

    fn on_dup_ack(&mut self, now: Instant, counters: &mut Counters) {
        self.dupacks = self.dupacks.saturating_add(1);
        if self.recovery.is_some() {
            if !self.opts.sack {
                // RFC 5681 3.2 step 4: each further duplicate inflates cwnd by one SMSS.
                self.inflation = self.inflation.saturating_add(self.eff_mss);
            }
            return;
        }
        let lost = self.opts.sack && self.scoreboard.is_lost(self.snd_una, self.eff_mss);
        // RFC 6582 3.2 step 2: not while the cumulative ACK is below `recover` (duplicate
        // ACKs for data sent before a timeout).
        if (self.dupacks >= DUP_THRESH || lost) && self.snd_una >= self.recover {
            let flight = self.snd_max.since(self.snd_una);
            self.cc.on_congestion_event(now, flight);
            self.recovery = Some(self.snd_max);
            self.recover = self.snd_max;
            self.rtx_una = true;
            self.first_partial_ack = true;
            self.rtt_probe = None;
            counters.fast_retransmits += 1;
            if self.opts.sack {
                self.scoreboard.high_rxt = self.snd_una;
            } else {
                // RFC 5681 3.2 step 3: cwnd = ssthresh + 3 * SMSS.
                self.inflation = DUP_THRESH * self.eff_mss;
            }
        }
    }

    /// The segment text and FIN (RFC 9293 3.10.7.4 seventh and eighth checks).
    fn on_text(
        &mut self,
        now: Instant,
        seq: SeqNumber,
        payload: &[u8],
        fin: bool,
        counters: &mut Counters,
    ) {
        let receiving = matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        );
        if !receiving {
            // After the peer's FIN, text "should not occur"; ignore it. A repeated FIN is
            // answered.
            if fin {
                self.ack_now = true;
                if self.state == State::TimeWait {
                    self.enter_time_wait(now);
                }
            }
            return;
        }
        let payload = &payload[..payload.len().min(u32::MAX as usize / 2)];
        if !payload.is_empty() && self.orphaned {
            // RFC 9293 3.10.4 / RFC 2525 2.17: nobody will read it; tell the peer.
            self.rst_pending = Some((self.snd_max, Some(self.rcv_nxt)));
            self.close_with(CloseReason::Aborted);
            return;
        }
        let mut fin_seq = fin.then(|| seq + payload.len() as u32);
        if !payload.is_empty() {
            // Trim what we hold already, and what lies past the window.
            let skip = self.rcv_nxt.since(seq) as usize;
            let window_end = self.rcv_adv;
            let end = seq + payload.len() as u32;
            let cut = end.since(window_end) as usize;
            if cut > 0 {
                counters.recv_buffer_full += 1;
                fin_seq = None;
            }
            if skip > 0 && self.opts.sack {
                self.dsack = Some((seq, self.rcv_nxt.min(end)));
            }
            let stop = payload.len().saturating_sub(cut);
            if skip < stop {
                let part = &payload[skip..stop];
                let at = seq + skip as u32;
                let had_holes = self.recv.has_out_of_order();
                match self.recv.insert(self.rcv_nxt, at, part) {
                    Placed::InOrder(n) => {
                        self.rcv_nxt += n as u32;
                        self.events |= EV_READABLE;
                        if had_holes {
                            // RFC 5681 4.2: ACK at once when a segment fills in a gap.
                            self.ack_now = true;
                        } else {
                            self.schedule_ack(now);
                        }
                    }
                    Placed::OutOfOrder => self.ack_now = true,
                    Placed::Dropped => {
                        counters.ooo_overflow += 1;
                        self.ack_now = true;
                        fin_seq = None;
                    }
                }
            } else {
                // All of it a duplicate.
                self.ack_now = true;
            }
        }
        if let Some(f) = fin_seq
            && f >= self.rcv_nxt
        {
            self.peer_fin = Some(f);
            if f > self.rcv_nxt {
                // RFC 5681 4.2: an out-of-order segment, a bare FIN too, is ACKed at once.
                self.ack_now = true;
            }
        }
        if self.peer_fin == Some(self.rcv_nxt) {
            self.peer_fin = None;
            self.on_peer_fin(now);
        }
    }

    /// RFC 9293 3.10.7.4 eighth check, once the FIN is in order.
    fn on_peer_fin(&mut self, now: Instant) {
        self.rcv_nxt += 1;
        self.ack_now = true;
        self.events |= EV_PEER_CLOSED;
        self.peer_fin_seen = true;
        match self.state {
            State::Established => self.set_state(State::CloseWait),
            State::FinWait1 => self.set_state(State::Closing),
            State::FinWait2 => self.enter_time_wait(now),
            _ => {}
        }
    }

    /// RFC 9293 3.8.6.3 / RFC 5681 4.2: ACK at least every second full segment, and
    /// within `delayed_ack` of the first one unacknowledged.
    fn schedule_ack(&mut self, now: Instant) {
        self.unacked_segments += 1;
        match self.config.delayed_ack {
            Some(delay) if self.unacked_segments < 2 => {
                if self.ack_due.is_none() {
                    self.ack_due = Some(now + delay);
                }
            }
            _ => self.ack_now = true,
        }
    }
}
