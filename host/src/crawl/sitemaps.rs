//! Seeds from sitemaps (`--sitemaps`): for each seed origin, the `Sitemap:` lines of its
//! robots.txt, or `/sitemap.xml` when it names none; index files followed up to
//! `MAX_NESTING` levels, at most `MAX_FILES` files per crawl. The URLs they list go through
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
use crate::frontier::{Frontier, UrlKind};
use crate::sitemap::{self, Date, Entry};
use crate::summary::{SitemapStats, Summary};
use anyhow::Result;
use std::collections::{HashSet, VecDeque};
use std::time::Duration;
use url::Url;

/// Index files may point at index files this many levels deep (seed sitemap = level 0).
pub const MAX_NESTING: u32 = 3;
/// Sitemap files read per crawl, whatever the indexes list.
pub const MAX_FILES: usize = 1_000;

/// What the sitemaps listed, before scope and dedup.
#[derive(Default)]
pub struct Found {
    entries: Vec<(Entry, Url)>,
    files: u64,
    errors: Vec<String>,
}

/// Fetches the seeds' sitemaps. Nothing here fails the crawl: a sitemap that cannot be
/// fetched or read is one line in `errors`.
pub async fn discover(cfg: &CrawlConfig, shared: &Shared, seeds: &[Url]) -> Found {
    let mut found = Found::default();
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
        let robots = shared.robots.get(&shared.fetcher, &root).await;
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
        if found.files as usize >= MAX_FILES {
            found.errors.push(format!(
                "more than {MAX_FILES} sitemap files; {} more not read",
                queue.len() + 1
            ));
            break;
        }
        // Sitemap files are requests like any other: spaced by the politeness delay.
        if !first && !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        first = false;
        let file = match fetch(shared, &url).await {
            Ok(f) => f,
            Err(why) => {
                tracing::warn!(sitemap = %url, "sitemap not read: {why}");
                found.errors.push(format!("{url}: {why}"));
                continue;
            }
        };
        found.files += 1;
        if let Some(e) = &file.error {
            found.errors.push(format!("{url}: {e}"));
        }
        if file.dropped > 0 {
            found.errors.push(format!(
                "{url}: {} entries past the protocol's cap of {} dropped",
                file.dropped,
                sitemap::MAX_URLS
            ));
        }
        for e in file.sitemaps {
            let Ok(next) = url.join(&e.loc) else {
                found
                    .errors
                    .push(format!("{url}: invalid sitemap location {:?}", e.loc));
                continue;
            };
            if level + 1 > MAX_NESTING {
                found.errors.push(format!(
                    "{next}: sitemap indexes nested deeper than {MAX_NESTING} levels; not read"
                ));
            } else if seen.insert(next.to_string()) {
                queue.push_back((next, level + 1));
            }
        }
        for e in file.urls {
            found.entries.push((e, url.clone()));
        }
    }
    found
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

impl Found {
    /// Queues the listed URLs that pass `--since`, scope and dedup, as depth-0 pages.
    pub fn queue(
        self,
        cfg: &CrawlConfig,
        scope: &Scope,
        frontier: &mut dyn Frontier,
        summary: &mut Summary,
    ) -> Result<SitemapStats> {
        let since = cfg.sitemaps_since.as_deref().and_then(Date::parse);
        let mut stats = SitemapStats {
            files: self.files,
            urls: self.entries.len() as u64,
            queued: 0,
            errors: self.errors,
        };
        let mut skip = |why: Skip| *summary.skipped.entry(why.as_str().into()).or_default() += 1;
        let mut batch = Vec::new();
        for (e, from) in self.entries {
            if let (Some(since), Some(lastmod)) = (since, e.lastmod)
                && lastmod < since
            {
                skip(Skip::SitemapOld);
                continue;
            }
            let Ok(u) = from.join(&e.loc) else {
                skip(Skip::InvalidLink);
                continue;
            };
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                skip(Skip::InvalidLink);
                continue;
            }
            let mut normalized = u.clone();
            cfg.normalize.apply(&mut normalized);
            if let Err(why) = scope.check_url(&normalized) {
                skip(why.into());
                continue;
            }
            batch.push(super::links::new_url(&u, &cfg.normalize, 0, UrlKind::Page));
            if batch.len() >= 10_000 {
                stats.queued += frontier.add(std::mem::take(&mut batch))? as u64;
            }
        }
        stats.queued += frontier.add(batch)? as u64;
        tracing::info!(
            files = stats.files,
            listed = stats.urls,
            queued = stats.queued,
            "seeded from sitemaps"
        );
        Ok(stats)
    }
}
