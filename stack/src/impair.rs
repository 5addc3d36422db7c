//! The fault device: a `FrameHandler` that sits between the rings and the stack and drops,
//! duplicates, corrupts, delays and reorders frames in each direction, seeded and
//! deterministic (smoltcp's `FaultInjector`, netem's vocabulary). Tests wrap any handler in
//! it; `--impair loss=2%,dup=1%,reorder=10%,corrupt=0.1%,seed=7` wraps the demux.
//!
//! Frames held back (delayed, reordered, a duplicate waiting for its turn) are copied into
//! buffers the device allocates up front; when they run out, the frame due first is released
//! early. A held received frame is handed to the inner handler from `poll`, and its in-place
//! answer goes out as a new frame. Each direction draws from its own PRNG stream, so the
//! same seed and the same frames give the same decisions, whatever the other way carries.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, VecDeque},
    fmt,
    str::FromStr,
    time::Duration,
};

use fastpath_common::layout::ETH_HLEN;

use crate::{
    counter_set,
    counters::{Counters, SharedCounters},
    demux::FrameHandler,
    time::Instant,
    xsk::{FrameSink, FrameWriter, TxResult},
};

/// Bytes of each held frame's buffer: the largest UMEM frame fastpath uses. A received frame
/// longer than this is never held (it cannot come from such a UMEM).
pub const HELD_FRAME_BYTES: usize = 4096;

const PER_MILLION: u32 = 1_000_000;

/// A probability in parts per million (0.0001 % steps), so parsing and comparing are exact.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(u32);

impl Rate {
    pub const ZERO: Rate = Rate(0);
    pub const ALWAYS: Rate = Rate(PER_MILLION);

    /// Parts per million, clamped to a million.
    pub const fn per_million(ppm: u32) -> Self {
        Rate(if ppm > PER_MILLION { PER_MILLION } else { ppm })
    }

    /// A percentage, rounded to a part per million and clamped to 0 ..= 100 %.
    pub fn percent(percent: f64) -> Self {
        Rate((percent.clamp(0.0, 100.0) * 10_000.0).round() as u32)
    }

    pub const fn as_per_million(self) -> u32 {
        self.0
    }

    pub fn as_fraction(self) -> f64 {
        f64::from(self.0) / f64::from(PER_MILLION)
    }
}

impl fmt::Display for Rate {
    /// `2%`, `0.1%`, `12.3456%`: what `--impair` reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.0 / 10_000, self.0 % 10_000);
        if frac == 0 {
            write!(f, "{whole}%")
        } else {
            let digits = format!("{frac:04}");
            write!(f, "{whole}.{}%", digits.trim_end_matches('0'))
        }
    }
}

/// What happens to the frames of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Dropped.
    pub loss: Rate,
    /// Delivered twice (the copy right after the original).
    pub duplicate: Rate,
    /// Held back until `reorder_gap` later frames have passed it, or `reorder_delay` (after
    /// `delay`) at the latest.
    pub reorder: Rate,
    /// One byte after the Ethernet header flipped, so a checksum catches it.
    pub corrupt: Rate,
    /// Every frame held this long.
    pub delay: Duration,
    /// And up to this much more, uniformly (frames then overtake each other too).
    pub jitter: Duration,
}

impl Faults {
    /// No fault at all: frames pass untouched and unheld.
    pub fn is_clean(&self) -> bool {
        *self == Faults::default()
    }
}

/// The fault device's configuration; `FromStr` reads the `--impair` syntax:
/// `loss=2%,dup=1%,reorder=10%,corrupt=0.1%,delay=5ms,jitter=1ms,seed=7`. The plain keys
/// apply to both directions; `rx-loss=`, `tx-delay=` … to one, and win over the plain key.
/// Also `reorder-gap=N` (frames that overtake a reordered one, default 1), `reorder-delay=`
/// (the longest it waits for them, default 1ms) and `pool=N` (frames each direction may
/// hold, default 256).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImpairConfig {
    /// Received frames, before the inner handler sees them.
    pub rx: Faults,
    /// Frames the inner handler sends (in place or new).
    pub tx: Faults,
    pub seed: u64,
    pub reorder_gap: u32,
    pub reorder_delay: Duration,
    /// Buffers of `HELD_FRAME_BYTES` each direction allocates up front.
    pub pool: usize,
}

impl Default for ImpairConfig {
    fn default() -> Self {
        Self {
            rx: Faults::default(),
            tx: Faults::default(),
            seed: 0,
            reorder_gap: 1,
            reorder_delay: Duration::from_millis(1),
            pool: 256,
        }
    }
}

/// The largest `pool`: slots are numbered with a `u16`.
pub const MAX_POOL: usize = 1 << 16;

/// Why an `--impair` string was refused; each message names the key and the accepted form.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ImpairParseError {
    #[error("nothing to impair: give key=value pairs, e.g. loss=2%,dup=1%,seed=7")]
    Empty,
    #[error("{item:?} is not key=value (e.g. loss=2%)")]
    NotKeyValue { item: String },
    #[error(
        "unknown key {key:?}: use loss, dup, reorder, corrupt (a percentage), delay, jitter \
         (a duration), each also as rx-KEY or tx-KEY, and seed, reorder-gap, reorder-delay, pool"
    )]
    UnknownKey { key: String },
    #[error("{key} is given twice")]
    Repeated { key: String },
    #[error("{key}={value}: {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: String,
    },
}

