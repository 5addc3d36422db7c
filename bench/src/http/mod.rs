//! HTTP: `fastpath serve` against nginx, one worker each, serving the same directory on the
//! same veth pair, driven by the same wrk from the peer namespace, alternating; a 10 MiB
//! download by curl from each, against the test bed's line rate (`fastpath blast`: AF_XDP
//! alone pushing MTU-sized frames to a receiver in the peer namespace). Used by the `http`
//! scenario and by the demo (the README's main job).
//!
//! Each system runs alone on the pair: fastpath is started for its runs and stopped after,
//! so nginx never pays for an XDP program on its interface.
//!
//! `site` is the directory served, `nginx` and `systems` the servers, `curl` and `wrk` the
//! clients, `line_rate` the test bed's own limit; `run` is the scenario, `demo` the demo.

mod curl;
mod demo;
mod line_rate;
mod nginx;
mod run;
mod site;
mod systems;
mod wrk;

pub use curl::{curl_download, curl_status};
pub use demo::demo;
pub use line_rate::{LineRate, line_rate};
pub use nginx::Nginx;
pub use run::{HttpSettings, run};
pub use site::{SiteDir, large_bytes};
pub use systems::start_fastpath;
pub use wrk::{WrkResult, WrkRun, parse_wrk, run_wrk};

use crate::process::require_program;

/// fastpath's port and nginx's (both on the server address).
pub const FASTPATH_PORT: u16 = 8080;
pub const NGINX_PORT: u16 = 8081;

/// The files every system serves.
pub const SMALL_FILE: &str = "100b.txt";
pub const PAGE_FILE: &str = "index.html";
pub const LARGE_FILE: &str = "10mib.bin";
const LARGE_BYTES: usize = 10 * 1024 * 1024;

/// The programs the HTTP scenario and the demo need, with the fix when one is missing.
pub fn require_tools() -> anyhow::Result<()> {
    for (program, package) in [
        ("wrk", "wrk"),
        ("nginx", "nginx-light"),
        ("curl", "curl"),
        ("taskset", "util-linux"),
    ] {
        require_program(program, package)?;
    }
    Ok(())
}
