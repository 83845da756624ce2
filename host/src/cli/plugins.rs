//! `sandcrawl plugins list|check`: what a folder of plugins holds, and whether a file (or
//! every file of a folder) loads. Everything a plugin wrote is escaped before it is printed.

use super::say::say;

use anyhow::Result;
use sandcrawl::config::default_cache_dir;
use sandcrawl::escape::escape;
use sandcrawl::plugin::{Limits, Runtime};
use std::path::Path;

pub async fn check(path: &Path) -> Result<i32> {
    let rt = Runtime::new(Limits::default(), default_cache_dir())?;
    let (plugins, errors) = if path.is_dir() {
        let (plugins, errors) = rt.load_dir(path).await?;
        if plugins.is_empty() && errors.is_empty() {
            anyhow::bail!(
                "{} holds no .wasm files; build plugins with `cargo build --release --target wasm32-wasip2`",
                path.display()
            );
        }
        (plugins, errors)
    } else {
        (vec![rt.load_file(path).await?], Vec::new())
    };
    for p in &plugins {
        println!(
            "ok: {} {} (WIT {}, sha256 {}) handles {}",
            p.info.name,
            escape(&p.info.version),
            p.info.wit_version,
            p.info.sha256,
            escape(&p.info.patterns.join(" "))
        );
    }
    for e in &errors {
        say!("error: {e}");
    }
    Ok(if errors.is_empty() { 0 } else { 1 })
}

/// Writes DIR/plugins.lock; every plugin in the folder must load (a lock never pins a
/// broken build).
pub async fn lock(dir: &Path) -> Result<i32> {
    use sandcrawl::plugin::lock::{LOCK_FILE, PluginLock};
    let rt = Runtime::new(Limits::default(), default_cache_dir())?;
    let (plugins, errors) = rt.load_dir(dir).await?;
    if !errors.is_empty() {
        for e in &errors {
            say!("error: {e}");
        }
        anyhow::bail!(
            "{} plugin file(s) in {} cannot be loaded; fix or remove them, then lock again",
            errors.len(),
            dir.display()
        );
    }
    if plugins.is_empty() {
        anyhow::bail!("{} holds no .wasm files to lock", dir.display());
    }
    let path = dir.join(LOCK_FILE);
    PluginLock::of(plugins.iter().map(|p| &p.info)).write(&path)?;
    for p in &plugins {
        println!(
            "locked: {} {} sha256 {}",
            p.info.name,
            escape(&p.info.version),
            p.info.sha256
        );
    }
    say!("wrote {}", path.display());
    Ok(0)
}

pub async fn list(dir: &Path, json: bool) -> Result<i32> {
    let rt = Runtime::new(Limits::default(), default_cache_dir())?;
    let (plugins, errors) = rt.load_dir(dir).await?;
    for e in &errors {
        say!("error: {e}");
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
