//! `sandcrawl demo` and `serve-demo`: the bundled offline site, served on 127.0.0.1 and
//! crawled (or just served). It must not touch a state directory that is not a demo's.

use super::say::say;

use super::run::{RunArgs, crawl};
use anyhow::{Context as _, Result, bail};
use sandcrawl::config::CrawlConfig;
use std::net::SocketAddr;
use std::path::PathBuf;

pub async fn serve(addr: SocketAddr) -> Result<i32> {
    let site = sandcrawl::demo::start(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    say!("demo site at {} (Ctrl+C to stop)", site.url());
    tokio::signal::ctrl_c().await.ok();
    Ok(0)
}

pub async fn demo(mut run: RunArgs) -> Result<i32> {
    let site = sandcrawl::demo::start("127.0.0.1:0".parse()?)
        .await
        .context("cannot start the demo site on 127.0.0.1")?;
    say!("demo site serving at {}", site.url());
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
