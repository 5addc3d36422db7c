//! Capture: copies of the frames the workers receive and send, for `fastpath capture` and
//! for tests. Frames that XDP redirects into AF_XDP never reach the kernel's packet taps,
//! so `tcpdump` on the interface sees none of the flows fastpath serves; this is fastpath's
//! own tap (DPDK's `dpdk-pdump`, VPP's `pcap trace`).
//!
//! Each worker has a `CaptureTap`. With no capture running, the worker's cost is one relaxed
//! load per batch. A capture installs a `Session` on every tap: a bounded lock-free ring of
//! copies and a pool of buffers allocated when the capture starts, so a worker only copies
//! (no allocation, no lock, no system call); a frame that finds no buffer or no room in the
//! ring is counted as dropped, never waited for. A thread beside the data path drains the
//! rings (`Capture::drain`) and writes pcap with the `pcap-file` crate, with the worker's
//! clock as nanosecond timestamps.

use std::{
    io::Write,
    net::SocketAddrV4,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use crossbeam_queue::ArrayQueue;
use fastpath_common::layout::{ETHERTYPE_IPV4, ETHERTYPE_QINQ, ETHERTYPE_VLAN};
use pcap_file::{
    DataLink, Endianness, TsResolution,
    pcap::{PcapHeader, PcapPacket, PcapWriter},
};
use serde::{Deserialize, Serialize};

use crate::{
    phy::{FrameSink, FrameWriter, TxResult},
    time::Instant,
    wire::Protocol,
};

/// Bytes kept of each frame (a 1500-byte MTU frame with a VLAN tag fits whole).
pub const SNAPLEN: usize = 2048;
/// Frames each worker's ring holds between two drains.
pub const RING: usize = 4096;

/// Which way a frame went through the worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Received,
    Sent,
}

/// Which frames a capture keeps; `None` fields match everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureFilter {
    pub proto: Option<Protocol>,
    /// Either port of the frame.
    pub port: Option<u16>,
    /// The peer: either end of the frame (a connected socket's remote).
    pub peer: Option<SocketAddrV4>,
}

impl CaptureFilter {
    /// Whether `frame` (Ethernet, at most one VLAN tag) matches. Frames that are not IPv4
    /// TCP or UDP match only a filter with no field set.
    pub fn matches(&self, frame: &[u8]) -> bool {
        if *self == CaptureFilter::default() {
            return true;
        }
        let Some((proto, src, dst)) = endpoints(frame) else {
            return false;
        };
        self.proto.is_none_or(|p| p == proto)
            && self.port.is_none_or(|p| src.port() == p || dst.port() == p)
            && self.peer.is_none_or(|p| src == p || dst == p)
    }
}

/// (protocol, source, destination) of an IPv4 TCP or UDP frame.
fn endpoints(frame: &[u8]) -> Option<(Protocol, SocketAddrV4, SocketAddrV4)> {
    let be16 = |at: usize| Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?));
    let mut l3 = 14;
    let mut ethertype = be16(12)?;
    if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
        ethertype = be16(16)?;
        l3 = 18;
    }
    if ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let ihl = usize::from(frame.get(l3)? & 0x0f) * 4;
    let proto = match frame.get(l3 + 9)? {
        6 => Protocol::Tcp,
        17 => Protocol::Udp,
        _ => return None,
    };
    let ip = |at: usize| -> Option<[u8; 4]> { frame.get(at..at + 4)?.try_into().ok() };
    let l4 = l3 + ihl;
    Some((
        proto,
        SocketAddrV4::new(ip(l3 + 12)?.into(), be16(l4)?),
        SocketAddrV4::new(ip(l3 + 16)?.into(), be16(l4 + 2)?),
    ))
}

