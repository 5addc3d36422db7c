//! The server driven by raw request bytes and virtual time, with no network: each test
//! feeds `on_data`, drains `poll_output` and reads the responses back with `httparse`.

mod files;
mod session;
mod steady_state;

use std::{sync::Arc, time::Duration};

use super::*;
use crate::time::Instant;

/// Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example date) as the worker's time zero.
const WALL_ORIGIN_NANOS: u64 = 784_111_777 * 1_000_000_000;
/// Files' modification time: a day before the origin.
const MTIME: u64 = 784_111_777 - 86_400;

const T0: Instant = Instant::from_secs(0);

fn site_with(config: HttpConfig, files: &[(&str, &[u8])]) -> Arc<Site> {
    let mut static_files = StaticFiles::empty();
    for (path, bytes) in files {
        static_files.insert(path, Arc::from(*bytes), MTIME);
    }
    Arc::new(Site::new(static_files, config).unwrap())
}

fn site() -> Arc<Site> {
    site_with(
        HttpConfig::default(),
        &[
            ("index.html", b"<h1>home</h1>\n"),
            ("a.txt", b"alpha\n"),
            ("b.txt", b"bravo\n"),
            ("docs/index.html", b"<p>docs</p>"),
            ("style.css", b"body{}"),
        ],
    )
}

fn connect(site: &Arc<Site>) -> HttpConnection {
    HttpConnection::new(site.clone(), T0, WALL_ORIGIN_NANOS)
}

/// Everything queued, through a send buffer that takes all.
fn drain(conn: &mut HttpConnection, now: Instant) -> Vec<u8> {
    let mut out = Vec::new();
    conn.poll_output(now, &mut |b: &[u8]| {
        out.extend_from_slice(b);
        b.len()
    });
    out
}

/// Feeds `input` whole (it must hold only complete requests) and drains the answers.
#[track_caller]
fn exchange(conn: &mut HttpConnection, now: Instant, input: &[u8]) -> Vec<u8> {
    assert_eq!(conn.on_data(now, input), input.len(), "all input consumed");
    drain(conn, now)
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "{name} sent twice");
        first
    }
}

/// Splits `bytes` into responses; `head_only[i]` says the i-th answers a HEAD.
#[track_caller]
fn responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<Response> {
    let mut all = Vec::new();
    while !bytes.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut r = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(n) = r.parse(bytes).expect("a valid response") else {
            panic!(
                "partial response head: {:?}",
                String::from_utf8_lossy(bytes)
            );
        };
        assert_eq!(r.version, Some(1), "responses are HTTP/1.1");
        let status = r.code.unwrap();
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8(h.value.to_vec()).unwrap(),
                )
            })
            .collect();
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        let len = match resp.header("content-length") {
            _ if status == 304 || head_only.get(all.len()).copied().unwrap_or(false) => 0,
            Some(v) => v.parse::<usize>().unwrap(),
            None => 0,
        };
        resp.body = bytes[n..n + len].to_vec();
        bytes = &bytes[n + len..];
        all.push(resp);
    }
    all
}

#[track_caller]
fn one(bytes: &[u8]) -> Response {
    let mut all = responses(bytes, &[]);
    assert_eq!(all.len(), 1, "one response");
    all.remove(0)
}

/// A fresh connection's answer to one raw request, and whether it then wants to close.
#[track_caller]
fn ask(site: &Arc<Site>, raw: &[u8]) -> (Response, bool) {
    let mut conn = connect(site);
    let out = exchange(&mut conn, T0, raw);
    let resp = one(&out);
    (resp, conn.wants_close())
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes()
}

#[test]
fn get_a_file_with_every_header_right() {
    let site = site();
    let (r, close) = ask(&site, &get("/a.txt"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"alpha\n");
    assert_eq!(r.header("Content-Length"), Some("6"));
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("Date"), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
    assert_eq!(r.header("Server"), Some("fastpath"));
    assert_eq!(
        r.header("Last-Modified"),
        Some("Sat, 05 Nov 1994 08:49:37 GMT")
    );
    let etag = r.header("ETag").unwrap();
    assert!(etag.starts_with("\"6-") && etag.ends_with('"'), "{etag}");
    // HTTP/1.1 persists by default: no Connection header, no close.
    assert_eq!(r.header("Connection"), None);
    assert!(!close);

    let (r, _) = ask(&site, &get("/"));
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"<h1>home</h1>\n"[..])
    );
    assert_eq!(r.header("Content-Type"), Some("text/html; charset=utf-8"));
    let (r, _) = ask(&site, &get("/docs/"));
    assert_eq!(r.body, b"<p>docs</p>");
    let (r, _) = ask(&site, &get("/style.css?v=3"));
    assert_eq!(r.header("Content-Type"), Some("text/css; charset=utf-8"));
    let (r, _) = ask(&site, b"GET http://x/a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.body, b"alpha\n");
}

