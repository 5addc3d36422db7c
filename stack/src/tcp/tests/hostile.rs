//! Hostile and confused peers: every RFC 5961 case and its rate limit, PAWS and
//! timestamps (RFC 7323), and a seeded storm of arbitrary segments in every state that
//! must not panic.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn challenge_ack() -> TcpRepr {
    RECV
}

#[test]
fn rst_exactly_at_rcv_nxt_resets() {
    let mut h = established(config());
    h.send(
        TcpRepr {
            flags: flags::RST,
            ack: 0,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::Closed);
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::Reset)]);
    h.recv_nothing();
}

#[test]
fn rst_in_window_but_not_exact_gets_a_challenge_ack() {
    let mut h = established(config());
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1 + 1000,
            flags: flags::RST,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::Established);
    h.recv1(challenge_ack());
    assert_eq!(h.counters.challenge_acks, 1);
    // The legitimate peer answers the challenge with an exact RST.
    h.send(
        TcpRepr {
            flags: flags::RST,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::Closed);
}

#[test]
fn rst_out_of_window_is_ignored() {
    let mut h = established(config());
    for seq in [REMOTE_ISS, REMOTE_ISS + 1 + 70_000] {
        h.send(
            TcpRepr {
                seq,
                flags: flags::RST,
                ..SEND
            },
            b"",
        );
    }
    h.expect_state(State::Established);
    h.recv_nothing();
    assert_eq!(h.counters.rst_ignored, 2);
}

#[test]
fn syn_in_a_synchronized_state_gets_a_challenge_ack() {
    let mut h = established(config());
    // In window or not, a SYN is answered by a challenge ACK and changes nothing.
    for seq in [
        REMOTE_ISS + 1,
        REMOTE_ISS + 500,
        REMOTE_ISS.wrapping_sub(1_000_000),
    ] {
        h.send(
            TcpRepr {
                seq,
                ack: 0,
                flags: flags::SYN,
                ..SEND
            },
            b"",
        );
        h.recv1(challenge_ack());
        h.expect_state(State::Established);
    }
    assert_eq!(h.counters.challenge_acks, 3);
}

#[test]
fn unacceptable_acks_get_a_challenge_ack_and_are_dropped() {
    let mut h = established(config());
    h.c.write(b"abc");
    h.poll();
    // Acknowledging data never sent.
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 1 + 100,
            ..SEND
        },
        b"data",
    );
    h.recv1(TcpRepr {
        seq: LOCAL_ISS + 4,
        ..RECV
    });
    assert_eq!(h.c.readable(), 0, "the segment was dropped, data and all");
    // Acknowledging before SND.UNA - MAX.SND.WND (RFC 5961 5.2).
    h.send(
        TcpRepr {
            ack: LOCAL_ISS.wrapping_sub(100_000),
            ..SEND
        },
        b"data",
    );
    h.recv1(TcpRepr {
        seq: LOCAL_ISS + 4,
        ..RECV
    });
    assert_eq!(h.counters.bad_ack, 2);
    assert_eq!(h.counters.challenge_acks, 2);
    // An old but acceptable ACK is fine: its data is taken.
    h.send(
        TcpRepr {
            ack: LOCAL_ISS,
            ..SEND
        },
        b"ok",
    );
    assert_eq!(h.c.readable(), 2);
}

#[test]
fn challenge_acks_are_rate_limited() {
    let mut cfg = config();
    cfg.challenge_ack_per_sec = 3;
    let mut h = established(cfg);
    let syn = TcpRepr {
        ack: 0,
        flags: flags::SYN,
        ..SEND
    };
    for _ in 0..5 {
        h.send(syn, b"");
    }
    h.recv1(challenge_ack());
    // One ACK settles all that were owed; the limit counted five tries.
    assert_eq!(h.counters.challenge_acks, 3);
    assert_eq!(h.counters.challenge_acks_suppressed, 2);
    // A second later the allowance is back.
    h.at(Duration::from_secs(1));
    h.send(syn, b"");
    assert_eq!(h.counters.challenge_acks, 4);
}

fn ts_config() -> TcpConfig {
    TcpConfig {
        timestamps: true,
        ..config()
    }
}

/// A peer segment with timestamp `val`.
fn ts(val: u32) -> TcpRepr {
    TcpRepr {
        options: TcpOptions {
            timestamp: Some((val, 0)),
            ..NO_OPTS
        },
        ..SEND
    }
}

