//! One file per subcommand of the `fastpath` binary; `main.rs` only parses the command line
//! and hands each subcommand its arguments.

pub(crate) mod blast;
pub(crate) mod capture;
pub(crate) mod echo;
pub(crate) mod serve;
pub(crate) mod stack;
pub(crate) mod stats;

/// A flag that Ctrl-C and SIGTERM set.
pub(crate) fn interrupt_flag() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    Ok(stop)
}

pub(crate) fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("{s} is not a number of seconds from 0 to 86400")),
    }
}
