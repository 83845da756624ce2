//! Seeds from sitemaps (`--sitemaps`): for each seed origin, the `Sitemap:` lines of its
//! robots.txt, or `/sitemap.xml` when it names none; index files followed up to
//! `MAX_NESTING` levels, at most `MAX_FILES` files, `MAX_TIME` and `scope.max_pages` URLs per
//! crawl, and Ctrl+C honoured between and during fetches. The URLs they list go through
//! scope and dedup like any link (robots.txt is checked when each is fetched), and entries
//! older than `--since` are skipped.
//!
//! It owns the discovery and fetching of sitemap files; the format is `crate::sitemap`'s. It
//! must not fetch pages or write items.

use super::outcome::Skip;
use super::scope::Scope;
use super::worker::Shared;
use crate::config::CrawlConfig;
use crate::fetch::Disposition;
use crate::frontier::{Frontier, NewUrl, UrlKind};
use crate::sitemap::{self, Date, Entry};
use crate::summary::{SitemapStats, Summary};
use anyhow::Result;
use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use url::Url;

/// Index files may point at index files this many levels deep (seed sitemap = level 0).
pub const MAX_NESTING: u32 = 3;
/// Sitemap files read per crawl, whatever the indexes list.
pub const MAX_FILES: usize = 1_000;
/// Wall-clock time the whole discovery may take before the crawl starts without the rest.
pub const MAX_TIME: Duration = Duration::from_secs(600);
/// URLs taken from sitemaps per crawl when `scope.max_pages` is unlimited.
pub const MAX_URLS_UNLIMITED: u64 = 10_000_000;

/// Reads the seeds' sitemaps and queues the URLs they list, file by file, so memory holds one
/// file at a time. Nothing here fails the crawl: a sitemap that cannot be fetched or read is
/// one line in the stats' `errors`. Returns early, with a line saying so, when `stop` turns
/// true (Ctrl+C), after `MAX_TIME`, or once `scope.max_pages` URLs were listed.
pub async fn seed(
    cfg: &CrawlConfig,
    shared: &Shared,
    seeds: &[Url],
    frontier: &mut dyn Frontier,
    summary: &mut Summary,
    stop: &mut watch::Receiver<bool>,
) -> Result<SitemapStats> {
    let mut stats = SitemapStats::default();
    let started = Instant::now();
    let cap = cfg.scope.max_pages.unwrap_or(MAX_URLS_UNLIMITED);
    let mut queue: VecDeque<(Url, u32)> = VecDeque::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut origins: Vec<Url> = Vec::new();
    for s in seeds {
        let Ok(root) = s.join("/") else { continue };
        if !origins.contains(&root) {
            origins.push(root);
        }
    }
    for root in origins {
        let robots = tokio::select! {
            r = shared.robots.get(&shared.fetcher, &root) => r,
            _ = stopped(stop) => return Ok(interrupted(stats, queue.len())),
        };
        let listed: Vec<Url> = robots
            .sitemaps
            .iter()
            .filter_map(|s| root.join(s.trim()).ok())
            .collect();
        let start = if listed.is_empty() {
            root.join("/sitemap.xml").into_iter().collect()
        } else {
            listed
        };
        for u in start {
            if seen.insert(u.to_string()) {
                queue.push_back((u, 0));
            }
        }
    }
    let delay = Duration::from_millis(cfg.politeness.delay_ms);
    let mut first = true;
    while let Some((url, level)) = queue.pop_front() {
        if stats.files as usize >= MAX_FILES {
            stats.errors.push(format!(
                "more than {MAX_FILES} sitemap files; {} more not read",
                queue.len() + 1
            ));
            break;
        }
        if started.elapsed() >= MAX_TIME {
            stats.errors.push(format!(
                "reading sitemaps took over {} s; {} more files not read",
                MAX_TIME.as_secs(),
                queue.len() + 1
            ));
            break;
        }
        if stats.urls >= cap {
            stats.errors.push(format!(
                "the sitemaps listed {cap} URLs (scope.max_pages); {} more files not read",
                queue.len() + 1
            ));
            break;
        }
        // Sitemap files are requests like any other: spaced by the politeness delay.
        if !first && !delay.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(stop) => return Ok(interrupted(stats, queue.len() + 1)),
            }
        }
        first = false;
        let fetched = tokio::select! {
            f = fetch(shared, &url) => f,
            _ = stopped(stop) => return Ok(interrupted(stats, queue.len() + 1)),
        };
        let file = match fetched {
            Ok(f) => f,
            Err(why) => {
                tracing::warn!(sitemap = %url, "sitemap not read: {why}");
                stats.errors.push(format!("{url}: {why}"));
                continue;
            }
        };
        stats.files += 1;
        if let Some(e) = &file.error {
            stats.errors.push(format!("{url}: {e}"));
        }
        if file.dropped > 0 {
            stats.errors.push(format!(
                "{url}: {} entries past the protocol's cap of {} dropped",
                file.dropped,
                sitemap::MAX_URLS
            ));
        }
        for e in file.sitemaps {
            let Ok(next) = url.join(&e.loc) else {
                stats
                    .errors
                    .push(format!("{url}: invalid sitemap location {:?}", e.loc));
                continue;
            };
            if level + 1 > MAX_NESTING {
                stats.errors.push(format!(
                    "{next}: sitemap indexes nested deeper than {MAX_NESTING} levels; not read"
                ));
            } else if seen.insert(next.to_string()) {
                queue.push_back((next, level + 1));
            }
        }
        let room = usize::try_from(cap - stats.urls).unwrap_or(usize::MAX);
        if file.urls.len() > room {
            stats.errors.push(format!(
                "{url}: {} URLs past scope.max_pages ({cap}) from sitemaps not queued",
                file.urls.len() - room
            ));
        }
        let entries: Vec<Entry> = file.urls.into_iter().take(room).collect();
        stats.urls += entries.len() as u64;
        let batch = to_queue(cfg, &shared.scope, &url, entries, &mut |why| {
            *summary.skipped.entry(why.as_str().into()).or_default() += 1
        });
        stats.queued += frontier.add(batch)? as u64;
    }
    tracing::info!(
        files = stats.files,
        listed = stats.urls,
        queued = stats.queued,
        "seeded from sitemaps"
    );
    Ok(stats)
}

