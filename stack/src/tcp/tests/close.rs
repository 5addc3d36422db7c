//! Closing: active, passive, simultaneous, half-close, TIME-WAIT (its 2 MSL, a repeated
//! FIN, RFC 6191 reuse), close with unread data, data after close.

use super::*;

const FIN: u8 = flags::FIN | flags::ACK;

fn our_fin() -> TcpRepr {
    TcpRepr { flags: FIN, ..RECV }
}

#[test]
fn active_close_with_half_close_then_time_wait() {
    let mut h = established(config());
    h.c.shutdown();
    h.expect_state(State::FinWait1);
    assert_eq!(h.c.write(b"late"), 0);
    h.recv1(our_fin());
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 2,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::FinWait2);
    assert_eq!(h.c.poll_timeout(), None);
    // Half-closed: the peer still sends, we still read and ACK.
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 2,
            ..SEND
        },
        b"more",
    );
    h.recv1(TcpRepr {
        seq: LOCAL_ISS + 2,
        ack: REMOTE_ISS + 5,
        window: 65535 - 4,
        ..RECV
    });
    assert_eq!(h.read_all(), b"more");
    h.at(ms(100));
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 5,
            ack: LOCAL_ISS + 2,
            flags: FIN,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::TimeWait);
    // The FIN takes a unit of the window; its right edge stays put.
    h.recv1(TcpRepr {
        seq: LOCAL_ISS + 2,
        ack: REMOTE_ISS + 6,
        window: 65535 - 5,
        ..RECV
    });
    assert_eq!(h.events(), vec![Event::Readable, Event::PeerClosed]);
    // 2 MSL.
    assert_eq!(h.fire(), ms(100) + Duration::from_secs(60));
    h.expect_state(State::Closed);
    assert!(h.c.is_closed());
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::Normal)]);
}

#[test]
fn fin_with_data_waits_for_the_data() {
    let mut h = established(config());
    h.c.write(b"bye");
    h.c.shutdown();
    h.recv(&[(
        TcpRepr {
            flags: FIN | flags::PSH,
            ..RECV
        },
        b"bye",
    )]);
    // The peer ACKs the data only: still FIN-WAIT-1; then the FIN.
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 4,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::FinWait1);
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 5,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::FinWait2);
}

#[test]
fn passive_close() {
    let mut h = established(config());
    h.send(TcpRepr { flags: FIN, ..SEND }, b"");
    h.expect_state(State::CloseWait);
    h.recv1(TcpRepr {
        ack: REMOTE_ISS + 2,
        window: 65534,
        ..RECV
    });
    assert_eq!(h.events(), vec![Event::PeerClosed]);
    // We may still send.
    assert_eq!(h.c.write(b"last"), 4);
    h.c.shutdown();
    h.expect_state(State::LastAck);
    h.recv(&[(
        TcpRepr {
            ack: REMOTE_ISS + 2,
            flags: FIN | flags::PSH,
            window: 65534,
            ..RECV
        },
        b"last",
    )]);
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 2,
            ack: LOCAL_ISS + 6,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::Closed);
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::Normal)]);
    assert_eq!(h.c.poll_timeout(), None);
}

#[test]
fn simultaneous_close() {
    let mut h = established(config());
    h.c.shutdown();
    h.recv1(our_fin());
    // Their FIN crosses ours (it does not ACK ours).
    h.send(TcpRepr { flags: FIN, ..SEND }, b"");
    h.expect_state(State::Closing);
    h.recv1(TcpRepr {
        seq: LOCAL_ISS + 2,
        ack: REMOTE_ISS + 2,
        window: 65534,
        ..RECV
    });
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 2,
            ack: LOCAL_ISS + 2,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::TimeWait);
    // A FIN that also ACKs ours goes straight from FIN-WAIT-1 to TIME-WAIT.
    let mut h = established(config());
    h.c.shutdown();
    h.poll();
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 2,
            flags: FIN,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::TimeWait);
}

