//! The data path: sending and ACKs, receiving in and out of order, overlapping and
//! out-of-window segments, delayed ACKs, Nagle, windows, zero-window probing.

use super::*;

const PSH: u8 = flags::ACK | flags::PSH;

#[test]
fn sends_and_frees_on_ack() {
    let mut h = established(config());
    assert_eq!(h.c.write(b"hello"), 5);
    h.recv(&[(TcpRepr { flags: PSH, ..RECV }, b"hello")]);
    assert_eq!(h.c.info().send_queued, 5);
    h.at(ms(20));
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 1 + 5,
            ..SEND
        },
        b"",
    );
    assert_eq!(h.c.info().send_queued, 0);
    assert_eq!(h.events(), vec![Event::Writable]);
    // The handshake's sample was 0 (virtual time stood still): 7/8 * 0 + 1/8 * 20 ms.
    assert_eq!(h.c.info().srtt_us, Some(2_500));
    assert_eq!(h.c.poll_timeout(), None);
    h.recv_nothing();
}

#[test]
fn segments_are_cut_at_the_mss_and_the_window() {
    let mut h = established(config());
    let data = bytes(0, 2500);
    h.c.write(&data);
    h.recv(&[
        (RECV, &data[..1000]),
        (
            TcpRepr {
                seq: LOCAL_ISS + 1 + 1000,
                ..RECV
            },
            &data[1000..2000],
        ),
        (
            TcpRepr {
                seq: LOCAL_ISS + 1 + 2000,
                flags: PSH,
                ..RECV
            },
            &data[2000..],
        ),
    ]);
    // A 1200-byte window: 1000 then, after the ACK, 200... at once only if it is at least
    // half the largest window seen (sender SWS avoidance).
    let mut h = established(config());
    h.send(
        TcpRepr {
            window: 1200,
            ..SEND
        },
        b"",
    );
    h.c.write(&data);
    h.recv(&[(RECV, &data[..1000])]);
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 1 + 1000,
            window: 300,
            ..SEND
        },
        b"",
    );
    // 300 bytes of window < 1200 / 2: wait.
    h.recv_nothing();
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 1 + 1000,
            window: 1200,
            ..SEND
        },
        b"",
    );
    h.recv(&[(
        TcpRepr {
            seq: LOCAL_ISS + 1 + 1000,
            ..RECV
        },
        &data[1000..2000],
    )]);
}

#[test]
fn receives_in_order_and_reads() {
    let mut h = established(config());
    h.send(SEND, b"abcdef");
    h.recv1(TcpRepr {
        ack: REMOTE_ISS + 1 + 6,
        window: 65535 - 6,
        ..RECV
    });
    assert_eq!(h.events(), vec![Event::Readable]);
    assert_eq!(h.c.readable(), 6);
    assert_eq!(h.read_all(), b"abcdef");
    // Reading 6 bytes does not move the window's right edge (receiver SWS avoidance):
    // no update.
    h.recv_nothing();
}

#[test]
fn out_of_order_is_held_then_joined() {
    let mut h = established(config());
    let ack0 = TcpRepr {
        window: 65535,
        ..RECV
    };
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1 + 3,
            ..SEND
        },
        b"def",
    );
    // A duplicate ACK at once, for the hole.
    h.recv1(ack0);
    assert_eq!(h.c.readable(), 0);
    h.send(SEND, b"abc");
    h.recv1(TcpRepr {
        ack: REMOTE_ISS + 1 + 6,
        window: 65535 - 6,
        ..RECV
    });
    assert_eq!(h.read_all(), b"abcdef");
}

