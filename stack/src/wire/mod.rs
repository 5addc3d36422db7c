//! Wire formats: zero-copy views over frames (`new_checked` validates, after which no
//! accessor panics) and `Repr`s that parse and emit. Offsets come from
//! `fastpath_common::layout`, which the XDP program reads too.

pub mod checksum;
pub mod ethernet;
pub mod ipv4;
pub mod tcp;
pub mod udp;

#[cfg(test)]
pub(crate) mod testing;

/// Why a frame was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("truncated header")]
    Truncated,
    #[error("malformed header")]
    Malformed,
    #[error("bad checksum")]
    Checksum,
}

pub type Result<T> = core::result::Result<T, Error>;

/// A transport protocol over IP, as sockets and the XDP rules name it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Udp,
    Tcp,
}
