//! Loss recovery: RTO with backoff and Karn's rule, giving up, fast retransmit with
//! NewReno partial ACKs, SACK recovery of several holes (RFC 6675), SACK blocks we send,
//! D-SACK both ways.

use super::*;
use crate::tcp::congestion::Algorithm;

fn reno(sack: bool) -> TcpConfig {
    TcpConfig {
        congestion: Algorithm::NewReno,
        sack,
        ..config()
    }
}

fn ack(n: u32) -> TcpRepr {
    TcpRepr {
        ack: LOCAL_ISS + 1 + n,
        ..SEND
    }
}

fn sack(n: u32, blocks: &[(u32, u32)]) -> TcpRepr {
    let mut options = NO_OPTS;
    for (slot, (l, r)) in options.sack_blocks.iter_mut().zip(blocks) {
        *slot = Some((LOCAL_ISS + 1 + l, LOCAL_ISS + 1 + r));
    }
    TcpRepr { options, ..ack(n) }
}

/// Our segment carrying `data[from..from + 1000]`.
fn seg(data: &[u8], from: u32) -> (TcpRepr, &[u8]) {
    let end = (from as usize + 1000).min(data.len());
    let flags = if end == data.len() {
        flags::ACK | flags::PSH
    } else {
        flags::ACK
    };
    (
        TcpRepr {
            seq: LOCAL_ISS + 1 + from,
            flags,
            ..RECV
        },
        &data[from as usize..end],
    )
}

#[test]
fn rto_backs_off_and_karn_ignores_retransmitted_samples() {
    let mut h = established(config());
    let data = bytes(0, 100);
    h.c.write(&data);
    h.recv(&[seg(&data, 0)]);
    // RTO 200 ms (the floor), then doubled per expiry.
    assert_eq!(h.fire(), ms(200));
    h.recv(&[seg(&data, 0)]);
    assert_eq!(h.fire(), ms(600));
    h.recv(&[seg(&data, 0)]);
    assert_eq!(h.c.info().rto_us, 800_000);
    assert_eq!((h.counters.timeouts, h.counters.retransmits), (2, 2));
    // The ACK of a retransmitted segment gives no sample (Karn): the backoff stays.
    h.at(ms(700));
    h.send(ack(100), b"");
    assert_eq!(h.c.info().srtt_us, Some(0));
    assert_eq!(h.c.info().rto_us, 800_000);
    // A segment sent once gives one, and the RTO comes back from the backoff.
    h.c.write(b"x");
    h.poll();
    h.at(ms(720));
    h.send(ack(101), b"");
    let info = h.c.info();
    assert_eq!(info.srtt_us, Some(2_500));
    assert_eq!(info.rto_us, 200_000);
}

#[test]
fn retransmissions_run_out() {
    let mut cfg = config();
    cfg.max_retransmits = 2;
    let mut h = established(cfg);
    h.c.write(b"lost");
    h.poll();
    assert_eq!(h.fire(), ms(200));
    h.poll();
    assert_eq!(h.fire(), ms(600));
    h.poll();
    assert_eq!(h.fire(), ms(1400));
    h.expect_state(State::Closed);
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::TimedOut)]);
    h.recv_nothing();
}

#[test]
fn timeout_goes_back_n_in_slow_start() {
    let mut h = established(reno(false));
    let data = bytes(0, 3000);
    h.c.write(&data);
    h.recv(&[seg(&data, 0), seg(&data, 1000), seg(&data, 2000)]);
    h.fire();
    // cwnd is one segment after a timeout: the first again, alone.
    h.recv(&[seg(&data, 0)]);
    assert_eq!(h.c.info().cwnd, 1000);
    h.send(ack(1000), b"");
    // Slow start: two more.
    h.recv(&[seg(&data, 1000), seg(&data, 2000)]);
}

#[test]
fn fast_retransmit_and_newreno_partial_acks() {
    let mut h = established(reno(false));
    let data = bytes(0, 10_000);
    h.c.write(&data);
    let all: Vec<_> = (0..10).map(|i| seg(&data, i * 1000)).collect();
    h.recv(&all);
    // The first segment is lost: three duplicate ACKs.
    for _ in 0..2 {
        h.send(ack(0), b"");
        h.recv_nothing();
    }
    h.send(ack(0), b"");
    h.recv(&[seg(&data, 0)]);
    assert_eq!(h.counters.fast_retransmits, 1);
    let info = h.c.info();
    assert!(info.in_recovery);
    assert_eq!((info.ssthresh, info.cwnd), (5000, 5000));
    // More duplicates inflate the window, but there is no new data to send.
    for _ in 0..3 {
        h.send(ack(0), b"");
    }
    h.recv_nothing();
    // A partial ACK (the fourth segment was lost too): it goes at once.
    h.send(ack(3000), b"");
    h.recv(&[seg(&data, 3000)]);
    assert!(h.c.info().in_recovery);
    // The full ACK ends recovery at ssthresh.
    h.send(ack(10_000), b"");
    let info = h.c.info();
    assert!(!info.in_recovery);
    assert_eq!(info.cwnd, 5000);
    assert_eq!(h.counters.retransmits, 2);
}

