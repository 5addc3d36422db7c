//! What the UDP scenarios share: their kinds, their settings, the port the servers answer
//! on, and the servers they compare (`servers`). `scenario` runs the rounds of the
//! ping-pong, flood and ceiling scenarios; `capacity` has the steps of `udp-capacity`.

mod servers;

use std::path::PathBuf;

use crate::machine::Cores;

pub(crate) use servers::{Server, System, client_socket, start_server};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ScenarioKind {
    /// Latency: one request outstanding; sockperf ping-pong and the harness's generator.
    UdpPingpong,
    /// Throughput: many requests outstanding (or --rate); packets per second.
    UdpFlood,
    /// The physical limit: a bare AF_XDP bounce with no stack, against fastpath.
    Ceiling,
    /// Each server's own limit with the AF_XDP generator, and its CPU cost per request.
    UdpCapacity,
}

impl ScenarioKind {
    pub const ALL: [ScenarioKind; 4] = [
        ScenarioKind::UdpPingpong,
        ScenarioKind::UdpFlood,
        ScenarioKind::Ceiling,
        ScenarioKind::UdpCapacity,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ScenarioKind::UdpPingpong => "udp-pingpong",
            ScenarioKind::UdpFlood => "udp-flood",
            ScenarioKind::Ceiling => "ceiling",
            ScenarioKind::UdpCapacity => "udp-capacity",
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Settings {
    pub duration_secs: u64,
    pub rate: Option<u64>,
    pub rounds: u32,
    pub payload: usize,
    pub queues: u32,
    pub mtu: u32,
    pub peer_tx_checksum: bool,
    pub outstanding: u32,
    pub fastpath_args: Vec<String>,
    pub server_core: Option<usize>,
    pub client_core: Option<usize>,
    /// Compare against this (earlier) fastpath binary instead of the kernel: each of
    /// fastpath's systems runs from it and from the current one, alternating old, new.
    pub baseline_bin: Option<PathBuf>,
    /// Run fastpath with and without `fastpath capture` copying the flow, alternating.
    pub with_capture: bool,
    #[serde(skip)]
    pub out: PathBuf,
    pub command: String,
}

impl Settings {
    pub(crate) fn cores(&self) -> Cores {
        Cores::pick(self.server_core, self.client_core)
    }
}

/// The port every UDP server answers on.
pub(crate) const PORT: u16 = 11111;
