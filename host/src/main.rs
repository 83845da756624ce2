//! The `sandcrawl` command line: parses flags, sets up logging and Ctrl+C, and hands off to
//! the library. Every failure ends here as one line on stderr and a non-zero exit.

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use sandcrawl::config::{CrawlConfig, default_cache_dir, parse_set};
use sandcrawl::escape::escape;
use sandcrawl::plugin::{Limits, PageInput, Runtime};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::sync::watch;

#[derive(Parser)]
#[command(
    name = "sandcrawl",
    version,
    about = "A web crawler whose parse logic runs in sandboxed WebAssembly plugins"
)]
struct Cli {
    /// Log filter, e.g. "info", "debug", "sandcrawl=debug" (or SANDCRAWL_LOG).
    #[arg(long, global = true, env = "SANDCRAWL_LOG", default_value = "info")]
    log_level: String,
    #[command(subcommand)]
    cmd: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Crawl: seeds → frontier → fetch → plugins → items. Re-running on the same --state resumes.
    Run(RunArgs),
    /// Serve the bundled demo site on 127.0.0.1 and crawl it with the given plugins.
    Demo(RunArgs),
    /// Serve the bundled demo site until Ctrl+C (to point your own crawls at).
    ServeDemo {
        #[arg(long, default_value = "127.0.0.1:8000")]
        addr: SocketAddr,
    },
    /// Inspect plugins.
    #[command(subcommand)]
    Plugins(PluginsCmd),
    /// Run one plugin on a saved page, offline, and print its items and links as JSON.
    Parse {
        /// The plugin .wasm file.
        #[arg(long)]
        plugin: PathBuf,
        /// The URL the page was served at (plugins resolve links against it).
        #[arg(long)]
        url: String,
        /// The saved page.
        page: PathBuf,
        /// HTTP status to report to the plugin.
        #[arg(long, default_value_t = 200)]
        status: u16,
        /// Content-Type to report to the plugin.
        #[arg(long, default_value = "text/html; charset=utf-8")]
        content_type: String,
        /// Plugin configuration as JSON (what `config()` returns).
        #[arg(long)]
        config_json: Option<String>,
    },
}

