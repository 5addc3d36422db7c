//! The worker's TCP in virtual time: frames in through `Demux::handle`, frames out through a
//! `VecSink`, parsed back with full checksums checked — a handshake, an echo and a close
//! leave the table, the slab and the timer wheel as they found them.

use std::sync::Arc;

use fastpath_common::{IPPROTO_TCP, layout::ETHERTYPE_IPV4};

use crate::{
    api::Stack,
    app::echo::TcpEcho,
    iface::demux::Demux,
    phy::{FrameHandler, testing::VecSink},
    socket::tcp::{TcpIoCounter, app::TcpHandler},
    tcp::{Connection, Event},
    time::Instant,
    wire::{
        ipv4::{Ipv4Packet, Ipv4Repr},
        tcp::{TcpOptions, TcpPacket, TcpRepr, flags},
        testing::{CLIENT, SERVER},
    },
};

const PORT: u16 = 7100;
const CLIENT_PORT: u16 = 40000;

/// A frame from the client to the server's `port`.
fn client_frame(port: u16, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    client_frame_from(CLIENT_PORT, port, flags, seq, ack, payload)
}

/// A frame from the client's `src_port` to the server's `port`.
fn client_frame_from(
    src_port: u16,
    port: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let options = if flags & flags::SYN != 0 {
        TcpOptions {
            mss: Some(1460),
            ..TcpOptions::default()
        }
    } else {
        TcpOptions::default()
    };
    let header = TcpRepr {
        src_port,
        dst_port: port,
        seq,
        ack,
        flags,
        window: 65535,
        options,
    };
    let hlen = header.header_len();
    let mut f = vec![0xa5u8; 14 + 20 + hlen + payload.len()];
    f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
    f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    Ipv4Repr {
        src: CLIENT,
        dst: SERVER,
        protocol: IPPROTO_TCP,
        payload_len: hlen + payload.len(),
        ttl: 64,
    }
    .emit(&mut f[14..])
    .unwrap();
    f[34 + hlen..].copy_from_slice(payload);
    header
        .emit(&mut f[34..], payload.len(), CLIENT, SERVER)
        .unwrap();
    f
}

/// A frame the server sent: its header and payload, after checking its addresses and
/// checksums.
#[track_caller]
fn server_segment(frame: &[u8]) -> (TcpRepr, Vec<u8>) {
    server_segment_to(frame, CLIENT_PORT)
}

#[track_caller]
fn server_segment_to(frame: &[u8], client_port: u16) -> (TcpRepr, Vec<u8>) {
    assert_eq!(&frame[0..6], &[2, 0, 0, 0, 0, 2], "to the client's MAC");
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!((ip.src(), ip.dst()), (SERVER, CLIENT));
    let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
    let header = TcpRepr::parse(&tcp, SERVER, CLIENT).expect("a full, valid checksum");
    assert_eq!((header.src_port, header.dst_port), (PORT, client_port));
    (header, tcp.payload().to_vec())
}

fn deliver(demux: &mut Demux, now: Instant, mut frame: Vec<u8>) -> Vec<Vec<u8>> {
    let len = frame.len();
    frame.resize(4096, 0);
    let mut sink = VecSink::new(64);
    assert_eq!(demux.handle(now, &mut frame, len, &mut sink), None);
    sink.frames
}

fn listening(workers: usize) -> Stack {
    let stack = Stack::detached(workers);
    stack
        .tcp_listen(
            format!("0.0.0.0:{PORT}").parse().unwrap(),
            16,
            Arc::new(TcpEcho),
        )
        .unwrap();
    stack
}

