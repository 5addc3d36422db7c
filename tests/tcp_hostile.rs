//! Hostile segments against live TCP on the workers, injected from a packet socket in the
//! peer namespace while a kernel client streams through the echo.
//!
//! Sequence-sensitive cases (RST out of and in the window, SYN in the window, an ACK of
//! data never sent) go to a second, idle connection whose sequence numbers and timestamps
//! are learned by sniffing its last exchange on the client's veth: on an idle connection
//! they stand still, so "in the window but not exact" is certain and a stray exact RST can
//! never happen. Sequence-blind cases (SYN+FIN, malformed options, a data offset past the
//! segment) use the streaming connection's own four-tuple. Then a SYN flood from spoofed
//! sources fills a backlog of 4, and a new kernel client must still get in (SYN cookies).
//! Through all of it the stream keeps going, byte-exact, and every case is counted by its
//! reason in `fastpath stats --json`.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, Shutdown, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use fastpath_e2e::{tcp::*, *};

const PORT: u16 = 7120;
/// Sources of the flood: in the client's subnet but not its address, so the SYN-ACKs reach
/// the client's veth (fastpath answers the source MAC) and the kernel drops them (not its
/// address, no forwarding) instead of resetting the half-open connections.
const SPOOFED_BASE: u8 = 100;
const FLOOD: u16 = 256;
const BACKLOG: u64 = 4;

/// What the idle connection's last exchange showed.
#[derive(Debug)]
struct Learned {
    /// The next byte fastpath expects from the client.
    rcv_nxt: u32,
    /// The next byte fastpath sends.
    snd_nxt: u32,
    /// The client's latest TSval and fastpath's latest TSval.
    ts: Option<(u32, u32)>,
}

/// Echoes `msg` on `stream` while sniffing, and learns the connection's numbers.
fn exchange_and_learn(pair: &VethPair, stream: &mut TcpStream, msg: &[u8]) -> Learned {
    let sniffer = Sniffer::open(pair);
    stream.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, msg);
    // The client's ACK of the echo, delayed at most 40 ms by Linux.
    thread::sleep(Duration::from_millis(300));
    let port = stream.local_addr().unwrap().port();
    let seen = sniffer.drain(100_000);
    let from_server: Vec<_> = seen
        .iter()
        .filter(|s| s.src == (SERVER_ADDR, PORT) && s.dst.1 == port)
        .collect();
    let from_client: Vec<_> = seen
        .iter()
        .filter(|s| s.dst == (SERVER_ADDR, PORT) && s.src.1 == port)
        .collect();
    let last_server = from_server.last().expect("no segment from the server seen");
    let last_client = from_client.last().expect("no segment from the client seen");
    let fin = |s: &Seen| u32::from(s.flags & FIN != 0);
    Learned {
        rcv_nxt: last_client
            .seq
            .wrapping_add(last_client.payload_len + fin(last_client)),
        snd_nxt: last_server
            .seq
            .wrapping_add(last_server.payload_len + fin(last_server)),
        ts: last_client
            .timestamp
            .zip(last_server.timestamp)
            .map(|(c, s)| (c.0, s.0)),
    }
}

/// A background kernel client streaming through the echo until told to stop (or
/// `STREAM_LIMIT` passes, or 4 GiB), checking every byte; returns (sent, received).
fn start_stream(
    stream: TcpStream,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<Result<(u64, u64), String>> {
    const STREAM_LIMIT: Duration = Duration::from_secs(240);
    const SEED: u64 = 99;
    thread::spawn(move || {
        let reader = stream.try_clone().map_err(|e| e.to_string())?;
        let check = thread::spawn(move || check_echo(reader, SEED, u64::MAX));
        let mut writer = stream;
        let mut chunk = vec![0u8; 16 * 1024];
        let mut sent = 0u64;
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) && start.elapsed() < STREAM_LIMIT && sent < 4 << 30 {
            fill(SEED, sent, &mut chunk);
            writer
                .write_all(&chunk)
                .map_err(|e| format!("write at byte {sent}: {e}"))?;
            sent += chunk.len() as u64;
        }
        writer
            .shutdown(Shutdown::Write)
            .map_err(|e| e.to_string())?;
        let got = check.join().map_err(|_| "reader panicked".to_string())??;
        Ok((sent, got))
    })
}

