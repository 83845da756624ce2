//! WARC output (`--warc DIR`): every page and download the crawl commits, as a `request` and a
//! `response` record (ISO 28500, WARC/1.1), each record its own gzip member, in files that
//! rotate at `warc.max_file_bytes`. It is an output like the items' (`sink::Sink`): the
//! records of a page are written before the page is committed, its commit token is the
//! current file and its length, and resume cuts the file back to it and removes files begun
//! after it, so a WARC never holds a torn record or a page twice. `record.rs` formats records,
//! `reader.rs` reads them back (for `sandcrawl replay`). It must not decide what is fetched
//! or parse pages.

pub mod reader;
mod record;

pub use record::{Capture, HIDDEN_PREFIX};

use crate::sink::{Item, Sink};
use anyhow::{Context as _, Result, bail};
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::{Path, PathBuf};

/// `[warc]`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WarcConfig {
    /// Where WARC files go; unset: no WARC (`--warc DIR`).
    pub dir: Option<PathBuf>,
    /// A file is closed and the next begun once it is this large.
    pub max_file_bytes: u64,
}

impl Default for WarcConfig {
    fn default() -> Self {
        WarcConfig {
            dir: None,
            max_file_bytes: 1 << 30,
        }
    }
}

/// The commit token: the file being written, its committed length, its number.
#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
struct Token {
    warc: Position,
}

#[derive(serde::Serialize, serde::Deserialize, Debug, Clone, PartialEq, Eq)]
struct Position {
    file: String,
    len: u64,
    seq: u32,
    /// The prefix every file of this crawl's WARC shares.
    prefix: String,
}

pub struct WarcSink {
    dir: PathBuf,
    max_file_bytes: u64,
    pos: Position,
    out: Option<BufWriter<File>>,
    records: u64,
    user_agent: String,
}

fn files_of(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".warc.gz"))
        .collect();
    names.sort();
    names
}

fn file_name(prefix: &str, seq: u32) -> String {
    format!("{prefix}-{seq:05}.warc.gz")
}

impl WarcSink {
    /// Opens `dir` at `token` (resume) or fresh. A fresh crawl refuses a folder that already
    /// holds WARC files, so two crawls never mix in one.
    pub fn open(
        cfg: &WarcConfig,
        dir: &Path,
        token: Option<&[u8]>,
        user_agent: &str,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create WARC folder {}", dir.display()))?;
        let token = token.filter(|t| !t.is_empty() && *t != b"null");
        let pos = match token {
            Some(raw) => {
                let t: Token =
                    serde_json::from_slice(raw).context("corrupt WARC token in state")?;
                let path = dir.join(&t.warc.file);
                if t.warc.len > 0 || path.exists() {
                    let f = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&path)
                        .with_context(|| format!("cannot open {}", path.display()))?;
                    let have = f.metadata()?.len();
                    if have > t.warc.len {
                        tracing::info!(
                            warc = %path.display(),
                            "cutting {} bytes of records of pages not committed before the last stop",
                            have - t.warc.len
                        );
                        f.set_len(t.warc.len)?;
                    }
                }
                // Files begun after the last commit hold only uncommitted pages.
                for name in files_of(dir) {
                    if name.starts_with(&t.warc.prefix) && name > t.warc.file {
                        let _ = std::fs::remove_file(dir.join(&name));
                    }
                }
                t.warc
            }
            None => {
                if let Some(other) = files_of(dir).first() {
                    bail!(
                        "--warc {} already holds WARC files ({other}, ...) that this state does not know; give this crawl a folder of its own",
                        dir.display()
                    );
                }
                let prefix = format!(
                    "sandcrawl-{}",
                    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                        .to_string()
                        .replace([':', '-'], "")
                        .trim_end_matches('Z')
                        .replace('T', "")
                );
                Position {
                    file: file_name(&prefix, 1),
                    len: 0,
                    seq: 1,
                    prefix,
                }
            }
        };
        Ok(WarcSink {
            dir: dir.to_owned(),
            max_file_bytes: cfg.max_file_bytes.max(1),
            pos,
            out: None,
            records: 0,
            user_agent: user_agent.to_owned(),
        })
    }

    pub fn initial_token() -> Vec<u8> {
        // A fresh WARC has no position yet; "no token" means start fresh.
        Vec::new()
    }

    /// When the current file is shorter than `token` says (power loss), (have, committed).
    pub fn lost_tail(dir: &Path, token: &[u8]) -> Result<Option<(u64, u64)>> {
        if token.is_empty() || token == b"null" {
            return Ok(None);
        }
        let t: Token = serde_json::from_slice(token).context("corrupt WARC token in state")?;
        let have = std::fs::metadata(dir.join(&t.warc.file)).map_or(0, |m| m.len());
        Ok((have < t.warc.len).then_some((have, t.warc.len)))
    }

    fn writer(&mut self) -> Result<&mut BufWriter<File>> {
        if self.out.is_none() {
            let path = self.dir.join(&self.pos.file);
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open {}", path.display()))?;
            let fresh = f.metadata()?.len() == 0;
            let mut w = BufWriter::with_capacity(256 * 1024, f);
            if fresh {
                let info = record::warcinfo(&self.pos.file, &self.user_agent)?;
                w.write_all(&info)?;
                self.pos.len += info.len() as u64;
            }
            self.out = Some(w);
        }
        match self.out.as_mut() {
            Some(w) => Ok(w),
            None => bail!("WARC file not open"),
        }
    }

    /// Closes the current file and begins the next when it has reached its size.
    fn rotate_if_full(&mut self) -> Result<()> {
        if self.pos.len < self.max_file_bytes {
            return Ok(());
        }
        if let Some(mut w) = self.out.take() {
            w.flush()?;
            w.get_ref().sync_data()?;
        }
        self.pos.seq += 1;
        self.pos.file = file_name(&self.pos.prefix, self.pos.seq);
        self.pos.len = 0;
        Ok(())
    }
}

impl Sink for WarcSink {
    fn write_page(&mut self, _items: &[Item]) -> Result<u64> {
        Ok(0)
    }

    fn write_response(&mut self, cap: &Capture<'_>) -> Result<()> {
        self.rotate_if_full()?;
        let ua = self.user_agent.clone();
        let w = self.writer()?;
        let n = record::write_pair(w, cap, &ua)?;
        w.flush()
            .with_context(|| format!("writing WARC records to {}", self.pos.file))?;
        self.pos.len += n;
        self.records += 2;
        Ok(())
    }

    fn commit_token(&self) -> Vec<u8> {
        serde_json::to_vec(&Token {
            warc: self.pos.clone(),
        })
        .unwrap_or_default()
    }

    fn sync(&mut self) -> Result<()> {
        if let Some(w) = &mut self.out {
            w.flush()?;
            w.get_ref().sync_data()?;
        }
        Ok(())
    }

    fn items_written(&self) -> u64 {
        0
    }

    fn describe(&self) -> String {
        format!("WARC {}", self.dir.display())
    }
}
