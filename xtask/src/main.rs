//! `cargo xtask`: installs what is missing, builds, tests, runs the demo and the benches.
//!
//! Every step says what it does; `deps` is idempotent and returns in seconds when all is
//! present, so `test`, `demo` and `bench` run it first.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, test, demo and bench fastpath", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what is missing: apt packages, nightly rust-src, bpf-linker for LLVM 22.
    Deps,
    /// Build the workspace (the XDP program is built by stack/build.rs).
    Build {
        #[arg(long)]
        release: bool,
    },
    /// deps, build, then every test of the default members: unit, end-to-end and bench tests (needs root).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The main job: `fastpath serve` on a fresh veth pair, checked with curl, then a
    /// bounded wrk load against it and against nginx (one worker each), with their
    /// requests/s, latency percentiles and ratio, a report and a plot (needs root).
    Demo {
        /// Seconds of wrk load on each server.
        #[arg(long, default_value_t = 10)]
        duration: u64,
    },
    /// Run a bench scenario (or `all`) and write its report (needs root).
    Bench {
        /// SCENARIO [OPTIONS]: udp-pingpong, udp-flood, ceiling, tcp-rr, tcp-crr, tcp-bulk or
        /// all, then options such as --out DIR, --duration SECONDS, --rate PPS.
        /// `cargo xtask bench udp-flood --help` lists them all.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Build the cargo-fuzz targets (stack/fuzz) and run each for a while.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only these targets (default: all).
        targets: Vec<String>,
    },
    /// Delete network namespaces left behind by killed test or bench runs.
    CleanNetns,
    /// An earlier `fastpath` build against the current one on a bench scenario, alternating
    /// old, new, old, new: fastpath's rate and p99 per round and the ratios new ÷ old, against
    /// the bounds a refactoring must keep (rate ≥ 0.95×, p99 ≤ 1.05×). Needs root.
    #[command(
        after_help = "Example:\n  git worktree add /tmp/old HEAD~1 && (cd /tmp/old && cargo build --release -p fastpath)\n  cargo xtask ab --baseline /tmp/old/target/release/fastpath --rounds 3 tcp-rr --duration 5"
    )]
    Ab {
        /// The earlier build's `fastpath` binary.
        #[arg(long, value_name = "PATH")]
        baseline: PathBuf,
        /// Runs of each build.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
        rounds: u32,
        /// Where each run's report goes (one folder per run).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// SCENARIO [OPTIONS] for fastpath-bench (without --out).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        args: Vec<String>,
    },
    /// Check the house plan: no import loop between modules, each layer of the library
    /// importing only those below it, no file over 800 lines, no function over 100.
    Layers,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Deps => deps(),
        Task::Build { release } => deps().and_then(|()| build(release)),
        Task::Test { args } => test(&args),
        Task::Demo { duration } => demo(duration),
        Task::Bench { args } => bench(&args),
        Task::Fuzz { seconds, targets } => deps().and_then(|()| fuzz(seconds, &targets)),
        Task::CleanNetns => clean_netns(),
        Task::Layers => layers(),
        Task::Ab {
            baseline,
            rounds,
            out,
            args,
        } => ab(&baseline, rounds, out, &args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

mod ab;
mod layers;

fn ab(baseline: &Path, rounds: u32, out: Option<PathBuf>, args: &[String]) -> anyhow::Result<()> {
    require_root("the bench")?;
    let dir = release_binaries()?;
    let out = out.unwrap_or_else(ab::default_out);
    let kept = ab::run(
        &dir.join("fastpath-bench"),
        &dir.join("fastpath"),
        baseline,
        rounds,
        &out,
        args,
    )?;
    if !kept {
        bail!("the new build is outside the bounds on some row (above)");
    }
    Ok(())
}

fn layers() -> anyhow::Result<()> {
    step("layers: import loops, layer order, file and function sizes");
    layers::check(&root())
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn step(what: &str) {
    eprintln!("==> {what}");
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Debian packages: building the XDP program and bpf-linker, and the tools tests and benches drive.
const APT_PACKAGES: &[&str] = &[
    // bpf-linker against LLVM 22 (the LLVM of rustc 1.95 / nightly 1.97).
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "libelf-dev",
    "m4",
    "build-essential",
    // xsk-rs's libxdp-sys with `use_cc_build`: clang compiles libbpf/libxdp, libclang for bindgen.
    "clang",
    "libclang-dev",
    "pkg-config",
    // The test bed and the peers.
    "iproute2",
    "ethtool",
    "iputils-ping",
    "util-linux",
    "sockperf",
    "wrk",
    "nginx-light",
    "apache2-utils",
    "socat",
    "curl",
    "tcpdump",
    // Instruction counts per request (valgrind --tool=lackey on stack/examples/request_loop).
    "valgrind",
    // SVG → PNG for the bench plots.
    "librsvg2-bin",
    // Profiles for the README's performance notes.
    "linux-perf",
];

fn deps() -> anyhow::Result<()> {
    let start = Instant::now();
    step("deps: apt packages");
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output();
            !out.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        eprintln!("    all {} present", APT_PACKAGES.len());
    } else {
        eprintln!("    installing {}", missing.join(" "));
        run(Command::new("apt-get").arg("update").arg("-qq"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }

    step("deps: nightly toolchain with rust-src (for -Z build-std=core)");
    let installed = Command::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .output();
    let has_src = installed.as_ref().is_ok_and(|o| {
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("rust-src")
    });
    if has_src {
        eprintln!("    present");
    } else if installed.is_ok_and(|o| o.status.success()) {
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    } else {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ]))?;
    }

    step("deps: bpf-linker built against LLVM 22");
    if succeeds(Command::new("bpf-linker").arg("--version")) {
        eprintln!("    present");
    } else {
        eprintln!("    installing (about 2 minutes)");
        let path = format!(
            "/usr/lib/llvm-22/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        run(Command::new("cargo")
            .args(["install", "bpf-linker", "--locked", "--no-default-features", "--features", "llvm-22"])
            .env("PATH", path))
        .context("installing bpf-linker (llvm-config must be LLVM 22: /usr/lib/llvm-22/bin comes first on PATH)")?;
    }
    step("deps: cargo-fuzz (fuzz targets are built in every test run)");
    if succeeds(Command::new("cargo").args(["fuzz", "--version"])) {
        eprintln!("    present");
    } else {
        eprintln!("    installing (about a minute)");
        run(Command::new("cargo").args(["install", "cargo-fuzz", "--locked"]))?;
    }
    eprintln!("    deps ready in {:.1}s", start.elapsed().as_secs_f64());
    Ok(())
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn build(release: bool) -> anyhow::Result<()> {
    step(if release { "build (release)" } else { "build" });
    let mut cmd = cargo();
    cmd.args(["build", "--all-targets"]);
    if release {
        cmd.arg("--release");
    }
    run(&mut cmd)
}

fn require_root(what: &str) -> anyhow::Result<()> {
    let uid = Command::new("id").arg("-u").output()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        bail!(
            "{what} needs root (network namespaces, XDP, AF_XDP): run it as root, e.g. `sudo -E cargo xtask ...`"
        );
    }
    Ok(())
}

fn clean_netns() -> anyhow::Result<()> {
    let out = Command::new("ip").args(["netns", "list"]).output()?;
    let mut removed = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(rest) = name.strip_prefix("fpt-") else {
            continue;
        };
        let pid = rest.split('n').next().unwrap_or("");
        if !Path::new("/proc").join(pid).exists() || pid.is_empty() {
            run(Command::new("ip").args(["netns", "del", name]))?;
            removed += 1;
        }
    }
    eprintln!("    removed {removed} stale namespace(s)");
    Ok(())
}

