//! One TCP connection driven by a scripted handshake into a chosen state (SYN-SENT,
//! SYN-RECEIVED, ESTABLISHED either way, FIN-WAIT-1/2, CLOSE-WAIT, LAST-ACK, CLOSING,
//! TIME-WAIT), then fed arbitrary segments (fields near the live sequence numbers or
//! anywhere, options, payload), time steps and application calls. Checked after every
//! step: no panic; buffers within the configured limits; nothing sent beyond what was
//! written; every payload byte sent is the byte written at that offset; every byte read
//! is the byte the peer sent at that sequence number (the peer's payload is a function of
//! its sequence number, so reassembly is checked whatever the fuzzer does).
#![no_main]
use std::{net::SocketAddr, time::Duration};

use fastpath::{
    tcp::{
        congestion::Algorithm,
        connection::{Connection, Counters, Endpoints, Segment, State, TcpConfig},
        seq::SeqNumber,
    },
    time::Instant,
    wire::tcp::{TcpOptions, TcpRepr, flags},
};
use libfuzzer_sys::fuzz_target;

/// Reads the fuzzer's bytes as numbers; zeros once they run out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const OUR_ISN: u32 = 0xfff0_0000; // wraps during the run
const PEER_ISN: u32 = 0x7fff_ff00; // crosses the signed midpoint
const LOCAL: &str = "198.18.0.1:40000";
const REMOTE: &str = "198.18.0.2:80";
/// The payload buffer `poll_transmit` writes into.
const PAYLOAD_ROOM: usize = 9000;

/// What we write: byte `i` of our stream.
fn our_byte(i: u32) -> u8 {
    (i.wrapping_mul(0x9e37_79b9) >> 24) as u8
}

/// What the peer sends at sequence number `seq`.
fn peer_byte(seq: u32) -> u8 {
    (seq.wrapping_mul(0x85eb_ca6b).rotate_left(13) >> 24) as u8 ^ 0x5a
}

struct Harness {
    c: Connection,
    config: TcpConfig,
    counters: Counters,
    now: Instant,
    /// The connection's ISS and the peer's ISN, once known.
    iss: u32,
    irs: Option<u32>,
    /// Bytes the application wrote, and read.
    written: u32,
    read: u32,
    /// The peer's next in-order sequence number, and its timestamp clock.
    peer_nxt: u32,
    peer_ts: u32,
    /// The highest sequence number (plus length) the connection has sent, and its last
    /// TSval.
    our_max: u32,
    our_ts: u32,
    payload: Vec<u8>,
}

impl Harness {
    fn config(bits: u8, sizes: u8) -> TcpConfig {
        let small = sizes & 1 != 0;
        TcpConfig {
            mss: if sizes & 2 != 0 { 536 } else { 1460 },
            send_buffer: if small { 4096 } else { 64 << 10 },
            recv_buffer: if small { 3000 } else { 64 << 10 },
            max_out_of_order: if small { 2048 } else { 32 << 10 },
            sack: bits & 1 != 0,
            timestamps: bits & 2 != 0,
            window_scale: bits & 4 != 0,
            nagle: bits & 8 != 0,
            delayed_ack: (bits & 16 != 0).then_some(Duration::from_millis(40)),
            congestion: if bits & 32 != 0 {
                Algorithm::NewReno
            } else {
                Algorithm::Cubic
            },
            min_rto: Duration::from_millis(5),
            max_syn_retries: 3,
            max_retransmits: 4,
            msl: Duration::from_secs(2),
            ..TcpConfig::default()
        }
    }

    fn endpoints() -> Endpoints {
        Endpoints {
            local: LOCAL.parse::<SocketAddr>().unwrap(),
            remote: REMOTE.parse::<SocketAddr>().unwrap(),
        }
    }

    fn peer_options(&self, syn: bool) -> TcpOptions {
        TcpOptions {
            mss: syn.then_some(1400),
            window_scale: (syn && self.config.window_scale).then_some(7),
            sack_permitted: syn && self.config.sack,
            sack_blocks: [None; 4],
            timestamp: self
                .config
                .timestamps
                .then_some((self.peer_ts, self.our_ts)),
        }
    }

