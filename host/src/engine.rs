//! The crawl loop: seeds → frontier → politeness → fetch → route → plugin → sink, and the
//! commit that ties a page's items and new links together.
//!
//! One scheduler (`Scheduler`) owns the frontier, the sink, politeness, the summary and the
//! claims on redirect targets (no locks on the hot path); workers fetch and parse
//! concurrently and send their results back, and the scheduler commits each page in order:
//! items are written to the sink first, then one frontier batch marks the page (and every
//! URL its redirects reached) done, queues its links and records the sink's position. The
//! engine owns scope decisions, redirect dedup and retries; it must not know about HTTP
//! details (`fetch`), plugin internals (`plugin`) or output formats (`sink`).

use crate::config::CrawlConfig;
use crate::fetch::{FetchError, Fetcher, Response};
use crate::frontier::{
    FjallFrontier, Frontier, Lease, NewUrl, Outcome, SeenCache, UrlKind, UrlRecord,
};
use crate::normalize::{Fingerprint, NormalizeConfig, fingerprint, fingerprint_of, host_key};
use crate::plugin::{LinkKind, PageInput, Plugin, PluginError};
use crate::politeness::{Feedback, Politeness, parse_retry_after};
use crate::robots::{self, Robots};
use crate::scope::QueryVariants;
pub use crate::scope::Scope;
use crate::sink::{FileSink, FilesStore, Item, PluginRef, Sink, lost_tail};
use anyhow::{Context as _, Result, anyhow, bail};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot, watch};
use url::Url;

/// One host's robots.txt; the async mutex makes concurrent first requests wait for one fetch.
type RobotsSlot = Arc<tokio::sync::Mutex<Option<Arc<Robots>>>>;

/// robots.txt per host, fetched once and shared by every worker; concurrent first requests
/// to a host wait for one fetch.
#[derive(Default)]
pub struct RobotsCache {
    hosts: Mutex<HashMap<String, RobotsSlot>>,
}

impl RobotsCache {
    pub async fn get(&self, fetcher: &Fetcher, url: &Url) -> Arc<Robots> {
        let key = format!("{}://{}", url.scheme(), host_key(url));
        let slot = {
            let mut map = match self.hosts.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            Arc::clone(map.entry(key).or_default())
        };
        let mut guard = slot.lock().await;
        if let Some(r) = guard.as_ref().filter(|r| !r.expired()) {
            return Arc::clone(r);
        }
        let fetched = Arc::new(robots::fetch(fetcher, url).await);
        if fetched.host_failure().is_some() {
            tracing::warn!(host = %host_key(url), "{}", fetched.note);
        } else {
            tracing::debug!(host = %host_key(url), note = %fetched.note, "robots.txt");
        }
        *guard = Some(Arc::clone(&fetched));
        fetched
    }
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

/// What a crawl did. Also written to `STATE/summary.json`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    /// HTTP responses received: pages, downloads, every redirect hop and robots.txt.
    pub requests: u64,
    pub pages: u64,
    pub downloads: u64,
    pub files_new: u64,
    pub bytes: u64,
    pub items: u64,
    pub items_total: u64,
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
    /// URLs still to do: queued, plus those that were in flight when the crawl stopped.
    pub queued_left: u64,
    pub in_flight_left: u64,
    pub stopped_early: bool,
    pub elapsed_s: f64,
    pub output: String,
    pub files_dir: String,
    pub state: String,
}

/// One plugin call on a page: plugin index, (items, links) or the error, and its duration.
type PluginRun = (usize, Result<(u64, u64), PluginError>, Duration);

enum Work {
    Disallowed,
    /// A redirect led to a URL the crawl already has (queued, fetched, or being fetched
    /// through another alias): nothing is fetched or written twice.
    Duplicate {
        target: Url,
    },
    Page {
        resp: Box<Response>,
        items: Vec<Item>,
        links: Vec<(crate::plugin::LinkOut, Option<String>)>,
        links_dropped: u64,
        plugin_runs: Vec<PluginRun>,
        aliases: Vec<Fingerprint>,
    },
    Download {
        resp: Box<Response>,
        item: Option<Item>,
        new_file: bool,
        aliases: Vec<Fingerprint>,
    },
    Retry {
        reason: String,
        cause: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
        timeout: bool,
    },
    Failed {
        kind: String,
        cause: String,
        status: Option<u16>,
    },
}

struct Done {
    lease: Lease,
    work: Work,
    latency: Duration,
    crawl_delay: Option<Duration>,
}

/// A worker's question to the scheduler: may the redirect of the URL leased as `lease` go
/// on to `target`? Yes claims `target` for that lease until its page is committed.
struct Claim {
    lease: Fingerprint,
    target: Fingerprint,
    reply: oneshot::Sender<bool>,
}

/// Read-only state shared with the workers.
struct Shared {
    fetcher: Fetcher,
    plugins: Vec<Plugin>,
    enabled: Vec<bool>,
    robots: RobotsCache,
    scope: Scope,
    files: FilesStore,
    normalize: NormalizeConfig,
    respect_robots: bool,
    follow_unclaimed: bool,
    follow_max_links: usize,
    claims: mpsc::UnboundedSender<Claim>,
}

