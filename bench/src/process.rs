//! Running the `fastpath` binary inside a namespace, and stopping it on every exit path.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::netns::VethPair;

/// The `fastpath` binary of this workspace: `$FASTPATH_BIN`, else the one cargo built next to
/// the running executable (target/{debug,release}).
pub fn fastpath_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("FASTPATH_BIN") {
        return Ok(PathBuf::from(p));
    }
    sibling_binary("fastpath").map_err(|e| {
        anyhow::anyhow!("{e:#}; `cargo build -p fastpath` builds it (`cargo xtask test` does), or set FASTPATH_BIN")
    })
}

/// Where `fastpath` puts its control socket when not given `--control` (fastpath's
/// `control::CONTROL_DIR`; the harness does not link the library).
pub const DEFAULT_CONTROL_DIR: &str = "/run/fastpath";

/// A running `fastpath echo` in the server namespace; killed when dropped.
pub struct FastpathProcess {
    child: Option<Child>,
    pub control: PathBuf,
    pub log: PathBuf,
    /// Every frame the instance received and sent (tests only: `start_echo`).
    pub pcap: Option<PathBuf>,
}

impl FastpathProcess {
    /// Starts `fastpath echo --iface <server veth> <args>` and waits until it answers stats.
    /// For tests: the instance captures every frame (`--pcap`), and a test that panics
    /// leaves that pcap next to its log and says where both are.
    pub fn start_echo(pair: &VethPair, args: &[&str]) -> anyhow::Result<Self> {
        let tag = format!("{}-{}", pair.server.iface, std::process::id());
        let control = std::env::temp_dir().join(format!("fastpath-{tag}.sock"));
        let pcap = std::env::temp_dir().join(format!("fastpath-{tag}.pcap"));
        let pcap_arg = pcap.to_str().context("non-UTF-8 temp dir")?.to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--pcap", &pcap_arg]);
        let mut process = Self::spawn(&fastpath_binary()?, pair, "echo", &all, control, true)?;
        process.pcap = Some(pcap);
        Ok(process)
    }

    /// Starts `fastpath <command> --iface <server veth> <args>` and waits until it answers stats.
    pub fn start(pair: &VethPair, command: &str, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_binary(&fastpath_binary()?, pair, command, args)
    }

    /// Like `start`, with the fastpath binary at `bin` (e.g. an earlier build, for a
    /// regression comparison).
    pub fn start_binary(
        bin: &std::path::Path,
        pair: &VethPair,
        command: &str,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let tag = format!("{}-{}", pair.server.iface, std::process::id());
        let control = std::env::temp_dir().join(format!("fastpath-{tag}.sock"));
        Self::spawn(bin, pair, command, args, control, true)
    }

    /// Like `start`, without `--control`: the instance listens at the default
    /// `/run/fastpath/IF.sock`, where `fastpath stats` without `--iface` looks, as a
    /// user's would. The veth's name is unique, so the path is too.
    pub fn start_default_control(
        pair: &VethPair,
        command: &str,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let control = Path::new(DEFAULT_CONTROL_DIR).join(format!("{}.sock", pair.server.iface));
        Self::spawn(&fastpath_binary()?, pair, command, args, control, false)
    }

    fn spawn(
        bin: &Path,
        pair: &VethPair,
        command: &str,
        args: &[&str],
        control: PathBuf,
        pass_control: bool,
    ) -> anyhow::Result<Self> {
        let tag = format!("{}-{}", pair.server.iface, std::process::id());
        let log = std::env::temp_dir().join(format!("fastpath-{tag}.log"));
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = pair.server_command(bin.to_str().context("non-UTF-8 binary path")?);
        cmd.args([command, "--iface", &pair.server.iface]);
        if pass_control {
            cmd.arg("--control").arg(&control);
        }
        let child = cmd
            .args(args)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let mut process = Self {
            child: Some(child),
            control,
            log,
            pcap: None,
        };
        process.wait_ready(Duration::from_secs(15))?;
        Ok(process)
    }

    fn wait_ready(&mut self, limit: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "fastpath exited with {status} before it was ready: {}",
                    self.log_text()
                );
            }
            // The control socket answers from the start, before the sockets are bound: ready
            // means it answers and its steering rules are in (every service binds a port).
            if request(&self.control, "stats")
                .is_ok_and(|s| s["rules"].as_array().is_some_and(|r| !r.is_empty()))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "fastpath did not become ready in {limit:?}: {}",
            self.log_text()
        )
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash would.
    pub fn kill_hard(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then wait for a clean exit. Returns the exit status and the log.
    pub fn stop(&mut self) -> anyhow::Result<(std::process::ExitStatus, String)> {
        let Some(mut child) = self.child.take() else {
            bail!("fastpath already stopped");
        };
        // Safety: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((status, self.log_text()));
            }
            if start.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "fastpath did not stop within 10 s of SIGTERM: {}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn control(&self) -> &Path {
        &self.control
    }
}

impl Drop for FastpathProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.control);
        if std::thread::panicking() {
            // Leave what happened for whoever reads the failure.
            eprintln!(
                "fastpath's log: {}{}",
                self.log.display(),
                self.pcap.as_ref().map_or(String::new(), |p| format!(
                    "; every frame it received and sent: {} (tcpdump -nr)",
                    p.display()
                ))
            );
            return;
        }
        let _ = std::fs::remove_file(&self.log);
        if let Some(pcap) = &self.pcap {
            let _ = std::fs::remove_file(pcap);
        }
    }
}

/// One request line to the control socket, one JSON answer back.
pub fn request(control: &Path, line: &str) -> anyhow::Result<serde_json::Value> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(control)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    Ok(serde_json::from_str(&reply)?)
}

/// Asks a running fastpath for its stats as JSON (through its own `stats` command).
pub fn stats_json(control: &Path) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(fastpath_binary()?)
        .args(["stats", "--json", "--control"])
        .arg(control)
        .output()?;
    if !out.status.success() {
        bail!(
            "fastpath stats failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Any child process, stopped with SIGTERM (then SIGKILL) when dropped.
pub struct ChildGuard {
    child: Option<Child>,
    pub name: String,
}

impl ChildGuard {
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        Self {
            child: Some(child),
            name: name.into(),
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it has exited already.
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    pub fn wait(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("already waited")?;
        Ok(child.wait()?)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Safety: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                if child.try_wait().ok().flatten().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `program` is on PATH (or in /usr/sbin or /sbin, where Debian puts daemons such
/// as nginx); the error names the Debian package and `cargo xtask deps`, which installs it.
pub fn require_program(program: &str, package: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "{program} is not installed: `cargo xtask deps` installs it (Debian package {package})"
            )
        })
}

/// A binary that cargo built next to the running executable (target/{debug,release}).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no {name} binary next to {}: build the workspace first (`cargo build --workspace`)",
        exe.display()
    )
}
