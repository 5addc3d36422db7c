//! `fastpath capture` over the control socket: the request, the frames streamed to the
//! client as the workers' taps copy them, and the summary that ends the stream.

use std::{
    io::Write,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::phy::capture::{Capture, CaptureFilter, Captured, Direction, PcapSink, SNAPLEN};

/// What `fastpath capture` asks of a running instance (the control request's body).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CaptureRequest {
    pub filter: CaptureFilter,
    /// Only the frames of this socket (its protocol, local port and, if connected, peer).
    pub socket: Option<u32>,
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration_ms: Option<u64>,
}

/// How a capture ended, sent last.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CaptureSummary {
    pub captured: u64,
    /// Frames that found no room in a worker's ring (the capture was slower than the traffic).
    pub dropped: u64,
    pub reason: String,
}

const MSG_FRAME: u8 = 1;
const MSG_END: u8 = 2;

/// On the control thread: runs `capture` until `request`'s count or duration, the client
/// leaving, or `stop`; streams each frame to `out` as it is drained, then the summary.
pub fn serve(
    capture: Capture,
    request: &CaptureRequest,
    out: &mut impl Write,
    stop: &AtomicBool,
) -> std::io::Result<CaptureSummary> {
    let started = std::time::Instant::now();
    let limit = request.count.unwrap_or(u64::MAX);
    let deadline = request.duration_ms.map(Duration::from_millis);
    let mut out = std::io::BufWriter::new(out);
    let mut captured = 0u64;
    let mut failed = None;
    let reason = loop {
        let mut send = |c: Captured<'_>| {
            if captured >= limit || failed.is_some() {
                return;
            }
            let mut header = [0u8; 8 + 2 + 1 + 4];
            header[..8].copy_from_slice(&(c.timestamp.as_nanos() as u64).to_le_bytes());
            header[8..10].copy_from_slice(&(c.queue as u16).to_le_bytes());
            header[10] = u8::from(c.direction == Direction::Sent);
            header[11..15].copy_from_slice(&c.orig_len.to_le_bytes());
            let len = (header.len() + c.data.len()) as u32;
            let result = out
                .write_all(&[MSG_FRAME])
                .and_then(|()| out.write_all(&len.to_le_bytes()))
                .and_then(|()| out.write_all(&header))
                .and_then(|()| out.write_all(c.data));
            match result {
                Ok(()) => captured += 1,
                Err(e) => failed = Some(e),
            }
        };
        capture.drain(&mut send);
        if let Some(e) = failed.take() {
            // The client left (Ctrl-C, a closed pipe): nothing more to tell it.
            capture.stop();
            return Err(e);
        }
        if captured >= limit {
            break "count reached";
        }
        if deadline.is_some_and(|d| started.elapsed() >= d) {
            break "duration reached";
        }
        if stop.load(Ordering::Relaxed) {
            break "fastpath is stopping";
        }
        if let Err(e) = out.flush() {
            capture.stop();
            return Err(e);
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    capture.stop();
    let summary = CaptureSummary {
        captured,
        dropped: capture.dropped(),
        reason: reason.into(),
    };
    let body = serde_json::to_vec(&summary).map_err(std::io::Error::other)?;
    out.write_all(&[MSG_END])?;
    out.write_all(&(body.len() as u32).to_le_bytes())?;
    out.write_all(&body)?;
    out.flush()?;
    Ok(summary)
}

/// In `fastpath capture`: reads what `serve` streams and writes it as pcap into `sink`,
/// flushing as it goes, until the summary arrives or `stop` (Ctrl-C) is set. `input` should
/// have a read timeout, so `stop` is seen while no frame comes. The file is valid whenever
/// this returns.
pub fn receive<R: std::io::Read, W: Write>(
    input: &mut R,
    sink: &mut PcapSink<W>,
    stop: &AtomicBool,
) -> std::io::Result<CaptureSummary> {
    let mut written = 0u64;
    let mut buf = Vec::with_capacity(SNAPLEN + 64);
    loop {
        if stop.load(Ordering::Relaxed) {
            sink.flush()?;
            return Ok(CaptureSummary {
                captured: written,
                dropped: 0,
                reason: "interrupted".into(),
            });
        }
        let mut head = [0u8; 5];
        match read_full(input, &mut head, stop) {
            Ok(true) => {}
            Ok(false) => continue, // interrupted between messages
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                sink.flush()?;
                return Err(std::io::Error::new(
                    e.kind(),
                    "fastpath closed the capture without a summary (did it stop?)",
                ));
            }
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes(head[1..5].try_into().expect("4 bytes")) as usize;
        if len > SNAPLEN + 64 + 4096 {
            return Err(std::io::Error::other(format!(
                "a {len}-byte capture message"
            )));
        }
        buf.resize(len, 0);
        if !read_full(input, &mut buf, stop)? {
            sink.flush()?;
            continue;
        }
        match head[0] {
            MSG_FRAME if len >= 15 => {
                let ts = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
                let orig_len = u32::from_le_bytes(buf[11..15].try_into().expect("4 bytes"));
                sink.write(Duration::from_nanos(ts), orig_len, &buf[15..])?;
                written += 1;
                if written.is_multiple_of(64) {
                    sink.flush()?;
                }
            }
            MSG_END => {
                sink.flush()?;
                return serde_json::from_slice(&buf).map_err(std::io::Error::other);
            }
            kind => {
                return Err(std::io::Error::other(format!(
                    "unknown capture message {kind}"
                )));
            }
        }
    }
}

/// Fills `buf`, retrying read timeouts; Ok(false) if `stop` was set before the first byte.
fn read_full<R: std::io::Read>(
    input: &mut R,
    buf: &mut [u8],
    stop: &AtomicBool,
) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                if filled == 0 && stop.load(Ordering::Relaxed) {
                    return Ok(false);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        phy::capture::{CaptureTap, TapCache},
        time::Instant,
        wire::testing::udp_request,
    };

    #[test]
    fn a_capture_streams_to_a_pcap_file_and_ends_with_its_summary() {
        let tap = Arc::new(CaptureTap::default());
        let capture = Capture::start(std::slice::from_ref(&tap), CaptureFilter::default());
        let mut cache = TapCache::default();
        let session = cache.current(&tap).unwrap();
        let frames: Vec<Vec<u8>> = (0..5u8).map(|i| udp_request(7000, &[i; 3])).collect();
        for (i, f) in frames.iter().enumerate() {
            session.record(Instant::from_micros(i as u64), Direction::Received, f);
        }
        let (mut server, mut client) = std::os::unix::net::UnixStream::pair().unwrap();
        let stop = AtomicBool::new(false);
        let request = CaptureRequest {
            count: Some(3),
            ..Default::default()
        };
        let summary = serve(capture, &request, &mut server, &stop).unwrap();
        assert_eq!(
            (summary.captured, summary.reason.as_str()),
            (3, "count reached")
        );
        drop(server);
        let mut sink = PcapSink::new(Vec::new()).unwrap();
        let got = receive(&mut client, &mut sink, &stop).unwrap();
        assert_eq!(got.captured, 3);
        let bytes = sink.into_inner().unwrap();
        let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
        for (i, f) in frames.iter().take(3).enumerate() {
            let p = reader.next_packet().unwrap().unwrap();
            assert_eq!(&p.data[..], &f[..], "frame {i} byte for byte, in order");
            assert_eq!(p.timestamp, Duration::from_micros(i as u64));
        }
        assert!(reader.next_packet().is_none());
        assert!(cache.current(&tap).is_none(), "the capture stopped");
    }
}
