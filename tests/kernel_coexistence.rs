//! fastpath takes only the flows it was given: the kernel keeps everything else while it
//! runs, and gets everything back when it dies, even by SIGKILL.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use fastpath_e2e::*;

#[test]
fn ping_and_a_kernel_tcp_listener_still_work_while_fastpath_runs() {
    let pair = veth_pair(VethConfig::default());
    let fastpath = start_echo(&pair, &["--udp", "7000"]);

    let ping = pair
        .client_command("ping")
        .args(["-c", "3", "-i", "0.2", "-W", "1", &SERVER_ADDR.to_string()])
        .output()
        .expect("run ping (iputils-ping; `cargo xtask deps` installs it)");
    assert!(
        ping.status.success(),
        "ping failed while fastpath ran:\n{}",
        String::from_utf8_lossy(&ping.stdout)
    );

    let listener = VethPair::in_netns(&pair.server, || {
        TcpListener::bind((SERVER_ADDR, 8080)).unwrap()
    });
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 5];
        conn.read_exact(&mut buf).unwrap();
        conn.write_all(&buf).unwrap();
    });
    let mut conn = VethPair::in_netns(&pair.client, || {
        TcpStream::connect_timeout(&(SERVER_ADDR, 8080).into(), Duration::from_secs(3)).unwrap()
    });
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    conn.write_all(b"hello").unwrap();
    let mut back = [0u8; 5];
    conn.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hello");
    server.join().unwrap();

    // And the steered port is still served by fastpath meanwhile.
    let socket = client_socket(&pair);
    assert_eq!(
        round_trip(&socket, 7000, b"still here"),
        Some(b"still here".to_vec())
    );
    let s = stats(&fastpath);
    assert!(
        xdp_counter(&s, "passed") > 0,
        "ping and TCP should count as passed: {s}"
    );
}

#[test]
fn after_sigkill_no_program_is_left_and_the_kernel_has_the_port_again() {
    let pair = veth_pair(VethConfig::default());
    let mut fastpath = start_echo(&pair, &["--udp", "7000"]);
    assert!(
        pair.server_has_xdp().unwrap(),
        "XDP should be attached while running"
    );
    let socket = client_socket(&pair);
    assert_eq!(
        round_trip(&socket, 7000, b"before"),
        Some(b"before".to_vec())
    );

    fastpath.kill_hard().unwrap();
    assert!(
        eventually(Duration::from_secs(5), || !pair.server_has_xdp().unwrap()),
        "an XDP program is still attached after SIGKILL"
    );

    let kernel = VethPair::in_netns(&pair.server, || {
        let s = UdpSocket::bind((SERVER_ADDR, 7000)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    });
    socket
        .send_to(b"to the kernel", (SERVER_ADDR, 7000))
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = kernel
        .recv_from(&mut buf)
        .expect("the kernel socket got nothing");
    assert_eq!(&buf[..n], b"to the kernel");
    assert_eq!(from.ip(), std::net::IpAddr::V4(CLIENT_ADDR));
}
