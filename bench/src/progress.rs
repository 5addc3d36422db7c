//! A progress bar over a scenario's planned time, moved as its steps run.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub(crate) struct Progress {
    pub(crate) bar: ProgressBar,
    done_ms: u64,
}

impl Progress {
    pub(crate) fn new(total_secs: u64, label: &str) -> Self {
        let bar = ProgressBar::new(total_secs * 1000);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:40}] {msg} ({elapsed} of ~{duration})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_prefix(label.to_string());
        Self { bar, done_ms: 0 }
    }

    pub(crate) fn during(&self, since: Instant) {
        self.bar
            .set_position(self.done_ms + since.elapsed().as_millis() as u64);
    }

    /// A step of `planned` is over (whatever it really took).
    pub(crate) fn advance(&mut self, planned: Duration) {
        self.done_ms += planned.as_millis() as u64;
        self.bar.set_position(self.done_ms);
    }
}
