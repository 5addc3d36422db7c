//! Types shared by the XDP program (`fastpath-ebpf`) and userspace (`fastpath`).
//!
//! Everything here is `#[repr(C)]`, `Copy` and free of implicit padding, so the
//! bytes the kernel stores in a map are exactly the bytes userspace reads back.
//! Header layouts are byte offsets: the XDP program and the userspace parser
//! read the same fields at the same places.
#![no_std]

pub mod impair;

/// Name of the map of steering rules (`RuleKey` → `RuleValue`).
pub const RULES_MAP: &str = "RULES";
/// Name of the XSKMAP that holds one AF_XDP socket per RX queue.
pub const XSKS_MAP: &str = "XSKS";
/// Name of the per-CPU array of `XdpCounter` totals.
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Name of the XDP program in the object file.
pub const PROGRAM_NAME: &str = "fastpath_steer";

/// Capacity of the rule map.
pub const MAX_RULES: u32 = 1024;
/// Capacity of the XSKMAP: the largest RX queue index that can be steered, plus one.
pub const MAX_QUEUES: u32 = 64;

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

/// A steering rule: frames to `proto` / `port` (and `addr`, unless it is
/// `ANY_ADDR`) go to the AF_XDP socket of the queue they arrive on.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    /// Destination IPv4 address as its four wire bytes read with `u32::from_ne_bytes`,
    /// or `ANY_ADDR`. Both sides read the header the same way, so no byte swap is needed.
    pub addr: u32,
    /// Destination port, host byte order.
    pub port: u16,
    /// `IPPROTO_TCP` or `IPPROTO_UDP`.
    pub proto: u8,
    /// Explicit padding so the key has no uninitialised bytes.
    pub pad: u8,
}

/// Matches every destination address.
pub const ANY_ADDR: u32 = 0;

impl RuleKey {
    pub const fn new(proto: u8, addr: [u8; 4], port: u16) -> Self {
        Self {
            addr: u32::from_ne_bytes(addr),
            port,
            proto,
            pad: 0,
        }
    }

    pub const fn any_addr(self) -> Self {
        Self {
            addr: ANY_ADDR,
            ..self
        }
    }

    pub const fn addr_bytes(&self) -> [u8; 4] {
        self.addr.to_ne_bytes()
    }
}

/// The value of a rule: reserved flags (0 today). A `u32`, not a `bool`, so the
/// type has no padding (aya's integration-common does the same).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RuleValue {
    pub flags: u32,
}

/// What the XDP program did with a frame; the index into the `COUNTERS` array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpCounter {
    /// Matched a rule and was redirected into an AF_XDP socket.
    Steered = 0,
    /// Matched no rule (or was not IPv4 TCP/UDP): handed to the kernel.
    Passed = 1,
    /// A header was truncated or inconsistent: dropped.
    Malformed = 2,
    /// Matched a rule but the queue had no AF_XDP socket: handed to the kernel.
    NoSocket = 3,
    /// An IPv4 fragment: handed to the kernel, which reassembles it.
    Fragment = 4,
}

pub const XDP_COUNTER_COUNT: u32 = 5;

impl XdpCounter {
    pub const ALL: [XdpCounter; XDP_COUNTER_COUNT as usize] = [
        XdpCounter::Steered,
        XdpCounter::Passed,
        XdpCounter::Malformed,
        XdpCounter::NoSocket,
        XdpCounter::Fragment,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            XdpCounter::Steered => "steered",
            XdpCounter::Passed => "passed",
            XdpCounter::Malformed => "malformed",
            XdpCounter::NoSocket => "no_socket",
            XdpCounter::Fragment => "fragment",
        }
    }
}

/// Header layouts, as byte offsets, shared by both parsers.
pub mod layout {
    pub const ETH_HLEN: usize = 14;
    pub const ETH_DST: usize = 0;
    pub const ETH_SRC: usize = 6;
    pub const ETH_TYPE: usize = 12;
    /// One 802.1Q / 802.1ad tag: TCI then the inner EtherType.
    pub const VLAN_HLEN: usize = 4;

    pub const ETHERTYPE_IPV4: u16 = 0x0800;
    pub const ETHERTYPE_ARP: u16 = 0x0806;
    pub const ETHERTYPE_VLAN: u16 = 0x8100;
    pub const ETHERTYPE_QINQ: u16 = 0x88a8;

    pub const IPV4_MIN_HLEN: usize = 20;
    pub const IPV4_VER_IHL: usize = 0;
    pub const IPV4_TOS: usize = 1;
    pub const IPV4_TOTAL_LEN: usize = 2;
    pub const IPV4_ID: usize = 4;
    pub const IPV4_FLAGS_FRAG: usize = 6;
    pub const IPV4_TTL: usize = 8;
    pub const IPV4_PROTO: usize = 9;
    pub const IPV4_CHECKSUM: usize = 10;
    pub const IPV4_SRC: usize = 12;
    pub const IPV4_DST: usize = 16;
    /// More-fragments flag and fragment offset: a frame with any of these bits is a fragment.
    pub const IPV4_FRAG_MASK: u16 = 0x3fff;

    pub const UDP_HLEN: usize = 8;
    pub const UDP_SRC_PORT: usize = 0;
    pub const UDP_DST_PORT: usize = 2;
    pub const UDP_LEN: usize = 4;
    pub const UDP_CHECKSUM: usize = 6;

    pub const TCP_MIN_HLEN: usize = 20;
    pub const TCP_SRC_PORT: usize = 0;
    pub const TCP_DST_PORT: usize = 2;
    /// Data offset in the high nibble, in 32-bit words.
    pub const TCP_DATA_OFF: usize = 12;
}

// Safety: plain-old-data: `repr(C)`, every field an integer, no padding (checked below).
#[cfg(feature = "user")]
unsafe impl aya::Pod for RuleKey {}
// Safety: as above, a single `u32`.
#[cfg(feature = "user")]
unsafe impl aya::Pod for RuleValue {}

const _: () = assert!(core::mem::size_of::<RuleKey>() == 8);
const _: () = assert!(core::mem::size_of::<RuleValue>() == 4);
