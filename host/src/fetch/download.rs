//! Downloads streamed to disk: the body of a `download` link goes to a partial file as it
//! arrives, its sha256 computed on the way, so a file of any size costs a frame of memory. It
//! owns the partial file and its resume record: an interrupted download keeps what it has
//! when the server gave a validator (a strong ETag or Last-Modified), and the next attempt
//! asks only for the rest (`Range`, guarded by `If-Range`); a server that answers with the
//! whole body instead starts the file over. It must not decide where finished files go
//! (`sink::FilesStore` adopts the partial file) or whether to retry (`crawl`).

use super::FetchError;
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use http_body_util::BodyExt as _;
use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// `[files]`: downloads' own bounds, separate from pages'.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DownloadConfig {
    /// Largest file stored; a bigger one fails as `download_too_large`.
    pub max_bytes: u64,
    /// Silence for this long cuts the download (it resumes on retry).
    pub read_timeout_ms: u64,
    /// Whole-download deadline; 0: none (a large file on a slow link takes what it takes).
    pub total_timeout_ms: u64,
}

impl Default for DownloadConfig {
    fn default() -> Self {
        DownloadConfig {
            max_bytes: 2 * 1024 * 1024 * 1024,
            read_timeout_ms: 30_000,
            total_timeout_ms: 0,
        }
    }
}

/// Where one download streams to.
#[derive(Debug, Clone)]
pub struct DownloadTo {
    /// The partial file; `PATH.resume` beside it holds the validator.
    pub partial: PathBuf,
    pub max_bytes: u64,
    pub read_timeout: Duration,
}

/// What an earlier attempt left: its length and the validator the server gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub have: u64,
    pub validator: String,
}

/// A body on disk.
#[derive(Debug, Clone)]
pub struct FileBody {
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// Bytes kept from an earlier attempt (0 when this response carried the whole file).
    pub resumed_from: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Record {
    validator: String,
}

impl DownloadTo {
    fn record_path(&self) -> PathBuf {
        let mut p = self.partial.clone().into_os_string();
        p.push(".resume");
        PathBuf::from(p)
    }

    /// The part an interrupted attempt left, if it can be continued.
    pub fn resume(&self) -> Option<Resume> {
        let raw = std::fs::read(self.record_path()).ok()?;
        let r: Record = serde_json::from_slice(&raw).ok()?;
        let have = std::fs::metadata(&self.partial).ok()?.len();
        (have > 0).then_some(Resume {
            have,
            validator: r.validator,
        })
    }

    /// Forgets the partial file and its record.
    pub fn discard(&self) {
        let _ = std::fs::remove_file(&self.partial);
        let _ = std::fs::remove_file(self.record_path());
    }

