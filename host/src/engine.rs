//! The crawl loop: seeds → frontier → politeness → fetch → route → plugin → sink, and the
//! commit that ties a page's items and new links together.
//!
//! One scheduler task owns the frontier, the sink and politeness (no locks on the hot path);
//! workers fetch and parse concurrently and send their results back, and the scheduler
//! commits each page in order: items are written to the sink first, then one frontier batch
//! marks the page done, queues its links and records the sink's position. The engine owns
//! scope decisions and retries; it must not know about HTTP details (`fetch`), plugin
//! internals (`plugin`) or output formats (`sink`).

use crate::config::CrawlConfig;
use crate::fetch::{Fetcher, Response};
use crate::frontier::{
    FjallFrontier, Frontier, Lease, NewUrl, Outcome, SeenCache, UrlKind, UrlRecord,
};
use crate::normalize::{Fingerprint, NormalizeConfig, fingerprint, fingerprint_of, host_key};
use crate::plugin::{LinkKind, PageInput, Plugin, PluginError};
use crate::politeness::{Feedback, Politeness, parse_retry_after};
use crate::robots::{self, Robots};
use crate::sink::{FileSink, FilesStore, Item, PluginRef, Sink, lost_tail};
use anyhow::{Context as _, Result, anyhow, bail};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{Semaphore, mpsc, watch};
use url::Url;

/// Which URLs the crawl may visit. Plugins only propose; this decides.
pub struct Scope {
    domains: Vec<String>,
    allow: Option<regex::RegexSet>,
    deny: Option<regex::RegexSet>,
    max_depth: Option<u32>,
}

impl Scope {
    pub fn new(cfg: &crate::config::ScopeConfig, seeds: &[Url]) -> Result<Self> {
        let mut domains: Vec<String> = if cfg.allowed_domains.is_empty() {
            seeds
                .iter()
                .filter_map(|u| u.host_str().map(str::to_ascii_lowercase))
                .collect()
        } else {
            cfg.allowed_domains
                .iter()
                .map(|d| d.trim().trim_start_matches("*.").to_ascii_lowercase())
                .collect()
        };
        domains.sort();
        domains.dedup();
        let set = |v: &Vec<String>, key: &str| -> Result<Option<regex::RegexSet>> {
            if v.is_empty() {
                return Ok(None);
            }
            regex::RegexSet::new(v)
                .map(Some)
                .map_err(|e| anyhow!("{key}: {e}"))
        };
        Ok(Scope {
            domains,
            allow: set(&cfg.allow, "scope.allow")?,
            deny: set(&cfg.deny, "scope.deny")?,
            max_depth: cfg.max_depth,
        })
    }

    /// Host and pattern rules (not depth).
    pub fn check_url(&self, url: &Url) -> Result<(), &'static str> {
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        let in_domain = self.domains.iter().any(|d| {
            host == *d
                || (host.len() > d.len()
                    && host.ends_with(d.as_str())
                    && host.as_bytes()[host.len() - d.len() - 1] == b'.')
        });
        if !in_domain {
            return Err("off_domain");
        }
        if let Some(deny) = &self.deny
            && deny.is_match(url.as_str())
        {
            return Err("denied_pattern");
        }
        if let Some(allow) = &self.allow
            && !allow.is_match(url.as_str())
        {
            return Err("not_allowed_pattern");
        }
        Ok(())
    }

    pub fn check_depth(&self, depth: u32) -> Result<(), &'static str> {
        match self.max_depth {
            Some(max) if depth > max => Err("too_deep"),
            _ => Ok(()),
        }
    }
}

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
        tracing::debug!(host = %host_key(url), note = %fetched.note, "robots.txt");
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