/// Owns everything the crawl loop changes. Workers only ever talk to it through channels.
struct Scheduler {
    cfg: CrawlConfig,
    shared: Arc<Shared>,
    frontier: FjallFrontier,
    sink: FileSink,
    politeness: Politeness,
    summary: Summary,
    /// Hashes of absolute link strings, exactly as plugins proposed them, whose URL is known
    /// to the frontier.
    known_links: SeenCache,
    query_variants: QueryVariants,
    /// Redirect targets claimed by leases in flight: target → the claiming lease.
    claims: HashMap<Fingerprint, Fingerprint>,
    claimed_by: HashMap<Fingerprint, Vec<Fingerprint>>,
    /// Consecutive timeouts per host, reset by any answer.
    timeouts: HashMap<String, u32>,
    done_tx: mpsc::UnboundedSender<Done>,
    in_flight: usize,
    cursor: usize,
}

/// Runs a crawl until the frontier is empty, a limit is reached, or `stop` turns true.
/// `refused` lists plugin files that could not be loaded (they go into the summary).
pub async fn run(
    cfg: CrawlConfig,
    plugins: Vec<Plugin>,
    refused: Vec<String>,
    mut stop: watch::Receiver<bool>,
) -> Result<Summary> {
    let started = Instant::now();
    // Seeds are checked before the state directory is created or opened: a typo in a seed
    // leaves nothing behind.
    let seeds = resolve_seeds(&cfg, &plugins)?;
    let mut frontier = FjallFrontier::open(&cfg.state)?;
    let output = cfg.output_path();
    let mut token = frontier.sink_token()?;
    if let Some((have, committed)) = lost_tail(&output, token.as_deref())? {
        let (requeued, synced) = frontier.rewind_to_checkpoint()?;
        tracing::warn!(
            output = %output.display(),
            requeued,
            "the output has {have} of {committed} committed bytes: its unsynced tail was lost (power failure or OS crash); the pages completed since the last checkpoint are queued again"
        );
        token = Some(synced.unwrap_or_else(FileSink::initial_token));
    }
    let sink = FileSink::open(&output, cfg.format, token.as_deref())?;

    let scope_seeds = remember_seeds(&cfg, &seeds)?;
    let scope = Scope::new(&cfg.scope, &scope_seeds)?;
    let seed_records: Vec<NewUrl> = seeds
        .iter()
        .map(|u| new_url(u, 0, 0, UrlKind::Page, None, None, None))
        .collect();
    let added = frontier.add(seed_records)?;
    let resumed = frontier.counters().known > added as u64;
    if resumed {
        let c = frontier.counters();
        tracing::info!(
            done = c.done,
            queued = c.queued,
            items = sink.items_written(),
            "resuming the crawl in {}",
            cfg.state.display()
        );
    }

    let enabled: Vec<bool> = plugins
        .iter()
        .map(|p| {
            cfg.plugins
                .get(&p.info.name)
                .and_then(|s| s.enabled)
                .unwrap_or(true)
        })
        .collect();
    for (p, _) in plugins.iter().zip(&enabled).filter(|(_, on)| **on) {
        if !can_match_anything(p, &scope_seeds, &cfg.scope) {
            tracing::warn!(
                plugin = %p.info.name,
                "its URL patterns ({}) match no seed and no allowed domain, so it will claim no page; check the patterns ([plugins.{}] patterns) and the seeds",
                crate::escape::escape(&p.info.patterns.join(" ")),
                p.info.name
            );
        }
    }
    let (claims_tx, mut claims_rx) = mpsc::unbounded_channel::<Claim>();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let shared = Arc::new(Shared {
        fetcher: Fetcher::new(cfg.fetch.clone())?,
        plugins,
        enabled,
        robots: RobotsCache::default(),
        scope,
        files: FilesStore::new(cfg.files_path()),
        normalize: cfg.normalize.clone(),
        respect_robots: cfg.politeness.respect_robots,
        follow_unclaimed: cfg.follow_unclaimed,
        follow_max_links: cfg.follow_max_links,
        claims: claims_tx,
    });
    // Every loaded plugin has a line in the summary, so one that claimed no page shows.
    let plugin_stats = shared
        .plugins
        .iter()
        .zip(&shared.enabled)
        .filter(|(_, on)| **on)
        .map(|(p, _)| (p.info.name.clone(), PluginStats::default()))
        .collect();
    let summary = Summary {
        plugins: plugin_stats,
        output: sink.describe(),
        files_dir: cfg.files_path().display().to_string(),
        state: cfg.state.display().to_string(),
        plugins_refused: refused,
        ..Summary::default()
    };
    let items_before = sink.items_written();
    let progress = crate::progress::Progress::new(
        cfg.progress,
        Duration::from_secs(cfg.progress_interval_s.max(1)),
    );
    let mut s = Scheduler {
        politeness: Politeness::new(cfg.politeness.clone()).with_hosts(&cfg.hosts)?,
        query_variants: QueryVariants::new(cfg.scope.max_query_variants),
        cfg,
        shared,
        frontier,
        sink,
        summary,
        known_links: SeenCache::default(),
        claims: HashMap::new(),
        claimed_by: HashMap::new(),
        timeouts: HashMap::new(),
        done_tx,
        in_flight: 0,
        cursor: 0,
    };

    let mut last_checkpoint = Instant::now();
    let checkpoint_every = Duration::from_secs(s.cfg.checkpoint_interval_s.max(1));
    loop {
        let (dispatchable, next_wake) = s.dispatch()?;
        if s.in_flight == 0 && !dispatchable {
            break;
        }
        if last_checkpoint.elapsed() >= checkpoint_every {
            s.checkpoint()?;
            last_checkpoint = Instant::now();
        }
        progress.tick(
            &s.frontier.counters(),
            s.sink.items_written(),
            &s.summary,
            started,
        );

        let sleep_for = next_wake
            .map(|w| w.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(500))
            .min(Duration::from_millis(500));
        tokio::select! {
            Some(done) = done_rx.recv() => {
                s.commit(done)?;
                // Drain whatever else finished, so commits batch up between dispatch rounds.
                while let Ok(done) = done_rx.try_recv() {
                    s.commit(done)?;
                }
            }
            Some(claim) = claims_rx.recv() => s.serve_claim(claim)?,
            _ = tokio::time::sleep(sleep_for) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    s.summary.stopped_early = true;
                    tracing::warn!(in_flight = s.in_flight, "stopping: finishing pages in flight (Ctrl+C again to quit at once)");
                    let grace = Instant::now() + Duration::from_secs(10);
                    while s.in_flight > 0 {
                        tokio::select! {
                            done = done_rx.recv() => match done {
                                Some(done) => s.commit(done)?,
                                None => break,
                            },
                            Some(claim) = claims_rx.recv() => s.serve_claim(claim)?,
                            _ = tokio::time::sleep_until(grace.into()) => break,
                        }
                    }
                    break;
                }
            }
        }
    }

    s.checkpoint()?;
    progress.finish();
    let c = s.frontier.counters();
    let mut summary = s.summary;
    summary.items = s.sink.items_written() - items_before;
    summary.items_total = s.sink.items_written();
    // URLs in flight when the crawl stopped go back to their queues on the next run.
    summary.in_flight_left = s.in_flight as u64;
    summary.queued_left = c.queued + s.in_flight as u64;
    summary.elapsed_s = started.elapsed().as_secs_f64();
    summary.requests = s.shared.fetcher.responses();
    let json = serde_json::to_vec_pretty(&summary)?;
    std::fs::write(s.cfg.state.join("summary.json"), json).context("writing summary.json")?;
    Ok(summary)
}