fn test(args: &[String]) -> anyhow::Result<()> {
    require_root("the end-to-end tests")?;
    layers()?;
    deps()?;
    build(false)?;
    step("remove namespaces of killed earlier runs");
    clean_netns()?;
    step("test: unit tests and end-to-end tests");
    let mut cmd = cargo();
    cmd.args(["test", "--no-fail-fast"]).args(args);
    let result = run(&mut cmd);
    step("check: nothing left behind");
    let out = Command::new("ip").args(["netns", "list"]).output()?;
    // A namespace is named after the test process that made it (fpt-PID…). Ours have all
    // exited now, so one whose process is gone was leaked; one whose process still runs
    // belongs to another run on this machine (a developer's, say) and is not ours to judge.
    let left: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| {
            name.strip_prefix("fpt-")
                .and_then(|rest| rest.split('n').next())
                .is_some_and(|pid| pid.is_empty() || !Path::new("/proc").join(pid).exists())
        })
        .map(str::to_string)
        .collect();
    result?;
    if !left.is_empty() {
        bail!(
            "the tests left network namespaces behind: {}",
            left.join(", ")
        );
    }
    eprintln!("    none");
    step("loom: model-check the socket-number allocator");
    // A filter that matches nothing (a renamed test, a lost `cfg(loom)`) passes with
    // "0 passed": a model check that checked nothing must fail.
    let passed = run_counting_tests(
        cargo()
            .args([
                "test",
                "-p",
                "fastpath",
                "--release",
                "--lib",
                "loom",
                "--target-dir",
                "target/loom",
            ])
            .env("RUSTFLAGS", "--cfg loom"),
    )?;
    if passed == 0 {
        bail!(
            "the loom model check ran no test: `cargo test --lib loom` under `--cfg loom` matched nothing"
        );
    }
    step("TCP simulation: 100 seeds of every scenario, in release (a failing seed is printed)");
    let passed = run_counting_tests(
        cargo()
            .args(["test", "-p", "fastpath", "--release", "--lib", "tcp::sim"])
            .env("FASTPATH_SIM_SEEDS", "100"),
    )?;
    if passed == 0 {
        bail!("the TCP simulation ran no test: `cargo test --lib tcp::sim` matched nothing");
    }
    fuzz(5, &[])
}

