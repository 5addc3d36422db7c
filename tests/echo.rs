//! UDP echo over the real data path: a kernel client in the peer namespace, fastpath on
//! the other end of a veth with XDP in driver mode.

use std::time::Duration;

use fastpath_e2e::*;

#[test]
fn datagrams_of_every_size_come_back_identical_with_offload_on() {
    let pair = veth_pair(VethConfig::default());
    let offload = pair
        .client_command("ethtool")
        .args(["-k", &pair.client.iface])
        .output()
        .unwrap();
    let offload = String::from_utf8_lossy(&offload.stdout);
    assert!(
        offload.contains("tx-checksumming: on"),
        "the peer must keep TX checksum offload on:\n{offload}"
    );
    let mut fastpath = start_echo(&pair, &["--udp", "7000"]);
    let socket = client_socket(&pair);
    let csum_errors_before = VethPair::in_netns(&pair.client, || udp_snmp("InCsumErrors"));
    for (i, size) in [1usize, 64, 1400, 1472].into_iter().enumerate() {
        let payload = pattern(size, i as u8);
        let reply = round_trip(&socket, 7000, &payload)
            .unwrap_or_else(|| panic!("no reply to {size} bytes\n{}", fastpath.log_text()));
        assert_eq!(reply, payload, "{size}-byte reply differs");
    }
    // The kernel drops a datagram with a bad checksum before the socket sees it; this
    // counter shows whether any reply was refused.
    let csum_errors_after = VethPair::in_netns(&pair.client, || udp_snmp("InCsumErrors"));
    assert_eq!(
        csum_errors_after, csum_errors_before,
        "the peer saw bad checksums"
    );

    let s = stats(&fastpath);
    assert!(xdp_counter(&s, "steered") >= 4);
    assert!(queue_counter(&s, 0, "replied") >= 4);
    assert!(
        queue_counter(&s, 0, "csum_partial") >= 4,
        "offloaded checksums should be seen as partial: {s}"
    );
    assert_eq!(queue_counter(&s, 0, "drop_checksum"), 0);

    // Clean stop: every frame accounted for.
    let (status, log) = fastpath.stop().unwrap();
    assert!(status.success(), "fastpath exited with {status}: {log}");
    assert!(
        log.contains("ledger errors 0"),
        "frame ledger errors: {log}"
    );
}

#[test]
fn frame_ledger_balances_under_load() {
    let pair = veth_pair(VethConfig::default());
    let fastpath = start_echo(&pair, &["--udp", "7000", "--frames", "256"]);
    let socket = client_socket(&pair);
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // More datagrams than frames, in bursts, so frames are reused many times.
    let mut answered = 0;
    for burst in 0..40u8 {
        for i in 0..32u8 {
            socket
                .send_to(&pattern(100, burst ^ i), (SERVER_ADDR, 7000))
                .unwrap();
        }
        let mut buf = [0u8; 2048];
        for _ in 0..32 {
            if socket.recv_from(&mut buf).is_ok() {
                answered += 1;
            }
        }
    }
    assert!(
        answered >= 1200,
        "only {answered} of 1280 answered\n{}",
        fastpath.log_text()
    );
    // Once traffic stops, every frame is back: free or waiting in the fill ring, none stuck
    // in RX, in use, in TX or in the completion ring.
    let settled = eventually(Duration::from_secs(3), || {
        let f = &stats(&fastpath)["queues"][0]["frames"];
        ["rx", "in_use", "tx", "completion"]
            .iter()
            .all(|k| f[k] == 0)
    });
    let s = stats(&fastpath);
    let frames = &s["queues"][0]["frames"];
    assert!(settled, "frames stuck after the traffic stopped: {frames}");
    let total: u64 = ["free", "fill", "rx", "in_use", "tx", "completion"]
        .iter()
        .map(|k| frames[k].as_u64().unwrap())
        .sum();
    assert_eq!(
        total, 256,
        "frames by place must add up to the UMEM: {frames}"
    );
    assert_eq!(s["queues"][0]["ledger_errors"], 0);
}

#[test]
fn two_queues_each_answer_their_own_flows() {
    let pair = veth_pair(VethConfig {
        queues: 2,
        ..VethConfig::default()
    });
    let fastpath = start_echo(&pair, &["--udp", "7000", "--queues", "2"]);
    // Many flows (one socket each): the peer's TX queue, and so our RX queue, follows the flow hash.
    let sockets: Vec<_> = (0..32).map(|_| client_socket(&pair)).collect();
    for (i, socket) in sockets.iter().enumerate() {
        let payload = pattern(64, i as u8);
        let reply = round_trip(socket, 7000, &payload)
            .unwrap_or_else(|| panic!("flow {i} got no reply\n{}", fastpath.log_text()));
        assert_eq!(reply, payload);
    }
    let s = stats(&fastpath);
    let mut total = 0;
    for q in 0..2 {
        let rx = queue_counter(&s, q, "rx");
        assert!(rx > 0, "queue {q} received nothing: {s}");
        assert_eq!(
            queue_counter(&s, q, "replied"),
            rx,
            "queue {q} must answer what it receives"
        );
        assert_eq!(queue_counter(&s, q, "tx"), rx);
        total += rx;
    }
    assert!(total >= 32);
    let cpus: Vec<_> = (0..2).map(|q| s["queues"][q]["cpu"].clone()).collect();
    assert_ne!(
        cpus[0], cpus[1],
        "workers should be pinned to different cores: {s}"
    );
}

