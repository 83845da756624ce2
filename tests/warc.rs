//! WARC output and replay: a crawl keeps its pages and downloads in rotating `.warc.gz`
//! files; `sandcrawl replay` runs plugins over them with no network and gives the crawl's
//! items again (same ids, same fields) for the same plugin build, and the new build's items
//! for a changed one. The WARC survives kill -9 like the items: no page twice, no torn record.

use flate2::read::MultiGzDecoder;
use sandcrawl_e2e::{demo_site, html, plugin, read_items, run_bin, serve, tempdir, wait_bounded};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(180);

fn run(args: &[String]) -> String {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _out, err) = run_bin(&refs, LIMIT);
    assert!(status.success(), "sandcrawl {args:?} failed: {err}");
    err
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// id → the whole item, for every item that is not a download record.
fn by_id(path: &Path) -> BTreeMap<String, serde_json::Value> {
    let items = read_items(path);
    let map: BTreeMap<String, serde_json::Value> = items
        .iter()
        .filter(|i| i["kind"] != "file")
        .map(|i| (i["id"].as_str().unwrap_or_default().to_owned(), i.clone()))
        .collect();
    let pages = items.iter().filter(|i| i["kind"] != "file").count();
    assert_eq!(map.len(), pages, "an id twice in {}", path.display());
    map
}

/// Every record of every WARC file in `dir`, decompressed, as text (bodies included).
fn warc_text(dir: &Path) -> (usize, String) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("warc dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".warc.gz"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for f in &files {
        let raw = std::fs::read(f).expect("warc file");
        MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut all)
            .unwrap_or_else(|e| panic!("{} does not decompress: {e}", f.display()));
    }
    (files.len(), String::from_utf8_lossy(&all).into_owned())
}

/// Target URIs of the page response records, with how often each is there.
fn page_records(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for rec in text.split("WARC/1.1\r\n").skip(1) {
        let head = rec.split("\r\n\r\n").next().unwrap_or_default();
        if head.contains("WARC-Type: response") && head.contains("Sandcrawl-Kind: page") {
            let uri = head
                .lines()
                .find_map(|l| l.strip_prefix("WARC-Target-URI: "))
                .unwrap_or_default();
            *out.entry(uri.to_owned()).or_default() += 1;
        }
    }
    out
}

#[test]
fn replay_gives_the_crawls_items_and_a_changed_plugins_new_ones_without_network() {
    let rt = sandcrawl_e2e::runtime();
    // Ten pages in a chain, each with a title the plugin reads.
    let server = rt.block_on(serve("127.0.0.1", |req| async move {
        let path = req.uri().path().to_owned();
        match path.strip_prefix("/r/").and_then(|n| n.parse::<u32>().ok()) {
            Some(n) if n < 10 => html(
                200,
                format!(
                    "<html><head><title>page {n}</title></head><body><a href=\"/r/{}\">next</a></body></html>",
                    n + 1
                ),
            ),
            _ => html(404, "no"),
        }
    }));
    let st = tempdir("warc-replay");
    let warc = st.join("warc");
    let (s, w) = (st.join("state"), warc.display().to_string());
    let v1 = plugin("reload-v1").display().to_string();
    let v2 = plugin("reload-v2").display().to_string();
    run(&strings(&[
        "run",
        "--plugins",
        &v1,
        "--state",
        &s.display().to_string(),
        "--no-progress",
        "--warc",
        &w,
        // Small files: the WARC rotates, and replay reads them in order.
        "--set",
        "warc.max_file_bytes=2000",
        &server.url("/r/0"),
    ]));
    let crawled = by_id(&s.join("items.jsonl"));
    assert_eq!(crawled.len(), 10);
    let (files, text) = warc_text(&warc);
    assert!(files > 1, "the WARC did not rotate: {files} file(s)");
    let pages = page_records(&text);
    assert_eq!(pages.len(), 10, "{pages:?}");
    assert!(pages.values().all(|n| *n == 1), "{pages:?}");
    assert!(text.contains("WARC-Type: warcinfo"));
    assert_eq!(text.matches("WARC-Type: request").count(), 10);
    let hits = server.paths().len();

    // The same build: the crawl's items exactly (ids, fields, fetched_at, plugin).
    let same = st.join("same.jsonl").display().to_string();
    let err = run(&strings(&[
        "replay",
        "--warc",
        &w,
        "--plugins",
        &v1,
        "--out",
        &same,
    ]));
    assert!(err.contains("replayed 10 pages"), "{err}");
    assert_eq!(by_id(Path::new(&same)), crawled);

    // A changed build: the same pages and ids, the new build's fields and version.
    let new = st.join("new.jsonl").display().to_string();
    run(&strings(&[
        "replay",
        "--warc",
        &w,
        "--plugins",
        &v2,
        "--out",
        &new,
    ]));
    let replayed = by_id(Path::new(&new));
    assert_eq!(
        replayed.keys().collect::<Vec<_>>(),
        crawled.keys().collect::<Vec<_>>()
    );
    for (id, item) in &replayed {
        assert_eq!(item["fields"]["build"], 2, "{id}: {item}");
        assert_eq!(item["fields"]["title"], crawled[id]["fields"]["title"]);
        assert_eq!(item["plugin"]["version"], "2.0.0");
        assert_eq!(item["url"], crawled[id]["url"]);
    }
    assert_eq!(server.paths().len(), hits, "replay sent requests");
}

