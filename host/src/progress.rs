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
    last: Mutex<Instant>,
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
            last: Mutex::new(Instant::now()),
        }
    }

    pub fn tick(&self, c: &Counters, items: u64, s: &Summary, started: Instant) {
        let mut last = match self.last.lock() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        let every = if self.bar.is_some() {
            Duration::from_millis(200)
        } else {
            self.interval
        };
        if last.elapsed() < every {
            return;
        }
        *last = Instant::now();
        let secs = started.elapsed().as_secs_f64().max(0.001);
        let errors: u64 = s.errors.values().sum();
        let msg = format!(
            "pages {} ({:.0}/s) | queued {} | items {} | downloads {} | errors {} | retries {}",
            s.pages,
            s.pages as f64 / secs,
            c.queued,
            items,
            s.downloads,
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
