//! Opening: active, passive, simultaneous; SYN retries; bad ACKs and RSTs in SYN states;
//! option negotiation.

use super::*;

fn syn_opts(mss: u16) -> TcpOptions {
    TcpOptions {
        mss: Some(mss),
        ..NO_OPTS
    }
}

fn connect(config: &TcpConfig) -> Harness {
    Harness::new(Connection::connect(
        config,
        endpoints(),
        SeqNumber(LOCAL_ISS),
        Instant::ZERO,
    ))
}

const OUR_SYN: TcpRepr = TcpRepr {
    seq: LOCAL_ISS,
    ack: 0,
    flags: flags::SYN,
    ..RECV
};

#[test]
fn active_open() {
    let mut h = connect(&config());
    h.expect_state(State::SynSent);
    h.recv1(TcpRepr {
        options: syn_opts(1000),
        ..OUR_SYN
    });
    h.recv_nothing();
    h.at(ms(30));
    h.send(
        TcpRepr {
            seq: REMOTE_ISS,
            flags: flags::SYN | flags::ACK,
            window: 30000,
            options: syn_opts(1460),
            ..SEND
        },
        b"",
    );
    h.expect_state(State::Established);
    h.recv1(RECV);
    assert_eq!(h.events(), vec![Event::Connected, Event::Writable]);
    // The SYN timed an RTT sample; our MSS is the smaller of the two.
    let info = h.c.info();
    assert_eq!(info.srtt_us, Some(30_000));
    assert_eq!(info.send_mss, 1000);
    assert_eq!(info.snd_wnd, 30000);
    assert_eq!(h.c.poll_timeout(), None);
}

#[test]
fn passive_open() {
    let syn = TcpRepr {
        seq: REMOTE_ISS,
        ack: 0,
        flags: flags::SYN,
        options: syn_opts(536),
        ..SEND
    };
    let c = Connection::accept_syn(
        &config(),
        endpoints(),
        &Segment {
            header: syn,
            payload: b"",
        },
        SeqNumber(LOCAL_ISS),
        Instant::ZERO,
    );
    let mut h = Harness::new(c);
    h.expect_state(State::SynReceived);
    h.recv1(TcpRepr {
        seq: LOCAL_ISS,
        flags: flags::SYN | flags::ACK,
        options: syn_opts(1000),
        ..RECV
    });
    // The peer's SYN again (our SYN-ACK lost): the SYN-ACK again.
    h.at(ms(10));
    h.send(syn, b"");
    h.recv1(TcpRepr {
        seq: LOCAL_ISS,
        flags: flags::SYN | flags::ACK,
        options: syn_opts(1000),
        ..RECV
    });
    assert_eq!(h.counters.retransmits, 1);
    h.send(SEND, b"");
    h.expect_state(State::Established);
    assert_eq!(h.events(), vec![Event::Connected, Event::Writable]);
    assert_eq!(h.c.info().send_mss, 536);
    h.recv_nothing();
}

#[test]
fn syn_received_bad_ack_gets_rst_and_data_waits() {
    let syn = TcpRepr {
        seq: REMOTE_ISS,
        ack: 0,
        flags: flags::SYN,
        ..SEND
    };
    let mut h = Harness::new(Connection::accept_syn(
        &config(),
        endpoints(),
        &Segment {
            header: syn,
            payload: b"",
        },
        SeqNumber(LOCAL_ISS),
        Instant::ZERO,
    ));
    h.poll();
    // Data written before the handshake waits for it.
    assert_eq!(h.c.write(b"early"), 5);
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 5,
            ..SEND
        },
        b"",
    );
    h.recv1(TcpRepr {
        seq: LOCAL_ISS + 5,
        ack: 0,
        flags: flags::RST,
        window: 0,
        ..RECV
    });
    h.expect_state(State::SynReceived);
    assert_eq!(h.counters.bad_ack, 1);
    h.send(SEND, b"");
    h.expect_state(State::Established);
    h.recv(&[(
        TcpRepr {
            flags: flags::ACK | flags::PSH,
            ..RECV
        },
        b"early",
    )]);
}

#[test]
fn syn_sent_rst_refuses_only_with_acceptable_ack() {
    let mut h = connect(&config());
    h.poll();
    // Without an ACK a RST is not acceptable in SYN-SENT.
    h.send(
        TcpRepr {
            flags: flags::RST,
            ack: 0,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::SynSent);
    // With an ACK that is not for our SYN: dropped (no RST answers a RST).
    h.send(
        TcpRepr {
            flags: flags::RST | flags::ACK,
            ack: LOCAL_ISS + 7,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::SynSent);
    h.recv_nothing();
    h.send(
        TcpRepr {
            flags: flags::RST | flags::ACK,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::Closed);
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::Refused)]);
    assert!(h.c.is_closed());
}