#[test]
fn timestamps_are_echoed_and_paws_drops_old_segments() {
    let mut h = established(ts_config());
    h.at(ms(7));
    h.send(ts(PEER_TS + 7), b"new");
    let got = h.poll();
    assert_eq!(got.len(), 1);
    let (tsval, tsecr) = got[0].0.options.timestamp.unwrap();
    // TSecr echoes TS.Recent; our clock ticks in milliseconds.
    assert_eq!(tsecr, PEER_TS + 7);
    h.at(ms(9));
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 4,
            ..ts(PEER_TS + 9)
        },
        b"",
    );
    h.recv_nothing();
    // An old timestamp on an otherwise acceptable segment: PAWS drops it and ACKs.
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 4,
            ..ts(PEER_TS + 1)
        },
        b"old",
    );
    assert_eq!(h.counters.paws_rejected, 1);
    assert_eq!(h.c.readable(), 3);
    let got = h.poll();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.options.timestamp, Some((tsval + 2, PEER_TS + 9)));
    // Timestamps wrap: each step below is forward by less than 2^31.
    let mut h = established(ts_config());
    for (i, val) in [0x7000_0000u32, 0xe000_0000, 3].into_iter().enumerate() {
        h.send(
            TcpRepr {
                seq: REMOTE_ISS + 1 + i as u32,
                ..ts(val)
            },
            b"x",
        );
        h.poll();
    }
    assert_eq!(h.counters.paws_rejected, 0);
    assert_eq!(h.c.readable(), 3);
}

#[test]
fn segments_without_the_agreed_timestamp_are_dropped() {
    let mut h = established(ts_config());
    h.send(SEND, b"no timestamp");
    assert_eq!(h.c.readable(), 0);
    assert_eq!(h.counters.bad_options, 1);
    h.recv_nothing();
    // A RST needs none (RFC 7323 5.2: it is not subject to PAWS either).
    h.send(
        TcpRepr {
            flags: flags::RST,
            ..SEND
        },
        b"",
    );
    h.expect_state(State::Closed);
}

#[test]
fn paws_does_not_apply_after_24_days_idle() {
    let mut h = established(ts_config());
    h.at(Duration::from_secs(25 * 24 * 3600));
    h.send(ts(PEER_TS.wrapping_sub(1000)), b"x");
    assert_eq!(h.counters.paws_rejected, 0);
    assert_eq!(h.c.readable(), 1);
}

#[test]
fn bare_acks_outside_the_window_are_answered_at_a_limited_rate() {
    let mut h = established(config());
    let old = TcpRepr {
        seq: REMOTE_ISS - 10,
        ..SEND
    };
    h.send(old, b"");
    h.recv1(RECV);
    h.send(old, b"");
    h.recv_nothing();
    h.at(ms(500));
    h.send(old, b"");
    h.recv1(RECV);
    assert_eq!(h.counters.out_of_window, 3);
}

