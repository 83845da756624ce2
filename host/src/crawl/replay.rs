//! `sandcrawl replay`: the plugins run over a crawl's stored pages (a `--warc` folder) with no
//! network at all, and their items go to the outputs as a crawl's would: the same routing
//! (`page::parse_page`), the same item ids (from the key the WARC kept for each page) and the
//! same `fetched_at` (the capture's date), so replaying with the plugin build the crawl used
//! gives its items again, and a fixed build re-extracts a whole crawl. It owns reading the
//! records in order and handing them to the outputs; it must not fetch, and it queues no link.

use super::Scope;
use super::outcome::Work;
use super::page::parse_page;
use super::roster::{self, Roster};
use super::worker::{RobotsCache, Shared};
use crate::config::CrawlConfig;
use crate::fetch::{BudgetHold, Fetcher, Method, Response, detect_encoding};
use crate::frontier::{Lease, UrlKind, UrlRecord};
use crate::sink::FilesStore;
use crate::warc::reader::{self, PageRecord};
use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;

/// What a replay did.
#[derive(Debug, Default, serde::Serialize)]
pub struct ReplaySummary {
    pub files: usize,
    pub pages: u64,
    pub items: u64,
    /// Per plugin: pages parsed, items, errors by kind.
    pub plugins: BTreeMap<String, crate::summary::PluginStats>,
    pub output: String,
    pub output_rejected: BTreeMap<String, u64>,
}

impl std::fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "replayed {} pages from {} WARC file(s): {} items written",
            self.pages, self.files, self.items
        )?;
        for (name, p) in &self.plugins {
            let errors: Vec<String> = p.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            writeln!(
                f,
                "  plugin {name}: {} pages, {} items{}",
                p.calls,
                p.items,
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(", errors {}", errors.join(", "))
                }
            )?;
        }
        if !self.output_rejected.is_empty() {
            let r: Vec<String> = self
                .output_rejected
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            writeln!(f, "  items the output refused: {}", r.join(", "))?;
        }
        write!(f, "  items: {}", self.output)
    }
}

/// Replays every page record of the WARC folder `dir` through `plugins` into `cfg`'s outputs.
pub async fn run(
    mut cfg: CrawlConfig,
    plugins: roster::Loaded,
    dir: &Path,
) -> Result<ReplaySummary> {
    let files = reader::files(dir)?;
    // A replay writes items, never another WARC.
    cfg.warc.dir = None;
    let outputs = crate::sink::Prepared::connect(cfg.output_targets()?, &cfg).await?;
    let mut sink = outputs.open(None)?;
    let (claims, _unused) = mpsc::unbounded_channel();
    let roster = Arc::new(Roster::new(plugins.plugins, &cfg));
    let shared = Arc::new(Shared {
        fetcher: Fetcher::new(cfg.fetch.clone(), cfg.politeness.concurrency)?,
        roster: Arc::clone(&roster),
        robots: RobotsCache::default(),
        scope: Scope::new(&cfg.scope, &[])?,
        files: FilesStore::new(cfg.files_path(), cfg.files.clone()),
        normalize: cfg.normalize.clone(),
        respect_robots: false,
        follow_unclaimed: false,
        follow_max_links: 0,
        claims,
    });
    let mut summary = ReplaySummary {
        files: files.len(),
        output: sink.describe(),
        ..ReplaySummary::default()
    };
    // Records are read on a blocking thread and parsed here one by one; the channel bounds
    // how many wait, so a large WARC costs a few pages of memory.
    let (tx, mut rx) = mpsc::channel::<PageRecord>(16);
    let reading = tokio::task::spawn_blocking(move || -> Result<()> {
        for file in &files {
            reader::each_page(file, |rec| {
                tx.blocking_send(rec)
                    .map_err(|_| anyhow::anyhow!("replay stopped"))
            })?;
        }
        Ok(())
    });
    let mut last = 0;
    while let Some(rec) = rx.recv().await {
        let date = rec.date.clone();
        let Some((lease, resp)) = page_of(&shared, rec) else {
            continue;
        };
        summary.pages += 1;
        if let Work::Page {
            mut items,
            plugin_runs,
            ..
        } = parse_page(&shared, &lease, resp, Vec::new()).await
        {
            super::outcome::tally(&mut summary.plugins, plugin_runs);
            for it in &mut items {
                it.fetched_at.clone_from(&date);
            }
            last = sink.write_page(&items)?;
        }
    }
    reading.await.context("the WARC reader stopped")??;
    while sink.durable()? < last {
        sink.changed().await;
    }
    sink.sync()?;
    summary.items = sink.items_written();
    summary.output_rejected = sink.rejected();
    Ok(summary)
}

/// The page a record holds, as the crawl's fetcher handed it over, and a lease that gives its
/// items the crawl's ids.
fn page_of(shared: &Shared, rec: PageRecord) -> Option<(Lease, Response)> {
    let url = url::Url::parse(&rec.url).ok()?;
    let key: [u8; 16] = hex::decode(&rec.key)
        .ok()
        .and_then(|k| k.try_into().ok())
        .unwrap_or_else(|| shared.normalize.fingerprint(&url));
    let mut record = UrlRecord::new(
        url.to_string(),
        url.host_str().unwrap_or_default().to_owned(),
        rec.depth,
        0,
        UrlKind::Page,
    );
    record.metadata = rec.metadata;
    record.referrer = rec.referrer;
    let encoding = detect_encoding(&rec.headers, &rec.body);
    let resp = Response {
        final_url: url,
        redirects: Vec::new(),
        status: rec.status,
        method: if rec.method.eq_ignore_ascii_case("POST") {
            Method::Post
        } else {
            Method::Get
        },
        headers: rec.headers,
        body: bytes::Bytes::from(rec.body),
        wire_bytes: 0,
        truncated: rec.truncated,
        encoding,
        elapsed: std::time::Duration::ZERO,
        http_version: match rec.http_version.as_str() {
            "HTTP/2" => "HTTP/2",
            "HTTP/1.0" => "HTTP/1.0",
            _ => "HTTP/1.1",
        },
        budget: Arc::new(BudgetHold::default()),
        file: None,
    };
    Some((Lease::detached(key, record), resp))
}
