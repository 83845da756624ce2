//! The plugin runtime: loads WebAssembly components, checks them, caches their compiled
//! code, and runs one sandboxed `parse` call per page under hard limits, in an instance that
//! is either fresh or kept warm from an earlier page that ended cleanly.
//!
//! It owns the wasmtime `Engine`, the WASI policy (no files, sockets, env vars or args), the
//! per-call budgets (time, memory, output) and the translation between host pages and the
//! versioned WIT bindings. It must not fetch, schedule or store anything: callers hand it a
//! page and get back validated items and links or a classified error.
//!
//! Versioning follows Zed's extension API: each released WIT folder (`wit/since_vX.Y.Z`) gets
//! its own `bindgen!` module here, and a loaded component is bound to the newest module whose
//! interface names it exports. Plugins built against an older, still-listed version keep
//! working with newer hosts.

use anyhow::{Context as _, Result, anyhow, bail};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Bindings for `wit/since_v0.1.0`.
mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "plugin",
        // The page goes to the guest by reference: its body and headers are copied once,
        // into guest memory, not first into owned bindings types.
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

/// WIT versions this host can load, newest first.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.1.0"];

const PARSER_INTERFACE: &str = "sandcrawl:plugin/parser";

/// How often the epoch ticker fires; per-call deadlines are whole multiples of it.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Per-call budgets. Every one of them is enforced by the host, not trusted to the guest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock budget for one `parse` or `manifest` call, in milliseconds.
    pub timeout_ms: u64,
    /// Maximum linear memory of a plugin instance, in MiB.
    pub memory_mib: u64,
    /// Maximum wasm call stack, in KiB.
    pub stack_kib: u64,
    /// Maximum items one page may produce.
    pub max_items: usize,
    /// Maximum links one page may propose.
    pub max_links: usize,
    /// Maximum total bytes of item JSON and link URLs from one page, in MiB.
    pub max_output_mib: u64,
    /// Maximum bytes a plugin may write to stdout, and to stderr, per call, in KiB.
    pub max_log_kib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 2_000,
            memory_mib: 128,
            stack_kib: 1024,
            max_items: 10_000,
            max_links: 100_000,
            max_output_mib: 32,
            max_log_kib: 64,
        }
    }
}

/// Why a plugin call produced nothing usable. Each is counted per plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginError {
    #[error("not my page")]
    NotMine,
    #[error("extraction failed: {0}")]
    Failed(String),
    #[error("timed out after {0} ms (limits.timeout_ms)")]
    Timeout(u64),
    #[error("exceeded its memory limit of {0} MiB (limits.memory_mib)")]
    Memory(u64),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("output over limit: {0}")]
    OutputLimit(String),
    #[error("invalid output: {0}")]
    InvalidOutput(String),
}

impl PluginError {
    /// A short stable name for counters and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            PluginError::NotMine => "not_mine",
            PluginError::Failed(_) => "failed",
            PluginError::Timeout(_) => "timeout",
            PluginError::Memory(_) => "memory",
            PluginError::Trap(_) => "trap",
            PluginError::OutputLimit(_) => "output_limit",
            PluginError::InvalidOutput(_) => "invalid_output",
        }
    }
}

/// A page as the host hands it to a plugin.
#[derive(Debug, Clone, Default)]
pub struct PageInput {
    pub url: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Shared, not copied, when several plugins parse the same page.
    pub body: bytes::Bytes,
    pub encoding: String,
    pub depth: u32,
    pub referrer: Option<String>,
    pub metadata: Option<String>,
}

/// A validated item: `fields` is a JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemOut {
    pub kind: String,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    Follow,
    Download,
}

/// A link proposal, not yet checked for scope, robots or duplicates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkOut {
    pub url: String,
    pub priority: i32,
    pub kind: LinkKind,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParseOutput {
    pub items: Vec<ItemOut>,
    pub links: Vec<LinkOut>,
}

