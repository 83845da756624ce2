//! Where items go: JSON Lines (to a file or stdout), CSV (`csv.rs`: one file per item kind,
//! with real columns), PostgreSQL or MySQL/MariaDB (`sql/`), several of them at once
//! (`outputs.rs`), plus the content-addressed files directory for downloads. `target.rs`
//! reads what an `--out` value names. The WARC output (`crate::warc`) is a `Sink` too: it
//! keeps responses (`Sink::write_response`) rather than items.
//!
//! It owns output formats and the sink's half of crash safety. Each page's items get a
//! ticket from [`Sink::write_page`]; the engine commits the page to the frontier only once
//! [`Sink::durable`] has reached that ticket (at once for files, whose bytes are handed to
//! the OS by `write`, so a killed process loses nothing it reported; after the transaction
//! commits for a database). The engine stores [`Sink::commit_token`] in the same frontier
//! batch that marks the page done. On resume a file is cut back to the last committed token
//! and a database skips rows it already has, so an item is never written twice and never
//! lost. It must not decide what an item contains; the engine builds them.

mod csv;
mod outputs;
pub mod sql;
pub mod target;

pub use self::csv::{CsvSink, kind_path};
pub use self::outputs::Outputs;
pub use self::target::Target;

use anyhow::{Context as _, Result, bail};
use serde::Serialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;

/// Who produced an item.
#[derive(Debug, Clone, Serialize)]
pub struct PluginRef {
    pub name: String,
    pub version: String,
    pub sha256: String,
}

/// One output record.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Deterministic: the same page parsed by the same plugin gives the same ids.
    pub id: String,
    pub url: String,
    pub fetched_at: String,
    pub plugin: PluginRef,
    pub kind: String,
    /// A JSON object, kept as the plugin wrote it: field order and number precision stay.
    pub fields: Box<serde_json::value::RawValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Csv,
}

/// An output. Files are durable as soon as `write_page` returns; a database is durable once
/// its writer has committed the page's transaction.
pub trait Sink: Send {
    /// Writes one page's items (a file hands them to the OS; a database queues them for its
    /// writer) and returns the page's ticket.
    fn write_page(&mut self, items: &[Item]) -> Result<u64>;
    /// The highest ticket whose items are durable: a page may be committed to the frontier
    /// once this has reached its ticket. An error means the output gave up.
    fn durable(&mut self) -> Result<u64> {
        Ok(u64::MAX)
    }
    /// Resolves when `durable` may have moved. Files never need it.
    fn changed(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(std::future::pending())
    }
    /// Items written and not yet durable: the engine fetches no new page above a bound.
    fn backlog(&self) -> usize {
        0
    }
    /// Keeps the response a page's items came from (the WARC output); before `write_page`.
    fn write_response(&mut self, _capture: &crate::warc::Capture<'_>) -> Result<()> {
        Ok(())
    }
    /// Opaque position after the last durable write; stored with the page's completion.
    fn commit_token(&self) -> Vec<u8>;
    /// fsync: survive power loss, not just a killed process.
    fn sync(&mut self) -> Result<()>;
    fn items_written(&self) -> u64;
    /// Where items go, for the summary.
    fn describe(&self) -> String;
    /// Items the output could not take, by summary key (a type clash in a per-kind table).
    fn rejected(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
}

/// The outputs of a crawl, databases already connected and checked: they are prepared before
/// the state directory is opened, so a bad URL or password leaves nothing behind.
pub struct Prepared {
    targets: Vec<Target>,
    sql: Vec<Option<sql::SqlSink>>,
    warc: crate::warc::WarcConfig,
    user_agent: String,
}

impl Prepared {
    pub async fn connect(
        targets: Vec<Target>,
        cfg: &crate::config::CrawlConfig,
    ) -> Result<Prepared> {
        let mut out = Vec::with_capacity(targets.len());
        for t in &targets {
            out.push(match t {
                Target::Sql(u) => Some(sql::SqlSink::connect(u, &cfg.output.sql).await?),
                _ => None,
            });
        }
        Ok(Prepared {
            targets,
            sql: out,
            warc: cfg.warc.clone(),
            user_agent: cfg.fetch.user_agent.clone(),
        })
    }

    fn keys(&self) -> Vec<String> {
        self.targets.iter().map(Target::key).collect()
    }

