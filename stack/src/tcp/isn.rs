//! Initial sequence numbers an off-path attacker cannot guess (RFC 6528), timestamp offsets
//! that do not reveal the clock (RFC 7323 7.1), and SYN cookies (RFC 4987 3.6), all from a
//! keyed SipHash over the four-tuple.
//!
//! A SYN cookie is our ISN in a SYN-ACK sent without keeping state, laid out after Linux
//! (`net/ipv4/syncookies.c`): `cookie = H1(tuple) + peer_isn + (count << 24) + low`, with
//! `count` a 64-second counter and `low` 24 bits: 8 bits of `data` (the MSS as an index
//! into [`COOKIE_MSS`], SACK-permitted, the window scale) under a 16-bit MAC
//! `H2(tuple, count, peer_isn, data)`. The final ACK acknowledges `cookie + 1`; inverting
//! the sum gives `count` (accepted if at most [`COOKIE_MAX_AGE`] periods old), `data`
//! and the MAC to check. Unlike Linux's additive `H2 + data`, an ACK off by a few does not
//! decode as other options: every wrong value passes with probability 2^-16.

use std::{
    hash::Hasher,
    io::Read,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use siphasher::sip::SipHasher13;

use super::{seq::SeqNumber, types::Endpoints};
use crate::time::Instant;

/// The secrets behind ISNs, timestamp offsets and cookies. One per worker (or per host):
/// the same key must check a cookie that it made.
#[derive(Clone)]
pub struct IsnKeys {
    isn: (u64, u64),
    cookie: (u64, u64),
}

impl std::fmt::Debug for IsnKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IsnKeys(..)")
    }
}

impl IsnKeys {
    /// Fixed keys, for tests and reproducible simulations.
    pub fn from_bytes(bytes: [u8; 32]) -> IsnKeys {
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        IsnKeys {
            isn: (word(0), word(1)),
            cookie: (word(2), word(3)),
        }
    }

    /// Keys from the kernel's random source (`/dev/urandom`). Should that be unreadable
    /// (a sandbox), the keys come from std's `RandomState`, which the OS seeds too.
    pub fn random() -> IsnKeys {
        let mut bytes = [0u8; 32];
        let urandom =
            std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
        if urandom.is_err() {
            use std::hash::{BuildHasher, RandomState};
            for (i, chunk) in bytes.chunks_exact_mut(8).enumerate() {
                let mut h = RandomState::new().build_hasher();
                h.write_usize(i);
                chunk.copy_from_slice(&h.finish().to_le_bytes());
            }
        }
        IsnKeys::from_bytes(bytes)
    }
}

fn hash_tuple(key: (u64, u64), e: &Endpoints, domain: u8, extra: u32) -> u32 {
    let mut h = SipHasher13::new_with_keys(key.0, key.1);
    let mut addr = |a: &SocketAddr| {
        let ip = match a.ip() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        h.write(&ip);
        h.write(&a.port().to_be_bytes());
    };
    addr(&e.local);
    addr(&e.remote);
    h.write_u8(domain);
    h.write_u32(extra);
    let x = h.finish();
    (x ^ (x >> 32)) as u32
}

/// RFC 6528: `ISN = M + F(localip, localport, remoteip, remoteport, secretkey)`, with M a
/// timer ticking every 4 microseconds.
pub fn isn(keys: &IsnKeys, endpoints: &Endpoints, now: Instant) -> SeqNumber {
    let m = (now.as_micros() / 4) as u32;
    SeqNumber(m.wrapping_add(hash_tuple(keys.isn, endpoints, 0, 0)))
}

/// A per-connection offset for our timestamp clock (RFC 7323 7.1), so TSval reveals neither
/// the worker's uptime nor a relation between connections.
pub fn ts_offset(keys: &IsnKeys, endpoints: &Endpoints) -> u32 {
    hash_tuple(keys.isn, endpoints, 1, 0)
}

/// The MSS values a cookie can carry, smallest first: a peer gets the largest not above its
/// own. 536 and 1220 are the v4 and v6 defaults; 1440 and 1460 common Ethernet (tunnels,
/// plain); 8960 a 9000-byte jumbo frame.
pub const COOKIE_MSS: [u16; 5] = [536, 1220, 1440, 1460, 8960];

/// A cookie's count ticks every 64 s.
pub const COOKIE_PERIOD: Duration = Duration::from_secs(64);
/// A cookie is accepted up to this many periods after it was made (2 to 3 minutes).
pub const COOKIE_MAX_AGE: u32 = 2;

const COOKIE_BITS: u32 = 24;
const COOKIE_MASK: u32 = (1 << COOKIE_BITS) - 1;
const NO_WSCALE: u32 = 15;

/// What a cookie remembers of the SYN it answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CookieParams {
    pub mss: u16,
    pub sack: bool,
    pub window_scale: Option<u8>,
}

/// The 16-bit MAC over what a cookie carries.
fn cookie_mac(
    keys: &IsnKeys,
    endpoints: &Endpoints,
    peer_isn: SeqNumber,
    count: u32,
    data: u32,
) -> u32 {
    let mixed = count ^ peer_isn.0.rotate_left(8) ^ (data << 24);
    hash_tuple(keys.cookie, endpoints, 3, mixed) & 0xffff
}

fn cookie_count(now: Instant) -> u32 {
    (now.as_nanos() / COOKIE_PERIOD.as_nanos() as u64) as u32
}