/// The keys that take a value per direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FaultKey {
    Loss,
    Duplicate,
    Reorder,
    Corrupt,
    Delay,
    Jitter,
}

impl FaultKey {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "loss" => FaultKey::Loss,
            "dup" | "duplicate" => FaultKey::Duplicate,
            "reorder" => FaultKey::Reorder,
            "corrupt" => FaultKey::Corrupt,
            "delay" => FaultKey::Delay,
            "jitter" => FaultKey::Jitter,
            _ => return None,
        })
    }

    fn apply(self, faults: &mut Faults, value: FaultValue) {
        match (self, value) {
            (FaultKey::Loss, FaultValue::Rate(r)) => faults.loss = r,
            (FaultKey::Duplicate, FaultValue::Rate(r)) => faults.duplicate = r,
            (FaultKey::Reorder, FaultValue::Rate(r)) => faults.reorder = r,
            (FaultKey::Corrupt, FaultValue::Rate(r)) => faults.corrupt = r,
            (FaultKey::Delay, FaultValue::Time(d)) => faults.delay = d,
            (FaultKey::Jitter, FaultValue::Time(d)) => faults.jitter = d,
            _ => unreachable!("each key is parsed into its own kind of value"),
        }
    }
}

#[derive(Clone, Copy)]
enum FaultValue {
    Rate(Rate),
    Time(Duration),
}

fn bad(key: &str, value: &str, expected: String) -> ImpairParseError {
    ImpairParseError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        expected,
    }
}

/// `2%`, `0.1%`, `100%`: at most four decimals (a part per million).
fn parse_percent(key: &str, value: &str) -> Result<Rate, ImpairParseError> {
    let form = || {
        format!(
            "not a percentage; write it like {key}=2% or {key}=0.1% (0% to 100%, at most 4 decimals)"
        )
    };
    let number = value
        .strip_suffix('%')
        .ok_or_else(|| bad(key, value, form()))?;
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || (!frac.is_empty() && !digits(frac)) || frac.len() > 4 {
        return Err(bad(key, value, form()));
    }
    let whole: u64 = whole.parse().map_err(|_| bad(key, value, form()))?;
    let frac: u64 = format!("{frac:0<4}").parse().unwrap_or(0);
    let ppm = whole.saturating_mul(10_000).saturating_add(frac);
    if ppm > u64::from(PER_MILLION) {
        return Err(bad(
            key,
            value,
            format!("over 100%; a rate is from {key}=0% to {key}=100%"),
        ));
    }
    Ok(Rate(ppm as u32))
}

/// `5ms`, `250us`, `1s`, `100ns`, or `0`.
fn parse_duration(key: &str, value: &str) -> Result<Duration, ImpairParseError> {
    let form =
        || format!("not a duration; write it like {key}=5ms (a whole number of ns, us, ms or s)");
    if value == "0" {
        return Ok(Duration::ZERO);
    }
    let split = value
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad(key, value, form()))?;
    let (number, unit) = value.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad(key, value, form()))?;
    let per_unit = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        _ => return Err(bad(key, value, form())),
    };
    let nanos = n
        .checked_mul(per_unit)
        .filter(|&ns| ns <= 3_600 * 1_000_000_000)
        .ok_or_else(|| bad(key, value, format!("too long; at most {key}=3600s")))?;
    Ok(Duration::from_nanos(nanos))
}

fn parse_number<T: FromStr + PartialOrd + fmt::Display>(
    key: &str,
    value: &str,
    min: T,
    max: T,
) -> Result<T, ImpairParseError> {
    value
        .parse::<T>()
        .ok()
        .filter(|v| *v >= min && *v <= max)
        .ok_or_else(|| {
            bad(
                key,
                value,
                format!("not a whole number from {min} to {max} (e.g. {key}={min})"),
            )
        })
}

impl FromStr for ImpairConfig {
    type Err = ImpairParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut config = ImpairConfig::default();
        // Plain keys first, then per-direction ones, whatever the order they came in.
        let mut both = Vec::new();
        let mut one_way = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .map(|(k, v)| (k.trim(), v.trim()))
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| ImpairParseError::NotKeyValue {
                    item: item.to_string(),
                })?;
            let canonical = match key {
                "duplicate" => "dup",
                "rx-duplicate" => "rx-dup",
                "tx-duplicate" => "tx-dup",
                k => k,
            };
            if seen.contains(&canonical) {
                return Err(ImpairParseError::Repeated {
                    key: key.to_string(),
                });
            }
            seen.push(canonical);
            match key {
                "seed" => config.seed = parse_number(key, value, 0, u64::MAX)?,
                "reorder-gap" => config.reorder_gap = parse_number(key, value, 1, 1_000)?,
                "reorder-delay" => config.reorder_delay = parse_duration(key, value)?,
                "pool" => config.pool = parse_number(key, value, 1, MAX_POOL)?,
                _ => {
                    let (direction, name) = match key.split_once('-') {
                        Some((d @ ("rx" | "tx"), name)) => (Some(d), name),
                        _ => (None, key),
                    };
                    let Some(fault) = FaultKey::parse(name) else {
                        return Err(ImpairParseError::UnknownKey {
                            key: key.to_string(),
                        });
                    };
                    let value = match fault {
                        FaultKey::Delay | FaultKey::Jitter => {
                            FaultValue::Time(parse_duration(key, value)?)
                        }
                        _ => FaultValue::Rate(parse_percent(key, value)?),
                    };
                    match direction {
                        None => both.push((fault, value)),
                        Some(d) => one_way.push((d == "rx", fault, value)),
                    }
                }
            }
        }
        if seen.is_empty() {
            return Err(ImpairParseError::Empty);
        }
        for (fault, value) in both {
            fault.apply(&mut config.rx, value);
            fault.apply(&mut config.tx, value);
        }
        for (rx, fault, value) in one_way {
            fault.apply(if rx { &mut config.rx } else { &mut config.tx }, value);
        }
        Ok(config)
    }
}