/// What a plugin says about itself, plus what the host computed about the file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub patterns: Vec<String>,
    pub seeds: Vec<String>,
    pub wit_version: String,
    pub sha256: String,
    pub path: PathBuf,
}

/// Store data for one instance: one `parse` call, or several while the instance stays warm.
struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    plugin: Arc<str>,
    config: Arc<str>,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl v0_1::sandcrawl::plugin::types::Host for CallState {}

impl v0_1::sandcrawl::plugin::host::Host for CallState {
    fn log(&mut self, level: v0_1::sandcrawl::plugin::host::Level, message: String) {
        use v0_1::sandcrawl::plugin::host::Level;
        let plugin = &*self.plugin;
        let message = truncate(&message, 4096);
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn config(&mut self) -> String {
        self.config.to_string()
    }
}

/// Refuses memory growth past the cap and remembers that it did, so that the resulting trap
/// (a guest allocation failure aborts) is reported as a memory-limit hit, not a generic crash.
struct MemoryLimiter {
    max_bytes: usize,
    hit: bool,
    /// The size the guest's memory has grown to.
    size: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        self.size = desired;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Owns the engine, the linker and the epoch ticker shared by every plugin.
pub struct Runtime {
    engine: Engine,
    linker_v0_1: Linker<CallState>,
    limits: Limits,
    cache_dir: Option<PathBuf>,
    ticker: Arc<Ticker>,
}

/// Stops the epoch thread when the runtime and every plugin loaded from it are gone.
struct Ticker(Arc<AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    /// Builds the engine. `cache_dir` holds compiled plugins; `None` disables the cache.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Self> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        // Lets `perf` name guest functions (writes /tmp/perf-PID.map); for profiling only.
        if std::env::var_os("SANDCRAWL_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        config.max_wasm_stack(limits.stack_kib as usize * 1024);
        // A pool of pre-reserved instance slots makes per-page instantiation cheap (no mmap
        // and page-table churn per call); concurrent calls are bounded by the engine's
        // plugin slots (one per core), so a small pool suffices. Opt out with
        // SANDCRAWL_NO_POOLING=1 (used by the benchmarks to measure the difference).
        if std::env::var_os("SANDCRAWL_NO_POOLING").is_none() {
            let slots = 4 * std::thread::available_parallelism().map_or(2, |n| n.get()) as u32 + 8;
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_component_instances(slots)
                .total_core_instances(slots * 4)
                .total_memories(slots * 4)
                .total_tables(slots * 4)
                .max_memory_size(limits.memory_mib as usize * 1024 * 1024)
                // Reset the first MiBs of a reused slot with memset instead of madvise: a
                // typical page's guest heap fits, so calls stop paying page faults and TLB
                // shootdowns (measured in BENCHMARKS.md).
                .linear_memory_keep_resident(4 << 20)
                .table_keep_resident(64 << 10);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(|e| anyhow!("starting wasmtime: {e}"))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| anyhow!("linking WASI: {e}"))?;
        v0_1::Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| anyhow!("linking host API: {e}"))?;

        // Epoch interruption needs someone to advance the epoch; a plain thread is the
        // cheapest clock and keeps ticking even when the tokio runtime is saturated.
        let stop = Arc::new(AtomicBool::new(false));
        let ticker_engine = engine.clone();
        let ticker_stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("sandcrawl-epoch".into())
            .spawn(move || {
                while !ticker_stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .context("starting the plugin epoch thread")?;

        Ok(Runtime {
            engine,
            linker_v0_1: linker,
            limits,
            cache_dir,
            ticker: Arc::new(Ticker(stop)),
        })
    }

    /// Loads every `*.wasm` in `dir` (sorted by file name). Each failure is one message naming
    /// the file; the other plugins still load.
    pub fn load_dir(&self, dir: &Path) -> Result<(Vec<Plugin>, Vec<String>)> {
        Ok(self.load_files(&wasm_files(dir)?))
    }

    /// Loads the given files (or folders of `*.wasm`). Duplicate names are rejected after
    /// the first.
    pub fn load_paths(&self, paths: &[PathBuf]) -> Result<(Vec<Plugin>, Vec<String>)> {
        let mut files = Vec::new();
        for p in paths {
            if !p.exists() {
                bail!(
                    "plugin path {} does not exist; check --plugins",
                    p.display()
                );
            }
            if p.is_dir() {
                files.extend(wasm_files(p)?);
            } else {
                files.push(p.clone());
            }
        }
        Ok(self.load_files(&files))
    }

    fn load_files(&self, paths: &[PathBuf]) -> (Vec<Plugin>, Vec<String>) {
        let mut plugins: Vec<Plugin> = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            match self.load_file(path) {
                Ok(p) if plugins.iter().any(|q| q.info.name == p.info.name) => errors.push(format!(
                    "{}: a plugin named {:?} is already loaded; rename one of them (manifest name)",
                    path.display(),
                    p.info.name
                )),
                Ok(p) => plugins.push(p),
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        (plugins, errors)
    }

    /// Loads, checks and (via the cache) compiles one plugin file.
    pub fn load_file(&self, path: &Path) -> Result<Plugin> {
        let shown = path.display();
        let bytes = std::fs::read(path).with_context(|| format!("{shown}: cannot read file"))?;
        if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
            bail!(
                "{shown}: not a WebAssembly file; build plugins with `cargo build --release --target wasm32-wasip2`"
            );
        }
        // Layer byte 1 marks a component; 0 a core module (e.g. built for wasm32-unknown-unknown).
        if bytes[6] != 0x01 {
            bail!(
                "{shown}: a core wasm module, not a component; build with `--target wasm32-wasip2` against sandcrawl-plugin-sdk"
            );
        }
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let component = self
            .compile(&bytes, &sha256)
            .map_err(|e| anyhow!("{shown}: cannot compile: {e}"))?;

        let wit_version = self
            .wit_version(&component)
            .map_err(|e| anyhow!("{shown}: {e}"))?;
        let pre = self
            .linker_v0_1
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("{shown}: imports something this host does not offer ({e}); plugins may use WASI p2 and sandcrawl:plugin/host only"))?;
        let pre = v0_1::PluginPre::new(pre).map_err(|e| anyhow!("{shown}: {e}"))?;

        let mut plugin = Plugin {
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                patterns: Vec::new(),
                seeds: Vec::new(),
                wit_version,
                sha256,
                path: path.to_owned(),
            },
            engine: self.engine.clone(),
            _ticker: Arc::clone(&self.ticker),
            pre,
            limits: self.limits.clone(),
            config: Arc::from("null"),
            name_tag: Arc::from(
                path.file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or("plugin"),
            ),
            patterns: globset::GlobSet::empty(),
            warm: std::sync::Mutex::new(Vec::new()),
        };
        let manifest = plugin
            .call_manifest()
            .map_err(|e| anyhow!("{shown}: manifest() failed: {e}"))?;
        check_manifest(&manifest).map_err(|e| anyhow!("{shown}: bad manifest: {e}"))?;
        plugin.patterns =
            build_globs(&manifest.patterns).map_err(|e| anyhow!("{shown}: bad manifest: {e}"))?;
        plugin.name_tag = Arc::from(manifest.name.as_str());
        plugin.info.name = manifest.name;
        plugin.info.version = manifest.version;
        plugin.info.description = manifest.description;
        plugin.info.patterns = manifest.patterns;
        plugin.info.seeds = manifest.seeds;
        Ok(plugin)
    }