#[test]
fn duplicate_acks_below_recover_do_not_retrigger() {
    // After a timeout, duplicate ACKs for data sent before it start no fast retransmit
    // (RFC 6582 3.2 step 2).
    let mut h = established(reno(false));
    let data = bytes(0, 5000);
    h.c.write(&data);
    h.poll();
    h.fire();
    h.recv(&[seg(&data, 0)]);
    for _ in 0..3 {
        h.send(ack(0), b"");
    }
    h.recv_nothing();
    assert_eq!(h.counters.fast_retransmits, 0);
}

#[test]
fn sack_recovery_repairs_several_holes_in_one_window() {
    let mut h = established(reno(true));
    let data = bytes(0, 10_000);
    h.c.write(&data);
    let all: Vec<_> = (0..10).map(|i| seg(&data, i * 1000)).collect();
    h.recv(&all);
    // Segments 1, 4 and 7 (of 0..10) are lost.
    h.send(ack(1000), b"");
    h.send(sack(1000, &[(2000, 3000)]), b"");
    h.send(sack(1000, &[(2000, 4000)]), b"");
    h.recv_nothing();
    // The third duplicate: recovery, the first hole at once.
    h.send(sack(1000, &[(5000, 6000), (2000, 4000)]), b"");
    h.recv(&[seg(&data, 1000)]);
    let info = h.c.info();
    assert!(info.in_recovery);
    assert_eq!((info.ssthresh, info.cwnd), (4500, 4500));
    // pipe = 1000 (retransmitted) + 1000 (4000..5000, not yet lost) + 4000 above the
    // highest SACK: over cwnd, nothing more.
    h.send(sack(1000, &[(5000, 7000), (2000, 4000)]), b"");
    h.recv_nothing();
    // 4000..5000 now has three SACKed ranges above it: lost; pipe 3000, room for one.
    h.send(sack(1000, &[(8000, 9000), (5000, 7000), (2000, 4000)]), b"");
    h.recv(&[seg(&data, 4000)]);
    // The last hole is not "lost" (only 2000 bytes above it) but NextSeg's rule 3 sends
    // it once there is room and no new data.
    h.send(
        sack(1000, &[(8000, 10_000), (5000, 7000), (2000, 4000)]),
        b"",
    );
    h.recv(&[seg(&data, 7000)]);
    // The retransmissions arrive: partial ACKs, then the full one.
    h.send(sack(4000, &[(8000, 10_000), (5000, 7000)]), b"");
    h.recv_nothing();
    h.send(sack(7000, &[(8000, 10_000)]), b"");
    h.send(ack(10_000), b"");
    let info = h.c.info();
    assert!(!info.in_recovery);
    assert_eq!(info.send_queued, 0);
    assert_eq!(h.counters.retransmits, 3);
    assert_eq!(h.counters.timeouts, 0);
    h.recv_nothing();
}

#[test]
fn we_send_sack_blocks_most_recent_first_and_dsack() {
    let cfg = TcpConfig {
        sack: true,
        ..config()
    };
    let mut h = established(cfg);
    let at = |n: u32| TcpRepr {
        seq: REMOTE_ISS + 1 + n,
        ..SEND
    };
    let blocks = |b: &[(u32, u32)]| {
        let mut o = NO_OPTS;
        for (slot, (l, r)) in o.sack_blocks.iter_mut().zip(b) {
            *slot = Some((REMOTE_ISS + 1 + l, REMOTE_ISS + 1 + r));
        }
        o
    };
    h.send(at(100), &[1; 100]);
    h.recv1(TcpRepr {
        options: blocks(&[(100, 200)]),
        ..RECV
    });
    h.send(at(300), &[1; 100]);
    h.recv1(TcpRepr {
        options: blocks(&[(300, 400), (100, 200)]),
        ..RECV
    });
    h.send(at(150), &[1; 100]);
    h.recv1(TcpRepr {
        options: blocks(&[(100, 250), (300, 400)]),
        ..RECV
    });
    // Fill the first hole: the ACK moves, the remaining block stays.
    h.send(at(0), &[1; 100]);
    h.recv1(TcpRepr {
        ack: REMOTE_ISS + 1 + 250,
        window: 65535 - 250,
        options: blocks(&[(300, 400)]),
        ..RECV
    });
    // A duplicate: reported as a D-SACK first block (RFC 2883).
    h.send(at(0), &[1; 100]);
    h.recv1(TcpRepr {
        ack: REMOTE_ISS + 1 + 250,
        window: 65535 - 250,
        options: blocks(&[(0, 100), (300, 400)]),
        ..RECV
    });
}