fn fmt_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    match ns {
        0 => "0".into(),
        _ if ns.is_multiple_of(1_000_000_000) => format!("{}s", ns / 1_000_000_000),
        _ if ns.is_multiple_of(1_000_000) => format!("{}ms", ns / 1_000_000),
        _ if ns.is_multiple_of(1_000) => format!("{}us", ns / 1_000),
        _ => format!("{ns}ns"),
    }
}

impl fmt::Display for ImpairConfig {
    /// The canonical `--impair` string: only what differs from the defaults, read back equal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut items = Vec::new();
        let rates = |faults: &Faults| {
            [
                ("loss", faults.loss),
                ("dup", faults.duplicate),
                ("reorder", faults.reorder),
                ("corrupt", faults.corrupt),
            ]
        };
        let times = |faults: &Faults| [("delay", faults.delay), ("jitter", faults.jitter)];
        let (rx_rates, tx_rates) = (rates(&self.rx), rates(&self.tx));
        for ((name, rx), (_, tx)) in rx_rates.into_iter().zip(tx_rates) {
            if rx == tx {
                if rx != Rate::ZERO {
                    items.push(format!("{name}={rx}"));
                }
            } else {
                items.push(format!("rx-{name}={rx}"));
                items.push(format!("tx-{name}={tx}"));
            }
        }
        for ((name, rx), (_, tx)) in times(&self.rx).into_iter().zip(times(&self.tx)) {
            if rx == tx {
                if !rx.is_zero() {
                    items.push(format!("{name}={}", fmt_duration(rx)));
                }
            } else {
                items.push(format!("rx-{name}={}", fmt_duration(rx)));
                items.push(format!("tx-{name}={}", fmt_duration(tx)));
            }
        }
        let defaults = ImpairConfig::default();
        if self.reorder_gap != defaults.reorder_gap {
            items.push(format!("reorder-gap={}", self.reorder_gap));
        }
        if self.reorder_delay != defaults.reorder_delay {
            items.push(format!(
                "reorder-delay={}",
                fmt_duration(self.reorder_delay)
            ));
        }
        if self.pool != defaults.pool {
            items.push(format!("pool={}", self.pool));
        }
        items.push(format!("seed={}", self.seed));
        f.write_str(&items.join(","))
    }
}

counter_set! {
    "impair",
    /// What the fault device did, by direction.
    pub enum ImpairCounter {
        RxFrames = "rx_frames",
        RxDropped = "rx_dropped",
        RxDuplicated = "rx_duplicated",
        RxCorrupted = "rx_corrupted",
        RxDelayed = "rx_delayed",
        RxReordered = "rx_reordered",
        /// Held frames handed on before their time because every buffer was in use.
        RxReleasedEarly = "rx_released_early",
        TxFrames = "tx_frames",
        TxDropped = "tx_dropped",
        TxDuplicated = "tx_duplicated",
        TxCorrupted = "tx_corrupted",
        TxDelayed = "tx_delayed",
        TxReordered = "tx_reordered",
        TxReleasedEarly = "tx_released_early",
        /// Held frames that found no room when released early, or fit no frame: gone.
        TxLost = "tx_lost",
    }
}

/// SplitMix64 (Steele, Lea and Flood, 2014): tiny, fast, and well mixed enough to draw
/// fault decisions; a seed of 0 is fine.
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), by the multiply-shift reduction.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    fn chance(&mut self, rate: Rate) -> bool {
        rate.0 != 0 && self.below(u64::from(PER_MILLION)) < u64::from(rate.0)
    }
}

/// What becomes of one frame.
#[derive(Clone, Copy, Debug)]
struct Fate {
    drop: bool,
    duplicate: bool,
    /// The random number that picks the byte and the flip.
    corrupt: Option<u64>,
    hold: Hold,
}

#[derive(Clone, Copy, Debug)]
enum Hold {
    No,
    Until(Instant),
    /// Until enough later frames passed, or this deadline.
    Reorder(Instant),
}

/// Flips one byte after the Ethernet header; the byte always changes.
fn corrupt(frame: &mut [u8], random: u64) -> bool {
    if frame.len() <= ETH_HLEN {
        return false;
    }
    let at = ETH_HLEN + (random % (frame.len() - ETH_HLEN) as u64) as usize;
    frame[at] ^= ((random >> 56) as u8) | 1;
    true
}

