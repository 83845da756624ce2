//! Progress reporting: an `indicatif` line on a terminal, plain periodic log lines
//! otherwise. It reads counters; it never changes crawl state.

use crate::frontier::Counters;
use crate::summary::Summary;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: Option<ProgressBar>,
    interval: Duration,
    /// When the last line was shown, and the download bytes then (for the rate).
    last: Mutex<(Instant, u64)>,
}

impl Progress {
    pub fn new(enabled: bool, interval: Duration) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            bar,
            interval,
            last: Mutex::new((Instant::now(), 0)),
        }
    }

    /// `download_bytes`: bytes of downloads written so far, finished or not.
    pub fn tick(
        &self,
        c: &Counters,
        items: u64,
        s: &Summary,
        started: Instant,
        download_bytes: u64,
    ) {
        let mut last = match self.last.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        let every = if self.bar.is_some() {
            Duration::from_millis(200)
        } else {
            self.interval
        };
        if last.0.elapsed() < every {
            return;
        }
        let rate = download_bytes.saturating_sub(last.1) as f64
            / last.0.elapsed().as_secs_f64().max(0.001)
            / 1e6;
        *last = (Instant::now(), download_bytes);
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let errors: u64 = s.errors.values().sum();
        let msg = format!(
            "pages {} ({:.0}/s) | queued {} | items {} | downloads {} ({:.1} MB, {:.1} MB/s) | errors {} | retries {}",
            s.pages,
            s.pages as f64 / secs,
            c.queued,
            items,
            s.downloads,
            download_bytes as f64 / 1e6,
            rate,
            errors,
            s.retries
        );
        match &self.bar {
            Some(b) => b.set_message(msg),
            None => tracing::info!("{msg}"),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