#[test]
fn replay_refuses_a_folder_without_warc_files() {
    let st = tempdir("warc-empty");
    let out = st.join("x.jsonl").display().to_string();
    let args = strings(&[
        "replay",
        "--warc",
        &st.display().to_string(),
        "--plugins",
        &plugin("quotes").display().to_string(),
        "--out",
        &out,
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _, err) = run_bin(&refs, LIMIT);
    assert!(!status.success());
    assert!(err.contains("no .warc.gz files"), "{err}");
}

fn spawn(st: &Path, warc: &Path, seeds: &[String]) -> Child {
    let mut args = strings(&[
        "run",
        "--plugins",
        &plugin("quotes").display().to_string(),
        "--plugins",
        &plugin("products").display().to_string(),
        "--state",
        &st.display().to_string(),
        "--no-progress",
        "--per-host",
        "2",
        "--warc",
        &warc.display().to_string(),
        "--set",
        "checkpoint_interval_s=1",
    ]);
    args.extend(seeds.iter().cloned());
    Command::new(sandcrawl_e2e::bin())
        .args(&args)
        .env("SANDCRAWL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

/// kill -9 at random points, then resume: every page is in the WARC exactly once, every record
/// decompresses, and a replay of it gives exactly the crawl's items.
#[test]
fn kill_9_with_a_warc_keeps_every_page_once_and_replays_exactly() {
    let rt = sandcrawl_e2e::runtime();
    let a = rt.block_on(demo_site("127.0.0.1", Duration::from_millis(40)));
    let b = rt.block_on(demo_site("127.0.0.2", Duration::from_millis(40)));
    let seeds = vec![a.url("/"), b.url("/")];
    let st = tempdir("warc-kill");
    let (state, warc) = (st.join("state"), st.join("warc"));
    let kills = sandcrawl_e2e::kill_and_resume(&|| spawn(&state, &warc, &seeds), 5, LIMIT);
    eprintln!("killed {kills} times");
    assert!(kills >= 1, "the crawl finished before any kill");
    let crawled = by_id(&state.join("items.jsonl"));
    let (_, text) = warc_text(&warc);
    let pages = page_records(&text);
    let twice: Vec<_> = pages.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "pages in the WARC twice after {kills} kills: {twice:?}"
    );
    // Every page that gave items is there.
    for item in crawled.values() {
        let url = item["url"].as_str().unwrap_or_default();
        assert!(pages.contains_key(url), "{url} is not in the WARC");
    }
    let downloads = text.matches("Sandcrawl-Kind: download").count();
    let files = read_items(&state.join("items.jsonl"))
        .iter()
        .filter(|i| i["kind"] == "file")
        .count();
    assert_eq!(downloads, files, "one download record per file item");

    let out = st.join("replayed.jsonl");
    let args = strings(&[
        "replay",
        "--warc",
        &warc.display().to_string(),
        "--plugins",
        &plugin("quotes").display().to_string(),
        "--plugins",
        &plugin("products").display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut child = Command::new(sandcrawl_e2e::bin())
        .args(&refs)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn replay");
    let status = wait_bounded(&mut child, LIMIT).expect("replay finishes");
    assert!(status.success());
    assert_eq!(by_id(&out), crawled, "after {kills} kills");
}
