//! The listener: passive open with a backlog and accept, SYN cookies when the SYN queue is
//! full (the encoded MSS, SACK and window scale come back), invalid cookies, stray
//! segments, a full accept queue.

use super::*;
use crate::tcp::{
    Listener, ListenerAction,
    isn::{self, IsnKeys},
};

fn keys() -> IsnKeys {
    IsnKeys::from_bytes([42; 32])
}

fn from_port(port: u16) -> Endpoints {
    Endpoints {
        remote: SocketAddr::new(endpoints().remote.ip(), port),
        ..endpoints()
    }
}

fn syn(port: u16, options: TcpOptions) -> TcpRepr {
    TcpRepr {
        src_port: port,
        seq: REMOTE_ISS,
        ack: 0,
        flags: flags::SYN,
        options,
        ..SEND
    }
}

fn listener(backlog: usize) -> Listener {
    let cfg = TcpConfig {
        mss: 1460,
        window_scale: true,
        sack: true,
        recv_buffer: 1 << 20,
        ..config()
    };
    Listener::new(cfg, endpoints().local, backlog, keys())
}

fn handle(
    l: &mut Listener,
    now: Instant,
    port: u16,
    header: TcpRepr,
    counters: &mut Counters,
) -> ListenerAction {
    l.handle_segment(
        now,
        from_port(port),
        &Segment {
            header,
            payload: b"",
        },
        false,
        counters,
    )
}

#[test]
fn passive_open_through_the_backlog_to_accept() {
    let mut l = listener(4);
    let mut counters = Counters::default();
    let now = Instant::from_secs(100);
    let ListenerAction::NewConnection(c) =
        handle(&mut l, now, 1111, syn(1111, NO_OPTS), &mut counters)
    else {
        panic!("no connection");
    };
    assert_eq!(l.half_open(), 1);
    let mut h = Harness::new(c);
    h.now = now;
    let iss = isn::isn(&keys(), &from_port(1111), now);
    h.recv1(TcpRepr {
        dst_port: 1111,
        seq: iss.0,
        flags: flags::SYN | flags::ACK,
        options: TcpOptions {
            mss: Some(1460),
            ..NO_OPTS
        },
        ..RECV
    });
    h.send(
        TcpRepr {
            src_port: 1111,
            ack: iss.0 + 1,
            ..SEND
        },
        b"",
    );
    assert_eq!(h.events()[0], Event::Connected);
    l.on_established(h.c.endpoints());
    assert_eq!(
        l.half_open(),
        0,
        "it left the SYN queue for the owner's accept queue"
    );
}

#[test]
fn syn_cookies_when_the_syn_queue_is_full() {
    let mut l = listener(1);
    let mut counters = Counters::default();
    let now = Instant::from_secs(1000);
    assert!(matches!(
        handle(&mut l, now, 1111, syn(1111, NO_OPTS), &mut counters),
        ListenerAction::NewConnection(_)
    ));
    // The queue is full: a cookie SYN-ACK, no state.
    let offer = TcpOptions {
        mss: Some(1400),
        window_scale: Some(7),
        sack_permitted: true,
        ..NO_OPTS
    };
    let ListenerAction::Reply(t) = handle(&mut l, now, 2222, syn(2222, offer), &mut counters)
    else {
        panic!("no cookie");
    };
    assert_eq!(l.half_open(), 1);
    assert_eq!((counters.syn_queue_full, counters.syn_cookies_sent), (1, 1));
    let cookie = t.header.seq;
    assert_eq!(
        t.header,
        TcpRepr {
            dst_port: 2222,
            seq: cookie,
            flags: flags::SYN | flags::ACK,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(5),
                sack_permitted: true,
                ..NO_OPTS
            },
            ..RECV
        }
    );
    // A forged ACK: counted and reset.
    let ack = TcpRepr {
        src_port: 2222,
        ack: cookie.wrapping_add(2),
        window: 100,
        ..SEND
    };
    let ListenerAction::Reply(rst) = handle(&mut l, now, 2222, ack, &mut counters) else {
        panic!("no RST");
    };
    assert_eq!(rst.header.flags, flags::RST);
    assert_eq!(counters.syn_cookies_invalid, 1);
    // The real ACK, a minute later: established with what the cookie kept.
    let half_open = l.half_open();
    let later = now + Duration::from_secs(60);
    let ListenerAction::NewConnection(c) = handle(
        &mut l,
        later,
        2222,
        TcpRepr {
            ack: cookie.wrapping_add(1),
            ..ack
        },
        &mut counters,
    ) else {
        panic!("cookie refused");
    };
    assert_eq!(counters.syn_cookies_valid, 1);
    assert_eq!(c.state(), State::Established);
    let info = c.info();
    // 1400 rounds down to the cookie table's 1220.
    assert_eq!(info.send_mss, 1220);
    assert!(info.sack);
    assert_eq!((info.snd_wscale, info.rcv_wscale), (7, 5));
    assert_eq!(info.snd_wnd, 100 << 7);
    assert_eq!(
        l.half_open(),
        half_open,
        "a cookie's connection never was half-open"
    );
    let mut h = Harness::new(c);
    h.now = later;
    h.c.write(b"hi");
    let out = h.poll();
    assert_eq!(out[0].0.seq, cookie.wrapping_add(1));
}

#[test]
fn stray_segments_at_a_listener() {
    let mut l = listener(4);
    let mut counters = Counters::default();
    let now = Instant::from_secs(5);
    // An ACK with no cookies outstanding: RST <SEQ=SEG.ACK>, no hash checked.
    let ListenerAction::Reply(rst) = handle(
        &mut l,
        now,
        3333,
        TcpRepr {
            src_port: 3333,
            ack: 777,
            ..SEND
        },
        &mut counters,
    ) else {
        panic!("no RST");
    };
    assert_eq!(
        rst.header,
        TcpRepr {
            dst_port: 3333,
            seq: 777,
            ack: 0,
            flags: flags::RST,
            window: 0,
            ..RECV
        }
    );
    assert_eq!((counters.listen_rst, counters.syn_cookies_invalid), (1, 0));
    // A RST, or a FIN alone: ignored.
    for f in [flags::RST, flags::FIN] {
        assert!(matches!(
            handle(
                &mut l,
                now,
                3333,
                TcpRepr {
                    src_port: 3333,
                    flags: f,
                    ..SEND
                },
                &mut counters
            ),
            ListenerAction::Ignore
        ));
    }
}

#[test]
fn full_accept_queue_drops_syns_and_cookie_acks() {
    let mut l = listener(1);
    let mut counters = Counters::default();
    let now = Instant::ZERO;
    let full = |l: &mut Listener, port, seg, counters: &mut Counters| {
        l.handle_segment(
            now,
            from_port(port),
            &Segment {
                header: seg,
                payload: b"",
            },
            true,
            counters,
        )
    };
    assert!(matches!(
        full(&mut l, 2222, syn(2222, NO_OPTS), &mut counters),
        ListenerAction::Ignore
    ));
    assert_eq!(counters.accept_queue_full, 1);
    assert_eq!(l.half_open(), 0, "nothing was taken into the SYN queue");
    // With room again, the same SYN opens a connection.
    assert!(matches!(
        handle(&mut l, now, 2222, syn(2222, NO_OPTS), &mut counters),
        ListenerAction::NewConnection(_)
    ));
}
