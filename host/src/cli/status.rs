//! `sandcrawl status`: a shared crawl as Redis holds it, printed for a person (or as JSON).
//! It owns these flags; it must not change the crawl.

use anyhow::{Result, bail};
use clap::Args;
use std::time::Duration;

#[derive(Args)]
pub struct StatusArgs {
    /// The crawl's Redis: redis://[:PASSWORD@]HOST:PORT/DB.
    #[arg(
        long,
        value_name = "URL",
        env = "SANDCRAWL_FRONTIER",
        hide_env_values = true
    )]
    frontier: String,
    /// The shared crawl's name.
    #[arg(long, value_name = "NAME")]
    crawl_id: String,
    /// Seconds without a heartbeat after which a worker counts as gone (its lease_ttl_s).
    #[arg(long, default_value_t = 60)]
    lease_ttl_s: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn status(args: StatusArgs) -> Result<i32> {
    let cfg = sandcrawl::config::CrawlConfig {
        frontier: Some(args.frontier.clone()),
        crawl_id: Some(args.crawl_id.clone()),
        ..Default::default()
    };
    cfg.check_shared()?;
    let s = sandcrawl::frontier::redis::status::read(
        &args.frontier,
        &args.crawl_id,
        Duration::from_secs(args.lease_ttl_s),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{s}");
    }
    if !s.exists {
        bail!(
            "no crawl {} in {}: check --crawl-id (crawls are created by `sandcrawl run --frontier … --crawl-id …`)",
            args.crawl_id,
            sandcrawl::sink::target::mask(&args.frontier)
        );
    }
    Ok(0)
}
