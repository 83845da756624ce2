//! The crawl configuration: one TOML file, overridable key by key from the command line.
//!
//! It owns the schema (every section's defaults live with the module that uses them) and
//! the merge order: defaults < `--config FILE` < `--set KEY=VALUE` < dedicated flags. It
//! turns every bad value into one line naming the key and the fix. It must not act on the
//! configuration.

use crate::fetch::FetchConfig;
use crate::normalize::NormalizeConfig;
use crate::plugin::Limits;
use crate::politeness::PolitenessConfig;
use crate::sink::Format;
use anyhow::{Result, anyhow, bail};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CrawlConfig {
    /// Seed URLs. When empty, the plugins' manifest seeds are used.
    pub seeds: Vec<String>,
    /// A file with one seed URL per line (`#` comments allowed).
    pub seeds_file: Option<PathBuf>,
    /// Plugin files or folders of `*.wasm`.
    pub plugin_paths: Vec<PathBuf>,
    /// Also seed from the seeds' sitemaps: the `Sitemap:` lines of robots.txt, or
    /// `/sitemap.xml` when it names none.
    pub seeds_from_sitemaps: bool,
    /// Only sitemap entries whose `lastmod` is on or after this date (`YYYY-MM-DD`); entries
    /// without `lastmod` are kept.
    pub sitemaps_since: Option<String>,
    /// Crawl state (frontier, dedup, resume). Running again on it resumes.
    pub state: PathBuf,
    /// Where items go (`output = "…"` or `[output] to = [...]`): files, "-" for stdout (not
    /// resumable), `postgres://…`, `mysql://…`. Default: STATE/items.jsonl (or .csv).
    pub output: OutputConfig,
    /// The format of file outputs: jsonl or csv.
    pub format: Format,
    /// Where `download` links are saved. Default: STATE/files.
    pub files_dir: Option<PathBuf>,
    /// Downloads' own bounds (`[files]`).
    pub files: crate::fetch::DownloadConfig,
    /// Keep every committed page and download in WARC files (`[warc]`, `--warc DIR`).
    pub warc: crate::warc::WarcConfig,
    /// Follow `<a href>` links on pages no plugin claims.
    pub follow_unclaimed: bool,
    /// Links the built-in follower queues from one page; the rest are counted as skipped.
    pub follow_max_links: usize,
    /// Progress line on a terminal (plain periodic log lines otherwise).
    pub progress: bool,
    /// Seconds between plain progress log lines when not on a terminal.
    pub progress_interval_s: u64,
    /// Seconds between durability checkpoints (fsync of items, flush of the frontier).
    pub checkpoint_interval_s: u64,
    /// Consecutive crashes (traps, timeouts, memory) after which a plugin is disabled for the
    /// rest of the crawl; 0: never.
    pub plugin_max_failures: u32,
    /// Load only the plugin builds pinned in `plugins.lock` beside them (`--locked`).
    pub locked: bool,
    /// Hot reload (`--watch`): a changed, added or removed `.wasm` in the plugin paths is
    /// swapped in (or out) for the pages routed after it.
    pub watch: bool,
    /// Where compiled plugins are cached. Default: $XDG_CACHE_HOME/sandcrawl or ~/.cache/sandcrawl.
    pub cache_dir: Option<PathBuf>,
    /// Serve the status page, `/metrics` and the control API on this address (`--listen`).
    pub listen: Option<String>,
    /// Bearer token every request to `listen` must carry; required off loopback.
    #[serde(skip_serializing)]
    pub listen_token: Option<String>,
    /// A shared frontier on Redis (`--frontier redis://HOST:PORT/DB`): several processes on
    /// several machines crawl one `crawl_id`. Unset: the embedded store in `state`. Not
    /// serialized: it may carry a password.
    #[serde(skip_serializing)]
    pub frontier: Option<String>,
    /// The shared crawl's name in Redis (`--crawl-id`); required with `frontier`.
    pub crawl_id: Option<String>,
    /// This process's name in the shared crawl (`--worker`). Default: the machine's host name
    /// and a hash of the state directory, so a restarted worker resumes its own output.
    pub worker: Option<String>,
    /// Seconds a lease on a shared frontier lasts without a heartbeat: a killed worker's URLs
    /// go back to their queues after this.
    pub lease_ttl_s: u64,
    /// Seconds a worker waits for an unreachable Redis (restarting) before the crawl stops.
    pub redis_wait_s: u64,
    pub scope: ScopeConfig,
    pub normalize: NormalizeConfig,
    pub politeness: PolitenessConfig,
    pub fetch: FetchConfig,
    pub limits: Limits,
    /// Per-host politeness, by host glob: `[hosts."*.example.com"] per_host = 2`.
    pub hosts: BTreeMap<String, crate::politeness::HostSettings>,
    /// Per-plugin settings, by manifest name: `[plugins.NAME]`.
    pub plugins: BTreeMap<String, PluginSettings>,
}

