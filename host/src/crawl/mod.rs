//! The crawl: seeds → frontier → politeness → fetch → plugins → sink.
//!
//! `run` opens the state, builds the [`Scheduler`] (which owns everything that changes) and
//! lets it loop. The pieces, one file each: `seeds` (where a crawl starts), `sitemaps`
//! (seeds from sitemaps), `scope` (which URLs may be visited), `links` (proposals into
//! queueable URLs), `worker` (robots.txt and the fetch of one lease), `page` (routing a
//! response to plugins, building items), `outcome` (what a lease came to, and the typed
//! reasons the summary counts), `ready` (which hosts may start next), `roster` (the loaded
//! plugins, swappable), `reload` (hot reload of plugin files, `--watch`), `replay` (plugins
//! over a WARC's stored pages, `sandcrawl replay`). This module must not
//! know HTTP details (`fetch`), plugin internals (`plugin`) or output formats (`sink`).

mod health;
mod links;
mod outcome;
mod page;
mod ready;
mod reload;
pub mod replay;
pub mod roster;
mod scheduler;
pub mod scope;
mod seeds;
pub mod sitemaps;
mod worker;

pub use outcome::{FailureKind, Skip};
pub use scheduler::Scheduler;
pub use scope::Scope;

use crate::config::CrawlConfig;
use crate::fetch::Fetcher;
use crate::frontier::redis::{Description, Joined};
use crate::frontier::{FjallFrontier, Frontier, RedisFrontier, UrlKind};
use crate::sink::{FilesStore, Sink};
use crate::summary::{PluginStats, SharedCrawl, Summary};
use anyhow::{Context as _, Result};
use scheduler::Parts;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use worker::{RobotsCache, Shared};

/// Runs a crawl until the frontier is empty, a limit is reached, or `stop` turns true.
/// `plugins` come from [`roster::load`]; its refused files go into the summary.
pub async fn run(
    cfg: CrawlConfig,
    plugins: roster::Loaded,
    stop: watch::Receiver<bool>,
) -> Result<Summary> {
    // Seeds are checked before the state directory is created or opened: a typo in a seed
    // leaves nothing behind.
    let seeds = seeds::resolve_seeds(&cfg, &plugins.plugins)?;
    let start = seeds::start_requests(&cfg, &plugins.plugins).await?;
    // Databases are connected and checked before the state directory is created or opened:
    // a wrong password or a read-only user leaves nothing behind.
    let outputs = crate::sink::Prepared::connect(cfg.output_targets()?, &cfg).await?;
    // So is the --listen port: a taken one is one line, and nothing is created.
    let listener = crate::monitor::Listener::bind(&cfg).await?;
    let (mut frontier, seeds, shared): (Box<dyn Frontier>, _, _) = match cfg.redis_target() {
        None => (Box::new(FjallFrontier::open(&cfg.state)?), seeds, None),
        Some(target) => {
            let me = describe(&cfg, &seeds, &start, &plugins.plugins)?;
            let mut shared = SharedCrawl {
                frontier: crate::sink::target::mask(&target.url),
                crawl_id: target.crawl_id.clone(),
                worker: target.worker.clone(),
                finished_before: false,
            };
            match RedisFrontier::join(&target, &me)? {
                Joined::Finished(c, token) => {
                    shared.finished_before = true;
                    if token.is_some() {
                        // Cuts this worker's output back to its last committed page.
                        let mut sink = outputs.open(token.as_deref())?;
                        sink.sync()?;
                    }
                    return Ok(Summary {
                        shared: Some(shared),
                        done_before: c.done,
                        failed_before: c.failed,
                        state: cfg.state.display().to_string(),
                        ..Summary::default()
                    });
                }
                Joined::Running {
                    frontier,
                    seeds: all,
                } => {
                    std::fs::create_dir_all(&cfg.state).with_context(|| {
                        format!("creating the state directory {}", cfg.state.display())
                    })?;
                    tracing::info!(
                        crawl_id = %target.crawl_id,
                        worker = %target.worker,
                        "joined the shared crawl on {}",
                        shared.frontier
                    );
                    let seeds = if seeds.is_empty() {
                        all.iter().filter_map(|s| url::Url::parse(s).ok()).collect()
                    } else {
                        seeds
                    };
                    (frontier as Box<dyn Frontier>, seeds, Some(shared))
                }
            }
        }
    };
    let mut token = frontier.sink_token()?;
    if let Some((output, have, committed)) = outputs.lost_tail(token.as_deref())? {
        let (requeued, synced) = frontier.rewind_to_checkpoint()?;
        tracing::warn!(
            output,
            requeued,
            "the output has {have} of {committed} committed bytes: its unsynced tail was lost (power failure or OS crash); the pages completed since the last checkpoint are queued again"
        );
        token = Some(synced.unwrap_or_else(|| outputs.initial_token()));
    }
    let sink = outputs.open(token.as_deref())?;
    let setup = Setup {
        cfg,
        seeds,
        start,
        plugins,
        frontier,
        sink,
        listener,
        shared,
    };
    run_with(setup, stop).await
}

