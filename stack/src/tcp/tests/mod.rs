//! Packet-script tests of the TCP core (smoltcp's style): a connection under test, the
//! peer played by the script with template segments, explicit virtual time, and exact
//! expected segments out. Payload buffers start filled with 0xa5 so unset bytes show.

use std::{net::SocketAddr, time::Duration};

use super::{
    CloseReason, Connection, Counters, Endpoints, Event, Segment, SeqNumber, State, TcpConfig,
};
use crate::{
    time::Instant,
    wire::tcp::{TcpOptions, TcpRepr, flags},
};

mod close;
mod data;
mod handshake;
mod hostile;
mod listen;
mod recovery;
mod timers;

pub const LOCAL_PORT: u16 = 80;
pub const REMOTE_PORT: u16 = 49500;
/// Our ISN and the peer's.
pub const LOCAL_ISS: u32 = 10_000;
pub const REMOTE_ISS: u32 = 20_000;

pub const NO_OPTS: TcpOptions = TcpOptions {
    mss: None,
    window_scale: None,
    sack_permitted: false,
    sack_blocks: [None; 4],
    timestamp: None,
};

/// What the peer sends: an ACK from the remote port.
pub const SEND: TcpRepr = TcpRepr {
    src_port: REMOTE_PORT,
    dst_port: LOCAL_PORT,
    seq: REMOTE_ISS + 1,
    ack: LOCAL_ISS + 1,
    flags: flags::ACK,
    window: 65535,
    options: NO_OPTS,
};

/// What we send.
pub const RECV: TcpRepr = TcpRepr {
    src_port: LOCAL_PORT,
    dst_port: REMOTE_PORT,
    seq: LOCAL_ISS + 1,
    ack: REMOTE_ISS + 1,
    flags: flags::ACK,
    window: 65535,
    options: NO_OPTS,
};

pub fn endpoints() -> Endpoints {
    Endpoints {
        local: SocketAddr::new("192.0.2.1".parse().unwrap(), LOCAL_PORT),
        remote: SocketAddr::new("192.0.2.2".parse().unwrap(), REMOTE_PORT),
    }
}

/// Plain scripts: no options, every segment ACKed at once, a 64 KiB - 1 receive buffer
/// (so windows need no scaling), 1000-byte segments.
pub fn config() -> TcpConfig {
    TcpConfig {
        mss: 1000,
        send_buffer: 64 * 1024,
        recv_buffer: 65535,
        msl: Duration::from_secs(30),
        min_rto: Duration::from_millis(200),
        max_rto: Duration::from_secs(60),
        initial_rto: Duration::from_secs(1),
        nagle: false,
        delayed_ack: None,
        sack: false,
        timestamps: false,
        window_scale: false,
        ..TcpConfig::default()
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub struct Harness {
    pub c: Connection,
    pub counters: Counters,
    pub now: Instant,
}

impl Harness {
    pub fn new(c: Connection) -> Harness {
        Harness {
            c,
            counters: Counters::default(),
            now: Instant::ZERO,
        }
    }

    /// The peer sends `header` with `payload`.
    #[track_caller]
    pub fn send(&mut self, header: TcpRepr, payload: &[u8]) {
        let now = self.now;
        self.c
            .handle_segment(now, &Segment { header, payload }, &mut self.counters);
    }

    /// Everything the connection sends now, with payloads.
    pub fn poll(&mut self) -> Vec<(TcpRepr, Vec<u8>)> {
        let mut out = Vec::new();
        for _ in 0..1000 {
            let mut buf = [0xa5u8; 1500];
            let room = 1500;
            match self
                .c
                .poll_transmit(self.now, &mut buf[..room], &mut self.counters)
            {
                Some(t) => out.push((t.header, buf[..t.payload_len].to_vec())),
                None => return out,
            }
        }
        panic!("poll_transmit never returned None");
    }

    /// The connection sends exactly `expected` now.
    #[track_caller]
    pub fn recv(&mut self, expected: &[(TcpRepr, &[u8])]) {
        let got = self.poll();
        let want: Vec<(TcpRepr, Vec<u8>)> =
            expected.iter().map(|(h, p)| (*h, p.to_vec())).collect();
        if got != want {
            panic!(
                "at {:?} in {:?}:\n sent     {}\n expected {}",
                self.now,
                self.c.state(),
                show(&got),
                show(&want)
            );
        }
    }

    /// The connection sends this one header-only segment.
    #[track_caller]
    pub fn recv1(&mut self, expected: TcpRepr) {
        self.recv(&[(expected, b"")]);
    }

    #[track_caller]
    pub fn recv_nothing(&mut self) {
        self.recv(&[]);
    }

    /// Moves the clock to `t` (from the start), firing timers due by then.
    pub fn at(&mut self, t: Duration) {
        self.now = Instant::ZERO + t;
        if self.c.poll_timeout().is_some_and(|at| at <= self.now) {
            self.c.handle_timeout(self.now, &mut self.counters);
        }
    }

    /// Moves the clock to the next deadline and fires it; returns when that was.
    #[track_caller]
    pub fn fire(&mut self) -> Duration {
        let at = self.c.poll_timeout().expect("no timer armed");
        assert!(
            at >= self.now,
            "deadline {at:?} in the past (now {:?})",
            self.now
        );
        self.now = at;
        self.c.handle_timeout(at, &mut self.counters);
        at - Instant::ZERO
    }

    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.c.poll_event()).collect()
    }

    #[track_caller]
    pub fn expect_state(&self, state: State) {
        assert_eq!(self.c.state(), state, "at {:?}", self.now);
    }

    pub fn read_all(&mut self) -> Vec<u8> {
        let mut out = vec![0u8; self.c.readable()];
        let n = self.c.read(&mut out);
        out.truncate(n);
        out
    }
}