#[test]
fn two_services_each_get_only_their_own_port() {
    let pair = veth_pair(VethConfig::default());
    let fastpath = start_echo(&pair, &["--udp", "5353", "--udp", "7777"]);
    let socket = client_socket(&pair);
    for port in [5353, 7777] {
        let payload = pattern(32, port as u8);
        assert_eq!(
            round_trip(&socket, port, &payload),
            Some(payload),
            "port {port}"
        );
    }
    // A port fastpath does not serve goes to the kernel, which has no socket there.
    socket.send_to(b"nobody", (SERVER_ADDR, 5354)).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        socket.recv_from(&mut buf).is_err(),
        "port 5354 must not be echoed"
    );
    let s = stats(&fastpath);
    let rules: Vec<String> = serde_json::from_value(s["rules"].clone()).unwrap();
    assert!(rules.contains(&"udp *:5353".to_string()) && rules.contains(&"udp *:7777".to_string()));
    assert_eq!(rules.len(), 2, "{rules:?}");
}

#[test]
fn a_frame_larger_than_a_umem_frame_shows_in_rx_dropped() {
    // MTU 3000, 2048-byte frames: a 2500-byte datagram is steered but cannot fit.
    let pair = veth_pair(VethConfig {
        mtu: 3000,
        ..VethConfig::default()
    });
    let fastpath = start_echo(&pair, &["--udp", "7000", "--frame-size", "2048"]);
    let socket = client_socket(&pair);
    assert_eq!(
        round_trip(&socket, 7000, &pattern(1000, 1)),
        Some(pattern(1000, 1))
    );
    socket
        .send_to(&pattern(2500, 2), (SERVER_ADDR, 7000))
        .unwrap();
    let mut buf = [0u8; 4096];
    assert!(
        socket.recv_from(&mut buf).is_err(),
        "an oversized frame cannot be echoed"
    );
    assert!(
        eventually(Duration::from_secs(2), || queue_counter(
            &stats(&fastpath),
            0,
            "rx_dropped"
        ) >= 1),
        "the drop must show in rx_dropped: {}",
        stats(&fastpath)
    );
}

#[test]
fn generic_mode_serves_too() {
    let pair = veth_pair(VethConfig::default());
    let fastpath = start_echo(&pair, &["--udp", "7000", "--mode", "generic"]);
    let socket = client_socket(&pair);
    for size in [1usize, 1472] {
        assert_eq!(
            round_trip(&socket, 7000, &pattern(size, 3)),
            Some(pattern(size, 3))
        );
    }
    let s = stats(&fastpath);
    assert_eq!(s["mode"], "generic");
    assert!(xdp_counter(&s, "steered") >= 2);
    let link = pair
        .server_command("ip")
        .args(["-d", "link", "show", "dev", &pair.server.iface])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("xdpgeneric"),
        "attached in generic mode"
    );
}

/// Datagrams sent from an application thread (`--udp-thread`: recv_from, then send_to)
/// reach the worker that sends for their destination: with 2 queues, all of one flow's
/// replies leave from one worker, in the order they were sent.
#[test]
fn a_flows_sends_from_a_thread_leave_from_one_worker_in_order() {
    let pair = veth_pair(VethConfig {
        queues: 2,
        ..VethConfig::default()
    });
    let fastpath = start_echo(&pair, &["--udp-thread", "6000", "--queues", "2"]);
    const FLOWS: usize = 4;
    const BURSTS: u32 = 10;
    const BURST: u32 = 30;
    let sockets: Vec<_> = (0..FLOWS).map(|_| client_socket(&pair)).collect();
    for s in &sockets {
        // The first datagram also makes the kernel resolve the client's MAC for send_to.
        assert!(
            round_trip(s, 6000, b"hello").is_some(),
            "{}",
            fastpath.log_text()
        );
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    }
    let to = std::net::SocketAddr::from((SERVER_ADDR, 6000));
    let app_tx = |q: usize| queue_counter(&stats(&fastpath), q, "app_tx");
    let mut workers_used = std::collections::BTreeSet::new();
    for (flow, s) in sockets.iter().enumerate() {
        let before = [app_tx(0), app_tx(1)];
        // Bursts of 30 outstanding, so a reordering between workers would show.
        let mut received = Vec::new();
        let mut buf = [0u8; 64];
        for burst in 0..BURSTS {
            for i in 0..BURST {
                s.send_to(&(burst * BURST + i).to_be_bytes(), to).unwrap();
            }
            for _ in 0..BURST {
                let n = s
                    .recv(&mut buf)
                    .unwrap_or_else(|e| panic!("flow {flow}: {e}\n{}", fastpath.log_text()));
                received.push(u32::from_be_bytes(buf[..n].try_into().unwrap()));
            }
        }
        let expected: Vec<u32> = (0..BURSTS * BURST).collect();
        assert_eq!(received, expected, "flow {flow}: replies out of order");
        // The flow's replies were all counted by one worker, none by the other.
        let counted = eventually(Duration::from_secs(2), || {
            (app_tx(0) - before[0]) + (app_tx(1) - before[1]) == u64::from(BURSTS * BURST)
        });
        assert!(counted, "{}", stats(&fastpath));
        let moved = [app_tx(0) - before[0], app_tx(1) - before[1]];
        assert!(
            moved.contains(&0),
            "flow {flow}: its replies left from both workers: {moved:?}"
        );
        workers_used.insert(usize::from(moved[0] == 0));
    }
    eprintln!("workers used by {FLOWS} flows: {workers_used:?}");
}
