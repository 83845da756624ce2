//! Reads a WARC folder back, record by record, for `sandcrawl replay`: the files in name order,
//! each a series of gzip members. It owns undoing what `record.rs` did, so a page comes back
//! with the headers and body its plugins saw in the crawl. Download bodies are skipped, never
//! held. It must not run plugins.

use super::HIDDEN_PREFIX;
use anyhow::{Context as _, Result, bail};
use flate2::read::MultiGzDecoder;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// A `response` record of a page, as the crawl stored it.
#[derive(Debug, Clone)]
pub struct PageRecord {
    pub url: String,
    pub date: String,
    pub key: String,
    pub depth: u32,
    pub metadata: Option<String>,
    pub referrer: Option<String>,
    pub method: String,
    pub truncated: bool,
    pub status: u16,
    pub http_version: String,
    /// As the server sent them.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The folder's WARC files, in the order they were written.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read WARC folder {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".warc.gz"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        bail!(
            "--warc {}: no .warc.gz files there; give the folder a crawl wrote with --warc",
            dir.display()
        );
    }
    Ok(files)
}

/// Calls `f` with every page response record of `file`, in order. Returns the number of
/// records read.
pub fn each_page(file: &Path, mut f: impl FnMut(PageRecord) -> Result<()>) -> Result<u64> {
    let raw =
        std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mut r = BufReader::with_capacity(256 * 1024, MultiGzDecoder::new(BufReader::new(raw)));
    let mut n = 0;
    loop {
        let mut line = String::new();
        // Records are separated by a blank line pair; skip any blank lines before one.
        loop {
            line.clear();
            if r.read_line(&mut line).context("reading a WARC record")? == 0 {
                return Ok(n);
            }
            if !line.trim().is_empty() {
                break;
            }
        }
        if !line.starts_with("WARC/") {
            bail!("{}: not a WARC record at record {}", file.display(), n + 1);
        }
        let mut fields: Vec<(String, String)> = Vec::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                bail!("{}: record {} ends in its header", file.display(), n + 1);
            }
            let l = line.trim_end_matches(['\r', '\n']);
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                fields.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let get = |k: &str| {
            fields
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        };
        let len: u64 = get("Content-Length")
            .and_then(|v| v.parse().ok())
            .with_context(|| {
                format!("{}: record {} has no Content-Length", file.display(), n + 1)
            })?;
        n += 1;
        let is_page = get("WARC-Type").as_deref() == Some("response")
            && get("Sandcrawl-Kind").as_deref() == Some("page");
        if !is_page {
            std::io::copy(&mut (&mut r).take(len), &mut std::io::sink())?;
            continue;
        }
        let mut block = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(16 << 20));
        (&mut r).take(len).read_to_end(&mut block)?;
        if (block.len() as u64) < len {
            bail!("{}: record {} is cut short", file.display(), n);
        }
        let (status, http_version, headers, body) = parse_http(&block)
            .with_context(|| format!("{}: record {} is not an HTTP response", file.display(), n))?;
        f(PageRecord {
            url: get("WARC-Target-URI").unwrap_or_default(),
            date: get("WARC-Date").unwrap_or_default(),
            key: get("Sandcrawl-Key").unwrap_or_default(),
            depth: get("Sandcrawl-Depth")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0),
            metadata: get("Sandcrawl-Metadata"),
            referrer: get("Sandcrawl-Referrer"),
            method: get("Sandcrawl-Method").unwrap_or_else(|| "GET".into()),
            truncated: get("Sandcrawl-Truncated").is_some(),
            status,
            http_version,
            headers,
            body,
        })?;
    }
}

#[allow(clippy::type_complexity)]
fn parse_http(block: &[u8]) -> Result<(u16, String, Vec<(String, String)>, Vec<u8>)> {
    let end = block
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = std::str::from_utf8(&block[..end]).context("headers are not text")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let http_version = parts.next().unwrap_or("HTTP/1.1").to_owned();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .context("no status code")?;
    let mut headers = Vec::new();
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            // Ours: the stored body's length. The server's, if it sent one, is hidden.
            continue;
        }
        match k.strip_prefix(HIDDEN_PREFIX) {
            Some(orig) => headers.push((orig.to_owned(), v.to_owned())),
            None => headers.push((k.to_owned(), v.to_owned())),
        }
    }
    Ok((status, http_version, headers, block[end + 4..].to_vec()))
}