impl Default for CrawlConfig {
    fn default() -> Self {
        CrawlConfig {
            seeds: Vec::new(),
            seeds_file: None,
            plugin_paths: Vec::new(),
            seeds_from_sitemaps: false,
            sitemaps_since: None,
            state: PathBuf::from("sandcrawl-state"),
            output: OutputConfig::default(),
            format: Format::Jsonl,
            files_dir: None,
            files: crate::fetch::DownloadConfig::default(),
            warc: crate::warc::WarcConfig::default(),
            follow_unclaimed: true,
            follow_max_links: 10_000,
            progress: true,
            progress_interval_s: 10,
            checkpoint_interval_s: 5,
            plugin_max_failures: 20,
            locked: false,
            watch: false,
            cache_dir: None,
            listen: None,
            listen_token: None,
            frontier: None,
            crawl_id: None,
            worker: None,
            lease_ttl_s: 60,
            redis_wait_s: 300,
            scope: ScopeConfig::default(),
            normalize: NormalizeConfig::default(),
            politeness: PolitenessConfig::default(),
            fetch: FetchConfig::default(),
            limits: Limits::default(),
            hosts: BTreeMap::new(),
            plugins: BTreeMap::new(),
        }
    }
}

/// `[scope]`. Every bound has a default (a crawl with no settings still stops); set one to
/// `"unlimited"` to lift it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScopeConfig {
    /// Domains the crawl may visit (subdomains included), on ports 80 and 443, or on the port
    /// given as "example.com:8080". Empty: the seeds' origins (scheme, host, port), where a
    /// seed on a default port also admits the other scheme's default port.
    pub allowed_domains: Vec<String>,
    /// Further origins, e.g. "http://127.0.0.1:8080".
    pub allowed_origins: Vec<String>,
    /// Further ports admitted on every allowed domain.
    pub allowed_ports: Vec<u16>,
    /// Regexes; when any is given, a URL must match one.
    pub allow: Vec<String>,
    /// Regexes; a URL matching any is never fetched.
    pub deny: Vec<String>,
    /// Link hops from the seeds (seeds are depth 0).
    #[serde(with = "bound")]
    pub max_depth: Option<u32>,
    /// Pages fetched in the whole crawl (downloads not counted).
    #[serde(with = "bound")]
    pub max_pages: Option<u64>,
    #[serde(with = "bound")]
    pub max_pages_per_host: Option<u64>,
    /// Path segments a URL may have (trap heuristic).
    #[serde(with = "bound")]
    pub max_path_segments: Option<u32>,
    /// Times one path segment may occur in a URL's path (`/a/b/a/b/a/b` traps).
    #[serde(with = "bound")]
    pub max_segment_repeats: Option<u32>,
    /// Distinct query strings queued per host and path (session ids, calendars).
    #[serde(with = "bound")]
    pub max_query_variants: Option<u32>,
}

impl Default for ScopeConfig {
    fn default() -> Self {
        ScopeConfig {
            allowed_domains: Vec::new(),
            allowed_origins: Vec::new(),
            allowed_ports: Vec::new(),
            allow: Vec::new(),
            deny: Vec::new(),
            max_depth: Some(20),
            max_pages: Some(1_000_000),
            max_pages_per_host: Some(100_000),
            max_path_segments: Some(20),
            max_segment_repeats: Some(3),
            max_query_variants: Some(1_000),
        }
    }
}

