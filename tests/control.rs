//! The control socket as a user meets it: `fastpath sockets` and `fastpath stats` without
//! `--iface` find the one live instance even when a killed one left its socket behind, or
//! when another runs in a different network namespace; and a request of any size gets a
//! short answer.

use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    process::Output,
    time::Duration,
};

use fastpath_e2e::*;

fn bin() -> String {
    fastpath_binary().unwrap().to_string_lossy().into_owned()
}

#[track_caller]
fn start_default(pair: &VethPair, args: &[&str]) -> FastpathProcess {
    FastpathProcess::start_default_control(pair, "echo", args)
        .unwrap_or_else(|e| panic!("cannot start fastpath: {e:#}"))
}

/// `fastpath ARGS` run in the server namespace of `pair`, as a user there would.
fn fastpath_in(pair: &VethPair, args: &[&str]) -> Output {
    pair.server_command(&bin()).args(args).output().unwrap()
}

#[track_caller]
fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_killed_instance_leaves_no_socket_that_confuses_discovery() {
    let (first, second) = (
        veth_pair(VethConfig::default()),
        veth_pair(VethConfig::default()),
    );
    let mut dead = start_default(&first, &["--udp", "7000"]);
    let stale = dead.control().to_path_buf();
    dead.kill_hard().unwrap();
    assert!(
        stale.exists(),
        "SIGKILL should leave {} behind (the case under test)",
        stale.display()
    );

    let live = start_default(&second, &["--udp", "7001"]);
    let table = stdout_of(&fastpath_in(&second, &["sockets"]));
    assert!(
        table.contains(":7001"),
        "not the live instance's sockets:\n{table}"
    );
    let stats: serde_json::Value =
        serde_json::from_str(&stdout_of(&fastpath_in(&second, &["stats", "--json"]))).unwrap();
    assert_eq!(stats["iface"], second.server.iface.as_str());
    assert_eq!(stats["pid"].as_u64(), live.pid().map(u64::from));
    assert!(
        !stale.exists(),
        "discovery must remove the dead instance's socket {}",
        stale.display()
    );
}

#[test]
fn of_two_live_instances_each_namespace_finds_its_own() {
    let (a, b) = (
        veth_pair(VethConfig::default()),
        veth_pair(VethConfig::default()),
    );
    let _fa = start_default(&a, &["--udp", "7000"]);
    let _fb = start_default(&b, &["--udp", "7000"]);
    for pair in [&a, &b] {
        let stats: serde_json::Value =
            serde_json::from_str(&stdout_of(&fastpath_in(pair, &["stats", "--json"]))).unwrap();
        assert_eq!(stats["iface"], pair.server.iface.as_str());
    }
}

/// Sends `request` (without waiting to finish sending) and returns the answer line.
fn ask(control: &std::path::Path, request: Vec<u8>) -> String {
    let stream = UnixStream::connect(control).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    // The server stops reading at its bound and closes: the rest of the write fails, and
    // that is expected.
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).unwrap();
    drop(stream);
    sender.join().unwrap();
    answer
}

#[test]
fn an_oversized_or_unknown_request_gets_a_short_error() {
    let pair = veth_pair(VethConfig::default());
    let fastpath = start_echo(&pair, &["--udp", "7000"]);
    let control = fastpath.control();

    // 8 MiB in one line, the kind of input that was read whole and echoed back whole.
    let mut huge = vec![b'x'; 8 << 20];
    huge.push(b'\n');
    let answer = ask(control, huge);
    assert!(
        answer.len() < 200 && answer.contains("error") && answer.contains("longer than"),
        "{} bytes: {}",
        answer.len(),
        &answer[..answer.len().min(300)]
    );

    // Under the bound but unknown: quoted, only its start.
    let mut unknown = vec![b'y'; 3000];
    unknown.push(b'\n');
    let answer = ask(control, unknown);
    assert!(
        answer.len() < 300 && answer.contains("unknown request") && answer.contains("3000 bytes"),
        "{} bytes: {}",
        answer.len(),
        &answer[..answer.len().min(400)]
    );

    // And the instance still answers.
    let stats = stats(&fastpath);
    assert_eq!(stats["iface"], pair.server.iface.as_str());
}
