//! CUBIC's congestion window over time in the TCP simulator, as CSV for the bench's plot:
//! `AYA_BUILD_SKIP=1 cargo run --release -p fastpath --features sim --example cwnd_trace > cwnd.csv`, then
//! `fastpath-bench plot-cwnd --csv cwnd.csv --out docs/cubic-cwnd.svg`.
//!
//! The path is the simulation test's (`tcp::sim`'s `cubic_follows_its_curve_in_the_simulation`):
//! 10 Mbit/s, 250 ms one way, a tail-drop queue of half the bandwidth–delay product, so the
//! window grows until the queue overflows, over and over. Each row: seconds, cwnd in
//! segments, and RFC 9438's W_cubic(t) for the congestion-avoidance epoch that follows each
//! fast recovery (W_max the window before the reduction, lowered by fast convergence when
//! below the previous one; the epoch starting when recovery ends; K = cbrt((W_max −
//! cwnd_epoch) / C), C = 0.4, β = 0.7); after a timeout there is no curve.

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
    // After a fast-recovery reduction (cwnd × β): the window before it (W_max) and the
    // window after it; the epoch starts when recovery ends, i.e. when cwnd grows again.
    let mut reduced: Option<(f64, f64)> = None;
    let mut epoch: Option<(f64, f64, f64)> = None; // (start s, W_max, K)
    let (mut last, mut last_t) = (0.0f64, 0.0f64);
    let mut prev_w_max: Option<f64> = None;
    for (at, cwnd) in samples {
        let t = at.as_nanos() as f64 / 1e9;
        let w = f64::from(cwnd) / mss;
        if w < last * 0.9 && last > 4.0 {
            epoch = None;
            // A timeout (cwnd to a segment or two) starts over in slow start: no curve.
            // RFC 9438 4.7 fast convergence: a W_max below the previous one is lowered
            // further, to cwnd (1 + β) / 2.
            let fast_recovery = w > last * (beta - 0.1);
            let w_max = match prev_w_max {
                Some(prev) if last < prev => last * (1.0 + beta) / 2.0,
                _ => last,
            };
            // A timeout forgets W_max (the epoch resets, as Linux's bictcp_reset does).
            prev_w_max = fast_recovery.then_some(last);
            reduced = fast_recovery.then_some((w_max, w));
        } else if let Some((w_max, flat)) = reduced
            && w > flat + 0.5
        {
            // RFC 9438 4.2: K = cbrt((W_max - cwnd_epoch) / C), t from the epoch's start.
            let k = ((w_max - flat) / c).cbrt();
            epoch = Some((last_t, w_max, k));
            reduced = None;
        }
        last = w;
        last_t = t;
        let curve = epoch
            .map(|(start, w_max, k)| c * (t - start - k).powi(3) + w_max)
            .map_or(String::new(), |v| format!("{v:.2}"));
        println!("{t:.4},{w:.2},{curve}");
    }
}