/// A reordered frame waiting for `gap` later frames to pass it.
#[derive(Clone, Copy, Debug)]
struct Reordered {
    seq: u64,
    deadline: Instant,
    slot: u16,
}

/// Where the next frame due comes from.
#[derive(Clone, Copy, Debug)]
enum Due {
    Delayed,
    Reordered,
}

/// One direction: its faults, its PRNG stream and the frames it holds.
struct Lane {
    faults: Faults,
    rng: SplitMix64,
    reorder_gap: u64,
    reorder_delay: Duration,
    /// `pool` buffers of `HELD_FRAME_BYTES`, back to back.
    store: Box<[u8]>,
    /// (length, room) of the frame in each slot.
    held: Box<[(u32, u32)]>,
    free: Vec<u16>,
    /// Delayed frames by (due, arrival, slot).
    delayed: BinaryHeap<Reverse<(Instant, u64, u16)>>,
    /// Reordered frames in arrival order (so deadlines and release points ascend too).
    reordered: VecDeque<Reordered>,
    /// Arrival number of the next frame that is not dropped (from 1).
    next_seq: u64,
    /// The highest arrival number handed on so far.
    passed: u64,
    /// Where a dropped TX frame is written, and a duplicate waits for its second send.
    scratch: Box<[u8]>,
}

impl Lane {
    fn new(faults: Faults, config: &ImpairConfig, stream: u64) -> Self {
        let pool = config.pool.clamp(1, MAX_POOL);
        Self {
            faults,
            rng: SplitMix64(config.seed ^ stream),
            reorder_gap: u64::from(config.reorder_gap.max(1)),
            reorder_delay: config.reorder_delay,
            store: vec![0; pool * HELD_FRAME_BYTES].into_boxed_slice(),
            held: vec![(0, 0); pool].into_boxed_slice(),
            free: (0..pool).rev().map(|s| s as u16).collect(),
            delayed: BinaryHeap::with_capacity(pool),
            reordered: VecDeque::with_capacity(pool),
            next_seq: 1,
            passed: 0,
            scratch: vec![0; HELD_FRAME_BYTES].into_boxed_slice(),
        }
    }

    fn decide(&mut self, now: Instant) -> Fate {
        let f = self.faults;
        if self.rng.chance(f.loss) {
            return Fate {
                drop: true,
                duplicate: false,
                corrupt: None,
                hold: Hold::No,
            };
        }
        let duplicate = self.rng.chance(f.duplicate);
        let corrupt = self.rng.chance(f.corrupt).then(|| self.rng.next());
        let reorder = self.rng.chance(f.reorder);
        let mut delay = f.delay;
        if !f.jitter.is_zero() {
            let extra = self.rng.below(f.jitter.as_nanos() as u64 + 1);
            delay += Duration::from_nanos(extra);
        }
        let hold = if reorder {
            Hold::Reorder(now + delay + self.reorder_delay)
        } else if delay.is_zero() {
            Hold::No
        } else {
            Hold::Until(now + delay)
        };
        Fate {
            drop: false,
            duplicate,
            corrupt,
            hold,
        }
    }

    fn seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    fn buf(&self, slot: u16) -> &[u8] {
        let (len, _) = self.held[slot as usize];
        let at = slot as usize * HELD_FRAME_BYTES;
        &self.store[at..at + len as usize]
    }

    /// The slot's buffer up to its room, and the frame's length.
    fn buf_mut(&mut self, slot: u16) -> (&mut [u8], usize) {
        let (len, room) = self.held[slot as usize];
        let at = slot as usize * HELD_FRAME_BYTES;
        (&mut self.store[at..at + room as usize], len as usize)
    }

    /// Copies `frame` into `slot`, keeping `room` bytes for an answer.
    fn fill(&mut self, slot: u16, frame: &[u8], room: usize) {
        let at = slot as usize * HELD_FRAME_BYTES;
        self.store[at..at + frame.len()].copy_from_slice(frame);
        self.held[slot as usize] = (frame.len() as u32, room as u32);
    }

    fn hold(&mut self, slot: u16, seq: u64, hold: Hold) {
        match hold {
            Hold::Until(due) => self.delayed.push(Reverse((due, seq, slot))),
            Hold::Reorder(deadline) => self.reordered.push_back(Reordered {
                seq,
                deadline,
                slot,
            }),
            Hold::No => self.delayed.push(Reverse((Instant::ZERO, seq, slot))),
        }
    }

    fn passed(&mut self, seq: u64) {
        self.passed = self.passed.max(seq);
    }

