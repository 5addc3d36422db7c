//! TCP echo over the real data path: kernel clients in the peer namespace connect to
//! `fastpath echo --tcp 7100`, whose connections live on the workers.
//!
//! Every transfer writes and reads at once (a reader thread per connection), and the
//! bytes that come back are compared with what was sent, position by position, without
//! holding them. Every wait is bounded.

use std::{
    io::{Read, Write},
    net::TcpStream,
    thread,
    time::{Duration, Instant},
};

use fastpath_e2e::{
    tcp::{self, echo_transfer, fill, sum_counter, tcp_rows},
    *,
};

const PORT: u16 = 7100;

/// A kernel TCP connection from the client namespace to the fastpath echo. Generous
/// timeouts: with a thousand connections on a loaded 2-core CI machine, a lost segment's
/// retransmission backs off for seconds; a stall that outlasts them is a failure.
#[track_caller]
fn connect(pair: &VethPair) -> TcpStream {
    tcp::connect(pair, PORT, Duration::from_secs(30))
}

#[track_caller]
fn assert_idle(fastpath: &FastpathProcess) {
    tcp::assert_idle(fastpath, Duration::from_secs(5));
}

/// Starts `fastpath echo --tcp PORT` (with a capture unless `capture` is false) and waits
/// for its listener: the instance answers its control socket before the listener is bound.
#[track_caller]
fn start_tcp_echo(pair: &VethPair, capture: bool) -> FastpathProcess {
    let port = PORT.to_string();
    let args = ["--tcp", port.as_str()];
    let fastpath = if capture {
        start_echo(pair, &args)
    } else {
        FastpathProcess::start(pair, "echo", &args)
            .unwrap_or_else(|e| panic!("cannot start fastpath: {e:#}"))
    };
    let listening = eventually(Duration::from_secs(5), || {
        tcp_rows(&fastpath).iter().any(|r| r["state"] == "listen")
    });
    assert!(listening, "no listener: {}", fastpath.log_text());
    fastpath
}

#[test]
fn small_and_large_transfers_come_back_byte_exact_and_the_instance_returns_to_idle() {
    let pair = veth_pair(VethConfig::default());
    let fastpath = start_tcp_echo(&pair, true);
    for (i, len) in [1u64, 1024, 1 << 20].into_iter().enumerate() {
        let stream = connect(&pair);
        echo_transfer(stream, len, i as u64)
            .unwrap_or_else(|e| panic!("{len} bytes: {e}\n{}", fastpath.log_text()));
    }
    assert_idle(&fastpath);
    assert!(
        sum_counter(&fastpath, "tcp_csum_partial") > 0,
        "the peer offloads checksums"
    );
    assert_eq!(sum_counter(&fastpath, "drop_tcp_checksum"), 0);
    assert_eq!(sum_counter(&fastpath, "tcp_conns_opened"), 3);
    assert_eq!(sum_counter(&fastpath, "tcp_conns_closed"), 3);
    assert!(sum_counter(&fastpath, "segments_in") > 0);
    assert!(sum_counter(&fastpath, "segments_out") > 0);
    let text = std::process::Command::new(fastpath_binary().unwrap())
        .args(["stats", "--prometheus", "--control"])
        .arg(fastpath.control())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    for family in [
        "fastpath_tcp_segments_in_total",
        "fastpath_tcp_retransmits_total",
        "fastpath_tcp_connections{",
        "fastpath_timers_armed{",
    ] {
        assert!(text.contains(family), "no {family} in:\n{text}");
    }
}

/// 64 MiB, then 256 MiB if it completes within `BIG_LIMIT`: a bulk transfer through the
/// windows, the congestion controller and the TX budget.
#[test]
fn bulk_transfers_come_back_byte_exact() {
    const BIG_LIMIT: Duration = Duration::from_secs(120);
    let pair = veth_pair(VethConfig::default());
    // No capture: every frame of 2 × 320 MiB would be copied for nothing.
    let fastpath = start_tcp_echo(&pair, false);
    for (seed, len) in [(64u64, 64u64 << 20), (256, 256 << 20)] {
        let stream = connect(&pair);
        let start = Instant::now();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let worker = thread::spawn(move || {
            let _ = done_tx.send(echo_transfer(stream, len, seed));
        });
        let result = done_rx
            .recv_timeout(BIG_LIMIT)
            .unwrap_or_else(|_| Err(format!("not done within {BIG_LIMIT:?}")));
        result.unwrap_or_else(|e| panic!("{len} bytes: {e}\n{}", fastpath.log_text()));
        worker.join().unwrap();
        eprintln!("{} MiB echoed in {:.2?}", len >> 20, start.elapsed());
    }
    assert_idle(&fastpath);
}