#[test]
fn fin_retransmitted_after_a_timeout() {
    let mut h = established(config());
    h.c.shutdown();
    h.recv1(our_fin());
    // The RTO: its 200 ms floor, the handshake's RTT sample being 0 in virtual time.
    assert_eq!(h.fire(), ms(200));
    h.recv1(our_fin());
    assert_eq!(h.counters.retransmits, 1);
}

#[test]
fn time_wait_answers_a_repeated_fin_and_restarts() {
    let mut h = established(config());
    h.c.shutdown();
    h.poll();
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 2,
            flags: FIN,
            ..SEND
        },
        b"",
    );
    h.poll();
    h.at(Duration::from_secs(10));
    // Our last ACK was lost: the FIN again.
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 2,
            flags: FIN,
            ..SEND
        },
        b"",
    );
    h.recv1(TcpRepr {
        seq: LOCAL_ISS + 2,
        ack: REMOTE_ISS + 2,
        window: 65534,
        ..RECV
    });
    assert_eq!(h.fire(), Duration::from_secs(70));
    h.expect_state(State::Closed);
}

fn time_wait(config: TcpConfig) -> Harness {
    let ts = config.timestamps;
    let mut h = established(config);
    h.c.shutdown();
    h.poll();
    // TSecr is not checked (RFC 7323 does not ask it), so 0 does.
    let o = TcpOptions {
        timestamp: ts.then_some((PEER_TS + 10, 0)),
        ..NO_OPTS
    };
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 2,
            flags: FIN,
            options: o,
            ..SEND
        },
        b"",
    );
    h.poll();
    h.expect_state(State::TimeWait);
    h
}

#[test]
fn time_wait_reuse_by_sequence_number() {
    let mut h = time_wait(config());
    h.at(Duration::from_secs(5));
    // An old or equal sequence number: a SYN in a synchronized state, challenge ACK.
    let syn = TcpRepr {
        seq: REMOTE_ISS + 2,
        ack: 0,
        flags: flags::SYN,
        ..SEND
    };
    h.send(syn, b"");
    h.recv1(TcpRepr {
        seq: LOCAL_ISS + 2,
        ack: REMOTE_ISS + 2,
        window: 65534,
        ..RECV
    });
    assert!(!h.c.syn_reopens());
    h.expect_state(State::TimeWait);
    // Above RCV.NXT: a new incarnation may start (RFC 6191 without timestamps).
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 100_000,
            ..syn
        },
        b"",
    );
    assert!(h.c.syn_reopens());
    assert!(h.c.is_closed());
    h.recv_nothing();
}

#[test]
fn time_wait_reuse_by_timestamp() {
    let cfg = TcpConfig {
        timestamps: true,
        ..config()
    };
    let mut h = time_wait(cfg);
    h.at(Duration::from_secs(5));
    // A lower sequence number, but a newer timestamp: acceptable (RFC 6191 2).
    let syn = TcpRepr {
        seq: REMOTE_ISS - 5000,
        ack: 0,
        flags: flags::SYN,
        options: TcpOptions {
            timestamp: Some((PEER_TS + 5000, 0)),
            ..NO_OPTS
        },
        ..SEND
    };
    // An older timestamp first: refused.
    h.send(
        TcpRepr {
            options: TcpOptions {
                timestamp: Some((PEER_TS, 0)),
                ..NO_OPTS
            },
            ..syn
        },
        b"",
    );
    assert!(!h.c.syn_reopens());
    assert_eq!(h.counters.challenge_acks, 1);
    h.send(syn, b"");
    assert!(h.c.syn_reopens());
    h.expect_state(State::Closed);
}

#[test]
fn out_of_order_fin_waits_for_the_hole() {
    let mut h = established(config());
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1 + 3,
            flags: FIN,
            ..SEND
        },
        b"def",
    );
    h.poll();
    h.expect_state(State::Established);
    h.send(SEND, b"abc");
    h.expect_state(State::CloseWait);
    h.recv1(TcpRepr {
        ack: REMOTE_ISS + 1 + 7,
        window: 65535 - 7,
        ..RECV
    });
    assert_eq!(h.read_all(), b"abcdef");
    assert_eq!(h.events(), vec![Event::Readable, Event::PeerClosed]);
}

