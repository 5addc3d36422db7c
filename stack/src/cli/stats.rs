//! `fastpath stats`, `sockets` and `close`: a running instance, through its control socket.
use std::path::PathBuf;

use fastpath::control;

#[derive(clap::Args)]
pub(crate) struct StatsArgs {
    /// Interface of the instance to ask (default: the only one running).
    #[arg(long, short = 'i', value_name = "IF")]
    iface: Option<String>,
    /// Control socket path of the instance to ask.
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, conflicts_with = "prometheus")]
    json: bool,
    /// Print every counter in the Prometheus text exposition format.
    #[arg(long)]
    prometheus: bool,
    /// Serve the Prometheus metrics at http://ADDR:PORT/metrics (an ordinary kernel socket)
    /// until Ctrl-C, for a scraper.
    #[arg(long, value_name = "ADDR:PORT", conflicts_with_all = ["json", "prometheus"])]
    listen: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct CloseArgs {
    /// The socket's number, as `fastpath sockets` shows it.
    number: u32,
    #[command(flatten)]
    target: StatsArgs,
}

pub(crate) fn close(args: CloseArgs) -> anyhow::Result<()> {
    let path = control::locate(args.target.control.as_deref(), args.target.iface.as_deref())?;
    let n = control::request_close(&path, args.number)?;
    println!("closed socket {n}");
    Ok(())
}

pub(crate) fn sockets(args: StatsArgs) -> anyhow::Result<()> {
    let path = control::locate(args.control.as_deref(), args.iface.as_deref())?;
    let rows = control::request_sockets(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", control::render_sockets(&rows));
    }
    Ok(())
}

pub(crate) fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let path = control::locate(args.control.as_deref(), args.iface.as_deref())?;
    let metrics = |path: &std::path::Path| -> anyhow::Result<String> {
        let report = control::request_stats(path)?;
        let sockets = control::request_sockets(path)?;
        Ok(fastpath::metrics::render(&report, &sockets))
    };
    if let Some(addr) = &args.listen {
        let stop = super::interrupt_flag()?;
        return fastpath::metrics::serve(addr, &stop, || metrics(&path));
    }
    if args.prometheus {
        print!("{}", metrics(&path)?);
        return Ok(());
    }
    let report = control::request_stats(&path)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", control::render_table(&report));
    }
    Ok(())
}