/// A bound that is a whole number or `"unlimited"`.
mod bound {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer, T: Copy + Into<u64>>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_u64((*n).into()),
            None => s.serialize_str("unlimited"),
        }
    }

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => u64::try_from(n)
                .ok()
                .and_then(|n| T::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "{n} is out of range; use a whole number or \"unlimited\""
                    ))
                }),
            Raw::Text(t) if matches!(t.as_str(), "unlimited" | "none") => Ok(None),
            Raw::Text(t) => Err(serde::de::Error::custom(format!(
                "{t:?} is not a bound; use a whole number or \"unlimited\""
            ))),
        }
    }
}

/// `[output]`: where items go, and how database outputs lay them out.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Outputs, each a file path, "-", or a database URL. `output = "x"` is short for
    /// `output.to = ["x"]`.
    #[serde(deserialize_with = "one_or_many")]
    pub to: Vec<String>,
    pub sql: crate::sink::sql::SqlConfig,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    match <Raw as serde::Deserialize>::deserialize(d) {
        Ok(Raw::One(s)) => Ok(vec![s]),
        Ok(Raw::Many(v)) => Ok(v),
        Err(_) => Err(serde::de::Error::custom(
            "output: expected a path or URL, or a list of them",
        )),
    }
}

/// `output = "x"` or `output = ["x", "y"]` becomes `[output] to = …`, so `[output.sql]` and
/// `--out` can be merged into it.
fn output_as_table(table: &mut toml::Table) {
    if let Some(v) = table.get("output")
        && !v.is_table()
    {
        let v = v.clone();
        let mut t = toml::Table::new();
        t.insert("to".into(), v);
        table.insert("output".into(), toml::Value::Table(t));
    }
}

/// `[plugins.NAME]`.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PluginSettings {
    /// Handed to the plugin's `config()` as JSON.
    pub config: Option<toml::Value>,
    /// Replaces the manifest's URL patterns.
    pub patterns: Option<Vec<String>>,
    /// Set to false to load the plugin but route nothing to it.
    pub enabled: Option<bool>,
    /// Overrides `plugin_max_failures` for this plugin.
    pub max_failures: Option<u32>,
}

