//! HTTP/1.1 over the real data path: `fastpath serve` on the server end of a veth pair, and
//! real clients in the client namespace — curl, ab, wrk and raw kernel sockets — with the
//! kernel as their TCP. Each test serves a site of its own from a temp directory.
//!
//! A missing client fails the test with the package that provides it; nothing skips. Every
//! wait is bounded, generously: CI is a loaded 2-core machine, and no test asserts a speed.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    thread,
    time::{Duration, Instant, SystemTime},
};

use fastpath_e2e::{
    tcp::{self, sum_counter, tcp_rows},
    *,
};

const PORT: u16 = 8080;

/// The deterministic 10 MiB file's size.
const BIG_LEN: usize = 10 << 20;

/// Files `/pipeline/00.txt` … `19.txt`, each of a different length, for ordering checks.
const PIPELINE_FILES: usize = 20;

/// How long any one client command may run before the test calls it hung.
const COMMAND_LIMIT: Duration = Duration::from_secs(120);

/// A normal request after abuse must be answered within this: the "no stall" bound.
const NORMAL_REQUEST_LIMIT: Duration = Duration::from_secs(30);

/// Fastpath's TIME-WAIT (2 × its default MSL of 30 s): how long a connection the server
/// closed first stays in its table after the peer's FIN.
const TIME_WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------
// The site
// ---------------------------------------------------------------------------------------

const INDEX_HTML: &str =
    "<!doctype html>\n<title>fastpath</title>\n<p>Served from the fast path.</p>\n";

/// A temp directory with the served root and, beside it, a file the root must never
/// reveal; removed on drop.
struct SiteDir {
    top: PathBuf,
    root: PathBuf,
    hundred: Vec<u8>,
    big: Vec<u8>,
    /// The content of `outside/secret.txt`, which `root/escape.txt` links to.
    secret: String,
}

impl SiteDir {
    fn create() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let top = std::env::temp_dir().join(format!("fastpath-http-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&top);
        let root = top.join("site");
        let outside = top.join("outside");
        for dir in [&root.join("pipeline"), &outside] {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        }
        let write = |path: &Path, bytes: &[u8]| {
            std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        };
        write(&root.join("index.html"), INDEX_HTML.as_bytes());
        let hundred: Vec<u8> = (0..100u8).map(|i| b'a' + i % 26).collect();
        write(&root.join("hundred.txt"), &hundred);
        let mut big = vec![0u8; BIG_LEN];
        tcp::fill(0x5eed, 0, &mut big);
        write(&root.join("big.bin"), &big);
        for i in 0..PIPELINE_FILES {
            write(
                &root.join(format!("pipeline/{i:02}.txt")),
                &pipeline_body(i),
            );
        }
        let secret = format!("outside the root {n} {}\n", std::process::id());
        write(&outside.join("secret.txt"), secret.as_bytes());
        // One link that stays inside the root (served) and one that leads out (never).
        std::os::unix::fs::symlink("index.html", root.join("alias.html")).unwrap();
        std::os::unix::fs::symlink("../outside/secret.txt", root.join("escape.txt")).unwrap();
        Self {
            top,
            root,
            hundred,
            big,
            secret,
        }
    }

    fn root_arg(&self) -> &str {
        self.root.to_str().expect("UTF-8 temp dir")
    }
}

impl Drop for SiteDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.top);
    }
}

/// `/pipeline/NN.txt`: its number, repeated so each file has its own length.
fn pipeline_body(i: usize) -> Vec<u8> {
    format!("file {i:02}\n").repeat(i + 1).into_bytes()
}

fn url(path: &str) -> String {
    format!("http://{SERVER_ADDR}:{PORT}{path}")
}

// ---------------------------------------------------------------------------------------
// The server and the clients
// ---------------------------------------------------------------------------------------

/// Starts `fastpath serve --port PORT --root <site> <extra>` and waits for its listener.
/// With `capture`, every frame goes to a pcap that a failing test leaves behind (not for
/// the load tests: megabytes copied for nothing).
#[track_caller]
fn serve(pair: &VethPair, site: &SiteDir, capture: bool, extra: &[&str]) -> FastpathProcess {
    let port = PORT.to_string();
    let pcap = std::env::temp_dir().join(format!(
        "fastpath-{}-{}.pcap",
        pair.server.iface,
        std::process::id()
    ));
    let pcap_arg = pcap.to_str().unwrap().to_owned();
    let mut args = vec!["--port", port.as_str(), "--root", site.root_arg()];
    if capture {
        args.extend(["--pcap", pcap_arg.as_str()]);
    }
    args.extend_from_slice(extra);
    let mut fastpath = FastpathProcess::start(pair, "serve", &args)
        .unwrap_or_else(|e| panic!("cannot start fastpath serve: {e:#}"));
    if capture {
        fastpath.pcap = Some(pcap);
    }
    let listening = eventually(Duration::from_secs(10), || {
        tcp_rows(&fastpath).iter().any(|r| r["state"] == "listen")
    });
    assert!(listening, "no listener: {}", fastpath.log_text());
    fastpath
}

/// Fails (never skips) when a client program is missing.
#[track_caller]
fn require(program: &str, package: &str) {
    if let Err(e) = fastpath_bench::process::require_program(program, package) {
        panic!("{e}; this test needs it as its HTTP client");
    }
}