    /// When the first held frame is due: `Instant::ZERO` if a reordered frame has been
    /// passed by enough others already.
    fn next_due(&self) -> Option<Instant> {
        let delayed = self.delayed.peek().map(|Reverse((due, _, _))| *due);
        let reordered = self.reordered.front().map(|r| {
            if self.passed >= r.seq + self.reorder_gap {
                Instant::ZERO
            } else {
                r.deadline
            }
        });
        match (delayed, reordered) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn due(&self, now: Instant) -> Option<Due> {
        let delayed = self
            .delayed
            .peek()
            .filter(|Reverse((due, _, _))| *due <= now)
            .map(|Reverse((due, _, _))| *due);
        let reordered = self
            .reordered
            .front()
            .filter(|r| r.deadline <= now || self.passed >= r.seq + self.reorder_gap)
            .map(|r| r.deadline.min(now));
        match (delayed, reordered) {
            (Some(d), Some(r)) if r < d => Some(Due::Reordered),
            (Some(_), _) => Some(Due::Delayed),
            (None, Some(_)) => Some(Due::Reordered),
            (None, None) => None,
        }
    }

    /// The held frame due first, whether or not its time came (for early release).
    fn oldest(&self) -> Option<Due> {
        match (self.delayed.peek(), self.reordered.front()) {
            (Some(Reverse((due, _, _))), Some(r)) if r.deadline < *due => Some(Due::Reordered),
            (Some(_), _) => Some(Due::Delayed),
            (None, Some(_)) => Some(Due::Reordered),
            (None, None) => None,
        }
    }

    /// Takes the frame out of its queue: (slot, arrival number).
    fn take(&mut self, from: Due) -> (u16, u64) {
        match from {
            Due::Delayed => {
                let Reverse((_, seq, slot)) = self.delayed.pop().expect("a delayed frame");
                (slot, seq)
            }
            Due::Reordered => {
                let r = self.reordered.pop_front().expect("a reordered frame");
                (r.slot, r.seq)
            }
        }
    }

    fn release_slot(&mut self, slot: u16) {
        self.free.push(slot);
    }

    fn holding(&self) -> usize {
        self.delayed.len() + self.reordered.len()
    }
}

/// The TX side seen by the inner handler: each frame it sends meets the TX faults.
struct ImpairedSink<'a, 'b> {
    lane: &'a mut Lane,
    counters: &'a mut Counters<ImpairCounter>,
    inner: &'a mut (dyn FrameSink + 'b),
    now: Instant,
}

impl ImpairedSink<'_, '_> {
    /// A free TX slot; with none, the frame due first goes out now (or is lost).
    fn slot(&mut self) -> u16 {
        if let Some(slot) = self.lane.free.pop() {
            return slot;
        }
        let from = self
            .lane
            .oldest()
            .expect("no free slot, so some frame is held");
        let (slot, seq) = self.lane.take(from);
        self.counters.bump(ImpairCounter::TxReleasedEarly);
        self.send_held(slot, seq);
        slot
    }

    /// Sends a held frame as it is; the slot stays taken.
    fn send_held(&mut self, slot: u16, seq: u64) -> TxResult {
        let frame = self.lane.buf(slot);
        let result = self.inner.send(&mut |buf: &mut [u8]| {
            let out = buf.get_mut(..frame.len())?;
            out.copy_from_slice(frame);
            Some(frame.len())
        });
        match result {
            TxResult::Sent => self.lane.passed(seq),
            TxResult::Full | TxResult::Declined => self.counters.bump(ImpairCounter::TxLost),
        }
        result
    }

    /// Holds a copy of `frame` as `hold` says.
    fn hold_copy(&mut self, frame: &[u8], hold: Hold) {
        let slot = self.slot();
        self.lane.fill(slot, frame, frame.len());
        let seq = self.lane.seq();
        self.lane.hold(slot, seq, hold);
    }

    fn count_hold(&mut self, hold: Hold) {
        match hold {
            Hold::No => {}
            Hold::Until(_) => self.counters.bump(ImpairCounter::TxDelayed),
            Hold::Reorder(_) => self.counters.bump(ImpairCounter::TxReordered),
        }
    }

    /// The TX faults on an answer the inner handler wrote in place: the length to send in
    /// place, or None when it is dropped or held (a held copy goes out from `poll`).
    fn in_place(&mut self, frame: &mut [u8], len: usize) -> Option<usize> {
        self.counters.bump(ImpairCounter::TxFrames);
        let fate = self.lane.decide(self.now);
        if fate.drop {
            self.counters.bump(ImpairCounter::TxDropped);
            return None;
        }
        let frame = &mut frame[..len];
        if let Some(random) = fate.corrupt
            && corrupt(frame, random)
        {
            self.counters.bump(ImpairCounter::TxCorrupted);
        }
        if fate.duplicate {
            self.counters.bump(ImpairCounter::TxDuplicated);
        }
        self.count_hold(fate.hold);
        match fate.hold {
            Hold::No => {
                let seq = self.lane.seq();
                if fate.duplicate {
                    // The copy goes first as a new frame; the original follows in place.
                    let copy = self.lane.seq();
                    let sent = self.inner.send(&mut |buf: &mut [u8]| {
                        buf.get_mut(..len)?.copy_from_slice(frame);
                        Some(len)
                    });
                    if sent == TxResult::Sent {
                        self.lane.passed(copy);
                    } else {
                        self.hold_copy(frame, Hold::Until(self.now));
                    }
                }
                self.lane.passed(seq);
                self.release_passed();
                Some(len)
            }
            hold => {
                self.hold_copy(frame, hold);
                if fate.duplicate {
                    self.hold_copy(frame, hold);
                }
                None
            }
        }
    }