impl Scheduler {
    /// Starts every URL politeness and the budgets allow. Returns whether any host still has
    /// work (or work in flight), and when the next host becomes ready.
    fn dispatch(&mut self) -> Result<(bool, Option<Instant>)> {
        let now = Instant::now();
        let hosts = self.frontier.hosts_with_work();
        let max_pages = self.cfg.scope.max_pages;
        let per_host_cap = self.cfg.scope.max_pages_per_host;
        let mut next_wake: Option<Instant> = None;
        let mut dispatchable = false;
        let n = hosts.len();
        for k in 0..n {
            let host = &hosts[(self.cursor + k) % n];
            // Requests in flight count against max_pages before they finish, so the limit
            // is exact.
            let budget_left = |s: &Self| {
                max_pages.is_none_or(|m| s.frontier.counters().pages + (s.in_flight as u64) < m)
            };
            if !budget_left(self) {
                break;
            }
            let under_cap = |s: &Self| {
                per_host_cap.is_none_or(|cap| {
                    s.frontier.host_pages(host) + (s.politeness.host_in_flight(host) as u64) < cap
                })
            };
            if !under_cap(self) {
                // A capped host takes no more URLs; it keeps the crawl loop alive only
                // while its own requests are still running.
                if self.politeness.host_in_flight(host) > 0 {
                    dispatchable = true;
                }
                continue;
            }
            dispatchable = true;
            if let Some(cause) = self.summary.hosts_given_up.get(host).cloned() {
                self.fail_given_up_host(host, &cause)?;
                continue;
            }
            while self.politeness.can_start(host, now) && budget_left(self) && under_cap(self) {
                let Some(lease) = self.frontier.lease(host)? else {
                    break;
                };
                self.politeness.started(host, now);
                self.in_flight += 1;
                let tx = self.done_tx.clone();
                let shared = Arc::clone(&self.shared);
                tokio::spawn(async move {
                    let done = work_or_report(&shared, lease).await;
                    let _ = tx.send(done);
                });
            }
            if let Some(at) = self.politeness.ready_at(host).filter(|at| *at > now) {
                next_wake = Some(next_wake.map_or(at, |w| w.min(at)));
            }
        }
        self.cursor = self.cursor.wrapping_add(1);
        Ok((dispatchable || self.in_flight > 0, next_wake))
    }

    /// A host that kept timing out: its queued URLs fail without a request (a bounded
    /// number per round, so the loop keeps serving the rest of the crawl).
    fn fail_given_up_host(&mut self, host: &str, cause: &str) -> Result<()> {
        for _ in 0..1_000 {
            let Some(lease) = self.frontier.lease(host)? else {
                break;
            };
            self.record_error("host_gave_up", &lease.record.url, cause);
            self.complete(&lease, Outcome::Failed, false, &[], Vec::new())?;
        }
        Ok(())
    }

    /// Completes a lease at the sink's current position (see `Frontier::complete`).
    fn complete(
        &mut self,
        lease: &Lease,
        outcome: Outcome,
        counted_page: bool,
        aliases: &[Fingerprint],
        links: Vec<NewUrl>,
    ) -> Result<()> {
        let token = self.sink.commit_token();
        self.frontier
            .complete(lease, outcome, counted_page, aliases, links, &token)?;
        Ok(())
    }

    fn record_error(&mut self, kind: &str, url: &str, cause: &str) {
        *self.summary.errors.entry(kind.to_owned()).or_default() += 1;
        self.summary.error_samples.insert(
            kind.to_owned(),
            ErrorSample {
                url: url.to_owned(),
                cause: cause.to_owned(),
            },
        );
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
        self.frontier.checkpoint(&self.sink.commit_token())
    }