/// Arbitrary segments in every state: no panic, bounded memory, and `poll_transmit` ends.
#[test]
fn arbitrary_segments_in_every_state_do_not_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let setups: [fn(&mut Harness); 6] = [
        |_| {},
        |h| h.c.shutdown(),
        |h| {
            h.send(
                TcpRepr {
                    flags: flags::FIN | flags::ACK,
                    ..SEND
                },
                b"",
            )
        },
        |h| {
            h.c.shutdown();
            h.poll();
            h.send(
                TcpRepr {
                    ack: LOCAL_ISS + 2,
                    ..SEND
                },
                b"",
            );
        },
        |h| {
            h.c.shutdown();
            h.poll();
            h.send(
                TcpRepr {
                    ack: LOCAL_ISS + 2,
                    flags: flags::FIN | flags::ACK,
                    ..SEND
                },
                b"",
            );
        },
        |h| {
            h.c.shutdown();
            h.poll();
            h.send(
                TcpRepr {
                    flags: flags::FIN | flags::ACK,
                    ..SEND
                },
                b"",
            );
        },
    ];
    let payload = [0x5au8; 3000];
    for round in 0..60 {
        let mut cfg = config();
        cfg.sack = round % 2 == 0;
        cfg.timestamps = round % 3 == 0;
        cfg.window_scale = round % 5 == 0;
        cfg.max_out_of_order = 4000;
        let mut h = if round % 7 == 6 {
            let mut h = Harness::new(Connection::connect(
                &cfg,
                endpoints(),
                SeqNumber(LOCAL_ISS),
                Instant::ZERO,
            ));
            h.poll();
            h
        } else {
            let mut h = established(cfg);
            setups[round % setups.len()](&mut h);
            h.c.write(&payload[..1500]);
            h
        };
        for i in 0..400u64 {
            let near = |rng: &mut ChaCha8Rng, base: u32| {
                if rng.random_bool(0.7) {
                    base.wrapping_add(rng.random_range(0..5000))
                        .wrapping_sub(2500)
                } else {
                    rng.random()
                }
            };
            let mut options = NO_OPTS;
            if rng.random_bool(0.3) {
                options.timestamp = Some((rng.random(), rng.random()));
            }
            for b in options.sack_blocks.iter_mut() {
                if rng.random_bool(0.2) {
                    let l = near(&mut rng, LOCAL_ISS);
                    *b = Some((l, l.wrapping_add(rng.random_range(0..4000))));
                }
            }
            if rng.random_bool(0.1) {
                options.mss = Some(rng.random());
                options.window_scale = Some(rng.random_range(0..20));
            }
            let header = TcpRepr {
                seq: near(&mut rng, REMOTE_ISS),
                ack: near(&mut rng, LOCAL_ISS),
                flags: rng.random(),
                window: rng.random(),
                options,
                ..SEND
            };
            let len = rng.random_range(0..payload.len());
            h.now = Instant::from_millis(i * rng.random_range(0..50));
            h.send(header, &payload[..len]);
            h.poll();
            if rng.random_bool(0.1)
                && let Some(at) = h.c.poll_timeout()
            {
                h.now = h.now.max(at);
                h.c.handle_timeout(h.now, &mut h.counters);
                h.poll();
            }
            if rng.random_bool(0.2) {
                h.read_all();
                h.c.write(&payload[..rng.random_range(0..2000)]);
            }
            let info = h.c.info();
            assert!(info.out_of_order <= 4000, "{info:?}");
            assert!(info.recv_queued <= 65535 + 1, "{info:?}");
        }
    }
}

/// Defect 4 (packetdrill ts_recent/invalid_ack.pkt): an in-window segment whose ACK is
/// unacceptable does not move TS.Recent, so a blind attacker cannot make every later
/// genuine segment fail PAWS.
#[test]
fn timestamp_of_a_segment_with_a_bad_ack_is_not_recorded() {
    let mut h = established(ts_config());
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 1 + 5000,
            ..ts(PEER_TS + 1_000_000)
        },
        b"",
    );
    assert_eq!(h.counters.bad_ack, 1);
    let got = h.poll();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.options.timestamp.unwrap().1, PEER_TS);
    h.send(ts(PEER_TS + 1), b"data");
    assert_eq!(h.counters.paws_rejected, 0);
    assert_eq!(h.c.readable(), 4);
}

/// Bare segments PAWS rejects are answered through the same limiter as those outside the
/// window (Linux `tcp_oow_rate_limited`, `tcp_invalid_ratelimit` 500 ms).
#[test]
fn paws_rejects_and_out_of_window_acks_share_one_rate_limit() {
    let mut h = established(ts_config());
    let old = ts(PEER_TS - 1);
    h.send(old, b"");
    assert_eq!(h.poll().len(), 1);
    h.send(old, b"");
    assert_eq!(h.poll().len(), 0);
    h.send(
        TcpRepr {
            seq: REMOTE_ISS - 10,
            ..ts(PEER_TS)
        },
        b"",
    );
    assert_eq!(h.poll().len(), 0);
    assert_eq!((h.counters.paws_rejected, h.counters.out_of_window), (2, 1));
    h.at(ms(500));
    h.send(old, b"");
    assert_eq!(h.poll().len(), 1);
}

/// RFC 7323 4.3: TS.Recent is taken only from a segment at or below Last.ACK.sent; an
/// out-of-order segment's newer TSval is not.
#[test]
fn timestamp_of_a_segment_beyond_last_ack_sent_is_not_recorded() {
    let mut h = established(ts_config());
    h.send(
        TcpRepr {
            seq: REMOTE_ISS + 1 + 100,
            ..ts(PEER_TS + 50)
        },
        b"later",
    );
    let got = h.poll();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.options.timestamp.unwrap().1, PEER_TS);
    h.send(ts(PEER_TS + 10), &[0; 100]);
    let got = h.poll();
    assert_eq!(got[0].0.options.timestamp.unwrap().1, PEER_TS + 10);
    assert_eq!(h.c.readable(), 105);
}