/// Runs `cmd` to completion with its output captured; kills it and fails past `limit`.
#[track_caller]
fn run_bounded(mut cmd: Command, limit: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{shown} did not finish within {limit:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// `curl -sS <args>` in the client namespace; fails if curl fails.
#[track_caller]
fn curl(pair: &VethPair, args: &[&str]) -> Output {
    require("curl", "curl");
    let mut cmd = pair.client_command("curl");
    cmd.args(["-sS", "--max-time", "60"]).args(args);
    let out = run_bounded(cmd, COMMAND_LIMIT);
    assert!(
        out.status.success(),
        "curl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `curl -i` of one URL: the response as curl received it.
#[track_caller]
fn curl_response(pair: &VethPair, head_only: bool, args: &[&str]) -> Response {
    let out = curl(pair, args);
    match parse_response(&out.stdout, head_only) {
        Ok(Some((response, used))) => {
            assert_eq!(
                used,
                out.stdout.len(),
                "bytes after the response: {:?}",
                String::from_utf8_lossy(&out.stdout[used..])
            );
            response
        }
        other => panic!(
            "curl {args:?}: no whole response ({other:?}) in {:?}",
            String::from_utf8_lossy(&out.stdout)
        ),
    }
}

// ---------------------------------------------------------------------------------------
// Responses, read the way a client reads them
// ---------------------------------------------------------------------------------------

struct Response {
    status: u16,
    /// Names lowercased, values trimmed, in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl std::fmt::Debug for Response {
    /// The body as text, cut at 200 bytes: enough to tell which response it is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = &self.body[..self.body.len().min(200)];
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &String::from_utf8_lossy(shown))
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl Response {
    /// The one value of `name`; fails if it is sent twice.
    #[track_caller]
    fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(n, _)| n == name);
        let first = values.next().map(|(_, v)| v.as_str());
        assert!(values.next().is_none(), "{name} sent twice: {self:?}");
        first
    }

    #[track_caller]
    fn must(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("no {name} header: {self:?}"))
    }

    fn content_length(&self) -> Option<u64> {
        self.header("content-length").map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("bad Content-Length {v:?}"))
        })
    }
}

