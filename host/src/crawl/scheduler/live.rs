//! The scheduler's side of `--listen`: the snapshot it publishes once a second (status
//! page, `/api/status`, `/metrics`) and its answers to the control API (pause, resume,
//! stop, seeds). It reads the scheduler's state and changes only what those requests ask
//! (`held`, new seeds through scope and dedup); it must not serve HTTP (`monitor` does).

use super::Scheduler;
use crate::crawl::links::new_url;
use crate::frontier::UrlKind;
use crate::monitor::{
    Control, ErrorRow, Gauges, HOST_ROWS, HostRow, Monitor, PluginRow, RunState, SeedReport,
    Status, StatusClass,
};
use anyhow::Result;
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

/// Characters of an error's cause kept for the status page.
const MAX_CAUSE: usize = 500;

fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_owned(),
    }
}

/// What a control request asks the run loop to do next.
pub(super) enum Next {
    Continue,
    /// `POST /api/stop`: the same graceful stop as Ctrl+C.
    Stop,
}

impl Scheduler {
    pub(super) fn run_state(&self) -> RunState {
        if self.stopping {
            RunState::Stopping
        } else if self.held {
            RunState::Paused
        } else if self.paused {
            RunState::Throttled
        } else {
            RunState::Running
        }
    }

    /// Publishes a snapshot if one is due (once a second, and only with `--listen`).
    pub(super) fn publish_if_due(&mut self) {
        if self.monitor.as_ref().is_some_and(|m| m.due(Instant::now())) {
            self.publish(self.run_state());
        }
    }

    /// Publishes a snapshot now: the status and the metrics from the same numbers.
    pub(super) fn publish(&mut self, state: RunState) {
        if self.monitor.is_none() {
            return;
        }
        let (status, gauges) = self.snapshot(state);
        if let Some(m) = self.monitor.as_mut() {
            m.publish(status, &self.summary, &gauges);
        }
    }

    fn snapshot(&self, state: RunState) -> (Status, Gauges) {
        let now = Instant::now();
        let s = &self.summary;
        let c = self.frontier.counters();
        let requests = s.requests + self.shared.fetcher.responses();
        let gauges = Gauges {
            queued: c.queued,
            known: c.known,
            in_flight: self.in_flight as u64,
            hosts_backing_off: self.politeness.backing_off(now) as u64,
            downloads_in_progress: self.shared.fetcher.downloads_in_progress(),
            open_connections: self.shared.fetcher.open_connections() as u64,
            output_backlog: self.sink.backlog() as u64,
            paused: self.held,
            requests,
            items_total: self.sink.items_written(),
        };
        let mut classes: BTreeMap<String, u64> = BTreeMap::new();
        for (code, n) in &s.status {
            *classes
                .entry(StatusClass::of(*code).as_str().to_owned())
                .or_default() += n;
        }
        let status = Status {
            state,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            pages: s.pages,
            pages_total: c.pages,
            requests,
            downloads: s.downloads,
            items: self.sink.items_written().saturating_sub(self.items_before),
            bytes: s.bytes,
            errors: s.errors_total(),
            retries: s.retries,
            queued: c.queued,
            in_flight: self.in_flight as u64,
            known: c.known,
            max_pages: self.cfg.scope.max_pages,
            output: s.output.clone(),
            output_backlog: gauges.output_backlog,
            status_classes: classes,
            skipped: s.skipped.clone(),
            hosts_total: self.politeness.hosts_seen() as u64,
            hosts: self.host_rows(now),
            plugins: self.plugin_rows(),
            // Filled in by the monitor, which keeps these histories.
            pages_per_s: Vec::new(),
            recent_errors: Vec::new(),
        };
        (status, gauges)
    }

    /// The busiest hosts: those with requests in flight or backing off, and those with the
    /// largest queues.
    fn host_rows(&self, now: Instant) -> Vec<HostRow> {
        let mut names: HashSet<&str> = self
            .politeness
            .busy_hosts(now)
            .take(HOST_ROWS * 4)
            .collect();
        let largest = self.frontier.largest_queues(HOST_ROWS);
        names.extend(largest.iter().map(|(h, _)| h.as_str()));
        let mut rows: Vec<HostRow> = names
            .into_iter()
            .map(|host| {
                let view = self.politeness.view(host, now);
                HostRow {
                    host: host.to_owned(),
                    queued: self.frontier.host_queued(host),
                    in_flight: view.map_or(0, |v| v.in_flight as u64),
                    delay_ms: view.map_or(0, |v| v.delay.as_millis() as u64),
                    last_status: view.and_then(|v| v.last_status),
                    backing_off_s: view.and_then(|v| v.backing_off).map(|d| d.as_secs_f64()),
                }
            })
            .collect();
        rows.sort_by(|a, b| {
            b.in_flight
                .cmp(&a.in_flight)
                .then(b.queued.cmp(&a.queued))
                .then_with(|| a.host.cmp(&b.host))
        });
        rows.truncate(HOST_ROWS);
        rows
    }

