//! The crawl's Prometheus metrics (`/metrics`), through `prometheus-client`. It owns the
//! registry and the metric families; the scheduler copies its summary counters in
//! (`sync`, so the metrics agree with summary.json by construction) and observes the two
//! histograms as pages finish. It must not read crawl state itself.

use crate::summary::Summary;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::fmt::Write as _;
use std::time::Duration;

/// An HTTP status class, the label of `sandcrawl_pages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusClass {
    Informational,
    Success,
    Redirect,
    ClientError,
    ServerError,
    Other,
}

impl StatusClass {
    pub fn of(status: u16) -> Self {
        match status {
            100..=199 => StatusClass::Informational,
            200..=299 => StatusClass::Success,
            300..=399 => StatusClass::Redirect,
            400..=499 => StatusClass::ClientError,
            500..=599 => StatusClass::ServerError,
            _ => StatusClass::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StatusClass::Informational => "1xx",
            StatusClass::Success => "2xx",
            StatusClass::Redirect => "3xx",
            StatusClass::ClientError => "4xx",
            StatusClass::ServerError => "5xx",
            StatusClass::Other => "other",
        }
    }
}

impl EncodeLabelValue for StatusClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusLabel {
    status: StatusClass,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PluginErrorLabel {
    plugin: String,
    reason: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Buckets from 1 ms to about 65 s: fetches and plugin calls both fall in that range.
fn seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Gauges read off the scheduler at each publish: what is true now, not a running total.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub queued: u64,
    pub known: u64,
    pub in_flight: u64,
    pub hosts_backing_off: u64,
    pub downloads_in_progress: u64,
    /// The fetcher's open connections, in use or kept idle for reuse.
    pub open_connections: u64,
    pub output_backlog: u64,
    pub paused: bool,
    /// Responses received so far (the summary adds them only at the end).
    pub requests: u64,
    pub items_total: u64,
}

pub struct Metrics {
    registry: Registry,
    requests: Counter,
    pages: Family<StatusLabel, Counter>,
    downloads: Counter,
    bytes: Counter,
    items: Family<KindLabel, Counter>,
    items_written: Counter,
    errors: Family<ReasonLabel, Counter>,
    skipped: Family<ReasonLabel, Counter>,
    retries: Counter,
    robots_denied: Counter,
    plugin_calls: Family<PluginLabel, Counter>,
    plugin_items: Family<PluginLabel, Counter>,
    plugin_errors: Family<PluginErrorLabel, Counter>,
    plugin_seconds: HistogramFamily<PluginLabel>,
    fetch_seconds: Histogram,
    queued: Gauge,
    known: Gauge,
    in_flight: Gauge,
    hosts_backing_off: Gauge,
    downloads_in_progress: Gauge,
    open_connections: Gauge,
    output_backlog: Gauge,
    paused: Gauge,
}

/// Raises a counter to `total` (counters only go up; the summary's never go down).
fn raise(c: &Counter, total: u64) {
    let now = c.get();
    if total > now {
        c.inc_by(total - now);
    }
}

fn gauge(g: &Gauge, v: u64) {
    g.set(i64::try_from(v).unwrap_or(i64::MAX));
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("sandcrawl"),
            requests: Counter::default(),
            pages: Family::default(),
            downloads: Counter::default(),
            bytes: Counter::default(),
            items: Family::default(),
            items_written: Counter::default(),
            errors: Family::default(),
            skipped: Family::default(),
            retries: Counter::default(),
            robots_denied: Counter::default(),
            plugin_calls: Family::default(),
            plugin_items: Family::default(),
            plugin_errors: Family::default(),
            plugin_seconds: Family::new_with_constructor(seconds_histogram),
            fetch_seconds: seconds_histogram(),
            queued: Gauge::default(),
            known: Gauge::default(),
            in_flight: Gauge::default(),
            hosts_backing_off: Gauge::default(),
            downloads_in_progress: Gauge::default(),
            open_connections: Gauge::default(),
            output_backlog: Gauge::default(),
            paused: Gauge::default(),
        };
        let r = &mut m.registry;
        // prometheus-client appends `_total` to counters.
        r.register(
            "requests",
            "HTTP responses received: pages, downloads, every redirect hop, robots.txt, sitemaps",
            m.requests.clone(),
        );
        r.register(
            "pages",
            "Fetches of crawled URLs (pages, downloads, retried attempts) by the status class they answered with",
            m.pages.clone(),
        );
        r.register("downloads", "Files downloaded", m.downloads.clone());
        r.register(
            "bytes",
            "Bytes received for pages and downloads, as sent on the wire",
            m.bytes.clone(),
        );
        r.register(
            "items",
            "Items handed to the outputs, by kind",
            m.items.clone(),
        );
        r.register(
            "items_written",
            "Items in the outputs, this run and earlier runs of the same state",
            m.items_written.clone(),
        );
        r.register("errors", "URLs that failed, by reason", m.errors.clone());
        r.register(
            "skipped",
            "URLs and links not fetched, by reason (robots_disallowed, out of scope, caps)",
            m.skipped.clone(),
        );
        r.register("retries", "Fetches retried", m.retries.clone());
        r.register(
            "robots_denied",
            "URLs robots.txt disallowed",
            m.robots_denied.clone(),
        );
        r.register(
            "plugin_calls",
            "Plugin calls, by plugin",
            m.plugin_calls.clone(),
        );
        r.register(
            "plugin_items",
            "Items plugins returned, by plugin",
            m.plugin_items.clone(),
        );
        r.register(
            "plugin_errors",
            "Plugin calls that failed, by plugin and reason (trap, timeout, memory, invalid output, disabled)",
            m.plugin_errors.clone(),
        );
        r.register(
            "plugin_duration_seconds",
            "Time of one plugin call, by plugin",
            m.plugin_seconds.clone(),
        );
        r.register(
            "fetch_duration_seconds",
            "Time from a request's start to its answer (redirects included)",
            m.fetch_seconds.clone(),
        );
        r.register("queue_depth", "URLs queued", m.queued.clone());
        r.register(
            "known_urls",
            "URLs the crawl knows (queued, in flight, done, failed)",
            m.known.clone(),
        );
        r.register("in_flight", "Requests in flight", m.in_flight.clone());
        r.register(
            "hosts_backing_off",
            "Hosts blocked for a while (Retry-After, errors, timeouts)",
            m.hosts_backing_off.clone(),
        );
        r.register(
            "downloads_in_progress",
            "Downloads streaming to disk",
            m.downloads_in_progress.clone(),
        );
        r.register(
            "open_connections",
            "Connections open to sites, in use or kept for reuse (bounded: fetch.max_kept_connections)",
            m.open_connections.clone(),
        );
        r.register(
            "output_backlog_items",
            "Items waiting for an output (a database) to make them durable",
            m.output_backlog.clone(),
        );
        r.register(
            "paused",
            "1 while fetching is paused (POST /api/pause), else 0",
            m.paused.clone(),
        );
        m
    }

    pub fn observe_fetch(&self, took: Duration) {
        self.fetch_seconds.observe(took.as_secs_f64());
    }

    pub fn observe_plugin(&self, plugin: &str, took: Duration) {
        self.plugin_seconds
            .get_or_create(&PluginLabel {
                plugin: plugin.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Copies the summary's counters and the current gauges in.
    pub fn sync(&self, s: &Summary, g: &Gauges) {
        raise(&self.requests, g.requests);
        let mut by_class: std::collections::HashMap<StatusClass, u64> = Default::default();
        for (code, n) in &s.status {
            *by_class.entry(StatusClass::of(*code)).or_default() += n;
        }
        for (status, n) in by_class {
            raise(&self.pages.get_or_create(&StatusLabel { status }), n);
        }
        raise(&self.downloads, s.downloads);
        raise(&self.bytes, s.bytes);
        for (kind, n) in &s.items_by_kind {
            raise(
                &self.items.get_or_create(&KindLabel { kind: kind.clone() }),
                *n,
            );
        }
        raise(&self.items_written, g.items_total);
        for (reason, n) in &s.errors {
            let l = ReasonLabel {
                reason: reason.clone(),
            };
            raise(&self.errors.get_or_create(&l), *n);
        }
        for (reason, n) in &s.skipped {
            let l = ReasonLabel {
                reason: reason.clone(),
            };
            raise(&self.skipped.get_or_create(&l), *n);
        }
        raise(&self.retries, s.retries);
        raise(
            &self.robots_denied,
            s.skipped.get("robots_disallowed").copied().unwrap_or(0),
        );
        for (name, p) in &s.plugins {
            let l = PluginLabel {
                plugin: name.clone(),
            };
            raise(&self.plugin_calls.get_or_create(&l), p.calls);
            raise(&self.plugin_items.get_or_create(&l), p.items);
            for (reason, n) in &p.errors {
                let l = PluginErrorLabel {
                    plugin: name.clone(),
                    reason: reason.clone(),
                };
                raise(&self.plugin_errors.get_or_create(&l), *n);
            }
        }
        gauge(&self.queued, g.queued);
        gauge(&self.known, g.known);
        gauge(&self.in_flight, g.in_flight);
        gauge(&self.hosts_backing_off, g.hosts_backing_off);
        gauge(&self.downloads_in_progress, g.downloads_in_progress);
        gauge(&self.open_connections, g.open_connections);
        gauge(&self.output_backlog, g.output_backlog);
        gauge(&self.paused, u64::from(g.paused));
    }

    /// The text exposition format (OpenMetrics 1.0, which Prometheus reads).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            // Encoding into a String cannot fail; an empty exposition beats a panic.
            out.clear();
            let _ = writeln!(out, "# EOF");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_follow_the_summary_and_never_go_down() {
        let m = Metrics::new();
        let mut s = Summary::default();
        s.status.insert(200, 5);
        s.status.insert(204, 1);
        s.status.insert(503, 2);
        s.errors.insert("http_404".into(), 3);
        s.skipped.insert("robots_disallowed".into(), 4);
        s.items_by_kind.insert("quote".into(), 7);
        let g = Gauges {
            queued: 9,
            requests: 11,
            open_connections: 3,
            ..Gauges::default()
        };
        m.sync(&s, &g);
        m.observe_fetch(Duration::from_millis(20));
        m.observe_plugin("quotes", Duration::from_millis(3));
        let text = m.render();
        for line in [
            "sandcrawl_pages_total{status=\"2xx\"} 6",
            "sandcrawl_pages_total{status=\"5xx\"} 2",
            "sandcrawl_errors_total{reason=\"http_404\"} 3",
            "sandcrawl_robots_denied_total 4",
            "sandcrawl_items_total{kind=\"quote\"} 7",
            "sandcrawl_requests_total 11",
            "sandcrawl_queue_depth 9",
            "sandcrawl_open_connections 3",
            "sandcrawl_fetch_duration_seconds_count 1",
            "sandcrawl_plugin_duration_seconds_count{plugin=\"quotes\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        // A lower value (a summary that was not updated) does not lower a counter.
        s.status.insert(200, 1);
        m.sync(&s, &g);
        assert!(
            m.render()
                .contains("sandcrawl_pages_total{status=\"2xx\"} 6")
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
