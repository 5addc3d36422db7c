//! TCP echo over the real data path: kernel clients in the peer namespace connect to
//! `fastpath echo --tcp 7100`, whose connections live on the workers.
//!
//! Every transfer writes and reads at once (a reader thread per connection), and the
//! bytes that come back are compared with what was sent, position by position, without
//! holding them. Every wait is bounded.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use fastpath_e2e::*;
use serde_json::Value;

const PORT: u16 = 7100;

/// The `i`-th byte of stream `seed`: a keyed hash of its 8-byte block, so a misplaced or
/// repeated block anywhere shows.
fn byte_at(seed: u64, i: u64) -> u8 {
    let mut z = (i / 8) ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z.to_le_bytes()[(i % 8) as usize]
}

fn fill(seed: u64, from: u64, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = byte_at(seed, from + k as u64);
    }
}

/// A kernel TCP connection from the client namespace to the fastpath echo.
#[track_caller]
fn connect(pair: &VethPair) -> TcpStream {
    let to = SocketAddr::from((SERVER_ADDR, PORT));
    let stream = VethPair::in_netns(&pair.client, || {
        TcpStream::connect_timeout(&to, Duration::from_secs(5))
    })
    .unwrap_or_else(|e| panic!("connect to {to}: {e}"));
    // Generous: with a thousand connections on a loaded 2-core CI machine, a lost segment's
    // retransmission backs off for seconds; a stall that outlasts this is a failure.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Sends `len` bytes of stream `seed` while a reader thread takes the echo and checks it;
/// then half-closes and expects the server's FIN once everything came back. Returns an
/// error naming the first difference, a short stream or a timeout.
fn echo_transfer(stream: TcpStream, len: u64, seed: u64) -> Result<(), String> {
    let mut reader = stream.try_clone().map_err(|e| e.to_string())?;
    let check = thread::spawn(move || -> Result<u64, String> {
        let mut buf = vec![0u8; 256 * 1024];
        let mut want = vec![0u8; buf.len()];
        let mut at = 0u64;
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| format!("read at byte {at}: {e}"))?;
            if n == 0 {
                return Ok(at);
            }
            fill(seed, at, &mut want[..n]);
            if let Some(k) = (0..n).find(|&k| buf[k] != want[k]) {
                return Err(format!("byte {} differs", at + k as u64));
            }
            at += n as u64;
            if at > len {
                return Err(format!("more bytes came back than were sent: {at}"));
            }
        }
    });
    let mut writer = stream;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent = 0u64;
    while sent < len {
        let n = chunk.len().min((len - sent) as usize);
        fill(seed, sent, &mut chunk[..n]);
        writer
            .write_all(&chunk[..n])
            .map_err(|e| format!("write at byte {sent}: {e}"))?;
        sent += n as u64;
    }
    writer
        .shutdown(Shutdown::Write)
        .map_err(|e| e.to_string())?;
    let got = check
        .join()
        .map_err(|_| "the reader panicked".to_string())??;
    if got != len {
        return Err(format!("{got} of {len} bytes came back"));
    }
    Ok(())
}

/// TCP rows of `fastpath sockets --json`, as (state, remote).
fn tcp_rows(fastpath: &FastpathProcess) -> Vec<Value> {
    let out = std::process::Command::new(fastpath_binary().unwrap())
        .args(["sockets", "--json", "--control"])
        .arg(fastpath.control())
        .output()
        .expect("fastpath sockets");
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "sockets --json: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    rows.as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r["proto"] == "tcp")
        .collect()
}

/// Whether the instance is back to idle: only the listener in the table, no timer armed,
/// every UMEM frame free or in the fill ring.
fn idle(fastpath: &FastpathProcess) -> Result<(), String> {
    let rows = tcp_rows(fastpath);
    let connections: Vec<_> = rows.iter().filter(|r| r["state"] != "listen").collect();
    if !connections.is_empty() {
        return Err(format!("connections left: {connections:?}"));
    }
    let s = stats(fastpath);
    for q in s["queues"].as_array().unwrap() {
        let f = &q["frames"];
        if ["rx", "in_use", "tx", "completion"]
            .iter()
            .any(|k| f[k] != 0)
        {
            return Err(format!("frames not back: {f}"));
        }
        let c = &q["counters"];
        let open: u64 = [
            "tcp_state_syn_received",
            "tcp_state_established",
            "tcp_state_fin_wait_1",
            "tcp_state_fin_wait_2",
            "tcp_state_close_wait",
            "tcp_state_closing",
            "tcp_state_last_ack",
            "tcp_state_time_wait",
        ]
        .iter()
        .map(|k| c[k].as_u64().unwrap_or(0))
        .sum();
        if open != 0 {
            return Err(format!("connections counted open: {c}"));
        }
        if c["timers_armed"].as_u64() != Some(0) {
            return Err(format!("timers armed: {}", c["timers_armed"]));
        }
        if q["ledger_errors"] != 0 {
            return Err(format!("ledger errors: {}", q["ledger_errors"]));
        }
    }
    Ok(())
}

#[track_caller]
fn assert_idle(fastpath: &FastpathProcess) {
    let mut last = Ok(());
    let settled = eventually(Duration::from_secs(5), || {
        last = idle(fastpath);
        last.is_ok()
    });
    assert!(settled, "not idle: {last:?}\n{}", fastpath.log_text());
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

#[track_caller]
fn sum_counter(fastpath: &FastpathProcess, name: &str) -> u64 {
    let s = stats(fastpath);
    s["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["counters"][name].as_u64().unwrap_or(0))
        .sum()
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
