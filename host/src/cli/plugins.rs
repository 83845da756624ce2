//! `sandcrawl plugins list|check`: what a folder of plugins holds, and whether one file
//! loads. Everything a plugin wrote is escaped before it is printed.

use anyhow::Result;
use sandcrawl::config::default_cache_dir;
use sandcrawl::escape::escape;
use sandcrawl::plugin::{Limits, Runtime};
use std::path::Path;

pub async fn check(file: &Path) -> Result<i32> {
    let rt = Runtime::new(Limits::default(), default_cache_dir())?;
    let p = rt.load_file(file).await?;
    println!(
        "ok: {} {} (WIT {}, sha256 {}) handles {}",
        p.info.name,
        escape(&p.info.version),
        p.info.wit_version,
        p.info.sha256,
        escape(&p.info.patterns.join(" "))
    );
    Ok(0)
}

pub async fn list(dir: &Path, json: bool) -> Result<i32> {
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