impl CrawlConfig {
    /// Merges the config file, `--set` overrides and flag overrides, in that order.
    pub fn load(file: Option<&Path>, overrides: &[(String, toml::Value)]) -> Result<Self> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    anyhow!(
                        "cannot read config {}: {e}; check the --config path",
                        path.display()
                    )
                })?;
                let value: toml::Table = toml::from_str(&text)
                    .map_err(|e| anyhow!("{}: {}", path.display(), one_line(&e)))?;
                value
            }
            None => toml::Table::new(),
        };
        output_as_table(&mut table);
        for (key, value) in overrides {
            set_path(&mut table, key, value.clone())?;
            output_as_table(&mut table);
        }
        let shown = file.map_or("settings".to_owned(), |p| p.display().to_string());
        let cfg: CrawlConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow!("{shown}: {}", one_line(&e)))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Rejects values that deserialize but cannot work.
    pub fn check(&self) -> Result<()> {
        let p = &self.politeness;
        if p.concurrency == 0 || p.per_host == 0 {
            bail!("politeness.concurrency and politeness.per_host must be at least 1");
        }
        for (key, list) in [
            ("scope.allow", &self.scope.allow),
            ("scope.deny", &self.scope.deny),
        ] {
            for re in list {
                regex::Regex::new(re)
                    .map_err(|e| anyhow!("{key}: {re:?} is not a valid regex: {}", one_line(&e)))?;
            }
        }
        if self.limits.timeout_ms == 0 || self.limits.memory_mib == 0 {
            bail!("limits.timeout_ms and limits.memory_mib must be above 0");
        }
        if self.fetch.max_bytes_in_flight < self.fetch.max_body_bytes {
            bail!(
                "fetch.max_bytes_in_flight ({}) must be at least fetch.max_body_bytes ({})",
                self.fetch.max_bytes_in_flight,
                self.fetch.max_body_bytes
            );
        }
        for (name, p) in &self.plugins {
            if let Some(pats) = &p.patterns {
                crate::plugin::check_patterns(pats)
                    .map_err(|e| anyhow!("plugins.{name}.patterns: {e}"))?;
            }
        }
        crate::politeness::Politeness::new(self.politeness.clone()).with_hosts(&self.hosts)?;
        crate::fetch::check_config(&self.fetch)?;
        // Origins and ports are checked here; the seeds' part of the scope comes at run time.
        crate::crawl::scope::Scope::new(&self.scope, &[])?;
        if let Some(d) = &self.sitemaps_since
            && crate::sitemap::Date::parse(d).is_none()
        {
            bail!(
                "sitemaps_since (--since) {d:?} is not a date; write it as YYYY-MM-DD, e.g. 2024-01-31"
            );
        }
        if self.sitemaps_since.is_some() && !self.seeds_from_sitemaps {
            bail!(
                "sitemaps_since (--since) filters sitemap entries; add --sitemaps (seeds_from_sitemaps = true) or drop it"
            );
        }
        if self.files.max_bytes == 0 || self.files.read_timeout_ms == 0 {
            bail!("files.max_bytes and files.read_timeout_ms must be above 0");
        }
        if self.fetch.max_redirects > 100 {
            bail!("fetch.max_redirects must be at most 100");
        }
        self.output.sql.check()?;
        if let Some(listen) = &self.listen {
            crate::monitor::check_listen(listen, self.listen_token.as_deref())?;
        }
        self.check_shared()?;
        let targets = self.output_targets()?;
        let mut keys: Vec<String> = targets.iter().map(crate::sink::Target::key).collect();
        keys.sort();
        if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
            bail!("output {} is named twice; give each --out once", w[0]);
        }
        Ok(())
    }

    /// `frontier`, `crawl_id`, `worker` and the lease timings.
    pub fn check_shared(&self) -> Result<()> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
        };
        let Some(url) = &self.frontier else {
            if self.crawl_id.is_some() || self.worker.is_some() {
                bail!(
                    "--crawl-id and --worker name a shared crawl: add --frontier redis://HOST:PORT/DB (or drop them)"
                );
            }
            return Ok(());
        };
        let shown = crate::sink::target::mask(url);
        match url.split_once("://").map(|(s, _)| s) {
            Some("redis") => {}
            Some("rediss") => bail!(
                "--frontier {shown}: TLS to Redis (rediss://) is not built in; reach Redis over a private network or an SSH/stunnel tunnel with redis://"
            ),
            _ => bail!("--frontier {shown}: not a Redis URL; use redis://[:PASSWORD@]HOST:PORT/DB"),
        }
        if url::Url::parse(url).is_err() {
            bail!("--frontier {shown}: not a valid URL; use redis://[:PASSWORD@]HOST:PORT/DB");
        }
        match &self.crawl_id {
            None => {
                bail!("--frontier needs --crawl-id NAME: the name every worker of this crawl uses")
            }
            Some(id) if !name_ok(id) => bail!(
                "--crawl-id {:?}: use 1 to 64 letters, digits, '.', '_', '-' or ':'",
                crate::escape::escape(id)
            ),
            Some(_) => {}
        }
        if let Some(w) = self.worker.as_ref().filter(|w| !name_ok(w)) {
            bail!(
                "--worker {:?}: use 1 to 64 letters, digits, '.', '_', '-' or ':'",
                crate::escape::escape(w)
            );
        }
        if self.lease_ttl_s < 5 || self.lease_ttl_s > 86_400 {
            bail!("lease_ttl_s must be between 5 and 86400 seconds");
        }
        if self.redis_wait_s == 0 {
            bail!("redis_wait_s must be above 0");
        }
        if self.output.to.iter().any(|t| t == "-") {
            bail!(
                "output \"-\" (stdout) cannot be resumed, and a worker of a shared crawl must be able to cut its output back; write to a file or a database"
            );
        }
        Ok(())
    }

    /// Where this worker's frontier lives, when it is shared.
    pub fn redis_target(&self) -> Option<crate::frontier::RedisTarget> {
        let url = self.frontier.clone()?;
        let crawl_id = self.crawl_id.clone()?;
        let worker = self.worker.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .or_else(|| std::env::var("HOSTNAME").ok())
                .unwrap_or_else(|| "worker".to_owned());
            let dir = std::path::absolute(&self.state).unwrap_or_else(|_| self.state.clone());
            let tag = crate::normalize::fingerprint_of(&dir.display().to_string());
            let host: String = host
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || ".-_".contains(*c))
                .take(40)
                .collect();
            format!("{host}-{}", hex::encode(&tag[..4]))
        });
        Some(crate::frontier::RedisTarget {
            url,
            crawl_id,
            worker,
            lease_ttl: std::time::Duration::from_secs(self.lease_ttl_s),
            max_wait: std::time::Duration::from_secs(self.redis_wait_s),
        })
    }

    /// The outputs, checked: each names a file, stdout or a database.
    pub fn output_targets(&self) -> Result<Vec<crate::sink::Target>> {
        let mut targets = if self.output.to.is_empty() {
            let file = self.state.join(match self.format {
                Format::Jsonl => "items.jsonl",
                Format::Csv => "items.csv",
            });
            vec![crate::sink::Target::File {
                path: file,
                format: self.format,
            }]
        } else {
            self.output
                .to
                .iter()
                .map(|raw| crate::sink::Target::parse(raw, self.format))
                .collect::<Result<Vec<_>>>()?
        };
        // Last: the first output is the one whose count the summary shows.
        if let Some(dir) = &self.warc.dir {
            targets.push(crate::sink::Target::Warc(dir.clone()));
        }
        Ok(targets)
    }

    pub fn files_path(&self) -> PathBuf {
        self.files_dir
            .clone()
            .unwrap_or_else(|| self.state.join("files"))
    }

    pub fn cache_path(&self) -> Option<PathBuf> {
        if let Some(d) = &self.cache_dir {
            return Some(d.clone());
        }
        default_cache_dir()
    }
}