/// What a crawl did. Also written to `STATE/summary.json`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    pub pages: u64,
    pub downloads: u64,
    pub files_new: u64,
    pub bytes: u64,
    pub items: u64,
    pub items_total: u64,
    pub status: BTreeMap<u16, u64>,
    pub errors: BTreeMap<String, u64>,
    pub skipped: BTreeMap<String, u64>,
    pub retries: u64,
    pub plugins: BTreeMap<String, PluginStats>,
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
    Page {
        resp: Box<Response>,
        items: Vec<Item>,
        links: Vec<(crate::plugin::LinkOut, Option<String>)>,
        plugin_runs: Vec<PluginRun>,
    },
    Download {
        resp: Box<Response>,
        item: Option<Item>,
        new_file: bool,
    },
    Retry {
        reason: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
    Failed {
        kind: String,
        status: Option<u16>,
    },
}

struct Done {
    lease: Lease,
    work: Work,
    latency: Duration,
    crawl_delay: Option<Duration>,
}

/// Read-only state shared with the workers.
struct Shared {
    fetcher: Fetcher,
    plugins: Vec<Plugin>,
    enabled: Vec<bool>,
    robots: RobotsCache,
    scope: Scope,
    files: FilesStore,
    respect_robots: bool,
    follow_unclaimed: bool,
    plugin_slots: Semaphore,
    /// Per plugin, a running average of its call time: decides where its next call runs.
    call_cost: Vec<CallCost>,
    /// Hashes of absolute link strings, exactly as plugins proposed them, whose URL is known
    /// to the frontier. Only the scheduler uses it, so the lock is never contended.
    known_links: Mutex<SeenCache>,
}

/// Where a plugin call runs, decided per plugin from what its calls have cost so far.
///
/// A typical page costs a few hundred microseconds in the sandbox. Handing that to tokio's
/// blocking pool and back costs two thread wake-ups per page, which measured as 13 % of the
/// crawl's CPU (BENCHMARKS.md §1), so cheap calls run right on the tokio worker that
/// fetched the page. Two kinds of plugin go to the blocking pool instead:
/// - one whose calls got expensive (a slow parser, or one that runs into its deadline), which
///   would stall the fetches sharing its worker. That lasts while its average call time is
///   above `INLINE_LIMIT_US`, and the average keeps being updated on the pool, so a plugin
///   that hit one pathological page comes back once it is cheap again;
/// - one that made a blocking WASI call (printing, polling). wasmtime-wasi serves those by
///   starting a runtime on the calling thread, which tokio refuses on a worker with a panic.
///   That panic is caught (see `parse_inline`), the page is parsed again on the pool, and the
///   plugin stays there: plugin calls have no side effects, so the second run is the only
///   one that counts.
#[derive(Default)]
struct CallCost {
    avg_us: std::sync::atomic::AtomicU64,
    blocks: std::sync::atomic::AtomicBool,
}

/// Above this average call time a plugin's calls leave the tokio workers.
const INLINE_LIMIT_US: u64 = 5_000;

impl CallCost {
    fn inline(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        !self.blocks.load(Relaxed) && self.avg_us.load(Relaxed) < INLINE_LIMIT_US
    }

    /// Exponential average with weight 1/8: one 2-second deadline lifts it far above the limit,
    /// and about thirty ordinary calls bring it back. Concurrent updates may lose one sample,
    /// which an average of this kind tolerates.
    fn record(&self, took: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let old = self.avg_us.load(Relaxed);
        self.avg_us.store(old - old / 8 + us / 8, Relaxed);
    }
}

