//! fastpath's bench harness: the veth/netns test bed, processes, load generators and reports.
//! The end-to-end tests use the same test bed.

pub mod netns;
pub mod process;