/// What every worker of a shared crawl must agree on, and this one's seeds.
fn describe(
    cfg: &CrawlConfig,
    seeds: &[url::Url],
    start: &[crate::frontier::NewUrl],
    plugins: &[crate::plugin::Plugin],
) -> Result<Description> {
    let p = &cfg.politeness;
    let politeness = serde_json::json!({
        "per_host": p.per_host,
        "delay_ms": p.delay_ms,
        "respect_robots": p.respect_robots,
        "hosts": cfg.hosts,
    });
    let mut names: Vec<String> = plugins
        .iter()
        .map(|p| {
            let sha = p.info.sha256.get(..16).unwrap_or(&p.info.sha256);
            format!("{}@{} {sha}", p.info.name, p.info.version)
        })
        .collect();
    names.sort();
    let mut all: Vec<String> = seeds.iter().map(|u| u.to_string()).collect();
    all.extend(start.iter().map(|n| n.record.url.clone()));
    Ok(Description {
        parts: vec![
            ("scope", serde_json::to_string(&cfg.scope)?),
            ("plugins", serde_json::to_string(&names)?),
            ("politeness", politeness.to_string()),
            ("normalize", serde_json::to_string(&cfg.normalize)?),
        ],
        seeds: all,
    })
}

/// What a crawl runs on: its config, checked seeds, loaded plugins (and the refused ones, for
/// the summary), and the frontier and sink it works through.
pub(crate) struct Setup {
    pub cfg: CrawlConfig,
    pub seeds: Vec<url::Url>,
    /// The plugins' start requests, queued at depth 0 with the seeds.
    pub start: Vec<crate::frontier::NewUrl>,
    pub plugins: roster::Loaded,
    pub frontier: Box<dyn Frontier>,
    pub sink: Box<dyn Sink>,
    /// The `--listen` socket, bound.
    pub listener: Option<crate::monitor::Listener>,
    /// Which shared crawl this worker is part of, if any.
    pub shared: Option<SharedCrawl>,
}