#[derive(Subcommand)]
enum PluginsCmd {
    /// List the plugins in a folder: name, version, WIT version, sha256, URL patterns.
    List {
        dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate one plugin file; exits non-zero with the reason if it cannot be loaded.
    Check { file: PathBuf },
}

#[derive(Args, Default)]
struct RunArgs {
    /// Seed URLs.
    seeds: Vec<String>,
    /// TOML config file; flags override its keys.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Plugin files or folders of *.wasm (repeatable).
    #[arg(long = "plugins")]
    plugin_path: Vec<PathBuf>,
    /// File with one seed URL per line.
    #[arg(long)]
    seeds_file: Option<PathBuf>,
    /// Crawl state directory (resume by running again with the same one).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Items file ("-" for stdout). Default: STATE/items.jsonl.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Output format: jsonl or csv.
    #[arg(long)]
    format: Option<String>,
    /// Folder for downloaded files. Default: STATE/files.
    #[arg(long)]
    files_dir: Option<PathBuf>,
    #[arg(long)]
    max_depth: Option<u32>,
    #[arg(long)]
    max_pages: Option<u64>,
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
    /// Minimum ms between requests to one host.
    #[arg(long)]
    delay_ms: Option<u64>,
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
    /// Set any config key: --set politeness.adaptive=true (repeatable; TOML values).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl RunArgs {
    fn overrides(&self) -> Result<Vec<(String, toml::Value)>> {
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
        if let Some(p) = &self.seeds_file {
            o.push(("seeds_file".into(), s(p)));
        }
        if let Some(p) = &self.state {
            o.push(("state".into(), s(p)));
        }
        if let Some(p) = &self.out {
            o.push(("output".into(), s(p)));
        }
        if let Some(f) = &self.format {
            o.push(("format".into(), V::String(f.clone())));
        }
        if let Some(p) = &self.files_dir {
            o.push(("files_dir".into(), s(p)));
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
        if self.no_progress {
            o.push(("progress".into(), V::Boolean(false)));
        }
        Ok(o)
    }
}

fn main() {
    let cli = Cli::parse();
    // The store's own housekeeping (memtable flushes, compactions) logs at info; that is
    // noise in a crawl's log unless asked for by name (`--log-level info,fjall=debug`).
    let mut level = cli.log_level.clone();
    for store in ["fjall", "lsm_tree"] {
        if !level.contains(store) {
            level.push_str(&format!(",{store}=warn"));
        }
    }
    let filter = match tracing_subscriber::EnvFilter::try_new(&level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "error: --log-level {:?} is not a valid log filter ({e}); use e.g. info, debug or sandcrawl=debug",
                cli.log_level
            );
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .compact()
        .init();
    let result = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(dispatch(cli.cmd)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            std::process::exit(1);
        }
    }
}

async fn dispatch(cmd: Command) -> Result<i32> {
    match cmd {
        Command::Run(args) => {
            let cfg = CrawlConfig::load(args.config.as_deref(), &args.overrides()?)?;
            crawl(cfg).await
        }
        Command::Demo(run) => demo(run).await,
        Command::ServeDemo { addr } => {
            let site = sandcrawl::demo::start(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            eprintln!("demo site at {} (Ctrl+C to stop)", site.url());
            tokio::signal::ctrl_c().await.ok();
            Ok(0)
        }
        Command::Plugins(PluginsCmd::List { dir, json }) => plugins_list(&dir, json).await,
        Command::Plugins(PluginsCmd::Check { file }) => {
            let rt = Runtime::new(Limits::default(), default_cache_dir())?;
            let p = rt.load_file(&file).await?;
            println!(
                "ok: {} {} (WIT {}, sha256 {}) handles {}",
                p.info.name,
                p.info.version,
                p.info.wit_version,
                p.info.sha256,
                escape(&p.info.patterns.join(" "))
            );
            Ok(0)
        }
        Command::Parse {
            plugin,
            url,
            page,
            status,
            content_type,
            config_json,
        } => {
            parse_offline(
                &plugin,
                &url,
                &page,
                status,
                &content_type,
                config_json.as_deref(),
            )
            .await
        }
    }
}

async fn plugins_list(dir: &Path, json: bool) -> Result<i32> {
    let rt = Runtime::new(Limits::default(), default_cache_dir())?;
    let (plugins, errors) = rt.load_dir(dir).await?;
    for e in &errors {
        eprintln!("error: {e}");
    }
    if json {
        let infos: Vec<_> = plugins.iter().map(|p| &p.info).collect();
        println!("{}", serde_json::to_string_pretty(&infos)?);
    } else {
        println!(
            "{:<16} {:<10} {:<6} {:<16} PATTERNS",
            "NAME", "VERSION", "WIT", "SHA256"
        );
        for p in &plugins {
            let i = &p.info;
            println!(
                "{:<16} {:<10} {:<6} {:<16} {}",
                i.name,
                escape(&i.version),
                i.wit_version,
                i.sha256.get(..16).unwrap_or(&i.sha256),
                escape(&i.patterns.join(" "))
            );
        }
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}

async fn parse_offline(
    plugin: &Path,
    url: &str,
    page: &Path,
    status: u16,
    content_type: &str,
    config_json: Option<&str>,
) -> Result<i32> {
    let parsed = url::Url::parse(url).map_err(|e| anyhow!("--url {url:?} is not a URL: {e}"))?;
    let rt = Runtime::new(Limits::default(), default_cache_dir())?;
    let mut p = rt.load_file(plugin).await?;
    if let Some(c) = config_json {
        let v: serde_json::Value =
            serde_json::from_str(c).map_err(|e| anyhow!("--config-json is not valid JSON: {e}"))?;
        p.set_config(&v);
    }
    let body =
        std::fs::read(page).with_context(|| format!("cannot read page {}", page.display()))?;
    let headers = vec![("content-type".to_owned(), content_type.to_owned())];
    let encoding = sandcrawl::fetch::detect_encoding(&headers, &body).to_owned();
    let input = PageInput {
        url: parsed.to_string(),
        status,
        headers,
        body: body.into(),
        encoding,
        ..PageInput::default()
    };
    match p.parse(&input).await {
        Ok(out) => {
            // Items are printed as the plugin wrote them (never re-encoded through a value
            // tree), so the output is about the size of what the plugin returned.
            #[derive(serde::Serialize)]
            struct Shown<'a> {
                kind: &'a str,
                fields: &'a serde_json::value::RawValue,
            }
            #[derive(serde::Serialize)]
            struct Doc<'a> {
                plugin: serde_json::Value,
                url: &'a str,
                items: Vec<Shown<'a>>,
                links: &'a [sandcrawl::plugin::LinkOut],
            }
            let doc = Doc {
                plugin: serde_json::json!({ "name": p.info.name, "version": p.info.version, "sha256": p.info.sha256 }),
                url: parsed.as_str(),
                items: out
                    .items
                    .iter()
                    .map(|i| Shown {
                        kind: &i.kind,
                        fields: &i.json,
                    })
                    .collect(),
                links: &out.links,
            };
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            serde_json::to_writer_pretty(&mut w, &doc)?;
            std::io::Write::write_all(&mut w, b"\n")?;
            std::io::Write::flush(&mut w)?;
            Ok(0)
        }
        Err(e) => bail!("plugin {} on {}: {e}", p.info.name, page.display()),
    }
}

/// Loads the crawl's plugins; a file that cannot be loaded is one line in the log and in
/// the returned list (which goes into summary.json), and the others still run.
async fn load_plugins(cfg: &CrawlConfig) -> Result<(Vec<sandcrawl::plugin::Plugin>, Vec<String>)> {
    if cfg.plugin_paths.is_empty() {
        tracing::warn!("no plugins given (--plugins): only the built-in link follower runs");
        return Ok((Vec::new(), Vec::new()));
    }
    let rt = Runtime::new(cfg.limits.clone(), cfg.cache_path())?;
    let (mut plugins, errors) = rt.load_paths(&cfg.plugin_paths).await?;
    for e in &errors {
        tracing::error!("plugin not loaded: {e}");
    }
    for p in &mut plugins {
        if let Some(s) = cfg.plugins.get(&p.info.name) {
            if let Some(c) = &s.config {
                let json = serde_json::to_value(c)
                    .map_err(|e| anyhow!("plugins.{}.config: {e}", p.info.name))?;
                p.set_config(&json);
            }
            if let Some(pats) = &s.patterns {
                p.set_patterns(pats.clone())
                    .map_err(|e| anyhow!("plugins.{}.patterns: {e}", p.info.name))?;
            }
        }
        tracing::info!(plugin = %p.info.name, version = %escape(&p.info.version), wit = %p.info.wit_version, "loaded {}", p.info.path.display());
    }
    for name in cfg.plugins.keys() {
        if !plugins.iter().any(|p| &p.info.name == name) {
            tracing::warn!("config has [plugins.{name}] but no plugin of that name is loaded");
        }
    }
    Ok((plugins, errors))
}

/// Exit code of a crawl whose every fetch failed (nothing was fetched at all).
const EXIT_ALL_FAILED: i32 = 2;
/// Exit code of a crawl that ran to its end but could not load every plugin it was given.
const EXIT_PLUGINS_REFUSED: i32 = 3;
/// Exit code of a crawl stopped by Ctrl+C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: i32 = 130;

async fn crawl(cfg: CrawlConfig) -> Result<i32> {
    let (plugins, refused) = load_plugins(&cfg).await?;
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = stop_tx.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "second Ctrl+C: exiting now; the state stays consistent and the next run resumes"
                );
                std::process::exit(130);
            }
        }
    });
    // The crawl loop runs as a task on the runtime's workers rather than on this thread:
    // handing each finished page to a separate thread cost a futex wake-up per page and a
    // glibc malloc arena of its own (BENCHMARKS.md §1).
    let summary = tokio::spawn(sandcrawl::engine::run(cfg, plugins, refused, stop_rx))
        .await
        .map_err(|e| anyhow::anyhow!("the crawl task failed: {e}"))??;
    print_summary(&summary);
    if summary.stopped_early {
        return Ok(EXIT_INTERRUPTED);
    }
    let failed: u64 = summary.errors.values().sum();
    if summary.pages + summary.downloads == 0 && failed > 0 {
        let kinds: Vec<String> = summary
            .errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        eprintln!(
            "error: every fetch failed ({}); is the site reachable? the last cause of each kind is in {}/summary.json (error_samples)",
            kinds.join(", "),
            summary.state
        );
        return Ok(EXIT_ALL_FAILED);
    }
    if !summary.plugins_refused.is_empty() {
        eprintln!(
            "error: {} plugin file(s) could not be loaded (see plugins_refused in summary.json); the crawl ran without them",
            summary.plugins_refused.len()
        );
        return Ok(EXIT_PLUGINS_REFUSED);
    }
    Ok(0)
}