    /// Sends the copy of a frame just sent, kept in the scratch buffer; with no room left in
    /// the batch it waits in a slot for the next `poll`.
    fn send_duplicate(&mut self, len: usize) {
        let seq = self.lane.seq();
        let copy = &self.lane.scratch[..len];
        let sent = self.inner.send(&mut |buf: &mut [u8]| {
            buf.get_mut(..len)?.copy_from_slice(copy);
            Some(len)
        });
        if sent == TxResult::Sent {
            self.lane.passed(seq);
            return;
        }
        let slot = self.slot();
        let Lane { store, scratch, .. } = &mut *self.lane;
        let at = slot as usize * HELD_FRAME_BYTES;
        store[at..at + len].copy_from_slice(&scratch[..len]);
        self.lane.held[slot as usize] = (len as u32, len as u32);
        self.lane.hold(slot, seq, Hold::Until(self.now));
    }

    /// Sends the reordered frames enough others have passed.
    fn release_passed(&mut self) {
        while self.inner.room() > 0
            && self
                .lane
                .reordered
                .front()
                .is_some_and(|r| self.lane.passed >= r.seq + self.lane.reorder_gap)
        {
            let (slot, seq) = self.lane.take(Due::Reordered);
            self.send_held(slot, seq);
            self.lane.release_slot(slot);
        }
    }

    /// Sends every held frame due by now that the batch has room for.
    fn release_due(&mut self) {
        while self.inner.room() > 0 {
            let Some(from) = self.lane.due(self.now) else {
                return;
            };
            let (slot, seq) = self.lane.take(from);
            self.send_held(slot, seq);
            self.lane.release_slot(slot);
        }
    }
}

impl FrameSink for ImpairedSink<'_, '_> {
    fn send(&mut self, write: &mut FrameWriter<'_>) -> TxResult {
        // A frame that could not go anyway meets no fault and draws nothing.
        if self.inner.room() == 0 {
            return TxResult::Full;
        }
        self.counters.bump(ImpairCounter::TxFrames);
        let fate = self.lane.decide(self.now);
        if fate.drop {
            return match write(&mut self.lane.scratch) {
                Some(_) => {
                    self.counters.bump(ImpairCounter::TxDropped);
                    TxResult::Sent
                }
                None => TxResult::Declined,
            };
        }
        if let Hold::Until(_) | Hold::Reorder(_) = fate.hold {
            let slot = self.slot();
            let at = slot as usize * HELD_FRAME_BYTES;
            let Some(len) = write(&mut self.lane.store[at..at + HELD_FRAME_BYTES])
                .filter(|&n| n <= HELD_FRAME_BYTES)
            else {
                self.lane.release_slot(slot);
                return TxResult::Declined;
            };
            self.lane.held[slot as usize] = (len as u32, len as u32);
            if let Some(random) = fate.corrupt {
                let (buf, len) = self.lane.buf_mut(slot);
                if corrupt(&mut buf[..len], random) {
                    self.counters.bump(ImpairCounter::TxCorrupted);
                }
            }
            self.count_hold(fate.hold);
            let seq = self.lane.seq();
            self.lane.hold(slot, seq, fate.hold);
            if fate.duplicate {
                self.counters.bump(ImpairCounter::TxDuplicated);
                let copy = self.slot();
                let at = slot as usize * HELD_FRAME_BYTES;
                let (from, to) = (at, copy as usize * HELD_FRAME_BYTES);
                self.lane.store.copy_within(from..from + len, to);
                self.lane.held[copy as usize] = (len as u32, len as u32);
                let seq = self.lane.seq();
                self.lane.hold(copy, seq, fate.hold);
            }
            return TxResult::Sent;
        }
        let scratch = &mut self.lane.scratch;
        let mut written = 0;
        let result = self.inner.send(&mut |buf: &mut [u8]| {
            let len = write(buf)?;
            let frame = buf.get_mut(..len)?;
            if let Some(random) = fate.corrupt {
                corrupt(frame, random);
            }
            if fate.duplicate {
                scratch.get_mut(..len)?.copy_from_slice(frame);
            }
            written = len;
            Some(len)
        });
        if result != TxResult::Sent {
            return result;
        }
        if fate.corrupt.is_some() {
            self.counters.bump(ImpairCounter::TxCorrupted);
        }
        let seq = self.lane.seq();
        self.lane.passed(seq);
        if fate.duplicate {
            self.counters.bump(ImpairCounter::TxDuplicated);
            self.send_duplicate(written);
        }
        self.release_passed();
        TxResult::Sent
    }

    fn room(&self) -> usize {
        self.inner.room()
    }
}

/// A `FrameHandler` whose received and sent frames meet the faults of an `ImpairConfig`.
pub struct Impaired<H: FrameHandler> {
    inner: H,
    config: ImpairConfig,
    rx: Lane,
    tx: Lane,
    counters: Counters<ImpairCounter>,
    /// How many counters the inner handler publishes before ours.
    inner_counters: usize,
}

/// Independent PRNG streams per direction.
const RX_STREAM: u64 = 0x5258_5f69_6d70_6169; // "RX_impai"
const TX_STREAM: u64 = 0x5458_5f69_6d70_6169; // "TX_impai"