/// Runs a `cargo test`, passing its output through, and returns how many tests passed
/// (the sum of its `test result: ok. N passed` lines).
fn run_counting_tests(cmd: &mut Command) -> anyhow::Result<u64> {
    use std::io::{BufRead, BufReader, Write};
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {shown}"))?;
    let mut passed = 0;
    let stdout = child.stdout.take().context("no stdout")?;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        passed += passed_in(&line);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(passed)
}

/// N of a libtest summary line `test result: ok. N passed; …`, else 0.
fn passed_in(line: &str) -> u64 {
    line.strip_prefix("test result: ok. ")
        .and_then(|rest| rest.split_once(" passed"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or(0)
}

const FUZZ_TARGETS: &[&str] = &[
    "wire_ethernet",
    "wire_ipv4",
    "wire_udp",
    "wire_tcp",
    "echo_frame",
    "tcp_connection",
];

/// Builds every fuzz target, then runs each (or the named ones) for `seconds`.
fn fuzz(seconds: u64, only: &[String]) -> anyhow::Result<()> {
    let stack = root().join("stack");
    step("fuzz: build the targets (nightly, sanitizers)");
    // The fuzz targets do not need the XDP object.
    run(Command::new("cargo")
        .args(["+nightly", "fuzz", "build", "-O"])
        .current_dir(&stack)
        .env("AYA_BUILD_SKIP", "1"))?;
    for target in FUZZ_TARGETS
        .iter()
        .filter(|t| only.is_empty() || only.iter().any(|o| o == *t))
    {
        step(&format!("fuzz: {target} for {seconds} s"));
        run(Command::new("cargo")
            .args(["+nightly", "fuzz", "run", "-O", target, "--"])
            .arg(format!("-max_total_time={seconds}"))
            .arg("-print_final_stats=1")
            .current_dir(&stack)
            .env("AYA_BUILD_SKIP", "1"))?;
    }
    Ok(())
}

fn release_binaries() -> anyhow::Result<PathBuf> {
    deps()?;
    step("build (release)");
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "fastpath",
        "-p",
        "fastpath-bench",
    ]))?;
    Ok(root().join("target/release"))
}

fn demo(duration: u64) -> anyhow::Result<()> {
    require_root("the demo")?;
    let dir = release_binaries()?;
    step("demo");
    run(Command::new(dir.join("fastpath-bench"))
        .args(["demo", "--duration", &duration.to_string()])
        .env("FASTPATH_BIN", dir.join("fastpath")))
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    require_root("the bench")?;
    let dir = release_binaries()?;
    step("bench");
    run(Command::new(dir.join("fastpath-bench"))
        .args(args)
        .env("FASTPATH_BIN", dir.join("fastpath")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_passed_tests_only_from_ok_summaries() {
        assert_eq!(
            super::passed_in(
                "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 40 filtered out; finished in 2.01s"
            ),
            3
        );
        assert_eq!(
            super::passed_in(
                "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 43 filtered out"
            ),
            0
        );
        assert_eq!(super::passed_in("test loom_tests::x ... ok"), 0);
        assert_eq!(
            super::passed_in("test result: FAILED. 2 passed; 1 failed; 0 ignored"),
            0
        );
    }
}