    fn remember(&self, validator: Option<&str>) -> std::io::Result<()> {
        match validator {
            Some(v) => std::fs::write(
                self.record_path(),
                serde_json::to_vec(&Record {
                    validator: v.to_owned(),
                })
                .unwrap_or_default(),
            ),
            None => match std::fs::remove_file(self.record_path()) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }
}

/// The validator `If-Range` may carry: a strong ETag, else Last-Modified.
pub(super) fn validator(headers: &[(String, String)]) -> Option<String> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    get("etag")
        .filter(|e| !e.starts_with("W/") && e.starts_with('"'))
        .or_else(|| get("last-modified"))
}

/// The first byte of a `Content-Range: bytes FIRST-LAST/TOTAL` header.
fn range_start(headers: &[(String, String)]) -> Option<u64> {
    let v = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-range"))?
        .1
        .trim();
    let rest = v.strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> FetchError {
    // A local disk problem is not the server's: it is reported as broken (retried), and the
    // cause names the file.
    FetchError::Broken(format!("{what} {}: {e}", path.display()))
}

/// Streams a 2xx response into `to.partial`. `resume` is what the request asked to continue
/// (`Range` was sent); a 206 that continues it appends, anything else starts over.
pub(super) async fn stream(
    resp: hyper::Response<hyper::body::Incoming>,
    status: u16,
    headers: &[(String, String)],
    to: &DownloadTo,
    resume: Option<&Resume>,
    counter: &AtomicU64,
) -> Result<(FileBody, u64), FetchError> {
    if let Some(dir) = to.partial.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io_err("creating", dir, e))?;
    }
    let coding = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-encoding"))
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity");
    let continues = status == 206
        && coding.is_none()
        && resume.is_some_and(|r| range_start(headers) == Some(r.have));
    if status == 206 && !continues {
        // A range nobody asked for (or of another start): nothing on disk can be trusted.
        to.discard();
        return Err(FetchError::Broken(
            "the server sent a partial body that does not continue the stored part".into(),
        ));
    }
    let mut hasher = Sha256::new();
    let start = if continues {
        let have = resume.map_or(0, |r| r.have);
        hash_existing(&to.partial, have, &mut hasher).await?;
        have
    } else {
        0
    };
    // A validator makes the part resumable; an encoded body is not (ranges would be of the
    // encoded bytes).
    let keep = if coding.is_none() {
        validator(headers)
    } else {
        None
    };
    to.remember(keep.as_deref())
        .map_err(|e| io_err("writing", &to.partial, e))?;
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(continues)
        .truncate(!continues)
        .open(&to.partial)
        .await
        .map_err(|e| io_err("opening", &to.partial, e))?;
    let mut part = Part {
        out: tokio::io::BufWriter::with_capacity(256 * 1024, file),
        hasher,
        written: 0,
        start,
        to,
        counter,
    };
    let declared = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<u64>().ok());
    let mut wire = 0u64;
    let result: Result<(), FetchError> = async {
        match coding.as_deref() {
            None => {
                let mut body = resp.into_body();
                loop {
                    let frame = tokio::time::timeout(to.read_timeout, body.frame())
                        .await
                        .map_err(|_| {
                            FetchError::Timeout("download stalled (files.read_timeout_ms)")
                        })?;
                    let Some(frame) = frame else { break };
                    let frame = frame.map_err(|e| FetchError::Broken(e.to_string()))?;
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    wire += data.len() as u64;
                    part.push(&data).await?;
                }
            }
            Some(c) => {
                let wire_count = std::sync::Arc::new(AtomicU64::new(0));
                let wc = wire_count.clone();
                let stream = resp
                    .into_body()
                    .into_data_stream()
                    .map_ok(move |b: Bytes| {
                        wc.fetch_add(b.len() as u64, Ordering::Relaxed);
                        b
                    })
                    .map_err(std::io::Error::other);
                let raw = tokio_util::io::StreamReader::new(stream);
                let mut reader = super::decoder(c, raw)?;
                let mut chunk = vec![0u8; 64 * 1024];
                loop {
                    let n = tokio::time::timeout(to.read_timeout, reader.read(&mut chunk))
                        .await
                        .map_err(|_| {
                            FetchError::Timeout("download stalled (files.read_timeout_ms)")
                        })?
                        .map_err(|e| FetchError::Decode(e.to_string()))?;
                    if n == 0 {
                        break;
                    }
                    part.push(&chunk[..n]).await?;
                }
                wire = wire_count.load(Ordering::Relaxed);
                // A decoded length has nothing to do with Content-Length.
            }
        }
        Ok(())
    }
    .await;
    let flushed = part.out.flush().await;
    let Part {
        hasher, written, ..
    } = part;
    match result {
        Err(FetchError::TooLarge(n)) => {
            to.discard();
            return Err(FetchError::TooLarge(n));
        }
        Err(e) => {
            if keep.is_none() {
                to.discard();
            }
            return Err(e);
        }
        Ok(()) => {}
    }
    flushed.map_err(|e| io_err("writing", &to.partial, e))?;
    if coding.is_none()
        && let Some(len) = declared
        && len != written
    {
        if keep.is_none() {
            to.discard();
        }
        return Err(FetchError::Broken(format!(
            "download ended after {written} of {len} bytes"
        )));
    }
    Ok((
        FileBody {
            path: to.partial.clone(),
            sha256: hex::encode(hasher.finalize()),
            size: start + written,
            resumed_from: start,
        },
        wire,
    ))
}

/// The part file being written: bytes go through the hash and the size bound on their way
/// to disk, and count toward the progress line's download rate.
struct Part<'a> {
    out: tokio::io::BufWriter<tokio::fs::File>,
    hasher: Sha256,
    /// Bytes written by this attempt (after the `start` bytes already on disk).
    written: u64,
    start: u64,
    to: &'a DownloadTo,
    counter: &'a AtomicU64,
}

impl Part<'_> {
    async fn push(&mut self, data: &[u8]) -> Result<(), FetchError> {
        if self.start + self.written + data.len() as u64 > self.to.max_bytes {
            return Err(FetchError::TooLarge(self.to.max_bytes));
        }
        self.hasher.update(data);
        self.out
            .write_all(data)
            .await
            .map_err(|e| io_err("writing", &self.to.partial, e))?;
        self.written += data.len() as u64;
        self.counter.fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Feeds the first `have` bytes already on disk to the hash, so the sha256 covers the whole
/// file without holding it.
async fn hash_existing(path: &Path, have: u64, hasher: &mut Sha256) -> Result<(), FetchError> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| io_err("reading", path, e))?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = have;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = f
            .read(&mut buf[..want])
            .await
            .map_err(|e| io_err("reading", path, e))?;
        if n == 0 {
            return Err(FetchError::Broken(format!(
                "{} is shorter than recorded",
                path.display()
            )));
        }
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators_and_ranges() {
        let h = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert_eq!(validator(&h("ETag", "\"abc\"")).as_deref(), Some("\"abc\""));
        assert_eq!(validator(&h("etag", "W/\"abc\"")), None);
        assert_eq!(
            validator(&h("Last-Modified", "Wed, 21 Oct 2015 07:28:00 GMT")).as_deref(),
            Some("Wed, 21 Oct 2015 07:28:00 GMT")
        );
        assert_eq!(
            range_start(&h("Content-Range", "bytes 600-999/1000")),
            Some(600)
        );
        assert_eq!(range_start(&h("Content-Range", "bytes */1000")), None);
    }
}
