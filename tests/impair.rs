//! The tc impairment program on the kernel peer's veth egress, with kernel sockets at both
//! ends (no fastpath): it loses and duplicates the peer's datagrams at the rates asked, and
//! once detached everything arrives again.
//!
//! Every datagram carries its number; the receiver counts copies per number, so a loss, a
//! duplicate and a stray are told apart. The kernel's own drops are ruled out: the receive
//! buffer is forced large, the sender paces itself, and the run with no program must lose
//! nothing.

use std::{
    net::{SocketAddr, UdpSocket},
    os::fd::AsRawFd,
    time::{Duration, Instant},
};

use fastpath_bench::impair::{TcImpair, TcRates};
use fastpath_common::impair::TcImpairCounter;
use fastpath_e2e::{CLIENT_ADDR, SERVER_ADDR, VethConfig, VethPair, udp_snmp, veth_pair};

const PORT: u16 = 7400;
const DATAGRAMS: u32 = 2000;

/// A kernel UDP socket in the server namespace with a receive buffer that holds a whole run.
fn server_socket(pair: &VethPair) -> UdpSocket {
    VethPair::in_netns(&pair.server, || {
        let s = UdpSocket::bind((SERVER_ADDR, PORT)).expect("bind server socket");
        let bytes: libc::c_int = 32 << 20;
        // Safety: setsockopt on a socket we own, with a c_int of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s
    })
}

fn client_socket(pair: &VethPair) -> UdpSocket {
    VethPair::in_netns(&pair.client, || {
        UdpSocket::bind((CLIENT_ADDR, 0)).expect("bind client socket")
    })
}