    fn plugin_rows(&self) -> Vec<PluginRow> {
        let roster = self.shared.roster.current();
        self.summary
            .plugins
            .iter()
            .map(|(name, p)| PluginRow {
                name: name.clone(),
                calls: p.calls,
                items: p.items,
                errors: p.errors.values().sum(),
                mean_ms: if p.calls > 0 {
                    p.time_ms / p.calls as f64
                } else {
                    0.0
                },
                disabled: roster
                    .iter()
                    .find(|a| a.name() == name)
                    .and_then(|a| a.health.disabled())
                    .map(str::to_owned),
            })
            .collect()
    }

    /// Keeps a failed URL for the status page's recent errors.
    pub(super) fn note_error(&mut self, reason: &str, url: &str, cause: &str) {
        let at_s = self.started.elapsed().as_secs_f64();
        if let Some(m) = self.monitor.as_mut() {
            m.error(ErrorRow {
                at_s,
                reason: reason.to_owned(),
                url: url.to_owned(),
                // A cause quotes what a server said; the page needs its gist, not a megabyte.
                cause: clip(cause, MAX_CAUSE),
            });
        }
    }

    /// Acts on a control request and answers it.
    pub(super) fn control(&mut self, c: Control) -> Result<Next> {
        let next = match c {
            Control::Pause(reply) => {
                if !self.held && !self.stopping {
                    self.held = true;
                    tracing::info!(
                        in_flight = self.in_flight,
                        "paused from the API: no new request starts (POST /api/resume continues)"
                    );
                }
                let _ = reply.send(self.run_state());
                Next::Continue
            }
            Control::Resume(reply) => {
                if self.held {
                    self.held = false;
                    tracing::info!("resumed from the API");
                }
                let _ = reply.send(self.run_state());
                Next::Continue
            }
            Control::Stop(reply) => {
                tracing::warn!("stop requested from the API");
                self.stopping = true;
                let _ = reply.send(RunState::Stopping);
                Next::Stop
            }
            Control::Seeds { urls, reply } => {
                let report = self.add_seeds(urls)?;
                let _ = reply.send(report);
                Next::Continue
            }
        };
        self.publish(self.run_state());
        Ok(next)
    }

    /// Answers control requests while the crawl stops: nothing new is taken.
    pub(super) fn refuse(&mut self, c: Control) {
        match c {
            Control::Pause(r) | Control::Resume(r) | Control::Stop(r) => {
                let _ = r.send(RunState::Stopping);
            }
            Control::Seeds { urls, reply } => {
                let _ = reply.send(SeedReport {
                    refused: urls
                        .into_iter()
                        .map(|url| crate::monitor::RefusedSeed {
                            url,
                            why: "the crawl is stopping".into(),
                        })
                        .collect(),
                    ..SeedReport::default()
                });
            }
        }
    }

    /// New seeds at depth 0: checked and normalized like the command line's, held to the
    /// crawl's scope like any link, and queued only if new. robots.txt is checked when they
    /// are fetched, as for every URL.
    fn add_seeds(&mut self, urls: Vec<String>) -> Result<SeedReport> {
        let mut report = SeedReport::default();
        let mut queue = Vec::new();
        for raw in urls {
            let mut u = match url::Url::parse(raw.trim()) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => u,
                Ok(_) => {
                    report.refused.push(crate::monitor::RefusedSeed {
                        url: raw,
                        why: "not an http(s) URL with a host".into(),
                    });
                    continue;
                }
                Err(e) => {
                    report.refused.push(crate::monitor::RefusedSeed {
                        url: raw,
                        why: format!("not a URL: {e}"),
                    });
                    continue;
                }
            };
            self.cfg.normalize.apply(&mut u);
            if let Err(why) = self.shared.scope.check_url(&u) {
                report.refused.push(crate::monitor::RefusedSeed {
                    url: raw,
                    why: format!(
                        "out of scope ({}); the crawl's scope is fixed when it starts (scope.allowed_domains, allow, deny)",
                        why.as_str()
                    ),
                });
                continue;
            }
            queue.push(new_url(&u, &self.cfg.normalize, 0, UrlKind::Page));
        }
        let valid = queue.len();
        report.added = self.frontier.add(queue)?;
        report.known = valid - report.added;
        if report.added > 0 {
            tracing::info!(added = report.added, "seeds added from the API");
        }
        Ok(report)
    }

    /// Observes a fetch that got an answer, and its plugin calls, in the metrics'
    /// histograms (live, between the once-a-second copies of the counters).
    pub(super) fn observe(
        &self,
        latency: Option<std::time::Duration>,
        runs: &[crate::crawl::outcome::PluginRun],
    ) {
        if let Some(m) = self.monitor.as_ref().map(Monitor::metrics) {
            if let Some(took) = latency {
                m.observe_fetch(took);
            }
            for (name, _, took) in runs {
                m.observe_plugin(name, *took);
            }
        }
    }
}