fn show(segs: &[(TcpRepr, Vec<u8>)]) -> String {
    if segs.is_empty() {
        return "nothing".into();
    }
    segs.iter()
        .map(|(h, p)| format!("{h:?} + {} bytes {:?}", p.len(), &p[..p.len().min(8)]))
        .collect::<Vec<_>>()
        .join("\n          ")
}

/// A connection established by active open with `config`, at time zero, both sides'
/// options as `config` offers them echoed by the peer. The peer's window is 65535.
pub fn established(config: TcpConfig) -> Harness {
    let mut h = Harness::new(Connection::connect(
        &config,
        endpoints(),
        SeqNumber(LOCAL_ISS),
        Instant::ZERO,
    ));
    let syn = h.poll();
    assert_eq!(syn.len(), 1);
    let o = syn[0].0.options;
    h.send(
        TcpRepr {
            seq: REMOTE_ISS,
            ack: LOCAL_ISS + 1,
            flags: flags::SYN | flags::ACK,
            options: TcpOptions {
                mss: Some(config.mss),
                window_scale: o.window_scale,
                sack_permitted: o.sack_permitted,
                timestamp: o.timestamp.map(|(val, _)| (PEER_TS, val)),
                ..NO_OPTS
            },
            ..SEND
        },
        b"",
    );
    let ack = h.poll();
    assert_eq!(ack.len(), 1, "{ack:?}");
    assert_eq!(h.c.state(), State::Established);
    assert_eq!(
        h.events(),
        vec![Event::Connected, Event::Writable],
        "handshake events"
    );
    h.counters = Counters::default();
    h
}

/// The peer's timestamp clock at time zero.
pub const PEER_TS: u32 = 500;

/// A payload of `n` bytes counting up from `from`.
pub fn bytes(from: usize, n: usize) -> Vec<u8> {
    (from..from + n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn closed_reason_is_reported_once() {
    let mut h = established(config());
    h.c.abort();
    h.recv1(TcpRepr {
        flags: flags::RST,
        ack: 0,
        window: 0,
        ..RECV
    });
    assert_eq!(h.events(), vec![Event::Closed(CloseReason::Aborted)]);
    assert!(h.c.is_closed());
    assert_eq!(h.c.poll_timeout(), None);
}