/// Sends datagrams 0 .. `DATAGRAMS` and returns how many copies of each arrived.
fn run(client: &UdpSocket, server: &UdpSocket) -> Vec<u32> {
    let to = SocketAddr::from((SERVER_ADDR, PORT));
    for n in 0..DATAGRAMS {
        let mut payload = [0xa5u8; 64];
        payload[..4].copy_from_slice(&n.to_be_bytes());
        client.send_to(&payload, to).expect("send_to");
        // Paced, so no queue on the way overflows (the run with no program checks it).
        if n % 100 == 99 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let mut copies = vec![0u32; DATAGRAMS as usize];
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(10);
    // Until 200 ms pass with nothing, bounded in count and time.
    for _ in 0..3 * DATAGRAMS {
        if Instant::now() > deadline {
            break;
        }
        let Ok((len, from)) = server.recv_from(&mut buf) else {
            break;
        };
        assert_eq!(len, 64, "a datagram of another length from {from}");
        let n = u32::from_be_bytes(buf[..4].try_into().unwrap());
        assert!(n < DATAGRAMS, "datagram number {n} out of range");
        assert!(
            buf[4..64].iter().all(|&b| b == 0xa5),
            "datagram {n} arrived altered"
        );
        copies[n as usize] += 1;
    }
    copies
}

fn tally(copies: &[u32]) -> (u32, u32, u32) {
    let lost = copies.iter().filter(|&&c| c == 0).count() as u32;
    let once = copies.iter().filter(|&&c| c == 1).count() as u32;
    let twice = copies.iter().filter(|&&c| c == 2).count() as u32;
    assert_eq!(
        lost + once + twice,
        DATAGRAMS,
        "some datagram arrived three times or more"
    );
    (lost, once, twice)
}

fn receive_buffer_errors(pair: &VethPair) -> u64 {
    VethPair::in_netns(&pair.server, || udp_snmp("RcvbufErrors"))
}

/// The sample's count of an event of probability `p` lies within five standard deviations
/// of its mean (a false failure about once in 1.7 million runs).
#[track_caller]
fn assert_binomial(what: &str, count: u32, n: u32, p: f64) {
    let mean = f64::from(n) * p;
    let sd = (f64::from(n) * p * (1.0 - p)).sqrt();
    assert!(
        (f64::from(count) - mean).abs() <= 5.0 * sd,
        "{what}: {count} of {n}, expected {mean:.0} ± {:.0} (5 σ)",
        5.0 * sd
    );
}

#[test]
fn the_peer_s_datagrams_are_lost_and_duplicated_at_the_rates_asked() {
    let pair = veth_pair(VethConfig::default());
    let (server, client) = (server_socket(&pair), client_socket(&pair));

    // Without the program: the bed itself loses nothing.
    let (lost, once, _) = tally(&run(&client, &server));
    assert_eq!(
        (lost, once),
        (0, DATAGRAMS),
        "the bed lost datagrams by itself"
    );

    // 20 % loss.
    let mut tc = TcImpair::attach(&pair.client, TcRates::none().loss(20.0).only_udp(PORT))
        .unwrap_or_else(|e| panic!("attach: {e:#}"));
    let (lost, once, twice) = tally(&run(&client, &server));
    assert_eq!(twice, 0, "duplicates with only loss asked");
    assert_binomial("lost at 20 %", lost, DATAGRAMS, 0.20);
    let counters = tc.counters().unwrap();
    assert_eq!(
        u64::from(lost),
        counters["dropped"],
        "every loss is the program's: {counters:?}"
    );
    assert_eq!(counters["matched"], u64::from(DATAGRAMS), "{counters:?}");
    eprintln!("20 % loss: {lost} of {DATAGRAMS} lost, {once} arrived");

    // Every datagram twice, and none lost.
    tc.set_rates(TcRates::none().duplicate(100.0).only_udp(PORT))
        .unwrap();
    let before = tc.counter(TcImpairCounter::Duplicated).unwrap();
    let (lost, once, twice) = tally(&run(&client, &server));
    assert_eq!((lost, once, twice), (0, 0, DATAGRAMS), "dup=100%");
    assert_eq!(
        tc.counter(TcImpairCounter::Duplicated).unwrap() - before,
        u64::from(DATAGRAMS)
    );
    assert_eq!(tc.counter(TcImpairCounter::DuplicateFailed).unwrap(), 0);

    // 10 % duplicated.
    tc.set_rates(TcRates::none().duplicate(10.0).only_udp(PORT))
        .unwrap();
    let (lost, _, twice) = tally(&run(&client, &server));
    assert_eq!(lost, 0, "dup=10% lost datagrams");
    assert_binomial("duplicated at 10 %", twice, DATAGRAMS, 0.10);

    // A filter on another port leaves this flow alone.
    tc.set_rates(TcRates::none().loss(100.0).only_udp(PORT + 1))
        .unwrap();
    let (lost, once, _) = tally(&run(&client, &server));
    assert_eq!((lost, once), (0, DATAGRAMS), "a filter on another port");

    // Detached: everything arrives once, and the qdisc is gone.
    tc.set_rates(TcRates::none().loss(100.0)).unwrap();
    tc.detach().unwrap_or_else(|e| panic!("detach: {e:#}"));
    let (lost, once, _) = tally(&run(&client, &server));
    assert_eq!((lost, once), (0, DATAGRAMS), "after detaching");
    let qdiscs = pair
        .client_command("tc")
        .args(["qdisc", "show", "dev", &pair.client.iface])
        .output()
        .expect("tc qdisc show");
    let qdiscs = String::from_utf8_lossy(&qdiscs.stdout);
    assert!(!qdiscs.contains("clsact"), "clsact left behind: {qdiscs}");
    assert_eq!(receive_buffer_errors(&pair), 0, "the receiver overflowed");
}

#[test]
fn corrupted_datagrams_fail_their_checksums() {
    // The kernel computes the checksums itself only with TX offload off: a partial checksum
    // is accepted whatever the payload.
    let pair = veth_pair(VethConfig {
        peer_tx_checksum: false,
        ..VethConfig::default()
    });
    let (server, client) = (server_socket(&pair), client_socket(&pair));
    let tc = TcImpair::attach(&pair.client, TcRates::none().corrupt(100.0).only_udp(PORT))
        .unwrap_or_else(|e| panic!("attach: {e:#}"));
    let (lost, _, twice) = tally(&run(&client, &server));
    assert_eq!(twice, 0);
    assert_eq!(
        tc.counter(TcImpairCounter::Corrupted).unwrap(),
        u64::from(DATAGRAMS)
    );
    // A flip that turns the UDP checksum into 0 ("none") passes; the odds are tiny. The
    // rest fail the IP or the UDP checksum (and `run` checks what arrives is unaltered).
    assert!(
        lost >= DATAGRAMS - 2,
        "{} corrupted datagrams were delivered",
        DATAGRAMS - lost
    );
    drop(tc);
}
