//! The crawl's one owner of mutable state: frontier, sink, politeness, summary, the cache of
//! known link texts, the ready-host structure, redirect claims and the leases in flight.
//! Workers only ever talk to it through channels (no locks on the hot path).
//!
//! A round starts every URL politeness and the budgets allow (`lease_round`); each finished
//! lease is committed (`commit`): items go to the sink first, and once the sink reports them
//! durable (at once for files, after the transaction for a database: `settle`) one frontier
//! call marks the page (and every URL its redirects reached) done, queues its links and
//! records the sink's position. Pages waiting for a database count against the budgets, and
//! while too many items wait no new page is started (back-pressure). With `--listen`, it
//! publishes a snapshot once a second and answers the API's pause, resume, stop and seeds
//! between commits (`scheduler/live.rs`). It works through the `Frontier` and `Sink` traits
//! and knows no HTTP (`fetch` says what a response means) and no plugin internals.

mod live;

use super::links::LinkFilter;
use super::outcome::{Done, FailureKind, Skip, Work};
use super::ready::ReadyHosts;
use super::scope::QueryVariants;
use super::worker::{Claim, Shared, work_or_report};
use crate::config::CrawlConfig;
use crate::frontier::{Completion, Frontier, Lease, NewUrl, Outcome, UrlKind};
use crate::monitor::{Monitor, RunState};
use crate::normalize::Fingerprint;
use crate::politeness::{Feedback, Politeness};
use crate::progress::Progress;
use crate::sink::{Item, Sink};
use crate::summary::{ErrorSample, Summary};
use anyhow::Result;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// URLs of a given-up host failed per round, so the loop keeps serving the rest.
const GIVEN_UP_PER_ROUND: usize = 1_000;

/// How long Ctrl+C waits for the pages in flight before it stops anyway.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub struct Scheduler {
    cfg: CrawlConfig,
    shared: Arc<Shared>,
    frontier: Box<dyn Frontier>,
    sink: Box<dyn Sink>,
    politeness: Politeness,
    summary: Summary,
    links: LinkFilter,
    query_variants: QueryVariants,
    hosts: ReadyHosts,
    /// Redirect targets claimed by leases in flight: target → the claiming lease.
    claims: HashMap<Fingerprint, Fingerprint>,
    claimed_by: HashMap<Fingerprint, Vec<Fingerprint>>,
    /// Consecutive timeouts per host, reset by any answer.
    timeouts: HashMap<String, u32>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    claims_rx: mpsc::UnboundedReceiver<Claim>,
    in_flight: usize,
    /// Pages whose items are written but not yet durable, in write order.
    pending: VecDeque<Pending>,
    /// Of those, per host (for `max_pages_per_host`) and pages (for `max_pages`).
    pending_hosts: HashMap<String, u64>,
    pending_pages: u64,
    /// The sink's position after the last page committed to the frontier: what every
    /// completion stores, so a resume cuts exactly the items of uncommitted pages.
    token: Vec<u8>,
    /// Whether fetching is paused because too many items wait for the sink.
    paused: bool,
    /// Whether fetching is paused from the API (`POST /api/pause`).
    held: bool,
    /// Whether a stop (Ctrl+C, `POST /api/stop`) is finishing the requests in flight.
    stopping: bool,
    /// The `--listen` endpoint's end, when there is one.
    monitor: Option<Monitor>,
    items_before: u64,
    started: Instant,
}

/// A page (or download) whose items wait for the sink to make them durable.
struct Pending {
    ticket: u64,
    /// The sink's position right after this page's items were written.
    token: Vec<u8>,
    lease: Lease,
    aliases: Vec<Fingerprint>,
    page: Option<PendingPage>,
}

struct PendingPage {
    links: Vec<NewUrl>,
    raw: Vec<Fingerprint>,
}

/// The parts a scheduler is built from (see `crawl::run`).
pub struct Parts {
    pub cfg: CrawlConfig,
    pub shared: Arc<Shared>,
    pub claims_rx: mpsc::UnboundedReceiver<Claim>,
    pub frontier: Box<dyn Frontier>,
    pub sink: Box<dyn Sink>,
    pub summary: Summary,
    pub monitor: Option<Monitor>,
}

