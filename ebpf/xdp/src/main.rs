//! The XDP program: parse Ethernet (one 802.1Q tag), IPv4 (with options), TCP and
//! UDP with every read bounds-checked, and redirect the frames that match a rule
//! into the AF_XDP socket of their RX queue. Everything else goes to the kernel.
//!
//! Only a frame that matches a rule is judged: one fastpath does not own goes to the kernel
//! as it came. The redirect falls back to XDP_PASS, so a queue without a socket never
//! loses traffic. Per-CPU counters record each outcome. aya-log reports rare events only:
//! why a steered frame was malformed (debug) and a queue with no socket while rules exist
//! (warn, at most once a second per CPU); the level is fixed at load, so a disabled call
//! is removed by the verifier (measured earlier: a log line per packet halves the rate).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::{HashMap, PerCpuArray, XskMap},
    programs::XdpContext,
};
use aya_log_ebpf::{debug, warn};
use fastpath_common::{
    IPPROTO_TCP, IPPROTO_UDP, MAX_QUEUES, MAX_RULES, RuleKey, RuleValue, XDP_COUNTER_COUNT,
    XdpCounter, layout::*,
};

#[map(name = "RULES")]
static RULES: HashMap<RuleKey, RuleValue> = HashMap::with_max_entries(MAX_RULES, 0);

#[map(name = "XSKS")]
static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

#[map(name = "COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(XDP_COUNTER_COUNT, 0);

/// When this CPU last logged a warning (ns, bpf_ktime_get_ns), for the rate limit.
#[map(name = "LAST_WARN")]
static LAST_WARN: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn fastpath_steer(ctx: XdpContext) -> u32 {
    let (counter, action) = classify(&ctx);
    count(counter);
    action
}

#[inline(always)]
fn count(counter: XdpCounter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // Safety: the pointer comes from the map lookup and points at this CPU's slot;
        // XDP runs with preemption disabled, so no one else writes it concurrently.
        unsafe { *slot += 1 };
    }
}

/// Reads `N` bytes at `offset` from the start of the frame, or fails if the frame is shorter.
#[inline(always)]
fn load<const N: usize>(ctx: &XdpContext, offset: usize) -> Result<[u8; N], ()> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + N > end {
        return Err(());
    }
    // Safety: `start + offset .. start + offset + N` lies inside the packet, checked
    // against data_end just above; `[u8; N]` has alignment 1.
    Ok(unsafe { *((start + offset) as *const [u8; N]) })
}

#[inline(always)]
fn load_u16(ctx: &XdpContext, offset: usize) -> Result<u16, ()> {
    load::<2>(ctx, offset).map(u16::from_be_bytes)
}

const PASSED: (XdpCounter, u32) = (XdpCounter::Passed, xdp_action::XDP_PASS);

/// Why a steered frame was judged malformed: the header, the field and its offset in the
/// frame, for the debug log line.
struct Malformed {
    header: &'static str,
    field: &'static str,
    offset: usize,
}

#[inline(always)]
fn malformed(ctx: &XdpContext, why: Malformed) -> (XdpCounter, u32) {
    // Removed by the verifier unless the level is debug (AYA_LOG_LEVEL is set at load).
    debug!(
        ctx,
        "malformed {} frame: {} at offset {}", why.header, why.field, why.offset
    );
    (XdpCounter::Malformed, xdp_action::XDP_DROP)
}

/// At most one warning a second per CPU: the events it reports should never happen, and
/// when one does it may happen on every frame.
const WARN_INTERVAL_NS: u64 = 1_000_000_000;

#[inline(always)]
fn warn_allowed() -> bool {
    let Some(last) = LAST_WARN.get_ptr_mut(0) else {
        return false;
    };
    // Safety: a helper with no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // Safety: the pointer is this CPU's slot from the map lookup; XDP runs with
    // preemption disabled, so no one else touches it concurrently.
    unsafe {
        if *last != 0 && now.wrapping_sub(*last) < WARN_INTERVAL_NS {
            return false;
        }
        *last = now;
    }
    true
}

/// Classifies a frame. Only a frame that matches a rule is judged: one whose destination
/// port cannot be read, or matches no rule, goes to the kernel untouched, so traffic that
/// fastpath does not own keeps the kernel's own counters and behaviour.
#[inline(always)]
fn classify(ctx: &XdpContext) -> (XdpCounter, u32) {
    let Some(l3) = ipv4_offset(ctx) else {
        return PASSED;
    };
    let dst = match destination(ctx, l3) {
        Ok(dst) => dst,
        Err(outcome) => return outcome,
    };
    if !rule_matches(&dst) {
        return PASSED;
    }
    // Steered: now the headers must be whole and consistent.
    if let Err(why) = check_headers(ctx, &dst) {
        return malformed(ctx, why);
    }
    redirect(ctx, dst.port)
}

/// Where the IPv4 header starts, behind Ethernet and one 802.1Q tag; `None` for a frame
/// that is not IPv4 (or too short to tell).
#[inline(always)]
fn ipv4_offset(ctx: &XdpContext) -> Option<usize> {
    let Ok(mut ethertype) = load_u16(ctx, ETH_TYPE) else {
        return None;
    };
    let mut l3 = ETH_HLEN;
    if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
        let Ok(inner) = load_u16(ctx, ETH_HLEN + 2) else {
            return None;
        };
        ethertype = inner;
        l3 += VLAN_HLEN;
    }
    if ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    Some(l3)
}

