//! Where a crawl starts: seed URLs from the config, a seeds file or the plugins' manifests,
//! checked before anything is written, and remembered in the state directory so a resumed
//! crawl keeps its scope. It must not queue anything (the scheduler does) or fetch (sitemaps
//! are `sitemaps.rs`).

use crate::config::CrawlConfig;
use crate::plugin::Plugin;
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
            "no seed URLs: pass them as arguments, in --seeds-file, or use plugins whose manifests name seeds"
        );
    }
    std::fs::write(&path, serde_json::to_vec(&all)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(all.iter().filter_map(|s| Url::parse(s).ok()).collect())
}
