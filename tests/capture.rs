//! `fastpath capture` and the metrics, against a running instance on a real veth pair.
//! What XDP redirects into AF_XDP never reaches tcpdump on the interface; the capture
//! must show exactly what fastpath received and sent, byte for byte, in order.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fastpath_e2e::*;

/// A `fastpath capture` process, killed if a test fails before it ends.
struct CaptureProcess {
    child: Child,
    file: PathBuf,
}

impl CaptureProcess {
    /// Starts `fastpath capture ARGS -w FILE` against `fastpath`, and waits until it says it
    /// is capturing (so traffic sent after this is seen).
    fn start(fastpath: &FastpathProcess, args: &[&str], name: &str) -> Self {
        let file =
            std::env::temp_dir().join(format!("fastpath-{}-{name}.pcap", std::process::id()));
        let _ = std::fs::remove_file(&file);
        let mut child = Command::new(fastpath_binary().unwrap())
            .arg("capture")
            .arg("--control")
            .arg(fastpath.control())
            .args(args)
            .arg("-w")
            .arg(&file)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start fastpath capture");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let line = lines.next().expect("capture said nothing").unwrap();
        assert!(line.contains("capturing"), "capture: {line}");
        // Keep draining its stderr in the background so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, file }
    }

    /// Waits (bounded) for it to end by itself; true if it exited successfully.
    fn wait(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for CaptureProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every packet of a pcap file (which must parse), as (timestamp, bytes).
fn read_pcap(file: &Path) -> Vec<(Duration, Vec<u8>)> {
    let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).expect("a pcap header");
    let mut packets = Vec::new();
    while let Some(p) = reader.next_packet() {
        let p = p.expect("a whole packet");
        packets.push((p.timestamp, p.data.to_vec()));
    }
    packets
}

/// The one's-complement sum over `data` (RFC 1071), folded.
fn sum(data: &[u8], mut acc: u32) -> u16 {
    for chunk in data.chunks(2) {
        let word = if chunk.len() == 2 {
            u16::from_be_bytes([chunk[0], chunk[1]])
        } else {
            u16::from_be_bytes([chunk[0], 0])
        };
        acc += u32::from(word);
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// (source port, destination port, payload) of an untagged IPv4 UDP frame whose IPv4 and
/// UDP checksums both verify.
#[track_caller]
fn udp_checked(frame: &[u8]) -> (u16, u16, Vec<u8>) {
    assert_eq!(&frame[12..14], &[0x08, 0x00], "IPv4");
    let ip = &frame[14..34];
    assert_eq!(sum(ip, 0), 0xffff, "IPv4 header checksum");
    assert_eq!(ip[9], 17, "UDP");
    let udp_len = usize::from(u16::from_be_bytes([frame[38], frame[39]]));
    let udp = &frame[34..34 + udp_len];
    let mut pseudo = 0u32;
    for w in [&ip[12..14], &ip[14..16], &ip[16..18], &ip[18..20]] {
        pseudo += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    pseudo += 17 + udp_len as u32;
    assert_eq!(sum(udp, pseudo), 0xffff, "UDP checksum");
    (
        u16::from_be_bytes([udp[0], udp[1]]),
        u16::from_be_bytes([udp[2], udp[3]]),
        udp[8..].to_vec(),
    )
}

#[test]
fn a_capture_holds_exactly_the_requests_and_replies_in_order_with_valid_checksums() {
    // Full checksums from the peer too, so every captured frame verifies.
    let pair = veth_pair(VethConfig {
        peer_tx_checksum: false,
        ..VethConfig::default()
    });
    let fastpath = start_echo(&pair, &["--udp", "7000", "--udp", "7001"]);
    let socket = client_socket(&pair);
    assert!(round_trip(&socket, 7000, b"warm-up").is_some());
    let mut capture =
        CaptureProcess::start(&fastpath, &["--port", "7000", "--count", "100"], "echo");
    let mut sent = Vec::new();
    for i in 0..50u8 {
        let payload = pattern(20 + usize::from(i), i);
        // Traffic to another port that the filter must leave out.
        assert!(round_trip(&socket, 7001, b"not this one").is_some());
        assert_eq!(
            round_trip(&socket, 7000, &payload).as_deref(),
            Some(&payload[..])
        );
        sent.push(payload);
    }
    assert!(
        capture.wait(Duration::from_secs(10)),
        "the capture did not end at its count"
    );
    let packets = read_pcap(&capture.file);
    assert_eq!(packets.len(), 100, "50 requests and 50 replies");
    for (i, payload) in sent.iter().enumerate() {
        let (src, dst, body) = udp_checked(&packets[2 * i].1);
        assert_eq!((dst, &body), (7000, payload), "request {i}");
        let (rsrc, rdst, rbody) = udp_checked(&packets[2 * i + 1].1);
        assert_eq!((rsrc, rdst, &rbody), (7000, src, payload), "reply {i}");
    }
    // Nanosecond timestamps from the worker's clock, in order, near now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert!(packets.windows(2).all(|w| w[0].0 <= w[1].0));
    assert!(
        now - packets[0].0 < Duration::from_secs(60),
        "{:?}",
        packets[0].0
    );
    // tcpdump reads it too.
    let out = Command::new("tcpdump")
        .args(["-nr"])
        .arg(&capture.file)
        .output()
        .expect("tcpdump (installed by cargo xtask deps)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 100);
    let _ = std::fs::remove_file(&capture.file);
}

#[test]
fn a_filter_that_matches_nothing_leaves_a_valid_empty_file() {
    let pair = veth_pair(VethConfig::default());
    let fastpath = start_echo(&pair, &["--udp", "7000"]);
    let socket = client_socket(&pair);
    let mut capture =
        CaptureProcess::start(&fastpath, &["--port", "9999", "--duration", "0.5"], "empty");
    for _ in 0..10 {
        assert!(round_trip(&socket, 7000, b"x").is_some());
    }
    assert!(
        capture.wait(Duration::from_secs(10)),
        "--duration did not end it"
    );
    assert!(read_pcap(&capture.file).is_empty());
    let _ = std::fs::remove_file(&capture.file);
}

#[test]
fn ctrl_c_leaves_a_valid_file() {
    let pair = veth_pair(VethConfig::default());
    let fastpath = start_echo(&pair, &["--udp", "7000"]);
    let socket = client_socket(&pair);
    let mut capture = CaptureProcess::start(&fastpath, &["--proto", "udp"], "interrupted");
    for i in 0..20u8 {
        assert!(round_trip(&socket, 7000, &[i; 8]).is_some());
    }
    std::thread::sleep(Duration::from_millis(100));
    // Safety: kill(2) on our own child.
    unsafe { libc::kill(capture.child.id() as i32, libc::SIGINT) };
    assert!(
        capture.wait(Duration::from_secs(5)),
        "Ctrl-C did not end it cleanly"
    );
    let packets = read_pcap(&capture.file);
    assert_eq!(
        packets.len(),
        40,
        "every request and reply before Ctrl-C\n{}",
        fastpath.log_text()
    );
    // The instance stops copying once the client is gone, and serves on.
    assert!(round_trip(&socket, 7000, b"after").is_some());
    let _ = std::fs::remove_file(&capture.file);
}

/// The value of the first sample of `name` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text: {e}\n{text}"))
}

#[test]
fn metrics_parse_as_prometheus_text_and_rise_with_traffic() {
    let pair = veth_pair(VethConfig::default());
    let fastpath = start_echo(&pair, &["--udp", "7000"]);
    let socket = client_socket(&pair);
    let out = Command::new(fastpath_binary().unwrap())
        .args(["stats", "--prometheus", "--control"])
        .arg(fastpath.control())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let scrape = parse(&text);
    for family in [
        "fastpath_xdp_frames_total",
        "fastpath_drops_total",
        "fastpath_worker_rx_total",
        "fastpath_umem_frames",
        "fastpath_sockets",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
    }
    assert_eq!(
        sample(
            &scrape,
            "fastpath_sockets",
            &[("protocol", "udp"), ("state", "bound")]
        ),
        Some(1.0)
    );

    // A scraper at /metrics, inside the server's namespace, during traffic.
    let mut listener = pair
        .server_command(fastpath_binary().unwrap().to_str().unwrap())
        .args(["stats", "--listen", "127.0.0.1:9464", "--control"])
        .arg(fastpath.control())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let scrape_once = || -> Option<prometheus_parse::Scrape> {
        let out = pair
            .server_command("curl")
            .args(["-sf", "--max-time", "2", "http://127.0.0.1:9464/metrics"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| parse(&String::from_utf8_lossy(&out.stdout)))
    };
    let mut first = None;
    assert!(eventually(Duration::from_secs(5), || {
        first = scrape_once();
        first.is_some()
    }));
    let first = first.unwrap();
    let replied = |s: &prometheus_parse::Scrape| {
        sample(s, "fastpath_udp_replied_total", &[("queue", "0")]).unwrap_or(-1.0)
    };
    for i in 0..50u8 {
        assert!(round_trip(&socket, 7000, &[i; 4]).is_some());
    }
    let mut risen = false;
    assert!(eventually(Duration::from_secs(3), || {
        risen = scrape_once().is_some_and(|s| replied(&s) >= replied(&first) + 50.0);
        risen
    }));
    let _ = listener.kill();
    let _ = listener.wait();
}

/// The tests' own instances capture everything (`--pcap`), so a failing test leaves a pcap
/// next to its log: the device holds what was received and sent, including a second
/// worker's.
#[test]
fn the_test_device_captures_every_frame_from_start_to_stop() {
    let pair = veth_pair(VethConfig {
        queues: 2,
        peer_tx_checksum: false,
        ..VethConfig::default()
    });
    let mut fastpath = start_echo(&pair, &["--udp", "7000", "--queues", "2"]);
    let pcap = fastpath.pcap.clone().expect("start_echo captures");
    let sockets: Vec<_> = (0..8).map(|_| client_socket(&pair)).collect();
    for (i, s) in sockets.iter().enumerate() {
        assert!(round_trip(s, 7000, &[i as u8; 16]).is_some());
    }
    let (status, log) = fastpath.stop().unwrap();
    assert!(status.success(), "{log}");
    let packets = read_pcap(&pcap);
    let udp: Vec<_> = packets
        .iter()
        .filter(|(_, f)| f.len() >= 42 && f[12..14] == [8, 0] && f[23] == 17)
        .map(|(_, f)| udp_checked(f))
        .collect();
    let requests = udp.iter().filter(|(_, dst, _)| *dst == 7000).count();
    let replies = udp.iter().filter(|(src, _, _)| *src == 7000).count();
    assert!(
        requests >= 8 && replies == requests,
        "{requests} requests, {replies} replies"
    );
    let _ = std::fs::remove_file(&pcap);
}
