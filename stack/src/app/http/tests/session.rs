//! The server's session on a real TCP connection (the sans-IO core, no network): a script
//! plays the peer and the clock moves from deadline to deadline, as the worker's wheel
//! would move it.

use super::*;
use crate::{
    socket::tcp::app::TcpHandler,
    tcp::{Connection, Counters, Endpoints, Segment, SeqNumber, State, TcpConfig},
    wire::tcp::{TcpOptions, TcpRepr, flags},
};

const PEER_ISS: u32 = 20_000;

/// What the peer sends: from its port to ours, a 64 KiB window, no options.
fn peer(seq: u32, ack: u32, flags: u8) -> Segment<'static> {
    Segment {
        header: TcpRepr {
            src_port: 49_500,
            dst_port: 80,
            seq,
            ack,
            flags,
            window: 65_535,
            options: TcpOptions::default(),
        },
        payload: b"",
    }
}

/// A peer connects, sends nothing, takes the 408 and the FIN after it (its TCP ACKs every
/// byte), and never closes its end: a hung client, or one hoarding connections. The
/// connection must still end on its own, with something armed to end it at every step;
/// before `LINGER` it sat in FIN-WAIT-2 with nothing armed, for good.
#[test]
fn a_peer_that_never_closes_its_end_is_let_go() {
    let config = HttpConfig {
        idle_timeout: Duration::from_secs(2),
        ..HttpConfig::default()
    };
    let server = HttpServer::new(site_with(config, &[("index.html", b"home")]), 1);
    let tcp = TcpConfig {
        delayed_ack: None,
        ..TcpConfig::default()
    };
    let endpoints = Endpoints {
        local: "192.0.2.1:80".parse().unwrap(),
        remote: "192.0.2.2:49500".parse().unwrap(),
    };
    let mut counters = Counters::default();
    let syn = peer(PEER_ISS, 0, flags::SYN);
    let mut conn = Connection::accept_syn(&tcp, endpoints, &syn, SeqNumber(10_000), T0);
    let mut session = server.session(T0, 0).expect("a session per connection");
    let mut scratch = vec![0u8; 4096];
    let mut frame = [0u8; 2048];
    let mut received = Vec::new();
    let mut now = T0;
    // Long after every timer that may end it: the idle timeout, the linger, 2 × MSL.
    let limit = T0 + Duration::from_secs(2 + 5 + 60 + 5);
    loop {
        // The peer's TCP: every segment ACKed at once, a data byte never sent.
        while let Some(t) = conn.poll_transmit(now, &mut frame, &mut counters) {
            received.extend_from_slice(&frame[..t.payload_len]);
            let h = t.header;
            let fin = u32::from(h.flags & (flags::SYN | flags::FIN) != 0);
            let ack = h.seq.wrapping_add(t.payload_len as u32 + fin);
            conn.handle_segment(now, &peer(PEER_ISS + 1, ack, flags::ACK), &mut counters);
        }
        while let Some(event) = conn.poll_event() {
            session.on_event(now, &mut conn, event, &mut scratch);
        }
        if conn.state() == State::Closed {
            break;
        }
        let next = [conn.poll_timeout(), session.deadline()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| {
                panic!(
                    "{:?} at {now:?} with nothing armed: it would stay for good",
                    conn.state()
                )
            });
        assert!(next <= limit, "{:?} until {next:?}", conn.state());
        now = now.max(next);
        if conn.poll_timeout().is_some_and(|at| at <= now) {
            conn.handle_timeout(now, &mut counters);
        }
        if session.deadline().is_some_and(|d| d <= now) {
            session.on_timeout(now, &mut conn, &mut scratch);
        }
    }
    assert!(
        received.starts_with(b"HTTP/1.1 408 Request Timeout\r\n"),
        "{:?}",
        String::from_utf8_lossy(&received)
    );
    // Let go after the linger and FIN-WAIT-2's 2 × MSL, not before the linger.
    assert!(now >= T0 + Duration::from_secs(2 + 5), "closed at {now:?}");
}