#[test]
fn close_with_unread_data_resets() {
    let mut h = established(config());
    h.send(SEND, b"unread");
    h.poll();
    h.c.close();
    h.recv1(TcpRepr {
        flags: flags::RST,
        ack: 0,
        window: 0,
        ..RECV
    });
    assert!(h.c.is_closed());
    assert_eq!(
        h.events(),
        vec![Event::Readable, Event::Closed(CloseReason::Aborted)]
    );
    assert_eq!(h.counters.rst_sent, 1);
}

#[test]
fn data_after_close_resets() {
    let mut h = established(config());
    h.c.close();
    h.recv1(our_fin());
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 2,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::FinWait2);
    // Orphaned FIN-WAIT-2 does not wait forever.
    assert_eq!(
        h.c.poll_timeout(),
        Some(Instant::ZERO + Duration::from_secs(60))
    );
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 2,
            ..SEND
        },
        b"nobody reads this",
    );
    h.recv1(TcpRepr {
        seq: LOCAL_ISS + 2,
        flags: flags::RST | flags::ACK,
        window: 0,
        ..RECV
    });
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::Aborted)]);
}

#[test]
fn orphaned_fin_wait_2_times_out() {
    let mut h = established(config());
    h.c.close();
    h.poll();
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 2,
            ..SEND
        },
        b"",
    );
    assert_eq!(h.fire(), Duration::from_secs(60));
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::TimedOut)]);
}

#[test]
fn rst_in_every_synchronized_state_closes_it() {
    for setup in [
        |_: &mut Harness| {},
        |h: &mut Harness| h.c.shutdown(),
        |h: &mut Harness| h.send(TcpRepr { flags: FIN, ..SEND }, b""),
    ] {
        let mut h = established(config());
        setup(&mut h);
        h.poll();
        let seq = if h.c.state() == State::CloseWait {
            REMOTE_ISS + 2
        } else {
            REMOTE_ISS + 1
        };
        h.send(
            TcpRepr {
                seq,
                flags: flags::RST,
                ..SEND
            },
            b"",
        );
        h.expect_state(State::Closed);
        assert!(h.events().contains(&Event::Closed(CloseReason::Reset)));
        h.recv_nothing();
    }
}

/// Defect 7: an out-of-order bare FIN is ACKed at once (RFC 5681 4.2), telling the peer
/// where the hole is.
#[test]
fn out_of_order_bare_fin_is_acked_at_once() {
    let mut h = established(config());
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1 + 3,
            flags: FIN,
            ..SEND
        },
        b"",
    );
    h.recv1(RECV);
    h.expect_state(State::Established);
    h.send(SEND, b"abc");
    h.expect_state(State::CloseWait);
    h.recv1(TcpRepr {
        ack: REMOTE_ISS + 1 + 4,
        window: 65535 - 4,
        ..RECV
    });
}

/// Defect 3: an orphan (closed by the application) facing a zero window that the peer
/// keeps answering is given up as Linux gives it up (tcp_timer.c `tcp_probe_timer` with
/// `tcp_orphan_retries` at its default 0: once the backed-off probe interval reaches the
/// maximum RTO the orphan is "not alive" and aborted; before that, 8 unanswered probes).
#[test]
fn orphan_facing_a_zero_window_is_given_up() {
    let mut h = established(config());
    h.send(TcpRepr { window: 0, ..SEND }, b"");
    h.c.write(b"stuck");
    h.c.close();
    h.expect_state(State::FinWait1);
    h.recv_nothing();
    let mut probes = 0;
    loop {
        h.fire();
        let out = h.poll();
        assert_eq!(out.len(), 1);
        if out[0].0.flags & flags::RST != 0 {
            break;
        }
        probes += 1;
        assert!(probes < 100, "probing forever");
        // The peer answers every probe, its window still closed.
        h.send(TcpRepr { window: 0, ..SEND }, b"");
    }
    // Intervals 200 ms doubling: the ninth probe's backoff reaches the 60 s maximum.
    assert_eq!(probes, 9);
    h.expect_state(State::Closed);
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::TimedOut)]);
    assert_eq!(h.counters.orphan_probes_exhausted, 1);
}
