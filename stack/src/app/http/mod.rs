//! An HTTP/1.1 server (RFC 9110 semantics, RFC 9112 messages) as a sans-IO library that
//! runs to completion on a worker: a shared read-only `Site` (files loaded once at start)
//! and a per-connection `HttpConnection` fed with received bytes and drained into the TCP
//! send buffer. Time is passed in; the connection says when it next needs the clock.
//!
//! Requests are parsed in place by `httparse`; responses go out in request order, their
//! heads written into one reusable buffer per connection and file bodies straight from the
//! shared `Arc<[u8]>`. GET and HEAD of static files, conditional GET, and `/bench`.

mod connection;
mod server;
mod site;
mod target;
#[cfg(test)]
mod tests;

use std::{fmt, time::Duration};

pub use connection::HttpConnection;
pub use server::{HttpServer, ServerStats, delta};
pub use site::{Site, SiteError, StaticFile, StaticFiles, content_type};

/// The most header fields any configuration may allow: the parser's slots live on the
/// stack (`httparse` wants a slice), 128 × 32 bytes.
pub const MAX_HEADERS_LIMIT: usize = 128;

/// The fixed route for benchmarks and its body.
pub const BENCH_PATH: &str = "/bench";
pub const BENCH_BODY: &[u8] = b"Hello from fastpath\n";

/// Limits and knobs of a server; shared by every connection through `Site`.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Header fields per request; more is 431.
    pub max_headers: usize,
    /// The request line and header fields together; more is 431.
    pub max_header_bytes: usize,
    /// The request-target; longer is 414.
    pub max_uri_bytes: usize,
    /// A request's content (`Content-Length`); more is 413. Content is read and dropped:
    /// no route takes a body.
    pub max_body_bytes: u64,
    /// How long a connection may sit with no request under way before it gets 408 and is
    /// closed.
    pub idle_timeout: Duration,
    /// How long one request may take to arrive, from its first byte to its last (a slow
    /// client, slowloris); then 408 and close.
    pub request_timeout: Duration,
    /// How long responses may wait with no byte taken by the peer; then the connection is
    /// closed without more output.
    pub send_timeout: Duration,
    /// Responses queued and not yet fully written; input past this waits unconsumed.
    pub max_pipeline: usize,
    /// All files of a site together, read at start.
    pub max_site_bytes: u64,
    /// The `Server` header's value.
    pub server: String,
    /// Whether `BENCH_PATH` answers `BENCH_BODY` (before any file of that name).
    pub bench_route: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_headers: 64,
            max_header_bytes: 8 * 1024,
            max_uri_bytes: 4 * 1024,
            max_body_bytes: 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            max_pipeline: 64,
            max_site_bytes: 256 * 1024 * 1024,
            server: "fastpath".to_owned(),
            bench_route: true,
        }
    }
}

impl HttpConfig {
    pub fn validate(&self) -> Result<(), SiteError> {
        if self.max_headers == 0 || self.max_headers > MAX_HEADERS_LIMIT {
            return Err(SiteError::Config("max_headers must be 1 to 128"));
        }
        if self.max_uri_bytes == 0 || self.max_uri_bytes >= self.max_header_bytes {
            return Err(SiteError::Config(
                "max_uri_bytes must be non-zero and less than max_header_bytes",
            ));
        }
        if self.max_pipeline == 0 {
            return Err(SiteError::Config("max_pipeline must be at least 1"));
        }
        if self.server.bytes().any(|b| b.is_ascii_control()) {
            return Err(SiteError::Config("server must have no control characters"));
        }
        Ok(())
    }

    /// The receive buffer the TCP glue must keep for a connection: a request head that
    /// fits the limits must fit the buffer whole, since `on_data` parses it in place.
    pub fn min_receive_buffer(&self) -> usize {
        self.max_header_bytes + 1
    }
}

/// The statuses this server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Ok,
    NotModified,
    BadRequest,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    LengthRequired,
    ContentTooLarge,
    UriTooLong,
    HeaderFieldsTooLarge,
    NotImplemented,
    VersionNotSupported,
}

impl Status {
    pub const ALL: [Status; 13] = [
        Status::Ok,
        Status::NotModified,
        Status::BadRequest,
        Status::Forbidden,
        Status::NotFound,
        Status::MethodNotAllowed,
        Status::RequestTimeout,
        Status::LengthRequired,
        Status::ContentTooLarge,
        Status::UriTooLong,
        Status::HeaderFieldsTooLarge,
        Status::NotImplemented,
        Status::VersionNotSupported,
    ];

    pub const fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::NotModified => 304,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::LengthRequired => 411,
            Status::ContentTooLarge => 413,
            Status::UriTooLong => 414,
            Status::HeaderFieldsTooLarge => 431,
            Status::NotImplemented => 501,
            Status::VersionNotSupported => 505,
        }
    }

    /// The reason phrases of RFC 9110 §15 (431: RFC 6585 §5).
    pub const fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::NotModified => "Not Modified",
            Status::BadRequest => "Bad Request",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::LengthRequired => "Length Required",
            Status::ContentTooLarge => "Content Too Large",
            Status::UriTooLong => "URI Too Long",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::NotImplemented => "Not Implemented",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// What connections did, per status: a connection keeps its own, and the server sums them
/// (`add`) into a per-second line (`Display`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpStats {
    /// Responses queued (every request gets one; a 408 on timeout counts too).
    pub requests: u64,
    /// Bytes consumed from the peer and bytes handed to the send side.
    pub bytes_in: u64,
    pub bytes_out: u64,
    by_status: [u64; Status::ALL.len()],
}

impl HttpStats {
    pub fn count(&self, status: Status) -> u64 {
        self.by_status[status.index()]
    }

    /// Responses whose status is `class`xx (2 for 2xx …).
    pub fn class(&self, class: u16) -> u64 {
        Status::ALL
            .iter()
            .filter(|s| s.code() / 100 == class)
            .map(|s| self.count(*s))
            .sum()
    }

    pub fn add(&mut self, other: &HttpStats) {
        self.requests += other.requests;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        for (a, b) in self.by_status.iter_mut().zip(other.by_status) {
            *a += b;
        }
    }

    pub(crate) fn record(&mut self, status: Status) {
        self.requests += 1;
        self.by_status[status.index()] += 1;
    }
}

impl fmt::Display for HttpStats {
    /// `requests 10 in 780 B out 2310 B 2xx 8 3xx 1 4xx 1 5xx 0 [404 1]`: classes always,
    /// then each error code seen.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "requests {} in {} B out {} B 2xx {} 3xx {} 4xx {} 5xx {}",
            self.requests,
            self.bytes_in,
            self.bytes_out,
            self.class(2),
            self.class(3),
            self.class(4),
            self.class(5)
        )?;
        for s in Status::ALL.iter().filter(|s| s.code() >= 400) {
            let n = self.count(*s);
            if n > 0 {
                write!(f, " [{} {}]", s.code(), n)?;
            }
        }
        Ok(())
    }
}