#[test]
fn a_connection_opens_echoes_closes_and_leaves_nothing_behind() {
    let stack = listening(1);
    let mut demux = Demux::new(stack.host().clone(), 0);
    let mut now = Instant::from_secs(100);

    let out = deliver(
        &mut demux,
        now,
        client_frame(PORT, flags::SYN, 1000, 0, b""),
    );
    assert_eq!(out.len(), 1, "a SYN-ACK");
    let (syn_ack, _) = server_segment(&out[0]);
    assert_eq!(syn_ack.flags, flags::SYN | flags::ACK);
    assert_eq!(syn_ack.ack, 1001);
    let server_isn = syn_ack.seq;
    assert_eq!(
        stack.host().table.len(),
        2,
        "the listener and the connection"
    );
    assert_eq!(demux.tcp().connections(), 1);

    now += std::time::Duration::from_millis(1);
    let ack = client_frame(PORT, flags::ACK, 1001, server_isn + 1, b"");
    assert!(deliver(&mut demux, now, ack).is_empty());
    let rows = stack.sockets();
    let row = rows.iter().find(|r| r.state == "established").unwrap();
    assert_eq!(
        (row.local.as_str(), row.remote.as_str(), row.worker.as_str()),
        ("198.18.0.1:7100", "198.18.0.2:40000", "0")
    );

    let data = client_frame(
        PORT,
        flags::ACK | flags::PSH,
        1001,
        server_isn + 1,
        b"hello",
    );
    let out = deliver(&mut demux, now, data);
    assert_eq!(out.len(), 1, "the echo (carrying the ACK)");
    let (echo, payload) = server_segment(&out[0]);
    assert_eq!(payload, b"hello");
    assert_eq!((echo.seq, echo.ack), (server_isn + 1, 1006));

    // The client acknowledges the echo and closes: the server echoed everything, so it
    // closes too, and the last ACK frees the connection.
    let fin = client_frame(PORT, flags::ACK | flags::FIN, 1006, server_isn + 6, b"");
    let out = deliver(&mut demux, now, fin);
    let (server_fin, _) = server_segment(out.last().expect("the server's FIN"));
    assert_ne!(server_fin.flags & flags::FIN, 0);
    assert_eq!(server_fin.ack, 1007);
    let last = client_frame(PORT, flags::ACK, 1007, server_fin.seq + 1, b"");
    assert!(deliver(&mut demux, now, last).is_empty());

    assert_eq!(stack.host().table.len(), 1, "only the listener is left");
    assert_eq!(demux.tcp().connections(), 0);
    assert_eq!(demux.timers_armed(), 0);
    let io = demux.tcp().io_counters();
    assert_eq!(io.get(TcpIoCounter::ConnectionsOpened), 1);
    assert_eq!(io.get(TcpIoCounter::ConnectionsClosed), 1);
    let core = demux.tcp().core_counters();
    assert_eq!(core.segments_in, 5);
    assert_eq!(core.rst_sent, 0);
}

#[test]
fn a_segment_for_no_socket_is_answered_with_a_reset() {
    let stack = listening(1);
    let mut demux = Demux::new(stack.host().clone(), 0);
    // To a port nothing listens on (steered by a rule left behind, say): RST, SEQ=SEG.ACK.
    let out = deliver(
        &mut demux,
        Instant::ZERO,
        client_frame(7200, flags::ACK, 5, 77, b"x"),
    );
    let rst = TcpPacket::new_checked(&out[0][34..]).unwrap();
    assert_eq!(
        (rst.flags(), rst.seq(), rst.dst_port()),
        (flags::RST, 77, CLIENT_PORT)
    );
    // A stray ACK to the listener: the listener's RST.
    let out = deliver(
        &mut demux,
        Instant::ZERO,
        client_frame(PORT, flags::ACK, 5, 99, b""),
    );
    let (rst, _) = server_segment(&out[0]);
    assert_eq!((rst.flags, rst.seq), (flags::RST, 99));
    // A RST is never answered.
    let out = deliver(
        &mut demux,
        Instant::ZERO,
        client_frame(7200, flags::RST, 5, 0, b""),
    );
    assert!(out.is_empty());
    assert_eq!(demux.tcp().core_counters().rst_sent, 2);
    assert_eq!(demux.tcp().io_counters().get(TcpIoCounter::NoSocket), 2);
}

#[test]
fn a_segment_on_another_worker_reaches_the_owner_through_its_mailbox() {
    let stack = listening(2);
    let mut owner = Demux::new(stack.host().clone(), 0);
    let mut other = Demux::new(stack.host().clone(), 1);
    let now = Instant::from_secs(1);
    let out = deliver(
        &mut owner,
        now,
        client_frame(PORT, flags::SYN, 1000, 0, b""),
    );
    let (syn_ack, _) = server_segment(&out[0]);
    // The handshake's last ACK and data land on worker 1.
    let data = client_frame(
        PORT,
        flags::ACK | flags::PSH,
        1001,
        syn_ack.seq + 1,
        b"moved",
    );
    assert!(deliver(&mut other, now, data).is_empty());
    assert_eq!(
        other.tcp().io_counters().get(TcpIoCounter::Forwarded),
        1,
        "handed over, not dropped"
    );
    assert!(owner.wants_poll(now));
    let mut sink = VecSink::new(8);
    owner.poll(now, &mut sink);
    let (_, payload) = server_segment(&sink.frames[0]);
    assert_eq!(payload, b"moved", "the owner echoed it");
}

#[test]
fn output_beyond_the_tx_budget_waits_for_the_next_poll() {
    let stack = listening(1);
    let mut demux = Demux::new(stack.host().clone(), 0);
    let now = Instant::from_secs(1);
    let out = deliver(
        &mut demux,
        now,
        client_frame(PORT, flags::SYN, 1000, 0, b""),
    );
    let (syn_ack, _) = server_segment(&out[0]);
    // 2 full segments' worth arrive (Nagle would hold a partial one back); the echo finds
    // no TX room in this batch.
    let payload = vec![7u8; 2920];
    let mut frame = client_frame(PORT, flags::ACK, 1001, syn_ack.seq + 1, &payload);
    let len = frame.len();
    frame.resize(4096, 0);
    let mut full = VecSink::new(0);
    demux.handle(now, &mut frame, len, &mut full);
    assert!(full.frames.is_empty());
    assert!(demux.tcp().has_deferred());
    assert!(demux.wants_poll(now));
    let mut sink = VecSink::new(8);
    demux.poll(now, &mut sink);
    let echoed: usize = sink.frames.iter().map(|f| server_segment(f).1.len()).sum();
    assert_eq!(echoed, 2920, "all of it, once room came");
    assert!(!demux.tcp().has_deferred());
}