/// Waits until counter `name` rose by exactly `by` from `before` (and stays there a
/// moment), or fails naming the case.
#[track_caller]
fn expect_rise(fastpath: &FastpathProcess, case: &str, name: &str, before: u64, by: u64) {
    let mut now = before;
    let reached = eventually(Duration::from_secs(5), || {
        now = sum_counter(fastpath, name);
        now >= before + by
    });
    assert!(
        reached,
        "{case}: {name} went {before} -> {now}, expected +{by}\n{}",
        stats(fastpath)
    );
    thread::sleep(Duration::from_millis(100));
    let now = sum_counter(fastpath, name);
    assert_eq!(now, before + by, "{case}: {name} rose by {}", now - before);
}

fn ts_option(tsval: u32, tsecr: u32) -> Vec<u8> {
    let mut o = vec![1, 1, 8, 10];
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&tsecr.to_be_bytes());
    o
}

#[test]
fn hostile_segments_are_counted_by_reason_and_the_live_connection_keeps_going() {
    let pair = veth_pair(VethConfig::default());
    let backlog = BACKLOG.to_string();
    let fastpath = start_tcp_echo(&pair, PORT, &["--tcp-backlog", &backlog]);

    // The idle connection we learn the numbers of.
    let mut idle_conn = connect(&pair, PORT, Duration::from_secs(30));
    let idle_port = idle_conn.local_addr().unwrap().port();
    let learned = exchange_and_learn(&pair, &mut idle_conn, b"learn my numbers");
    eprintln!("idle connection from port {idle_port}: {learned:?}");
    // Learned before the stream starts: its frames would crowd the sniffer's buffer.
    // The streaming connection, from here to the end.
    let streaming = connect(&pair, PORT, Duration::from_secs(30));
    let stream_port = streaming.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let streamer = start_stream(streaming, stop.clone());

    let seg = |flags: u8| RawSegment::new(CLIENT_ADDR, idle_port, PORT, flags);
    let inject = |s: &RawSegment| inject_frames(&pair, &[s.frame(&pair)]);

    // 1. A RST far outside the window: ignored, counted.
    let before = sum_counter(&fastpath, "rst_ignored");
    let mut s = seg(RST);
    s.seq = learned.rcv_nxt.wrapping_add(0x4000_0000);
    inject(&s);
    expect_rise(&fastpath, "out-of-window RST", "rst_ignored", before, 1);

    // 2. A RST in the window, not at RCV.NXT: challenge ACK (RFC 5961 3.2).
    let before = sum_counter(&fastpath, "challenge_acks");
    let mut s = seg(RST);
    s.seq = learned.rcv_nxt.wrapping_add(1);
    inject(&s);
    expect_rise(&fastpath, "in-window RST", "challenge_acks", before, 1);

    // 3. A SYN in the window: challenge ACK (RFC 5961 4.2).
    let before = sum_counter(&fastpath, "challenge_acks");
    let mut s = seg(SYN);
    s.seq = learned.rcv_nxt.wrapping_add(1);
    s.options = vec![2, 4, 0x05, 0xb4];
    inject(&s);
    expect_rise(&fastpath, "in-window SYN", "challenge_acks", before, 1);

    // 4. An ACK of data never sent: counted bad_ack, answered with a challenge ACK
    //    (RFC 5961 5.2). It carries the client's timestamp, so PAWS lets it through.
    let (bad_before, ch_before) = (
        sum_counter(&fastpath, "bad_ack"),
        sum_counter(&fastpath, "challenge_acks"),
    );
    let mut s = seg(ACK);
    s.seq = learned.rcv_nxt;
    s.ack = learned.snd_nxt.wrapping_add(1_000_000);
    if let Some((client_ts, server_ts)) = learned.ts {
        s.options = ts_option(client_ts, server_ts);
    }
    inject(&s);
    expect_rise(&fastpath, "bad ACK", "bad_ack", bad_before, 1);
    expect_rise(&fastpath, "bad ACK", "challenge_acks", ch_before, 1);

    // The idle connection survived all four: it still echoes, byte-exact.
    let msg = b"still here after the attacks";
    idle_conn.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    idle_conn.read_exact(&mut back).unwrap();
    assert_eq!(&back[..], &msg[..]);

    // Sequence-blind cases on the streaming connection's four-tuple.
    let live = |flags: u8| RawSegment::new(CLIENT_ADDR, stream_port, PORT, flags);

    // 5. SYN+FIN on the live connection: a SYN in a synchronized state, challenge ACK.
    let before = sum_counter(&fastpath, "challenge_acks");
    let mut s = live(SYN | FIN);
    s.seq = 12345;
    inject(&s);
    expect_rise(&fastpath, "SYN+FIN (live)", "challenge_acks", before, 1);

    // 6. SYN+FIN to the listener from a fresh port: no connection made; dropped as
    //    nonsense flags (Linux discards it too).
    let (bad_before, opened_before) = (
        sum_counter(&fastpath, "bad_options"),
        sum_counter(&fastpath, "tcp_conns_opened"),
    );
    let mut s = RawSegment::new(Ipv4Addr::new(198, 18, 0, 99), 40_001, PORT, SYN | FIN);
    s.seq = 777;
    inject(&s);
    expect_rise(
        &fastpath,
        "SYN+FIN (listener)",
        "bad_options",
        bad_before,
        1,
    );
    assert_eq!(
        sum_counter(&fastpath, "tcp_conns_opened"),
        opened_before,
        "SYN+FIN opened a connection"
    );

    // 7-9. Malformed headers: an option of length 0, an option running past the header,
    //      a data offset beyond the segment. Each a malformed drop.
    let mut zero_len = live(ACK);
    zero_len.options = vec![8, 0, 1, 1];
    let mut past_header = live(ACK);
    past_header.options = vec![1, 1, 8, 10];
    past_header.data_offset = Some(6);
    let mut past_segment = live(ACK);
    past_segment.data_offset = Some(15);
    for (case, s) in [
        ("option of length 0", zero_len),
        ("option past the header", past_header),
    ] {
        let before = sum_counter(&fastpath, "drop_tcp_malformed");
        inject(&s);
        expect_rise(&fastpath, case, "drop_tcp_malformed", before, 1);
    }
    // The XDP program already reads the TCP header to steer: it drops this one, counted.
    let before = xdp_counter(&stats(&fastpath), "malformed");
    inject(&past_segment);
    let mut now = before;
    assert!(
        eventually(Duration::from_secs(5), || {
            now = xdp_counter(&stats(&fastpath), "malformed");
            now > before
        }),
        "data offset past the segment: xdp malformed {before} -> {now}"
    );
    assert_eq!(now, before + 1);

    // 10. A SYN flood from spoofed sources and ports: the backlog fills, cookies answer.
    let (cookies_before, full_before, valid_before) = (
        sum_counter(&fastpath, "syn_cookies_sent"),
        sum_counter(&fastpath, "syn_queue_full"),
        sum_counter(&fastpath, "syn_cookies_valid"),
    );
    let flood: Vec<Vec<u8>> = (0..FLOOD)
        .map(|i| {
            let src = Ipv4Addr::new(198, 18, 0, SPOOFED_BASE + (i % 64) as u8);
            let mut s = RawSegment::new(src, 20_000 + i, PORT, SYN);
            s.seq = 0x1000_0000u32.wrapping_mul(u32::from(i) + 1);
            s.window = 65535;
            s.options = vec![2, 4, 0x05, 0xb4, 1, 3, 3, 7, 4, 2, 1, 1];
            s.frame(&pair)
        })
        .collect();
    inject_frames(&pair, &flood);
    let want = u64::from(FLOOD) - BACKLOG;
    let mut sent = 0;
    let flooded = eventually(Duration::from_secs(5), || {
        sent = sum_counter(&fastpath, "syn_cookies_sent") - cookies_before;
        sent >= want
    });
    assert!(
        flooded,
        "{sent} cookies for {FLOOD} SYNs over a backlog of {BACKLOG}\n{}",
        stats(&fastpath)
    );
    assert!(sum_counter(&fastpath, "syn_queue_full") - full_before >= want);
    // While the backlog is full, a real client still gets in, by cookie, and transfers.
    let newcomer = connect(&pair, PORT, Duration::from_secs(30));
    echo_transfer(newcomer, 256 * 1024, 5)
        .unwrap_or_else(|e| panic!("the client during the flood: {e}\n{}", fastpath.log_text()));
    // The worker publishes its counters between batches: wait for the count, not a moment.
    let mut valid = valid_before;
    assert!(
        eventually(Duration::from_secs(5), || {
            valid = sum_counter(&fastpath, "syn_cookies_valid");
            valid > valid_before
        }),
        "the newcomer did not come in by cookie (valid cookies {valid_before} -> {valid}): {}",
        stats(&fastpath)
    );

    // The stream went on through all of it, byte-exact.
    stop.store(true, Ordering::Relaxed);
    let (sent, got) = streamer
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the streaming connection: {e}\n{}", fastpath.log_text()));
    assert_eq!(sent, got, "the stream came back short");
    assert!(sent > 0);
    eprintln!("streamed {} MiB through the attacks", sent >> 20);

    // The idle connection closes cleanly.
    idle_conn.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    idle_conn.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());

    let log = fastpath.log_text();
    assert!(!log.contains("panic"), "{log}");
    eprintln!("stats: {}", stats(&fastpath));
}
