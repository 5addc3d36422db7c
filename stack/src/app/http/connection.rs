//! One HTTP/1.1 connection as a state machine with no I/O (quinn-proto's shape): received
//! bytes go in through `on_data`, responses come out through `poll_output` into whatever
//! the TCP glue offers, `deadline`/`on_timeout` carry the clock. Requests may be pipelined
//! (RFC 9112 §9.3.2); their responses leave in request order, each fully written before the
//! next one starts.

use std::{collections::VecDeque, mem::MaybeUninit, sync::Arc, time::SystemTime};

use super::{
    BENCH_BODY, BENCH_PATH, HttpStats, MAX_HEADERS_LIMIT, Site, StaticFile, Status,
    target::{TargetError, file_key},
};
use crate::time::Instant;

/// Bodies up to this size are copied behind their head, so a small response leaves in one
/// piece; larger ones are written from the shared file bytes.
const INLINE_BODY_MAX: usize = 1024;

/// Room on a request line beyond the target: method, spaces, `HTTP/1.1`, CRLF.
const REQUEST_LINE_SLACK: usize = 32;

/// Sent heads before the head buffer is compacted while responses are still queued.
const HEADS_COMPACT_AT: usize = 64 * 1024;

/// Methods this server knows but does not allow on any of its resources: 405 with `Allow`
/// (RFC 9110 §15.5.6). Other methods are 501 (§9.1: "unrecognized or not implemented").
const KNOWN_METHODS: &[&str] = &[
    "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT",
];

/// What the reading side is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Read {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Dropping the rest of a request's content: no route takes a body.
    Body { remaining: u64 },
    /// A response asked to close: nothing after it is read or answered.
    Done,
}

/// The one timer of a connection (smoltcp's way), derived from its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// No request under way and nothing to send: 408 and close when it expires.
    Idle { expires_at: Instant },
    /// A request started arriving and is not complete: 408 and close.
    Request { expires_at: Instant },
    /// Responses wait for the peer to take bytes: close without more output.
    Send { expires_at: Instant },
}

