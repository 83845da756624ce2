//! The plugins a crawl routes pages to, held as one set that `--watch` can swap while pages
//! are in flight: a page is parsed by the builds that were current when it was routed, and
//! a swap never waits for it.
//!
//! It owns loading a crawl's plugins (files and folders, `--locked`, the `[plugins.NAME]`
//! settings), each loaded build's crawl-level state (enabled by config, its failure health),
//! and the rules for putting a new build in place of an old one. It must not compile or run
//! plugins (`plugin`) nor watch files (`reload`).

use super::health::PluginHealth;
use crate::config::CrawlConfig;
use crate::escape::escape;
use crate::plugin::lock::PluginLock;
use crate::plugin::{Plugin, Runtime};
use anyhow::{Result, anyhow};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

/// A crawl's plugins as loaded at its start.
#[derive(Default)]
pub struct Loaded {
    pub plugins: Vec<Plugin>,
    /// One line per file that could not be loaded (it goes into summary.json).
    pub refused: Vec<String>,
    /// The runtime they were loaded with; `--watch` compiles new builds with it, so they
    /// share the running plugins' call slots.
    pub runtime: Option<Arc<Runtime>>,
}

/// Loads the crawl's plugins; a file that cannot be loaded is one line in the log and in
/// the returned list, and the others still run.
pub async fn load(cfg: &CrawlConfig) -> Result<Loaded> {
    if cfg.plugin_paths.is_empty() {
        if cfg.watch {
            return Err(anyhow!(
                "--watch reloads plugin files, but no plugins are given; add --plugins DIR"
            ));
        }
        tracing::warn!("no plugins given (--plugins): only the built-in link follower runs");
        return Ok(Loaded::default());
    }
    let rt = Runtime::new(cfg.limits.clone(), cfg.cache_path())?;
    let (found, mut refused) = rt.load_paths(&cfg.plugin_paths).await?;
    let mut locks = Locks::default();
    let mut plugins = Vec::new();
    for mut p in found {
        if cfg.locked
            && let Err(why) = locks.check(&p)?
        {
            refused.push(escape(&why).into_owned());
            continue;
        }
        configure(&mut p, cfg)?;
        warn_rendering(&p);
        tracing::info!(plugin = %p.info.name, version = %escape(&p.info.version), wit = %p.info.wit_version, "loaded {}", p.info.path.display());
        plugins.push(p);
    }
    for e in &refused {
        tracing::error!("plugin not loaded: {e}");
    }
    for name in cfg.plugins.keys() {
        if !plugins.iter().any(|p| &p.info.name == name) {
            tracing::warn!("config has [plugins.{name}] but no plugin of that name is loaded");
        }
    }
    Ok(Loaded {
        plugins,
        refused,
        runtime: Some(Arc::new(rt)),
    })
}

/// A plugin that declares browser rendering (WIT 0.2) still gets its pages: fetched over
/// plain HTTP, which this sandcrawl does, and it is told so once.
pub fn warn_rendering(p: &Plugin) {
    if p.info.rendering == crate::plugin::Rendering::Browser {
        tracing::warn!(
            plugin = %p.info.name,
            "declares that its pages need a browser, which this sandcrawl does not run yet: they are fetched over plain HTTP, so script-built content is missing"
        );
    }
}

/// Applies the crawl's `[plugins.NAME]` settings (config, pattern override) to a build.
pub fn configure(p: &mut Plugin, cfg: &CrawlConfig) -> Result<()> {
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
    Ok(())
}

/// The `plugins.lock` files governing plugin files, each read once.
#[derive(Default)]
pub struct Locks {
    read: HashMap<PathBuf, PluginLock>,
}

impl Locks {
    /// `Ok(Err(why))` when the lock beside the file does not pin this exact build; `Err`
    /// when that lock cannot be read.
    pub fn check(&mut self, p: &Plugin) -> Result<Result<(), String>> {
        let path = PluginLock::path_for(&p.info.path);
        if !self.read.contains_key(&path) {
            let lock = PluginLock::read(&path)?;
            self.read.insert(path.clone(), lock);
        }
        Ok(self.read.get(&path).map_or(Ok(()), |l| l.check(&p.info)))
    }
}

/// One loaded build with its crawl-level state.
pub struct Active {
    pub plugin: Plugin,
    /// `[plugins.NAME] enabled = false` keeps a loaded plugin from claiming pages.
    pub enabled: bool,
    /// Its run of crashes; a new build starts with a clean record.
    pub health: PluginHealth,
    /// The manifest name, shared by every page's run record instead of copied per page.
    pub name: Arc<str>,
}

impl Active {
    pub fn new(plugin: Plugin, cfg: &CrawlConfig) -> Self {
        let settings = cfg.plugins.get(&plugin.info.name);
        Active {
            enabled: settings.and_then(|s| s.enabled).unwrap_or(true),
            health: PluginHealth::new(
                settings
                    .and_then(|s| s.max_failures)
                    .unwrap_or(cfg.plugin_max_failures),
            ),
            name: Arc::from(plugin.info.name.as_str()),
            plugin,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// The current set, in load order; cloning it is one reference count.
pub type Set = Arc<Vec<Arc<Active>>>;

/// The swappable set of plugins.
pub struct Roster {
    current: RwLock<Set>,
}

/// What [`Roster::install`] replaced.
#[derive(Debug, PartialEq, Eq)]
pub enum Installed {
    Added,
    /// The version the new build replaced.
    Replaced(String),
}

impl Roster {
    pub fn new(plugins: Vec<Plugin>, cfg: &CrawlConfig) -> Self {
        let set = plugins.into_iter().map(|p| Arc::new(Active::new(p, cfg)));
        Roster {
            current: RwLock::new(Arc::new(set.collect())),
        }
    }

    /// The plugins new pages are routed to.
    pub fn current(&self) -> Set {
        match self.current.read() {
            Ok(s) => Arc::clone(&s),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn swap(
        &self,
        change: impl FnOnce(&mut Vec<Arc<Active>>) -> Result<Installed, String>,
    ) -> Result<Installed, String> {
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut next: Vec<Arc<Active>> = guard.as_ref().clone();
        let done = change(&mut next)?;
        *guard = Arc::new(next);
        Ok(done)
    }

    /// Puts a new build in place of the one loaded from the same file, or adds it. A build
    /// whose name another file already holds is refused: two plugins must not share a name.
    pub fn install(&self, new: Active) -> Result<Installed, String> {
        self.swap(|set| {
            let path = &new.plugin.info.path;
            if let Some(other) = set
                .iter()
                .find(|a| a.name() == new.name() && &a.plugin.info.path != path)
            {
                return Err(format!(
                    "{}: a plugin named {:?} is already loaded from {}; rename one of them (manifest name)",
                    path.display(),
                    new.name(),
                    other.plugin.info.path.display()
                ));
            }
            let same_file = set.iter().position(|a| &a.plugin.info.path == path);
            let new = Arc::new(new);
            match same_file {
                Some(i) => {
                    let old = std::mem::replace(&mut set[i], new);
                    Ok(Installed::Replaced(old.plugin.info.version.clone()))
                }
                None => {
                    set.push(new);
                    Ok(Installed::Added)
                }
            }
        })
    }

    /// Stops routing to the build loaded from `path`; returns its name if there was one.
    pub fn remove(&self, path: &Path) -> Option<String> {
        let mut name = None;
        let _ = self.swap(|set| {
            if let Some(i) = set.iter().position(|a| a.plugin.info.path == path) {
                name = Some(set.remove(i).name().to_owned());
            }
            Ok(Installed::Added)
        });
        name
    }
}