    fn commit(&mut self, done: Done) -> Result<()> {
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
        let status = match &work {
            Work::Page { resp, .. } | Work::Download { resp, .. } => Some(resp.status),
            Work::Retry { status, .. } | Work::Failed { status, .. } => *status,
            Work::Disallowed | Work::Duplicate { .. } => None,
        };
        self.politeness
            .finished(&host, Feedback { latency, status });
        if let Some(s) = status {
            *self.summary.status.entry(s).or_default() += 1;
        }
        let timed_out = matches!(work, Work::Retry { timeout: true, .. });
        if timed_out {
            *self.timeouts.entry(host.clone()).or_default() += 1;
        } else if status.is_some() {
            self.timeouts.remove(&host);
        }
        let is_page = lease.record.kind == UrlKind::Page;
        let result = self.commit_work(&lease, &host, is_page, work);
        self.release_claims(&lease.fp);
        result
    }

    fn commit_work(&mut self, lease: &Lease, host: &str, is_page: bool, work: Work) -> Result<()> {
        match work {
            Work::Disallowed => {
                *self
                    .summary
                    .skipped
                    .entry("robots_disallowed".into())
                    .or_default() += 1;
                self.complete(lease, Outcome::Done, false, &[], Vec::new())?;
            }
            Work::Duplicate { target } => {
                tracing::debug!(url = %lease.record.url, %target, "redirects to a URL the crawl already has");
                *self
                    .summary
                    .skipped
                    .entry("redirect_duplicate".into())
                    .or_default() += 1;
                self.complete(lease, Outcome::Done, false, &[], Vec::new())?;
            }
            Work::Retry {
                reason,
                cause,
                retry_after,
                timeout,
                ..
            } => {
                let attempt = lease.record.attempts + 1;
                let host_limit = self.cfg.politeness.host_max_timeouts;
                if timeout
                    && host_limit > 0
                    && self.timeouts.get(host).copied().unwrap_or(0) >= host_limit
                    && !self.summary.hosts_given_up.contains_key(host)
                {
                    let why = format!(
                        "{host_limit} consecutive timeouts (politeness.host_max_timeouts); last: {cause}"
                    );
                    tracing::warn!(host, "giving up on this host: {why}");
                    self.summary.hosts_given_up.insert(host.to_owned(), why);
                }
                if let Some(why) = self.summary.hosts_given_up.get(host).cloned() {
                    self.record_error("host_gave_up", &lease.record.url, &why);
                    self.complete(lease, Outcome::Failed, is_page, &[], Vec::new())?;
                } else if attempt > self.cfg.politeness.max_retries {
                    tracing::warn!(url = %lease.record.url, attempts = attempt, "giving up: {reason}: {cause}");
                    self.record_error(&reason, &lease.record.url, &cause);
                    self.complete(lease, Outcome::Failed, is_page, &[], Vec::new())?;
                } else {
                    let wait = match retry_after {
                        Some(d) => self.politeness.clamp_retry_after(d),
                        None => self.politeness.backoff(attempt),
                    };
                    tracing::debug!(url = %lease.record.url, attempt, ?wait, "retrying: {reason}: {cause}");
                    self.summary.retries += 1;
                    // Host-wide: a server that says "slow down" (or fails to answer) means all of it.
                    self.politeness.block(host, wait);
                    self.frontier.release(lease, attempt)?;
                }
            }
            Work::Failed { kind, cause, .. } => {
                self.record_error(&kind, &lease.record.url, &cause);
                self.complete(lease, Outcome::Failed, is_page, &[], Vec::new())?;
            }
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
                self.sink.write_page(&items)?;
                self.complete(lease, Outcome::Done, false, &aliases, Vec::new())?;
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
                    *self.summary.skipped.entry("link_cap".into()).or_default() += links_dropped;
                }
                for (i, result, took) in plugin_runs {
                    let st = self
                        .summary
                        .plugins
                        .entry(self.shared.plugins[i].info.name.clone())
                        .or_default();
                    st.calls += 1;
                    st.time_ms += took.as_secs_f64() * 1000.0;
                    match result {
                        Ok((ni, nl)) => {
                            st.items += ni;
                            st.links += nl;
                        }
                        Err(e) => *st.errors.entry(e.kind().to_owned()).or_default() += 1,
                    }
                }
                let (new_links, raw) = accept_links(
                    lease,
                    &resp.final_url,
                    links,
                    &self.shared.normalize,
                    &self.shared.scope,
                    &mut self.known_links,
                    &mut self.summary,
                );
                self.sink.write_page(&items)?;
                let token = self.sink.commit_token();
                let (query_variants, skipped) =
                    (&mut self.query_variants, &mut self.summary.skipped);
                // Asked only about URLs new to the frontier: a variant counts once.
                let mut admit = |n: &NewUrl| match query_variants.admit_str(&n.record.url) {
                    Ok(()) => true,
                    Err(why) => {
                        *skipped.entry(why.as_str().into()).or_default() += 1;
                        false
                    }
                };
                self.frontier.complete_admitting(
                    lease,
                    Outcome::Done,
                    true,
                    &aliases,
                    new_links,
                    &mut admit,
                    &token,
                )?;
                // Only now is every one of those URLs in the frontier (added or already there).
                for h in raw {
                    self.known_links.insert(h);
                }
            }
        }
        Ok(())
    }
}