    /// The token of empty outputs: where a crawl with no checkpoint yet resumes from.
    pub fn initial_token(&self) -> Vec<u8> {
        let parts: Vec<(String, Vec<u8>)> = self
            .targets
            .iter()
            .map(|t| {
                let tok = match t {
                    Target::Stdout
                    | Target::File {
                        format: Format::Jsonl,
                        ..
                    } => serde_json::to_vec(&Token { len: 0, items: 0 }).unwrap_or_default(),
                    Target::File {
                        format: Format::Csv,
                        ..
                    } => b"{\"csv\":{}}".to_vec(),
                    Target::Sql(_) => sql::SqlSink::initial_token(),
                    Target::Warc(_) => crate::warc::WarcSink::initial_token(),
                };
                (t.key(), tok)
            })
            .collect();
        Outputs::join(&parts)
    }

    /// When a file output is shorter than the committed `token` says, returns (the file,
    /// bytes present, bytes committed): it lost a tail that was written but not yet fsynced
    /// (a power failure or OS crash), and the frontier must give back the pages whose items
    /// are gone.
    pub fn lost_tail(&self, token: Option<&[u8]>) -> Result<Option<(String, u64, u64)>> {
        let parts = Outputs::split(&self.keys(), token)?;
        for (t, part) in self.targets.iter().zip(parts) {
            let Some(raw) = part else { continue };
            let lost = match t {
                Target::File {
                    path,
                    format: Format::Jsonl,
                } => file_lost_tail(path, &raw)?,
                Target::File {
                    path,
                    format: Format::Csv,
                } => self::csv::lost_tail(path, &raw)?,
                Target::Warc(dir) => crate::warc::WarcSink::lost_tail(dir, &raw)?,
                Target::Stdout | Target::Sql(_) => None,
            };
            if let Some((have, committed)) = lost {
                return Ok(Some((t.key(), have, committed)));
            }
        }
        Ok(None)
    }

