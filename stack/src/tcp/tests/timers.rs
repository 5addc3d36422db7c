//! Keepalive, and what an idle connection costs in memory.

use super::*;
use crate::tcp::KeepAlive;

#[test]
fn keepalive_probes_then_resets() {
    let mut cfg = config();
    cfg.keepalive = Some(KeepAlive {
        idle: Duration::from_secs(60),
        interval: Duration::from_secs(10),
        probes: 2,
    });
    let mut h = established(cfg);
    let probe = TcpRepr {
        seq: LOCAL_ISS,
        ..RECV
    };
    assert_eq!(h.fire(), Duration::from_secs(60));
    h.recv1(probe);
    // The peer answers: the idle period starts again.
    h.send(SEND, b"");
    assert_eq!(h.fire(), Duration::from_secs(120));
    h.recv1(probe);
    // Silence: one more probe, then a RST and TimedOut.
    assert_eq!(h.fire(), Duration::from_secs(130));
    h.recv1(probe);
    assert_eq!(h.fire(), Duration::from_secs(140));
    h.recv1(TcpRepr {
        flags: flags::RST | flags::ACK,
        window: 0,
        ..RECV
    });
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::TimedOut)]);
    assert!(h.c.is_closed());
}

#[test]
fn keepalive_waits_while_data_is_outstanding() {
    let mut cfg = config();
    cfg.keepalive = Some(KeepAlive {
        idle: Duration::from_secs(1),
        interval: Duration::from_secs(1),
        probes: 1,
    });
    let mut h = established(cfg);
    h.c.write(b"x");
    h.poll();
    // The retransmission timer runs, not keepalive.
    assert_eq!(h.c.poll_timeout(), Some(Instant::ZERO + ms(200)));
}

/// The bound the integrator plans slabs with: a connection's fixed part.
const CONNECTION_SIZE_BOUND: usize = 1024;

#[test]
fn a_connection_is_small_and_an_idle_one_holds_no_buffers() {
    let size = std::mem::size_of::<Connection>();
    eprintln!("size_of::<Connection>() = {size} bytes");
    assert!(size <= CONNECTION_SIZE_BOUND, "{size}");
    let mut h = established(TcpConfig {
        sack: true,
        timestamps: true,
        window_scale: true,
        recv_buffer: 1 << 20,
        ..config()
    });
    assert_eq!(h.c.info().buffer_capacity, 0);
    // A burst each way, then everything read and acknowledged.
    let data = bytes(0, 200_000);
    let mut sent = 0;
    let mut t = 0;
    while sent < data.len() || h.c.info().send_queued > 0 {
        sent += h.c.write(&data[sent..]);
        let out = h.poll();
        let acked = out.last().map(|(s, p)| s.seq.wrapping_add(p.len() as u32));
        if let Some(ack) = acked {
            t += 1;
            h.at(ms(t));
            let tsval = out
                .last()
                .and_then(|(s, _)| s.options.timestamp)
                .map(|(v, _)| v);
            h.send(
                TcpRepr {
                    ack,
                    options: TcpOptions {
                        timestamp: tsval.map(|v| (PEER_TS + t as u32, v)),
                        ..NO_OPTS
                    },
                    ..SEND
                },
                b"",
            );
        }
    }
    h.send(
        TcpRepr {
            ack: LOCAL_ISS + 1 + 200_000,
            options: TcpOptions {
                timestamp: Some((PEER_TS + 1000, 0)),
                ..NO_OPTS
            },
            ..SEND
        },
        &data[..50_000],
    );
    assert!(h.c.info().buffer_capacity >= 50_000);
    assert_eq!(h.read_all().len(), 50_000);
    let info = h.c.info();
    assert_eq!(info.send_queued + info.recv_queued, 0);
    assert_eq!(info.buffer_capacity, 0, "{info:?}");
}