/// The config file a command uses: the one given with `--config`, else `./sandcrawl.toml`,
/// else `$XDG_CONFIG_HOME/sandcrawl/config.toml` (`~/.config/…` when XDG_CONFIG_HOME is
/// unset); `None` when there is none (built-in defaults).
pub fn discover(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_owned());
    }
    let local = PathBuf::from("sandcrawl.toml");
    if local.is_file() {
        return Some(local);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    let user = base.join("sandcrawl").join("config.toml");
    user.is_file().then_some(user)
}

pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("sandcrawl"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("sandcrawl"))
}

/// Parses `KEY=VALUE` from `--set`. VALUE is TOML (`5`, `true`, `"text"`, `["a","b"]`);
/// anything that does not parse as TOML is taken as a plain string.
pub fn parse_set(arg: &str) -> Result<(String, toml::Value)> {
    let (key, raw) = arg.split_once('=').ok_or_else(|| {
        anyhow!("--set {arg:?}: expected KEY=VALUE, e.g. --set politeness.delay_ms=250")
    })?;
    let key = key.trim();
    if key.is_empty() {
        bail!("--set {arg:?}: empty key");
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    Ok((key.to_owned(), value))
}

fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut cur = table;
    for part in parts {
        let entry = cur
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| anyhow!("setting {key}: {part} is not a table"))?;
    }
    cur.insert(last.to_owned(), value);
    Ok(())
}