/// One copied frame.
pub struct Record {
    /// The worker's clock when it handled the frame.
    pub at: Instant,
    pub direction: Direction,
    /// The frame's length on the wire (`data` holds at most `SNAPLEN` of it).
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// One capture on one worker: its filter, its ring of copies and its buffers.
pub struct Session {
    filter: CaptureFilter,
    ring: ArrayQueue<Record>,
    pool: ArrayQueue<Vec<u8>>,
    copied: AtomicU64,
    dropped: AtomicU64,
}

impl Session {
    fn new(filter: CaptureFilter) -> Self {
        let pool = ArrayQueue::new(RING);
        for _ in 0..RING {
            let _ = pool.push(Vec::with_capacity(SNAPLEN));
        }
        Self {
            filter,
            ring: ArrayQueue::new(RING),
            pool,
            copied: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// On the worker: copies `frame` if it matches; counts it dropped if there is no room.
    #[inline]
    pub fn record(&self, at: Instant, direction: Direction, frame: &[u8]) {
        if !self.filter.matches(frame) {
            return;
        }
        let Some(mut data) = self.pool.pop() else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        data.clear();
        data.extend_from_slice(&frame[..frame.len().min(SNAPLEN)]);
        let record = Record {
            at,
            direction,
            orig_len: frame.len() as u32,
            data,
        };
        match self.ring.push(record) {
            Ok(()) => {
                self.copied.fetch_add(1, Ordering::Relaxed);
            }
            Err(record) => {
                let _ = self.pool.push(record.data);
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A worker's tap: the capture in force, if any.
#[derive(Default)]
pub struct CaptureTap {
    active: AtomicBool,
    generation: AtomicU64,
    session: Mutex<Option<Arc<Session>>>,
    /// The worker clock's origin on the wall clock, in ns since the Unix epoch.
    wall_origin: AtomicU64,
}

impl CaptureTap {
    /// Called by the worker when its clock starts.
    pub fn set_wall_origin(&self, clock: &crate::time::Clock) {
        self.wall_origin
            .store(clock.wall_origin_nanos(), Ordering::Relaxed);
    }

    fn install(&self, session: Option<Arc<Session>>) {
        let active = session.is_some();
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = session;
        self.generation.fetch_add(1, Ordering::Release);
        self.active.store(active, Ordering::Release);
    }
}

/// The worker's view of its tap: the session in force, re-read only when the tap changes.
#[derive(Default)]
pub struct TapCache {
    generation: u64,
    session: Option<Arc<Session>>,
}

impl TapCache {
    /// Once per batch: one relaxed load when no capture runs.
    #[inline]
    pub fn current(&mut self, tap: &CaptureTap) -> Option<&Session> {
        if !tap.active.load(Ordering::Relaxed) {
            if self.session.is_some() {
                self.session = None;
            }
            return None;
        }
        let generation = tap.generation.load(Ordering::Acquire);
        if generation != self.generation {
            self.session = tap
                .session
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            self.generation = generation;
        }
        self.session.as_deref()
    }
}

/// A frame sink that copies each frame it sends into a capture session.
pub struct TappedSink<'a> {
    pub inner: &'a mut dyn FrameSink,
    pub session: &'a Session,
    pub now: Instant,
}

impl FrameSink for TappedSink<'_> {
    fn send(&mut self, write: &mut FrameWriter<'_>) -> TxResult {
        let (session, now) = (self.session, self.now);
        self.inner.send(&mut |buf: &mut [u8]| {
            let len = write(buf)?;
            if let Some(frame) = buf.get(..len) {
                session.record(now, Direction::Sent, frame);
            }
            Some(len)
        })
    }

    fn room(&self) -> usize {
        self.inner.room()
    }
}

/// A captured frame as the drain hands it out.
pub struct Captured<'a> {
    /// Wall-clock time since the Unix epoch.
    pub timestamp: Duration,
    pub queue: usize,
    pub direction: Direction,
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// A running capture across every worker's tap; stopped when dropped.
pub struct Capture {
    taps: Vec<Arc<CaptureTap>>,
    sessions: Vec<Arc<Session>>,
}

impl Capture {
    /// Installs a session with `filter` on every tap.
    pub fn start(taps: &[Arc<CaptureTap>], filter: CaptureFilter) -> Self {
        let sessions: Vec<Arc<Session>> = taps
            .iter()
            .map(|tap| {
                let session = Arc::new(Session::new(filter));
                tap.install(Some(session.clone()));
                session
            })
            .collect();
        Self {
            taps: taps.to_vec(),
            sessions,
        }
    }

    /// Hands every frame copied so far to `f`, queue by queue; returns how many.
    pub fn drain(&self, mut f: impl FnMut(Captured<'_>)) -> usize {
        let mut n = 0;
        for (queue, (tap, session)) in self.taps.iter().zip(&self.sessions).enumerate() {
            let origin = tap.wall_origin.load(Ordering::Relaxed);
            while let Some(record) = session.ring.pop() {
                f(Captured {
                    timestamp: Duration::from_nanos(origin.saturating_add(record.at.as_nanos())),
                    queue,
                    direction: record.direction,
                    orig_len: record.orig_len,
                    data: &record.data,
                });
                let _ = session.pool.push(record.data);
                n += 1;
            }
        }
        n
    }

    /// Frames that found no room in a ring, over all workers.
    pub fn dropped(&self) -> u64 {
        self.sessions
            .iter()
            .map(|s| s.dropped.load(Ordering::Relaxed))
            .sum()
    }

    /// Stops copying (the rings keep what they hold until drained).
    pub fn stop(&self) {
        for tap in &self.taps {
            tap.install(None);
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A buffered writer that both the pcap writer and its owner hold, so the owner can flush
/// (pcap-file's writer does not hand its writer back until it is consumed).
struct Shared<W: Write>(std::rc::Rc<std::cell::RefCell<std::io::BufWriter<W>>>);

impl<W: Write> Write for Shared<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.borrow_mut().flush()
    }
}

/// A pcap file (nanosecond timestamps, Ethernet) written with the `pcap-file` crate.
pub struct PcapSink<W: Write> {
    writer: PcapWriter<Shared<W>>,
    buffer: std::rc::Rc<std::cell::RefCell<std::io::BufWriter<W>>>,
}

impl<W: Write> PcapSink<W> {
    pub fn new(out: W) -> std::io::Result<Self> {
        let header = PcapHeader {
            snaplen: SNAPLEN as u32,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::native(),
            ..PcapHeader::default()
        };
        let buffer = std::rc::Rc::new(std::cell::RefCell::new(std::io::BufWriter::new(out)));
        let writer = PcapWriter::with_header(Shared(buffer.clone()), header)
            .map_err(std::io::Error::other)?;
        let mut sink = Self { writer, buffer };
        sink.flush()?;
        Ok(sink)
    }

    pub fn write(
        &mut self,
        timestamp: Duration,
        orig_len: u32,
        data: &[u8],
    ) -> std::io::Result<()> {
        self.writer
            .write_packet(&PcapPacket::new(timestamp, orig_len, data))
            .map(|_| ())
            .map_err(std::io::Error::other)
    }

    /// Pushes what is buffered to the file: what is flushed is a valid pcap file.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.buffer.borrow_mut().flush()
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(self) -> std::io::Result<W> {
        let Self { writer, buffer } = self;
        drop(writer);
        let buffer = std::rc::Rc::try_unwrap(buffer)
            .map_err(|_| std::io::Error::other("pcap buffer still shared"))?;
        buffer.into_inner().into_inner().map_err(|e| e.into_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::udp_request;

    #[test]
    fn filters_match_by_protocol_port_and_peer() {
        let frame = udp_request(7000, b"x");
        let all = CaptureFilter::default();
        assert!(all.matches(&frame) && all.matches(&[0u8; 3]));
        let port = CaptureFilter {
            port: Some(7000),
            ..Default::default()
        };
        assert!(port.matches(&frame));
        assert!(
            CaptureFilter {
                port: Some(40000),
                ..Default::default()
            }
            .matches(&frame),
            "either port"
        );
        assert!(
            !CaptureFilter {
                port: Some(7001),
                ..Default::default()
            }
            .matches(&frame)
        );
        assert!(
            !CaptureFilter {
                proto: Some(Protocol::Tcp),
                ..Default::default()
            }
            .matches(&frame)
        );
        let peer = CaptureFilter {
            peer: Some("198.18.0.2:40000".parse().unwrap()),
            ..Default::default()
        };
        assert!(peer.matches(&frame));
        assert!(!port.matches(&frame[..20]), "truncated: no match, no panic");
    }

    #[test]
    fn a_session_copies_what_matches_and_counts_what_finds_no_room() {
        let tap = Arc::new(CaptureTap::default());
        let mut cache = TapCache::default();
        assert!(cache.current(&tap).is_none());
        let capture = Capture::start(
            std::slice::from_ref(&tap),
            CaptureFilter {
                port: Some(7000),
                ..Default::default()
            },
        );
        let session = cache.current(&tap).expect("installed");
        let frame = udp_request(7000, b"hello");
        for i in 0..RING + 10 {
            session.record(Instant::from_nanos(i as u64), Direction::Received, &frame);
        }
        session.record(Instant::ZERO, Direction::Sent, &udp_request(9, b"other"));
        assert_eq!(capture.dropped(), 10);
        let mut seen = 0;
        let drained = capture.drain(|c| {
            assert_eq!(c.data, &frame[..]);
            assert_eq!(c.orig_len as usize, frame.len());
            assert_eq!(c.timestamp, Duration::from_nanos(seen));
            seen += 1;
        });
        assert_eq!(drained, RING);
        drop(capture);
        assert!(cache.current(&tap).is_none(), "stopped on drop");
    }

    #[test]
    fn pcap_files_read_back() {
        let frame = udp_request(7000, b"abc");
        let mut sink = PcapSink::new(Vec::new()).unwrap();
        sink.write(Duration::new(1, 5), frame.len() as u32, &frame)
            .unwrap();
        let bytes = sink.into_inner().unwrap();
        let mut reader = pcap_file::pcap::PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(reader.header().ts_resolution, TsResolution::NanoSecond);
        let packet = reader.next_packet().unwrap().unwrap();
        assert_eq!(packet.timestamp, Duration::new(1, 5));
        assert_eq!(&packet.data[..], &frame[..]);
        assert!(reader.next_packet().is_none());
    }
}
