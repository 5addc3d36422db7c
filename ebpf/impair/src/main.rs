//! A tc classifier for the egress of the kernel peer's veth in tests: it drops, duplicates
//! and corrupts the frames its filter matches, at rates read from a map, so the kernel's own
//! segments meet an impaired link (this kernel has no netem). fastpath's own frames leave
//! through AF_XDP, which skips the qdisc layer: `fastpath::impair` impairs those.
//!
//! A duplicate is made with `bpf_clone_redirect` back to this device's egress; it carries
//! `IMPAIR_DUP_MARK`, so its own pass through this program lets it go untouched. Corruption
//! flips one byte after the Ethernet header; checksums catch it only when the peer computes
//! them (a veth with TX checksum offload leaves them partial, and partial is accepted).
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    cty::c_long,
    helpers::bpf_get_prandom_u32,
    macros::{classifier, map},
    maps::{Array, PerCpuArray},
    programs::TcContext,
};
use fastpath_common::{
    IPPROTO_TCP, IPPROTO_UDP,
    impair::{
        IMPAIR_DUP_MARK, PER_MILLION, TC_IMPAIR_COUNTER_COUNT, TcImpairConfig, TcImpairCounter,
    },
    layout::{ETH_HLEN, ETH_TYPE, ETHERTYPE_IPV4, IPV4_PROTO, IPV4_VER_IHL},
};

#[map(name = "IMPAIR_CONFIG")]
static IMPAIR_CONFIG: Array<TcImpairConfig> = Array::with_max_entries(1, 0);

#[map(name = "IMPAIR_COUNTERS")]
static IMPAIR_COUNTERS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(TC_IMPAIR_COUNTER_COUNT, 0);

#[classifier]
pub fn fastpath_impair(ctx: TcContext) -> i32 {
    impair(&ctx)
}

#[inline(always)]
fn count(counter: TcImpairCounter) {
    if let Some(slot) = IMPAIR_COUNTERS.get_ptr_mut(counter as u32) {
        // Safety: the pointer comes from the map lookup and points at this CPU's slot; tc
        // programs run with preemption disabled, so no one else writes it meanwhile.
        unsafe { *slot += 1 };
    }
}

/// True with probability `ppm` in a million.
#[inline(always)]
fn chance(ppm: u32) -> bool {
    // Safety: a helper with no arguments.
    ppm != 0 && unsafe { bpf_get_prandom_u32() } % PER_MILLION < ppm
}

#[inline(always)]
fn impair(ctx: &TcContext) -> i32 {
    // Safety: `ctx.skb.skb` is the kernel's __sk_buff for this invocation.
    let (mark, ifindex) = unsafe { ((*ctx.skb.skb).mark, (*ctx.skb.skb).ifindex) };
    if mark == IMPAIR_DUP_MARK {
        // A duplicate we made, on its second pass: let it go as the original went.
        ctx.set_mark(0);
        return TC_ACT_OK as i32;
    }
    count(TcImpairCounter::Seen);
    let Some(config) = IMPAIR_CONFIG.get(0) else {
        return TC_ACT_OK as i32;
    };
    if !matches(ctx, config) {
        return TC_ACT_OK as i32;
    }
    count(TcImpairCounter::Matched);
    if chance(config.loss_ppm) {
        count(TcImpairCounter::Dropped);
        return TC_ACT_SHOT as i32;
    }
    // Duplicate before corrupting: the copy is the frame as sent.
    if chance(config.duplicate_ppm) {
        ctx.set_mark(IMPAIR_DUP_MARK);
        match ctx.clone_redirect(ifindex, 0) {
            Ok(()) => count(TcImpairCounter::Duplicated),
            Err(_) => count(TcImpairCounter::DuplicateFailed),
        }
        ctx.set_mark(mark);
    }
    if chance(config.corrupt_ppm) && corrupt(ctx).is_ok() {
        count(TcImpairCounter::Corrupted);
    }
    TC_ACT_OK as i32
}

/// Whether the filter takes this frame: any frame when it names no protocol; otherwise an
/// IPv4 frame of that protocol, and with a port, a segment from or to that port.
#[inline(always)]
fn matches(ctx: &TcContext, config: &TcImpairConfig) -> bool {
    if config.proto == 0 {
        return config.port == 0;
    }
    let Ok(ethertype) = ctx.load::<[u8; 2]>(ETH_TYPE) else {
        return false;
    };
    if u16::from_be_bytes(ethertype) != ETHERTYPE_IPV4 {
        return false;
    }
    let Ok(ip) = ctx.load::<[u8; 10]>(ETH_HLEN) else {
        return false;
    };
    if ip[IPV4_PROTO] != config.proto {
        return false;
    }
    if config.port == 0 {
        return true;
    }
    if config.proto != IPPROTO_TCP && config.proto != IPPROTO_UDP {
        return false;
    }
    let l4 = ETH_HLEN + ((ip[IPV4_VER_IHL] & 0x0f) as usize) * 4;
    let Ok(ports) = ctx.load::<[u8; 4]>(l4) else {
        return false;
    };
    u16::from_be_bytes([ports[0], ports[1]]) == config.port
        || u16::from_be_bytes([ports[2], ports[3]]) == config.port
}

/// Flips one random bit pattern of one random byte after the Ethernet header.
#[inline(always)]
fn corrupt(ctx: &TcContext) -> Result<(), c_long> {
    let len = ctx.len() as usize;
    if len <= ETH_HLEN {
        return Err(0);
    }
    // Safety: a helper with no arguments.
    let random = unsafe { bpf_get_prandom_u32() };
    let at = ETH_HLEN + (random as usize % (len - ETH_HLEN));
    let byte: u8 = ctx.load(at)?;
    // A non-zero mask from the high bits: the byte always changes.
    let mask = ((random >> 24) as u8) | 1;
    ctx.store(at, &(byte ^ mask), 0)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