impl<H: FrameHandler> Impaired<H> {
    /// Wraps `inner`; allocates `config.pool` buffers of `HELD_FRAME_BYTES` per direction.
    pub fn new(inner: H, config: ImpairConfig) -> Self {
        let inner_counters = inner.counter_names().len();
        Self {
            rx: Lane::new(config.rx, &config, RX_STREAM),
            tx: Lane::new(config.tx, &config, TX_STREAM),
            inner,
            config,
            counters: Counters::default(),
            inner_counters,
        }
    }

    pub fn config(&self) -> &ImpairConfig {
        &self.config
    }

    pub fn inner(&self) -> &H {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut H {
        &mut self.inner
    }

    pub fn into_inner(self) -> H {
        self.inner
    }

    pub fn counters(&self) -> &Counters<ImpairCounter> {
        &self.counters
    }

    /// Frames held now: (received, sent).
    pub fn holding(&self) -> (usize, usize) {
        (self.rx.holding(), self.tx.holding())
    }
}

/// Hands a held received frame to the inner handler; an answer it writes in place goes out
/// as a new frame, through the TX faults.
fn deliver_held<H: FrameHandler>(
    inner: &mut H,
    rx: &mut Lane,
    out: &mut ImpairedSink<'_, '_>,
    slot: u16,
    seq: u64,
) {
    let now = out.now;
    let (buf, len) = rx.buf_mut(slot);
    if let Some(answer) = inner.handle(now, buf, len, out) {
        let (buf, _) = rx.buf_mut(slot);
        if let Some(n) = out.in_place(buf, answer) {
            let frame = &buf[..n];
            let sent = out.inner.send(&mut |b: &mut [u8]| {
                b.get_mut(..n)?.copy_from_slice(frame);
                Some(n)
            });
            if sent != TxResult::Sent {
                out.counters.bump(ImpairCounter::TxLost);
            }
        }
    }
    rx.passed(seq);
    rx.release_slot(slot);
}

/// A free RX slot; with none, the frame due first is handed on now.
fn rx_slot<H: FrameHandler>(inner: &mut H, rx: &mut Lane, out: &mut ImpairedSink<'_, '_>) -> u16 {
    if let Some(slot) = rx.free.pop() {
        return slot;
    }
    let from = rx.oldest().expect("no free slot, so some frame is held");
    let (slot, seq) = rx.take(from);
    out.counters.bump(ImpairCounter::RxReleasedEarly);
    deliver_held(inner, rx, out, slot, seq);
    rx.free.pop().expect("the slot just released")
}

/// Hands on the reordered frames enough others have passed, while answers have room.
fn release_passed_rx<H: FrameHandler>(
    inner: &mut H,
    rx: &mut Lane,
    out: &mut ImpairedSink<'_, '_>,
) {
    while out.inner.room() > 0
        && rx
            .reordered
            .front()
            .is_some_and(|r| rx.passed >= r.seq + rx.reorder_gap)
    {
        let (slot, seq) = rx.take(Due::Reordered);
        deliver_held(inner, rx, out, slot, seq);
    }
}

impl<H: FrameHandler> FrameHandler for Impaired<H> {
    fn handle(
        &mut self,
        now: Instant,
        frame: &mut [u8],
        len: usize,
        tx: &mut dyn FrameSink,
    ) -> Option<usize> {
        let Self {
            inner,
            rx,
            tx: tx_lane,
            counters,
            ..
        } = self;
        let mut out = ImpairedSink {
            lane: tx_lane,
            counters,
            inner: tx,
            now,
        };
        out.counters.bump(ImpairCounter::RxFrames);
        let fate = rx.decide(now);
        if fate.drop {
            out.counters.bump(ImpairCounter::RxDropped);
            return None;
        }
        let len = len.min(frame.len());
        if let Some(random) = fate.corrupt
            && corrupt(&mut frame[..len], random)
        {
            out.counters.bump(ImpairCounter::RxCorrupted);
        }
        if fate.duplicate {
            out.counters.bump(ImpairCounter::RxDuplicated);
        }
        let room = frame.len().min(HELD_FRAME_BYTES);
        let hold = if len > room { Hold::No } else { fate.hold };
        match hold {
            Hold::Until(_) => out.counters.bump(ImpairCounter::RxDelayed),
            Hold::Reorder(_) => out.counters.bump(ImpairCounter::RxReordered),
            Hold::No => {}
        }
        if !matches!(hold, Hold::No) {
            for _ in 0..1 + usize::from(fate.duplicate) {
                let slot = rx_slot(inner, rx, &mut out);
                rx.fill(slot, &frame[..len], room);
                let seq = rx.seq();
                rx.hold(slot, seq, hold);
            }
            return None;
        }
        let seq = rx.seq();
        // The copy is taken before the inner handler writes its answer over the frame.
        let copy = fate.duplicate.then(|| {
            let slot = rx_slot(inner, rx, &mut out);
            rx.fill(slot, &frame[..len], room);
            (slot, rx.seq())
        });
        let answer = inner
            .handle(now, frame, len, &mut out)
            .and_then(|n| out.in_place(frame, n));
        rx.passed(seq);
        if let Some((slot, seq)) = copy {
            deliver_held(inner, rx, &mut out, slot, seq);
        }
        release_passed_rx(inner, rx, &mut out);
        answer
    }

