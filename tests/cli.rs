//! What a user sees when something is wrong: one line with the cause and the fix, and a
//! non-zero exit code. And what `fastpath stats` shows when all is well.

use std::process::Output;

use fastpath_e2e::*;

#[track_caller]
fn assert_one_line_error(out: &Output, must_contain: &[&str]) {
    assert!(
        !out.status.success(),
        "expected failure, got {}",
        out.status
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line of error, got:\n{stderr}");
    assert!(lines[0].starts_with("fastpath: "), "{stderr}");
    for needle in must_contain {
        assert!(
            lines[0].contains(needle),
            "{needle:?} missing from: {stderr}"
        );
    }
}

fn bin() -> String {
    fastpath_binary().unwrap().to_string_lossy().into_owned()
}

#[test]
fn a_missing_interface_names_the_interface_and_how_to_list_them() {
    let pair = veth_pair(VethConfig::default());
    let out = pair
        .server_command(&bin())
        .args(["echo", "--iface", "no-such-if", "--udp", "7000"])
        .output()
        .unwrap();
    assert_one_line_error(&out, &["no-such-if", "does not exist", "ip link"]);
}

#[test]
fn bad_ports_are_refused_by_the_parser() {
    for bad in ["0", "70000", "http", "-1"] {
        let out = std::process::Command::new(bin())
            .args(["echo", "--iface", "lo", "--udp", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "port {bad}");
        assert_one_line_error(&out, &["--udp", "--help"]);
    }
}

#[test]
fn a_missing_required_argument_is_named() {
    // clap puts the missing argument's name on the line after "were not provided:".
    let out = std::process::Command::new(bin())
        .args(["echo", "--udp", "7000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_one_line_error(&out, &["required", "--iface", "--help"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("Usage:"),
        "usage boilerplate kept: {stderr}"
    );

    let bench = fastpath_bench::process::sibling_binary("fastpath-bench").unwrap();
    let out = std::process::Command::new(bench)
        .args(["kernel-echo"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line of error, got:\n{stderr}");
    assert!(
        lines[0].starts_with("fastpath-bench: ") && lines[0].contains("--addr"),
        "{stderr}"
    );
}

#[test]
fn a_non_root_run_says_it_needs_root() {
    let pair = veth_pair(VethConfig::default());
    let out = pair
        .server_command("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .args([
            bin().as_str(),
            "echo",
            "--iface",
            &pair.server.iface,
            "--udp",
            "7000",
        ])
        .output()
        .unwrap();
    assert_one_line_error(&out, &["needs root", "sudo"]);
    assert!(!pair.server_has_xdp().unwrap(), "nothing may be attached");
}

#[test]
fn an_interface_with_another_xdp_program_is_refused_with_the_fix() {
    let pair = veth_pair(VethConfig::default());
    let _first = start_echo(&pair, &["--udp", "7000"]);
    let other_control =
        std::env::temp_dir().join(format!("fastpath-second-{}.sock", std::process::id()));
    let out = pair
        .server_command(&bin())
        .args([
            "echo",
            "--iface",
            &pair.server.iface,
            "--udp",
            "7001",
            "--control",
        ])
        .arg(&other_control)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&other_control);
    assert_one_line_error(
        &out,
        &["already has an XDP program", "ip link set dev", "xdp off"],
    );
}

#[test]
fn more_queues_than_the_interface_has_is_refused() {
    let pair = veth_pair(VethConfig::default());
    let out = pair
        .server_command(&bin())
        .args([
            "echo",
            "--iface",
            &pair.server.iface,
            "--udp",
            "7000",
            "--queues",
            "4",
        ])
        .output()
        .unwrap();
    assert_one_line_error(&out, &["1 RX queue", "--queues"]);
}

#[test]
fn stats_prints_a_table_and_json() {
    let pair = veth_pair(VethConfig::default());
    let fastpath = start_echo(&pair, &["--udp", "7000"]);
    let socket = client_socket(&pair);
    assert!(round_trip(&socket, 7000, b"x").is_some());
    let table = std::process::Command::new(bin())
        .args(["stats", "--control"])
        .arg(fastpath.control())
        .output()
        .unwrap();
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    for needle in [
        "steered",
        "malformed",
        "no_socket",
        "passed",
        "fill_empty",
        "tx_full",
        "rx_dropped",
        "queue_full",
        "udp *:7000",
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from the table:\n{text}"
        );
    }
    let json = stats(&fastpath);
    assert_eq!(json["iface"], pair.server.iface.as_str());
    assert_eq!(json["mode"], "driver");
    assert!(json["queues"][0]["rx"].as_u64().unwrap() >= 1);

    // Asking when nothing runs is a clear one-line error too.
    let out = std::process::Command::new(bin())
        .args(["stats", "--control", "/nonexistent/fastpath.sock"])
        .output()
        .unwrap();
    assert_one_line_error(&out, &["no fastpath answers"]);
}

#[test]
fn help_teaches_with_examples() {
    let out = std::process::Command::new(bin())
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Examples:") && text.contains("fastpath echo --iface"));
    let out = std::process::Command::new(bin())
        .args(["echo", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--udp",
        "--queues",
        "--mode",
        "--idle",
        "--rx-checksum",
        "--sockperf",
    ] {
        assert!(text.contains(flag), "{flag} missing from echo --help");
    }
}