    /// A segment from the peer at its next sequence number.
    fn peer_segment(&self, flags: u8, ack: u32, payload_len: usize) -> (TcpRepr, Vec<u8>) {
        let header = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            seq: self.peer_nxt,
            ack,
            flags,
            window: 65535,
            options: self.peer_options(flags & flags::SYN != 0),
        };
        let payload = (0..payload_len as u32)
            .map(|i| peer_byte(self.peer_nxt.wrapping_add(i)))
            .collect();
        (header, payload)
    }

    fn deliver(&mut self, header: TcpRepr, payload: &[u8]) {
        self.peer_ts = self.peer_ts.wrapping_add(1);
        let was_syn_sent = self.c.state() == State::SynSent;
        self.c
            .handle_segment(self.now, &Segment { header, payload }, &mut self.counters);
        // In SYN-SENT, an acceptable SYN-ACK fixes the peer's ISN.
        if was_syn_sent && self.c.state() != State::SynSent && header.flags & flags::SYN != 0 {
            self.irs = Some(header.seq);
        }
        self.check();
    }

    /// Everything the connection sends now, checked.
    fn drain(&mut self) {
        for _ in 0..10_000 {
            let Some(t) = self
                .c
                .poll_transmit(self.now, &mut self.payload, &mut self.counters)
            else {
                self.check();
                return;
            };
            let h = t.header;
            assert!(t.payload_len <= PAYLOAD_ROOM);
            assert_eq!((h.src_port, h.dst_port), (40000, 80));
            if h.flags & flags::RST == 0 {
                // Sequence space: nothing beyond the SYN, the bytes written and the FIN.
                let start = h.seq.wrapping_sub(self.iss);
                let syn = u32::from(h.flags & flags::SYN != 0);
                let fin = u32::from(h.flags & flags::FIN != 0);
                let end = start.wrapping_add(syn + t.payload_len as u32 + fin);
                assert!(
                    end <= self.written.wrapping_add(2) && start <= end,
                    "sent {start}..{end} (relative) with {} written",
                    self.written
                );
                // The payload is what was written at those offsets.
                for (i, &b) in self.payload[..t.payload_len].iter().enumerate() {
                    let offset = start
                        .wrapping_add(syn)
                        .wrapping_sub(1)
                        .wrapping_add(i as u32);
                    assert_eq!(b, our_byte(offset), "byte {offset} sent wrong");
                }
                if end.wrapping_sub(self.our_max.wrapping_sub(self.iss)) as i32 > 0 {
                    self.our_max = self.iss.wrapping_add(end);
                }
                if let Some((val, _)) = h.options.timestamp {
                    self.our_ts = val;
                }
            }
        }
        panic!("poll_transmit never returned None");
    }

    fn check(&self) {
        let info = self.c.info();
        assert!(info.send_queued <= self.config.send_buffer, "{info:?}");
        assert!(info.recv_queued <= self.config.recv_buffer, "{info:?}");
        assert!(
            info.out_of_order <= self.config.max_out_of_order,
            "{info:?}"
        );
        // The unacknowledged sequence space holds at most the buffered bytes, a SYN and
        // a FIN (a closed connection has dropped its buffers, not its numbers).
        if info.state != State::Closed {
            assert!(info.in_flight as usize <= info.send_queued + 2, "{info:?}");
        }
        assert!(info.in_flight <= self.written.wrapping_add(2), "{info:?}");
        let limit = 2 * (self.config.send_buffer + self.config.recv_buffer) + 16 * 1024;
        assert!(info.buffer_capacity <= limit, "{info:?}");
        assert!(info.cwnd >= 1, "{info:?}");
    }

    /// Moves time on by `delta`, firing each deadline at its own time on the way.
    fn advance(&mut self, delta: Duration) {
        let until = self.now + delta;
        let mut same_instant = 0;
        while let Some(at) = self.c.poll_timeout().filter(|&at| at <= until) {
            if at <= self.now {
                same_instant += 1;
                assert!(
                    same_instant < 1_000,
                    "the timer keeps falling due at {:?}",
                    self.now
                );
            } else {
                same_instant = 0;
                self.now = at;
            }
            self.c.handle_timeout(self.now, &mut self.counters);
            self.drain();
        }
        self.now = until;
    }

    fn write(&mut self, n: usize) {
        let data: Vec<u8> = (0..n as u32)
            .map(|i| our_byte(self.written.wrapping_add(i)))
            .collect();
        let accepted = self.c.write(&data);
        assert!(accepted <= n);
        self.written = self.written.wrapping_add(accepted as u32);
    }

    fn read(&mut self, n: usize) {
        let mut buf = vec![0u8; n];
        let got = self.c.read(&mut buf);
        assert!(got <= n);
        if let Some(irs) = self.irs {
            for (i, &b) in buf[..got].iter().enumerate() {
                let seq = irs
                    .wrapping_add(1)
                    .wrapping_add(self.read)
                    .wrapping_add(i as u32);
                assert_eq!(
                    b,
                    peer_byte(seq),
                    "read byte {} wrong",
                    self.read as usize + i
                );
            }
        }
        self.read = self.read.wrapping_add(got as u32);
    }

    /// The scripted way into each state (asserting it got there): 0 SYN-SENT,
    /// 1 SYN-RECEIVED, 2 ESTABLISHED (active), 3 ESTABLISHED (passive), 4 FIN-WAIT-1,
    /// 5 FIN-WAIT-2, 6 CLOSE-WAIT, 7 LAST-ACK, 8 CLOSING, 9 TIME-WAIT.
    fn start(target: u8, config: TcpConfig, initial_data: usize) -> Harness {
        let mut h = Harness::new(config);
        let passive = matches!(target, 1 | 3);
        let opened = if passive {
            h.open_passive(target == 1)
        } else {
            h.open_active(target == 0)
        };
        if !opened {
            return h;
        }
        h.drain();
        assert_eq!(h.c.state(), State::Established, "handshake for {target}");
        // Some data in flight, unacknowledged.
        h.write(initial_data);
        h.drain();
        match target {
            4 | 5 | 8 | 9 => h.close_first(target),
            6 | 7 => h.peer_closes_first(target),
            _ => {}
        }
        h
    }

    /// A connection in SYN-SENT, its SYN not yet out.
    fn new(config: TcpConfig) -> Harness {
        Harness {
            c: Connection::connect(
                &config,
                Self::endpoints(),
                SeqNumber(OUR_ISN),
                Instant::ZERO,
            ),
            config,
            counters: Counters::default(),
            now: Instant::from_millis(1),
            iss: OUR_ISN,
            irs: None,
            written: 0,
            read: 0,
            peer_nxt: PEER_ISN,
            peer_ts: 1000,
            our_ts: 0,
            our_max: OUR_ISN,
            payload: vec![0; PAYLOAD_ROOM],
        }
    }

    /// The peer's SYN accepted, our SYN-ACK sent; then, unless `stop` (SYN-RECEIVED is
    /// the target), the peer's ACK delivered. Returns false if stopped.
    fn open_passive(&mut self, stop: bool) -> bool {
        let (syn, _) = self.peer_segment(flags::SYN, 0, 0);
        self.c = Connection::accept_syn(
            &self.config,
            Self::endpoints(),
            &Segment {
                header: syn,
                payload: &[],
            },
            SeqNumber(OUR_ISN),
            self.now,
        );
        self.irs = Some(PEER_ISN);
        self.peer_nxt = PEER_ISN.wrapping_add(1);
        self.drain();
        assert_eq!(self.c.state(), State::SynReceived);
        if stop {
            return false;
        }
        let (ack, _) = self.peer_segment(flags::ACK, OUR_ISN.wrapping_add(1), 0);
        self.deliver(ack, &[]);
        true
    }

    /// Our SYN sent; then, unless `stop` (SYN-SENT is the target), the peer's SYN-ACK
    /// delivered. Returns false if stopped.
    fn open_active(&mut self, stop: bool) -> bool {
        self.drain();
        assert_eq!(self.c.state(), State::SynSent);
        if stop {
            return false;
        }
        let (syn_ack, _) = self.peer_segment(flags::SYN | flags::ACK, OUR_ISN.wrapping_add(1), 0);
        self.deliver(syn_ack, &[]);
        self.peer_nxt = PEER_ISN.wrapping_add(1);
        true
    }

    /// From ESTABLISHED, we close first: 4 FIN-WAIT-1, 5 FIN-WAIT-2, 8 CLOSING (the peer's
    /// FIN crosses ours), 9 TIME-WAIT.
    fn close_first(&mut self, target: u8) {
        let acked = OUR_ISN.wrapping_add(1);
        self.c.shutdown();
        self.drain();
        assert_eq!(self.c.state(), State::FinWait1);
        if matches!(target, 5 | 9) {
            // Everything, FIN included, acknowledged: the window may need a few
            // rounds to let the data and the FIN out.
            for _ in 0..100 {
                let (ack, _) = self.peer_segment(flags::ACK, self.our_max, 0);
                self.deliver(ack, &[]);
                self.drain();
                if self.c.state() != State::FinWait1 {
                    break;
                }
            }
            assert_eq!(self.c.state(), State::FinWait2);
        }
        if matches!(target, 8 | 9) {
            let ack = if target == 9 { self.our_max } else { acked };
            let (fin, _) = self.peer_segment(flags::FIN | flags::ACK, ack, 0);
            self.deliver(fin, &[]);
            self.peer_nxt = self.peer_nxt.wrapping_add(1);
            self.drain();
            let want = if target == 9 {
                State::TimeWait
            } else {
                State::Closing
            };
            assert_eq!(self.c.state(), want);
        }
    }

    /// From ESTABLISHED, the peer closes first: 6 CLOSE-WAIT, 7 LAST-ACK.
    fn peer_closes_first(&mut self, target: u8) {
        let acked = OUR_ISN.wrapping_add(1);
        let (fin, _) = self.peer_segment(flags::FIN | flags::ACK, acked, 0);
        self.deliver(fin, &[]);
        self.peer_nxt = self.peer_nxt.wrapping_add(1);
        self.drain();
        assert_eq!(self.c.state(), State::CloseWait);
        if target == 7 {
            self.c.shutdown();
            self.drain();
            assert_eq!(self.c.state(), State::LastAck);
        }
    }

    /// One fuzzer-chosen segment.
    fn fuzz_segment(&mut self, input: &mut Input<'_>) {
        let mode = input.u8();
        let seq = if mode & 1 != 0 {
            input.u32()
        } else {
            self.peer_nxt
                .wrapping_add(i32::from(input.u16() as i16) as u32)
        };
        let ack = if mode & 2 != 0 {
            input.u32()
        } else {
            self.our_max
                .wrapping_add(i32::from(input.u16() as i16) as u32)
        };
        let flags = input.u8();
        let window = input.u16();
        let len = usize::from(input.u16()) % if mode & 4 != 0 { 3000 } else { 200 };
        let opt = input.u8();
        let mut options = TcpOptions {
            mss: (opt & 1 != 0).then(|| input.u16()),
            window_scale: (opt & 2 != 0).then(|| input.u8()),
            sack_permitted: opt & 4 != 0,
            sack_blocks: [None; 4],
            timestamp: None,
        };
        if opt & 8 != 0 {
            let val = self
                .peer_ts
                .wrapping_add(i32::from(input.u8() as i8) as u32);
            let ecr = if opt & 16 != 0 {
                input.u32()
            } else {
                self.our_ts
            };
            options.timestamp = Some((val, ecr));
        }
        let blocks = usize::from(opt >> 5) % 5;
        for block in options.sack_blocks.iter_mut().take(blocks) {
            let left = self.our_max.wrapping_sub(u32::from(input.u16()));
            *block = Some((left, left.wrapping_add(u32::from(input.u16() % 4096))));
        }
        let header = TcpRepr {
            src_port: 80,
            dst_port: 40000,
            seq,
            ack,
            flags,
            window,
            options,
        };
        // Data follows the SYN's sequence number, if it has one.
        let data_seq = seq.wrapping_add(u32::from(flags & flags::SYN != 0));
        let payload: Vec<u8> = (0..len as u32)
            .map(|i| peer_byte(data_seq.wrapping_add(i)))
            .collect();
        // A segment the peer sends in order moves its next sequence number on.
        if seq == self.peer_nxt {
            let syn = u32::from(flags & flags::SYN != 0);
            let fin = u32::from(flags & flags::FIN != 0);
            self.peer_nxt = seq.wrapping_add(len as u32 + syn + fin);
        }
        // Wrapping options this large could not be emitted; the wire would have rejected
        // them before the connection saw them.
        if header.header_len() > 60 {
            return;
        }
        self.deliver(header, &payload);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let target = input.u8() % 10;
    let config = Harness::config(input.u8(), input.u8());
    let initial = usize::from(input.u16() % 8192);
    let mut h = Harness::start(target, config, initial);
    let mut steps = 0;
    while !input.is_empty() && steps < 2_000 {
        steps += 1;
        match input.u8() % 10 {
            0..=3 => h.fuzz_segment(&mut input),
            4 => h.advance(Duration::from_micros(u64::from(input.u16()) * 16)),
            5 => h.advance(Duration::from_millis(u64::from(input.u16()))),
            6 => h.write(usize::from(input.u16() % 10_000)),
            7 => h.read(usize::from(input.u16() % 10_000)),
            8 => match input.u8() % 8 {
                0 => h.c.shutdown(),
                1 => h.c.close(),
                2 => h.c.abort(),
                _ => {}
            },
            _ => while h.c.poll_event().is_some() {},
        }
        h.drain();
        h.check();
    }
    // Left alone, every connection either finishes or keeps a timer running.
    h.advance(Duration::from_secs(3600));
});