#[test]
fn syn_sent_bad_ack_gets_rst() {
    let mut h = connect(&config());
    h.poll();
    h.send(
        TcpRepr {
            seq: REMOTE_ISS,
            ack: LOCAL_ISS + 100,
            flags: flags::SYN | flags::ACK,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::SynSent);
    h.recv1(TcpRepr {
        seq: LOCAL_ISS + 100,
        ack: 0,
        flags: flags::RST,
        window: 0,
        ..RECV
    });
    // A plain ACK with no SYN is dropped after the ACK check.
    h.send(SEND, b"");
    h.expect_state(State::SynSent);
    h.recv_nothing();
}

#[test]
fn simultaneous_open() {
    let mut h = connect(&config());
    h.poll();
    // Their SYN crosses ours: SYN-RECEIVED, and our SYN again with an ACK.
    h.send(
        TcpRepr {
            seq: REMOTE_ISS,
            ack: 0,
            flags: flags::SYN,
            options: syn_opts(1000),
            ..SEND
        },
        b"",
    );
    h.expect_state(State::SynReceived);
    h.recv1(TcpRepr {
        seq: LOCAL_ISS,
        flags: flags::SYN | flags::ACK,
        options: syn_opts(1000),
        ..RECV
    });
    // Their SYN-ACK: established, nothing more to send.
    h.send(
        TcpRepr {
            seq: REMOTE_ISS,
            flags: flags::SYN | flags::ACK,
            options: syn_opts(1000),
            ..SEND
        },
        b"",
    );
    h.expect_state(State::Established);
    assert_eq!(h.events(), vec![Event::Connected, Event::Writable]);
    h.recv_nothing();
    // Data flows.
    h.c.write(b"x");
    h.recv(&[(
        TcpRepr {
            flags: flags::ACK | flags::PSH,
            ..RECV
        },
        b"x",
    )]);
}

#[test]
fn syn_retries_back_off_then_time_out() {
    let mut cfg = config();
    cfg.max_syn_retries = 3;
    let mut h = connect(&cfg);
    let syn = TcpRepr {
        options: syn_opts(1000),
        ..OUR_SYN
    };
    h.recv1(syn);
    // 1 s, then doubled each time: retransmissions at 1, 3, 7 s, giving up at 15 s.
    for at in [1, 3, 7] {
        assert_eq!(h.fire(), Duration::from_secs(at));
        h.recv1(syn);
    }
    assert_eq!(h.counters.retransmits, 3);
    assert_eq!(h.fire(), Duration::from_secs(15));
    h.expect_state(State::Closed);
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::TimedOut)]);
    h.recv_nothing();
}