#[test]
fn overlapping_and_duplicate_segments_are_trimmed() {
    let mut h = established(config());
    h.send(SEND, b"abcd");
    h.poll();
    // Overlaps what we hold: only "ef" is new.
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1 + 2,
            ..SEND
        },
        b"cdef",
    );
    h.recv1(TcpRepr {
        ack: REMOTE_ISS + 1 + 6,
        window: 65535 - 6,
        ..RECV
    });
    assert_eq!(h.read_all(), b"abcdef");
    // All old: unacceptable, ACKed, counted.
    h.send(SEND, b"abcd");
    h.recv1(TcpRepr {
        ack: REMOTE_ISS + 1 + 6,
        window: 65535 - 6,
        ..RECV
    });
    assert_eq!(h.counters.out_of_window, 1);
    assert_eq!(h.c.readable(), 0);
}

#[test]
fn out_of_window_data_is_acked_and_dropped() {
    let mut cfg = config();
    cfg.recv_buffer = 1000;
    let mut h = established(cfg);
    // Past the window's end.
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1 + 1000,
            ..SEND
        },
        b"x",
    );
    h.recv1(TcpRepr {
        window: 1000,
        ..RECV
    });
    assert_eq!(h.counters.out_of_window, 1);
    // Straddling the end: the part inside is taken.
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1 + 998,
            ..SEND
        },
        b"abcd",
    );
    h.recv1(TcpRepr {
        window: 1000,
        ..RECV
    });
    assert_eq!(h.counters.recv_buffer_full, 1);
    assert_eq!(h.c.info().out_of_order, 2);
}

#[test]
fn delayed_ack_waits_for_a_second_segment_or_the_timer() {
    let mut cfg = config();
    cfg.delayed_ack = Some(ms(40));
    let mut h = established(cfg);
    h.send(SEND, &[1; 1000]);
    h.recv_nothing();
    assert_eq!(h.c.poll_timeout(), Some(Instant::ZERO + ms(40)));
    h.at(ms(40));
    h.recv1(TcpRepr {
        ack: REMOTE_ISS + 1 + 1000,
        window: 65535 - 1000,
        ..RECV
    });
    // Two segments: the second is ACKed at once.
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1 + 1000,
            ..SEND
        },
        &[2; 1000],
    );
    h.recv_nothing();
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1 + 2000,
            ..SEND
        },
        &[3; 1000],
    );
    h.recv1(TcpRepr {
        ack: REMOTE_ISS + 1 + 3000,
        window: 65535 - 3000,
        ..RECV
    });
    // Data we send carries the ACK owed.
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1 + 3000,
            ..SEND
        },
        b"q",
    );
    h.c.write(b"reply");
    h.recv(&[(
        TcpRepr {
            ack: REMOTE_ISS + 1 + 3001,
            window: 65535 - 3001,
            flags: PSH,
            ..RECV
        },
        b"reply",
    )]);
    assert_eq!(h.c.poll_timeout(), Some(h.now + ms(200)));
}

#[test]
fn nagle_holds_small_segments_while_data_is_unacked() {
    let mut cfg = config();
    cfg.nagle = true;
    let mut h = established(cfg);
    h.c.write(b"a");
    h.recv(&[(TcpRepr { flags: PSH, ..RECV }, b"a")]);
    h.c.write(b"b");
    h.c.write(b"c");
    h.recv_nothing();
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 2,
            ..SEND
        },
        b"",
    );
    h.recv(&[(
        TcpRepr {
            seq: LOCAL_ISS + 2,
            flags: PSH,
            ..RECV
        },
        b"bc",
    )]);
    // A full segment goes at once.
    h.c.write(&[7; 1000]);
    h.recv(&[(
        TcpRepr {
            seq: LOCAL_ISS + 4,
            flags: PSH,
            ..RECV
        },
        &[7; 1000],
    )]);
}