    fn wants_poll(&self, now: Instant) -> bool {
        self.rx.due(now).is_some() || self.tx.due(now).is_some() || self.inner.wants_poll(now)
    }

    fn poll(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        let Self {
            inner,
            rx,
            tx: tx_lane,
            counters,
            ..
        } = self;
        let mut out = ImpairedSink {
            lane: tx_lane,
            counters,
            inner: tx,
            now,
        };
        // Received frames first: an answer needs room in the batch, so stop when it is spent.
        while out.inner.room() > 0 {
            let Some(from) = rx.due(now) else { break };
            let (slot, seq) = rx.take(from);
            deliver_held(inner, rx, &mut out, slot, seq);
        }
        if inner.wants_poll(now) {
            inner.poll(now, &mut out);
        }
        out.release_due();
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.rx.next_due(),
            self.tx.next_due(),
            self.inner.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn counter_names(&self) -> Vec<(&'static str, &'static str)> {
        let mut names = self.inner.counter_names();
        names.extend(Counters::<ImpairCounter>::names());
        names
    }

    fn publish(&self, shared: &SharedCounters, offset: usize) {
        self.inner.publish(shared, offset);
        shared.store(offset + self.inner_counters, self.counters.values());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xsk::testing::VecSink;

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
    fn parses_the_command_line_syntax() {
        let c = config("loss=2%,dup=1%,reorder=10%,corrupt=0.1%,seed=7");
        let faults = Faults {
            loss: Rate::per_million(20_000),
            duplicate: Rate::per_million(10_000),
            reorder: Rate::per_million(100_000),
            corrupt: Rate::per_million(1_000),
            ..Faults::default()
        };
        assert_eq!((c.rx, c.tx, c.seed), (faults, faults, 7));
        let c = config("tx-loss=5%, loss=1% ,delay=5ms,rx-jitter=250us,reorder-gap=3,pool=16");
        assert_eq!(c.rx.loss, Rate::percent(1.0));
        assert_eq!(c.tx.loss, Rate::percent(5.0), "a direction's key wins");
        assert_eq!(
            (c.rx.delay, c.tx.delay),
            (Duration::from_millis(5), Duration::from_millis(5))
        );
        assert_eq!(
            (c.rx.jitter, c.tx.jitter),
            (Duration::from_micros(250), Duration::ZERO)
        );
        assert_eq!((c.reorder_gap, c.pool), (3, 16));
        assert_eq!(
            config("loss=100%,corrupt=0.0001%").rx.corrupt,
            Rate::per_million(1)
        );
        // Display gives back what parses to the same.
        for s in [
            "loss=2%,dup=1%,reorder=10%,corrupt=0.1%,seed=7",
            "rx-loss=1%,tx-loss=5%,delay=5ms,rx-jitter=250us,tx-jitter=0,reorder-gap=3,pool=16,seed=0",
            "loss=12.3456%,reorder-delay=3ns,seed=18446744073709551615",
        ] {
            let c = config(s);
            assert_eq!(config(&c.to_string()), c, "{s} → {c}");
        }
        assert_eq!(
            config("loss=2%,dup=1%,seed=7").to_string(),
            "loss=2%,dup=1%,seed=7"
        );
    }

    #[test]
    fn clap_reads_it_as_a_command_line_argument() {
        use clap::Parser;
        #[derive(Parser)]
        struct Args {
            #[arg(long, value_name = "FAULTS")]
            impair: Option<ImpairConfig>,
        }
        let args = Args::try_parse_from(["fastpath", "--impair", "loss=2%,seed=7"]).unwrap();
        assert_eq!(args.impair, Some(config("loss=2%,seed=7")));
        let error = Args::try_parse_from(["fastpath", "--impair", "loss=2"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains("not a percentage; write it like loss=2%"),
            "{error}"
        );
    }

    #[test]
    fn refuses_bad_input_naming_the_key_and_the_form() {
        let error = |s: &str| s.parse::<ImpairConfig>().unwrap_err().to_string();
        let cases = [
            ("", "key=value pairs"),
            ("lose=2%", "unknown key \"lose\""),
            ("rx-seed=1", "unknown key \"rx-seed\""),
            ("loss", "\"loss\" is not key=value"),
            (
                "loss=2",
                "loss=2: not a percentage; write it like loss=2% or loss=0.1%",
            ),
            ("dup=101%", "dup=101%: over 100%"),
            ("tx-corrupt=-1%", "tx-corrupt=-1%: not a percentage"),
            ("loss=0.00001%", "at most 4 decimals"),
            ("loss=1%,loss=2%", "loss is given twice"),
            ("dup=1%,duplicate=2%", "duplicate is given twice"),
            (
                "delay=5",
                "delay=5: not a duration; write it like delay=5ms",
            ),
            ("delay=5min", "not a duration"),
            ("jitter=1.5ms", "not a duration"),
            (
                "seed=x",
                "seed=x: not a whole number from 0 to 18446744073709551615",
            ),
            ("pool=0", "pool=0: not a whole number from 1 to 65536"),
            ("reorder-gap=5000", "from 1 to 1000"),
        ];
        for (input, expected) in cases {
            let message = error(input);
            assert!(
                message.contains(expected),
                "{input:?}: {message:?} lacks {expected:?}"
            );
        }
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
}