/// Whether any of `plugin`'s URL patterns could match a URL of this crawl: a seed, or a URL
/// on an allowed domain (subdomains included) or origin. A pattern without a scheme and host
/// (`*/shop/*`) could match anything.
fn can_match_anything(plugin: &Plugin, seeds: &[Url], scope: &crate::config::ScopeConfig) -> bool {
    if seeds.iter().any(|u| plugin.matches(u.as_str())) {
        return true;
    }
    let mut domains: Vec<String> = if scope.allowed_domains.is_empty() {
        seeds
            .iter()
            .filter_map(|u| u.host_str().map(str::to_owned))
            .collect()
    } else {
        scope
            .allowed_domains
            .iter()
            .map(|d| {
                let d = d.trim().trim_start_matches("*.");
                d.rsplit_once(':').map_or(d, |(h, _)| h).to_owned()
            })
            .collect()
    };
    domains.extend(
        scope
            .allowed_origins
            .iter()
            .filter_map(|o| Url::parse(o).ok()?.host_str().map(str::to_owned)),
    );
    plugin.info.patterns.iter().any(|p| {
        let Some((_, rest)) = p.split_once("://") else {
            return true;
        };
        let authority = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
        let host = authority
            .rsplit_once(':')
            .map_or(authority.as_str(), |(h, _)| h);
        let glob = globset::GlobBuilder::new(host)
            .literal_separator(false)
            .build()
            .map(|g| g.compile_matcher());
        domains.iter().any(|d| {
            let d = d.to_ascii_lowercase();
            // The pattern's host is the domain or one of its subdomains, or its wildcard
            // matches the domain itself.
            host == d
                || host.ends_with(&format!(".{d}"))
                || glob
                    .as_ref()
                    .is_ok_and(|m| m.is_match(&d) || m.is_match(format!("x.{d}")))
        })
    })
}

/// Turns proposals into queueable URLs: resolve, normalize, scope, depth. Also returns the
/// raw-string hashes of the absolute links among them, for `known` once they are committed.
///
/// Most links a page proposes were proposed before, in the same words, and resolving and
/// normalizing each again was the larger part of a commit's cost. An absolute link whose
/// exact string is in `known` maps to a URL already in the frontier, so it would be dropped as
/// a duplicate anyway: it is dropped here, after the one check that depends on the page
/// proposing it (depth), so the skip counts stay what they were. Scope rules do not change
/// during a crawl, and the frontier's set of known URLs only grows.
fn accept_links(
    lease: &Lease,
    page_url: &Url,
    links: Vec<(crate::plugin::LinkOut, Option<String>)>,
    norm: &NormalizeConfig,
    scope: &Scope,
    known: &mut SeenCache,
    summary: &mut Summary,
) -> (Vec<NewUrl>, Vec<Fingerprint>) {
    let depth = lease.record.depth + 1;
    let mut out = Vec::with_capacity(links.len());
    let mut raw_hashes = Vec::with_capacity(links.len());
    for (l, proposer) in links {
        let raw = l.url.trim();
        let raw_hash = (raw.starts_with("http://") || raw.starts_with("https://"))
            .then(|| fingerprint_of(raw));
        if let Some(h) = &raw_hash
            && known.contains(h)
        {
            if l.kind == LinkKind::Follow
                && let Err(why) = scope.check_depth(depth)
            {
                *summary.skipped.entry(why.as_str().into()).or_default() += 1;
            }
            continue;
        }
        let Ok(mut u) = page_url.join(raw) else {
            *summary.skipped.entry("invalid_link".into()).or_default() += 1;
            continue;
        };
        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
            *summary.skipped.entry("invalid_link".into()).or_default() += 1;
            continue;
        }
        norm.apply(&mut u);
        if let Err(why) = scope.check_url(&u) {
            *summary.skipped.entry(why.as_str().into()).or_default() += 1;
            continue;
        }
        let kind = match l.kind {
            LinkKind::Follow => UrlKind::Page,
            LinkKind::Download => UrlKind::Download,
        };
        // Downloads belong to the page that proposed them, so depth limits pages only.
        if kind == UrlKind::Page
            && let Err(why) = scope.check_depth(depth)
        {
            *summary.skipped.entry(why.as_str().into()).or_default() += 1;
            continue;
        }
        let metadata = l.metadata.filter(|m| m.len() <= 4096);
        raw_hashes.extend(raw_hash);
        out.push(new_url(
            &u,
            depth,
            l.priority,
            kind,
            Some(lease.record.url.clone()),
            metadata,
            proposer,
        ));
    }
    (out, raw_hashes)
}

fn new_url(
    url: &Url,
    depth: u32,
    priority: i32,
    kind: UrlKind,
    referrer: Option<String>,
    metadata: Option<String>,
    proposer: Option<String>,
) -> NewUrl {
    NewUrl {
        fp: fingerprint(url),
        record: UrlRecord {
            url: url.to_string(),
            host: host_key(url),
            depth,
            priority,
            kind,
            referrer,
            metadata,
            proposer,
            attempts: 0,
            aliases: Vec::new(),
        },
    }
}