#[test]
fn dsack_received_is_counted_not_taken_as_loss() {
    let mut h = established(reno(true));
    let data = bytes(0, 3000);
    h.c.write(&data);
    h.poll();
    h.send(ack(3000), b"");
    // A D-SACK below the cumulative ACK, three times: no recovery.
    for _ in 0..3 {
        h.send(sack(3000, &[(0, 1000)]), b"");
    }
    assert_eq!(h.counters.dsack_received, 3);
    assert_eq!(h.counters.fast_retransmits, 0);
}

/// Defect 2: `recover` follows SND.UNA outside recovery. Once more than 2 GiB had been
/// acknowledged without a loss, a `recover` left at the ISN sat "ahead" of SND.UNA in
/// wrapping arithmetic and no fast retransmit could start. A unit test rather than a
/// simulation: 60 000-byte segments, one per ACK, take SND.UNA past 2^31 in about 36 000
/// steps; the simulator would need ~3.6 million segments for 5 GiB.
#[test]
fn fast_retransmit_works_after_2_gib_without_a_loss() {
    const MSS: usize = 60_000;
    let mut h = established(TcpConfig {
        mss: MSS as u16,
        send_buffer: 1 << 20,
        ..reno(false)
    });
    let chunk = vec![0x5au8; MSS];
    let mut buf = vec![0u8; MSS];
    let mut acked: u64 = 0;
    while acked < (1 << 31) + (1 << 24) {
        assert_eq!(h.c.write(&chunk), MSS);
        let t =
            h.c.poll_transmit(h.now, &mut buf, &mut h.counters)
                .expect("a full segment");
        assert_eq!(t.payload_len, MSS);
        acked += MSS as u64;
        h.send(
            TcpRepr {
                ack: (u64::from(LOCAL_ISS) + 1 + acked) as u32,
                ..SEND
            },
            b"",
        );
    }
    assert_eq!(h.counters.timeouts + h.counters.retransmits, 0);
    let una = (u64::from(LOCAL_ISS) + 1 + acked) as u32;
    // Three 1500-byte segments (the harness's room), the first lost: three duplicates.
    h.c.write(&chunk[..4500]);
    assert_eq!(h.poll().len(), 3);
    for _ in 0..3 {
        h.send(TcpRepr { ack: una, ..SEND }, b"");
    }
    let out = h.poll();
    assert_eq!(h.counters.fast_retransmits, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].0.seq, una);
}

/// RFC 6582 3.2 step 5, the impatient variant: the first partial ACK restarts the
/// retransmission timer, later ones do not, so a window with many losses falls back on
/// the timeout instead of repairing one segment per RTT.
#[test]
fn newreno_restarts_the_timer_on_the_first_partial_ack_only() {
    let mut h = established(reno(false));
    let data = bytes(0, 10_000);
    h.c.write(&data);
    h.poll();
    h.at(ms(10));
    for _ in 0..3 {
        h.send(ack(0), b"");
    }
    h.recv(&[seg(&data, 0)]);
    assert_eq!(h.c.poll_timeout(), Some(Instant::ZERO + ms(200)));
    h.at(ms(50));
    h.send(ack(3000), b"");
    h.recv(&[seg(&data, 3000)]);
    assert_eq!(h.c.poll_timeout(), Some(Instant::ZERO + ms(250)));
    h.at(ms(100));
    h.send(ack(5000), b"");
    h.recv(&[seg(&data, 5000)]);
    assert_eq!(h.c.poll_timeout(), Some(Instant::ZERO + ms(250)));
}

/// Bytes SACKed grow cwnd when SACKed, and not again when cumulatively acknowledged.
#[test]
fn sacked_bytes_grow_cwnd_once() {
    let mut h = established(reno(true));
    let data = bytes(0, 3000);
    h.c.write(&data);
    h.poll();
    assert_eq!(h.c.info().cwnd, 10_000);
    h.send(sack(1000, &[(2000, 3000)]), b"");
    assert_eq!(h.c.info().cwnd, 12_000);
    h.send(ack(3000), b"");
    assert_eq!(h.c.info().cwnd, 13_000);
}
