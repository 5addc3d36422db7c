//! Once a connection is warm, requests allocate nothing: shown with an allocator that
//! counts per thread.

use super::*;

/// Counts allocations per thread, so a test can show its steady state allocates nothing
/// while the harness's other threads do what they like.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn allocations() -> u64 {
    ALLOCATIONS.with(|c| c.get())
}

// Safety: every call is passed to `System` unchanged; counting touches only a
// const-initialized thread-local (no allocation, no destructor).
unsafe impl std::alloc::GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // Safety: the caller's contract for `alloc` is `System.alloc`'s.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // Safety: `ptr` came from `System` with this layout (every path above uses it).
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // Safety: as for `dealloc`, and the caller's contract for `realloc` is `System`'s.
        unsafe { std::alloc::System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn steady_state_allocates_nothing_per_request() {
    let big = vec![1u8; 64 * 1024];
    let site = site_with(
        HttpConfig::default(),
        &[("a.txt", b"alpha\n"), ("big.bin", &big)],
    );
    let etag = site
        .files
        .get(site.files.index_of("a.txt").unwrap())
        .etag
        .clone();
    let mut input = get("/a.txt");
    input.extend(get(BENCH_PATH));
    input.extend(get("/missing"));
    input.extend(get("/../x"));
    input.extend(get("/%61.txt?q=1"));
    input.extend(b"HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    input
        .extend(format!("GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n").bytes());
    input.extend(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n");
    input.extend(b"POST /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    input.extend(get("/big.bin"));
    let mut conn = connect(&site);
    let mut sink = vec![0u8; 1024 * 1024];
    let mut round = |conn: &mut HttpConnection, now: Instant| {
        assert_eq!(conn.on_data(now, &input), input.len());
        let mut at = 0;
        while conn.has_output() {
            conn.poll_output(now, &mut |b: &[u8]| {
                let n = b.len().min(1500).min(sink.len() - at);
                sink[at..at + n].copy_from_slice(&b[..n]);
                at += n;
                n
            });
        }
        at
    };
    let warm = round(&mut conn, T0);
    let before = allocations();
    assert!(
        before > 0,
        "the counter counts (the connection and site allocated)"
    );
    for i in 0..100 {
        assert_eq!(round(&mut conn, Instant::from_millis(i)), warm);
    }
    assert_eq!(
        allocations() - before,
        0,
        "allocations in 100 rounds of 10 requests"
    );
    assert_eq!(conn.stats().requests, 101 * 10);
}
