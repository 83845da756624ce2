//! The status snapshot `/api/status` returns and the status page draws: what the crawl is
//! doing now, the recent pages/s, the busiest hosts, the plugins and the latest errors. It
//! owns the snapshot's shape and the two bounded histories it keeps (pages over time, recent
//! errors); the scheduler fills the rest in. It must not read crawl state itself.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

/// Samples of the page count kept for the chart: one per second, ten minutes.
const HISTORY_SAMPLES: usize = 600;
/// Errors kept for the page, newest first.
pub const RECENT_ERRORS: usize = 20;
/// Rows of the per-host table: the busiest hosts (in flight, then queued).
pub const HOST_ROWS: usize = 50;

/// Where the crawl is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Before the scheduler's first snapshot (sitemaps being read).
    #[default]
    Starting,
    Running,
    /// Paused from the API: requests in flight finish, no new one starts.
    Paused,
    /// Waiting for an output (a database) to catch up.
    Throttled,
    /// Finishing the requests in flight after a stop (Ctrl+C or `POST /api/stop`).
    Stopping,
    Finished,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Status {
    pub state: RunState,
    pub elapsed_s: f64,
    /// Pages fetched by this run.
    pub pages: u64,
    /// Pages counted against `max_pages` (earlier runs of the same state included).
    pub pages_total: u64,
    pub requests: u64,
    pub downloads: u64,
    pub items: u64,
    pub bytes: u64,
    pub errors: u64,
    pub retries: u64,
    pub queued: u64,
    pub in_flight: u64,
    pub known: u64,
    pub max_pages: Option<u64>,
    pub output: String,
    pub output_backlog: u64,
    pub status_classes: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
    /// Pages per second over the last minutes, oldest first, one value per second.
    pub pages_per_s: Vec<f64>,
    pub hosts_total: u64,
    pub hosts: Vec<HostRow>,
    pub plugins: Vec<PluginRow>,
    pub recent_errors: Vec<ErrorRow>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HostRow {
    pub host: String,
    pub queued: u64,
    pub in_flight: u64,
    pub delay_ms: u64,
    pub last_status: Option<u16>,
    /// Seconds until the host may be asked again after a back-off, if it is backing off.
    pub backing_off_s: Option<f64>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PluginRow {
    pub name: String,
    pub calls: u64,
    pub items: u64,
    pub errors: u64,
    pub mean_ms: f64,
    pub disabled: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ErrorRow {
    /// Seconds since the crawl started.
    pub at_s: f64,
    pub reason: String,
    pub url: String,
    pub cause: String,
}

/// The page count once a second, for the pages/s chart.
pub struct History {
    samples: VecDeque<u64>,
    last: Option<Instant>,
}

impl Default for History {
    fn default() -> Self {
        History {
            samples: VecDeque::with_capacity(HISTORY_SAMPLES + 1),
            last: None,
        }
    }
}

impl History {
    /// Records `pages` if a second has passed since the last sample (a slower loop leaves
    /// gaps filled with the same count, so the rate stays per second).
    pub fn sample(&mut self, pages: u64, now: Instant) {
        let steps = match self.last {
            None => 1,
            Some(t) => (now.saturating_duration_since(t).as_secs()).min(HISTORY_SAMPLES as u64),
        };
        if steps == 0 {
            return;
        }
        let prev = self.samples.back().copied().unwrap_or(pages);
        for i in 1..=steps {
            // Spread the pages of a longer gap evenly over its seconds.
            let v = prev + (pages.saturating_sub(prev)) * i / steps;
            self.samples.push_back(v);
        }
        while self.samples.len() > HISTORY_SAMPLES {
            self.samples.pop_front();
        }
        self.last = Some(match self.last {
            None => now,
            Some(t) => t + std::time::Duration::from_secs(steps),
        });
    }

    pub fn rates(&self) -> Vec<f64> {
        self.samples
            .iter()
            .zip(self.samples.iter().skip(1))
            .map(|(a, b)| b.saturating_sub(*a) as f64)
            .collect()
    }
}

/// The latest errors, newest first, bounded.
#[derive(Default)]
pub struct RecentErrors {
    rows: VecDeque<ErrorRow>,
}

impl RecentErrors {
    pub fn push(&mut self, row: ErrorRow) {
        self.rows.push_front(row);
        self.rows.truncate(RECENT_ERRORS);
    }

    pub fn rows(&self) -> Vec<ErrorRow> {
        self.rows.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn history_is_per_second_and_bounded() {
        let mut h = History::default();
        let t0 = Instant::now();
        h.sample(0, t0);
        h.sample(10, t0 + Duration::from_millis(1000));
        h.sample(10, t0 + Duration::from_millis(1500)); // same second: ignored
        h.sample(40, t0 + Duration::from_millis(4000)); // three seconds: spread
        assert_eq!(h.rates(), vec![10.0, 10.0, 10.0, 10.0]);
        for i in 0..2_000u64 {
            h.sample(40 + i, t0 + Duration::from_secs(5 + i));
        }
        assert_eq!(h.rates().len(), HISTORY_SAMPLES - 1);
    }

    #[test]
    fn recent_errors_keep_the_newest() {
        let mut e = RecentErrors::default();
        for i in 0..100 {
            e.push(ErrorRow {
                at_s: i as f64,
                reason: "x".into(),
                url: format!("u{i}"),
                cause: String::new(),
            });
        }
        let rows = e.rows();
        assert_eq!(rows.len(), RECENT_ERRORS);
        assert_eq!(rows[0].url, "u99");
    }
}