impl Scheduler {
    pub fn new(p: Parts) -> Result<Self> {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let mut hosts = ReadyHosts::default();
        let mut frontier = p.frontier;
        // The only full walk over hosts: from here on the frontier reports hosts that gain work.
        frontier.take_woken();
        for h in frontier.hosts_with_work() {
            hosts.wake(&h);
        }
        Ok(Scheduler {
            politeness: Politeness::new(p.cfg.politeness.clone()).with_hosts(&p.cfg.hosts)?,
            query_variants: QueryVariants::new(p.cfg.scope.max_query_variants),
            items_before: p.sink.items_written(),
            token: p.sink.commit_token(),
            pending: VecDeque::new(),
            pending_hosts: HashMap::new(),
            pending_pages: 0,
            paused: false,
            held: false,
            stopping: false,
            monitor: p.monitor,
            cfg: p.cfg,
            shared: p.shared,
            frontier,
            sink: p.sink,
            summary: p.summary,
            links: LinkFilter::default(),
            hosts,
            claims: HashMap::new(),
            claimed_by: HashMap::new(),
            timeouts: HashMap::new(),
            done_tx,
            done_rx,
            claims_rx: p.claims_rx,
            in_flight: 0,
            started: Instant::now(),
        })
    }

    /// Crawls until nothing is left to start or finish, a budget is spent, or `stop` turns
    /// true; then finishes the pages in flight (up to `STOP_GRACE`).
    pub async fn run(
        &mut self,
        mut stop: watch::Receiver<bool>,
        progress: &Progress,
    ) -> Result<()> {
        // Stopped before the loop began (Ctrl+C while sitemaps were read): nothing starts.
        if *stop.borrow() {
            self.summary.stopped_early = true;
            return Ok(());
        }
        let mut last_checkpoint = Instant::now();
        let checkpoint_every = Duration::from_secs(self.cfg.checkpoint_interval_s.max(1));
        loop {
            let (more, next_wake) = self.lease_round()?;
            let (summary, sink) = (&self.summary, &self.sink);
            let (items_before, in_flight, started) =
                (self.items_before, self.in_flight, self.started);
            self.frontier.tick(&|| {
                let secs = started.elapsed().as_secs_f64().max(0.001);
                crate::frontier::WorkerStats {
                    pages: summary.pages,
                    items: sink.items_written() - items_before,
                    errors: summary.errors.values().sum(),
                    pages_per_s: summary.pages as f64 / secs,
                    in_flight,
                    pid: std::process::id(),
                }
            })?;
            // Other workers of a shared crawl may still add links, unless the budget is spent.
            if self.in_flight == 0
                && !more
                && self.pending.is_empty()
                && !(self.budget_left() && self.frontier.shared_work()?)
            {
                return Ok(());
            }
            if last_checkpoint.elapsed() >= checkpoint_every {
                self.checkpoint()?;
                last_checkpoint = Instant::now();
            }
            progress.tick(
                &self.frontier.counters(),
                self.sink.items_written(),
                &self.summary,
                self.started,
                self.shared.fetcher.download_bytes(),
            );
            self.publish_if_due();
            let sleep_for = next_wake
                .map(|w| w.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(500))
                .min(Duration::from_millis(500));
            tokio::select! {
                Some(done) = self.done_rx.recv() => {
                    self.commit(done)?;
                    // Drain whatever else finished, so commits batch up between rounds.
                    while let Ok(done) = self.done_rx.try_recv() {
                        self.commit(done)?;
                    }
                }
                Some(claim) = self.claims_rx.recv() => self.serve_claim(claim)?,
                () = self.sink.changed() => self.settle()?,
                _ = tokio::time::sleep(sleep_for) => {}
                control = Monitor::next(self.monitor.as_mut()) => {
                    if let live::Next::Stop = self.control(control)? {
                        return self.stop_now().await;
                    }
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return self.stop_now().await;
                    }
                }
            }
        }
    }

    /// The graceful stop of Ctrl+C and `POST /api/stop`.
    async fn stop_now(&mut self) -> Result<()> {
        self.summary.stopped_early = true;
        self.stopping = true;
        tracing::warn!(
            in_flight = self.in_flight,
            "stopping: finishing pages in flight (Ctrl+C again to quit at once)"
        );
        self.publish(RunState::Stopping);
        self.drain().await
    }

    /// Commits the leases in flight as they finish, for at most `STOP_GRACE`; the rest stay
    /// queued in the store and are fetched on resume.
    async fn drain(&mut self) -> Result<()> {
        let grace = tokio::time::Instant::now() + STOP_GRACE;
        while self.in_flight > 0 || !self.pending.is_empty() {
            tokio::select! {
                Some(done) = self.done_rx.recv(), if self.in_flight > 0 => self.commit(done)?,
                Some(claim) = self.claims_rx.recv() => self.serve_claim(claim)?,
                () = self.sink.changed() => self.settle()?,
                control = Monitor::next(self.monitor.as_mut()) => self.refuse(control),
                _ = tokio::time::sleep_until(grace) => break,
            }
        }
        Ok(())
    }

    /// The crawl failed: a shared frontier gets the leases this worker holds back now, if it
    /// can (otherwise they expire). A local store needs nothing: its leases are in memory.
    pub fn abandon(&mut self) {
        if let Err(e) = self.frontier.close() {
            tracing::debug!("giving leases back after the error: {e:#}");
        }
    }

    /// Makes everything durable and returns the summary.
    pub fn finish(mut self) -> Result<Summary> {
        self.checkpoint()?;
        self.frontier.close()?;
        self.publish(RunState::Finished);
        let c = self.frontier.counters();
        let mut summary = self.summary;
        summary.items = self.sink.items_written() - self.items_before;
        summary.items_total = self.sink.items_written();
        // URLs in flight when the crawl stopped go back to their queues on the next run.
        let unfinished = (self.in_flight + self.pending.len()) as u64;
        summary.in_flight_left = unfinished;
        summary.queued_left = c.queued + unfinished;
        summary.output_rejected = self.sink.rejected();
        summary.leases_lost = self.frontier.leases_lost();
        summary.elapsed_s = self.started.elapsed().as_secs_f64();
        summary.requests += self.shared.fetcher.responses();
        for active in self.shared.roster.current().iter() {
            if let Some(why) = active.health.disabled() {
                summary
                    .plugins_disabled
                    .insert(active.name().to_owned(), why.to_owned());
            }
        }
        Ok(summary)
    }

    fn budget_left(&self) -> bool {
        self.cfg.scope.max_pages.is_none_or(|m| {
            self.frontier.counters().pages + (self.in_flight as u64) + self.pending_pages < m
        })
    }

    fn under_host_cap(&self, host: &str) -> bool {
        self.cfg.scope.max_pages_per_host.is_none_or(|cap| {
            self.frontier.host_pages(host)
                + (self.politeness.host_in_flight(host) as u64)
                + self.pending_hosts.get(host).copied().unwrap_or(0)
                < cap
        })
    }

    /// Starts every URL politeness and the budgets allow, looking only at hosts that are
    /// ready (see `ready.rs`). Returns whether anything is left to start, and when the next
    /// waiting host is due.
    pub fn lease_round(&mut self) -> Result<(bool, Option<Instant>)> {
        let now = Instant::now();
        for h in self.frontier.take_woken() {
            self.hosts.wake(&h);
        }
        self.hosts.promote(now);
        // Requests in flight count against max_pages before they finish, so the limit is exact.
        if !self.budget_left() {
            return Ok((false, None));
        }
        // Paused from the API: requests in flight finish, nothing new starts, and the crawl
        // waits for a resume (or a stop) rather than ending.
        if self.held {
            return Ok((true, None));
        }
        // Back-pressure: while the sink is behind (a slow or unreachable database), pages in
        // flight finish but no new one starts, so memory stays bounded.
        let backlog = self.sink.backlog();
        if backlog >= self.cfg.output.sql.max_backlog_items {
            if !self.paused {
                self.paused = true;
                tracing::info!(
                    output = %self.sink.describe(),
                    "fetching paused: {backlog} items wait for the output"
                );
            }
            return Ok((true, None));
        }
        if self.paused {
            self.paused = false;
            tracing::info!("fetching resumed: the output caught up");
        }
        while let Some(host) = self.hosts.pop() {
            if !self.budget_left() || !self.politeness.global_slot_free() {
                self.hosts.unpop(host);
                break;
            }
            if !self.under_host_cap(&host) {
                // A capped host takes no more URLs; its requests in flight keep the crawl
                // alive until they finish, and a finish wakes it only to find it capped.
                self.hosts.forget(&host);
                continue;
            }
            if let Some(cause) = self.summary.hosts_given_up.get(&host).cloned() {
                self.fail_given_up_host(&host, &cause)?;
                if self.frontier.has_work(&host) {
                    self.hosts.wait_until(host, now);
                }
                continue;
            }
            while self.politeness.can_start(&host, now)
                && self.budget_left()
                && self.under_host_cap(&host)
            {
                let limits = self.politeness.limits(&host);
                let Some(lease) = self.frontier.lease_polite(&host, limits)? else {
                    break;
                };
                self.start(&host, lease);
            }
            if !self.frontier.has_work(&host) {
                self.hosts.forget(&host);
                continue;
            }
            // A shared frontier may hold a host back for other workers' requests.
            let store_wait = self.frontier.not_before(&host).filter(|at| *at > now);
            match self
                .politeness
                .ready_at(&host)
                .filter(|at| *at > now)
                .max(store_wait)
            {
                Some(at) => self.hosts.wait_until(host, at),
                None if self.politeness.host_in_flight(&host) > 0 => self.hosts.park(host),
                // Only a global limit stopped it: first in line next round.
                None => {
                    self.hosts.unpop(host);
                    break;
                }
            }
        }
        let more = self.budget_left() && self.hosts.has_scheduled();
        let next = match (self.hosts.next_due(), self.frontier.wake_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok((more || self.in_flight > 0, next))
    }

    fn start(&mut self, host: &str, lease: Lease) {
        self.politeness.started(host);
        self.in_flight += 1;
        let tx = self.done_tx.clone();
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let done = work_or_report(&shared, lease).await;
            let _ = tx.send(done);
        });
    }

    /// A host that kept timing out: its queued URLs fail without a request (a bounded
    /// number per round, so the loop keeps serving the rest of the crawl).
    fn fail_given_up_host(&mut self, host: &str, cause: &str) -> Result<()> {
        for _ in 0..GIVEN_UP_PER_ROUND {
            let Some(lease) = self.frontier.lease(host)? else {
                break;
            };
            self.record_error(&FailureKind::HostGaveUp, &lease.record.url, cause);
            self.complete(&lease, Outcome::Failed, false)?;
        }
        Ok(())
    }

    /// Completes a lease with no links at the sink's current position.
    fn complete(&mut self, lease: &Lease, outcome: Outcome, counted_page: bool) -> Result<()> {
        self.complete_with(lease, outcome, counted_page, &[])
    }

    fn complete_with(
        &mut self,
        lease: &Lease,
        outcome: Outcome,
        counted_page: bool,
        aliases: &[Fingerprint],
    ) -> Result<()> {
        let mut done = Completion::new(outcome, &self.token).aliases(aliases);
        done.counted_page = counted_page;
        self.frontier.complete(lease, done)?;
        Ok(())
    }

    fn record_error(&mut self, kind: &FailureKind, url: &str, cause: &str) {
        let key = kind.key().into_owned();
        self.note_error(&key, url, cause);
        *self.summary.errors.entry(key.clone()).or_default() += 1;
        self.summary.error_samples.insert(
            key,
            ErrorSample {
                url: url.to_owned(),
                cause: cause.to_owned(),
            },
        );
    }

    fn skip(&mut self, why: Skip, n: u64) {
        *self.summary.skipped.entry(why.as_str().into()).or_default() += n;
    }

    /// Answers a worker's redirect claim: a target already known to the frontier, or
    /// claimed by another lease in flight, is a duplicate.
    fn serve_claim(&mut self, c: Claim) -> Result<()> {
        let ok = if c.target == c.lease {
            true
        } else if let Some(owner) = self.claims.get(&c.target) {
            *owner == c.lease
        } else if self.frontier.is_known(&c.target)? {
            false
        } else {
            self.claims.insert(c.target, c.lease);
            self.claimed_by.entry(c.lease).or_default().push(c.target);
            true
        };
        let _ = c.reply.send(ok);
        Ok(())
    }

    /// Forgets the claims of a lease whose work is over (committed, failed or retried).
    fn release_claims(&mut self, lease: &Fingerprint) {
        if let Some(targets) = self.claimed_by.remove(lease) {
            for t in targets {
                self.claims.remove(&t);
            }
        }
    }

    fn checkpoint(&mut self) -> Result<()> {
        // Items first: once they are fsynced, the frontier can forget how to undo the pages
        // completed since the last checkpoint.
        self.sink.sync()?;
        self.frontier.checkpoint(&self.token)
    }

    /// Records a finished lease: politeness feedback, counters, then the commit itself.
    pub fn commit(&mut self, done: Done) -> Result<()> {
        self.in_flight = self.in_flight.saturating_sub(1);
        let Done {
            lease,
            work,
            latency,
            crawl_delay,
        } = done;
        let host = lease.record.host.clone();
        if let Some(d) = crawl_delay {
            self.politeness.set_crawl_delay(&host, d);
        }
        let status = work.status();
        let runs: &[super::outcome::PluginRun] = match &work {
            Work::Page { plugin_runs, .. } => plugin_runs,
            _ => &[],
        };
        self.observe(status.map(|_| latency), runs);
        self.politeness
            .finished(&host, Feedback { latency, status });
        if let Some(s) = status {
            *self.summary.status.entry(s).or_default() += 1;
        }
        if matches!(&work, Work::Retry { kind, .. } if kind.is_timeout()) {
            *self.timeouts.entry(host.clone()).or_default() += 1;
        } else if status.is_some() {
            self.timeouts.remove(&host);
        }
        let result = self.commit_work(&lease, work);
        // A page waiting for the sink keeps its claims until it is committed (`settle`).
        if self.pending.back().is_none_or(|p| p.lease.fp != lease.fp) {
            self.release_claims(&lease.fp);
        }
        // One of its requests finished: a parked host may start again, first in line.
        if self.frontier.has_work(&host) {
            self.hosts.wake_hot(&host);
        } else {
            self.close_if_done(&host);
        }
        result
    }

    /// A host with nothing queued, in flight or waiting for the sink is done for now: its
    /// idle connections close at once rather than after `fetch.idle_timeout_ms`, so a broad
    /// crawl's memory follows the hosts in progress, not every host seen lately. A link to it
    /// found later opens a new connection, as it would after the idle timeout.
    fn close_if_done(&self, host: &str) {
        if self.politeness.host_in_flight(host) == 0 && !self.pending_hosts.contains_key(host) {
            self.shared.fetcher.close_idle(host);
        }
    }

    fn commit_work(&mut self, lease: &Lease, work: Work) -> Result<()> {
        let is_page = lease.record.kind == UrlKind::Page;
        match work {
            Work::Disallowed => {
                self.skip(Skip::RobotsDisallowed, 1);
                self.complete(lease, Outcome::Done, false)
            }
            Work::Duplicate { target } => {
                tracing::debug!(url = %lease.record.url, %target, "redirects to a URL the crawl already has");
                self.skip(Skip::RedirectDuplicate, 1);
                self.complete(lease, Outcome::Done, false)
            }
            Work::Retry {
                kind,
                cause,
                retry_after,
            } => self.retry_or_fail(lease, kind, cause, retry_after),
            Work::Failed { kind, cause, .. } => {
                self.record_error(&kind, &lease.record.url, &cause);
                self.complete(lease, Outcome::Failed, is_page)
            }
            // With a shared frontier, a worker that stalled past its lease's expiry lost the
            // URL to another worker: it keeps nothing of it (that worker writes its items).
            Work::Download { .. } | Work::Page { .. } if !self.frontier.confirm(lease)? => Ok(()),
            Work::Download {
                resp,
                item,
                new_file,
                aliases,
            } => {
                self.summary.downloads += 1;
                self.summary.bytes += resp.wire_bytes;
                if new_file {
                    self.summary.files_new += 1;
                }
                let items: Vec<Item> = item.into_iter().collect();
                let key = self.shared.normalize.fingerprint(&resp.final_url);
                self.capture(lease, &resp, &items, key, true)?;
                self.write(&items, lease, aliases, None)
            }
            Work::Page {
                resp,
                items,
                links,
                links_dropped,
                plugin_runs,
                aliases,
            } => {
                self.summary.pages += 1;
                self.summary.bytes += resp.wire_bytes;
                if resp.truncated {
                    self.summary.truncated_bodies += 1;
                }
                if links_dropped > 0 {
                    self.skip(Skip::LinkCap, links_dropped);
                }
                super::outcome::tally(&mut self.summary.plugins, plugin_runs);
                let mut skips: Vec<Skip> = Vec::new();
                let accepted = self.links.accept(
                    lease,
                    &resp.final_url,
                    links,
                    (&self.shared.normalize, &self.shared.scope),
                    &mut |s| skips.push(s),
                );
                for s in skips {
                    self.skip(s, 1);
                }
                let key = super::page::page_key(&self.shared, lease, &resp.final_url, &aliases);
                self.capture(lease, &resp, &items, key, false)?;
                let page = PendingPage {
                    links: accepted.urls,
                    raw: accepted.raw,
                };
                self.write(&items, lease, aliases, Some(page))
            }
        }
    }

    /// Hands the response a page's items came from to the outputs that keep responses (the
    /// WARC), before its items, so a committed page always has its records.
    fn capture(
        &mut self,
        lease: &Lease,
        resp: &crate::fetch::Response,
        items: &[Item],
        key: Fingerprint,
        download: bool,
    ) -> Result<()> {
        if self.cfg.warc.dir.is_none() {
            return Ok(());
        }
        let now;
        let fetched_at = match items.first() {
            Some(i) => i.fetched_at.as_str(),
            None => {
                now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
                now.as_str()
            }
        };
        let r = &lease.record;
        let cap = crate::warc::Capture {
            resp,
            fetched_at,
            key: hex::encode(key),
            depth: r.depth,
            download,
            metadata: r.metadata.as_deref(),
            referrer: r.referrer.as_deref(),
            proposer: r.proposer.as_deref(),
            request_body: r
                .request
                .as_ref()
                .and_then(|s| s.body.as_ref())
                .map(|b| (b.content_type(), b.text().to_string())),
        };
        self.sink.write_response(&cap)
    }

    /// Hands a page's items to the sink; the page is committed once they are durable.
    fn write(
        &mut self,
        items: &[Item],
        lease: &Lease,
        aliases: Vec<Fingerprint>,
        page: Option<PendingPage>,
    ) -> Result<()> {
        let ticket = self.sink.write_page(items)?;
        for item in items {
            self.summary.count_item(&item.kind);
        }
        if page.is_some() {
            self.pending_pages += 1;
            *self
                .pending_hosts
                .entry(lease.record.host.clone())
                .or_default() += 1;
        }
        self.pending.push_back(Pending {
            ticket,
            token: self.sink.commit_token(),
            lease: lease.clone(),
            aliases,
            page,
        });
        self.settle()
    }

    /// Commits, in write order, every waiting page whose items the sink now holds durably.
    fn settle(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let durable = self.sink.durable()?;
        while self.pending.front().is_some_and(|p| p.ticket <= durable) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            self.token = p.token;
            let host = p.lease.record.host.as_str();
            match p.page {
                Some(page) => {
                    self.pending_pages = self.pending_pages.saturating_sub(1);
                    if let Some(n) = self.pending_hosts.get_mut(host) {
                        *n = n.saturating_sub(1);
                        if *n == 0 {
                            self.pending_hosts.remove(host);
                        }
                    }
                    self.complete_page(&p.lease, &p.aliases, page.links)?;
                    // Only now is every one of those URLs in the frontier (added or already there).
                    self.links.remember(page.raw);
                }
                None => self.complete_with(&p.lease, Outcome::Done, false, &p.aliases)?,
            }
            self.release_claims(&p.lease.fp);
            if self.frontier.has_work(host) {
                self.hosts.wake_hot(host);
            } else {
                self.close_if_done(host);
            }
        }
        Ok(())
    }

    /// Commits a parsed page with its links; the query-variant rule is asked only about URLs
    /// new to the frontier, so a variant counts once.
    fn complete_page(
        &mut self,
        lease: &Lease,
        aliases: &[Fingerprint],
        links: Vec<NewUrl>,
    ) -> Result<()> {
        let (query_variants, skipped) = (&mut self.query_variants, &mut self.summary.skipped);
        let mut admit = |n: &NewUrl| match query_variants.admit_str(&n.record.url) {
            Ok(()) => true,
            Err(why) => {
                *skipped.entry(Skip::from(why).as_str().into()).or_default() += 1;
                false
            }
        };
        let done = Completion::new(Outcome::Done, &self.token)
            .page()
            .aliases(aliases)
            .links(links);
        self.frontier.complete_admitting(lease, done, &mut admit)?;
        Ok(())
    }

    /// A request that may succeed later: retried after a wait, unless its attempts are spent
    /// or its host has been given up on.
    fn retry_or_fail(
        &mut self,
        lease: &Lease,
        kind: FailureKind,
        cause: String,
        retry_after: Option<Duration>,
    ) -> Result<()> {
        let host = lease.record.host.as_str();
        let is_page = lease.record.kind == UrlKind::Page;
        let attempt = lease.record.attempts + 1;
        let host_limit = self.cfg.politeness.host_max_timeouts;
        if kind.is_timeout()
            && host_limit > 0
            && self.timeouts.get(host).copied().unwrap_or(0) >= host_limit
            && !self.summary.hosts_given_up.contains_key(host)
        {
            let why = format!(
                "{host_limit} consecutive timeouts (politeness.host_max_timeouts); last: {cause}"
            );
            tracing::warn!(host, "giving up on this host: {why}");
            self.summary.hosts_given_up.insert(host.to_owned(), why);
            // Its queued URLs fail at once, whatever back-off the host was waiting out.
            self.hosts.wake_now(host);
        }
        if let Some(why) = self.summary.hosts_given_up.get(host).cloned() {
            self.record_error(&FailureKind::HostGaveUp, &lease.record.url, &why);
            return self.complete(lease, Outcome::Failed, is_page);
        }
        if attempt > self.cfg.politeness.max_retries {
            let reason = kind.key();
            tracing::warn!(url = %lease.record.url, attempts = attempt, "giving up: {reason}: {cause}");
            self.record_error(&kind, &lease.record.url, &cause);
            return self.complete(lease, Outcome::Failed, is_page);
        }
        let wait = match retry_after {
            Some(d) => self.politeness.clamp_retry_after(d),
            None => self.politeness.backoff(attempt),
        };
        tracing::debug!(url = %lease.record.url, attempt, ?wait, "retrying: {}: {cause}", kind.key());
        self.summary.retries += 1;
        // Host-wide: a server that says "slow down" (or fails to answer) means all of it,
        // for every worker of a shared crawl.
        self.politeness.block(host, wait);
        self.frontier.block_host(host, wait)?;
        self.frontier.release(lease, attempt)?;
        Ok(())
    }
}