/// Seeds from the config, the seeds file, or (when neither names any) the plugins' manifests.
fn resolve_seeds(cfg: &CrawlConfig, plugins: &[Plugin]) -> Result<Vec<Url>> {
    let mut raw: Vec<(String, String)> = cfg
        .seeds
        .iter()
        .map(|s| (s.clone(), "seed".to_owned()))
        .collect();
    if let Some(path) = &cfg.seeds_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow!("cannot read seeds file {}: {e}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                raw.push((
                    line.to_owned(),
                    format!("{} line {}", path.display(), n + 1),
                ));
            }
        }
    }
    if raw.is_empty() {
        for p in plugins {
            for s in &p.info.seeds {
                raw.push((s.clone(), format!("plugin {} manifest", p.info.name)));
            }
        }
    }
    let norm: &NormalizeConfig = &cfg.normalize;
    let mut out = Vec::new();
    for (s, origin) in raw {
        // "127.0.0.1:5099/" or "localhost:8080": a URL without its scheme.
        let hint = if s.contains("://") {
            String::new()
        } else {
            format!(" (did you mean http://{}?)", s.trim())
        };
        let parsed = Url::parse(s.trim()).map_err(|e| {
            anyhow!("seed URL {s:?} ({origin}) is invalid: {e}; give a full URL like https://example.com/{hint}")
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            bail!("seed URL {s:?} ({origin}) must be http(s) with a host{hint}");
        }
        let Some(u) = norm.normalize(parsed.as_str()) else {
            bail!("seed URL {s:?} ({origin}) could not be normalized");
        };
        out.push(u);
    }
    Ok(out)
}

/// The seeds define the default scope, so a resumed crawl without seeds must use the same.
fn remember_seeds(cfg: &CrawlConfig, seeds: &[Url]) -> Result<Vec<Url>> {
    let path = cfg.state.join("seeds.json");
    let mut all: Vec<String> = match std::fs::read(&path) {
        Ok(raw) => {
            serde_json::from_slice(&raw).with_context(|| format!("corrupt {}", path.display()))?
        }
        Err(_) => Vec::new(),
    };
    for s in seeds {
        if !all.contains(&s.to_string()) {
            all.push(s.to_string());
        }
    }
    if all.is_empty() {
        bail!(
            "no seed URLs: pass them as arguments, in --seeds-file, or use plugins whose manifests name seeds"
        );
    }
    std::fs::write(&path, serde_json::to_vec(&all)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(all.iter().filter_map(|s| Url::parse(s).ok()).collect())
}

/// `work`, but a panic in it (a host bug) fails the URL with `internal_error` and a log line
/// instead of losing the lease: the scheduler waits for every lease it hands out, so a lost
/// one would keep the crawl from ever finishing.
async fn work_or_report(shared: &Arc<Shared>, lease: Lease) -> Done {
    use futures_util::FutureExt as _;
    let spare = lease.clone();
    match std::panic::AssertUnwindSafe(work(shared, lease))
        .catch_unwind()
        .await
    {
        Ok(done) => done,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(url = %spare.record.url, "internal error while crawling this URL, which is a sandcrawl bug (please report it): {what}");
            Done {
                lease: spare,
                work: Work::Failed {
                    kind: "internal_error".into(),
                    cause: what,
                    status: None,
                },
                latency: Duration::ZERO,
                crawl_delay: None,
            }
        }
    }
}

async fn work(shared: &Arc<Shared>, lease: Lease) -> Done {
    let started = Instant::now();
    let mut crawl_delay = None;
    let work = match Url::parse(&lease.record.url) {
        Err(e) => Work::Failed {
            kind: "bad_url".into(),
            cause: e.to_string(),
            status: None,
        },
        Ok(url) => {
            let mut verdict = None;
            if shared.respect_robots {
                let r = shared.robots.get(&shared.fetcher, &url).await;
                crawl_delay = r.crawl_delay;
                if let Some(e) = r.host_failure() {
                    // Permanent (a TLS failure): retrying cannot help, so nothing waits.
                    verdict = Some(Work::Failed {
                        kind: e.kind().to_owned(),
                        cause: format!("robots.txt: {e}"),
                        status: None,
                    });
                } else if !r.allowed(&url) {
                    verdict = Some(if r.unreachable() {
                        Work::Retry {
                            reason: "robots_unreachable".into(),
                            cause: r.note.clone(),
                            status: None,
                            retry_after: Some(robots::RETRY_UNREACHABLE),
                            timeout: r.timed_out,
                        }
                    } else {
                        Work::Disallowed
                    });
                }
            }
            match verdict {
                Some(v) => v,
                None => fetch_and_parse(shared, &lease, url).await,
            }
        }
    };
    Done {
        lease,
        work,
        latency: started.elapsed(),
        crawl_delay,
    }
}

/// The fingerprint a URL is deduplicated by: that of its normalized form.
fn dedup_fingerprint(norm: &NormalizeConfig, url: &Url) -> Fingerprint {
    let mut u = url.clone();
    norm.apply(&mut u);
    fingerprint(&u)
}

/// What the redirect checks of one fetch found out.
#[derive(Default)]
struct Hops {
    /// Targets claimed for this lease, in order.
    claimed: Vec<Fingerprint>,
    /// The target that the crawl already has, if a redirect led to one.
    duplicate: Option<Url>,
}