/// Many connections at once, each exchanging data and closing: none stays half-open on
/// either side, and with several queues each connection lives on the worker its flow
/// arrives on.
fn concurrent_connections(queues: u32, connections: u64) {
    let pair = veth_pair(VethConfig {
        queues,
        ..VethConfig::default()
    });
    let port = PORT.to_string();
    let queues_arg = queues.to_string();
    let fastpath =
        FastpathProcess::start(&pair, "echo", &["--tcp", &port, "--queues", &queues_arg])
            .unwrap_or_else(|e| panic!("cannot start fastpath: {e:#}"));
    assert!(
        eventually(Duration::from_secs(5), || tcp_rows(&fastpath)
            .iter()
            .any(|r| r["state"] == "listen")),
        "no listener"
    );
    let streams: Vec<TcpStream> = (0..connections).map(|_| connect(&pair)).collect();
    // While all are open: each is in the table, owned by one worker.
    let rows = tcp_rows(&fastpath);
    let owners: std::collections::BTreeSet<String> = rows
        .iter()
        .filter(|r| r["state"] == "established")
        .map(|r| r["worker"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        rows.iter().filter(|r| r["state"] == "established").count() as u64,
        connections,
        "{rows:?}"
    );
    if queues > 1 {
        assert!(
            owners.len() > 1,
            "all connections on one worker: {owners:?}"
        );
    }
    let threads: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| thread::spawn(move || echo_transfer(s, 16 * 1024 + i as u64 * 77, i as u64)))
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        t.join()
            .unwrap()
            .unwrap_or_else(|e| panic!("connection {i}: {e}\n{}", fastpath.log_text()));
    }
    assert_idle(&fastpath);
    assert_eq!(sum_counter(&fastpath, "tcp_conns_opened"), connections);
    assert_eq!(sum_counter(&fastpath, "tcp_conns_closed"), connections);
    // The kernel side: TIME-WAIT is the active closer's due; nothing else may remain.
    let mut left = String::new();
    let clean = eventually(Duration::from_secs(5), || {
        let out = pair
            .client_command("ss")
            .args(["-tan", &format!("( dport = :{PORT} )")])
            .output()
            .unwrap();
        left = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("State") && !l.starts_with("TIME-WAIT"))
            .collect::<Vec<_>>()
            .join("\n");
        left.trim().is_empty()
    });
    assert!(clean, "the kernel still holds connections:\n{left}");
}

#[test]
fn a_hundred_concurrent_connections_exchange_data_and_close() {
    concurrent_connections(1, 100);
}

#[test]
fn a_thousand_connections_over_two_queues_each_served_by_its_worker() {
    concurrent_connections(2, 1000);
}

/// SIGKILL mid-transfer: once XDP is gone the kernel owns the port again, answers the
/// peer's next segment with a RST, and the peer's read fails instead of hanging.
#[test]
fn a_killed_instance_leaves_the_peer_reset_not_hanging() {
    let pair = veth_pair(VethConfig::default());
    let mut fastpath = start_tcp_echo(&pair, true);
    let mut stream = connect(&pair);
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    fill(1, 0, &mut buf);
    stream.write_all(&buf).unwrap();
    let mut back = vec![0u8; buf.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, buf);
    // The connection as `fastpath sockets` shows it: owned by worker 0, established,
    // with a window and an RTT measured.
    let rows = tcp_rows(&fastpath);
    let row = rows
        .iter()
        .find(|r| r["state"] == "established")
        .unwrap_or_else(|| panic!("no established row: {rows:?}"));
    assert_eq!(row["worker"], "0");
    assert_eq!(row["local"], format!("{SERVER_ADDR}:{PORT}"));
    assert_eq!(
        row["remote"],
        stream.local_addr().unwrap().to_string(),
        "{row}"
    );
    assert!(row["tcp"]["cwnd"].as_u64().unwrap() > 0, "{row}");
    assert!(row["tcp"]["srtt_us"].as_u64().is_some(), "{row}");
    let text = std::process::Command::new(fastpath_binary().unwrap())
        .args(["sockets", "--control"])
        .arg(fastpath.control())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("established") && text.contains("cwnd") && text.contains("listen"),
        "{text}"
    );
    fastpath.kill_hard().unwrap();
    // Keep sending: the kernel, which never heard of this flow, resets it.
    let start = Instant::now();
    let outcome = loop {
        if let Err(e) = stream.write_all(&buf) {
            break e;
        }
        match stream.read(&mut back) {
            Ok(0) => panic!("the peer saw a FIN, not a reset"),
            Ok(_) => {}
            Err(e) => break e,
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the peer neither failed nor hung up"
        );
    };
    assert!(
        matches!(
            outcome.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
        ),
        "expected a reset, got {outcome:?} after {:?}",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
}