/// Resolves when `stop` says the crawl is to stop (Ctrl+C); never, if its sender is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow() {
            return;
        }
        if stop.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn interrupted(mut stats: SitemapStats, left: usize) -> SitemapStats {
    stats.errors.push(format!(
        "stopped (Ctrl+C) with {left} sitemap files not read"
    ));
    stats
}

/// Fetches one sitemap file: in scope (origin), allowed by robots.txt, a 2xx answer,
/// decompressed within the cap and parsed.
async fn fetch(shared: &Shared, url: &Url) -> Result<sitemap::Sitemap, String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err("not an http(s) URL".into());
    }
    shared
        .scope
        .check_origin(url)
        .map_err(|why| format!("out of scope ({})", why.as_str()))?;
    if shared.respect_robots && !shared.robots.get(&shared.fetcher, url).await.allowed(url) {
        return Err("disallowed by robots.txt".into());
    }
    let result = shared
        .fetcher
        .fetch(url, |hop: Url| {
            let ok = shared.scope.check_origin(&hop);
            async move { ok.map_err(|why| format!("{hop} is out of scope ({})", why.as_str())) }
        })
        .await;
    let resp = match Disposition::of(result) {
        Disposition::Page(r) => r,
        Disposition::Retry { cause, .. } | Disposition::Fail { cause, .. } => return Err(cause),
    };
    let body = sitemap::decompress(&resp.body)?;
    let mut parsed = sitemap::parse(&body);
    if resp.truncated && parsed.error.is_none() {
        parsed.error =
            Some("cut at fetch.max_body_bytes; the entries before the cut are used".into());
    }
    Ok(parsed)
}

/// One file's URLs that pass `--since` and scope, as depth-0 pages to queue (dedup is the
/// frontier's); `skip` is told about the others.
fn to_queue(
    cfg: &CrawlConfig,
    scope: &Scope,
    from: &Url,
    entries: Vec<Entry>,
    skip: &mut dyn FnMut(Skip),
) -> Vec<NewUrl> {
    let since = cfg.sitemaps_since.as_deref().and_then(Date::parse);
    let mut batch = Vec::with_capacity(entries.len());
    for e in entries {
        if let (Some(since), Some(lastmod)) = (since, e.lastmod)
            && lastmod < since
        {
            skip(Skip::SitemapOld);
            continue;
        }
        match super::links::resolve_in_scope(from, &e.loc, &cfg.normalize, scope) {
            Ok((u, fp)) => batch.push(super::links::queued(&u, fp, 0, UrlKind::Page)),
            Err(why) => skip(why),
        }
    }
    batch
}