/// Runs a crawl until the frontier is empty, a limit is reached, or `stop` turns true.
pub async fn run(
    cfg: CrawlConfig,
    plugins: Vec<Plugin>,
    mut stop: watch::Receiver<bool>,
) -> Result<Summary> {
    let started = Instant::now();
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
    let mut sink = FileSink::open(&output, cfg.format, token.as_deref())?;

    let seeds = resolve_seeds(&cfg, &plugins)?;
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

    let enabled = plugins
        .iter()
        .map(|p| {
            cfg.plugins
                .get(&p.info.name)
                .and_then(|s| s.enabled)
                .unwrap_or(true)
        })
        .collect();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let n_plugins = plugins.len();
    let shared = Arc::new(Shared {
        fetcher: Fetcher::new(cfg.fetch.clone())?,
        plugins,
        enabled,
        robots: RobotsCache::default(),
        scope,
        files: FilesStore::new(cfg.files_path()),
        respect_robots: cfg.politeness.respect_robots,
        follow_unclaimed: cfg.follow_unclaimed,
        plugin_slots: Semaphore::new(cores),
        call_cost: (0..n_plugins).map(|_| CallCost::default()).collect(),
        known_links: Mutex::new(SeenCache::default()),
    });
    let mut politeness = Politeness::new(cfg.politeness.clone());
    let mut summary = Summary {
        output: sink.describe(),
        files_dir: cfg.files_path().display().to_string(),
        state: cfg.state.display().to_string(),
        ..Summary::default()
    };
    let items_before = sink.items_written();
    let progress = crate::progress::Progress::new(
        cfg.progress,
        Duration::from_secs(cfg.progress_interval_s.max(1)),
    );

    let (tx, mut rx) = mpsc::unbounded_channel::<Done>();
    let mut in_flight = 0usize;
    let mut cursor = 0usize;
    let mut last_checkpoint = Instant::now();
    let checkpoint_every = Duration::from_secs(cfg.checkpoint_interval_s.max(1));
    let max_pages = cfg.scope.max_pages;
    let per_host_cap = cfg.scope.max_pages_per_host;

    loop {
        let now = Instant::now();
        let hosts = frontier.hosts_with_work();
        // Requests in flight count against max_pages before they finish, so the limit is exact.
        let budget_left = |fr: &FjallFrontier, in_flight: usize| {
            max_pages.is_none_or(|m| fr.counters().pages + (in_flight as u64) < m)
        };
        let mut next_wake: Option<Instant> = None;
        let mut dispatchable = false;
        if !hosts.is_empty() {
            let n = hosts.len();
            for k in 0..n {
                let host = &hosts[(cursor + k) % n];
                if !budget_left(&frontier, in_flight) {
                    break;
                }
                let under_cap = |fr: &FjallFrontier, pol: &Politeness| {
                    per_host_cap.is_none_or(|cap| {
                        fr.host_pages(host) + (pol.host_in_flight(host) as u64) < cap
                    })
                };
                if !under_cap(&frontier, &politeness) {
                    // A capped host takes no more URLs; it keeps the crawl loop alive only
                    // while its own requests are still running.
                    if politeness.host_in_flight(host) > 0 {
                        dispatchable = true;
                    }
                    continue;
                }
                dispatchable = true;
                while politeness.can_start(host, now)
                    && budget_left(&frontier, in_flight)
                    && under_cap(&frontier, &politeness)
                {
                    let Some(lease) = frontier.lease(host)? else {
                        break;
                    };
                    politeness.started(host, now);
                    in_flight += 1;
                    let tx = tx.clone();
                    let shared = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let done = work_or_report(&shared, lease).await;
                        let _ = tx.send(done);
                    });
                }
                if let Some(at) = politeness.ready_at(host).filter(|at| *at > now) {
                    next_wake = Some(next_wake.map_or(at, |w| w.min(at)));
                }
            }
            cursor = cursor.wrapping_add(1);
        }

        if in_flight == 0 && (!dispatchable || hosts.is_empty()) {
            break;
        }

        if last_checkpoint.elapsed() >= checkpoint_every {
            checkpoint(&mut sink, &mut frontier)?;
            last_checkpoint = Instant::now();
        }
        progress.tick(
            &frontier.counters(),
            sink.items_written(),
            &summary,
            started,
        );

        let sleep_for = next_wake
            .map(|w| w.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(500))
            .min(Duration::from_millis(500));
        tokio::select! {
            Some(done) = rx.recv() => {
                in_flight -= 1;
                commit(done, &cfg, &shared, &mut frontier, &mut sink, &mut politeness, &mut summary)?;
                // Drain whatever else finished, so commits batch up between dispatch rounds.
                while let Ok(done) = rx.try_recv() {
                    in_flight -= 1;
                        commit(done, &cfg, &shared, &mut frontier, &mut sink, &mut politeness, &mut summary)?;
                }
            }
            _ = tokio::time::sleep(sleep_for) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    summary.stopped_early = true;
                    tracing::warn!(in_flight, "stopping: finishing pages in flight (Ctrl+C again to quit at once)");
                    if in_flight > 0 {
                        let grace = Instant::now() + Duration::from_secs(10);
                        while in_flight > 0 {
                            match tokio::time::timeout_at(grace.into(), rx.recv()).await {
                                Ok(Some(done)) => {
                                    in_flight -= 1;
                                    commit(done, &cfg, &shared, &mut frontier, &mut sink, &mut politeness, &mut summary)?;
                                }
                                _ => break,
                            }
                        }
                    }
                    break;
                }
            }
        }
    }

    checkpoint(&mut sink, &mut frontier)?;
    progress.finish();
    let c = frontier.counters();
    summary.items = sink.items_written() - items_before;
    summary.items_total = sink.items_written();
    summary.queued_left = c.queued;
    summary.in_flight_left = in_flight as u64;
    summary.elapsed_s = started.elapsed().as_secs_f64();
    let json = serde_json::to_vec_pretty(&summary)?;
    std::fs::write(cfg.state.join("summary.json"), json).context("writing summary.json")?;
    Ok(summary)
}