/// A UDP or TCP frame's destination, and the IPv4 header it was read from.
struct Destination {
    l3: usize,
    l4: usize,
    ip: [u8; IPV4_MIN_HLEN],
    header_len: usize,
    proto: u8,
    addr: [u8; 4],
    port: u16,
}

/// Finds the destination: protocol, address, and the port behind the header length. A
/// frame without one goes to the kernel (`Err`: its outcome), an IPv4 fragment counted.
#[inline(always)]
fn destination(ctx: &XdpContext, l3: usize) -> Result<Destination, (XdpCounter, u32)> {
    let Ok(ip) = load::<IPV4_MIN_HLEN>(ctx, l3) else {
        return Err(PASSED);
    };
    let proto = ip[IPV4_PROTO];
    if proto != IPPROTO_UDP && proto != IPPROTO_TCP {
        return Err(PASSED);
    }
    let flags_frag = u16::from_be_bytes([ip[IPV4_FLAGS_FRAG], ip[IPV4_FLAGS_FRAG + 1]]);
    if flags_frag & IPV4_FRAG_MASK != 0 {
        return Err((XdpCounter::Fragment, xdp_action::XDP_PASS));
    }
    let header_len = ((ip[IPV4_VER_IHL] & 0x0f) as usize) * 4;
    if header_len < IPV4_MIN_HLEN {
        // No port can be read behind a header shorter than its minimum.
        return Err(PASSED);
    }
    let l4 = l3 + header_len;
    // Source and destination ports lead both the UDP and the TCP header.
    let Ok(ports) = load::<4>(ctx, l4) else {
        return Err(PASSED);
    };
    Ok(Destination {
        l3,
        l4,
        ip,
        header_len,
        proto,
        addr: [
            ip[IPV4_DST],
            ip[IPV4_DST + 1],
            ip[IPV4_DST + 2],
            ip[IPV4_DST + 3],
        ],
        port: u16::from_be_bytes([ports[2], ports[3]]),
    })
}

/// Whether a rule names the destination, by address or for any address.
#[inline(always)]
fn rule_matches(dst: &Destination) -> bool {
    let key = RuleKey::new(dst.proto, dst.addr, dst.port);
    // Safety: the map holds `RuleValue`s; the reference is only tested for presence.
    unsafe { RULES.get(&key).is_some() || RULES.get(&key.any_addr()).is_some() }
}

/// A steered frame's headers, whole and consistent: the IPv4 version and total length,
/// then the UDP length or the TCP data offset.
#[inline(always)]
fn check_headers(ctx: &XdpContext, dst: &Destination) -> Result<(), Malformed> {
    let frame_len = ctx.data_end() - ctx.data();
    let (ip, l3, l4, header_len) = (&dst.ip, dst.l3, dst.l4, dst.header_len);
    let version = ip[IPV4_VER_IHL] >> 4;
    if version != 4 {
        return Err(Malformed {
            header: "IPv4",
            field: "version",
            offset: l3 + IPV4_VER_IHL,
        });
    }
    let total_len = u16::from_be_bytes([ip[IPV4_TOTAL_LEN], ip[IPV4_TOTAL_LEN + 1]]) as usize;
    // Trailing Ethernet padding is fine; a total length past the frame, or shorter than
    // the header, is not.
    if total_len < header_len || total_len > frame_len - l3 {
        return Err(Malformed {
            header: "IPv4",
            field: "total length",
            offset: l3 + IPV4_TOTAL_LEN,
        });
    }
    let l4_len = total_len - header_len;
    if dst.proto == IPPROTO_UDP {
        let Ok(udp) = load::<UDP_HLEN>(ctx, l4) else {
            return Err(Malformed {
                header: "UDP",
                field: "header (truncated)",
                offset: l4,
            });
        };
        let udp_len = u16::from_be_bytes([udp[UDP_LEN], udp[UDP_LEN + 1]]) as usize;
        if udp_len < UDP_HLEN || udp_len > l4_len {
            return Err(Malformed {
                header: "UDP",
                field: "length",
                offset: l4 + UDP_LEN,
            });
        }
    } else {
        let Ok(tcp) = load::<TCP_MIN_HLEN>(ctx, l4) else {
            return Err(Malformed {
                header: "TCP",
                field: "header (truncated)",
                offset: l4,
            });
        };
        let data_off = ((tcp[TCP_DATA_OFF] >> 4) as usize) * 4;
        if data_off < TCP_MIN_HLEN || data_off > l4_len {
            return Err(Malformed {
                header: "TCP",
                field: "data offset",
                offset: l4 + TCP_DATA_OFF,
            });
        }
    }
    Ok(())
}

/// Into the AF_XDP socket of the frame's RX queue; to the kernel if it has none.
#[inline(always)]
fn redirect(ctx: &XdpContext, port: u16) -> (XdpCounter, u32) {
    // Safety: `ctx.ctx` is the kernel's xdp_md for this invocation.
    let queue = unsafe { (*ctx.ctx).rx_queue_index };
    match XSKS.redirect(queue, xdp_action::XDP_PASS as u64) {
        Ok(action) => (XdpCounter::Steered, action),
        Err(_) => {
            if warn_allowed() {
                warn!(
                    ctx,
                    "rules exist but RX queue {} has no AF_XDP socket: frames to port {} go to the kernel",
                    queue,
                    port
                );
            }
            (XdpCounter::NoSocket, xdp_action::XDP_PASS)
        }
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
