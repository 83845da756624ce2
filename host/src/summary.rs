//! What a crawl did: the counters the scheduler keeps, written to `STATE/summary.json` and
//! printed at the end. It owns the report's shape and wording; it must not run or change a
//! crawl (the scheduler fills it in, `progress` and the CLI read it).

use std::collections::BTreeMap;
use std::fmt;

/// Which shared crawl a worker ran in.
#[derive(Debug, Clone, serde::Serialize, Default, PartialEq)]
pub struct SharedCrawl {
    pub frontier: String,
    pub crawl_id: String,
    pub worker: String,
    /// The crawl had nothing queued or in flight when this worker started: it did nothing.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub finished_before: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Per-plugin counters for the summary.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PluginStats {
    pub calls: u64,
    pub items: u64,
    pub links: u64,
    pub errors: BTreeMap<String, u64>,
    pub time_ms: f64,
}

/// The last URL that failed with one kind of error, and why (the whole cause chain).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ErrorSample {
    pub url: String,
    pub cause: String,
}

/// What the sitemaps gave, when the crawl was seeded from them.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SitemapStats {
    /// Sitemap files read (index files included).
    pub files: u64,
    /// URLs listed in them, and how many of those were queued as new.
    pub urls: u64,
    pub queued: u64,
    /// Sitemaps that could not be fetched or parsed, one line each.
    pub errors: Vec<String>,
}

/// What a crawl did. Also written to `STATE/summary.json`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    /// HTTP responses received: pages, downloads, every redirect hop, robots.txt, sitemaps.
    pub requests: u64,
    pub pages: u64,
    pub downloads: u64,
    pub files_new: u64,
    pub bytes: u64,
    pub items: u64,
    pub items_total: u64,
    /// Items handed to the outputs this run, by kind (at most `MAX_KINDS` kinds; plugins
    /// name them, so the rest are counted under "(other)").
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub items_by_kind: BTreeMap<String, u64>,
    pub status: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Per error kind, the last URL that failed that way and its cause.
    pub error_samples: BTreeMap<String, ErrorSample>,
    pub skipped: BTreeMap<String, u64>,
    pub retries: u64,
    /// Bodies cut at `fetch.max_body_bytes` (the page was still parsed, marked truncated).
    pub truncated_bodies: u64,
    /// Hosts given up on after `politeness.host_max_timeouts` consecutive timeouts.
    pub hosts_given_up: BTreeMap<String, String>,
    pub plugins: BTreeMap<String, PluginStats>,
    /// Plugin files that could not be loaded, one line each; the crawl ran without them.
    pub plugins_refused: Vec<String>,
    /// Plugins disabled during the crawl after repeated crashes, and why.
    pub plugins_disabled: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sitemaps: Option<SitemapStats>,
    /// URLs still to do: queued, plus those that were in flight when the crawl stopped.
    pub queued_left: u64,
    pub in_flight_left: u64,
    pub stopped_early: bool,
    pub elapsed_s: f64,
    pub output: String,
    /// Items an output could not take (a type clash in a per-kind table), by cause.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub output_rejected: BTreeMap<String, u64>,
    /// With a shared frontier: URLs this worker fetched after its lease had expired and gone
    /// to another worker (it stalled); their items were not written here.
    #[serde(skip_serializing_if = "is_zero")]
    pub leases_lost: u64,
    /// With a shared frontier: the crawl id and this worker's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedCrawl>,
    /// URLs done and failed before this run (a finished shared crawl).
    #[serde(skip)]
    pub done_before: u64,
    #[serde(skip)]
    pub failed_before: u64,
    pub files_dir: String,
    pub state: String,
}

/// Distinct item kinds counted by name in `items_by_kind` (and the metrics' labels).
pub const MAX_KINDS: usize = 100;

impl Summary {
    /// Counts one item of `kind`.
    pub fn count_item(&mut self, kind: &str) {
        if let Some(n) = self.items_by_kind.get_mut(kind) {
            *n += 1;
        } else if self.items_by_kind.len() < MAX_KINDS {
            self.items_by_kind.insert(kind.to_owned(), 1);
        } else {
            *self.items_by_kind.entry("(other)".to_owned()).or_default() += 1;
        }
    }