fn checkpoint(sink: &mut FileSink, frontier: &mut FjallFrontier) -> Result<()> {
    // Items first: once they are fsynced, the frontier can forget how to undo the pages
    // completed since the last checkpoint.
    sink.sync()?;
    frontier.checkpoint(&sink.commit_token())
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
        let parsed = Url::parse(s.trim()).map_err(|e| {
            anyhow!("seed URL {s:?} ({origin}) is invalid: {e}; give a full URL like https://example.com/")
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            bail!("seed URL {s:?} ({origin}) must be http(s) with a host");
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
            kind: format!("bad_url: {e}"),
            status: None,
        },
        Ok(url) => {
            let mut verdict = None;
            if shared.respect_robots {
                let r = shared.robots.get(&shared.fetcher, &url).await;
                crawl_delay = r.crawl_delay;
                if !r.allowed(&url) {
                    verdict = Some(if r.unreachable() {
                        Work::Retry {
                            reason: "robots_unreachable".into(),
                            status: None,
                            retry_after: Some(robots::RETRY_UNREACHABLE),
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

async fn fetch_and_parse(shared: &Arc<Shared>, lease: &Lease, url: Url) -> Work {
    let hop_shared = Arc::clone(shared);
    let result = shared
        .fetcher
        .fetch(&url, move |hop: Url| {
            let s = Arc::clone(&hop_shared);
            async move {
                s.scope
                    .check_url(&hop)
                    .map_err(|why| format!("{hop} is out of scope ({why})"))?;
                if s.respect_robots && !s.robots.get(&s.fetcher, &hop).await.allowed(&hop) {
                    return Err(format!("robots.txt disallows {hop}"));
                }
                Ok(())
            }
        })
        .await;
    let resp = match result {
        Ok(r) => r,
        Err(e) if e.retryable() => {
            return Work::Retry {
                reason: e.kind().to_owned(),
                status: None,
                retry_after: None,
            };
        }
        Err(e) => {
            tracing::info!(url = %url, "fetch failed: {e}");
            return Work::Failed {
                kind: e.kind().to_owned(),
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
            status: Some(status),
            retry_after,
        };
    }
    if !(200..300).contains(&status) {
        return Work::Failed {
            kind: format!("http_{status}"),
            status: Some(status),
        };
    }
    match lease.record.kind {
        UrlKind::Download => download(shared, lease, resp),
        UrlKind::Page => parse_page(shared, lease, resp).await,
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

fn download(shared: &Arc<Shared>, lease: &Lease, resp: Response) -> Work {
    if resp.truncated {
        return Work::Failed {
            kind: "download_too_large".into(),
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
        id: item_id(&lease.fp, "file", 0),
        url: resp.final_url.to_string(),
        fetched_at: now_rfc3339(),
        plugin,
        kind: "file".into(),
        fields,
    };
    Work::Download {
        resp: Box::new(resp),
        item: Some(item),
        new_file: stored.new,
    }
}

async fn parse_page(shared: &Arc<Shared>, lease: &Lease, resp: Response) -> Work {
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
        let Ok(_permit) = shared.plugin_slots.acquire().await else {
            break;
        };
        let t0 = Instant::now();
        let inline = if shared.call_cost[i].inline() {
            let r = parse_inline(&shared.plugins[i], &input);
            if r.is_none() {
                tracing::debug!(plugin = %shared.plugins[i].info.name, "plugin makes blocking WASI calls; its calls move to the blocking pool");
                shared.call_cost[i]
                    .blocks
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            r
        } else {
            None
        };
        let result = if let Some(result) = inline {
            result
        } else {
            let s = Arc::clone(shared);
            let page = Arc::clone(&input);
            tokio::task::spawn_blocking(move || s.plugins[i].parse(&page))
                .await
                .unwrap_or_else(|e| Err(PluginError::Trap(format!("host task failed: {e}"))))
        };
        let took = t0.elapsed();
        shared.call_cost[i].record(took);
        let info = &shared.plugins[i].info;
        match result {
            Ok(out) => {
                claimed = true;
                let (ni, nl) = (out.items.len() as u64, out.links.len() as u64);
                for (n, it) in out.items.into_iter().enumerate() {
                    items.push(Item {
                        id: item_id(&lease.fp, &info.name, n),
                        url: url_str.to_owned(),
                        fetched_at: fetched_at.clone(),
                        plugin: PluginRef {
                            name: info.name.clone(),
                            version: info.version.clone(),
                            sha256: info.sha256.clone(),
                        },
                        kind: it.kind,
                        fields: it.fields,
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
    if !claimed && shared.follow_unclaimed && looks_html(&resp) {
        for u in crate::links::extract(&resp.final_url, &resp.body, resp.encoding) {
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
        plugin_runs: runs,
    }
}

thread_local! {
    /// Set while this thread runs a plugin call on a tokio worker.
    static IN_INLINE_CALL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a plugin call on the current tokio worker. `None` means the call panicked in the
/// host, which on a worker means the plugin made a blocking WASI call (see `CallCost`): the
/// caller runs it again on the blocking pool.
fn parse_inline(
    plugin: &Plugin,
    page: &PageInput,
) -> Option<Result<crate::plugin::ParseOutput, PluginError>> {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| {
        // The panic is expected and handled; printing it would read like a crash.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_INLINE_CALL.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    IN_INLINE_CALL.with(|f| f.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| plugin.parse(page)));
    IN_INLINE_CALL.with(|f| f.set(false));
    result.ok()
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

fn commit(
    done: Done,
    cfg: &CrawlConfig,
    shared: &Shared,
    frontier: &mut FjallFrontier,
    sink: &mut FileSink,
    politeness: &mut Politeness,
    summary: &mut Summary,
) -> Result<()> {
    let Done {
        lease,
        work,
        latency,
        crawl_delay,
    } = done;
    let host = lease.record.host.clone();
    if let Some(d) = crawl_delay {
        politeness.set_crawl_delay(&host, d);
    }
    let status = match &work {
        Work::Page { resp, .. } | Work::Download { resp, .. } => Some(resp.status),
        Work::Retry { status, .. } | Work::Failed { status, .. } => *status,
        Work::Disallowed => None,
    };
    politeness.finished(&host, Feedback { latency, status });
    if let Some(s) = status {
        *summary.status.entry(s).or_default() += 1;
    }
    let is_page = lease.record.kind == UrlKind::Page;

    match work {
        Work::Disallowed => {
            *summary
                .skipped
                .entry("robots_disallowed".into())
                .or_default() += 1;
            frontier.complete(
                &lease,
                Outcome::Done,
                false,
                Vec::new(),
                &sink.commit_token(),
            )?;
        }
        Work::Retry {
            reason,
            retry_after,
            ..
        } => {
            let attempt = lease.record.attempts + 1;
            if attempt > cfg.politeness.max_retries {
                tracing::warn!(url = %lease.record.url, attempts = attempt, "giving up: {reason}");
                *summary.errors.entry(reason).or_default() += 1;
                frontier.complete(
                    &lease,
                    Outcome::Failed,
                    is_page,
                    Vec::new(),
                    &sink.commit_token(),
                )?;
            } else {
                let wait = match retry_after {
                    Some(d) => politeness.clamp_retry_after(d),
                    None => politeness.backoff(attempt),
                };
                tracing::debug!(url = %lease.record.url, attempt, ?wait, "retrying: {reason}");
                summary.retries += 1;
                // Host-wide: a server that says "slow down" (or fails to answer) means all of it.
                politeness.block(&host, wait);
                frontier.release(&lease, attempt)?;
            }
        }
        Work::Failed { kind, .. } => {
            *summary.errors.entry(kind).or_default() += 1;
            frontier.complete(
                &lease,
                Outcome::Failed,
                is_page,
                Vec::new(),
                &sink.commit_token(),
            )?;
        }
        Work::Download {
            resp,
            item,
            new_file,
        } => {
            summary.downloads += 1;
            summary.bytes += resp.wire_bytes;
            if new_file {
                summary.files_new += 1;
            }
            let items: Vec<Item> = item.into_iter().collect();
            sink.write_page(&items)?;
            frontier.complete(
                &lease,
                Outcome::Done,
                false,
                Vec::new(),
                &sink.commit_token(),
            )?;
        }
        Work::Page {
            resp,
            items,
            links,
            plugin_runs,
        } => {
            summary.pages += 1;
            summary.bytes += resp.wire_bytes;
            for (i, result, took) in plugin_runs {
                let st = summary
                    .plugins
                    .entry(shared.plugins[i].info.name.clone())
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
            let mut known = shared
                .known_links
                .lock()
                .map_err(|_| anyhow!("the known-links cache was poisoned by a panic"))?;
            let (new_links, raw) = accept_links(
                &lease,
                &resp.final_url,
                links,
                &cfg.normalize,
                &shared.scope,
                &mut known,
                summary,
            );
            sink.write_page(&items)?;
            frontier.complete(&lease, Outcome::Done, true, new_links, &sink.commit_token())?;
            // Only now is every one of those URLs in the frontier (added or already there).
            for h in raw {
                known.insert(h);
            }
        }
    }
    Ok(())
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
                *summary.skipped.entry(why.into()).or_default() += 1;
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
            *summary.skipped.entry(why.into()).or_default() += 1;
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
            *summary.skipped.entry(why.into()).or_default() += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_leaves_the_workers_while_its_calls_are_slow_and_comes_back() {
        let cost = CallCost::default();
        assert!(cost.inline(), "a new plugin starts on the workers");
        for _ in 0..100 {
            cost.record(Duration::from_micros(300));
        }
        assert!(cost.inline());
        cost.record(Duration::from_secs(2)); // one call ran into its deadline
        assert!(!cost.inline());
        let mut calls = 0;
        while !cost.inline() && calls < 1_000 {
            cost.record(Duration::from_micros(300));
            calls += 1;
        }
        assert!((20..60).contains(&calls), "back after {calls} cheap calls");
    }

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

    #[test]
    fn a_plugin_that_blocks_stays_on_the_pool() {
        let cost = CallCost::default();
        cost.blocks
            .store(true, std::sync::atomic::Ordering::Relaxed);
        cost.record(Duration::from_micros(1));
        assert!(!cost.inline());
    }
}