/// toml's errors span several lines with a source excerpt; keep the message and the line.
fn one_line(e: &dyn std::fmt::Display) -> String {
    let text = e.to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or("").trim().to_owned();
    let rest: Vec<&str> = lines
        .filter(|l| {
            !l.trim_start().starts_with('|') && !l.trim_start().starts_with(char::is_numeric)
        })
        .collect();
    let mut out = first;
    for l in rest {
        out.push_str("; ");
        out.push_str(l.trim());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_set_overrides() {
        let dir = std::env::temp_dir().join(format!("sandcrawl-cfg-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("crawl.toml");
        std::fs::write(&f, "seeds = [\"http://a/\"]\n[politeness]\ndelay_ms = 100\nper_host = 2\n[plugins.products.config]\ncurrency = \"EUR\"\n").unwrap();
        let cfg =
            CrawlConfig::load(Some(&f), &[parse_set("politeness.delay_ms=250").unwrap()]).unwrap();
        assert_eq!(cfg.politeness.delay_ms, 250);
        assert_eq!(cfg.politeness.per_host, 2);
        assert_eq!(cfg.seeds, ["http://a/"]);
        assert!(cfg.plugins["products"].config.is_some());
        std::fs::remove_dir_all(&dir).ok();
    }

    /// `output` is a string, a list or a table, and `--out` / `--set output.sql.…` merge into
    /// whichever the file used.
    #[test]
    fn output_is_a_string_a_list_or_a_table() {
        let dir = std::env::temp_dir().join(format!("sandcrawl-out-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("crawl.toml");
        std::fs::write(&f, "output = \"a.jsonl\"\n").unwrap();
        let kinds = (
            "output.sql.per_kind_tables".to_owned(),
            toml::Value::Boolean(true),
        );
        let cfg = CrawlConfig::load(Some(&f), std::slice::from_ref(&kinds)).unwrap();
        assert_eq!(cfg.output.to, ["a.jsonl"]);
        assert!(cfg.output.sql.per_kind_tables);
        let outs = toml::Value::Array(vec![
            toml::Value::String("x.jsonl".into()),
            toml::Value::String("postgres://u:pw@127.0.0.1/db".into()),
        ]);
        let cfg = CrawlConfig::load(Some(&f), &[("output.to".into(), outs.clone())]).unwrap();
        let targets = cfg.output_targets().unwrap();
        assert_eq!(targets.len(), 2);
        assert!(matches!(&targets[1], crate::sink::Target::Sql(u) if u.shown.contains("***")));
        std::fs::write(&f, "[output]\nto = [\"a\", \"a\"]\n").unwrap();
        let e = CrawlConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(e.contains("named twice"), "{e}");
        std::fs::write(&f, "output = \"sqlite://x.db\"\n").unwrap();
        let e = CrawlConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(e.contains("unknown scheme"), "{e}");
        std::fs::write(&f, "[output.sql]\ntable = \"x;drop\"\n").unwrap();
        let e = CrawlConfig::load(Some(&f), &[]).unwrap_err().to_string();
        assert!(e.contains("output.sql.table"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    /// The configuration reference in README.md is a real, complete config file.
    #[test]
    fn readme_config_reference_loads() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let start = readme
            .find("```toml\nseeds = ")
            .expect("config block in README");
        let block = &readme[start + 8..];
        let block = &block[..block.find("```").unwrap()];
        let dir = std::env::temp_dir().join(format!("sandcrawl-readme-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("crawl.toml");
        std::fs::write(&f, block).unwrap();
        let cfg =
            CrawlConfig::load(Some(&f), &[]).unwrap_or_else(|e| panic!("README config: {e:#}"));
        assert_eq!(cfg.politeness.per_host, 8);
        assert_eq!(cfg.scope.deny, ["/cart/"]);
        assert!(cfg.plugins["products"].config.is_some());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_resolve_rules_and_origins_stop_at_config_time() {
        for set in [
            "fetch.resolve={ \"*.test\" = \"localhost\" }",
            "scope.allowed_origins=[\"not an origin\"]",
            "scope.allowed_domains=[\"example.com:http\"]",
        ] {
            let err = CrawlConfig::load(None, &[parse_set(set).unwrap()])
                .unwrap_err()
                .to_string();
            assert!(!err.contains('\n'), "{set}: {err}");
            assert!(
                err.contains("fetch.resolve") || err.contains("scope."),
                "{set}: {err}"
            );
        }
    }

    #[test]
    fn bad_input_is_one_clear_line() {
        let err = CrawlConfig::load(None, &[parse_set("politeness.dleay_ms=5").unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("dleay_ms"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = CrawlConfig::load(None, &[parse_set("scope.deny=[\"(\"]").unwrap()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("scope.deny"), "{err}");
        assert!(parse_set("nokey").is_err());
    }
}
