//! The fault device against a recording handler and a `VecSink`, in virtual time.

use super::*;
use crate::phy::testing::VecSink;

/// Size of the buffer a received frame arrives in (a UMEM frame less its headroom).
const FRAME_ROOM: usize = 2048;
const FRAME_LEN: usize = 64;

/// A frame numbered `n`: Ethernet header, then the number, then a pattern.
fn frame(n: u32) -> Vec<u8> {
    let mut f = vec![0xa5u8; FRAME_ROOM];
    f[..12].fill(0x02);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f[14..18].copy_from_slice(&n.to_be_bytes());
    f
}

fn number(frame: &[u8]) -> u32 {
    u32::from_be_bytes(frame[14..18].try_into().unwrap())
}

/// Records every frame it sees; answers each in place (unchanged) if `answer`, and sends
/// `extra` new frames (numbered 1_000_000 + n) per frame.
#[derive(Default)]
struct Recorder {
    seen: Vec<(Instant, Vec<u8>)>,
    answer: bool,
    extra: usize,
}

impl FrameHandler for Recorder {
    fn handle(
        &mut self,
        now: Instant,
        frame: &mut [u8],
        len: usize,
        tx: &mut dyn FrameSink,
    ) -> Option<usize> {
        assert!(frame.len() >= len, "the frame's room holds it");
        self.seen.push((now, frame[..len].to_vec()));
        for _ in 0..self.extra {
            let n = 1_000_000 + number(frame);
            tx.send(&mut |buf: &mut [u8]| {
                buf[..FRAME_LEN].copy_from_slice(&frame_bytes(n));
                Some(FRAME_LEN)
            });
        }
        self.answer.then_some(len)
    }

    fn counter_names(&self) -> Vec<(&'static str, &'static str)> {
        vec![("inner", "a"), ("inner", "b")]
    }

    fn publish(&self, shared: &SharedCounters, offset: usize) {
        shared.store(offset, &[self.seen.len() as u64, 7]);
    }
}

fn frame_bytes(n: u32) -> Vec<u8> {
    frame(n)[..FRAME_LEN].to_vec()
}