#[test]
fn receive_window_closes_and_reopens_with_an_update() {
    let mut cfg = config();
    cfg.recv_buffer = 3000;
    let mut h = established(cfg);
    for i in 0..3u32 {
        h.send(
            TcpRepr {
                seq: REMOTE_ISS + 1 + i * 1000,
                ..SEND
            },
            &[i as u8; 1000],
        );
        h.recv1(TcpRepr {
            ack: REMOTE_ISS + 1 + (i + 1) * 1000,
            window: (3000 - (i + 1) * 1000) as u16,
            ..RECV
        });
    }
    // A bare segment in a zero window is acceptable only at RCV.NXT; data is not.
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1 + 3000,
            ..SEND
        },
        b"z",
    );
    h.recv1(TcpRepr {
        ack: REMOTE_ISS + 3001,
        window: 0,
        ..RECV
    });
    assert_eq!(h.counters.out_of_window, 1);
    // Reading 500 bytes: less than min(buffer / 2, MSS), no update.
    let mut buf = [0u8; 500];
    h.c.read(&mut buf);
    h.recv_nothing();
    h.c.read(&mut buf);
    h.c.read(&mut buf);
    h.recv1(TcpRepr {
        ack: REMOTE_ISS + 3001,
        window: 1500,
        ..RECV
    });
}

#[test]
fn zero_window_probes_back_off_until_the_window_opens() {
    let mut h = established(config());
    h.send(TcpRepr { window: 0, ..SEND }, b"");
    h.c.write(b"hello");
    h.recv_nothing();
    // Probes after an RTO (200 ms, the floor), then 400 and 800 ms later: one byte past
    // the window.
    let probe = (
        TcpRepr {
            flags: flags::ACK,
            ..RECV
        },
        &b"h"[..],
    );
    for at in [200, 600, 1400] {
        assert_eq!(h.fire(), ms(at));
        h.recv(&[probe]);
        // The peer's window is still closed: it ACKs without taking the byte.
        h.send(TcpRepr { window: 0, ..SEND }, b"");
        h.recv_nothing();
        h.expect_state(State::Established);
    }
    // The window opens: everything goes, the probe byte included.
    h.send(
        TcpRepr {
            window: 1000,
            ..SEND
        },
        b"",
    );
    h.recv(&[(TcpRepr { flags: PSH, ..RECV }, b"hello")]);
    assert_eq!(h.c.poll_timeout(), Some(h.now + ms(200)));
}

#[test]
fn zero_window_probe_byte_taken_by_the_peer() {
    let mut h = established(config());
    h.send(TcpRepr { window: 0, ..SEND }, b"");
    h.c.write(b"hi");
    h.recv_nothing();
    h.fire();
    h.recv(&[(RECV, &b"h"[..])]);
    // The peer took it and its window is open again.
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 2,
            window: 100,
            ..SEND
        },
        b"",
    );
    h.recv(&[(
        TcpRepr {
            seq: LOCAL_ISS + 2,
            flags: PSH,
            ..RECV
        },
        b"i",
    )]);
    assert_eq!(h.counters.bad_ack, 0);
}

#[test]
fn a_window_update_is_taken_only_from_newer_segments() {
    let mut h = established(config());
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1,
            window: 5000,
            ..SEND
        },
        b"ab",
    );
    h.poll();
    // An older segment (a retransmission of the same data) with a smaller window: no
    // update (SND.WL1 is newer).
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1,
            window: 10,
            ..SEND
        },
        b"",
    );
    assert_eq!(h.c.info().snd_wnd, 5000);
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 3,
            window: 10,
            ..SEND
        },
        b"",
    );
    assert_eq!(h.c.info().snd_wnd, 10);
}

#[test]
fn sequence_numbers_wrap() {
    let cfg = config();
    let iss = u32::MAX - 2;
    let mut h = Harness::new(Connection::connect(
        &cfg,
        endpoints(),
        SeqNumber(iss),
        Instant::ZERO,
    ));
    h.poll();
    h.send(
        TcpRepr {
            seq: u32::MAX - 1,
            ack: iss.wrapping_add(1),
            flags: flags::SYN | flags::ACK,
            ..SEND
        },
        b"",
    );
    h.poll();
    h.c.write(b"0123456789");
    h.recv(&[(
        TcpRepr {
            seq: iss.wrapping_add(1),
            ack: u32::MAX,
            flags: PSH,
            ..RECV
        },
        b"0123456789",
    )]);
    h.send(
        TcpRepr {
            seq: u32::MAX,
            ack: iss.wrapping_add(11),
            ..SEND
        },
        b"abcdef",
    );
    h.recv1(TcpRepr {
        seq: iss.wrapping_add(11),
        ack: 5,
        window: 65535 - 6,
        ..RECV
    });
    assert_eq!(h.read_all(), b"abcdef");
    assert_eq!(h.c.info().send_queued, 0);
}