/// Our ISN for a SYN-ACK that keeps no state. `params.mss` is rounded down to
/// [`COOKIE_MSS`] (the peer's MSS, already clamped to ours).
pub fn syn_cookie(
    keys: &IsnKeys,
    endpoints: &Endpoints,
    peer_isn: SeqNumber,
    params: CookieParams,
    now: Instant,
) -> SeqNumber {
    let mss_index = COOKIE_MSS
        .iter()
        .rposition(|&m| m <= params.mss)
        .unwrap_or(0) as u32;
    let ws = params
        .window_scale
        .map_or(NO_WSCALE, |w| u32::from(w.min(14)));
    let data = mss_index | (u32::from(params.sack) << 3) | (ws << 4);
    let count = cookie_count(now);
    let cookie = hash_tuple(keys.cookie, endpoints, 2, 0)
        .wrapping_add(peer_isn.0)
        .wrapping_add(count << COOKIE_BITS)
        .wrapping_add((cookie_mac(keys, endpoints, peer_isn, count, data) << 8) | data);
    SeqNumber(cookie)
}

/// Checks the cookie an ACK returns: `peer_isn` is the ACK's `seq - 1`, `cookie` its
/// `ack - 1`. `None` if forged or too old.
pub fn check_syn_cookie(
    keys: &IsnKeys,
    endpoints: &Endpoints,
    peer_isn: SeqNumber,
    cookie: SeqNumber,
    now: Instant,
) -> Option<CookieParams> {
    let v = cookie
        .0
        .wrapping_sub(hash_tuple(keys.cookie, endpoints, 2, 0))
        .wrapping_sub(peer_isn.0);
    let now_count = cookie_count(now);
    let age = (now_count.wrapping_sub(v >> COOKIE_BITS)) & 0xff;
    if age > COOKIE_MAX_AGE {
        return None;
    }
    let count = now_count.wrapping_sub(age);
    let low = v & COOKIE_MASK;
    let data = low & 0xff;
    if low >> 8 != cookie_mac(keys, endpoints, peer_isn, count, data) {
        return None;
    }
    let mss = *COOKIE_MSS.get((data & 7) as usize)?;
    let ws = data >> 4;
    Some(CookieParams {
        mss,
        sack: data & 8 != 0,
        window_scale: (ws != NO_WSCALE).then_some(ws.min(14) as u8),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(port: u16) -> Endpoints {
        Endpoints {
            local: "198.18.0.1:80".parse().unwrap(),
            remote: SocketAddr::new("198.18.0.2".parse().unwrap(), port),
        }
    }

    #[test]
    fn isn_is_keyed_and_moves_with_the_clock() {
        let keys = IsnKeys::from_bytes([7; 32]);
        let other = IsnKeys::from_bytes([8; 32]);
        let e = endpoints(40000);
        let a = isn(&keys, &e, Instant::ZERO);
        assert_ne!(a, isn(&other, &e, Instant::ZERO));
        assert_ne!(a, isn(&keys, &endpoints(40001), Instant::ZERO));
        // M ticks every 4 µs.
        assert_eq!(isn(&keys, &e, Instant::from_millis(1)) - a, 250);
        assert_ne!(ts_offset(&keys, &e), ts_offset(&keys, &endpoints(40001)));
        let r1 = IsnKeys::random();
        let r2 = IsnKeys::random();
        assert_ne!(isn(&r1, &e, Instant::ZERO), isn(&r2, &e, Instant::ZERO));
    }

    #[test]
    fn cookies_round_trip_and_expire() {
        let keys = IsnKeys::from_bytes([9; 32]);
        let e = endpoints(40000);
        let peer = SeqNumber(0xfffffff0);
        let t0 = Instant::from_secs(1000);
        for params in [
            CookieParams {
                mss: 1460,
                sack: true,
                window_scale: Some(7),
            },
            CookieParams {
                mss: 536,
                sack: false,
                window_scale: None,
            },
            CookieParams {
                mss: 8960,
                sack: true,
                window_scale: Some(14),
            },
        ] {
            let c = syn_cookie(&keys, &e, peer, params, t0);
            assert_eq!(check_syn_cookie(&keys, &e, peer, c, t0), Some(params));
            let later = t0 + COOKIE_PERIOD * COOKIE_MAX_AGE;
            assert_eq!(check_syn_cookie(&keys, &e, peer, c, later), Some(params));
            let too_late = t0 + COOKIE_PERIOD * (COOKIE_MAX_AGE + 1);
            assert_eq!(check_syn_cookie(&keys, &e, peer, c, too_late), None);
            // Another tuple, another peer ISN, a near miss, or another key: refused.
            assert_eq!(check_syn_cookie(&keys, &e, peer, c + 1, t0), None);
            assert_eq!(check_syn_cookie(&keys, &endpoints(1), peer, c, t0), None);
            assert_eq!(check_syn_cookie(&keys, &e, peer + 1, c, t0), None);
            let other = IsnKeys::from_bytes([1; 32]);
            assert_eq!(check_syn_cookie(&other, &e, peer, c, t0), None);
        }
        // An MSS between table entries rounds down.
        let c = syn_cookie(
            &keys,
            &e,
            peer,
            CookieParams {
                mss: 1400,
                sack: false,
                window_scale: None,
            },
            t0,
        );
        assert_eq!(check_syn_cookie(&keys, &e, peer, c, t0).unwrap().mss, 1220);
    }

    #[test]
    fn guessed_cookies_rarely_pass() {
        let keys = IsnKeys::from_bytes([3; 32]);
        let e = endpoints(40000);
        let t0 = Instant::from_secs(5000);
        let passed = (0..200_000u32)
            .filter(|&i| {
                let guess = SeqNumber(i.wrapping_mul(2_654_435_761));
                check_syn_cookie(&keys, &e, SeqNumber(1), guess, t0).is_some()
            })
            .count();
        // 3 valid counts of 256, a 16-bit MAC: about 0.01 passes expected.
        assert!(passed <= 2, "{passed} guesses passed");
    }
}
