//! `sandcrawl replay`: flags into a config, plugins loaded, the stored pages of a `--warc`
//! folder run through them (`crawl::replay`), the summary printed.

use super::say::say;

use anyhow::{Result, bail};
use clap::Args;
use sandcrawl::config::{CrawlConfig, parse_set};
use std::path::PathBuf;

#[derive(Args)]
pub struct ReplayArgs {
    /// The WARC folder a crawl wrote with --warc.
    #[arg(long)]
    warc: PathBuf,
    /// Plugin files or folders of *.wasm (repeatable): the builds to run over the pages.
    #[arg(long = "plugins")]
    plugin_path: Vec<PathBuf>,
    /// Where items go (repeatable): a file, postgres://… or mysql://…, as for `run`.
    #[arg(long)]
    out: Vec<String>,
    /// Format of file outputs: jsonl or csv.
    #[arg(long)]
    format: Option<String>,
    /// TOML config file (plugin settings, output.sql, normalize); flags override its keys.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Set any config key (repeatable), as for `run`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

pub async fn replay(args: ReplayArgs) -> Result<i32> {
    use toml::Value as V;
    if args.out.is_empty() {
        bail!("replay needs --out (a file, postgres://… or mysql://…): where the items go");
    }
    let mut o: Vec<(String, V)> = Vec::new();
    for kv in &args.set {
        o.push(parse_set(kv)?);
    }
    o.push((
        "output.to".into(),
        V::Array(args.out.iter().cloned().map(V::String).collect()),
    ));
    if let Some(f) = &args.format {
        o.push(("format".into(), V::String(f.clone())));
    }
    if !args.plugin_path.is_empty() {
        o.push((
            "plugin_paths".into(),
            V::Array(
                args.plugin_path
                    .iter()
                    .map(|p| V::String(p.display().to_string()))
                    .collect(),
            ),
        ));
    }
    let cfg = CrawlConfig::load(
        super::run::config_file(args.config.as_deref()).as_deref(),
        &o,
    )?;
    let plugins = sandcrawl::crawl::roster::load(&cfg).await?;
    let refused = plugins.refused.len();
    let summary = sandcrawl::crawl::replay::run(cfg, plugins, &args.warc).await?;
    super::say::report(&summary);
    if refused > 0 {
        say!("error: {refused} plugin file(s) could not be loaded; the replay ran without them");
        return Ok(3);
    }
    Ok(0)
}