impl Timer {
    fn expires_at(self) -> Instant {
        match self {
            Timer::Idle { expires_at }
            | Timer::Request { expires_at }
            | Timer::Send { expires_at } => expires_at,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Body {
    /// Nothing, or a body already copied into the head buffer.
    InHead,
    /// The bytes of `Site.files[index]`.
    File(usize),
}

/// A queued response: its head's unsent range in `heads`, then its body.
#[derive(Debug)]
struct Pending {
    head: (usize, usize),
    body: Body,
    body_sent: usize,
    close: bool,
}

/// What a response carries besides its status.
#[derive(Clone, Copy, Debug)]
enum Content {
    File(usize),
    NotModified(usize),
    Bench,
    /// A short `text/plain` body naming the status.
    Error,
}

/// How the request asked to be answered.
#[derive(Clone, Copy, Debug)]
struct Mode {
    head_only: bool,
    http10: bool,
    close: bool,
}

impl Mode {
    /// For a request too broken to know its method or version: close after the answer.
    const FATAL: Mode = Mode {
        head_only: false,
        http10: false,
        close: true,
    };
}

/// The IMF-fixdate of the current second, formatted once per second per connection.
#[derive(Debug)]
struct DateCache {
    second: u64,
    text: [u8; 29],
}

impl DateCache {
    fn at(&mut self, unix_nanos: u64) -> [u8; 29] {
        let second = unix_nanos / 1_000_000_000;
        if second != self.second {
            let date = httpdate::HttpDate::from(
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(second),
            );
            let mut w = &mut self.text[..];
            // The IMF-fixdate is always 29 bytes; a year past 9999 cannot come from a clock.
            let _ = std::io::Write::write_fmt(&mut w, format_args!("{date}"));
            self.second = second;
        }
        self.text
    }
}

/// One HTTP connection's protocol state. Feed it what TCP received (`on_data`), drain what
/// it has to send (`poll_output`), and close the TCP connection when `wants_close`.
#[derive(Debug)]
pub struct HttpConnection {
    site: Arc<Site>,
    wall_origin_nanos: u64,
    read: Read,
    /// When the request under way (head or content) began to arrive.
    request_started: Option<Instant>,
    /// The last time bytes moved in either direction.
    last_progress: Instant,
    queue: VecDeque<Pending>,
    /// The heads (and small bodies) of queued responses, in order.
    heads: Vec<u8>,
    /// Scratch for the request-target: percent-decoded, then the file key.
    decoded: Vec<u8>,
    key: String,
    date: DateCache,
    /// The peer stopped sending (FIN): close once the queue is written.
    eof: bool,
    /// The send timer expired: drop everything and close.
    aborted: bool,
    stats: HttpStats,
}

impl HttpConnection {
    /// A connection accepted at `now`. `wall_origin_nanos` is the wall-clock time of the
    /// worker's `Instant::ZERO` in nanoseconds since the Unix epoch
    /// (`Clock::wall_origin_nanos()`), for the `Date` header.
    pub fn new(site: Arc<Site>, now: Instant, wall_origin_nanos: u64) -> Self {
        let pipeline = site.config.max_pipeline;
        Self {
            site,
            wall_origin_nanos,
            read: Read::Head,
            request_started: None,
            last_progress: now,
            queue: VecDeque::with_capacity(pipeline.min(64)),
            heads: Vec::with_capacity(4096),
            decoded: Vec::with_capacity(256),
            key: String::with_capacity(256),
            date: DateCache {
                second: u64::MAX,
                text: [b' '; 29],
            },
            eof: false,
            aborted: false,
            stats: HttpStats::default(),
        }
    }

    /// Takes received bytes; returns how many it consumed. It parses every complete
    /// request in `input` and queues its response; a partial request at the end is left
    /// unconsumed (hand it again with more bytes appended), and so is input past
    /// `max_pipeline` queued responses (hand it again after `poll_output` made room).
    /// After a response that closes the connection, all input is consumed and dropped.
    pub fn on_data(&mut self, now: Instant, input: &[u8]) -> usize {
        let mut at = 0;
        while at < input.len() {
            match self.read {
                Read::Done => at = input.len(),
                Read::Body { remaining } => {
                    let n = remaining.min((input.len() - at) as u64);
                    at += n as usize;
                    if n == remaining {
                        self.read = Read::Head;
                        self.request_started = None;
                    } else {
                        self.read = Read::Body {
                            remaining: remaining - n,
                        };
                    }
                }
                Read::Head => {
                    if self.aborted || self.queue.len() >= self.site.config.max_pipeline {
                        break;
                    }
                    match self.parse_request(now, &input[at..]) {
                        Some(n) => at += n,
                        None => {
                            self.request_started.get_or_insert(now);
                            break;
                        }
                    }
                }
            }
        }
        if at > 0 {
            self.last_progress = now;
            self.stats.bytes_in += at as u64;
        }
        at
    }

    /// Writes queued output through `out`, which copies what it can into the send buffer
    /// and returns how many bytes it took (0: full). Heads come from the connection's
    /// buffer and file bodies from the shared site, with no copy in between. Returns the
    /// bytes written.
    pub fn poll_output(&mut self, now: Instant, out: &mut dyn FnMut(&[u8]) -> usize) -> usize {
        let mut written = 0;
        'queue: while !self.aborted {
            let Some(p) = self.queue.front_mut() else {
                break;
            };
            while p.head.0 < p.head.1 {
                let n = out(&self.heads[p.head.0..p.head.1]).min(p.head.1 - p.head.0);
                if n == 0 {
                    break 'queue;
                }
                p.head.0 += n;
                written += n;
            }
            if let Body::File(index) = p.body {
                let bytes = &self.site.files.get(index).bytes;
                while p.body_sent < bytes.len() {
                    let n = out(&bytes[p.body_sent..]).min(bytes.len() - p.body_sent);
                    if n == 0 {
                        break 'queue;
                    }
                    p.body_sent += n;
                    written += n;
                }
            }
            if self.queue.pop_front().is_some_and(|p| p.close) {
                self.queue.clear();
            }
        }
        self.compact_heads();
        if written > 0 {
            self.last_progress = now;
            self.stats.bytes_out += written as u64;
        }
        written
    }

    /// Whether `poll_output` has something to write.
    pub fn has_output(&self) -> bool {
        !self.aborted && !self.queue.is_empty()
    }

    /// Whether the TCP connection should be closed now: every response is written and
    /// one of them closed the connection (`Connection: close`, HTTP/1.0 without
    /// keep-alive, an error that leaves the stream unreadable, a 408), or the peer
    /// finished sending, or the send timer gave up on the peer.
    pub fn wants_close(&self) -> bool {
        self.aborted || ((self.read == Read::Done || self.eof) && self.queue.is_empty())
    }

    /// The send timer gave up on a peer that stopped taking bytes: the TCP connection
    /// should be reset, since what is queued will never leave.
    pub fn aborted(&self) -> bool {
        self.aborted
    }

    /// The peer sent FIN: answer what was received, then close.
    pub fn on_eof(&mut self) {
        self.eof = true;
    }

    /// When `on_timeout` must next be called; `None` when no timer runs (closing).
    pub fn deadline(&self) -> Option<Instant> {
        self.timer().map(Timer::expires_at)
    }

    /// The clock reached `now`: if the deadline passed, an idle or slow client gets 408
    /// and the connection closes after it; a peer that stopped taking responses is closed
    /// at once (`wants_close`, nothing more to write).
    pub fn on_timeout(&mut self, now: Instant) {
        let Some(timer) = self.timer() else {
            return;
        };
        if now < timer.expires_at() {
            return;
        }
        log::debug!("http: {timer:?} expired at {now}");
        match timer {
            Timer::Send { .. } => {
                self.aborted = true;
                self.queue.clear();
                self.read = Read::Done;
            }
            Timer::Idle { .. } | Timer::Request { .. } => {
                self.request_started = None;
                self.fail(now, Status::RequestTimeout);
            }
        }
    }

    pub fn stats(&self) -> &HttpStats {
        &self.stats
    }

    /// The counters since the last take (for a server summing per-second totals).
    pub fn take_stats(&mut self) -> HttpStats {
        std::mem::take(&mut self.stats)
    }

    fn timer(&self) -> Option<Timer> {
        let config = &self.site.config;
        if self.wants_close() {
            None
        } else if !self.queue.is_empty() {
            Some(Timer::Send {
                expires_at: self.last_progress + config.send_timeout,
            })
        } else if let Some(started) = self.request_started {
            Some(Timer::Request {
                expires_at: started + config.request_timeout,
            })
        } else {
            Some(Timer::Idle {
                expires_at: self.last_progress + config.idle_timeout,
            })
        }
    }

    /// Parses one request at the start of `input` and queues its response; returns the
    /// bytes of its head, or `None` if the head is not complete yet.
    fn parse_request(&mut self, now: Instant, input: &[u8]) -> Option<usize> {
        let config = &self.site.config;
        let (max_headers, max_header_bytes, max_uri_bytes, max_body_bytes) = (
            config.max_headers,
            config.max_header_bytes,
            config.max_uri_bytes,
            config.max_body_bytes,
        );
        let bench_route = config.bench_route;
        let mut slots =
            [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_LIMIT];
        let mut req = httparse::Request::new(&mut []);
        let head_len = match req.parse_with_uninit_headers(input, &mut slots[..max_headers]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return partial_head_status(input, max_uri_bytes, max_header_bytes)
                    .map(|status| self.fail(now, status));
            }
            Err(e) => return Some(self.fail(now, head_error_status(e, input))),
        };
        let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
            return Some(self.fail(now, Status::BadRequest));
        };
        if path.len() > max_uri_bytes {
            return Some(self.fail(now, Status::UriTooLong));
        }
        if head_len > max_header_bytes {
            return Some(self.fail(now, Status::HeaderFieldsTooLarge));
        }
        let framing = Framing::read(req.headers)
            .and_then(|framing| framing.check(method, version, max_body_bytes));
        let (body, mode) = match framing {
            Ok(framing) => framing,
            Err(status) => return Some(self.fail(now, status)),
        };
        let (status, content, allow) = self.route(method, path, req.headers, bench_route);
        self.respond(now, status, content, mode, allow);
        self.read_after(now, mode, body);
        Some(head_len)
    }