fn config(s: &str) -> ImpairConfig {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn device(s: &str, inner: Recorder) -> Impaired<Recorder> {
    Impaired::new(inner, config(s))
}

/// Feeds frames `0..n` at `now`, 10 µs apart, polling whenever the device asks; returns
/// the in-place answers and the sink. Ends by polling until nothing is held.
fn feed(dev: &mut Impaired<Recorder>, n: u32, sink: &mut VecSink) -> Vec<Vec<u8>> {
    let mut answers = Vec::new();
    let mut now = Instant::ZERO;
    for i in 0..n {
        let mut f = frame(i);
        if let Some(len) = dev.handle(now, &mut f, FRAME_LEN, sink) {
            answers.push(f[..len].to_vec());
        }
        if dev.wants_poll(now) {
            dev.poll(now, sink);
        }
        now += Duration::from_micros(10);
    }
    drain(dev, now, sink);
    answers
}

/// Polls at each deadline until nothing is held (bounded).
fn drain(dev: &mut Impaired<Recorder>, mut now: Instant, sink: &mut VecSink) {
    for _ in 0..100_000 {
        if dev.holding() == (0, 0) {
            return;
        }
        now = now.max(dev.next_deadline().expect("something is held"));
        assert!(dev.wants_poll(now), "due at its deadline");
        dev.poll(now, sink);
    }
    panic!("frames still held: {:?}", dev.holding());
}

fn seen_numbers(dev: &Impaired<Recorder>) -> Vec<u32> {
    dev.inner().seen.iter().map(|(_, f)| number(f)).collect()
}

#[test]
fn a_clean_device_passes_everything_in_place() {
    let mut dev = device(
        "seed=1",
        Recorder {
            answer: true,
            ..Default::default()
        },
    );
    let mut sink = VecSink::new(1000);
    let answers = feed(&mut dev, 100, &mut sink);
    assert_eq!(answers.len(), 100);
    assert_eq!(seen_numbers(&dev), (0..100).collect::<Vec<_>>());
    assert!(sink.frames.is_empty());
    assert!(!dev.wants_poll(Instant::MAX));
    assert_eq!(dev.next_deadline(), None);
}

#[test]
fn loss_lands_within_five_standard_deviations() {
    // 10,000 frames at 2 %: 200 expected, σ = √(10000·0.02·0.98) = 14.
    let mut dev = device("rx-loss=2%,seed=3", Recorder::default());
    feed(&mut dev, 10_000, &mut VecSink::new(0));
    let dropped = dev.counters().get(ImpairCounter::RxDropped);
    assert!(
        (130..=270).contains(&dropped),
        "dropped {dropped} of 10000 at 2 %"
    );
    assert_eq!(dev.inner().seen.len() as u64, 10_000 - dropped);
    // TX loss, on the in-place answers: 20 % → 2000 ± 200 (5 σ = 5 · 40).
    let mut dev = device(
        "tx-loss=20%,seed=3",
        Recorder {
            answer: true,
            ..Default::default()
        },
    );
    let answers = feed(&mut dev, 10_000, &mut VecSink::new(0));
    let dropped = dev.counters().get(ImpairCounter::TxDropped);
    assert!(
        (1_800..=2_200).contains(&dropped),
        "dropped {dropped} of 10000 at 20 %"
    );
    assert_eq!(answers.len() as u64, 10_000 - dropped);
    assert_eq!(dev.inner().seen.len(), 10_000, "TX loss leaves RX alone");
}

#[test]
fn duplication_delivers_twice() {
    let mut dev = device(
        "rx-dup=100%,seed=1",
        Recorder {
            answer: true,
            ..Default::default()
        },
    );
    let mut sink = VecSink::new(1000);
    let answers = feed(&mut dev, 10, &mut sink);
    let twice: Vec<u32> = (0..10).flat_map(|n| [n, n]).collect();
    assert_eq!(seen_numbers(&dev), twice);
    for (_, f) in &dev.inner().seen {
        assert_eq!(f, &frame_bytes(number(f)), "both copies as received");
    }
    // The original is answered in place, the copy as a new frame.
    assert_eq!(answers.len(), 10);
    assert_eq!(sink.frames.len(), 10);
    assert_eq!(dev.counters().get(ImpairCounter::RxDuplicated), 10);
    // TX: each frame the handler sends goes out twice.
    let mut dev = device(
        "tx-dup=100%,seed=1",
        Recorder {
            extra: 1,
            ..Default::default()
        },
    );
    let mut sink = VecSink::new(1000);
    feed(&mut dev, 5, &mut sink);
    let sent: Vec<u32> = sink.frames.iter().map(|f| number(f)).collect();
    assert_eq!(
        sent,
        (0..5).flat_map(|n| [1_000_000 + n; 2]).collect::<Vec<_>>()
    );
    assert_eq!(dev.counters().get(ImpairCounter::TxDuplicated), 5);
}

#[test]
fn corruption_changes_exactly_one_byte_after_the_ethernet_header() {
    let mut dev = device(
        "rx-corrupt=100%,seed=5",
        Recorder {
            answer: true,
            ..Default::default()
        },
    );
    let answers = feed(&mut dev, 500, &mut VecSink::new(0));
    let mut positions = std::collections::BTreeSet::new();
    for (i, (_, seen)) in dev.inner().seen.iter().enumerate() {
        let original = frame_bytes(i as u32);
        let diff: Vec<usize> = (0..FRAME_LEN).filter(|&j| seen[j] != original[j]).collect();
        assert_eq!(diff.len(), 1, "frame {i}: bytes {diff:?} changed");
        assert!(
            diff[0] >= ETH_HLEN,
            "frame {i}: the Ethernet header was changed"
        );
        positions.insert(diff[0]);
    }
    assert!(
        positions.len() > 30,
        "the byte is picked at random: {positions:?}"
    );
    assert_eq!(answers.len(), 500);
    assert_eq!(dev.counters().get(ImpairCounter::RxCorrupted), 500);
    // TX corruption of a frame the handler sends.
    let mut dev = device(
        "tx-corrupt=100%,seed=5",
        Recorder {
            extra: 1,
            ..Default::default()
        },
    );
    let mut sink = VecSink::new(1000);
    feed(&mut dev, 50, &mut sink);
    for (n, sent) in sink.frames.iter().enumerate() {
        let original = frame_bytes(1_000_000 + n as u32);
        let diff = (0..FRAME_LEN).filter(|&j| sent[j] != original[j]).count();
        assert_eq!(diff, 1, "sent frame {n}");
    }
}

#[test]
fn delay_releases_no_earlier_than_the_deadline() {
    let mut dev = device(
        "rx-delay=5ms,seed=1",
        Recorder {
            answer: true,
            ..Default::default()
        },
    );
    let mut sink = VecSink::new(8);
    let start = Instant::from_secs(100);
    let mut f = frame(1);
    assert_eq!(
        dev.handle(start, &mut f, FRAME_LEN, &mut sink),
        None,
        "held"
    );
    assert!(dev.inner().seen.is_empty());
    let deadline = start + Duration::from_millis(5);
    assert_eq!(dev.next_deadline(), Some(deadline));
    let early = deadline - Duration::from_nanos(1);
    assert!(!dev.wants_poll(early));
    dev.poll(early, &mut sink);
    assert!(dev.inner().seen.is_empty(), "not before its deadline");
    assert!(dev.wants_poll(deadline));
    dev.poll(deadline, &mut sink);
    assert_eq!(dev.inner().seen, vec![(deadline, frame_bytes(1))]);
    // Its in-place answer went out as a new frame.
    assert_eq!(sink.frames, vec![frame_bytes(1)]);
    assert_eq!(dev.next_deadline(), None);
    assert_eq!(dev.holding(), (0, 0));

    // With jitter: each frame between delay and delay + jitter after it arrived.
    let mut dev = device("rx-delay=2ms,rx-jitter=1ms,seed=9", Recorder::default());
    let mut now = Instant::ZERO;
    let mut sink = VecSink::new(1000);
    for i in 0..200 {
        dev.handle(now, &mut frame(i), FRAME_LEN, &mut sink);
        now += Duration::from_micros(50);
        if dev.wants_poll(now) {
            dev.poll(now, &mut sink);
        }
    }
    drain(&mut dev, now, &mut sink);
    for (at, f) in &dev.inner().seen {
        let arrived = Instant::ZERO + Duration::from_micros(50) * number(f);
        let held = *at - arrived;
        assert!(
            held >= Duration::from_millis(2),
            "frame {} held {held:?}",
            number(f)
        );
        // Polled at most 50 µs late.
        assert!(
            held <= Duration::from_micros(3_050),
            "frame {} held {held:?}",
            number(f)
        );
    }
    assert_eq!(dev.inner().seen.len(), 200);
    assert_ne!(
        seen_numbers(&dev),
        (0..200).collect::<Vec<_>>(),
        "jitter reorders"
    );
}

#[test]
fn tx_delay_holds_answers_and_new_frames() {
    let mut dev = device(
        "tx-delay=1ms,seed=1",
        Recorder {
            answer: true,
            extra: 1,
            ..Default::default()
        },
    );
    let mut sink = VecSink::new(8);
    assert_eq!(
        dev.handle(Instant::ZERO, &mut frame(4), FRAME_LEN, &mut sink),
        None
    );
    assert!(sink.frames.is_empty());
    assert_eq!(dev.holding(), (0, 2));
    dev.poll(Instant::from_micros(999), &mut sink);
    assert!(sink.frames.is_empty());
    dev.poll(Instant::from_millis(1), &mut sink);
    // In the order they were sent: the new frame during handle, then the answer.
    assert_eq!(sink.frames, vec![frame_bytes(1_000_004), frame_bytes(4)]);
    assert_eq!(dev.counters().get(ImpairCounter::TxDelayed), 2);
}

#[test]
fn reordering_changes_order_but_loses_nothing() {
    let mut dev = device("rx-reorder=30%,reorder-gap=2,seed=11", Recorder::default());
    feed(&mut dev, 1_000, &mut VecSink::new(1000));
    let seen = seen_numbers(&dev);
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1_000).collect::<Vec<_>>(), "each frame once");
    let late = seen.windows(2).filter(|w| w[0] > w[1]).count();
    assert!(late > 100, "only {late} frames out of order");
    let reordered = dev.counters().get(ImpairCounter::RxReordered);
    assert!(
        (230..=370).contains(&reordered),
        "{reordered} reordered at 30 %"
    );
    // A frame is overtaken by `gap` others at most (more only when those were held too).
    for (pos, &n) in seen.iter().enumerate() {
        assert!(pos as u32 <= n + 30, "frame {n} delivered at {pos}");
    }
    // With no frame after it, a reordered frame leaves at its deadline.
    let mut dev = device(
        "rx-reorder=100%,reorder-delay=3ms,seed=1",
        Recorder::default(),
    );
    let mut sink = VecSink::new(8);
    dev.handle(Instant::ZERO, &mut frame(0), FRAME_LEN, &mut sink);
    assert_eq!(dev.next_deadline(), Some(Instant::from_millis(3)));
    dev.poll(Instant::from_millis(3), &mut sink);
    assert_eq!(seen_numbers(&dev), vec![0]);
    // TX reordering of the frames the handler sends.
    let mut dev = device(
        "tx-reorder=30%,seed=11",
        Recorder {
            extra: 1,
            ..Default::default()
        },
    );
    let mut sink = VecSink::new(10_000);
    feed(&mut dev, 1_000, &mut sink);
    let sent: Vec<u32> = sink.frames.iter().map(|f| number(f) - 1_000_000).collect();
    let mut sorted = sent.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..1_000).collect::<Vec<_>>());
    assert_ne!(sent, sorted);
}

