//! `sandcrawl parse`: one plugin on one saved page, offline, printed as JSON, for plugin
//! authors. It must not fetch.

use super::say::say;

use anyhow::{Context as _, Result, anyhow, bail};
use sandcrawl::config::default_cache_dir;
use sandcrawl::plugin::{Limits, PageInput, Runtime};
use std::path::{Path, PathBuf};

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
    /// Content-Type to report to the plugin. Default: the one in PAGE.headers.json (written
    /// by `sandcrawl fetch`), else "text/html; charset=utf-8".
    #[arg(long)]
    pub content_type: Option<String>,
    /// Compare the items and links with this file (a previous output of `parse`) and exit
    /// non-zero with the differences when they changed.
    #[arg(long, value_name = "GOLDEN_JSON")]
    pub expect: Option<PathBuf>,
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
        expect,
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
    // A page saved by `sandcrawl fetch` comes with its response head.
    let side = super::fetch::sidecar_path(&page);
    let saved: Option<super::fetch::Sidecar> = match std::fs::read(&side) {
        Ok(raw) => Some(serde_json::from_slice(&raw).map_err(|e| {
            anyhow!(
                "{} is not a headers file of `sandcrawl fetch`: {e}",
                side.display()
            )
        })?),
        Err(_) => None,
    };
    let headers = match (content_type, saved) {
        (Some(ct), _) => vec![("content-type".to_owned(), ct)],
        (None, Some(saved)) => saved.headers,
        (None, None) => vec![(
            "content-type".to_owned(),
            "text/html; charset=utf-8".to_owned(),
        )],
    };
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
            if let Some(golden) = expect {
                return compare(&golden, &serde_json::to_value(&doc)?);
            }
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

/// Differences shown at most, so a wholly changed page stays readable.
const MAX_SHOWN: usize = 20;

/// Compares the items and links of `got` with the golden file's (the plugin's identity and
/// sha256 are not compared: they change with every build). Exit code 0 when equal; 1 with
/// one line per difference on stderr.
fn compare(golden: &Path, got: &serde_json::Value) -> Result<i32> {
    let raw = std::fs::read(golden).with_context(|| {
        format!(
            "cannot read {}; write it first with `sandcrawl parse … > {}`",
            golden.display(),
            golden.display()
        )
    })?;
    let want: serde_json::Value = serde_json::from_slice(&raw)
        .map_err(|e| anyhow!("{} is not JSON: {e}", golden.display()))?;
    let mut diffs = Vec::new();
    for key in ["items", "links"] {
        let empty = Vec::new();
        let w = want[key].as_array().unwrap_or(&empty);
        let g = got[key].as_array().unwrap_or(&empty);
        for i in 0..w.len().max(g.len()) {
            let what = &key[..key.len() - 1];
            match (w.get(i), g.get(i)) {
                (Some(a), Some(b)) if a != b => diffs.push(format!(
                    "{what} {i}: expected {} but got {}",
                    one_line(a),
                    one_line(b)
                )),
                (Some(a), None) => diffs.push(format!("{what} {i} is missing: {}", one_line(a))),
                (None, Some(b)) => diffs.push(format!("{what} {i} is new: {}", one_line(b))),
                _ => {}
            }
        }
    }
    if diffs.is_empty() {
        say!("ok: the same items and links as {}", golden.display());
        return Ok(0);
    }
    for d in diffs.iter().take(MAX_SHOWN) {
        say!("  {d}");
    }
    if diffs.len() > MAX_SHOWN {
        say!("  … and {} more", diffs.len() - MAX_SHOWN);
    }
    say!(
        "error: the output differs from {} in {} places",
        golden.display(),
        diffs.len()
    );
    Ok(1)
}

fn one_line(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}…", &s[..cut])
    } else {
        s
    }
}