async fn fetch_and_parse(shared: &Arc<Shared>, lease: &Lease, url: Url) -> Work {
    let hops = Arc::new(Mutex::new(Hops::default()));
    let hop_shared = Arc::clone(shared);
    let hop_log = Arc::clone(&hops);
    let lease_fp = lease.fp;
    let result = shared
        .fetcher
        .fetch(&url, move |hop: Url| {
            let s = Arc::clone(&hop_shared);
            let log = Arc::clone(&hop_log);
            async move {
                s.scope
                    .check_url(&hop)
                    .map_err(|why| format!("{hop} is out of scope ({})", why.as_str()))?;
                if s.respect_robots && !s.robots.get(&s.fetcher, &hop).await.allowed(&hop) {
                    return Err(format!("robots.txt disallows {hop}"));
                }
                // Dedup applies to every hop's target: a URL the crawl already has is not
                // fetched again through an alias.
                let target = dedup_fingerprint(&s.normalize, &hop);
                let (reply, answer) = oneshot::channel();
                let asked = s.claims.send(Claim {
                    lease: lease_fp,
                    target,
                    reply,
                });
                let fresh = asked.is_ok() && answer.await.unwrap_or(false);
                let mut log = match log.lock() {
                    Ok(l) => l,
                    Err(poisoned) => poisoned.into_inner(),
                };
                if !fresh {
                    log.duplicate = Some(hop.clone());
                    return Err(format!("{hop} is already known to the crawl"));
                }
                log.claimed.push(target);
                Ok(())
            }
        })
        .await;
    let Hops { claimed, duplicate } = match Arc::try_unwrap(hops) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(shared_hops) => match shared_hops.lock() {
            Ok(mut h) => std::mem::take(&mut *h),
            Err(_) => Hops::default(),
        },
    };
    if let Some(target) = duplicate {
        return Work::Duplicate { target };
    }
    let resp = match result {
        Ok(r) => r,
        Err(e) if e.retryable() => {
            return Work::Retry {
                reason: e.kind().to_owned(),
                cause: e.to_string(),
                status: None,
                retry_after: None,
                timeout: matches!(e, FetchError::Timeout(_)),
            };
        }
        Err(e) => {
            tracing::info!(url = %url, "fetch failed: {e}");
            return Work::Failed {
                kind: e.kind().to_owned(),
                cause: e.to_string(),
                status: None,
            };
        }
    };
    let status = resp.status;
    if status == 429 || (500..600).contains(&status) {
        let retry_after = resp
            .header("retry-after")
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        return Work::Retry {
            reason: format!("http_{status}"),
            cause: format!("{} answered {status}", resp.final_url),
            status: Some(status),
            retry_after,
            timeout: false,
        };
    }
    if !(200..300).contains(&status) {
        return Work::Failed {
            kind: format!("http_{status}"),
            cause: format!("{} answered {status}", resp.final_url),
            status: Some(status),
        };
    }
    if resp.truncated {
        tracing::info!(url = %resp.final_url, "body cut at fetch.max_body_bytes ({} bytes); the page is parsed as truncated", resp.body.len());
    }
    match lease.record.kind {
        UrlKind::Download => download(shared, lease, resp, claimed),
        UrlKind::Page => parse_page(shared, lease, resp, claimed).await,
    }
}

fn item_id(fp: &[u8], plugin: &str, n: usize) -> String {
    let mut h = Sha256::new();
    h.update(fp);
    h.update(plugin.as_bytes());
    h.update((n as u64).to_be_bytes());
    hex::encode(&h.finalize()[..10])
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn download(
    shared: &Arc<Shared>,
    lease: &Lease,
    resp: Response,
    aliases: Vec<Fingerprint>,
) -> Work {
    if resp.truncated {
        return Work::Failed {
            kind: "download_too_large".into(),
            cause: format!("body over fetch.max_body_bytes ({} bytes)", resp.body.len()),
            status: Some(resp.status),
        };
    }
    let stored = match shared
        .files
        .save(&resp.body, &resp.final_url, resp.header("content-type"))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(url = %resp.final_url, "cannot store download: {e:#}");
            return Work::Failed {
                kind: "download_store".into(),
                cause: format!("{e:#}"),
                status: Some(resp.status),
            };
        }
    };
    let proposer = lease.record.proposer.clone().unwrap_or_default();
    let plugin = shared
        .plugins
        .iter()
        .find(|p| p.info.name == proposer)
        .map(|p| PluginRef {
            name: p.info.name.clone(),
            version: p.info.version.clone(),
            sha256: p.info.sha256.clone(),
        })
        .unwrap_or(PluginRef {
            name: "sandcrawl".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            sha256: String::new(),
        });
    let mut fields = serde_json::Map::new();
    fields.insert("sha256".into(), stored.sha256.clone().into());
    fields.insert("path".into(), stored.path.clone().into());
    fields.insert("size".into(), stored.size.into());
    fields.insert(
        "content_type".into(),
        resp.header("content-type").unwrap_or("").to_owned().into(),
    );
    fields.insert("referrer".into(), lease.record.referrer.clone().into());
    let item = Item {
        id: item_id(
            &dedup_fingerprint(&shared.normalize, &resp.final_url),
            "file",
            0,
        ),
        url: resp.final_url.to_string(),
        fetched_at: now_rfc3339(),
        plugin,
        kind: "file".into(),
        fields: match serde_json::value::to_raw_value(&fields) {
            Ok(raw) => raw,
            Err(e) => {
                tracing::error!(url = %resp.final_url, "cannot encode a download record: {e}");
                return Work::Failed {
                    kind: "download_store".into(),
                    cause: e.to_string(),
                    status: Some(resp.status),
                };
            }
        },
    };
    Work::Download {
        resp: Box::new(resp),
        item: Some(item),
        new_file: stored.new,
        aliases,
    }
}

