//! The plugin runtime: loads WebAssembly components, checks them, caches their compiled
//! code, and runs one sandboxed `parse` call per page under hard limits, in an instance that
//! is either fresh or kept warm from an earlier page that ended cleanly.
//!
//! It owns the wasmtime `Engine`, the WASI policy (no files, sockets, env vars or args), the
//! per-call budgets (time, memory, output, log volume), the instance pool and its fair share
//! per plugin, and the translation between host pages and the versioned WIT bindings. It
//! must not fetch, schedule or store anything: callers hand it a page and get back validated
//! items and links or a classified error.
//!
//! Calls are async (wasmtime fibers). The deadline covers the whole call, time blocked in
//! WASI included: compiled code yields to the executor at every epoch tick and traps once the
//! budget is spent, and a call blocked in a host call (a sleep, a poll) is dropped at the
//! same deadline by a wall-clock timeout. Nothing a plugin does holds a thread.
//!
//! Versioning follows Zed's extension API: each released WIT folder (`wit/since_vX.Y.Z`) gets
//! its own bindings module under `wit/`, and a loaded component is bound to the newest
//! supported version whose interface names it exports. Plugins built against an older,
//! still-listed version keep working with newer hosts. Everything below `wit/` speaks the
//! host's own types.

mod guest_output;
mod limits;
pub mod lock;
mod validate;
mod wit;

pub use limits::{Limits, MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLES, Slots};
pub use validate::{
    MAX_PATTERNS, PatternSyntax, Patterns, RESERVED_KINDS, build_globs, check_patterns,
};
pub use wit::WitVersion;

use anyhow::{Context as _, Result, anyhow, bail};
use guest_output::{GuestOutput, LogOverflow};
use limits::MemoryLimiter;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use validate::{RawItem, RawLink, RawManifest};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// WIT versions this host can load, newest first.
pub fn supported_wit_versions() -> Vec<&'static str> {
    WitVersion::ALL.iter().map(|v| v.as_str()).collect()
}

const PARSER_INTERFACE: &str = "sandcrawl:plugin/parser";

/// How often the epoch ticker fires: a running call yields this often and its deadline is
/// checked this often.
const EPOCH_TICK: Duration = Duration::from_millis(5);

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
    #[error("log over limit: {0}")]
    LogLimit(String),
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
            PluginError::LogLimit(_) => "log_limit",
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
    /// The JSON document attached to the request that led here (see `LinkOut::metadata`).
    pub metadata: Option<String>,
    /// The method of the request that fetched the page.
    pub method: crate::fetch::Method,
}

/// A validated item: `json` is a JSON object, kept as the plugin wrote it (on one line).
#[derive(Debug, Clone)]
pub struct ItemOut {
    pub kind: String,
    pub json: Box<RawValue>,
}

impl ItemOut {
    /// The fields as a JSON value tree (for tests and small tools; the crawl never builds it).
    pub fn fields(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(self.json.get()).unwrap_or_default()
    }
}

impl PartialEq for ItemOut {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.json.get() == other.json.get()
    }
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
    /// One JSON document, whatever the plugin's WIT version (a 0.1 plugin's metadata string
    /// is held as a JSON string); written as that JSON, not as a string of it.
    #[serde(serialize_with = "raw_json")]
    pub metadata: Option<String>,
    /// Method, headers and body of a request that is more than a plain GET (WIT 0.2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<crate::fetch::RequestSpec>,
}

/// Writes JSON text as the JSON it is (validated before it gets here; anything else as a
/// string).
fn raw_json<S: serde::Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize as _;
    match v.as_deref().map(serde_json::from_str::<&RawValue>) {
        None => s.serialize_none(),
        Some(Ok(raw)) => raw.serialize(s),
        Some(Err(_)) => v.serialize(s),
    }
}

/// Metadata from a 0.1 plugin is free text: it is held as the JSON string of that text.
pub fn metadata_from_text(text: String) -> String {
    serde_json::Value::String(text).to_string()
}

/// The text a 0.1 plugin gets back: the string itself when the metadata is a JSON string,
/// else the JSON as written.
pub fn metadata_as_text(json: &str) -> std::borrow::Cow<'_, str> {
    match serde_json::from_str::<String>(json) {
        Ok(s) => s.into(),
        Err(_) => json.into(),
    }
}