async fn demo(mut run: RunArgs) -> Result<i32> {
    let site = sandcrawl::demo::start("127.0.0.1:0".parse()?)
        .await
        .context("cannot start the demo site on 127.0.0.1")?;
    eprintln!("demo site serving at {}", site.url());
    if run.seeds.is_empty() {
        run.seeds.push(site.url());
    }
    if run.state.is_none() {
        run.state = Some(PathBuf::from("demo-crawl"));
    }
    let state = run.state.clone().unwrap_or_default();
    // The demo site gets a new port every run, so an old demo state can't be resumed and is
    // cleared. Only a state whose seeds are all the loopback demo site qualifies; anything
    // else (a real crawl's state, a folder of files) is refused, never deleted.
    let is_empty = std::fs::read_dir(&state)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true);
    if !is_empty {
        let seeds: Vec<String> = std::fs::read(state.join("seeds.json"))
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .unwrap_or_default();
        let demo_state =
            !seeds.is_empty() && seeds.iter().all(|s| s.starts_with("http://127.0.0.1:"));
        if !demo_state {
            bail!(
                "{} exists and is not a demo state; pick another --state for the demo",
                state.display()
            );
        }
        std::fs::remove_dir_all(&state)
            .with_context(|| format!("cannot clear the previous demo state {}", state.display()))?;
    }
    let cfg = CrawlConfig::load(run.config.as_deref(), &run.overrides()?)?;
    let code = crawl(cfg).await?;
    drop(site);
    Ok(code)
}

