//! `sandcrawl run`: flags into a config, plugins loaded, the crawl run with Ctrl+C wired to a
//! graceful stop, the summary printed, and the exit code chosen (see README, "Exit codes").

use super::say::say;

use anyhow::{Result, anyhow};
use clap::Args;
use sandcrawl::config::{CrawlConfig, parse_set};
use std::path::{Path, PathBuf};
use tokio::sync::watch;

#[derive(Args, Default)]
pub struct RunArgs {
    /// Seed URLs.
    pub(super) seeds: Vec<String>,
    /// TOML config file; flags override its keys.
    #[arg(long)]
    pub(super) config: Option<PathBuf>,
    /// Plugin files or folders of *.wasm (repeatable).
    #[arg(long = "plugins")]
    plugin_path: Vec<PathBuf>,
    /// File with one seed URL per line.
    #[arg(long)]
    seeds_file: Option<PathBuf>,
    /// Also seed from the seeds' sitemaps (robots.txt `Sitemap:` lines, else /sitemap.xml).
    #[arg(long)]
    sitemaps: bool,
    /// With --sitemaps: only entries whose lastmod is on or after DATE (YYYY-MM-DD).
    #[arg(long, value_name = "DATE")]
    since: Option<String>,
    /// Crawl state directory (resume by running again with the same one).
    #[arg(long)]
    pub(super) state: Option<PathBuf>,
    /// Where items go (repeatable): a file ("-" for stdout), postgres://USER@HOST:PORT/DB or
    /// mysql://USER@HOST:PORT/DB. Default: STATE/items.jsonl.
    #[arg(long)]
    out: Vec<String>,
    /// Output format: jsonl or csv.
    #[arg(long)]
    format: Option<String>,
    /// Folder for downloaded files. Default: STATE/files.
    #[arg(long)]
    files_dir: Option<PathBuf>,
    /// Keep every fetched page and download in WARC files in DIR (for `sandcrawl replay`).
    #[arg(long, value_name = "DIR")]
    warc: Option<PathBuf>,
    /// Link hops from the seeds (seeds are depth 0). Default 20.
    #[arg(long)]
    max_depth: Option<u32>,
    /// Pages fetched in the whole crawl, downloads not counted. Default 1,000,000.
    #[arg(long)]
    max_pages: Option<u64>,
    /// Pages fetched from one host. Default 100,000.
    #[arg(long)]
    max_pages_per_host: Option<u64>,
    /// Allowed domain (repeatable; subdomains included). Default: the seeds' hosts.
    #[arg(long = "allow-domain")]
    allow_domain: Vec<String>,
    /// URL regex that must match (repeatable).
    #[arg(long)]
    allow: Vec<String>,
    /// URL regex that excludes (repeatable).
    #[arg(long)]
    deny: Vec<String>,
    /// Requests in flight overall.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Requests in flight per host.
    #[arg(long)]
    per_host: Option<usize>,
    /// Minimum ms from the end of one request to a host to the start of the next (a host with
    /// a delay gets one request at a time).
    #[arg(long)]
    delay_ms: Option<u64>,
    /// User-Agent header of every request, robots.txt groups are matched by its product token.
    #[arg(long)]
    user_agent: Option<String>,
    /// Extra request header "Name: value" (repeatable).
    #[arg(long)]
    header: Vec<String>,
    /// Ignore robots.txt (only for sites you own).
    #[arg(long)]
    no_robots: bool,
    /// Do not follow links on pages no plugin claims.
    #[arg(long)]
    no_follow: bool,
    /// No progress line.
    #[arg(long)]
    no_progress: bool,
    /// Load only the plugin builds pinned in the plugins.lock beside them.
    #[arg(long)]
    locked: bool,
    /// Hot reload: swap in a changed or added .wasm in the plugin paths for new pages, and
    /// stop routing to a removed one.
    #[arg(long)]
    watch: bool,
    /// Serve a live status page, Prometheus /metrics and the control API (/api/status,
    /// pause, resume, stop, seeds) on ADDR, e.g. 127.0.0.1:9187.
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Bearer token every request to --listen must carry; required unless ADDR is loopback.
    /// Prefer the environment variable: a flag shows in `ps`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "SANDCRAWL_LISTEN_TOKEN",
        hide_env_values = true
    )]
    listen_token: Option<String>,
    /// Share the crawl with other sandcrawl processes through Redis: redis://[:PASSWORD@]HOST:PORT/DB.
    /// Every worker runs the same command; the first one seeds the crawl, later ones join.
    #[arg(
        long,
        value_name = "URL",
        env = "SANDCRAWL_FRONTIER",
        hide_env_values = true
    )]
    frontier: Option<String>,
    /// The shared crawl's name (with --frontier).
    #[arg(long, value_name = "NAME")]
    crawl_id: Option<String>,
    /// This process's name in the shared crawl (default: host name + a hash of --state).
    #[arg(long, value_name = "NAME")]
    worker: Option<String>,
    /// Set any config key: --set politeness.adaptive=true (repeatable; TOML values).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl RunArgs {
    pub fn overrides(&self) -> Result<Vec<(String, toml::Value)>> {
        use toml::Value as V;
        let mut o: Vec<(String, V)> = Vec::new();
        let s = |p: &Path| V::String(p.display().to_string());
        let list = |v: &[String]| V::Array(v.iter().cloned().map(V::String).collect());
        for kv in &self.set {
            o.push(parse_set(kv)?);
        }
        if !self.seeds.is_empty() {
            o.push(("seeds".into(), list(&self.seeds)));
        }
        if !self.plugin_path.is_empty() {
            o.push((
                "plugin_paths".into(),
                V::Array(self.plugin_path.iter().map(|p| s(p)).collect()),
            ));
        }
        if self.sitemaps {
            o.push(("seeds_from_sitemaps".into(), V::Boolean(true)));
        }
        if let Some(d) = &self.since {
            o.push(("sitemaps_since".into(), V::String(d.clone())));
        }
        if let Some(p) = &self.seeds_file {
            o.push(("seeds_file".into(), s(p)));
        }
        if let Some(p) = &self.state {
            o.push(("state".into(), s(p)));
        }
        if !self.out.is_empty() {
            o.push(("output.to".into(), list(&self.out)));
        }
        if let Some(f) = &self.format {
            o.push(("format".into(), V::String(f.clone())));
        }
        if let Some(p) = &self.files_dir {
            o.push(("files_dir".into(), s(p)));
        }
        if let Some(p) = &self.warc {
            o.push(("warc.dir".into(), s(p)));
        }
        let int = |n: u64| V::Integer(n.min(i64::MAX as u64) as i64);
        if let Some(n) = self.max_depth {
            o.push(("scope.max_depth".into(), int(n.into())));
        }
        if let Some(n) = self.max_pages {
            o.push(("scope.max_pages".into(), int(n)));
        }
        if let Some(n) = self.max_pages_per_host {
            o.push(("scope.max_pages_per_host".into(), int(n)));
        }
        if !self.allow_domain.is_empty() {
            o.push(("scope.allowed_domains".into(), list(&self.allow_domain)));
        }
        if !self.allow.is_empty() {
            o.push(("scope.allow".into(), list(&self.allow)));
        }
        if !self.deny.is_empty() {
            o.push(("scope.deny".into(), list(&self.deny)));
        }
        if let Some(n) = self.concurrency {
            o.push(("politeness.concurrency".into(), int(n as u64)));
        }
        if let Some(n) = self.per_host {
            o.push(("politeness.per_host".into(), int(n as u64)));
        }
        if let Some(n) = self.delay_ms {
            o.push(("politeness.delay_ms".into(), int(n)));
        }
        if let Some(ua) = &self.user_agent {
            o.push(("fetch.user_agent".into(), V::String(ua.clone())));
        }
        for h in &self.header {
            let (k, v) = h
                .split_once(':')
                .ok_or_else(|| anyhow!("--header {h:?}: expected \"Name: value\""))?;
            o.push((
                format!("fetch.headers.{}", k.trim()),
                V::String(v.trim().to_owned()),
            ));
        }
        if self.no_robots {
            o.push(("politeness.respect_robots".into(), V::Boolean(false)));
        }
        if self.no_follow {
            o.push(("follow_unclaimed".into(), V::Boolean(false)));
        }
        if self.locked {
            o.push(("locked".into(), V::Boolean(true)));
        }
        if self.watch {
            o.push(("watch".into(), V::Boolean(true)));
        }
        if let Some(a) = &self.listen {
            o.push(("listen".into(), V::String(a.clone())));
        }
        if let Some(t) = &self.listen_token {
            o.push(("listen_token".into(), V::String(t.clone())));
        }
        if self.no_progress {
            o.push(("progress".into(), V::Boolean(false)));
        }
        for (key, v) in [
            ("frontier", &self.frontier),
            ("crawl_id", &self.crawl_id),
            ("worker", &self.worker),
        ] {
            if let Some(v) = v {
                o.push((key.into(), V::String(v.clone())));
            }
        }
        Ok(o)
    }
}