/// The JSON a 0.2 plugin gets back: metadata stored before it was JSON (a state written by
/// an older sandcrawl) is handed over as a JSON string.
pub fn metadata_as_json(stored: &str) -> std::borrow::Cow<'_, str> {
    if serde_json::from_str::<serde::de::IgnoredAny>(stored).is_ok() {
        stored.into()
    } else {
        metadata_from_text(stored.to_owned()).into()
    }
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
    /// Whether its pages need a browser (declared from WIT 0.2 on).
    pub rendering: Rendering,
    pub wit_version: String,
    pub sha256: String,
    pub path: PathBuf,
}

/// How a plugin's pages must be fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Rendering {
    /// A plain HTTP fetch (every WIT 0.1 plugin).
    #[default]
    Http,
    /// The pages need a browser to run their JavaScript first.
    Browser,
}

/// Store data for one instance: one `parse` call, or several while the instance stays warm.
pub(crate) struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    output: GuestOutput,
    plugin: Arc<str>,
    config: Arc<str>,
    /// When the current call's budget ends; checked at every epoch tick.
    deadline: Instant,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl CallState {
    /// The `log` import, whatever the WIT version: counted against the call's log budget.
    pub(crate) fn guest_log(
        &mut self,
        level: tracing::Level,
        message: &str,
    ) -> wasmtime::Result<()> {
        self.output.log(&self.plugin, level, message)?;
        Ok(())
    }

    /// The `config` import: the plugin's `[plugins.NAME] config` as JSON.
    pub(crate) fn guest_config(&self) -> String {
        self.config.to_string()
    }
}

/// Call slots shared by every plugin of one runtime, and the count of idle warm instances.
struct Shared {
    calls: Arc<Semaphore>,
    slots: Slots,
    warm_idle: AtomicUsize,
}

