//! fastpath's bench harness: the veth/netns test bed, processes, load generators, scenarios
//! and reports. The end-to-end tests use the same test bed.

pub mod capacity;
pub mod cpu;
pub mod generator;
pub mod http;
pub mod impair;
pub mod kernel_echo;
pub mod kernel_tcp_echo;
pub mod machine;
pub mod netns;
pub mod process;
mod progress;
pub mod report;
pub mod scenario;
pub mod sockperf;
pub mod tcp_load;
pub mod tcp_scenario;
mod udp;
pub mod xdp_gen;
