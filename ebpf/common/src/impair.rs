//! The tc impairment program (`ebpf/impair`) and its loader (`fastpath_bench::impair`):
//! map names, the configuration it reads and the counters it keeps.
//!
//! Rates are in parts per million, the unit both sides compare against a random `u32`
//! reduced modulo a million (the bias of that reduction is below 0.03 %).

/// Name of the one-entry array holding the `TcImpairConfig` in force.
pub const IMPAIR_CONFIG_MAP: &str = "IMPAIR_CONFIG";
/// Name of the per-CPU array of `TcImpairCounter` totals.
pub const IMPAIR_COUNTERS_MAP: &str = "IMPAIR_COUNTERS";
/// Name of the classifier in the object file.
pub const IMPAIR_PROGRAM_NAME: &str = "fastpath_impair";
/// The skb mark of a duplicate the program made: its second pass through egress lets it go
/// untouched (and clears the mark), so a duplicate is never duplicated or dropped again.
pub const IMPAIR_DUP_MARK: u32 = 0x1fa5_d0b1;

pub const PER_MILLION: u32 = 1_000_000;

/// What the program does to the frames it matches. A `u8` protocol of 0 and a port of 0
/// match everything; a port matches either end of a TCP or UDP segment.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcImpairConfig {
    pub loss_ppm: u32,
    pub duplicate_ppm: u32,
    pub corrupt_ppm: u32,
    /// Host byte order; 0 matches any port.
    pub port: u16,
    /// `IPPROTO_TCP`, `IPPROTO_UDP`, or 0 for any frame at all.
    pub proto: u8,
    /// Explicit padding so the value has no uninitialised bytes.
    pub pad: u8,
}

/// What the program did; the index into `IMPAIR_COUNTERS`.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcImpairCounter {
    /// Frames the program saw (duplicates on their second pass excluded).
    Seen = 0,
    /// Frames the filter matched: the ones the rates apply to.
    Matched = 1,
    Dropped = 2,
    Duplicated = 3,
    Corrupted = 4,
    /// `bpf_clone_redirect` failed: the duplicate was not made.
    DuplicateFailed = 5,
}

pub const TC_IMPAIR_COUNTER_COUNT: u32 = 6;

impl TcImpairCounter {
    pub const ALL: [TcImpairCounter; TC_IMPAIR_COUNTER_COUNT as usize] = [
        TcImpairCounter::Seen,
        TcImpairCounter::Matched,
        TcImpairCounter::Dropped,
        TcImpairCounter::Duplicated,
        TcImpairCounter::Corrupted,
        TcImpairCounter::DuplicateFailed,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            TcImpairCounter::Seen => "seen",
            TcImpairCounter::Matched => "matched",
            TcImpairCounter::Dropped => "dropped",
            TcImpairCounter::Duplicated => "duplicated",
            TcImpairCounter::Corrupted => "corrupted",
            TcImpairCounter::DuplicateFailed => "duplicate_failed",
        }
    }
}

// Safety: plain-old-data: `repr(C)`, every field an integer, no padding (checked below).
#[cfg(feature = "user")]
unsafe impl aya::Pod for TcImpairConfig {}

const _: () = assert!(core::mem::size_of::<TcImpairConfig>() == 16);
