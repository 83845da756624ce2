//! `sandcrawl parse`: one plugin on one saved page, offline, printed as JSON, for plugin
//! authors. It must not fetch.

use anyhow::{Context as _, Result, anyhow, bail};
use sandcrawl::config::default_cache_dir;
use sandcrawl::plugin::{Limits, PageInput, Runtime};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ParseArgs {
    /// The plugin .wasm file.
    #[arg(long)]
    pub plugin: PathBuf,
    /// The URL the page was served at (plugins resolve links against it).
    #[arg(long)]
    pub url: String,
    /// The saved page.
    pub page: PathBuf,
    /// HTTP status to report to the plugin.
    #[arg(long, default_value_t = 200)]
    pub status: u16,
    /// Content-Type to report to the plugin.
    #[arg(long, default_value = "text/html; charset=utf-8")]
    pub content_type: String,
    /// Plugin configuration as JSON (what `config()` returns).
    #[arg(long)]
    pub config_json: Option<String>,
}

pub async fn parse_offline(args: ParseArgs) -> Result<i32> {
    let ParseArgs {
        plugin,
        url,
        page,
        status,
        content_type,
        config_json,
    } = args;
    let parsed = url::Url::parse(&url).map_err(|e| anyhow!("--url {url:?} is not a URL: {e}"))?;
    let rt = Runtime::new(Limits::default(), default_cache_dir())?;
    let mut p = rt.load_file(&plugin).await?;
    if let Some(c) = &config_json {
        let v: serde_json::Value =
            serde_json::from_str(c).map_err(|e| anyhow!("--config-json is not valid JSON: {e}"))?;
        p.set_config(&v);
    }
    let body =
        std::fs::read(&page).with_context(|| format!("cannot read page {}", page.display()))?;
    let headers = vec![("content-type".to_owned(), content_type)];
    let encoding = sandcrawl::fetch::detect_encoding(&headers, &body).to_owned();
    let input = PageInput {
        url: parsed.to_string(),
        status,
        headers,
        body: body.into(),
        encoding,
        ..PageInput::default()
    };
    match p.parse(&input).await {
        Ok(out) => {
            // Items are printed as the plugin wrote them (never re-encoded through a value
            // tree), so the output is about the size of what the plugin returned.
            #[derive(serde::Serialize)]
            struct Shown<'a> {
                kind: &'a str,
                fields: &'a serde_json::value::RawValue,
            }
            #[derive(serde::Serialize)]
            struct Doc<'a> {
                plugin: serde_json::Value,
                url: &'a str,
                items: Vec<Shown<'a>>,
                links: &'a [sandcrawl::plugin::LinkOut],
            }
            let doc = Doc {
                plugin: serde_json::json!({ "name": p.info.name, "version": p.info.version, "sha256": p.info.sha256 }),
                url: parsed.as_str(),
                items: out
                    .items
                    .iter()
                    .map(|i| Shown {
                        kind: &i.kind,
                        fields: &i.json,
                    })
                    .collect(),
                links: &out.links,
            };
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            serde_json::to_writer_pretty(&mut w, &doc)?;
            std::io::Write::write_all(&mut w, b"\n")?;
            std::io::Write::flush(&mut w)?;
            Ok(0)
        }
        Err(e) => bail!("plugin {} on {}: {e}", p.info.name, page.display()),
    }
}