    /// What answers `method` on `path`: the status, the content, and whether to send
    /// `Allow`.
    fn route(
        &mut self,
        method: &str,
        path: &str,
        headers: &[httparse::Header<'_>],
        bench_route: bool,
    ) -> (Status, Content, bool) {
        if method == "GET" || method == "HEAD" {
            let route = path.split('?').next().unwrap_or(path);
            if bench_route && route == BENCH_PATH {
                (Status::Ok, Content::Bench, false)
            } else {
                match file_key(path.as_bytes(), &mut self.decoded, &mut self.key) {
                    Err(TargetError::Malformed) => (Status::BadRequest, Content::Error, false),
                    Err(TargetError::Escapes) => (Status::Forbidden, Content::Error, false),
                    Err(TargetError::NotFound) => (Status::NotFound, Content::Error, false),
                    Ok(()) => match self.site.files.index_of(&self.key) {
                        None => (Status::NotFound, Content::Error, false),
                        Some(i) if not_modified(self.site.files.get(i), headers) => {
                            (Status::NotModified, Content::NotModified(i), false)
                        }
                        Some(i) => (Status::Ok, Content::File(i), false),
                    },
                }
            }
        } else if KNOWN_METHODS.contains(&method) {
            (Status::MethodNotAllowed, Content::Error, true)
        } else {
            (Status::NotImplemented, Content::Error, false)
        }
    }

    /// After a request's response is queued: read nothing more, drop its `body` bytes of
    /// content, or wait for the next head.
    fn read_after(&mut self, now: Instant, mode: Mode, body: u64) {
        if mode.close {
            self.read = Read::Done;
            self.request_started = None;
        } else if body > 0 {
            self.read = Read::Body { remaining: body };
            self.request_started.get_or_insert(now);
        } else {
            self.request_started = None;
        }
    }

    /// Queues an error that leaves the connection unusable, stops reading, and returns
    /// the whole input as consumed by the caller's measure (`on_data` drops the rest).
    fn fail(&mut self, now: Instant, status: Status) -> usize {
        log::debug!("http: {} {}, closing", status.code(), status.reason());
        self.respond(now, status, Content::Error, Mode::FATAL, false);
        self.read = Read::Done;
        self.request_started = None;
        0
    }

    /// Writes a response head (and a small body) into `heads` and queues it.
    fn respond(&mut self, now: Instant, status: Status, content: Content, mode: Mode, allow: bool) {
        let date = self
            .date
            .at(self.wall_origin_nanos.saturating_add(now.as_nanos()));
        let site = &*self.site;
        let h = &mut self.heads;
        let start = h.len();
        h.extend_from_slice(b"HTTP/1.1 ");
        push_u64(h, u64::from(status.code()));
        h.push(b' ');
        h.extend_from_slice(status.reason().as_bytes());
        h.extend_from_slice(b"\r\nDate: ");
        h.extend_from_slice(&date);
        h.extend_from_slice(b"\r\nServer: ");
        h.extend_from_slice(site.config.server.as_bytes());
        h.extend_from_slice(b"\r\n");

        let validators = |h: &mut Vec<u8>, file: &StaticFile| {
            h.extend_from_slice(b"ETag: ");
            h.extend_from_slice(file.etag.as_bytes());
            h.extend_from_slice(b"\r\nLast-Modified: ");
            h.extend_from_slice(file.last_modified.as_bytes());
            h.extend_from_slice(b"\r\n");
        };
        // The body: (content type, bytes, the file index if it is a file's).
        let body: Option<(&str, &[u8], Option<usize>)> = match content {
            Content::File(i) => {
                let file = site.files.get(i);
                validators(h, file);
                Some((file.content_type, &file.bytes[..], Some(i)))
            }
            Content::NotModified(i) => {
                // RFC 9110 §15.4.5: no content; the validators a 200 would have sent.
                validators(h, site.files.get(i));
                None
            }
            Content::Bench => Some(("text/plain; charset=utf-8", BENCH_BODY, None)),
            Content::Error => Some(("text/plain; charset=utf-8", &[][..], None)),
        };
        let error_len = 3 + 1 + status.reason().len() + 1;
        let mut queued_body = Body::InHead;
        if let Some((content_type, bytes, file)) = body {
            let len = if matches!(content, Content::Error) {
                error_len
            } else {
                bytes.len()
            };
            h.extend_from_slice(b"Content-Type: ");
            h.extend_from_slice(content_type.as_bytes());
            // RFC 9110 §8.6: a HEAD response may carry the length a GET would have had.
            h.extend_from_slice(b"\r\nContent-Length: ");
            push_u64(h, len as u64);
            h.extend_from_slice(b"\r\n");
            if allow {
                h.extend_from_slice(b"Allow: GET, HEAD\r\n");
            }
            if mode.close {
                h.extend_from_slice(b"Connection: close\r\n");
            } else if mode.http10 {
                h.extend_from_slice(b"Connection: keep-alive\r\n");
            }
            h.extend_from_slice(b"\r\n");
            if !mode.head_only {
                if matches!(content, Content::Error) {
                    push_u64(h, u64::from(status.code()));
                    h.push(b' ');
                    h.extend_from_slice(status.reason().as_bytes());
                    h.push(b'\n');
                } else if bytes.len() <= INLINE_BODY_MAX {
                    h.extend_from_slice(bytes);
                } else if let Some(i) = file {
                    queued_body = Body::File(i);
                }
            }
        } else {
            if mode.close {
                h.extend_from_slice(b"Connection: close\r\n");
            } else if mode.http10 {
                h.extend_from_slice(b"Connection: keep-alive\r\n");
            }
            h.extend_from_slice(b"\r\n");
        }
        let end = h.len();
        self.queue.push_back(Pending {
            head: (start, end),
            body: queued_body,
            body_sent: 0,
            close: mode.close,
        });
        self.stats.record(status);
    }

    /// Drops written heads: all of them once the queue is empty (the buffer keeps its
    /// capacity), or the written prefix when it has grown under a long pipeline.
    fn compact_heads(&mut self) {
        match self.queue.front() {
            None => self.heads.clear(),
            Some(front) if front.head.0 >= HEADS_COMPACT_AT => {
                let sent = front.head.0;
                self.heads.drain(..sent);
                for p in &mut self.queue {
                    p.head.0 -= sent;
                    p.head.1 -= sent;
                }
            }
            Some(_) => {}
        }
    }
}

/// What a request's header fields say of its framing and of the connection.
#[derive(Default)]
struct Framing<'a> {
    hosts: usize,
    content_length: Option<u64>,
    transfer_encoding: Option<&'a [u8]>,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

impl<'a> Framing<'a> {
    /// Reads the fields that frame a request, or the status that refuses it.
    fn read(headers: &[httparse::Header<'a>]) -> Result<Self, Status> {
        let mut f = Framing::default();
        for h in headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("host") {
                f.hosts += 1;
            } else if name.eq_ignore_ascii_case("content-length") {
                // RFC 9112 §6.3: an invalid or conflicting length is unrecoverable.
                match (parse_length(h.value), f.content_length) {
                    (Some(n), None) => f.content_length = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    _ => return Err(Status::BadRequest),
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                if f.transfer_encoding.is_some() {
                    return Err(Status::NotImplemented);
                }
                f.transfer_encoding = Some(h.value);
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    f.close |= token.eq_ignore_ascii_case(b"close");
                    f.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            } else if name.eq_ignore_ascii_case("expect") {
                f.expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
        }
        Ok(f)
    }

    /// The content length to drop and how to answer a `method` request of HTTP/1.`version`,
    /// or the status that refuses it.
    fn check(&self, method: &str, version: u8, max_body_bytes: u64) -> Result<(u64, Mode), Status> {
        if let Some(te) = self.transfer_encoding {
            // RFC 9112 §6.1: Transfer-Encoding with Content-Length, or in HTTP/1.0, is
            // framing that cannot be trusted (request smuggling). Chunked content is
            // refused with 411 (send a Content-Length); other codings are 501.
            let status = if self.content_length.is_some() || version == 0 {
                Status::BadRequest
            } else if te.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                Status::LengthRequired
            } else {
                Status::NotImplemented
            };
            return Err(status);
        }
        // RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to
        // any HTTP/1.1 request message that lacks a Host header field and to any request
        // message that contains more than one Host header field line".
        if self.hosts > 1 || (version == 1 && self.hosts == 0) {
            return Err(Status::BadRequest);
        }
        let body = self.content_length.unwrap_or(0);
        if body > max_body_bytes {
            return Err(Status::ContentTooLarge);
        }
        let persistent = if version == 1 {
            !self.close
        } else {
            self.keep_alive && !self.close
        };
        let mode = Mode {
            head_only: method == "HEAD",
            http10: version == 0,
            // The response leaves before the content arrives; a client that waits for
            // 100 (Continue) may then not send it, leaving the stream unframed. Close.
            close: !persistent || (self.expect_continue && body > 0),
        };
        Ok((body, mode))
    }
}

/// For a head not complete yet: the status that refuses it already, if its request line
/// or the head so far is too long.
fn partial_head_status(
    input: &[u8],
    max_uri_bytes: usize,
    max_header_bytes: usize,
) -> Option<Status> {
    let line = input
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(input.len());
    if line > max_uri_bytes + REQUEST_LINE_SLACK {
        return Some(Status::UriTooLong);
    }
    if input.len() > max_header_bytes {
        return Some(Status::HeaderFieldsTooLarge);
    }
    None
}

/// The status that answers a head `httparse` refused.
fn head_error_status(e: httparse::Error, input: &[u8]) -> Status {
    match e {
        httparse::Error::TooManyHeaders => Status::HeaderFieldsTooLarge,
        httparse::Error::Version if names_http_version(input) => Status::VersionNotSupported,
        e => {
            log::debug!("http: malformed request: {e}");
            Status::BadRequest
        }
    }
}

/// Whether the request line ends in something shaped like an HTTP version (`HTTP/2.0`),
/// so a version `httparse` refuses is 505 rather than 400.
fn names_http_version(input: &[u8]) -> bool {
    let line = input.split(|&b| b == b'\n').next().unwrap_or(input);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(version) = line.rsplit(|&b| b == b' ').next() else {
        return false;
    };
    match version.strip_prefix(b"HTTP/") {
        Some([major, b'.', minor]) => major.is_ascii_digit() && minor.is_ascii_digit(),
        Some([major]) => major.is_ascii_digit(),
        _ => false,
    }
}

/// A `Content-Length` value: digits only (RFC 9110 §8.6), no sign, no list.
fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// RFC 9110 §13.2.2: If-None-Match decides when present (weak comparison, §13.1.2);
/// otherwise If-Modified-Since, when it is a valid date.
fn not_modified(file: &StaticFile, headers: &[httparse::Header<'_>]) -> bool {
    let mut if_none_match = None;
    let mut if_modified_since = None;
    for h in headers {
        if h.name.eq_ignore_ascii_case("if-none-match") {
            let matched = etag_listed(h.value, &file.etag);
            if_none_match = Some(if_none_match.unwrap_or(false) || matched);
        } else if h.name.eq_ignore_ascii_case("if-modified-since") {
            if_modified_since = Some(h.value);
        }
    }
    if let Some(matched) = if_none_match {
        return matched;
    }
    let since = if_modified_since
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| httpdate::parse_http_date(v.trim()).ok())
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
    since.is_some_and(|since| file.modified_unix <= since.as_secs())
}

fn etag_listed(list: &[u8], etag: &str) -> bool {
    let ours = etag.as_bytes();
    list.split(|&b| b == b',').any(|tag| {
        let tag = tag.trim_ascii();
        tag == b"*" || tag.strip_prefix(b"W/").unwrap_or(tag) == ours
    })
}

fn push_u64(buf: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&digits[i..]);
}