    /// Which supported WIT version the component's exports name.
    fn wit_version(&self, component: &Component) -> Result<String> {
        let ty = component.component_type();
        let mut seen = Vec::new();
        for (name, _) in ty.exports(&self.engine) {
            if let Some(ver) = name
                .strip_prefix(PARSER_INTERFACE)
                .and_then(|v| v.strip_prefix('@'))
            {
                if SUPPORTED_WIT_VERSIONS.contains(&ver) {
                    return Ok(ver.to_owned());
                }
                seen.push(ver.to_owned());
            }
        }
        if let Some(ver) = seen.first() {
            bail!(
                "built against WIT sandcrawl:plugin@{ver}, but this host supports {}; rebuild the plugin with a matching sandcrawl-plugin-sdk or upgrade sandcrawl",
                SUPPORTED_WIT_VERSIONS.join(", ")
            );
        }
        bail!(
            "does not export {PARSER_INTERFACE}; is it a sandcrawl plugin? (use sandcrawl_plugin_sdk::export_plugin!)"
        )
    }

    /// Compiles, or loads the code this host compiled before. Only files this host wrote into
    /// its own cache folder are ever deserialized (deserializing is `unsafe` because a forged
    /// file could contain arbitrary machine code).
    fn compile(&self, bytes: &[u8], sha256: &str) -> Result<Component> {
        let Some(dir) = &self.cache_dir else {
            return Component::new(&self.engine, bytes).map_err(|e| anyhow!("{e}"));
        };
        let key = format!("{sha256}-{}.cwasm", self.engine_fingerprint());
        let path = dir.join(key);
        if path.is_file() {
            // SAFETY: the file is in the host's private cache, named by the wasm's sha256 and
            // this exact engine's compatibility hash, and was written by `precompile_component`
            // below via an atomic rename. wasmtime also checks its header before use.
            match unsafe { Component::deserialize_file(&self.engine, &path) } {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable compiled plugin: {e}")
                }
            }
        }
        let compiled = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| anyhow!("{e}"))?;
        if let Err(e) = write_atomic(dir, &path, &compiled) {
            tracing::warn!(dir = %dir.display(), "cannot cache compiled plugin: {e:#}");
        }
        // SAFETY: `compiled` was just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(|e| anyhow!("{e}"))
    }

    fn engine_fingerprint(&self) -> String {
        use std::hash::Hash;
        let mut h = Sha256Hasher(Sha256::new());
        self.engine.precompile_compatibility_hash().hash(&mut h);
        hex::encode(&h.0.finalize()[..8])
    }
}