/// One response at the start of `buf`: `Ok(None)` while incomplete, else it and the bytes
/// it took. The body is framed by Content-Length (this server always sends it), and is
/// absent for HEAD and 304.
fn parse_response(buf: &[u8], head_only: bool) -> Result<Option<(Response, usize)>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 64 * 1024 {
            return Err("no end of the head in 64 KiB".into());
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|e| format!("head is not UTF-8: {e}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    if parts.next() != Some("HTTP/1.1") {
        return Err(format!("not an HTTP/1.1 status line: {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status code in {status_line:?}"))?;
    let headers = lines
        .map(|line| {
            line.split_once(':')
                .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
                .ok_or_else(|| format!("bad header line {line:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut response = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let body_len = if head_only || status == 304 {
        0
    } else {
        response
            .content_length()
            .ok_or_else(|| format!("a {status} without Content-Length: {head}"))? as usize
    };
    let total = end + 4 + body_len;
    if buf.len() < total {
        return Ok(None);
    }
    response.body = buf[end + 4..total].to_vec();
    Ok(Some((response, total)))
}

/// A kernel TCP connection from the client namespace that sends raw bytes and reads
/// responses back one at a time.
struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    scratch: Vec<u8>,
}

impl RawClient {
    #[track_caller]
    fn connect(pair: &VethPair) -> Self {
        let stream = tcp::connect(pair, PORT, Duration::from_secs(30));
        // Each write its own segment, so split requests reach the server split.
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::new(),
            scratch: vec![0u8; 256 * 1024],
        }
    }

    #[track_caller]
    fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("write: {e}"));
    }

    /// The next response, or why there is none (EOF, reset, timeout, garbage).
    fn response(&mut self, head_only: bool) -> Result<Response, String> {
        loop {
            if let Some((response, used)) = parse_response(&self.buf, head_only)? {
                self.buf.drain(..used);
                return Ok(response);
            }
            match self.stream.read(&mut self.scratch) {
                Ok(0) => {
                    return Err(format!(
                        "EOF with {} bytes of a response: {:?}",
                        self.buf.len(),
                        String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&self.scratch[..n]),
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// The server closed the connection (FIN, not reset) with nothing more sent.
    fn expect_eof(&mut self) -> Result<(), String> {
        if !self.buf.is_empty() {
            return Err(format!(
                "bytes after the last response: {:?}",
                String::from_utf8_lossy(&self.buf)
            ));
        }
        match self.stream.read(&mut self.scratch) {
            Ok(0) => Ok(()),
            Ok(n) => Err(format!(
                "more bytes instead of EOF: {:?}",
                String::from_utf8_lossy(&self.scratch[..n])
            )),
            Err(e) => Err(format!("no EOF: {e}")),
        }
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {SERVER_ADDR}\r\n\r\n")
}

/// Every header a file response must carry, and carry right: Date (now, ±5 min for a
/// loaded machine), Server, Content-Type, Content-Length (the file's), the validators.
#[track_caller]
fn assert_file_headers(r: &Response, len: usize, content_type: &str) {
    assert_eq!(r.status, 200, "{r:?}");
    let date = httpdate::parse_http_date(r.must("date"))
        .unwrap_or_else(|e| panic!("Date {:?} is no HTTP date: {e}", r.must("date")));
    let skew = match date.duration_since(SystemTime::now()) {
        Ok(ahead) => ahead,
        Err(behind) => behind.duration(),
    };
    assert!(
        skew < Duration::from_secs(300),
        "Date is {skew:?} off: {r:?}"
    );
    assert_eq!(r.must("server"), "fastpath");
    assert_eq!(r.must("content-type"), content_type);
    assert_eq!(r.content_length(), Some(len as u64), "{r:?}");
    assert!(r.must("etag").starts_with('"'), "{r:?}");
    httpdate::parse_http_date(r.must("last-modified")).expect("Last-Modified is an HTTP date");
}

/// Nothing stuck: every connection is gone or in TIME-WAIT (where a connection the server
/// closed first waits out 2 × MSL), every UMEM frame is back, the ledger saw no error.
fn settled(fastpath: &FastpathProcess) -> Result<(), String> {
    let stuck: Vec<_> = tcp_rows(fastpath)
        .into_iter()
        .filter(|r| r["state"] != "listen" && r["state"] != "time-wait")
        .collect();
    if !stuck.is_empty() {
        return Err(format!("connections not closed: {stuck:?}"));
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
        if q["ledger_errors"] != 0 {
            return Err(format!("ledger errors: {}", q["ledger_errors"]));
        }
    }
    Ok(())
}

#[track_caller]
fn assert_settled(fastpath: &FastpathProcess) {
    let mut last = Ok(());
    let ok = eventually(Duration::from_secs(20), || {
        last = settled(fastpath);
        last.is_ok()
    });
    assert!(ok, "not settled: {last:?}\n{}", fastpath.log_text());
}

/// A normal GET answered in full within `NORMAL_REQUEST_LIMIT`, over a new connection.
#[track_caller]
fn assert_still_serving(pair: &VethPair, fastpath: &FastpathProcess) {
    let start = Instant::now();
    let r = curl_response(pair, false, &["-i", &url("/index.html")]);
    assert_eq!(r.status, 200, "{r:?}\n{}", fastpath.log_text());
    assert_eq!(r.body, INDEX_HTML.as_bytes());
    assert!(
        start.elapsed() < NORMAL_REQUEST_LIMIT,
        "a normal GET took {:?}",
        start.elapsed()
    );
    // The control plane answers too, and sees no frame lost.
    let s = stats(fastpath);
    for q in s["queues"].as_array().unwrap() {
        assert_eq!(q["ledger_errors"], 0, "{s}");
    }
}

// ---------------------------------------------------------------------------------------
// curl
// ---------------------------------------------------------------------------------------

#[test]
fn curl_gets_and_heads_files_with_date_server_length_and_type() {
    let site = SiteDir::create();
    let pair = veth_pair(VethConfig::default());
    let fastpath = serve(&pair, &site, true, &[]);

    const HTML: &str = "text/html; charset=utf-8";
    let index = INDEX_HTML.as_bytes();
    for (path, body, content_type) in [
        ("/index.html", index, HTML),
        ("/", index, HTML),
        ("/alias.html", index, HTML),
        ("/hundred.txt", &site.hundred, "text/plain; charset=utf-8"),
    ] {
        let r = curl_response(&pair, false, &["-i", &url(path)]);
        assert_file_headers(&r, body.len(), content_type);
        assert_eq!(r.body, body, "GET {path}");
        // HEAD: the same headers, the length a GET would have, no body (curl -I stops at
        // the head; a body would be left over after it).
        let h = curl_response(&pair, true, &["-I", &url(path)]);
        assert_file_headers(&h, body.len(), content_type);
        assert_eq!(h.must("etag"), r.must("etag"));
    }
    let h = curl_response(&pair, true, &["-I", &url("/big.bin")]);
    assert_file_headers(&h, BIG_LEN, "application/octet-stream");

    // The same over a raw socket, where a body after HEAD could not hide: a HEAD of the
    // 10 MiB file, then a GET on the same connection whose response must come next.
    let mut client = RawClient::connect(&pair);
    client.send(
        format!(
            "HEAD /big.bin HTTP/1.1\r\nHost: {SERVER_ADDR}\r\n\r\n{}",
            get("/hundred.txt")
        )
        .as_bytes(),
    );
    let head = client.response(true).unwrap();
    assert_file_headers(&head, BIG_LEN, "application/octet-stream");
    let next = client.response(false).unwrap();
    assert_file_headers(&next, 100, "text/plain; charset=utf-8");
    assert_eq!(next.body, site.hundred);
    drop(client);
    assert_settled(&fastpath);
}

#[test]
fn curl_fetches_the_ten_mib_file_byte_identical() {
    let site = SiteDir::create();
    let pair = veth_pair(VethConfig::default());
    let fastpath = serve(&pair, &site, false, &[]);
    let out = site.top.join("download.bin");
    let out_arg = out.to_str().unwrap();
    curl(&pair, &["-o", out_arg, &url("/big.bin")]);
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), BIG_LEN, "{}", fastpath.log_text());
    if let Some(at) = (0..BIG_LEN).find(|&i| got[i] != site.big[i]) {
        panic!("byte {at} of the 10 MiB file differs");
    }
    assert_settled(&fastpath);
}

/// `curl -v URL1 URL2` uses one connection: one "Connected to", then "Re-using existing
/// connection"; and the server saw one connection open.
#[test]
fn curl_reuses_one_keep_alive_connection_for_two_urls() {
    let site = SiteDir::create();
    let pair = veth_pair(VethConfig::default());
    let fastpath = serve(&pair, &site, true, &[]);
    let out = curl(
        &pair,
        &[
            "-v",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            &url("/index.html"),
            &url("/hundred.txt"),
        ],
    );
    let trace = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        trace.matches("Connected to").count(),
        1,
        "curl connected more than once:\n{trace}"
    );
    assert!(
        trace.contains("Re-using existing connection"),
        "curl did not reuse its connection:\n{trace}"
    );
    assert_eq!(
        trace.matches("< HTTP/1.1 200 OK").count(),
        2,
        "two 200s expected:\n{trace}"
    );
    assert_eq!(sum_counter(&fastpath, "tcp_conns_opened"), 1);
    assert_settled(&fastpath);
}

/// A conditional GET with the validators of a first response is answered 304 with no
/// body: If-None-Match with its ETag, If-Modified-Since with its Last-Modified. A stale
/// date or another ETag gets the file; If-None-Match decides when both are sent.
#[test]
fn conditional_get_is_answered_304_not_modified() {
    let site = SiteDir::create();
    let pair = veth_pair(VethConfig::default());
    let fastpath = serve(&pair, &site, true, &[]);
    let first = curl_response(&pair, false, &["-i", &url("/index.html")]);
    assert_eq!(first.status, 200);
    let etag = first.must("etag").to_owned();
    let last_modified = first.must("last-modified").to_owned();
    let inm = format!("If-None-Match: {etag}");
    let ims = format!("If-Modified-Since: {last_modified}");
    let other_etag = "If-None-Match: \"not-this-one\"";
    let old_ims = "If-Modified-Since: Sat, 01 Jan 2000 00:00:00 GMT";
    for (headers, status) in [
        (vec![inm.as_str()], 304),
        (vec![ims.as_str()], 304),
        (vec![inm.as_str(), old_ims], 304),
        (vec![old_ims], 200),
        (vec![other_etag], 200),
        (vec![other_etag, ims.as_str()], 200),
    ] {
        let mut args = vec!["-i"];
        for h in &headers {
            args.extend(["-H", h]);
        }
        let u = url("/index.html");
        args.push(&u);
        let r = curl_response(&pair, false, &args);
        assert_eq!(r.status, status, "{headers:?}: {r:?}");
        if status == 304 {
            assert!(r.body.is_empty());
            assert_eq!(r.must("etag"), etag, "a 304 carries the validators");
            assert_eq!(r.must("last-modified"), last_modified);
            assert!(r.header("date").is_some() && r.must("server") == "fastpath");
        } else {
            assert_eq!(r.body, INDEX_HTML.as_bytes(), "{headers:?}");
        }
    }
    // Over one raw connection: the 304 has no body, so the response after it parses.
    let mut client = RawClient::connect(&pair);
    client.send(
        format!(
            "GET /index.html HTTP/1.1\r\nHost: {SERVER_ADDR}\r\n{inm}\r\n\r\n{}",
            get("/hundred.txt")
        )
        .as_bytes(),
    );
    let not_modified = client.response(false).unwrap();
    assert_eq!(not_modified.status, 304, "{not_modified:?}");
    let next = client.response(false).unwrap();
    assert_eq!(next.body, site.hundred, "{next:?}");
    drop(client);
    assert_settled(&fastpath);
}

// ---------------------------------------------------------------------------------------
// Load generators
// ---------------------------------------------------------------------------------------

/// The number after `label` on a line of a load generator's report.
fn report_number(report: &str, label: &str) -> Option<u64> {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The `http total: requests N … 2xx N 3xx N 4xx N 5xx N` line the server logs on exit.
fn logged_total(log: &str, class: &str) -> Option<u64> {
    let line = log.lines().rev().find(|l| l.contains("http total:"))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == class)?;
    words.get(at + 1)?.parse().ok()
}

/// The error statuses of the `http total: … [404 1] [408 2]` line the server logs on exit.
fn logged_errors(log: &str) -> std::collections::BTreeMap<u16, u64> {
    let line = log
        .lines()
        .rev()
        .find_map(|l| l.split_once("http total:").map(|(_, counts)| counts))
        .unwrap_or_else(|| panic!("no http total line in {log}"));
    line.split('[')
        .skip(1)
        .map(|entry| {
            let mut words = entry.trim_end_matches([']', ' ']).split(' ');
            let code = words.next().and_then(|w| w.parse().ok());
            let count = words.next().and_then(|w| w.parse().ok());
            code.zip(count)
                .unwrap_or_else(|| panic!("bad entry [{entry} in {line}"))
        })
        .collect()
}

#[test]
fn ab_keep_alive_fifty_thousand_requests_all_succeed() {
    require("ab", "apache2-utils");
    let site = SiteDir::create();
    let pair = veth_pair(VethConfig::default());
    let mut fastpath = serve(&pair, &site, false, &[]);
    let mut cmd = pair.client_command("ab");
    cmd.args("-k -n 50000 -c 50 -q -s 60".split(' '))
        .arg(url("/index.html"));
    let out = run_bounded(cmd, Duration::from_secs(600));
    let report = String::from_utf8_lossy(&out.stdout);
    let context = || format!("{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "ab failed: {}", context());
    // Every request answered, none failed, each on a kept-alive connection, each the page.
    for (label, want) in [
        ("Complete requests:", 50_000),
        ("Failed requests:", 0),
        ("Keep-Alive requests:", 50_000),
        ("Document Length:", INDEX_HTML.len() as u64),
    ] {
        let got = report_number(&report, label);
        assert_eq!(got, Some(want), "{label}\n{}", context());
    }
    // ab prints the line only when there are some.
    assert!(!report.contains("Non-2xx responses"), "{}", context());
    // ab closes its 50 connections first: nothing stays in the server's table.
    tcp::assert_idle(&fastpath, Duration::from_secs(30));
    let (_, log) = fastpath.stop().expect("stop fastpath");
    assert_eq!(logged_total(&log, "2xx"), Some(50_000), "{log}");
    assert!(logged_errors(&log).is_empty(), "{log}");
}

#[test]
fn wrk_ten_seconds_of_fifty_connections_without_errors() {
    require("wrk", "wrk");
    let site = SiteDir::create();
    let pair = veth_pair(VethConfig::default());
    let fastpath = serve(&pair, &site, false, &[]);
    let mut cmd = pair.client_command("wrk");
    // A 10 s response timeout rather than wrk's 2 s: the machine is loaded and shared, and
    // a response that is slow but arrives is not what this test looks for.
    cmd.args("-t1 -c50 -d10s --timeout 10s".split(' '))
        .arg(url("/index.html"));
    let out = run_bounded(cmd, Duration::from_secs(90));
    let report = String::from_utf8_lossy(&out.stdout);
    let context = || format!("{report}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "wrk failed: {}", context());
    let requests = report
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no request count: {}", context()));
    assert!(requests > 0, "{}", context());
    assert!(!report.contains("Socket errors"), "{}", context());
    assert!(!report.contains("Non-2xx"), "{}", context());
    eprintln!("wrk: {requests} requests in 10 s");
    // wrk drops its connections mid-response at the end: the server lets them all go.
    tcp::assert_idle(&fastpath, Duration::from_secs(30));
    assert_still_serving(&pair, &fastpath);
}

// ---------------------------------------------------------------------------------------
// Pipelining
// ---------------------------------------------------------------------------------------

/// One pipelined request and what its response must be.
struct Pipelined {
    request: String,
    head_only: bool,
    status: u16,
    body: Vec<u8>,
}

/// Twenty requests for different paths: the numbered files, with a HEAD, a 404 and the
/// 10 MiB file among them; the last asks to close.
fn pipeline(site: &SiteDir) -> Vec<Pipelined> {
    (0..PIPELINE_FILES)
        .map(|i| {
            let path = format!("/pipeline/{i:02}.txt");
            let (method, path, status, body) = match i {
                5 => ("HEAD", path, 200, Vec::new()),
                9 => ("GET", "/missing-09.txt".to_owned(), 404, b"404 Not Found\n".to_vec()),
                12 => ("GET", "/big.bin".to_owned(), 200, site.big.clone()),
                _ => ("GET", path, 200, pipeline_body(i)),
            };
            let close = if i == PIPELINE_FILES - 1 {
                "Connection: close\r\n"
            } else {
                ""
            };
            Pipelined {
                request: format!(
                    "{method} {path} HTTP/1.1\r\nHost: {SERVER_ADDR}\r\nUser-Agent: pipeline/{i}\r\n{close}\r\n"
                ),
                head_only: method == "HEAD",
                status,
                body,
            }
        })
        .collect()
}

/// Sends the pipeline cut at `cuts` (offsets into the concatenated requests; each piece
/// its own write and segment), then reads every response in order and the EOF after the
/// last.
#[track_caller]
fn pipelined_exchange(pair: &VethPair, fastpath: &FastpathProcess, site: &SiteDir, cuts: &[usize]) {
    let requests = pipeline(site);
    let all: Vec<u8> = requests.iter().flat_map(|r| r.request.bytes()).collect();
    let mut client = RawClient::connect(pair);
    let mut at = 0;
    for cut in cuts.iter().copied().chain([all.len()]) {
        if cut > at {
            client.send(&all[at..cut]);
            at = cut;
            // Apart in time as well as in writes, so the server sees the pieces apart.
            thread::sleep(Duration::from_millis(2));
        }
    }
    for (i, want) in requests.iter().enumerate() {
        let r = client
            .response(want.head_only)
            .unwrap_or_else(|e| panic!("response {i}: {e}\n{}", fastpath.log_text()));
        assert_eq!(r.status, want.status, "response {i} out of order? {r:?}");
        let want_len = if want.head_only {
            pipeline_body(i).len()
        } else {
            want.body.len()
        };
        assert_eq!(
            r.content_length(),
            Some(want_len as u64),
            "response {i} has the length of another"
        );
        if r.body != want.body {
            panic!(
                "response {i} has the body of another: {:?}…",
                String::from_utf8_lossy(&r.body[..r.body.len().min(40)])
            );
        }
    }
    client.expect_eof().unwrap();
}

#[test]
fn pipelined_requests_are_answered_in_order_however_they_are_split() {
    let site = SiteDir::create();
    let pair = veth_pair(VethConfig::default());
    let fastpath = serve(&pair, &site, false, &[]);
    let requests = pipeline(&site);
    let ends: Vec<usize> = requests
        .iter()
        .scan(0, |at, r| {
            *at += r.request.len();
            Some(*at)
        })
        .collect();
    let total = *ends.last().unwrap();

    // All twenty in one write.
    pipelined_exchange(&pair, &fastpath, &site, &[]);
    // Cut around every request's end: inside the final CRLF CRLF ("\r\n\r" | "\n"), and
    // one byte into the next request, so heads arrive in pieces and joined to the next.
    let around_ends: Vec<usize> = ends
        .iter()
        .flat_map(|&e| [e - 3, e - 1, e + 1])
        .filter(|&c| c < total)
        .collect();
    pipelined_exchange(&pair, &fastpath, &site, &around_ends);
    // Pieces of 1, 2, 3, 7, 13, 64, 5 … bytes: cuts inside the method, the target, the
    // version, header names and values.
    let mut ragged = Vec::new();
    let mut at = 0;
    for step in [1, 2, 3, 7, 13, 64, 5, 1, 31].iter().cycle() {
        at += step;
        if at >= total {
            break;
        }
        ragged.push(at);
    }
    pipelined_exchange(&pair, &fastpath, &site, &ragged);
    assert_settled(&fastpath);
    assert_still_serving(&pair, &fastpath);
}

// ---------------------------------------------------------------------------------------
// Bad requests
// ---------------------------------------------------------------------------------------

/// One bad request and the answer it must get.
struct BadCase {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
    after: After,
}

/// What follows the answer to a bad request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    /// The error leaves the stream unframed: `Connection: close`, then EOF.
    Close,
    /// The connection stays usable: a GET after it on the same connection is answered.
    KeepAlive,
}

/// The limits the bad-request server runs with.
const LIMITS: &str =
    "--max-headers 16 --max-header-bytes 2048 --max-uri-bytes 512 --max-body-bytes 1000";

#[rustfmt::skip]
fn bad_cases() -> Vec<BadCase> {
    use After::*;
    let bad = |name, request: String, status, after| BadCase {
        name,
        request: request.into_bytes(),
        status,
        after,
    };
    // A request line, the Host field, `fields` (whole lines), the blank line, `body`.
    let req = |line: &str, fields: &str, body: &str| {
        format!("{line}\r\nHost: {SERVER_ADDR}\r\n{fields}\r\n{body}")
    };
    let get_index = "GET /index.html HTTP/1.1";
    let post_index = "POST /index.html HTTP/1.1";
    let many_fields: String = (0..20).map(|i| format!("X-Field-{i}: {i}\r\n")).collect();
    let long_field = format!("X-Long: {}\r\n", "v".repeat(3000));
    let long_path = format!("/{}", "a".repeat(600));
    vec![
        bad("a field line without a colon", req(get_index, "No colon here\r\n", ""), 400, Close),
        bad("a binary request line", "\x00\x01\x02 garbage\r\n\r\n".into(), 400, Close),
        bad("HTTP/1.1 without Host", "GET /index.html HTTP/1.1\r\n\r\n".into(), 400, Close),
        bad("two Host fields", req(get_index, &format!("Host: {SERVER_ADDR}\r\n"), ""), 400, Close),
        bad("conflicting Content-Length", req("GET / HTTP/1.1", "Content-Length: 1\r\nContent-Length: 2\r\n", "x"), 400, Close),
        bad("a bad percent escape", req("GET /%zz HTTP/1.1", "", ""), 400, KeepAlive),
        bad("no such file", req("GET /no-such-file.html HTTP/1.1", "", ""), 404, KeepAlive),
        bad("POST with a body", req(post_index, "Content-Length: 5\r\n", "hello"), 405, KeepAlive),
        bad("PUT with a body", req("PUT /new.txt HTTP/1.1", "Content-Length: 3\r\n", "abc"), 405, KeepAlive),
        bad("DELETE", req("DELETE /index.html HTTP/1.1", "", ""), 405, KeepAlive),
        bad("an unknown method", req("BREW /pot HTTP/1.1", "", ""), 501, KeepAlive),
        bad("Content-Length over the limit", req(post_index, "Content-Length: 100000\r\n", &"b".repeat(2000)), 413, Close),
        bad("a GET with content over the limit", req(get_index, "Content-Length: 1001\r\n", ""), 413, Close),
        bad("a URI too long", req(&format!("GET {long_path} HTTP/1.1"), "", ""), 414, Close),
        bad("a URI too long, no end of line yet", format!("GET {long_path}"), 414, Close),
        bad("too many header fields", req(get_index, &many_fields, ""), 431, Close),
        bad("header bytes over the limit", req(get_index, &long_field, ""), 431, Close),
        bad("header bytes over the limit, no end yet", format!("{get_index}\r\n{long_field}"), 431, Close),
        bad("an HTTP/2.0 request line", req("GET /index.html HTTP/2.0", "", ""), 505, Close),
        bad("an HTTP/3 request line", req("GET /index.html HTTP/3", "", ""), 505, Close),
        bad("a chunked body", req(post_index, "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"), 411, Close),
        bad("a chunked GET", req(get_index, "Transfer-Encoding: chunked\r\n", "0\r\n\r\n"), 411, Close),
        bad("another transfer coding", req(post_index, "Transfer-Encoding: gzip\r\n", ""), 501, Close),
        bad("chunked and Content-Length (smuggling)", req(post_index, "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), 400, Close),
    ]
}

/// Sends one bad request on a new connection and checks the answer and what follows.
fn check_bad(pair: &VethPair, site: &SiteDir, case: &BadCase) -> Result<(), String> {
    let mut client = RawClient::connect(pair);
    client.send(&case.request);
    let r = client.response(false)?;
    if r.status != case.status {
        return Err(format!(
            "status {} instead of {}: {r:?}",
            r.status, case.status
        ));
    }
    if !String::from_utf8_lossy(&r.body).starts_with(&format!("{} ", case.status)) {
        return Err(format!("the body does not name the status: {r:?}"));
    }
    if r.must("server") != "fastpath" || r.header("date").is_none() {
        return Err(format!("no Server or Date: {r:?}"));
    }
    if case.status == 405 && r.header("allow") != Some("GET, HEAD") {
        return Err(format!("405 without Allow: GET, HEAD: {r:?}"));
    }
    if case.after == After::Close {
        if r.header("connection") != Some("close") {
            return Err(format!("no Connection: close: {r:?}"));
        }
        client.expect_eof()
    } else {
        // The stream stays framed (a body was skipped, not parsed as a request).
        client.send(get("/hundred.txt").as_bytes());
        let next = client.response(false)?;
        if next.status != 200 || next.body != site.hundred {
            return Err(format!("the connection is not usable after it: {next:?}"));
        }
        Ok(())
    }
}

#[test]
fn bad_requests_get_their_status_and_the_server_keeps_serving() {
    let site = SiteDir::create();
    let pair = veth_pair(VethConfig::default());
    let limits: Vec<&str> = LIMITS.split(' ').collect();
    let mut fastpath = serve(&pair, &site, true, &limits);
    let cases = bad_cases();
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(e) = check_bad(&pair, &site, case) {
            failures.push(format!("{} (want {}): {e}", case.name, case.status));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        fastpath.log_text()
    );
    assert_still_serving(&pair, &fastpath);
    assert_settled(&fastpath);
    // The server counted each error as what it sent.
    let (_, log) = fastpath.stop().expect("stop fastpath");
    let mut want = std::collections::BTreeMap::new();
    for case in &cases {
        *want.entry(case.status).or_insert(0) += 1;
    }
    assert_eq!(logged_errors(&log), want, "{log}");
}

/// Traversal, encoded or not, and a symlink that leads out of the root: never the outside
/// file, whatever the status (403, 404 or 400).
#[test]
fn path_traversal_never_reaches_a_file_outside_the_root() {
    let site = SiteDir::create();
    let pair = veth_pair(VethConfig::default());
    let fastpath = serve(&pair, &site, true, &[]);
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let forbidden = |body: &[u8]| {
        let body = String::from_utf8_lossy(body);
        body.contains(site.secret.trim())
            || body.contains("root:x:")
            || (!passwd.is_empty() && body.contains(passwd.lines().next().unwrap_or("-")))
    };
    for target in [
        "/../etc/passwd",
        "/../../../../../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/%2E%2E/%2E%2E/etc/passwd",
        "/..%2fetc/passwd",
        "/..%2F..%2Fetc%2Fpasswd",
        "/pipeline/../../etc/passwd",
        "/./../outside/secret.txt",
        "/../outside/secret.txt",
        "/escape.txt",
        "//etc/passwd",
        "/etc/passwd",
        "http://example.com/../etc/passwd",
        "/..\\..\\etc\\passwd",
    ] {
        let mut client = RawClient::connect(&pair);
        client.send(get(target).as_bytes());
        let r = client
            .response(false)
            .unwrap_or_else(|e| panic!("{target}: {e}\n{}", fastpath.log_text()));
        assert!(
            [400, 403, 404].contains(&r.status),
            "{target}: status {}: {r:?}",
            r.status
        );
        assert!(
            !forbidden(&r.body),
            "{target} revealed a file outside the root: {r:?}"
        );
    }
    // curl, told not to squash the dot segments itself.
    for path in ["/../outside/secret.txt", "/../../etc/passwd", "/escape.txt"] {
        let u = url(path);
        let r = curl_response(&pair, false, &["-i", "--path-as-is", &u]);
        assert!([400, 403, 404].contains(&r.status), "{path}: {r:?}");
        assert!(!forbidden(&r.body), "{path}: {r:?}");
    }
    assert_still_serving(&pair, &fastpath);
    assert_settled(&fastpath);
}

// ---------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------

/// Reads what the server sends until EOF (within `limit`): a 408 with `Connection: close`
/// and nothing after it, or nothing at all.
fn await_408_or_eof(stream: &mut TcpStream, limit: Duration) -> Result<bool, String> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut got = Vec::new();
    stream.read_to_end(&mut got).map_err(|e| {
        format!(
            "no EOF within {limit:?} ({e}); got {:?}",
            String::from_utf8_lossy(&got)
        )
    })?;
    if got.is_empty() {
        return Ok(false);
    }
    match parse_response(&got, false)? {
        Some((r, used)) if r.status == 408 && used == got.len() => {
            if r.header("connection") != Some("close") {
                return Err(format!("408 without Connection: close: {r:?}"));
            }
            Ok(true)
        }
        other => Err(format!(
            "not a lone 408: {other:?} in {:?}",
            String::from_utf8_lossy(&got)
        )),
    }
}

/// An idle client gets 408 and EOF once `--idle-timeout` passed; a slowloris that trickles
/// a head that never ends gets them once `--request-timeout` passed since its first byte,
/// however steadily it trickles. A request trickled within the limit is served.
#[test]
fn idle_and_slowloris_clients_get_408_and_are_closed() {
    const IDLE: Duration = Duration::from_secs(2);
    const REQUEST: Duration = Duration::from_secs(3);
    // Timers never fire early; how late they fire on a loaded machine is bounded loosely.
    const LATE: Duration = Duration::from_secs(20);
    let site = SiteDir::create();
    let pair = veth_pair(VethConfig::default());
    let mut fastpath = serve(
        &pair,
        &site,
        true,
        &["--idle-timeout", "2", "--request-timeout", "3"],
    );

    // Idle: connected, nothing sent.
    let mut idle = tcp::connect(&pair, PORT, Duration::from_secs(30));
    let connected = Instant::now();
    let got_408 = await_408_or_eof(&mut idle, IDLE + LATE).unwrap_or_else(|e| panic!("idle: {e}"));
    let waited = connected.elapsed();
    drop(idle);
    assert!(got_408, "the idle connection was closed without a 408");
    assert!(
        waited >= IDLE - Duration::from_millis(500),
        "closed after {waited:?}, before the idle timeout"
    );

    // Slowloris: a header line every 250 ms, never the blank line.
    let stream = tcp::connect(&pair, PORT, Duration::from_secs(30));
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let first_byte = Instant::now();
    // Up to 40 lines (10 s): under the default 64-field limit and far under the byte
    // limit, so only time can end it.
    let trickle = thread::spawn(move || {
        let _ = writer.write_all(b"GET /index.html HTTP/1.1\r\n");
        for line in 0..40 {
            thread::sleep(Duration::from_millis(250));
            if writer
                .write_all(format!("X-Slow-{line}: .\r\n").as_bytes())
                .is_err()
            {
                break;
            }
        }
    });
    let mut reader = stream;
    let got_408 =
        await_408_or_eof(&mut reader, REQUEST + LATE).unwrap_or_else(|e| panic!("slowloris: {e}"));
    let waited = first_byte.elapsed();
    // Both ways, so the trickling clone's next write fails and its thread ends.
    let _ = reader.shutdown(std::net::Shutdown::Both);
    let _ = trickle.join();
    assert!(got_408, "the slow request was closed without a 408");
    assert!(
        waited >= REQUEST - Duration::from_millis(500),
        "closed after {waited:?}, before the request timeout"
    );

    // A request trickled over about a second (within the limit) is answered.
    let mut client = RawClient::connect(&pair);
    let request = get("/hundred.txt");
    for piece in request.as_bytes().chunks(request.len() / 4 + 1) {
        client.send(piece);
        thread::sleep(Duration::from_millis(250));
    }
    let r = client.response(false).unwrap();
    assert_eq!(r.body, site.hundred, "{r:?}");
    drop(client);

    assert_still_serving(&pair, &fastpath);
    assert_settled(&fastpath);
    let (_, log) = fastpath.stop().expect("stop fastpath");
    assert_eq!(logged_errors(&log), [(408, 2)].into(), "{log}");
}

/// Raises this process's open-file limit to at least `want` (within the hard limit).
fn raise_nofile(want: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // Safety: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < want {
            limit.rlim_cur = want.min(limit.rlim_max);
            assert_eq!(
                libc::setrlimit(libc::RLIMIT_NOFILE, &limit),
                0,
                "setrlimit: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    assert!(
        limit.rlim_cur >= want,
        "RLIMIT_NOFILE is {} (hard {}), {want} needed",
        limit.rlim_cur,
        limit.rlim_max
    );
}

/// The clients' connections to the server, as the kernel's `ss` lists them, but for
/// TIME-WAIT: the active closer's due.
fn kernel_connections(pair: &VethPair) -> String {
    let out = pair
        .client_command("ss")
        .args(["-tan", &format!("( dport = :{PORT} )")])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("State") && !l.starts_with("TIME-WAIT"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A thousand connections that never send a request are all closed by the server (408 and
/// EOF each) within `--idle-timeout` plus a bound. Half the clients then close their ends;
/// the other half never do, as a hung client or one hoarding connections would not. Either
/// way the server lets go: the table, the timer wheel and the UMEM ledger are back to idle
/// after 2 × MSL (the TIME-WAIT of the first half, FIN-WAIT-2 of the second).
#[test]
fn a_thousand_idle_connections_are_closed_by_the_server_and_the_instance_returns_to_idle() {
    const CONNECTIONS: usize = 1000;
    const IDLE: Duration = Duration::from_secs(2);
    /// From the last connect to the last EOF.
    const CLOSE_BOUND: Duration = Duration::from_secs(40);
    raise_nofile(CONNECTIONS as u64 + 1024);
    let site = SiteDir::create();
    let pair = veth_pair(VethConfig::default());
    let fastpath = serve(&pair, &site, true, &["--idle-timeout", "2"]);

    let mut streams: Vec<TcpStream> = (0..CONNECTIONS)
        .map(|_| tcp::connect(&pair, PORT, Duration::from_secs(30)))
        .collect();
    let opened = Instant::now();
    let deadline = opened + IDLE + CLOSE_BOUND;
    let (mut with_408, mut bare_eof) = (0, 0);
    for (i, stream) in streams.iter_mut().enumerate() {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        match await_408_or_eof(stream, left) {
            Ok(true) => with_408 += 1,
            Ok(false) => bare_eof += 1,
            Err(e) => panic!(
                "connection {i} of {CONNECTIONS}, {:?} after the last connect: {e}\n{}",
                opened.elapsed(),
                fastpath.log_text()
            ),
        }
    }
    eprintln!(
        "{CONNECTIONS} idle connections closed within {:?} of the last connect: {with_408} with a 408, {bare_eof} with EOF alone",
        opened.elapsed()
    );
    assert_eq!(with_408 + bare_eof, CONNECTIONS);

    let holders = streams.split_off(CONNECTIONS / 2);
    drop(streams);
    let closed = Instant::now();
    // TIME-WAIT and FIN-WAIT-2 cannot end sooner: wait them out rather than poll a
    // thousand rows meanwhile.
    thread::sleep(TIME_WAIT.saturating_sub(closed.elapsed()));
    tcp::assert_idle(&fastpath, Duration::from_secs(40));
    assert_eq!(
        sum_counter(&fastpath, "tcp_conns_opened"),
        CONNECTIONS as u64
    );
    assert_still_serving(&pair, &fastpath);

    // The holders let go at last: their FINs find no connection and are reset, so the
    // kernel keeps nothing either.
    drop(holders);
    let mut left = String::new();
    let clean = eventually(Duration::from_secs(30), || {
        left = kernel_connections(&pair);
        left.trim().is_empty()
    });
    assert!(clean, "the kernel still holds connections:\n{left}");
}