/// Closes every connection as soon as it is established: the server closes first, so it
/// is the one that enters TIME-WAIT.
struct CloseFirst;

impl TcpHandler for CloseFirst {
    fn on_event(&self, conn: &mut Connection, event: Event, _scratch: &mut [u8]) {
        if event == Event::Connected {
            conn.shutdown();
        }
    }
}

/// A handshake, the server's FIN, the client's FIN: the server is left in TIME-WAIT, or,
/// with no room for one more, freed at once (its last ACK still sent).
fn close_first(demux: &mut Demux, now: Instant, client_port: u16) {
    let frame = |flags, seq, ack| client_frame_from(client_port, PORT, flags, seq, ack, b"");
    let out = deliver(demux, now, frame(flags::SYN, 1000, 0));
    let (syn_ack, _) = server_segment_to(&out[0], client_port);
    let out = deliver(demux, now, frame(flags::ACK, 1001, syn_ack.seq + 1));
    let (fin, _) = server_segment_to(out.last().expect("the server's FIN"), client_port);
    assert_ne!(fin.flags & flags::FIN, 0);
    let out = deliver(
        demux,
        now,
        frame(flags::ACK | flags::FIN, 1001, fin.seq + 1),
    );
    let (last_ack, _) = server_segment_to(
        out.last().expect("the ACK of the client's FIN"),
        client_port,
    );
    assert_eq!(last_ack.ack, 1002);
}

#[test]
fn time_wait_beyond_the_cap_is_freed_at_once() {
    let stack = Stack::detached(1);
    stack
        .tcp_listen(
            format!("0.0.0.0:{PORT}").parse().unwrap(),
            16,
            Arc::new(CloseFirst),
        )
        .unwrap();
    let mut demux = Demux::new(stack.host().clone(), 0);
    demux.tcp_mut().set_max_time_wait(2);
    let now = Instant::from_secs(100);
    for i in 0..5 {
        close_first(&mut demux, now, 41000 + i);
    }
    assert_eq!(demux.tcp().connections(), 2, "two held in TIME-WAIT");
    let time_wait = stack
        .sockets()
        .iter()
        .filter(|r| r.state == "time-wait")
        .count();
    assert_eq!(time_wait, 2);
    let io = demux.tcp().io_counters();
    assert_eq!(io.get(TcpIoCounter::TimeWaitOverflow), 3);
    assert_eq!(io.get(TcpIoCounter::ConnectionsClosed), 3);
    assert_eq!(
        demux.timers_armed(),
        2,
        "only the two in TIME-WAIT keep a timer"
    );
}

/// One accept queue, the socket's: while it is full a SYN is dropped and counted (Linux's
/// behaviour), and once a thread took the waiting connection the next SYN is answered.
/// Before, the listener kept a second queue that the engine emptied at once, so
/// `accept_queue_full` never counted and a SYN was answered into a queue with no room.
#[test]
fn a_full_accept_queue_drops_syns_and_counts_them() {
    let stack = Stack::detached(1);
    let listener = stack
        .tcp_listen_queued(format!("0.0.0.0:{PORT}").parse().unwrap(), 16, 1)
        .unwrap();
    let mut demux = Demux::new(stack.host().clone(), 0);
    let now = Instant::from_secs(1);
    let handshake = |demux: &mut Demux, port: u16| {
        let out = deliver(
            demux,
            now,
            client_frame_from(port, PORT, flags::SYN, 100, 0, b""),
        );
        let (syn_ack, _) = server_segment_to(&out[0], port);
        let ack = client_frame_from(port, PORT, flags::ACK, 101, syn_ack.seq + 1, b"");
        deliver(demux, now, ack);
    };
    handshake(&mut demux, 40001);
    assert_eq!(demux.tcp().core_counters().accept_queue_full, 0);
    let out = deliver(
        &mut demux,
        now,
        client_frame_from(40002, PORT, flags::SYN, 100, 0, b""),
    );
    assert!(out.is_empty(), "no SYN-ACK while the accept queue is full");
    assert_eq!(demux.tcp().core_counters().accept_queue_full, 1);
    let accepted = stack
        .tcp_accept(listener, std::time::Duration::ZERO)
        .expect("the first connection waits in the queue");
    let out = deliver(
        &mut demux,
        now,
        client_frame_from(40002, PORT, flags::SYN, 100, 0, b""),
    );
    let (syn_ack, _) = server_segment_to(&out[0], 40002);
    assert_eq!(syn_ack.flags, flags::SYN | flags::ACK);
    let _ = accepted;
}
