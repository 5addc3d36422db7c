//! `--impair`: the fault device's configuration, its syntax and its errors.

use std::{fmt, str::FromStr, time::Duration};

pub(super) const PER_MILLION: u32 = 1_000_000;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(s: &str) -> ImpairConfig {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
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
}
