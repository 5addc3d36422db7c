//! The socket layer over the real data path: host-local socket numbers, services that get
//! only their own datagrams, a connected socket, the thread-safe API, drops by reason.

use std::{net::UdpSocket, process::Command, time::Duration};

use fastpath_e2e::*;
use serde_json::Value;

fn sockets_json(process: &FastpathProcess) -> Vec<Value> {
    let out = Command::new(fastpath_binary().unwrap())
        .args(["sockets", "--json", "--control"])
        .arg(process.control())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn two_services_get_only_their_own_datagrams_and_list_with_small_numbers() {
    let pair = veth_pair(VethConfig::default());
    let peer = "198.18.0.2:5000";
    let fastpath = start_echo(
        &pair,
        &[
            "--udp",
            "5353",
            "--udp",
            "7777",
            "--udp-peer",
            &format!("7001={peer}"),
        ],
    );
    let rows = sockets_json(&fastpath);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let numbers: Vec<u64> = rows.iter().map(|r| r["number"].as_u64().unwrap()).collect();
    assert_eq!(
        numbers,
        [1, 2, 3],
        "host-local numbers start at 1 like descriptors"
    );
    for r in &rows {
        for key in ["number", "proto", "local", "remote", "state", "worker"] {
            assert!(r.get(key).is_some(), "{key} missing: {r}");
        }
        assert_eq!(r["proto"], "udp");
    }
    let connected = rows
        .iter()
        .find(|r| r["state"] == "connected")
        .expect("a connected socket");
    assert_eq!(connected["local"], "0.0.0.0:7001");
    assert_eq!(
        connected["remote"], peer,
        "a connected socket shows both ends"
    );

    let socket = client_socket(&pair);
    for (port, payload) in [(5353u16, &b"dns-ish"[..]), (7777, &b"other"[..])] {
        assert_eq!(round_trip(&socket, port, payload).as_deref(), Some(payload));
    }
    // Each service counted only its own datagram.
    let rows = sockets_json(&fastpath);
    let rx = |port: &str| {
        rows.iter()
            .find(|r| r["local"].as_str().unwrap().ends_with(port))
            .unwrap()["rx"]
            .as_u64()
            .unwrap()
    };
    assert_eq!((rx(":5353"), rx(":7777")), (1, 1), "{rows:?}");

    // The connected socket answers its peer only; anyone else is a counted 'no socket' drop.
    let right = VethPair::in_netns(&pair.client, || {
        let s = UdpSocket::bind("198.18.0.2:5000").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s
    });
    assert_eq!(
        round_trip(&right, 7001, b"mine").as_deref(),
        Some(&b"mine"[..])
    );
    let before = stats(&fastpath);
    socket.send_to(b"not yours", (SERVER_ADDR, 7001)).unwrap();
    let mut buf = [0u8; 64];
    assert!(
        socket.recv_from(&mut buf).is_err(),
        "a stranger must not be answered on a connected socket"
    );
    assert!(eventually(Duration::from_secs(2), || {
        queue_counter(&stats(&fastpath), 0, "drop_no_socket")
            > queue_counter(&before, 0, "drop_no_socket")
    }));
}

#[test]
fn the_thread_safe_api_echoes_through_send_to_with_a_resolved_neighbour() {
    let pair = veth_pair(VethConfig::default());
    // Forget the static neighbour the test bed set, so send_to must ask the kernel.
    let _ = pair
        .server_command("ip")
        .args(["neigh", "flush", "dev", &pair.server.iface])
        .status();
    let fastpath = start_echo(&pair, &["--udp-thread", "6000"]);
    let socket = client_socket(&pair);
    for size in [1usize, 100, 1472] {
        let payload = pattern(size, size as u8);
        let reply = round_trip(&socket, 6000, &payload)
            .unwrap_or_else(|| panic!("no reply of {size}\n{}", fastpath.log_text()));
        assert_eq!(reply, payload);
    }
    let s = stats(&fastpath);
    assert!(
        queue_counter(&s, 0, "app_tx") >= 3,
        "replies must leave through send_to: {s}"
    );
    let rows = sockets_json(&fastpath);
    assert_eq!(rows[0]["delivery"], "queue");
    assert!(rows[0]["tx"].as_u64().unwrap() >= 3);
}

#[test]
fn a_full_queue_a_missing_socket_and_a_bad_checksum_are_counted_by_reason() {
    let pair = veth_pair(VethConfig::default());
    let fastpath = start_echo(
        &pair,
        &["--udp-sink", "8000", "--queue-depth", "4", "--udp", "8001"],
    );
    let socket = client_socket(&pair);
    for i in 0..10u8 {
        socket.send_to(&[i; 32], (SERVER_ADDR, 8000)).unwrap();
    }
    assert!(
        eventually(Duration::from_secs(3), || queue_counter(
            &stats(&fastpath),
            0,
            "drop_queue_full"
        ) >= 6),
        "{}",
        stats(&fastpath)
    );
    let rows = sockets_json(&fastpath);
    let sink = rows.iter().find(|r| r["local"] == "0.0.0.0:8000").unwrap();
    assert_eq!(sink["queued_bytes"], 4 * 32);
    assert_eq!(sink["drops_queue_full"], 6);
    // A datagram whose UDP checksum is wrong (not the offload value) is a checksum drop.
    let mut frame = Vec::new();
    frame.extend_from_slice(&pair.server.mac);
    frame.extend_from_slice(&pair.client.mac);
    frame.extend_from_slice(&0x0800u16.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip.extend_from_slice(&CLIENT_ADDR.octets());
    ip.extend_from_slice(&SERVER_ADDR.octets());
    let mut sum = 0u32;
    for w in ip.chunks(2) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&[0x9c, 0x40, 0x1f, 0x41, 0, 12, 0x12, 0x34, 1, 2, 3, 4]);
    inject_frames(&pair, &[frame]);
    assert!(eventually(Duration::from_secs(2), || queue_counter(
        &stats(&fastpath),
        0,
        "drop_checksum"
    ) == 1));
    // Nothing else was answered or lost on the way.
    assert_eq!(
        round_trip(&socket, 8001, b"still").as_deref(),
        Some(&b"still"[..])
    );
    assert!(fastpath.log_text().find("panic").is_none());
}

#[test]
fn closing_the_last_socket_on_a_port_gives_the_port_back_to_the_kernel() {
    let pair = veth_pair(VethConfig::default());
    let fastpath = start_echo(&pair, &["--udp", "7100", "--udp", "7200"]);
    let close = |n: &str| {
        Command::new(fastpath_binary().unwrap())
            .args(["close", n, "--control"])
            .arg(fastpath.control())
            .output()
            .unwrap()
    };
    let out = close("1");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules: Vec<String> = serde_json::from_value(stats(&fastpath)["rules"].clone()).unwrap();
    assert_eq!(
        rules,
        ["udp *:7200"],
        "the closed socket's steering rule must be gone"
    );
    // The kernel has port 7100 again; fastpath still serves 7200.
    let kernel = VethPair::in_netns(&pair.server, || {
        let s = UdpSocket::bind((SERVER_ADDR, 7100)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    });
    let socket = client_socket(&pair);
    socket
        .send_to(b"kernel's now", (SERVER_ADDR, 7100))
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = kernel
        .recv_from(&mut buf)
        .expect("the kernel socket got nothing");
    assert_eq!(&buf[..n], b"kernel's now");
    assert_eq!(
        round_trip(&socket, 7200, b"still fast").as_deref(),
        Some(&b"still fast"[..])
    );
    // Closing it again is a clear error.
    let out = close("1");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no socket 1 is open"), "{err}");
    assert_eq!(sockets_json(&fastpath).len(), 1);
}
