//! Where a crawl starts: seed URLs from the config, a seeds file or the plugins' manifests
//! and start requests, checked before anything is written, and remembered in the state directory so a resumed
//! crawl keeps its scope. It must not queue anything (the scheduler does) or fetch (sitemaps
//! are `sitemaps.rs`).

use crate::config::CrawlConfig;
use crate::frontier::{NewUrl, UrlKind};
use crate::normalize::host_key;
use crate::plugin::{LinkKind, Plugin};
use anyhow::{Context as _, Result, anyhow, bail};
use url::Url;

/// Seeds from the config, the seeds file, or (when neither names any) the plugins' manifests.
pub fn resolve_seeds(cfg: &CrawlConfig, plugins: &[Plugin]) -> Result<Vec<Url>> {
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
        out.push(super::links::fetch_form(&parsed));
    }
    Ok(out)
}

/// Whether the config names seeds itself (then the plugins' manifest seeds and start
/// requests are not used).
pub fn configured(cfg: &CrawlConfig) -> bool {
    !cfg.seeds.is_empty() || cfg.seeds_file.is_some()
}

/// The plugins' start requests (WIT 0.2), when the config names no seeds: each plugin is
/// asked once, with its config set, and its requests are checked as a page's would be. A
/// plugin whose call fails stops the crawl before anything is written, naming the plugin.
pub async fn start_requests(cfg: &CrawlConfig, plugins: &[Plugin]) -> Result<Vec<NewUrl>> {
    let mut out = Vec::new();
    if configured(cfg) {
        return Ok(out);
    }
    for p in plugins {
        let enabled = cfg
            .plugins
            .get(&p.info.name)
            .and_then(|s| s.enabled)
            .unwrap_or(true);
        if !enabled {
            continue;
        }
        let requests = p.start_requests().await.map_err(|e| {
            anyhow!(
                "plugin {}: start-requests failed: {e}; fix the plugin, or name seeds to start from instead",
                p.info.name
            )
        })?;
        for r in requests {
            let url = Url::parse(r.url.trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                .ok_or_else(|| {
                    anyhow!(
                        "plugin {}: start request {:?} is not an absolute http(s) URL; fix the plugin",
                        p.info.name,
                        crate::escape::escape(&r.url)
                    )
                })?;
            let fp = cfg.normalize.request_fingerprint(&url, r.request.as_ref());
            let kind = match r.kind {
                LinkKind::Follow => UrlKind::Page,
                LinkKind::Download => UrlKind::Download,
            };
            let mut n = super::links::queued(&url, fp, 0, kind);
            n.record.host = host_key(&url);
            n.record.priority = r.priority;
            n.record.metadata = r.metadata;
            n.record.proposer = Some(p.info.name.clone());
            n.record.request = r.request;
            out.push(n);
        }
    }
    Ok(out)
}

/// The seeds define the default scope, so a resumed crawl without seeds must use the same.
pub fn remember_seeds(cfg: &CrawlConfig, seeds: &[Url]) -> Result<Vec<Url>> {
    let path = cfg.state.join("seeds.json");
    let mut all: Vec<String> = match std::fs::read(&path) {
        Ok(raw) => {
            serde_json::from_slice(&raw).with_context(|| format!("corrupt {}", path.display()))?
        }
        Err(_) => Vec::new(),
    };
    let mut have: std::collections::HashSet<String> = all.iter().cloned().collect();
    for s in seeds {
        if have.insert(s.to_string()) {
            all.push(s.to_string());
        }
    }
    if all.is_empty() {
        bail!(
            "no seed URLs: pass them as arguments, in --seeds-file, or use plugins whose manifests name seeds (or whose start-requests give some)"
        );
    }
    std::fs::write(&path, serde_json::to_vec(&all)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(all.iter().filter_map(|s| Url::parse(s).ok()).collect())
}