/// Feeds `Hash` into SHA-256 so the cache key is stable across processes (std's hashers are
/// not guaranteed to be).
struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn wasm_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "cannot read plugin folder {}: check the path (--plugins)",
            dir.display()
        )
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wasm") && p.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

fn write_atomic(dir: &Path, path: &Path, data: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn check_manifest(m: &v0_1::sandcrawl::plugin::types::PluginManifest) -> Result<()> {
    let name_ok = !m.name.is_empty()
        && m.name.len() <= 64
        && m.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !name_ok {
        bail!("name {:?} must be 1-64 of a-z, 0-9, '-', '_'", m.name);
    }
    if m.version.trim().is_empty() {
        bail!("version is empty");
    }
    if m.patterns.is_empty() {
        bail!("no URL patterns; add at least one (e.g. \"https://example.com/*\")");
    }
    for s in &m.seeds {
        let u = url::Url::parse(s).map_err(|e| anyhow!("seed {s:?} is not a URL: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            bail!("seed {s:?} is not http(s)");
        }
    }
    Ok(())
}

/// URL globs: `*` matches any run of characters, `/` included.
pub fn build_globs(patterns: &[String]) -> Result<globset::GlobSet> {
    let mut b = globset::GlobSetBuilder::new();
    for p in patterns {
        let g = globset::GlobBuilder::new(p)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| anyhow!("pattern {p:?}: {e}"))?;
        b.add(g);
    }
    b.build().map_err(|e| anyhow!("{e}"))
}

/// A loaded, checked plugin, ready to parse pages. Cheap to call from many threads: each
/// call gets an instance of its own, either a fresh one or a warm one (see `parse`).
pub struct Plugin {
    pub info: PluginInfo,
    engine: Engine,
    _ticker: Arc<Ticker>,
    pre: v0_1::PluginPre<CallState>,
    limits: Limits,
    config: Arc<str>,
    name_tag: Arc<str>,
    patterns: globset::GlobSet,
    /// Instances that finished a call cleanly, waiting for the next one.
    warm: std::sync::Mutex<Vec<Warm>>,
}

/// An instance kept between calls, with the store and pipes it was created with.
struct Warm {
    store: Store<CallState>,
    bindings: v0_1::Plugin,
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
    calls: u32,
}

/// Pages one instance serves before it is replaced, which bounds what a slow leak in a
/// plugin can accumulate.
const WARM_MAX_CALLS: u32 = 1_000;
/// A warm instance whose memory grew past this is dropped after its call, so that one huge
/// page does not pin its memory for the rest of the crawl.
const WARM_MAX_MEMORY: usize = 16 << 20;

impl Plugin {
    /// Sets the JSON document the plugin's `config()` import returns.
    pub fn set_config(&mut self, json: &serde_json::Value) {
        self.config = Arc::from(json.to_string().as_str());
        // Warm instances answer `config()` from the store they were made with.
        if let Ok(warm) = self.warm.get_mut() {
            warm.clear();
        }
    }

    /// Replaces the manifest's URL patterns (crawl config `[plugins.NAME] patterns`).
    pub fn set_patterns(&mut self, patterns: Vec<String>) -> Result<()> {
        self.patterns = build_globs(&patterns)?;
        self.info.patterns = patterns;
        Ok(())
    }

    /// Whether this plugin's URL patterns claim `url`.
    pub fn matches(&self, url: &str) -> bool {
        self.patterns.is_match(url)
    }

    fn new_store(&self) -> (Store<CallState>, MemoryOutputPipe, MemoryOutputPipe) {
        let cap = self.limits.max_log_kib as usize * 1024;
        let stdout = MemoryOutputPipe::new(cap);
        let stderr = MemoryOutputPipe::new(cap);
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                max_bytes: self.limits.memory_mib as usize * 1024 * 1024,
                hit: false,
                size: 0,
            },
            plugin: Arc::clone(&self.name_tag),
            config: Arc::clone(&self.config),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        self.arm_deadline(&mut store);
        (store, stdout, stderr)
    }

    /// The deadline counts from now, so it is armed for every call, warm instance or not.
    fn arm_deadline(&self, store: &mut Store<CallState>) {
        let ticks = self
            .limits
            .timeout_ms
            .div_ceil(EPOCH_TICK.as_millis() as u64)
            .max(1);
        store.set_epoch_deadline(ticks);
    }

    fn call_manifest(&self) -> Result<v0_1::sandcrawl::plugin::types::PluginManifest, PluginError> {
        let (mut store, stdout, stderr) = self.new_store();
        let result = self
            .pre
            .instantiate(&mut store)
            .and_then(|inst| inst.sandcrawl_plugin_parser().call_manifest(&mut store));
        self.forward_output(&stdout, &stderr);
        result.map_err(|e| self.classify(&store, &stderr, e))
    }

    /// Runs `parse` on one page, in a warm instance or a fresh one. Blocking: the caller
    /// decides which thread may wait for it (see `engine::CallCost`).
    pub fn parse(&self, page: &PageInput) -> Result<ParseOutput, PluginError> {
        use v0_1::sandcrawl::plugin::types as t;
        let headers: Vec<t::Header<'_>> = page
            .headers
            .iter()
            .map(|(n, v)| t::Header { name: n, value: v })
            .collect();
        let wit_page = t::Page {
            url: &page.url,
            status: page.status,
            headers: &headers,
            body: &page.body,
            encoding: &page.encoding,
            context: t::CrawlContext {
                depth: page.depth,
                referrer: page.referrer.as_deref(),
                metadata: page.metadata.as_deref(),
            },
        };
        let warm = self.warm.lock().ok().and_then(|mut w| w.pop());
        let reused = warm.is_some();
        let result = self.call_parse(warm, wit_page.clone());
        let output = match result {
            // A crash a fresh instance might not have had (state or memory left by earlier
            // pages) gets one more try on a fresh instance, so reuse never costs a page. A
            // deadline is not retried: a second run would only wait as long again.
            Err(e @ (PluginError::Trap(_) | PluginError::Memory(_))) if reused => {
                tracing::debug!(
                    plugin = &*self.name_tag,
                    "a warm instance failed ({e}); trying a fresh one"
                );
                self.call_parse(None, wit_page)?
            }
            other => other?,
        };
        self.validate(output)
    }

    /// One `parse` call on `warm`, or on a fresh instance. The instance goes back to the warm
    /// list when the call ended without a trap and wrote nothing to stdout or stderr (whose
    /// pipes cannot be emptied, and whose caps are per call).
    fn call_parse(
        &self,
        warm: Option<Warm>,
        wit_page: v0_1::sandcrawl::plugin::types::Page<'_>,
    ) -> Result<v0_1::sandcrawl::plugin::types::ParseOutput, PluginError> {
        use v0_1::sandcrawl::plugin::types as t;
        let mut w = match warm {
            Some(mut w) => {
                self.arm_deadline(&mut w.store);
                w.store.data_mut().limiter.hit = false;
                w
            }
            None => {
                let (mut store, stdout, stderr) = self.new_store();
                let bindings = match self.pre.instantiate(&mut store) {
                    Ok(b) => b,
                    Err(e) => {
                        self.forward_output(&stdout, &stderr);
                        return Err(self.classify(&store, &stderr, e));
                    }
                };
                Warm {
                    store,
                    bindings,
                    stdout,
                    stderr,
                    calls: 0,
                }
            }
        };
        let result = w
            .bindings
            .sandcrawl_plugin_parser()
            .call_parse(&mut w.store, wit_page);
        w.calls += 1;
        let wrote = self.forward_output(&w.stdout, &w.stderr);
        let output = match result {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(t::ParseError::NotMine)) => Err(PluginError::NotMine),
            Ok(Err(t::ParseError::Failed(m))) => {
                Err(PluginError::Failed(truncate(&m, 1000).into_owned()))
            }
            Err(e) => return Err(self.classify(&w.store, &w.stderr, e)),
        };
        let keep = w.calls < WARM_MAX_CALLS
            && w.store.data().limiter.size <= WARM_MAX_MEMORY
            && !wrote
            && reuse_allowed();
        if keep && let Ok(mut list) = self.warm.lock() {
            // At most one idle instance per core: more would only hold pool slots.
            if list.len() < warm_per_plugin() {
                list.push(w);
            }
        }
        output
    }

    fn validate(
        &self,
        out: v0_1::sandcrawl::plugin::types::ParseOutput,
    ) -> Result<ParseOutput, PluginError> {
        use v0_1::sandcrawl::plugin::types as t;
        let l = &self.limits;
        if out.items.len() > l.max_items {
            return Err(PluginError::OutputLimit(format!(
                "{} items (limits.max_items = {})",
                out.items.len(),
                l.max_items
            )));
        }
        if out.links.len() > l.max_links {
            return Err(PluginError::OutputLimit(format!(
                "{} links (limits.max_links = {})",
                out.links.len(),
                l.max_links
            )));
        }
        let bytes: usize = out
            .items
            .iter()
            .map(|i| i.json.len() + i.kind.len())
            .chain(
                out.links
                    .iter()
                    .map(|k| k.url.len() + k.metadata.as_ref().map_or(0, String::len)),
            )
            .sum();
        if bytes as u64 > l.max_output_mib * 1024 * 1024 {
            return Err(PluginError::OutputLimit(format!(
                "{bytes} bytes of items and links (limits.max_output_mib = {})",
                l.max_output_mib
            )));
        }
        let mut items = Vec::with_capacity(out.items.len());
        for (n, i) in out.items.into_iter().enumerate() {
            if i.kind.is_empty() || i.kind.len() > 128 {
                return Err(PluginError::InvalidOutput(format!(
                    "item #{n} has an empty or over-long kind"
                )));
            }
            match serde_json::from_str::<serde_json::Value>(&i.json) {
                Ok(serde_json::Value::Object(fields)) => items.push(ItemOut {
                    kind: i.kind,
                    fields,
                }),
                Ok(_) => {
                    return Err(PluginError::InvalidOutput(format!(
                        "item #{n} ({}) is JSON but not an object",
                        i.kind
                    )));
                }
                Err(e) => {
                    return Err(PluginError::InvalidOutput(format!(
                        "item #{n} ({}) is not valid JSON: {e}",
                        i.kind
                    )));
                }
            }
        }
        let links = out
            .links
            .into_iter()
            .map(|k| LinkOut {
                url: k.url,
                priority: k.priority.unwrap_or(0),
                kind: match k.kind {
                    t::LinkKind::Follow => LinkKind::Follow,
                    t::LinkKind::Download => LinkKind::Download,
                },
                metadata: k.metadata,
            })
            .collect();
        Ok(ParseOutput { items, links })
    }

    /// Turns a wasmtime error into the reason a user can act on.
    fn classify(
        &self,
        store: &Store<CallState>,
        stderr: &MemoryOutputPipe,
        e: wasmtime::Error,
    ) -> PluginError {
        if store.data().limiter.hit {
            return PluginError::Memory(self.limits.memory_mib);
        }
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => PluginError::Timeout(self.limits.timeout_ms),
            Some(wasmtime::Trap::StackOverflow) => {
                PluginError::Trap("wasm stack overflow (limits.stack_kib)".into())
            }
            Some(wasmtime::Trap::MemoryOutOfBounds) => PluginError::Trap(
                "out-of-bounds memory access (often unbounded recursion exhausting the guest stack)"
                    .into(),
            ),
            Some(trap) => {
                let said = String::from_utf8_lossy(&stderr.contents()).into_owned();
                // Rust prints "thread '..' panicked at file:line:col:" and the message on
                // the next line.
                let mut lines = said.lines().skip_while(|l| !l.contains("panicked"));
                let panic_line = lines.next().map(|at| {
                    let msg = lines.next().unwrap_or("");
                    truncate(&format!("{msg} ({})", at.trim_end_matches(':')), 300).into_owned()
                });
                match panic_line {
                    Some(p) => PluginError::Trap(format!("plugin panicked: {p}")),
                    None => PluginError::Trap(format!("{trap}")),
                }
            }
            None => PluginError::Trap(truncate(&format!("{e:#}"), 500).into_owned()),
        }
    }

    /// Guest stdout/stderr go to the host log, tagged with the plugin's name. Returns whether
    /// the guest wrote anything.
    fn forward_output(&self, stdout: &MemoryOutputPipe, stderr: &MemoryOutputPipe) -> bool {
        let mut wrote = false;
        for (stream, pipe) in [("stdout", stdout), ("stderr", stderr)] {
            let bytes = pipe.contents();
            if bytes.is_empty() {
                continue;
            }
            wrote = true;
            let text = String::from_utf8_lossy(&bytes);
            for line in text.lines().take(50) {
                tracing::info!(plugin = &*self.name_tag, stream, "{}", truncate(line, 500));
            }
        }
        wrote
    }
}

/// `SANDCRAWL_NO_WARM=1` gives every page a fresh instance (for measuring and debugging).
fn reuse_allowed() -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| std::env::var_os("SANDCRAWL_NO_WARM").is_none())
}

fn warm_per_plugin() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

fn truncate(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len()).into()
}