#[test]
fn karn_no_sample_from_a_retransmitted_syn() {
    let mut h = connect(&config());
    h.poll();
    h.fire();
    h.poll();
    h.at(Duration::from_millis(1100));
    h.send(
        TcpRepr {
            seq: REMOTE_ISS,
            flags: flags::SYN | flags::ACK,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::Established);
    assert_eq!(h.c.info().srtt_us, None);
}

#[test]
fn options_negotiate_to_what_both_offer() {
    let mut cfg = config();
    cfg.sack = true;
    cfg.timestamps = true;
    cfg.window_scale = true;
    cfg.recv_buffer = 1 << 20;
    let mut h = connect(&cfg);
    // Our SYN offers everything; the timestamp clock starts at the offset.
    let syn = h.poll();
    let o = syn[0].0.options;
    assert_eq!(o.mss, Some(1000));
    assert_eq!(o.window_scale, Some(5));
    assert!(o.sack_permitted);
    assert!(o.timestamp.is_some_and(|(_, ecr)| ecr == 0));
    assert_eq!(syn[0].0.window, 65535);
    // The peer takes only window scaling.
    h.send(
        TcpRepr {
            seq: REMOTE_ISS,
            flags: flags::SYN | flags::ACK,
            window: 1000,
            options: TcpOptions {
                mss: Some(9000),
                window_scale: Some(3),
                ..NO_OPTS
            },
            ..SEND
        },
        b"",
    );
    let info = h.c.info();
    assert!(!info.sack && !info.timestamps);
    assert_eq!((info.snd_wscale, info.rcv_wscale), (3, 5));
    // The SYN-ACK's window is not scaled; later ones are.
    assert_eq!(info.snd_wnd, 1000);
    h.recv1(TcpRepr {
        window: (((1u32 << 20) >> 5) as u16),
        ..RECV
    });
    h.send(
        TcpRepr {
            window: 1000,
            ..SEND
        },
        b"",
    );
    assert_eq!(h.c.info().snd_wnd, 8000);
}

/// RFC 9293 3.10.7.3: in SYN-SENT, SEG.ACK =< ISS is unacceptable, SEG.ACK = ISS included.
#[test]
fn syn_sent_ack_of_iss_gets_rst() {
    let mut h = connect(&config());
    h.poll();
    h.send(
        TcpRepr {
            seq: REMOTE_ISS,
            ack: LOCAL_ISS,
            flags: flags::SYN | flags::ACK,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::SynSent);
    h.recv1(TcpRepr {
        seq: LOCAL_ISS,
        ack: 0,
        flags: flags::RST,
        window: 0,
        ..RECV
    });
    assert_eq!(h.counters.bad_ack, 1);
}

/// RFC 9293 3.10.7.4: in SYN-RECEIVED an ACK is acceptable if SND.UNA < SEG.ACK =<
/// SND.NXT; SEG.ACK = SND.UNA (= ISS) is not.
#[test]
fn syn_received_ack_of_snd_una_gets_rst() {
    let syn = TcpRepr {
        seq: REMOTE_ISS,
        ack: 0,
        flags: flags::SYN,
        ..SEND
    };
    let mut h = Harness::new(Connection::accept_syn(
        &config(),
        endpoints(),
        &Segment {
            header: syn,
            payload: b"",
        },
        SeqNumber(LOCAL_ISS),
        Instant::ZERO,
    ));
    h.poll();
    h.send(
        TcpRepr {
            ack: LOCAL_ISS,
            ..SEND
        },
        b"",
    );
    h.recv1(TcpRepr {
        seq: LOCAL_ISS,
        ack: 0,
        flags: flags::RST,
        window: 0,
        ..RECV
    });
    h.expect_state(State::SynReceived);
    assert_eq!(h.counters.bad_ack, 1);
}

/// The SYN-ACK to our SYN after `timeouts` retransmissions of it; the window then.
fn cwnd_after_syn_timeouts(timeouts: usize) -> u32 {
    let mut h = connect(&config());
    h.poll();
    for _ in 0..timeouts {
        h.fire();
        assert_eq!(h.poll().len(), 1);
    }
    h.send(
        TcpRepr {
            seq: REMOTE_ISS,
            flags: flags::SYN | flags::ACK,
            options: syn_opts(1000),
            ..SEND
        },
        b"",
    );
    h.expect_state(State::Established);
    h.c.info().cwnd
}

/// RFC 6928 2: one SYN retransmission (likely spurious with a 1 s initial RTO) keeps the
/// initial window.
#[test]
fn one_syn_retransmission_keeps_the_initial_window() {
    assert_eq!(cwnd_after_syn_timeouts(1), 10_000);
}

/// RFC 5681 3.1 / RFC 6928 2: after a lost SYN (more than one retransmission, as RFC 6928
/// recommends) the initial window is one segment.
#[test]
fn initial_window_is_one_segment_after_a_lost_syn() {
    assert_eq!(cwnd_after_syn_timeouts(2), 1000);
    let mut h = connect(&config());
    h.poll();
    for _ in 0..2 {
        h.fire();
        assert_eq!(h.poll().len(), 1);
    }
    h.send(
        TcpRepr {
            seq: REMOTE_ISS,
            flags: flags::SYN | flags::ACK,
            options: syn_opts(1000),
            ..SEND
        },
        b"",
    );
    h.expect_state(State::Established);
    h.poll();
    assert_eq!(h.c.info().cwnd, 1000);
    h.c.write(&[1; 3000]);
    assert_eq!(h.poll().len(), 1);
}

/// A duplicate SYN in SYN-RECEIVED is answered with the SYN-ACK at most once per 500 ms
/// (Linux `tcp_check_req` through `tcp_oow_rate_limited`).
#[test]
fn syn_ack_for_duplicate_syns_is_rate_limited() {
    let syn = TcpRepr {
        seq: REMOTE_ISS,
        ack: 0,
        flags: flags::SYN,
        ..SEND
    };
    let mut h = Harness::new(Connection::accept_syn(
        &config(),
        endpoints(),
        &Segment {
            header: syn,
            payload: b"",
        },
        SeqNumber(LOCAL_ISS),
        Instant::ZERO,
    ));
    assert_eq!(h.poll().len(), 1);
    h.at(ms(10));
    h.send(syn, b"");
    assert_eq!(h.poll().len(), 1);
    for _ in 0..5 {
        h.send(syn, b"");
        assert_eq!(h.poll().len(), 0);
    }
    h.at(ms(510));
    h.send(syn, b"");
    let out = h.poll();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.flags, flags::SYN | flags::ACK);
}