/// Everything the device did to 2000 frames under every fault at once.
fn trace(seed: u64) -> (Vec<u32>, Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let cfg = format!("loss=5%,dup=5%,reorder=10%,corrupt=5%,jitter=100us,seed={seed}");
    let mut dev = device(
        &cfg,
        Recorder {
            answer: true,
            extra: 1,
            ..Default::default()
        },
    );
    let mut sink = VecSink::new(1_000_000);
    let answers = feed(&mut dev, 2_000, &mut sink);
    (seen_numbers(&dev), answers, sink.frames)
}

#[test]
fn the_same_seed_makes_the_same_decisions() {
    let a = trace(7);
    assert_eq!(a, trace(7));
    let b = trace(8);
    assert_ne!(a.0, b.0, "another seed, other received frames");
    assert_ne!(a.2, b.2, "another seed, other sent frames");
}

#[test]
fn a_full_pool_releases_the_oldest_early() {
    let mut dev = device("rx-delay=10ms,pool=4,seed=1", Recorder::default());
    let mut sink = VecSink::new(100);
    for i in 0..10 {
        dev.handle(
            Instant::from_micros(i.into()),
            &mut frame(i),
            FRAME_LEN,
            &mut sink,
        );
    }
    assert_eq!(dev.holding(), (4, 0));
    assert_eq!(dev.counters().get(ImpairCounter::RxReleasedEarly), 6);
    assert_eq!(
        seen_numbers(&dev),
        (0..6).collect::<Vec<_>>(),
        "oldest first"
    );
    drain(&mut dev, Instant::ZERO, &mut sink);
    assert_eq!(
        seen_numbers(&dev),
        (0..10).collect::<Vec<_>>(),
        "nothing lost"
    );
    // TX likewise: held frames leave early, none is lost.
    let mut dev = device(
        "tx-delay=10ms,pool=2,seed=1",
        Recorder {
            extra: 1,
            ..Default::default()
        },
    );
    let mut sink = VecSink::new(100);
    for i in 0..5 {
        dev.handle(Instant::ZERO, &mut frame(i), FRAME_LEN, &mut sink);
    }
    assert_eq!(sink.frames.len(), 3);
    assert_eq!(dev.counters().get(ImpairCounter::TxReleasedEarly), 3);
    drain(&mut dev, Instant::ZERO, &mut sink);
    let sent: Vec<u32> = sink.frames.iter().map(|f| number(f)).collect();
    assert_eq!(sent, (0..5).map(|n| 1_000_000 + n).collect::<Vec<_>>());
    assert_eq!(dev.counters().get(ImpairCounter::TxLost), 0);
}