#[test]
fn bench_route_answers_a_fixed_body() {
    let site = site();
    let (r, _) = ask(&site, &get(BENCH_PATH));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, BENCH_BODY);
    assert_eq!(
        r.header("Content-Length"),
        Some(BENCH_BODY.len().to_string().as_str())
    );
}

#[test]
fn date_follows_the_clock() {
    let site = site();
    let mut conn = connect(&site);
    let later = Instant::from_millis(61_500);
    let r = one(&exchange(&mut conn, later, &get("/a.txt")));
    assert_eq!(r.header("Date"), Some("Sun, 06 Nov 1994 08:50:38 GMT"));
}

#[test]
fn head_has_no_body_but_the_get_length() {
    let site = site();
    let mut conn = connect(&site);
    let out = exchange(
        &mut conn,
        T0,
        b"HEAD /a.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /b.txt HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    let rs = responses(&out, &[true, false]);
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].status, 200);
    assert_eq!(rs[0].header("Content-Length"), Some("6"));
    assert!(rs[0].body.is_empty());
    assert!(rs[0].header("ETag").is_some());
    // The next response starts right after the head: no stray body bytes.
    assert_eq!(rs[1].body, b"bravo\n");
    let mut conn = connect(&site);
    let out = exchange(&mut conn, T0, b"HEAD /missing HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = responses(&out, &[true]).remove(0);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("Content-Length"), Some("14"));
    assert!(out.ends_with(b"\r\n\r\n"), "no body after a HEAD's head");
}

#[test]
fn keep_alive_and_pipelining_keep_request_order() {
    let site = site();
    let mut conn = connect(&site);
    // Three requests in one stream; the third split across two `on_data` calls.
    let mut stream = get("/a.txt");
    stream.extend(get(BENCH_PATH));
    let third = get("/b.txt");
    let whole = stream.len() + third.len();
    stream.extend(&third);
    let cut = whole - 10;
    let consumed = conn.on_data(T0, &stream[..cut]);
    assert_eq!(consumed, whole - third.len(), "the partial third is left");
    // The glue keeps the unconsumed bytes and appends what arrives next.
    let rest = &stream[consumed..];
    assert_eq!(conn.on_data(Instant::from_millis(1), rest), rest.len());
    let rs = responses(&drain(&mut conn, Instant::from_millis(1)), &[]);
    let bodies: Vec<&[u8]> = rs.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(bodies, [&b"alpha\n"[..], BENCH_BODY, b"bravo\n"]);
    assert!(!conn.wants_close());
    // Still open: another request on the same connection.
    let r = one(&exchange(
        &mut conn,
        Instant::from_millis(2),
        &get("/a.txt"),
    ));
    assert_eq!(r.body, b"alpha\n");
    assert_eq!(conn.stats().requests, 4);
}

#[test]
fn a_large_response_finishes_before_the_next_starts() {
    let big: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let site = site_with(
        HttpConfig::default(),
        &[("big.bin", &big), ("a.txt", b"alpha\n")],
    );
    let mut conn = connect(&site);
    let mut input = get("/big.bin");
    input.extend(get("/a.txt"));
    input.extend(get("/big.bin"));
    assert_eq!(conn.on_data(T0, &input), input.len());
    let mut out = Vec::new();
    while conn.has_output() {
        conn.poll_output(T0, &mut |b: &[u8]| {
            let n = b.len().min(777);
            out.extend_from_slice(&b[..n]);
            n
        });
    }
    let rs = responses(&out, &[]);
    assert_eq!(rs.len(), 3);
    assert_eq!(rs[0].body, big);
    assert_eq!(rs[1].body, b"alpha\n");
    assert_eq!(rs[2].body, big);
    assert_eq!(
        rs[0].header("Content-Type"),
        Some("application/octet-stream")
    );
}

