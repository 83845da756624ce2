//! Downloads of any size: streamed to disk with bounded memory (a 1 GiB file under 100 MB of
//! peak RSS), resumed with `Range` after a connection reset when the server allows it, and
//! started over when the server ignores `Range`. The server generates the file on the fly;
//! the test computes the expected sha256 from the same generator.

use bytes::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response};
use sandcrawl_e2e::{
    Body, BoxError, header, html, plugin, read_items, run_bin, run_measured, serve, summary,
    tempdir,
};
use sha2::{Digest as _, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BLOCK: usize = 64 * 1024;
const LIMIT: Duration = Duration::from_secs(300);

/// Block `i` of the generated file.
fn block(i: u64) -> Bytes {
    let mut b = vec![0u8; BLOCK];
    for (j, x) in b.iter_mut().enumerate() {
        *x = (i as usize).wrapping_mul(31).wrapping_add(j / 7) as u8;
    }
    Bytes::from(b)
}

fn expected_sha(size: u64) -> String {
    let mut h = Sha256::new();
    let mut i = 0;
    let mut left = size;
    while left > 0 {
        let b = block(i);
        let n = (left as usize).min(BLOCK);
        h.update(&b[..n]);
        left -= n as u64;
        i += 1;
    }
    hex_lower(&h.finalize())
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The bytes `[from, size)` of the file as a streamed body; with `fail_at`, the stream breaks
/// (the connection is cut) once that many bytes of the file have been sent.
fn file_body(from: u64, size: u64, fail_at: Option<u64>) -> Body {
    let stream = futures_util::stream::unfold(from, move |pos| async move {
        if pos >= size {
            return None;
        }
        if fail_at.is_some_and(|f| pos >= f) {
            let e: BoxError = "connection reset by the test server".into();
            return Some((Err(e), size));
        }
        let i = pos / BLOCK as u64;
        let off = (pos % BLOCK as u64) as usize;
        let end = (BLOCK as u64).min(size - i * BLOCK as u64) as usize;
        let chunk = block(i).slice(off..end);
        let next = pos + chunk.len() as u64;
        Some((Ok(Frame::data(chunk)), next))
    });
    StreamBody::new(stream).boxed()
}

#[derive(Clone, Copy)]
enum Behaviour {
    /// The whole file, every time.
    Whole,
    /// The first response is cut at 60%; later ones honour `Range` (206).
    ResetThenRange,
    /// The first response is cut at 60%; later ones ignore `Range` (200, the whole file).
    ResetThenIgnoreRange,
}

struct Site {
    server: sandcrawl_e2e::Server,
    /// The `Range` header of every request for the file.
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

fn site(rt: &tokio::runtime::Runtime, size: u64, behaviour: Behaviour) -> Site {
    let ranges: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let seen = Arc::clone(&ranges);
    let server = rt.block_on(serve(
        "127.0.0.1",
        move |req: Request<hyper::body::Incoming>| {
            let seen = Arc::clone(&seen);
            async move {
                match req.uri().path() {
                    "/catalogue/big/index.html" => html(
                        200,
                        "<html><body><div class=\"product_main\"><h1>Big</h1>\
                     <p class=\"price_color\">£1.00</p></div>\
                     <div id=\"product_gallery\"><img src=\"/media/big.bin\"></div></body></html>",
                    ),
                    "/media/big.bin" => {
                        let range = req
                            .headers()
                            .get("range")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        let if_range = header(&req, "if-range", "");
                        let attempt = {
                            let mut s = seen.lock().expect("lock");
                            s.push(range.clone());
                            s.len()
                        };
                        let cut = Some(size * 6 / 10);
                        let start = range
                            .as_deref()
                            .and_then(|r| r.strip_prefix("bytes="))
                            .and_then(|r| r.trim_end_matches('-').parse::<u64>().ok());
                        let honour =
                            matches!(behaviour, Behaviour::ResetThenRange) && if_range == "\"v1\"";
                        let builder = Response::builder()
                            .header("content-type", "application/octet-stream")
                            .header("etag", "\"v1\"")
                            .header("accept-ranges", "bytes");
                        match (behaviour, attempt, start) {
                            (Behaviour::Whole, _, _) => builder
                                .status(200)
                                .header("content-length", size)
                                .body(file_body(0, size, None)),
                            (_, 1, _) => builder
                                .status(200)
                                .header("content-length", size)
                                .body(file_body(0, size, cut)),
                            (_, _, Some(from)) if honour && from < size => builder
                                .status(206)
                                .header(
                                    "content-range",
                                    format!("bytes {from}-{}/{size}", size - 1),
                                )
                                .header("content-length", size - from)
                                .body(file_body(from, size, None)),
                            _ => builder
                                .status(200)
                                .header("content-length", size)
                                .body(file_body(0, size, None)),
                        }
                        .expect("response")
                    }
                    _ => html(404, "no"),
                }
            }
        },
    ));
    Site { server, ranges }
}

fn args(state: &str, seed: &str) -> Vec<String> {
    [
        "run",
        "--plugins",
        &plugin("products").display().to_string(),
        "--state",
        state,
        "--no-progress",
        "--set",
        "politeness.backoff_base_ms=50",
        seed,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The stored file: its item's fields, checked against the file on disk.
fn stored_file(state: &std::path::Path) -> serde_json::Value {
    let items = read_items(&state.join("items.jsonl"));
    let files: Vec<&serde_json::Value> = items.iter().filter(|i| i["kind"] == "file").collect();
    assert_eq!(files.len(), 1, "{items:?}");
    let f = files[0]["fields"].clone();
    let path = state
        .join("files")
        .join(f["path"].as_str().unwrap_or_default());
    let on_disk = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert_eq!(Some(on_disk), f["size"].as_u64(), "{}", path.display());
    assert!(
        std::fs::read_dir(state.join("files").join(".partial"))
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "a partial file was left behind"
    );
    f
}

#[test]
fn a_1_gib_download_streams_to_disk_with_bounded_memory() {
    let rt = sandcrawl_e2e::runtime();
    let size: u64 = 1 << 30;
    let s = site(&rt, size, Behaviour::Whole);
    let st = tempdir("dl-big");
    // With the progress lines on (plain log lines every second when not on a terminal).
    let mut a = args(
        &st.display().to_string(),
        &s.server.url("/catalogue/big/index.html"),
    );
    a.retain(|x| x != "--no-progress");
    a.extend(["--set".into(), "progress_interval_s=1".into()]);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    let m = run_measured(&refs, LIMIT);
    assert!(m.status.success(), "{}", m.stderr);
    let f = stored_file(&st);
    assert_eq!(f["size"].as_u64(), Some(size));
    assert_eq!(f["sha256"].as_str(), Some(expected_sha(size).as_str()));
    eprintln!(
        "peak RSS {} MB for a 1 GiB download",
        m.max_rss / (1024 * 1024)
    );
    assert!(
        m.max_rss < 100 * 1024 * 1024,
        "peak RSS {} MB for a 1 GiB download",
        m.max_rss / (1024 * 1024)
    );
    assert_eq!(summary(&st)["downloads"], 1);
    // While the file was coming in, the progress line showed its bytes and rate.
    let during: Vec<(f64, f64)> = m
        .stderr
        .lines()
        .filter_map(|l| l.split("| downloads 0 (").nth(1))
        .filter_map(|rest| {
            let (mb, rest) = rest.split_once(" MB, ")?;
            let (rate, _) = rest.split_once(" MB/s)")?;
            Some((mb.parse().ok()?, rate.parse().ok()?))
        })
        .collect();
    assert!(
        during.iter().any(|(mb, rate)| *mb > 0.0 && *rate > 0.0),
        "no progress line with download bytes and rate: {}",
        m.stderr
    );
}

/// Crawls the one-download site whose server cuts the first attempt; checks the stored file
/// is whole and that there were exactly two requests. Returns the state and each request's
/// `Range` header.
fn download_after_a_reset(
    size: u64,
    behaviour: Behaviour,
    tag: &str,
) -> (std::path::PathBuf, Vec<Option<String>>) {
    let rt = sandcrawl_e2e::runtime();
    let s = site(&rt, size, behaviour);
    let st = tempdir(tag);
    let a = args(
        &st.display().to_string(),
        &s.server.url("/catalogue/big/index.html"),
    );
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    let (status, _, err) = run_bin(&refs, LIMIT);
    assert!(status.success(), "{err}");
    let f = stored_file(&st);
    assert_eq!(f["size"].as_u64(), Some(size));
    assert_eq!(f["sha256"].as_str(), Some(expected_sha(size).as_str()));
    let ranges = s.ranges.lock().expect("lock").clone();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    (st, ranges)
}

#[test]
fn a_reset_download_resumes_with_range() {
    let size: u64 = 48 << 20;
    let (st, ranges) = download_after_a_reset(size, Behaviour::ResetThenRange, "dl-range");
    assert_eq!(ranges[0], None);
    // The second request asked for the rest only: from where the cut left the stored part
    // (what reached the disk before the reset, about 60%). The server sends whole blocks, so
    // the block that crosses 60% may arrive in full before the reset.
    let from: u64 = ranges[1]
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse().ok())
        .unwrap_or_else(|| panic!("no Range on the retry: {ranges:?}"));
    let sent = (size * 6 / 10).div_ceil(BLOCK as u64) * BLOCK as u64;
    assert!(from > size / 2 && from <= sent, "Range from {from}");
    assert!(summary(&st)["retries"].as_u64().unwrap_or(0) >= 1);
}

#[test]
fn a_server_that_ignores_range_gets_a_full_restart() {
    let size: u64 = 24 << 20;
    let (_, ranges) = download_after_a_reset(size, Behaviour::ResetThenIgnoreRange, "dl-norange");
    assert!(
        ranges[1].is_some(),
        "the retry asked for a range: {ranges:?}"
    );
}

#[test]
fn a_download_over_files_max_bytes_fails_and_leaves_nothing() {
    let rt = sandcrawl_e2e::runtime();
    let size: u64 = 8 << 20;
    let s = site(&rt, size, Behaviour::Whole);
    let st = tempdir("dl-cap");
    let mut a = args(
        &st.display().to_string(),
        &s.server.url("/catalogue/big/index.html"),
    );
    a.extend(["--set".into(), "files.max_bytes=1048576".into()]);
    let refs: Vec<&str> = a.iter().map(String::as_str).collect();
    let (status, _, err) = run_bin(&refs, LIMIT);
    assert!(status.success(), "{err}");
    let sum = summary(&st);
    assert_eq!(sum["errors"]["download_too_large"], 1, "{sum}");
    let items = read_items(&st.join("items.jsonl"));
    assert!(items.iter().all(|i| i["kind"] != "file"));
    let partial = std::fs::read_dir(st.join("files").join(".partial"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(partial, 0, "the cut download was left on disk");
}