#[test]
fn held_frames_wait_for_room_in_the_batch() {
    let mut dev = device(
        "rx-delay=1ms,seed=1",
        Recorder {
            answer: true,
            ..Default::default()
        },
    );
    let mut sink = VecSink::new(0);
    for i in 0..3 {
        dev.handle(Instant::ZERO, &mut frame(i), FRAME_LEN, &mut sink);
    }
    let due = Instant::from_millis(1);
    dev.poll(due, &mut sink);
    assert!(
        dev.inner().seen.is_empty(),
        "no room for answers: they wait"
    );
    assert!(dev.wants_poll(due));
    sink.budget = 2;
    dev.poll(due, &mut sink);
    assert_eq!(seen_numbers(&dev), vec![0, 1]);
    sink.budget = 10;
    dev.poll(due, &mut sink);
    assert_eq!(sink.frames.len(), 3);
    assert_eq!(dev.holding(), (0, 0));
}

#[test]
fn counters_follow_the_inner_handler_s() {
    let mut dev = device("rx-loss=100%,seed=1", Recorder::default());
    dev.handle(
        Instant::ZERO,
        &mut frame(0),
        FRAME_LEN,
        &mut VecSink::new(0),
    );
    let names = dev.counter_names();
    assert_eq!(
        &names[..3],
        &[("inner", "a"), ("inner", "b"), ("impair", "rx_frames")]
    );
    assert_eq!(
        names.len(),
        2 + <ImpairCounter as crate::counters::CounterSet>::ALL.len()
    );
    let shared = SharedCounters::new(names);
    dev.publish(&shared, 0);
    assert_eq!(shared.get("b"), Some(7));
    assert_eq!(shared.get("rx_frames"), Some(1));
    assert_eq!(shared.get("rx_dropped"), Some(1));
    assert_eq!(shared.get("tx_frames"), Some(0));
}