#[test]
fn ten_mib_streams_through_a_small_send_buffer_byte_identical() {
    let big: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let site = site_with(HttpConfig::default(), &[("big.bin", &big)]);
    let mut conn = connect(&site);
    let input = get("/big.bin");
    assert_eq!(conn.on_data(T0, &input), input.len());
    let mut out = Vec::with_capacity(big.len() + 512);
    let mut polls = 0;
    while conn.has_output() {
        // A send buffer with room for 1000 bytes per round, taken by one or more calls.
        let mut room = 1000;
        conn.poll_output(T0, &mut |b: &[u8]| {
            let n = b.len().min(room);
            out.extend_from_slice(&b[..n]);
            room -= n;
            n
        });
        polls += 1;
    }
    assert!(polls > 10 * 1024, "backpressure: {polls} rounds");
    let r = one(&out);
    assert_eq!(r.header("Content-Length"), Some("10485760"));
    assert!(r.body == big, "body differs");
    assert_eq!(conn.stats().bytes_out, out.len() as u64);
    assert!(!conn.wants_close());
}

#[test]
fn conditional_get_answers_304() {
    let site = site();
    let (r, _) = ask(&site, &get("/a.txt"));
    let etag = r.header("ETag").unwrap().to_owned();
    let last_modified = r.header("Last-Modified").unwrap().to_owned();
    let cond =
        |headers: &str| format!("GET /a.txt HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes();

    for h in [
        format!("If-None-Match: {etag}\r\n"),
        format!("If-None-Match: W/{etag}\r\n"),
        format!("If-None-Match: \"other\", {etag}\r\n"),
        "If-None-Match: *\r\n".to_owned(),
        format!("If-Modified-Since: {last_modified}\r\n"),
        "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n".to_owned(),
    ] {
        let (r, close) = ask(&site, &cond(&h));
        assert_eq!(r.status, 304, "{h}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("ETag"), Some(etag.as_str()));
        assert_eq!(r.header("Last-Modified"), Some(last_modified.as_str()));
        assert!(r.header("Date").is_some());
        assert!(!close);
    }
    for h in [
        "If-None-Match: \"other\"\r\n".to_owned(),
        "If-Modified-Since: Fri, 04 Nov 1994 08:49:37 GMT\r\n".to_owned(),
        "If-Modified-Since: not a date\r\n".to_owned(),
        // If-None-Match decides when present, even if the date would match.
        format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {last_modified}\r\n"),
    ] {
        let (r, _) = ask(&site, &cond(&h));
        assert_eq!(r.status, 200, "{h}");
        assert_eq!(r.body, b"alpha\n");
    }
}

#[test]
fn http10_closes_unless_kept_alive() {
    let site = site();
    let (r, close) = ask(&site, b"GET /a.txt HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(close);

    let mut conn = connect(&site);
    let out = exchange(
        &mut conn,
        T0,
        b"GET /a.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    );
    assert_eq!(one(&out).header("Connection"), Some("keep-alive"));
    assert!(!conn.wants_close());
}

#[test]
fn connection_close_ends_after_its_response() {
    let site = site();
    let mut conn = connect(&site);
    let mut input = b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec();
    input.extend(get("/b.txt"));
    // Everything is consumed; the request after the close is dropped unanswered.
    assert_eq!(conn.on_data(T0, &input), input.len());
    assert!(!conn.wants_close(), "not before the response is written");
    let r = one(&drain(&mut conn, T0));
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(conn.wants_close());
    assert_eq!(conn.deadline(), None);
}

#[test]
fn malformed_requests_get_400_and_close() {
    let site = site();
    for raw in [
        &b"garbage\r\n\r\n"[..],
        b"GET /a.txt HTTP/1.1\r\n\r\n", // no Host
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", // two Hosts
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\n",
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n",
        b"GET /a.txt FOO/1.1\r\nHost: x\r\n\r\n",
        b"GET /a.txt HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", // obs-fold
    ] {
        let (r, close) = ask(&site, raw);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(raw));
        assert_eq!(r.header("Connection"), Some("close"));
        assert_eq!(r.body, b"400 Bad Request\n");
        assert!(close);
    }
    // A bad target keeps the stream framed: 400, and the connection goes on.
    let (r, close) = ask(&site, &get("/%zz"));
    assert_eq!((r.status, close), (400, false));
}

#[test]
fn not_found_forbidden_and_methods() {
    let site = site();
    let (r, close) = ask(&site, &get("/nope.txt"));
    assert_eq!((r.status, close), (404, false));
    assert_eq!(r.body, b"404 Not Found\n");
    let (r, close) = ask(&site, &get("/../a.txt"));
    assert_eq!((r.status, close), (403, false));

    let (r, close) = ask(&site, b"DELETE /a.txt HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, close), (405, false));
    assert_eq!(r.header("Allow"), Some("GET, HEAD"));

    let (r, close) = ask(&site, b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, close), (501, false));

    let (r, close) = ask(&site, b"GET /a.txt HTTP/2.0\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, close), (505, true));
}

#[test]
fn request_content_is_skipped_and_the_stream_stays_framed() {
    let site = site();
    let mut conn = connect(&site);
    let post = b"POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello";
    assert_eq!(conn.on_data(T0, post), post.len());
    let mut rest = b" world".to_vec();
    rest.extend(get("/b.txt"));
    assert_eq!(conn.on_data(T0, &rest), rest.len());
    let rs = responses(&drain(&mut conn, T0), &[]);
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0].status, 405);
    assert_eq!(rs[1].body, b"bravo\n");
    assert!(!conn.wants_close());
}

#[test]
fn chunked_request_content_is_411_and_other_codings_501() {
    // Chosen: no route takes a body, so chunked content is refused with 411 (send a
    // Content-Length) rather than decoded; unknown codings are 501. Both close, since
    // the content that follows cannot be framed.
    let site = site();
    let (r, close) = ask(
        &site,
        b"POST /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!((r.status, close), (411, true));
    let (r, close) = ask(
        &site,
        b"POST /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
    );
    assert_eq!((r.status, close), (501, true));
}

#[test]
fn limits_give_413_414_431() {
    let config = HttpConfig {
        max_headers: 8,
        max_header_bytes: 1024,
        max_uri_bytes: 100,
        max_body_bytes: 1000,
        ..HttpConfig::default()
    };
    let site = site_with(config, &[("a.txt", b"alpha\n")]);

    let (r, close) = ask(
        &site,
        b"POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n",
    );
    assert_eq!((r.status, close), (413, true));

    let long = format!("/{}", "a".repeat(150));
    let (r, close) = ask(&site, &get(&long));
    assert_eq!((r.status, close), (414, true));
    // A request line that is still arriving is refused as soon as it is too long.
    let mut conn = connect(&site);
    let partial = format!("GET /{}", "a".repeat(200));
    assert_eq!(conn.on_data(T0, partial.as_bytes()), partial.len());
    assert_eq!(one(&drain(&mut conn, T0)).status, 414);

    let many: String = (0..9).map(|i| format!("X-{i}: v\r\n")).collect();
    let raw = format!("GET /a.txt HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let (r, close) = ask(&site, raw.as_bytes());
    assert_eq!((r.status, close), (431, true));

    let big = format!(
        "GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "v".repeat(1100)
    );
    let (r, close) = ask(&site, big.as_bytes());
    assert_eq!((r.status, close), (431, true));
    // Headers that never end: refused once they pass the limit, not buffered forever.
    let mut conn = connect(&site);
    let endless = format!(
        "GET /a.txt HTTP/1.1\r\nHost: x\r\nX-Big: {}",
        "v".repeat(1100)
    );
    assert_eq!(conn.on_data(T0, endless.as_bytes()), endless.len());
    assert_eq!(one(&drain(&mut conn, T0)).status, 431);
    assert!(conn.wants_close());

    // Just under the limits is fine.
    let fine = format!("GET /a.txt?{} HTTP/1.1\r\nHost: x\r\n\r\n", "q".repeat(80));
    assert_eq!(ask(&site, fine.as_bytes()).0.status, 200);
}

#[test]
fn idle_deadline_yields_408_then_close() {
    let site = site();
    let mut conn = connect(&site);
    let idle = site.config.idle_timeout;
    assert_eq!(conn.deadline(), Some(T0 + idle));
    // One request moves the deadline.
    let t1 = Instant::from_secs(5);
    exchange(&mut conn, t1, &get("/a.txt"));
    assert_eq!(conn.deadline(), Some(t1 + idle));
    conn.on_timeout(t1 + idle - Duration::from_nanos(1));
    assert!(!conn.has_output(), "too early: nothing happens");
    conn.on_timeout(t1 + idle);
    let r = one(&drain(&mut conn, t1 + idle));
    assert_eq!(r.status, 408);
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(conn.wants_close());
    assert_eq!(conn.deadline(), None);
    assert_eq!(conn.stats().count(Status::RequestTimeout), 1);
}

#[test]
fn slow_request_deadline_yields_408() {
    let site = site();
    let mut conn = connect(&site);
    let start = Instant::from_secs(1);
    // A head trickling in: the request timer runs from its first byte.
    assert_eq!(conn.on_data(start, b"GET /a.txt HTT"), 0);
    let expires = start + site.config.request_timeout;
    assert_eq!(conn.deadline(), Some(expires));
    assert_eq!(
        conn.on_data(Instant::from_secs(3), b"GET /a.txt HTTP/1.1\r\n"),
        0
    );
    assert_eq!(
        conn.deadline(),
        Some(expires),
        "more bytes do not extend it"
    );
    conn.on_timeout(expires);
    assert_eq!(one(&drain(&mut conn, expires)).status, 408);
    assert!(conn.wants_close());

    // Content that trickles counts too.
    let mut conn = connect(&site);
    let post = b"POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc";
    assert_eq!(conn.on_data(start, post), post.len());
    assert_eq!(one(&drain(&mut conn, start)).status, 405);
    assert_eq!(conn.deadline(), Some(expires));
    conn.on_timeout(expires);
    assert_eq!(one(&drain(&mut conn, expires)).status, 408);
}

#[test]
fn a_peer_that_stops_reading_is_closed() {
    let big = vec![7u8; 100_000];
    let site = site_with(HttpConfig::default(), &[("big.bin", &big)]);
    let mut conn = connect(&site);
    conn.on_data(T0, &get("/big.bin"));
    let mut room = 5000;
    conn.poll_output(T0, &mut |b: &[u8]| {
        let n = b.len().min(room);
        room -= n;
        n
    });
    assert!(conn.has_output());
    let expires = T0 + site.config.send_timeout;
    assert_eq!(conn.deadline(), Some(expires));
    conn.on_timeout(expires);
    assert!(conn.wants_close());
    assert!(!conn.has_output());
    assert_eq!(conn.poll_output(expires, &mut |b: &[u8]| b.len()), 0);
}

#[test]
fn eof_closes_after_the_answers() {
    let site = site();
    let mut conn = connect(&site);
    conn.on_data(T0, &get("/a.txt"));
    conn.on_eof();
    assert!(!conn.wants_close());
    drain(&mut conn, T0);
    assert!(conn.wants_close());
}

#[test]
fn pipeline_depth_is_bounded() {
    let config = HttpConfig {
        max_pipeline: 4,
        ..HttpConfig::default()
    };
    let site = site_with(config, &[("a.txt", b"alpha\n")]);
    let mut conn = connect(&site);
    let one_request = get("/a.txt");
    let input = one_request.repeat(10);
    let consumed = conn.on_data(T0, &input);
    assert_eq!(
        consumed,
        4 * one_request.len(),
        "stops at the pipeline depth"
    );
    let mut answered = responses(&drain(&mut conn, T0), &[]).len();
    // The glue hands the rest again once output made room.
    let mut at = consumed;
    while at < input.len() {
        at += conn.on_data(T0, &input[at..]);
        answered += responses(&drain(&mut conn, T0), &[]).len();
    }
    assert_eq!(answered, 10);
}

#[test]
fn stats_sum_and_print() {
    let site = site();
    let mut conn = connect(&site);
    let mut input = get("/a.txt");
    input.extend(get("/nope"));
    input.extend(get(BENCH_PATH));
    let out = exchange(&mut conn, T0, &input);
    let stats = conn.take_stats();
    assert_eq!(stats.requests, 3);
    assert_eq!(stats.class(2), 2);
    assert_eq!(stats.class(4), 1);
    assert_eq!(stats.count(Status::NotFound), 1);
    assert_eq!(stats.bytes_in, input.len() as u64);
    assert_eq!(stats.bytes_out, out.len() as u64);
    assert_eq!(conn.stats(), &HttpStats::default(), "taken");
    let mut total = HttpStats::default();
    total.add(&stats);
    total.add(&stats);
    assert_eq!(total.requests, 6);
    let line = total.to_string();
    assert!(line.starts_with("requests 6 in "), "{line}");
    assert!(line.ends_with("2xx 4 3xx 0 4xx 2 5xx 0 [404 2]"), "{line}");
}

#[test]
fn config_is_checked() {
    let bad = HttpConfig {
        max_headers: MAX_HEADERS_LIMIT + 1,
        ..HttpConfig::default()
    };
    assert!(matches!(
        Site::new(StaticFiles::empty(), bad),
        Err(SiteError::Config(_))
    ));
}