fn print_summary(s: &sandcrawl::engine::Summary) {
    let errors: u64 = s.errors.values().sum();
    eprintln!();
    eprintln!(
        "{} in {:.1}s: {} pages ({} requests with redirects and robots.txt), {} downloads ({} new files), {:.1} MB, {} items written",
        if s.stopped_early { "stopped" } else { "done" },
        s.elapsed_s,
        s.pages,
        s.requests,
        s.downloads,
        s.files_new,
        s.bytes as f64 / 1e6,
        s.items
    );
    let status: Vec<String> = s.status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    eprintln!(
        "  status codes: {}",
        if status.is_empty() {
            "-".into()
        } else {
            status.join(", ")
        }
    );
    if errors > 0 {
        let e: Vec<String> = s.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        eprintln!("  errors: {}", e.join(", "));
    }
    if !s.skipped.is_empty() {
        let e: Vec<String> = s.skipped.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        eprintln!("  skipped: {}", e.join(", "));
    }
    for (name, p) in &s.plugins {
        let errs: Vec<String> = p.errors.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        if p.calls == 0 {
            eprintln!(
                "  plugin {name}: claimed no page (its URL patterns matched none of the pages fetched)"
            );
            continue;
        }
        eprintln!(
            "  plugin {name}: {} pages, {} items, {} links, {:.1} ms total{}",
            p.calls,
            p.items,
            p.links,
            p.time_ms,
            if errs.is_empty() {
                String::new()
            } else {
                format!(", errors {}", errs.join(", "))
            }
        );
    }
    if !s.hosts_given_up.is_empty() {
        for (host, why) in &s.hosts_given_up {
            eprintln!("  gave up on {host}: {why}");
        }
    }
    if s.truncated_bodies > 0 {
        eprintln!(
            "  {} bodies cut at fetch.max_body_bytes (parsed as truncated)",
            s.truncated_bodies
        );
    }
    if s.queued_left > 0 || s.stopped_early {
        eprintln!(
            "  {} URLs still to do ({} of them were in flight): run the same command again to resume",
            s.queued_left, s.in_flight_left
        );
    }
    eprintln!("  items: {}", s.output);
    eprintln!("  files: {}", s.files_dir);
    eprintln!("  state: {} (summary.json)", s.state);
}
