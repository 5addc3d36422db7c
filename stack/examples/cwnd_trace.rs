//! CUBIC's congestion window over time in the TCP simulator, as CSV for the bench's plot:
//! `AYA_BUILD_SKIP=1 cargo run --release -p fastpath --example cwnd_trace > cwnd.csv`, then
//! `fastpath-bench plot-cwnd --csv cwnd.csv --out docs/cubic-cwnd.svg`.
//!
//! The path is the simulation test's (`tcp::sim`'s `cubic_follows_its_curve_in_the_simulation`):
//! 10 Mbit/s, 250 ms one way, a tail-drop queue of half the bandwidth–delay product, so the
//! window grows until the queue overflows, over and over. Each row: seconds, cwnd in
//! segments, and RFC 9438's W_cubic(t) for the epoch that began at the last reduction
//! (W_max the window before it, K = cbrt(W_max (1 − β) / C), C = 0.4, β = 0.7).

use std::time::Duration;

use fastpath::{
    tcp::{
        congestion::Algorithm,
        connection::TcpConfig,
        sim::{LinkConfig, tcp::bulk_cwnd_trace},
    },
    time::Instant,
};

fn main() {
    let rate = 10_000_000;
    let delay = Duration::from_millis(250);
    let bdp = (rate / 8) as usize / 2;
    let link = LinkConfig::clean(delay, rate, bdp);
    let config = TcpConfig {
        send_buffer: 8 * bdp,
        recv_buffer: 8 * bdp,
        congestion: Algorithm::Cubic,
        ..TcpConfig::default()
    };
    let mss = f64::from(config.mss);
    let samples = bulk_cwnd_trace(&config, link, 7, 32 << 20, Instant::from_secs(120))
        .unwrap_or_else(|e| panic!("the simulated transfer failed: {e}"));
    println!("seconds,cwnd_segments,w_cubic_segments");
    let (c, beta) = (0.4, 0.7);
    let mut epoch: Option<(f64, f64, f64)> = None; // (start s, W_max, K)
    let mut last = 0.0;
    let mut peak: f64 = 0.0;
    for (at, cwnd) in samples {
        let t = at.as_nanos() as f64 / 1e9;
        let w = f64::from(cwnd) / mss;
        // A reduction of more than a tenth starts a new epoch from the window before it.
        if w < last * 0.9 && last > 4.0 {
            let w_max = peak.max(last);
            let k = (w_max * (1.0 - beta) / c).cbrt();
            epoch = Some((t, w_max, k));
            peak = 0.0;
        }
        peak = peak.max(w);
        last = w;
        let curve = epoch
            .map(|(start, w_max, k)| c * (t - start - k).powi(3) + w_max)
            .map_or(String::new(), |v| format!("{v:.2}"));
        println!("{t:.4},{w:.2},{curve}");
    }
}