async fn parse_page(
    shared: &Arc<Shared>,
    lease: &Lease,
    resp: Response,
    aliases: Vec<Fingerprint>,
) -> Work {
    // Item ids follow the page's final URL, so every alias of a page gives the same ids.
    let page_fp = if aliases.is_empty() {
        lease.fp
    } else {
        dedup_fingerprint(&shared.normalize, &resp.final_url)
    };
    let url_str = resp.final_url.as_str();
    let matching: Vec<usize> = (0..shared.plugins.len())
        .filter(|&i| shared.enabled[i] && shared.plugins[i].matches(url_str))
        .collect();
    let mut headers = resp.headers.clone();
    if resp.truncated {
        headers.push(("x-sandcrawl-truncated".into(), "1".into()));
    }
    let input = Arc::new(PageInput {
        url: url_str.to_owned(),
        status: resp.status,
        headers,
        body: resp.body.clone(),
        encoding: resp.encoding.to_owned(),
        depth: lease.record.depth,
        referrer: lease.record.referrer.clone(),
        metadata: lease.record.metadata.clone(),
    });
    let fetched_at = now_rfc3339();
    let mut items = Vec::new();
    let mut links = Vec::new();
    let mut runs = Vec::new();
    let mut claimed = false;
    for i in matching {
        let (result, took) = shared.plugins[i].parse_timed(&input).await;
        let info = &shared.plugins[i].info;
        match result {
            Ok(out) => {
                claimed = true;
                let (ni, nl) = (out.items.len() as u64, out.links.len() as u64);
                for (n, it) in out.items.into_iter().enumerate() {
                    items.push(Item {
                        id: item_id(&page_fp, &info.name, n),
                        url: url_str.to_owned(),
                        fetched_at: fetched_at.clone(),
                        plugin: PluginRef {
                            name: info.name.clone(),
                            version: info.version.clone(),
                            sha256: info.sha256.clone(),
                        },
                        kind: it.kind,
                        fields: it.json,
                    });
                }
                links.extend(out.links.into_iter().map(|l| (l, Some(info.name.clone()))));
                runs.push((i, Ok((ni, nl)), took));
            }
            Err(PluginError::NotMine) => runs.push((i, Err(PluginError::NotMine), took)),
            Err(e) => {
                claimed = true;
                tracing::warn!(plugin = %info.name, url = %url_str, "plugin error: {e}");
                runs.push((i, Err(e), took));
            }
        }
    }
    let mut links_dropped = 0;
    if !claimed && shared.follow_unclaimed && looks_html(&resp) {
        let found = crate::links::extract(
            &resp.final_url,
            &resp.body,
            resp.encoding,
            shared.follow_max_links,
        );
        links_dropped = found.dropped;
        if found.dropped > 0 {
            tracing::info!(url = %resp.final_url, kept = found.links.len(), dropped = found.dropped, "more links than follow_max_links on one page; the rest are skipped");
        }
        for u in found.links {
            links.push((
                crate::plugin::LinkOut {
                    url: u.to_string(),
                    priority: 0,
                    kind: LinkKind::Follow,
                    metadata: None,
                },
                None,
            ));
        }
    }
    Work::Page {
        resp: Box::new(resp),
        items,
        links,
        links_dropped,
        plugin_runs: runs,
        aliases,
    }
}

fn looks_html(resp: &Response) -> bool {
    match resp.header("content-type") {
        Some(ct) => {
            let ct = ct.to_ascii_lowercase();
            ct.contains("html")
        }
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_proposed_again_skips_resolving_but_still_counts_its_depth_skip() -> Result<()> {
        let root = Url::parse("http://a.test/")?;
        let scope = Scope::new(
            &crate::config::ScopeConfig {
                max_depth: Some(1),
                ..Default::default()
            },
            std::slice::from_ref(&root),
        )?;
        let norm = NormalizeConfig::default();
        let page = |depth| {
            let n = new_url(&root, depth, 0, UrlKind::Page, None, None, None);
            Lease::detached(n.fp, n.record)
        };
        let link = |url: &str| {
            (
                crate::plugin::LinkOut {
                    url: url.into(),
                    priority: 0,
                    kind: LinkKind::Follow,
                    metadata: None,
                },
                None,
            )
        };
        let links = || vec![link("http://a.test/x?b=2&a=1"), link("/y")];
        let urls = |out: &[NewUrl]| out.iter().map(|n| n.record.url.clone()).collect::<Vec<_>>();
        let accept = |known: &mut SeenCache, summary: &mut Summary, depth| {
            accept_links(&page(depth), &root, links(), &norm, &scope, known, summary)
        };
        let mut known = SeenCache::default();
        let mut summary = Summary::default();

        let (out, raw) = accept(&mut known, &mut summary, 0);
        assert_eq!(urls(&out), ["http://a.test/x?a=1&b=2", "http://a.test/y"]);
        assert_eq!(
            raw.len(),
            1,
            "only absolute links are remembered by their text"
        );
        for h in raw {
            known.insert(h);
        }

        // Once committed, the same absolute text is dropped before it is parsed; a relative
        // link depends on its page, so it is resolved every time.
        let (out, raw) = accept(&mut known, &mut summary, 0);
        assert_eq!(urls(&out), ["http://a.test/y"]);
        assert!(raw.is_empty());

        // From a page at the depth limit both are skipped and counted, cached or not.
        let (out, _) = accept(&mut known, &mut summary, 1);
        assert!(out.is_empty());
        assert_eq!(summary.skipped.get("too_deep"), Some(&2));
        Ok(())
    }
}