    pub fn errors_total(&self) -> u64 {
        self.errors.values().sum()
    }

    /// Whether nothing was fetched and something failed: every fetch failed.
    pub fn all_failed(&self) -> bool {
        self.pages + self.downloads == 0 && self.errors_total() > 0
    }
}

fn counts<K: fmt::Display>(m: &BTreeMap<K, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The end-of-crawl report, one fact per line.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self;
        writeln!(
            f,
            "{} in {:.1}s: {} pages ({} requests with redirects and robots.txt), {} downloads ({} new files), {:.1} MB, {} items written",
            if s.stopped_early { "stopped" } else { "done" },
            s.elapsed_s,
            s.pages,
            s.requests,
            s.downloads,
            s.files_new,
            s.bytes as f64 / 1e6,
            s.items
        )?;
        let status = counts(&s.status);
        writeln!(
            f,
            "  status codes: {}",
            if status.is_empty() { "-" } else { &status }
        )?;
        if s.errors_total() > 0 {
            writeln!(f, "  errors: {}", counts(&s.errors))?;
        }
        if !s.skipped.is_empty() {
            writeln!(f, "  skipped: {}", counts(&s.skipped))?;
        }
        if !s.output_rejected.is_empty() {
            writeln!(
                f,
                "  items the output refused: {}",
                counts(&s.output_rejected)
            )?;
        }
        if let Some(m) = &s.sitemaps {
            writeln!(
                f,
                "  sitemaps: {} files, {} URLs listed, {} queued{}",
                m.files,
                m.urls,
                m.queued,
                if m.errors.is_empty() {
                    String::new()
                } else {
                    format!(", {} unreadable", m.errors.len())
                }
            )?;
            for e in &m.errors {
                writeln!(f, "    {e}")?;
            }
        }
        for (name, p) in &s.plugins {
            if p.calls == 0 {
                writeln!(
                    f,
                    "  plugin {name}: claimed no page (its URL patterns matched none of the pages fetched)"
                )?;
                continue;
            }
            writeln!(
                f,
                "  plugin {name}: {} pages, {} items, {} links, {:.1} ms total{}",
                p.calls,
                p.items,
                p.links,
                p.time_ms,
                if p.errors.is_empty() {
                    String::new()
                } else {
                    format!(", errors {}", counts(&p.errors))
                }
            )?;
        }
        for (name, why) in &s.plugins_disabled {
            writeln!(f, "  plugin {name} was disabled: {why}")?;
        }
        for (host, why) in &s.hosts_given_up {
            writeln!(f, "  gave up on {host}: {why}")?;
        }
        if s.truncated_bodies > 0 {
            writeln!(
                f,
                "  {} bodies cut at fetch.max_body_bytes (parsed as truncated)",
                s.truncated_bodies
            )?;
        }
        if s.queued_left > 0 || s.stopped_early {
            writeln!(
                f,
                "  {} URLs still to do ({} of them were in flight): run the same command again to resume",
                s.queued_left, s.in_flight_left
            )?;
        }
        writeln!(f, "  items: {}", s.output)?;
        writeln!(f, "  files: {}", s.files_dir)?;
        write!(f, "  state: {} (summary.json)", s.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_that_claimed_nothing_and_errors_are_reported() {
        let mut s = Summary::default();
        s.plugins.insert("idle".into(), PluginStats::default());
        s.errors.insert("http_404".into(), 2);
        s.status.insert(404, 2);
        let text = s.to_string();
        assert!(text.starts_with("done in 0.0s: 0 pages"), "{text}");
        assert!(text.contains("plugin idle: claimed no page"), "{text}");
        assert!(text.contains("errors: http_404: 2"), "{text}");
        assert!(text.contains("status codes: 404: 2"), "{text}");
        assert!(s.all_failed());
    }
}