/// `run` on a given frontier and sink, with seeds already checked.
pub(crate) async fn run_with(setup: Setup, mut stop: watch::Receiver<bool>) -> Result<Summary> {
    let Setup {
        cfg,
        seeds,
        start,
        plugins:
            roster::Loaded {
                plugins,
                refused,
                runtime,
            },
        mut frontier,
        sink,
        listener,
        shared: shared_crawl,
    } = setup;
    // Served from the start, so the page answers (as "starting") while sitemaps are read.
    let monitor = listener.map(|l| l.start(cfg.scope.max_pages));
    // Start requests' hosts are in the default scope, as seeds' are.
    let mut scope_from = seeds.clone();
    scope_from.extend(
        start
            .iter()
            .filter_map(|n| url::Url::parse(&n.record.url).ok()),
    );
    let scope_seeds = seeds::remember_seeds(&cfg, &scope_from)?;
    let scope = Scope::new(&cfg.scope, &scope_seeds)?;
    // A plugin proposes its start requests like any link: one outside the configured scope
    // (allowed_domains, deny, ...) is not fetched.
    let start = start.into_iter().filter(|n| {
        let mut u = match url::Url::parse(&n.record.url) {
            Ok(u) => u,
            Err(_) => return false,
        };
        cfg.normalize.apply(&mut u);
        match scope.check_url(&u) {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!(
                    plugin = n.record.proposer.as_deref().unwrap_or_default(),
                    "start request {} is out of scope ({}); not fetched",
                    n.record.url,
                    why.as_str()
                );
                false
            }
        }
    });
    let seed_records = seeds
        .iter()
        .map(|u| links::new_url(u, &cfg.normalize, 0, UrlKind::Page))
        .chain(start)
        .collect();
    let added = frontier.add(seed_records)?;
    if frontier.counters().known > added as u64 {
        let c = frontier.counters();
        tracing::info!(
            done = c.done,
            queued = c.queued,
            items = sink.items_written(),
            "resuming the crawl in {}",
            cfg.state.display()
        );
    }

    let roster = Arc::new(roster::Roster::new(plugins, &cfg));
    for active in roster.current().iter().filter(|a| a.enabled) {
        let p = &active.plugin;
        if !page::can_match_anything(p, &scope_seeds, &cfg.scope) {
            tracing::warn!(
                plugin = %p.info.name,
                "its URL patterns ({}) match no seed and no allowed domain, so it will claim no page; check the patterns ([plugins.{}] patterns) and the seeds",
                crate::escape::escape(&p.info.patterns.join(" ")),
                p.info.name
            );
        }
    }
    let (claims_tx, claims_rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        fetcher: Fetcher::new(cfg.fetch.clone(), cfg.politeness.concurrency)?,
        roster: Arc::clone(&roster),
        robots: RobotsCache::new(frontier.robots_store()),
        scope,
        files: FilesStore::new(cfg.files_path(), cfg.files.clone()),
        normalize: cfg.normalize.clone(),
        respect_robots: cfg.politeness.respect_robots,
        follow_unclaimed: cfg.follow_unclaimed,
        follow_max_links: cfg.follow_max_links,
        claims: claims_tx,
    });
    // Every loaded plugin has a line in the summary, so one that claimed no page shows.
    let plugin_stats = roster
        .current()
        .iter()
        .filter(|a| a.enabled)
        .map(|a| (a.name().to_owned(), PluginStats::default()))
        .collect();
    let mut summary = Summary {
        plugins: plugin_stats,
        output: sink.describe(),
        files_dir: cfg.files_path().display().to_string(),
        state: cfg.state.display().to_string(),
        plugins_refused: refused,
        shared: shared_crawl,
        ..Summary::default()
    };
    if cfg.seeds_from_sitemaps {
        let stats = sitemaps::seed(
            &cfg,
            &shared,
            &seeds,
            frontier.as_mut(),
            &mut summary,
            &mut stop,
        )
        .await?;
        summary.sitemaps = Some(stats);
    }
    let progress = crate::progress::Progress::new(
        cfg.progress,
        Duration::from_secs(cfg.progress_interval_s.max(1)),
    );
    let state = cfg.state.clone();
    // The watcher stops with the crawl: when `done` is dropped, or on Ctrl+C.
    let (done, watch_stop) = watch::channel(false);
    let watcher = match (cfg.watch, runtime) {
        (true, Some(runtime)) => {
            let w = reload::Watcher::new(runtime, Arc::clone(&roster), Arc::new(cfg.clone()));
            Some(tokio::spawn(w.run(watch_stop)))
        }
        _ => None,
    };
    let mut scheduler = Scheduler::new(Parts {
        cfg,
        shared,
        claims_rx,
        frontier,
        sink,
        summary,
        monitor,
    })?;
    let ran = scheduler.run(stop, &progress).await;
    let _ = done.send(true);
    if let Some(w) = watcher {
        // A build being compiled when the crawl ends is not waited for: its thread finishes
        // on its own and nothing takes its answer.
        w.abort();
        let _ = w.await;
    }
    if ran.is_err() {
        scheduler.abandon();
    }
    ran?;
    let summary = scheduler.finish()?;
    progress.finish();
    let json = serde_json::to_vec_pretty(&summary)?;
    std::fs::write(state.join("summary.json"), json).context("writing summary.json")?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontier::MemoryFrontier;
    use crate::sink::Item;

    /// Items kept in memory; the token is the item count.
    #[derive(Default)]
    struct MemorySink {
        items: Vec<Item>,
    }

    impl Sink for MemorySink {
        fn write_page(&mut self, items: &[Item]) -> Result<u64> {
            self.items.extend_from_slice(items);
            Ok(0)
        }
        fn commit_token(&self) -> Vec<u8> {
            self.items.len().to_be_bytes().to_vec()
        }
        fn sync(&mut self) -> Result<()> {
            Ok(())
        }
        fn items_written(&self) -> u64 {
            self.items.len() as u64
        }
        fn describe(&self) -> String {
            "memory".into()
        }
    }

    /// The scheduler over the in-memory frontier, on 300 host names that all resolve to the
    /// demo site: every host gets exactly its page budget, and the crawl ends on its own.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_hosts_each_get_their_budget_on_a_memory_frontier() -> Result<()> {
        let site = crate::demo::start("127.0.0.1:0".parse()?).await?;
        let port = url::Url::parse(&site.url())?
            .port()
            .ok_or_else(|| anyhow::anyhow!("demo site has no port"))?;
        let state = std::env::temp_dir().join(format!(
            "sandcrawl-sched-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&state)?;
        let mut cfg = CrawlConfig {
            state: state.clone(),
            progress: false,
            ..CrawlConfig::default()
        };
        cfg.fetch
            .resolve
            .insert("*.demo.test".into(), "127.0.0.1".into());
        cfg.scope.max_pages_per_host = Some(2);
        cfg.politeness.concurrency = 32;
        let hosts = 300;
        let seeds: Vec<url::Url> = (0..hosts)
            .map(|i| url::Url::parse(&format!("http://h{i}.demo.test:{port}/")))
            .collect::<Result<_, _>>()?;
        let (_stop_tx, stop) = watch::channel(false);
        let setup = Setup {
            cfg,
            seeds,
            start: Vec::new(),
            plugins: roster::Loaded::default(),
            frontier: Box::new(MemoryFrontier::new()),
            sink: Box::new(MemorySink::default()),
            listener: None,
            shared: None,
        };
        let summary = run_with(setup, stop).await?;
        std::fs::remove_dir_all(&state).ok();
        assert_eq!(summary.pages, 2 * hosts, "{summary}");
        assert!(summary.errors.is_empty(), "{summary}");
        assert!(!summary.stopped_early);
        // Each host's robots.txt, plus its pages: nothing fetched twice.
        assert_eq!(summary.requests, 3 * hosts, "{summary}");
        Ok(())
    }
}