pub async fn run(args: RunArgs) -> Result<i32> {
    let cfg = CrawlConfig::load(
        config_file(args.config.as_deref()).as_deref(),
        &args.overrides()?,
    )?;
    crawl(cfg).await
}

/// `--config`, or the file found in the usual places (`config::discover`), logged so the
/// user knows which settings apply.
pub(super) fn config_file(explicit: Option<&Path>) -> Option<PathBuf> {
    let found = sandcrawl::config::discover(explicit);
    match (&found, explicit) {
        (Some(p), None) => tracing::info!("using config {}", p.display()),
        (None, None) => tracing::debug!(
            "no config file (./sandcrawl.toml or $XDG_CONFIG_HOME/sandcrawl/config.toml): built-in defaults"
        ),
        _ => {}
    }
    found
}

/// Exit code of a crawl whose every fetch failed (nothing was fetched at all).
const EXIT_ALL_FAILED: i32 = 2;
/// Exit code of a crawl that ran to its end but could not load every plugin it was given.
const EXIT_PLUGINS_REFUSED: i32 = 3;
/// Exit code of a crawl stopped by Ctrl+C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: i32 = 130;

pub async fn crawl(mut cfg: CrawlConfig) -> Result<i32> {
    if super::say::quiet() {
        cfg.progress = false;
    }
    let plugins = sandcrawl::crawl::roster::load(&cfg).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                say!(
                    "second Ctrl+C: exiting now; the state stays consistent and the next run resumes"
                );
                std::process::exit(130);
            }
        }
    });
    // The crawl loop runs as a task on the runtime's workers rather than on this thread:
    // handing each finished page to a separate thread cost a futex wake-up per page and a
    // glibc malloc arena of its own (BENCHMARKS.md §1).
    let summary = tokio::spawn(sandcrawl::crawl::run(cfg, plugins, stop_rx))
        .await
        .map_err(|e| anyhow::anyhow!("the crawl task failed: {e}"))??;
    if let Some(shared) = summary.shared.as_ref().filter(|s| s.finished_before) {
        say!(
            "crawl {} on {} is finished ({} URLs done, {} failed); nothing to do. `sandcrawl status` shows it; a new crawl needs another --crawl-id",
            shared.crawl_id,
            shared.frontier,
            summary.done_before,
            summary.failed_before
        );
        return Ok(0);
    }
    super::say::report(&summary);
    if summary.stopped_early {
        return Ok(EXIT_INTERRUPTED);
    }
    if summary.all_failed() {
        let kinds: Vec<String> = summary
            .errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        say!(
            "error: every fetch failed ({}); is the site reachable? the last cause of each kind is in {}/summary.json (error_samples)",
            kinds.join(", "),
            summary.state
        );
        return Ok(EXIT_ALL_FAILED);
    }
    if !summary.plugins_refused.is_empty() {
        say!(
            "error: {} plugin file(s) could not be loaded (see plugins_refused in summary.json); the crawl ran without them",
            summary.plugins_refused.len()
        );
        return Ok(EXIT_PLUGINS_REFUSED);
    }
    Ok(0)
}