/// Owns the engine, the linker and the epoch ticker shared by every plugin.
pub struct Runtime {
    engine: Engine,
    /// WASI and the host imports of every supported WIT version.
    linker: Linker<CallState>,
    limits: Limits,
    cache_dir: Option<PathBuf>,
    ticker: Arc<Ticker>,
    shared: Arc<Shared>,
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
        let slots = Slots::for_this_machine();
        let mut config = Config::new();
        config.epoch_interruption(true);
        // Lets `perf` name guest functions (writes /tmp/perf-PID.map); for profiling only.
        if std::env::var_os("SANDCRAWL_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        config.max_wasm_stack(
            usize::try_from(limits.stack_kib.saturating_mul(1024)).unwrap_or(usize::MAX),
        );
        // The fiber a call runs on holds the wasm stack plus the host functions' frames.
        config.async_stack_size(
            usize::try_from(limits.stack_kib.saturating_mul(1024)).unwrap_or(usize::MAX)
                + (512 << 10),
        );
        // A pool of pre-reserved instance slots makes per-page instantiation cheap (no mmap
        // and page-table churn per call). Its size follows from the call slots: every call
        // and every idle warm instance is guaranteed its instance, and the per-component
        // bounds keep one plugin's component from taking the others' (a component over them
        // is refused at load). Opt out with SANDCRAWL_NO_POOLING=1 (benchmarks only).
        if std::env::var_os("SANDCRAWL_NO_POOLING").is_none() {
            let components = slots.component_instances();
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_component_instances(components)
                .total_core_instances(components * MAX_CORE_INSTANCES)
                .total_memories(components * MAX_MEMORIES)
                .total_tables(components * MAX_TABLES)
                .total_stacks(components)
                .max_core_instances_per_component(MAX_CORE_INSTANCES)
                .max_memories_per_component(MAX_MEMORIES)
                .max_tables_per_component(MAX_TABLES)
                .table_elements(limits::MAX_TABLE_ELEMENTS)
                .max_memory_size(
                    usize::try_from(limits.memory_mib.saturating_mul(1024 * 1024))
                        .unwrap_or(usize::MAX),
                )
                // Reset the first MiBs of a reused slot with memset instead of madvise: a
                // typical page's guest heap fits, so calls stop paying page faults and TLB
                // shootdowns (measured in BENCHMARKS.md).
                .linear_memory_keep_resident(4 << 20)
                .table_keep_resident(64 << 10);
            config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(|e| anyhow!("starting wasmtime: {e}"))?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| anyhow!("linking WASI: {e}"))?;
        wit::add_to_linker(&mut linker)?;

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
            linker,
            limits,
            cache_dir,
            ticker: Arc::new(Ticker(stop)),
            shared: Arc::new(Shared {
                calls: Arc::new(Semaphore::new(slots.calls)),
                slots,
                warm_idle: AtomicUsize::new(0),
            }),
        })
    }

    /// Loads every `*.wasm` in `dir` (sorted by file name). Each failure is one message naming
    /// the file; the other plugins still load.
    pub async fn load_dir(&self, dir: &Path) -> Result<(Vec<Plugin>, Vec<String>)> {
        Ok(self.load_files(&wasm_files(dir)?).await)
    }

    /// Loads the given files (or folders of `*.wasm`). Duplicate names are rejected after
    /// the first.
    pub async fn load_paths(&self, paths: &[PathBuf]) -> Result<(Vec<Plugin>, Vec<String>)> {
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
        Ok(self.load_files(&files).await)
    }

    async fn load_files(&self, paths: &[PathBuf]) -> (Vec<Plugin>, Vec<String>) {
        let mut plugins: Vec<Plugin> = Vec::new();
        let mut errors = Vec::new();
        for path in paths {
            match self.load_file(path).await {
                Ok(p) if plugins.iter().any(|q| q.info.name == p.info.name) => errors.push(format!(
                    "{}: a plugin named {:?} is already loaded; rename one of them (manifest name)",
                    path.display(),
                    p.info.name
                )),
                Ok(p) => plugins.push(p),
                Err(e) => errors.push(crate::escape::escape(&format!("{e:#}")).into_owned()),
            }
        }
        (plugins, errors)
    }

    /// Loads, checks and (via the cache) compiles one plugin file.
    pub async fn load_file(&self, path: &Path) -> Result<Plugin> {
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
        let component = self.compile(&bytes, &sha256).map_err(|e| {
            let msg = format!("{e:#}");
            if msg.contains("exceeds the configured maximum") {
                anyhow!(
                    "{shown}: refused: {msg}; a plugin may hold at most {MAX_CORE_INSTANCES} core instances, {MAX_MEMORIES} memories and {MAX_TABLES} tables (an SDK plugin holds far fewer)"
                )
            } else {
                anyhow!("{shown}: cannot compile: {msg}")
            }
        })?;

        let wit_version = self
            .wit_version(&component)
            .map_err(|e| anyhow!("{shown}: {e}"))?;
        self.check_export_shapes(&component, wit_version).map_err(|e| {
            anyhow!(
                "{shown}: its exports do not match WIT sandcrawl:plugin@{} ({e}); rebuild it against the matching sandcrawl-plugin-sdk",
                wit_version.as_str()
            )
        })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("{shown}: imports something this host does not offer ({e}); plugins may use WASI p2 and sandcrawl:plugin/host only"))?;
        let pre = wit::BindingsPre::new(wit_version, pre).map_err(|e| {
            anyhow!(
                "{shown}: its exports do not match WIT sandcrawl:plugin@{} ({e:#}); rebuild it against the matching sandcrawl-plugin-sdk",
                wit_version.as_str()
            )
        })?;

        let mut plugin = Plugin {
            info: PluginInfo {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                patterns: Vec::new(),
                seeds: Vec::new(),
                rendering: Rendering::Http,
                wit_version: wit_version.as_str().to_owned(),
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
                    .map(|s| crate::escape::escape(s).into_owned())
                    .unwrap_or_else(|| "plugin".into())
                    .as_str(),
            ),
            patterns: Patterns::empty(),
            syntax: wit_version.pattern_syntax(),
            warm: std::sync::Mutex::new(Vec::new()),
            shared: Arc::clone(&self.shared),
            own_calls: Semaphore::new(self.shared.slots.per_plugin),
        };
        let m = plugin
            .call_manifest()
            .await
            .map_err(|e| anyhow!("{shown}: manifest() failed: {e}"))?;
        let m = validate::check_manifest(m).map_err(|e| anyhow!("{shown}: bad manifest: {e}"))?;
        plugin.patterns = Patterns::build(plugin.syntax, &m.patterns)
            .map_err(|e| anyhow!("{shown}: bad manifest: {e}"))?;
        plugin.info.rendering = m.rendering;
        plugin.name_tag = Arc::from(m.name.as_str());
        plugin.info.name = m.name;
        plugin.info.version = m.version;
        plugin.info.description = m.description;
        plugin.info.patterns = m.patterns;
        plugin.info.seeds = m.seeds;
        Ok(plugin)
    }

    /// [`Runtime::load_file`] for callers outside an async runtime (tests, small tools).
    pub fn load_file_blocking(&self, path: &Path) -> Result<Plugin> {
        block_on(self.load_file(path)).map_err(|e| anyhow!("{e}"))?
    }

    /// [`Runtime::load_dir`] for callers outside an async runtime.
    pub fn load_dir_blocking(&self, dir: &Path) -> Result<(Vec<Plugin>, Vec<String>)> {
        block_on(self.load_dir(dir)).map_err(|e| anyhow!("{e}"))?
    }

    /// The parser interface's functions have the shapes its WIT version gives them, checked
    /// before anything runs (otherwise the first call fails with a bare type error).
    fn check_export_shapes(&self, component: &Component, version: WitVersion) -> Result<()> {
        use wasmtime::component::types::{ComponentItem, Type};
        let want = format!("{PARSER_INTERFACE}@{}", version.as_str());
        let ty = component.component_type();
        let Some(ComponentItem::ComponentInstance(parser)) = ty
            .exports(&self.engine)
            .find(|(n, _)| *n == want)
            .map(|(_, e)| e.ty)
        else {
            bail!("{want} is not an instance");
        };
        let mut found = 0;
        let wanted = version.parser_functions();
        for (name, item) in parser.exports(&self.engine) {
            let ComponentItem::ComponentFunc(f) = item.ty else {
                continue;
            };
            let params: Vec<Type> = f.params().map(|(_, t)| t).collect();
            let results: Vec<Type> = f.results().collect();
            let ok = match name {
                "manifest" => params.is_empty() && matches!(results.as_slice(), [Type::Record(_)]),
                "start-requests" if wanted.contains(&name) => {
                    params.is_empty() && matches!(results.as_slice(), [Type::List(_)])
                }
                "parse" => {
                    matches!(params.as_slice(), [Type::Record(_)])
                        && matches!(results.as_slice(), [Type::Result(_)])
                }
                _ => continue,
            };
            if !ok {
                bail!("`{name}` takes or returns other types than the WIT declares");
            }
            found += 1;
        }
        if found != wanted.len() {
            bail!("one of `{}` is missing", wanted.join("`, `"));
        }
        Ok(())
    }

    /// The newest supported WIT version among those the component's exports name.
    fn wit_version(&self, component: &Component) -> Result<WitVersion> {
        let ty = component.component_type();
        let mut found: Option<WitVersion> = None;
        let mut unsupported = Vec::new();
        for (name, _) in ty.exports(&self.engine) {
            let Some(ver) = name
                .strip_prefix(PARSER_INTERFACE)
                .and_then(|v| v.strip_prefix('@'))
            else {
                continue;
            };
            match WitVersion::parse(ver) {
                // `ALL` is newest first, so the newest is the smallest.
                Some(v) => found = Some(found.map_or(v, |f| f.min(v))),
                None => unsupported.push(crate::escape::escape(ver).into_owned()),
            }
        }
        if let Some(v) = found {
            return Ok(v);
        }
        if let Some(ver) = unsupported.first() {
            bail!(
                "built against WIT sandcrawl:plugin@{ver}, but this host supports {}; rebuild the plugin with a matching sandcrawl-plugin-sdk or upgrade sandcrawl",
                WitVersion::list()
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
            return Component::new(&self.engine, bytes).map_err(|e| anyhow!("{e:#}"));
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
            .map_err(|e| anyhow!("{e:#}"))?;
        if let Err(e) = write_atomic(dir, &path, &compiled) {
            tracing::warn!(dir = %dir.display(), "cannot cache compiled plugin: {e:#}");
        }
        // SAFETY: `compiled` was just produced by this engine.
        unsafe { Component::deserialize(&self.engine, &compiled) }.map_err(|e| anyhow!("{e:#}"))
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

/// The `*.wasm` files these plugin paths name now (folders listed, files as given), sorted;
/// unreadable folders and missing files give nothing. For watching, not for loading (which
/// reports such paths).
pub fn wasm_files_in(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(wasm_files(p).unwrap_or_default());
        } else if p.is_file() {
            files.push(p.clone());
        }
    }
    files
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

/// A loaded, checked plugin, ready to parse pages. Cheap to call from many tasks: each call
/// gets an instance of its own, either a fresh one or a warm one (see `parse`).
pub struct Plugin {
    pub info: PluginInfo,
    engine: Engine,
    _ticker: Arc<Ticker>,
    pre: wit::BindingsPre,
    limits: Limits,
    config: Arc<str>,
    name_tag: Arc<str>,
    patterns: Patterns,
    /// What its patterns mean (its WIT version's syntax), for `set_patterns`.
    syntax: PatternSyntax,
    /// Instances that finished a call cleanly, waiting for the next one.
    warm: std::sync::Mutex<Vec<Warm>>,
    shared: Arc<Shared>,
    /// This plugin's share of the runtime's call slots.
    own_calls: Semaphore,
}

/// An instance kept between calls, with the store it was created with.
struct Warm {
    store: Store<CallState>,
    bindings: wit::Bindings,
    calls: u32,
}

/// Pages one instance serves before it is replaced, which bounds what a slow leak in a
/// plugin can accumulate.
const WARM_MAX_CALLS: u32 = 1_000;
/// A warm instance whose memory grew past this is dropped after its call, so that one huge
/// page does not pin its memory for the rest of the crawl.
const WARM_MAX_MEMORY: usize = 16 << 20;

type CallResult<T> = Result<T, PluginError>;

impl Plugin {
    /// Sets the JSON document the plugin's `config()` import returns.
    pub fn set_config(&mut self, json: &serde_json::Value) {
        self.config = Arc::from(json.to_string().as_str());
        // Warm instances answer `config()` from the store they were made with.
        self.drop_warm();
    }

    fn drop_warm(&self) {
        if let Ok(mut warm) = self.warm.lock() {
            self.shared
                .warm_idle
                .fetch_sub(warm.len(), Ordering::Relaxed);
            warm.clear();
        }
    }

    /// Replaces the manifest's URL patterns (crawl config `[plugins.NAME] patterns`).
    pub fn set_patterns(&mut self, patterns: Vec<String>) -> Result<()> {
        self.patterns = Patterns::build(self.syntax, &patterns)?;
        self.info.patterns = patterns;
        Ok(())
    }

    /// Whether this plugin's URL patterns claim `url`.
    pub fn matches(&self, url: &str) -> bool {
        self.patterns.is_match(url)
    }

    fn new_store(&self) -> Store<CallState> {
        let output = GuestOutput::new(self.limits.max_log_kib);
        let wasi = WasiCtx::builder()
            .stdout(output.stdout_pipe())
            .stderr(output.stderr_pipe())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(self.limits.memory_mib),
            output,
            plugin: Arc::clone(&self.name_tag),
            config: Arc::clone(&self.config),
            deadline: Instant::now(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Every tick a running call yields to the executor (so it never holds a worker
        // thread for long) and, once its budget is spent, traps.
        store.epoch_deadline_callback(|ctx| {
            Ok(if Instant::now() >= ctx.data().deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store
    }

    fn budget(&self) -> Duration {
        Duration::from_millis(self.limits.timeout_ms)
    }

    /// Waits for a call slot (the runtime's and this plugin's), which does not count
    /// against the call's budget.
    async fn slot(
        &self,
    ) -> CallResult<(
        tokio::sync::SemaphorePermit<'_>,
        tokio::sync::OwnedSemaphorePermit,
    )> {
        let own = self
            .own_calls
            .acquire()
            .await
            .map_err(|_| PluginError::Trap("the plugin runtime is shutting down".into()))?;
        let global = Arc::clone(&self.shared.calls)
            .acquire_owned()
            .await
            .map_err(|_| PluginError::Trap("the plugin runtime is shutting down".into()))?;
        Ok((own, global))
    }

    /// Runs `work` under the call's deadline: the epoch callback traps compiled code at
    /// `deadline`, and this timeout drops a call that is blocked in a host call instead.
    async fn within_deadline<T>(
        &self,
        deadline: Instant,
        work: impl std::future::Future<Output = CallResult<T>>,
    ) -> CallResult<T> {
        let wall = tokio::time::Instant::from_std(deadline + 2 * EPOCH_TICK);
        tokio::time::timeout_at(wall, work)
            .await
            .unwrap_or(Err(PluginError::Timeout(self.limits.timeout_ms)))
    }

    async fn call_manifest(&self) -> CallResult<RawManifest> {
        let _slot = self.slot().await?;
        let deadline = Instant::now() + self.budget();
        self.within_deadline(deadline, async {
            let mut store = self.new_store();
            store.data_mut().deadline = deadline;
            store.set_epoch_deadline(1);
            let result = match self.pre.instantiate(&mut store).await {
                Ok(inst) => inst.manifest(&mut store).await,
                Err(e) => Err(e),
            };
            let result = result.map_err(|e| self.classify(&store, e));
            store.data().output.finish_call(&self.name_tag);
            result
        })
        .await
    }

    /// The plugin's start requests (WIT 0.2; none for a 0.1 plugin), built from its config
    /// and checked like the requests of a page, within the same budgets as a `parse` call.
    pub async fn start_requests(&self) -> CallResult<Vec<LinkOut>> {
        let _slot = self.slot().await?;
        let deadline = Instant::now() + self.budget();
        let raw = self
            .within_deadline(deadline, async {
                let mut store = self.new_store();
                store.data_mut().deadline = deadline;
                store.set_epoch_deadline(1);
                let result = match self.pre.instantiate(&mut store).await {
                    Ok(inst) => inst.start_requests(&mut store).await,
                    Err(e) => Err(e),
                };
                let result = result.map_err(|e| self.classify(&store, e));
                store.data().output.finish_call(&self.name_tag);
                result
            })
            .await?;
        validate::check_output(&self.limits, Vec::new(), raw).map(|out| out.links)
    }

    /// Runs `parse` on one page, in a warm instance or a fresh one, within the plugin's
    /// budgets.
    pub async fn parse(&self, page: &PageInput) -> CallResult<ParseOutput> {
        self.parse_timed(page).await.0
    }

    /// [`Plugin::parse`], and how long the call took from the moment it got its slot (the
    /// wait for a slot is not the plugin's time).
    pub async fn parse_timed(&self, page: &PageInput) -> (CallResult<ParseOutput>, Duration) {
        match self.parse_timed_if(page, || true).await {
            Some(done) => done,
            None => (Err(PluginError::NotMine), Duration::ZERO),
        }
    }

    /// [`Plugin::parse_timed`], unless `wanted` says no once the call has its slot: a page
    /// that waited for a slot while the crawl disabled the plugin is then not parsed (`None`).
    pub async fn parse_timed_if(
        &self,
        page: &PageInput,
        wanted: impl Fn() -> bool,
    ) -> Option<(CallResult<ParseOutput>, Duration)> {
        let slot = match self.slot().await {
            Ok(s) => s,
            Err(e) => return Some((Err(e), Duration::ZERO)),
        };
        if !wanted() {
            return None;
        }
        let started = Instant::now();
        let result = self.parse_in_slot(page).await;
        drop(slot);
        Some((result, started.elapsed()))
    }

    async fn parse_in_slot(&self, page: &PageInput) -> CallResult<ParseOutput> {
        let deadline = Instant::now() + self.budget();
        let warm = self.take_warm();
        let reused = warm.is_some();
        let result = self
            .within_deadline(deadline, self.call_parse(warm, page, deadline))
            .await;
        let (items, links) = match result {
            // A crash a fresh instance might not have had (state or memory left by earlier
            // pages) gets one more try on a fresh instance, with a budget of its own, so
            // reuse never costs a page. A deadline is not retried: a second run would only
            // wait as long again.
            Err(e @ (PluginError::Trap(_) | PluginError::Memory(_))) if reused => {
                tracing::debug!(
                    plugin = &*self.name_tag,
                    "a warm instance failed ({e}); trying a fresh one"
                );
                let deadline = Instant::now() + self.budget();
                self.within_deadline(deadline, self.call_parse(None, page, deadline))
                    .await?
            }
            other => other?,
        };
        validate::check_output(&self.limits, items, links)
    }

    /// [`Plugin::parse`] for callers outside an async runtime (tests, small tools).
    pub fn parse_blocking(&self, page: &PageInput) -> CallResult<ParseOutput> {
        block_on(self.parse(page)).map_err(PluginError::Trap)?
    }

    fn take_warm(&self) -> Option<Warm> {
        let w = self.warm.lock().ok().and_then(|mut w| w.pop());
        if w.is_some() {
            self.shared.warm_idle.fetch_sub(1, Ordering::Relaxed);
        }
        w
    }

    /// Keeps `w` for the next call if the runtime's warm budget has room.
    fn keep_warm(&self, w: Warm) {
        let idle = &self.shared.warm_idle;
        if idle.fetch_add(1, Ordering::Relaxed) >= self.shared.slots.warm {
            idle.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        match self.warm.lock() {
            Ok(mut list) => list.push(w),
            Err(_) => {
                idle.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// One `parse` call on `warm`, or on a fresh instance. The instance goes back to the warm
    /// list when the call ended without a trap; a call cancelled at its deadline drops it.
    async fn call_parse(
        &self,
        warm: Option<Warm>,
        page: &PageInput,
        deadline: Instant,
    ) -> CallResult<(Vec<RawItem>, Vec<RawLink>)> {
        let mut w = match warm {
            Some(mut w) => {
                w.store.data_mut().limiter.hit = false;
                w.store.data_mut().deadline = deadline;
                w.store.set_epoch_deadline(1);
                w
            }
            None => {
                let mut store = self.new_store();
                store.data_mut().deadline = deadline;
                store.set_epoch_deadline(1);
                let bindings = match self.pre.instantiate(&mut store).await {
                    Ok(b) => b,
                    Err(e) => {
                        let err = self.classify(&store, e);
                        store.data().output.finish_call(&self.name_tag);
                        return Err(err);
                    }
                };
                Warm {
                    store,
                    bindings,
                    calls: 0,
                }
            }
        };
        let result = w.bindings.parse(&mut w.store, page).await;
        w.calls += 1;
        let output = match result {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(wit::Declined::NotMine)) => Err(PluginError::NotMine),
            Ok(Err(wit::Declined::Failed(m))) => Err(PluginError::Failed(
                crate::escape::escape(&truncate(&m, 1000)).into_owned(),
            )),
            Err(e) => {
                let err = self.classify(&w.store, e);
                w.store.data().output.finish_call(&self.name_tag);
                return Err(err);
            }
        };
        w.store.data().output.finish_call(&self.name_tag);
        let keep = w.calls < WARM_MAX_CALLS
            && w.store.data().limiter.used <= WARM_MAX_MEMORY
            && reuse_allowed();
        if keep {
            self.keep_warm(w);
        }
        output
    }

    /// Turns a wasmtime error into the reason a user can act on.
    fn classify(&self, store: &Store<CallState>, e: wasmtime::Error) -> PluginError {
        let data = store.data();
        if data.limiter.hit {
            return PluginError::Memory(self.limits.memory_mib);
        }
        if data.output.overflowed() || e.downcast_ref::<LogOverflow>().is_some() {
            return PluginError::LogLimit(format!(
                "wrote more than {} KiB to its log, stdout and stderr in one call (limits.max_log_kib)",
                self.limits.max_log_kib
            ));
        }
        if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return PluginError::Trap(format!(
                "the plugin called exit({}); a plugin must return from its functions instead",
                exit.0
            ));
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
                let said = data.output.stderr_text();
                // Rust prints "thread '..' panicked at file:line:col:" and the message on
                // the next line.
                let mut lines = said.lines().skip_while(|l| !l.contains("panicked"));
                let panic_line = lines.next().map(|at| {
                    let msg = lines.next().unwrap_or("");
                    truncate(&format!("{msg} ({})", at.trim_end_matches(':')), 300).into_owned()
                });
                match panic_line {
                    Some(p) => PluginError::Trap(format!(
                        "plugin panicked: {}",
                        crate::escape::escape(&p)
                    )),
                    None => PluginError::Trap(format!("{trap}")),
                }
            }
            None => PluginError::Trap(
                crate::escape::escape(&truncate(&format!("{e:#}"), 500)).into_owned(),
            ),
        }
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        self.drop_warm();
    }
}

/// Item validation as the crawl applies it, for the property tests.
#[cfg(test)]
pub(crate) fn validate_item_for_fuzzing(json: String) -> Result<ItemOut, PluginError> {
    validate::check_item(
        0,
        validate::RawItem {
            kind: "k".into(),
            json,
        },
    )
}

/// Runs `f` on a runtime of its own; refused inside an async runtime, where blocking would
/// stall its workers.
fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, String> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err("a blocking plugin call inside an async runtime; use the async API".into());
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(f))
        .map_err(|e| format!("cannot start a runtime for the call: {e}"))
}

/// `SANDCRAWL_NO_WARM=1` gives every page a fresh instance (for measuring and debugging).
fn reuse_allowed() -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ALLOWED.get_or_init(|| std::env::var_os("SANDCRAWL_NO_WARM").is_none())
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