/// Any ACK answers a zero-window probe: a peer that keeps answering with its window
/// closed is probed on past `max_retransmits` (Linux resets `icsk_probes_out` on every
/// ACK); only unanswered probes count towards giving up.
#[test]
fn answered_zero_window_probes_go_on_past_the_retry_limit() {
    let mut cfg = config();
    cfg.max_retransmits = 2;
    let mut h = established(cfg);
    h.send(TcpRepr { window: 0, ..SEND }, b"");
    h.c.write(b"hello");
    h.recv_nothing();
    for _ in 0..6 {
        h.fire();
        h.recv(&[(RECV, &b"h"[..])]);
        h.send(TcpRepr { window: 0, ..SEND }, b"");
        h.expect_state(State::Established);
    }
    // Silence: two more probes, then the third time a RST.
    for _ in 0..2 {
        h.fire();
        h.recv(&[(RECV, &b"h"[..])]);
    }
    h.fire();
    h.recv1(TcpRepr {
        flags: flags::RST | flags::ACK,
        window: 0,
        ..RECV
    });
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::TimedOut)]);
}

/// Defect 5: a small window (below the MSS and half the largest window offered) with
/// nothing in flight arms the override timer (RFC 9293 3.8.6.2.1), which sends what the
/// window takes: a lost window update cannot stall the connection.
#[test]
fn small_window_with_nothing_in_flight_arms_the_override_timer() {
    let mut h = established(config());
    h.send(
        TcpRepr {
            window: 500,
            ..SEND
        },
        b"",
    );
    h.c.write(&[9; 2000]);
    h.recv_nothing();
    assert_eq!(h.fire(), ms(200));
    h.recv(&[(RECV, &[9; 500][..])]);
    // Then the retransmission timer runs.
    assert_eq!(h.c.poll_timeout(), Some(h.now + ms(200)));
}

/// Defect 6: Minshall's Nagle. With the unacknowledged segment full-sized, the tail of a
/// write goes at once; a small segment then holds the next small one.
#[test]
fn nagle_sends_the_tail_when_the_unacked_segment_is_full_sized() {
    let mut cfg = config();
    cfg.nagle = true;
    let mut h = established(cfg);
    let data = bytes(0, 1500);
    h.c.write(&data);
    h.recv(&[
        (RECV, &data[..1000]),
        (
            TcpRepr {
                seq: LOCAL_ISS + 1001,
                flags: PSH,
                ..RECV
            },
            &data[1000..],
        ),
    ]);
    h.c.write(b"x");
    h.recv_nothing();
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 1001,
            ..SEND
        },
        b"",
    );
    h.recv_nothing();
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 1501,
            ..SEND
        },
        b"",
    );
    h.recv(&[(
        TcpRepr {
            seq: LOCAL_ISS + 1501,
            flags: PSH,
            ..RECV
        },
        b"x",
    )]);
}

/// RFC 9293 3.10.7.4: a segment that starts before RCV.NXT and ends past the window
/// holds the whole window and is acceptable; its middle is taken.
#[test]
fn a_segment_spanning_the_whole_window_is_taken() {
    let mut cfg = config();
    cfg.recv_buffer = 3000;
    let mut h = established(cfg);
    let data = bytes(0, 3020);
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1 - 10,
            ..SEND
        },
        &data,
    );
    assert_eq!(h.counters.out_of_window, 0);
    assert_eq!(h.read_all(), &data[10..3010]);
}
