//! What a SYN offers and what a handshake settles: MSS (RFC 9293 3.7.1, RFC 6691), window
//! scale and timestamps (RFC 7323), SACK-permitted (RFC 2018). Each side offers in its SYN;
//! an option is on only if both SYNs carried it (the SYN-ACK only echoes what the SYN had).

use crate::{time::Instant, wire::tcp::TcpOptions};

/// RFC 9293 3.7.1: "If an MSS Option is not received at connection setup, TCP
/// implementations MUST assume a default send MSS of 536 (576 - 40) for IPv4 or 1220
/// (1280 - 60) for IPv6".
pub const DEFAULT_MSS_V4: u16 = 536;
pub const DEFAULT_MSS_V6: u16 = 1220;

/// RFC 7323 2.3: "the shift count must be limited to 14".
pub const MAX_WINDOW_SCALE: u8 = 14;

/// RFC 7323 5.5: a TS.Recent older than 24 days is invalid (the 1 ms clock's sign wraps).
pub const PAWS_IDLE: std::time::Duration = std::time::Duration::from_secs(24 * 24 * 3600);

/// The options a handshake settled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// The most payload we put in a segment (the peer's MSS, clamped to ours), before
    /// deducting the options a segment carries.
    pub send_mss: u16,
    /// The shift we apply to windows the peer advertises (theirs), and to ours.
    pub snd_wscale: u8,
    pub rcv_wscale: u8,
    /// Both SYNs carried a window scale option (even a shift of 0).
    pub window_scaling: bool,
    pub sack: bool,
    pub timestamps: bool,
}

/// The shift that lets `buffer` bytes be advertised in 16 bits, at most 14.
pub fn window_scale_for(buffer: usize) -> u8 {
    let mut shift = 0u8;
    while shift < MAX_WINDOW_SCALE && (buffer >> shift) > usize::from(u16::MAX) {
        shift += 1;
    }
    shift
}

/// What we put in our SYN (or SYN-ACK when `peer` is the SYN we answer).
pub struct Offer {
    pub mss: u16,
    pub window_scale: Option<u8>,
    pub sack: bool,
    pub timestamps: bool,
}

impl Offer {
    /// Our SYN's options; `tsval` is our timestamp clock now. When answering a SYN, only
    /// the options it carried are echoed (RFC 7323 2.2, 3.2; RFC 2018 2).
    pub fn syn_options(&self, peer: Option<&TcpOptions>, tsval: u32) -> TcpOptions {
        let (ws, sack, ts) = match peer {
            None => (self.window_scale, self.sack, self.timestamps),
            Some(p) => (
                self.window_scale.filter(|_| p.window_scale.is_some()),
                self.sack && p.sack_permitted,
                self.timestamps && p.timestamp.is_some(),
            ),
        };
        let tsecr = peer.and_then(|p| p.timestamp).map_or(0, |(val, _)| val);
        TcpOptions {
            mss: Some(self.mss),
            window_scale: ws,
            sack_permitted: sack,
            sack_blocks: [None; 4],
            timestamp: ts.then_some((tsval, tsecr)),
        }
    }

    /// What holds once the peer's SYN (or SYN-ACK) `peer` is known. `v6` picks the default
    /// MSS when the peer sent none.
    pub fn settle(&self, peer: &TcpOptions, v6: bool) -> Negotiated {
        let default = if v6 { DEFAULT_MSS_V6 } else { DEFAULT_MSS_V4 };
        // RFC 6691 / RFC 9293 3.7.1: send no more than the peer's MSS; never more than ours.
        // A peer MSS below 64 is absurd (a "tiny MSS" attack makes us send 1-byte segments),
        // so it is raised to 64 as Linux does (TCP_MIN_SND_MSS 48 plus headroom).
        let peer_mss = peer.mss.unwrap_or(default).max(64);
        let ws = match (self.window_scale, peer.window_scale) {
            (Some(ours), Some(theirs)) => Some((theirs.min(MAX_WINDOW_SCALE), ours)),
            _ => None,
        };
        Negotiated {
            send_mss: peer_mss.min(self.mss),
            snd_wscale: ws.map_or(0, |w| w.0),
            rcv_wscale: ws.map_or(0, |w| w.1),
            window_scaling: ws.is_some(),
            sack: self.sack && peer.sack_permitted,
            timestamps: self.timestamps && peer.timestamp.is_some(),
        }
    }
}

/// Our timestamp clock (RFC 7323 5.4): one tick per millisecond, from a per-connection
/// offset so the value does not reveal the worker's uptime, nor lets a host be counted
/// behind a NAT (RFC 7323 7.1).
pub fn ts_clock(now: Instant, offset: u32) -> u32 {
    (now.as_millis() as u32).wrapping_add(offset)
}

/// RFC 7323 5.3 R1's "TSval < TS.Recent", in 32-bit serial arithmetic.
pub fn ts_before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_scale_covers_the_buffer() {
        assert_eq!(window_scale_for(0), 0);
        assert_eq!(window_scale_for(65535), 0);
        assert_eq!(window_scale_for(65536), 1);
        assert_eq!(window_scale_for(1 << 20), 5);
        assert_eq!(window_scale_for(usize::MAX), 14);
    }

    #[test]
    fn settles_only_what_both_offered() {
        let offer = Offer {
            mss: 1460,
            window_scale: Some(7),
            sack: true,
            timestamps: true,
        };
        let bare = TcpOptions::default();
        let n = offer.settle(&bare, false);
        assert_eq!(
            n,
            Negotiated {
                send_mss: 536,
                ..Negotiated::default()
            }
        );
        assert_eq!(offer.settle(&bare, true).send_mss, 1220);
        let full = TcpOptions {
            mss: Some(9000),
            window_scale: Some(14),
            sack_permitted: true,
            timestamp: Some((5, 0)),
            ..TcpOptions::default()
        };
        let n = offer.settle(&full, false);
        assert_eq!(
            n,
            Negotiated {
                send_mss: 1460,
                snd_wscale: 14,
                rcv_wscale: 7,
                window_scaling: true,
                sack: true,
                timestamps: true
            }
        );
        // A SYN-ACK echoes only what the SYN had, and echoes its TSval.
        let o = offer.syn_options(Some(&full), 77);
        assert_eq!(o.timestamp, Some((77, 5)));
        assert_eq!(o.window_scale, Some(7));
        let o = offer.syn_options(Some(&bare), 77);
        assert_eq!(
            (o.window_scale, o.sack_permitted, o.timestamp),
            (None, false, None)
        );
        // A tiny MSS is raised.
        let tiny = TcpOptions {
            mss: Some(1),
            ..TcpOptions::default()
        };
        assert_eq!(offer.settle(&tiny, false).send_mss, 64);
    }

    #[test]
    fn timestamps_compare_across_the_wrap() {
        assert!(ts_before(u32::MAX, 1));
        assert!(!ts_before(1, u32::MAX));
        assert!(!ts_before(5, 5));
    }
}
