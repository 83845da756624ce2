//! `--watch`: hot reload of plugin files during a crawl.
//!
//! It polls the crawl's plugin folders and files, and once a `.wasm` file has changed (or
//! appeared) and then kept the same size and modification time for one more poll (so a file
//! still being written is not read half-way), it loads the new build on a thread of its own,
//! off the crawl's executor (compiling takes seconds), applies `--locked` and the
//! `[plugins.NAME]` settings, and swaps it into the roster for pages routed from then on. A
//! build that fails any of that is one error line, and the running build stays. A removed
//! file stops routing to its plugin.
//!
//! It owns the file stamps and the polling loop; it must not route pages or touch the
//! frontier, the sink or the summary.

use super::roster::{Active, Installed, Locks, Roster, configure, warn_rendering};
use crate::config::CrawlConfig;
use crate::escape::escape;
use crate::plugin::{Plugin, Runtime, wasm_files_in};
use anyhow::{Result, anyhow};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// How often the plugin paths are looked at.
const POLL: Duration = Duration::from_millis(300);

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

fn stamps(paths: &[PathBuf]) -> HashMap<PathBuf, Stamp> {
    wasm_files_in(paths)
        .into_iter()
        .filter_map(|p| {
            let m = std::fs::metadata(&p).ok()?;
            Some((
                p,
                Stamp {
                    len: m.len(),
                    modified: m.modified().ok(),
                },
            ))
        })
        .collect()
}

pub struct Watcher {
    runtime: Arc<Runtime>,
    roster: Arc<Roster>,
    cfg: Arc<CrawlConfig>,
    /// The stamp of each file as last acted on (loaded, refused or present at the start).
    seen: HashMap<PathBuf, Stamp>,
    /// Changed files waiting for their stamp to hold still for one poll.
    settling: HashMap<PathBuf, Stamp>,
    /// Files whose last load failed. They are not retried until they change, or until a
    /// plugin is removed (a build refused for a name another file held loads once that file
    /// is gone).
    failed: std::collections::HashSet<PathBuf>,
}

impl Watcher {
    /// Starts from the files as they are now: the crawl has just loaded (or refused) them.
    pub fn new(runtime: Arc<Runtime>, roster: Arc<Roster>, cfg: Arc<CrawlConfig>) -> Self {
        let seen = stamps(&cfg.plugin_paths);
        Watcher {
            runtime,
            roster,
            cfg,
            seen,
            settling: HashMap::new(),
            failed: std::collections::HashSet::new(),
        }
    }

    /// Polls until `stop` turns true or its sender is gone.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) {
        tracing::info!(
            "watching {} for plugin changes",
            self.cfg
                .plugin_paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
            self.poll().await;
        }
    }

    async fn poll(&mut self) {
        let now = stamps(&self.cfg.plugin_paths);
        let gone: Vec<PathBuf> = self
            .seen
            .keys()
            .filter(|p| !now.contains_key(*p))
            .cloned()
            .collect();
        for path in &gone {
            self.seen.remove(path);
            self.settling.remove(path);
            self.failed.remove(path);
            if let Some(name) = self.roster.remove(path) {
                tracing::warn!(plugin = %name, "{} was removed: no more pages go to this plugin", path.display());
            }
        }
        if !gone.is_empty() {
            for path in self.failed.drain() {
                self.seen.remove(&path);
            }
        }
        for (path, stamp) in now {
            if self.seen.get(&path) == Some(&stamp) {
                self.settling.remove(&path);
                continue;
            }
            if self.settling.insert(path.clone(), stamp) != Some(stamp) {
                continue; // changed since the last poll: wait for it to hold still
            }
            self.settling.remove(&path);
            self.seen.insert(path.clone(), stamp);
            let result = self.reload(&path).await;
            if result.is_err() {
                self.failed.insert(path.clone());
            } else {
                self.failed.remove(&path);
            }
            match result {
                Ok((name, version, sha256, Installed::Added)) => tracing::info!(
                    plugin = %name,
                    version = %escape(&version),
                    sha256 = %sha256,
                    "{}: new plugin loaded; it gets pages routed from now on",
                    path.display()
                ),
                Ok((name, version, sha256, Installed::Replaced(old))) => tracing::info!(
                    plugin = %name,
                    version = %escape(&version),
                    sha256 = %sha256,
                    "{}: reloaded (was version {}); pages routed from now on use this build",
                    path.display(),
                    escape(&old)
                ),
                Err(e) => tracing::error!(
                    "{}: not reloaded, the running build stays: {}",
                    path.display(),
                    escape(&format!("{e:#}"))
                ),
            }
        }
    }

    /// Loads one file on a thread of its own and installs it.
    async fn reload(&self, path: &std::path::Path) -> Result<(String, String, String, Installed)> {
        let plugin = self.compile(path.to_owned()).await?;
        if self.cfg.locked {
            // Read the lock afresh: it may have been rewritten along with the plugin.
            if let Err(why) = Locks::default().check(&plugin)? {
                return Err(anyhow!("{why}"));
            }
        }
        let mut plugin = plugin;
        configure(&mut plugin, &self.cfg)?;
        warn_rendering(&plugin);
        let (name, version, sha256) = (
            plugin.info.name.clone(),
            plugin.info.version.clone(),
            plugin.info.sha256.clone(),
        );
        let installed = self
            .roster
            .install(Active::new(plugin, &self.cfg))
            .map_err(|e| anyhow!("{e}"))?;
        Ok((name, version, sha256, installed))
    }

    /// Compiling a component takes seconds of CPU: it runs on its own thread (with a
    /// current-thread runtime for the manifest call), so the crawl's workers keep going.
    async fn compile(&self, path: PathBuf) -> Result<Plugin> {
        let runtime = Arc::clone(&self.runtime);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("sandcrawl-reload".into())
            .spawn(move || {
                let _ = tx.send(runtime.load_file_blocking(&path));
            })
            .map_err(|e| anyhow!("cannot start the reload thread: {e}"))?;
        rx.await
            .map_err(|_| anyhow!("the reload thread ended without an answer"))?
    }
}