    /// Opens every output at its part of `token`.
    pub fn open(self, token: Option<&[u8]>) -> Result<Box<dyn Sink>> {
        let parts = Outputs::split(&self.keys(), token)?;
        let mut outs: Vec<(String, Box<dyn Sink>)> = Vec::new();
        for ((t, part), db) in self.targets.iter().zip(parts).zip(self.sql) {
            let s: Box<dyn Sink> = match (t, db) {
                (Target::Stdout, _) => Box::new(FileSink::open(Path::new("-"), None)?),
                (
                    Target::File {
                        path,
                        format: Format::Jsonl,
                    },
                    _,
                ) => Box::new(FileSink::open(path, part.as_deref())?),
                (
                    Target::File {
                        path,
                        format: Format::Csv,
                    },
                    _,
                ) => Box::new(CsvSink::open(path, part.as_deref())?),
                (Target::Sql(_), Some(mut db)) => {
                    db.resume(part.as_deref())?;
                    Box::new(db)
                }
                (Target::Sql(u), None) => bail!("output {} was not connected", u.shown),
                (Target::Warc(dir), _) => Box::new(crate::warc::WarcSink::open(
                    &self.warc,
                    dir,
                    part.as_deref(),
                    &self.user_agent,
                )?),
            };
            outs.push((t.key(), s));
        }
        Ok(Box::new(Outputs::new(outs)))
    }
}

/// A JSON object's members in the order written (a `serde_json::Map` would sort them).
pub(crate) struct Ordered<'a>(pub Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Ordered<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Ordered<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut m: M) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[derive(Serialize, serde::Deserialize)]
struct Token {
    len: u64,
    items: u64,
}

/// JSON Lines into a file (resumable) or stdout (not resumable).
pub struct FileSink {
    out: Output,
    len: u64,
    items: u64,
}

enum Output {
    File { w: BufWriter<File>, path: PathBuf },
    Stdout(std::io::Stdout),
}

/// Opens an output file for writing without truncating it (resume decides what stays).
fn open_for_resume(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open output {}", path.display()))
}

/// Cuts `file` back to its committed length (bytes after it are items of pages that were not
/// committed, and will be written again) and returns that length. A file shorter than that
/// was changed outside sandcrawl: that is logged, and writing goes on from its end.
fn cut_to_committed(file: &File, path: &Path, t: &Token) -> Result<u64> {
    let existing = file.metadata()?.len();
    if existing < t.len {
        tracing::error!(
            output = %path.display(),
            "output is {existing} bytes but {} were committed: it was truncated or replaced outside sandcrawl; items from before are missing",
            t.len
        );
        return Ok(existing);
    }
    if existing > t.len {
        tracing::info!(
            output = %path.display(),
            "cutting {} bytes of uncommitted items written before the last stop (their pages will be fetched again)",
            existing - t.len
        );
        file.set_len(t.len)?;
    }
    Ok(t.len)
}

fn file_lost_tail(path: &Path, raw: &[u8]) -> Result<Option<(u64, u64)>> {
    let t: Token = serde_json::from_slice(raw).context("corrupt sink token in state")?;
    let have = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok((have < t.len).then_some((have, t.len)))
}

impl FileSink {
    /// Opens `path` ("-" for stdout). With a token from a previous run the file is cut back
    /// to it; without one an existing non-empty file is refused rather than mixed into.
    pub fn open(path: &Path, token: Option<&[u8]>) -> Result<Self> {
        if path == Path::new("-") {
            return Ok(FileSink {
                out: Output::Stdout(std::io::stdout()),
                len: 0,
                items: 0,
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create output folder {}", dir.display()))?;
        }
        let mut file = open_for_resume(path)?;
        let (len, items) = match token {
            Some(raw) => {
                let t: Token =
                    serde_json::from_slice(raw).context("corrupt sink token in state")?;
                (cut_to_committed(&file, path, &t)?, t.items)
            }
            None if file.metadata()?.len() > 0 => bail!(
                "output {} already has data but the state directory has no record of it; choose another --out or remove the file",
                path.display()
            ),
            None => (0, 0),
        };
        file.seek(SeekFrom::Start(len))?;
        Ok(FileSink {
            out: Output::File {
                w: BufWriter::with_capacity(256 * 1024, file),
                path: path.to_owned(),
            },
            len,
            items,
        })
    }

    fn encode(&self, items: &[Item], buf: &mut Vec<u8>) -> Result<()> {
        for it in items {
            serde_json::to_writer(&mut *buf, it)?;
            buf.push(b'\n');
        }
        Ok(())
    }
}

impl Sink for FileSink {
    fn write_page(&mut self, items: &[Item]) -> Result<u64> {
        if items.is_empty() {
            return Ok(0);
        }
        let mut buf = Vec::with_capacity(items.len() * 512);
        self.encode(items, &mut buf)?;
        match &mut self.out {
            Output::File { w, path } => {
                w.write_all(&buf)
                    .and_then(|()| w.flush())
                    .with_context(|| format!("writing items to {}", path.display()))?;
            }
            Output::Stdout(s) => {
                let mut lock = s.lock();
                lock.write_all(&buf)
                    .and_then(|()| lock.flush())
                    .context("writing items to stdout")?;
            }
        }
        self.len += buf.len() as u64;
        self.items += items.len() as u64;
        Ok(0)
    }

    fn commit_token(&self) -> Vec<u8> {
        serde_json::to_vec(&Token {
            len: self.len,
            items: self.items,
        })
        .unwrap_or_default()
    }

    fn sync(&mut self) -> Result<()> {
        if let Output::File { w, .. } = &mut self.out {
            w.flush()?;
            w.get_ref().sync_data()?;
        }
        Ok(())
    }

    fn items_written(&self) -> u64 {
        self.items
    }

    fn describe(&self) -> String {
        match &self.out {
            Output::File { path, .. } => path.display().to_string(),
            Output::Stdout(_) => "stdout".into(),
        }
    }
}

/// A downloaded file as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub sha256: String,
    /// Relative to the files directory.
    pub path: String,
    pub size: u64,
    /// False when identical content was already stored.
    pub new: bool,
}

/// Content-addressed storage: `ab/abcdef….ext`. Writing the same content twice is a no-op,
/// so a download repeated after a crash cannot duplicate anything. Downloads stream into
/// `.partial/` first (`fetch::download`) and are adopted here once complete.
pub struct FilesStore {
    dir: PathBuf,
    cfg: crate::fetch::DownloadConfig,
}

impl FilesStore {
    pub fn new(dir: PathBuf, cfg: crate::fetch::DownloadConfig) -> Self {
        FilesStore { dir, cfg }
    }

    /// Where the download of the URL with fingerprint `fp` streams to: one partial file per
    /// URL, so an interrupted download is found again on retry, also after a restart.
    pub fn download_to(&self, fp: &[u8]) -> crate::fetch::DownloadTo {
        crate::fetch::DownloadTo {
            partial: self.dir.join(".partial").join(hex::encode(fp)),
            max_bytes: self.cfg.max_bytes,
            read_timeout: std::time::Duration::from_millis(self.cfg.read_timeout_ms.max(1)),
        }
    }

