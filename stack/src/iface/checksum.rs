//! How received transport checksums are judged, for UDP and TCP alike.
//!
//! A kernel peer on a veth leaves the transport checksum to TX offload, so the field holds
//! only the pseudo-header sum (CHECKSUM_PARTIAL); `RxChecksum::AcceptPartial` (the default)
//! accepts exactly that value as "offloaded by a local peer" and the caller counts it, and
//! drops any other mismatch. Everything sent carries full checksums: AF_XDP frames get no
//! offload, and a plain swap was measured to get 0 of 5 replies accepted.

use crate::wire::checksum::ChecksumStatus;

/// How received UDP and TCP checksums are judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RxChecksum {
    /// Full checksum, or none (UDP's zero), or the pseudo-header sum a local offloading
    /// peer sends.
    AcceptPartial,
    /// Full checksum or none; a partial one is dropped as bad.
    Strict,
    /// Do not verify checksums.
    Skip,
}

/// What the policy says of one received checksum; the caller counts all but `Valid`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    Valid,
    /// Zero: no checksum (UDP over IPv4 allows it; TCP does not).
    Absent,
    /// Only the pseudo-header sum, accepted by `AcceptPartial`.
    Partial,
    Drop,
}

impl RxChecksum {
    /// Judges a checksum; `check` computes it only when the policy asks for it.
    #[inline]
    pub fn judge(self, check: impl FnOnce() -> ChecksumStatus) -> Judgement {
        // The fuzzer cannot forge checksums: let it reach the layers behind this one.
        if self == RxChecksum::Skip || cfg!(fuzzing) {
            return Judgement::Valid;
        }
        match check() {
            ChecksumStatus::Valid => Judgement::Valid,
            ChecksumStatus::Absent => Judgement::Absent,
            ChecksumStatus::Partial if self == RxChecksum::AcceptPartial => Judgement::Partial,
            ChecksumStatus::Partial | ChecksumStatus::Bad => Judgement::Drop,
        }
    }
}
