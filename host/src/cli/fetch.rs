//! `sandcrawl fetch URL -o FILE`: saves one page through the crawler's own fetcher (its user
//! agent, robots.txt, redirects, decompression and charset detection), so a plugin's test
//! fixture is the page the crawl will see. The response head goes beside it in
//! `FILE.headers.json`, which `sandcrawl parse` reads back. It must not crawl further.

use super::say::say;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Args;
use sandcrawl::config::{CrawlConfig, parse_set};
use sandcrawl::fetch::{Disposition, Fetcher};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct FetchArgs {
    /// The page to save.
    pub url: String,
    /// Where to write the (decoded) body.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// TOML config file, for its [fetch] settings (user agent, headers, proxy, resolve).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Set any config key, as for `run` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Fetch even when robots.txt disallows it (only for sites you own).
    #[arg(long)]
    pub no_robots: bool,
}

/// What `FILE.headers.json` holds.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Sidecar {
    pub url: String,
    pub final_url: String,
    pub status: u16,
    pub encoding: String,
    pub headers: Vec<(String, String)>,
}

/// The sidecar file of a saved page.
pub fn sidecar_path(page: &Path) -> PathBuf {
    let mut name = page.as_os_str().to_owned();
    name.push(".headers.json");
    PathBuf::from(name)
}

pub async fn fetch(args: FetchArgs) -> Result<i32> {
    let mut overrides = Vec::new();
    for kv in &args.set {
        overrides.push(parse_set(kv)?);
    }
    let cfg = CrawlConfig::load(
        super::run::config_file(args.config.as_deref()).as_deref(),
        &overrides,
    )?;
    let url = url::Url::parse(args.url.trim())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            anyhow!(
                "{:?} is not an http(s) URL; give a full URL like https://example.com/page",
                args.url
            )
        })?;
    let fetcher = Fetcher::new(cfg.fetch.clone(), 1)?;
    if !args.no_robots && cfg.politeness.respect_robots {
        let robots = sandcrawl::robots::fetch(&fetcher, &url).await;
        if let Some(e) = robots.host_failure() {
            bail!("robots.txt of {url}: {e}");
        }
        if !robots.allowed(&url) {
            bail!(
                "robots.txt disallows {url} for this user agent; --no-robots fetches it anyway (only for sites you own)"
            );
        }
    }
    let resp = match Disposition::of(fetcher.fetch(&url, |_| async { Ok(()) }).await) {
        Disposition::Page(r) => r,
        Disposition::Retry { cause, .. } | Disposition::Fail { cause, .. } => {
            bail!("fetching {url}: {cause}")
        }
    };
    std::fs::write(&args.output, &resp.body)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let side = Sidecar {
        url: url.to_string(),
        final_url: resp.final_url.to_string(),
        status: resp.status,
        encoding: resp.encoding.to_owned(),
        headers: resp.headers_for_plugin(),
    };
    let side_path = sidecar_path(&args.output);
    std::fs::write(&side_path, serde_json::to_vec_pretty(&side)?)
        .with_context(|| format!("cannot write {}", side_path.display()))?;
    say!(
        "saved {} bytes of {} ({}, {}{}) to {} (headers in {})",
        resp.body.len(),
        resp.final_url,
        resp.status,
        resp.encoding,
        if resp.truncated {
            ", cut at fetch.max_body_bytes"
        } else {
            ""
        },
        args.output.display(),
        side_path.display()
    );
    Ok(0)
}