    /// Where a stored file (its `path` in the `file` item) is on disk.
    pub fn path_of(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// The whole-download deadline, if any.
    pub fn total_timeout(&self) -> Option<std::time::Duration> {
        (self.cfg.total_timeout_ms > 0)
            .then(|| std::time::Duration::from_millis(self.cfg.total_timeout_ms))
    }

    /// Moves a finished download into its content-addressed place (a hard link, then the
    /// partial file and its resume record go).
    pub fn adopt(
        &self,
        body: &crate::fetch::FileBody,
        url: &url::Url,
        content_type: Option<&str>,
    ) -> Result<Stored> {
        let ext = extension(url, content_type);
        let sha = body.sha256.clone();
        let rel = format!("{}/{sha}{ext}", &sha[..2.min(sha.len())]);
        let path = self.dir.join(&rel);
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create files folder {}", parent.display()))?;
        let new = match std::fs::hard_link(&body.path, &path) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e).with_context(|| format!("storing {}", path.display())),
        };
        let _ = std::fs::remove_file(&body.path);
        let mut record = body.path.clone().into_os_string();
        record.push(".resume");
        let _ = std::fs::remove_file(record);
        Ok(Stored {
            sha256: sha,
            path: rel,
            size: body.size,
            new,
        })
    }

    pub fn save(&self, bytes: &[u8], url: &url::Url, content_type: Option<&str>) -> Result<Stored> {
        let sha = hex::encode(Sha256::digest(bytes));
        let ext = extension(url, content_type);
        let rel = format!("{}/{sha}{ext}", &sha[..2]);
        let path = self.dir.join(&rel);
        if path.is_file() {
            return Ok(Stored {
                sha256: sha,
                path: rel,
                size: bytes.len() as u64,
                new: false,
            });
        }
        let parent = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create files folder {}", parent.display()))?;
        let tmp = parent.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
        // A hard link fails if the name exists, so of two workers storing the same content
        // at once exactly one reports it as new.
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        let new = match linked {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e).with_context(|| format!("storing {}", path.display())),
        };
        Ok(Stored {
            sha256: sha,
            path: rel,
            size: bytes.len() as u64,
            new,
        })
    }
}

fn extension(url: &url::Url, content_type: Option<&str>) -> String {
    let from_path = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .and_then(|last| last.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()))
        .filter(|e| !e.is_empty() && e.len() <= 5 && e.chars().all(|c| c.is_ascii_alphanumeric()));
    if let Some(e) = from_path {
        return format!(".{e}");
    }
    let ct = content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim();
    match ct {
        "image/jpeg" => ".jpg",
        "image/png" => ".png",
        "image/gif" => ".gif",
        "image/webp" => ".webp",
        "application/pdf" => ".pdf",
        "video/mp4" => ".mp4",
        _ => "",
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(i: u32) -> Item {
        Item {
            id: format!("id{i}"),
            url: "http://e/".into(),
            fetched_at: "t".into(),
            plugin: PluginRef {
                name: "p".into(),
                version: "1".into(),
                sha256: "s".into(),
            },
            kind: "k".into(),
            fields: serde_json::value::RawValue::from_string(format!("{{\"i\":{i}}}"))
                .expect("valid JSON"),
        }
    }

    #[test]
    fn resume_cuts_uncommitted_items() {
        let dir = std::env::temp_dir().join(format!("sandcrawl-sink-{}", rand::random::<u64>()));
        let path = dir.join("out.jsonl");
        let token = {
            let mut s = FileSink::open(&path, None).unwrap();
            s.write_page(&[item(1), item(2)]).unwrap();
            let t = s.commit_token();
            s.write_page(&[item(3)]).unwrap();
            t
        };
        assert!(FileSink::open(&path, None).is_err());
        let mut s = FileSink::open(&path, Some(&token)).unwrap();
        s.write_page(&[item(4)]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let ids: Vec<_> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids, ["id1", "id2", "id4"]);
        assert_eq!(s.items_written(), 3);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn files_are_content_addressed() {
        let dir = std::env::temp_dir().join(format!("sandcrawl-files-{}", rand::random::<u64>()));
        let store = FilesStore::new(dir.clone(), Default::default());
        let u = url::Url::parse("http://e/a/pic.JPG?x=1").unwrap();
        let a = store.save(b"same", &u, None).unwrap();
        let b = store
            .save(
                b"same",
                &url::Url::parse("http://e/other").unwrap(),
                Some("image/jpeg"),
            )
            .unwrap();
        assert!(a.new && !b.new);
        assert_eq!(a.sha256, b.sha256);
        assert!(a.path.ends_with(".jpg"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
