//! The answer to a segment that finds no connection (RFC 9293 3.10.7.1).

use crate::wire::tcp::{TcpOptions, TcpRepr, flags};

/// RFC 9293 3.10.7.1: the answer to a segment for a connection that does not exist. None
/// for a RST (never answered).
pub fn reset_for(h: &TcpRepr, payload_len: usize) -> Option<TcpRepr> {
    if h.flags & flags::RST != 0 {
        return None;
    }
    let (seq, ack, f) = if h.flags & flags::ACK != 0 {
        // "<SEQ=SEG.ACK><CTL=RST>"
        (h.ack, 0, flags::RST)
    } else {
        // "<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>" (SYN and FIN count in SEG.LEN).
        let len = payload_len as u32
            + u32::from(h.flags & flags::SYN != 0)
            + u32::from(h.flags & flags::FIN != 0);
        (0, h.seq.wrapping_add(len), flags::RST | flags::ACK)
    };
    Some(TcpRepr {
        src_port: h.dst_port,
        dst_port: h.src_port,
        seq,
        ack,
        flags: f,
        window: 0,
        options: TcpOptions::default(),
    })
}
