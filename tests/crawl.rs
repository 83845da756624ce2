//! Whole crawls with the real `sandcrawl` binary against real servers on loopback: exact
//! pages and items, dedup, limits, routing, downloads, hostile plugins, and crash safety
//! (kill -9 and Ctrl+C at random points, then resume).

use sandcrawl_e2e::{
    Lcg, Server, demo_site, html, plugin, read_items, run_bin, serve, summary, tempdir,
    wait_bounded,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

fn crawl_args<'a>(state: &'a str, extra: &[&'a str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "run".into(),
        "--plugins".into(),
        plugin("quotes").display().to_string(),
        "--plugins".into(),
        plugin("products").display().to_string(),
        "--state".into(),
        state.into(),
        "--no-progress".into(),
    ];
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run_crawl(state: &Path, extra: &[&str]) -> String {
    let st = state.display().to_string();
    let args = crawl_args(&st, extra);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _out, err) = run_bin(&refs, LIMIT);
    assert!(status.success(), "crawl failed: {err}");
    err
}

/// Request paths that are pages (not robots.txt, not media).
fn page_paths(s: &Server) -> Vec<String> {
    s.paths()
        .into_iter()
        .filter(|p| p != "/robots.txt" && !p.starts_with("/media/"))
        .collect()
}

fn count_by_kind(items: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i["kind"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    m
}

fn expected_kinds(hosts: usize) -> BTreeMap<String, usize> {
    sandcrawl::demo::expected_items()
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n * hosts))
        .collect()
}

#[test]
fn full_crawl_of_two_hosts_is_exact() {
    let rt = sandcrawl_e2e::runtime();
    let a = rt.block_on(demo_site("127.0.0.1", Duration::ZERO));
    let b = rt.block_on(demo_site("127.0.0.2", Duration::ZERO));
    let state = tempdir("full");
    let (ua, ub) = (a.url("/"), b.url("/"));
    let err = run_crawl(&state, &[&ua, &ub]);
    assert!(err.contains("items written"), "{err}");

    let items = read_items(&state.join("items.jsonl"));
    assert_eq!(count_by_kind(&items), expected_kinds(2));

    // Routing: each kind comes from the plugin that owns those pages, with its identity.
    for it in &items {
        let want = match it["kind"].as_str() {
            Some("quote" | "author") => "quotes",
            _ => "products",
        };
        assert_eq!(it["plugin"]["name"], want, "{it}");
        assert_eq!(it["plugin"]["sha256"].as_str().map(str::len), Some(64));
        assert!(it["fetched_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    }
    let ids: BTreeSet<_> = items.iter().map(|i| i["id"].to_string()).collect();
    assert_eq!(ids.len(), items.len(), "item ids are unique");

    for s in [&a, &b] {
        let pages = page_paths(s);
        let unique: BTreeSet<_> = pages.iter().collect();
        assert_eq!(
            unique.len(),
            pages.len(),
            "a page was fetched twice: {pages:?}"
        );
        // index, about, 3 quote pages, 6 authors, catalogue, 5 category pages, 20 products
        assert_eq!(pages.len(), 37, "{pages:?}");
        assert!(
            !pages.iter().any(|p| p.starts_with("/private")),
            "robots.txt ignored"
        );
        assert!(
            !pages.iter().any(|p| p.contains("nofollow")),
            "rel=nofollow ignored"
        );
        assert!(!pages.iter().any(|p| p.contains("utm_") || p.contains('#')));
        assert_eq!(s.paths().iter().filter(|p| *p == "/robots.txt").count(), 1);
        assert_eq!(
            s.paths()
                .iter()
                .filter(|p| p.starts_with("/media/"))
                .count(),
            20
        );
        assert!(
            s.hits()
                .iter()
                .all(|h| h.user_agent.starts_with("sandcrawl/"))
        );
    }

    // Downloads: 40 file records, but only 15 distinct contents on disk.
    let files: Vec<_> = walk(&state.join("files"));
    assert_eq!(files.len(), sandcrawl::demo::DISTINCT_IMAGES, "{files:?}");
    let file_items: Vec<_> = items.iter().filter(|i| i["kind"] == "file").collect();
    let shas: BTreeSet<_> = file_items
        .iter()
        .map(|i| i["fields"]["sha256"].to_string())
        .collect();
    assert_eq!(shas.len(), sandcrawl::demo::DISTINCT_IMAGES);
    for f in &file_items {
        let rel = f["fields"]["path"].as_str().expect("path");
        assert!(state.join("files").join(rel).is_file(), "{rel}");
    }

    let s = summary(&state);
    assert_eq!(s["pages"], 74);
    assert_eq!(s["downloads"], 40);
    assert_eq!(s["files_new"], 15);
    assert_eq!(s["skipped"]["robots_disallowed"], 2);
    assert_eq!(s["queued_left"], 0);

    // Running again on a finished state fetches nothing new and writes nothing twice.
    let before = a.paths().len();
    run_crawl(&state, &[&ua, &ub]);
    assert_eq!(a.paths().len(), before);
    assert_eq!(read_items(&state.join("items.jsonl")).len(), items.len());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn depth_page_and_host_limits_are_exact() {
    let rt = sandcrawl_e2e::runtime();
    let a = rt.block_on(demo_site("127.0.0.1", Duration::ZERO));
    let b = rt.block_on(demo_site("127.0.0.2", Duration::ZERO));
    let (ua, ub) = (a.url("/"), b.url("/"));

    let st = tempdir("depth");
    run_crawl(&st, &[&ua, "--max-depth", "1"]);
    let got: BTreeSet<String> = page_paths(&a).into_iter().collect();
    let want: BTreeSet<String> = ["/", "/quotes/page/1/", "/catalogue/", "/about"]
        .map(String::from)
        .into();
    assert_eq!(got, want);

    let a = rt.block_on(demo_site("127.0.0.1", Duration::ZERO));
    let st = tempdir("maxpages");
    let ua = a.url("/");
    run_crawl(&st, &[&ua, "--max-pages", "10"]);
    assert_eq!(page_paths(&a).len(), 10, "{:?}", page_paths(&a));
    assert_eq!(summary(&st)["pages"], 10);

    let a = rt.block_on(demo_site("127.0.0.1", Duration::ZERO));
    let st = tempdir("perhost");
    let ua = a.url("/");
    run_crawl(&st, &[&ua, &ub, "--max-pages-per-host", "5"]);
    assert_eq!(page_paths(&a).len(), 5);
    assert_eq!(page_paths(&b).len(), 5, "{:?}", page_paths(&b));
}

#[test]
fn scope_domains_and_patterns() {
    let rt = sandcrawl_e2e::runtime();
    let other = rt.block_on(demo_site("127.0.0.3", Duration::ZERO));
    let other_url = other.url("/about");
    let site = rt.block_on(serve("127.0.0.1", move |req| {
        let other_url = other_url.clone();
        async move {
            match req.uri().path() {
                "/" => html(
                    200,
                    format!(
                        "<a href=\"/a\">a</a><a href=\"/skip/me\">s</a><a href=\"{other_url}\">elsewhere</a><a href=\"ftp://x/y\">ftp</a>"
                    ),
                ),
                "/robots.txt" => html(404, "no robots"),
                _ => html(200, "<p>leaf</p>"),
            }
        }
    }));
    let st = tempdir("scope");
    let u = site.url("/");
    run_crawl(&st, &[&u, "--deny", "/skip/"]);
    let got: BTreeSet<String> = site
        .paths()
        .into_iter()
        .filter(|p| p != "/robots.txt")
        .collect();
    assert_eq!(got, ["/", "/a"].map(String::from).into());
    assert!(
        other.paths().is_empty(),
        "off-domain host was contacted: {:?}",
        other.paths()
    );
    let s = summary(&st);
    assert_eq!(s["skipped"]["off_domain"], 1, "{s}");
    assert_eq!(s["skipped"]["denied_pattern"], 1, "{s}");

    // Allowing the other host's domain lets the crawl go there. Scope is by origin, so a
    // host on a port that is not its scheme's default (nor a seed's) is named with its port.
    let st = tempdir("scope2");
    let other_origin = format!("127.0.0.3:{}", other.addr.port());
    run_crawl(
        &st,
        &[
            &u,
            "--allow-domain",
            "127.0.0.1",
            "--allow-domain",
            &other_origin,
        ],
    );
    assert!(
        other.paths().contains(&"/about".to_owned()),
        "{:?}",
        other.paths()
    );
}

#[test]
fn hostile_plugin_pages_fail_and_the_crawl_goes_on() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        match req.uri().path() {
            "/" => html(
                200,
                "<a href=\"/hostile/loop\">1</a><a href=\"/hostile/panic\">2</a><a href=\"/hostile/oom\">3</a><a href=\"/hostile/one\">4</a><a href=\"/hostile/two\">5</a>",
            ),
            _ => html(200, "<p>x</p>"),
        }
    }));
    let st = tempdir("hostile");
    let state = st.display().to_string();
    let hostile = plugin("hostile").display().to_string();
    let u = site.url("/");
    let (status, _, err) = run_bin(
        &[
            "run",
            "--plugins",
            &hostile,
            "--state",
            &state,
            "--no-progress",
            "--set",
            "limits.timeout_ms=300",
            "--set",
            "limits.memory_mib=32",
            &u,
        ],
        LIMIT,
    );
    assert!(status.success(), "{err}");
    let items = read_items(&st.join("items.jsonl"));
    let ok: BTreeSet<String> = items
        .iter()
        .filter(|i| i["kind"] == "ok")
        .map(|i| i["fields"]["url"].as_str().unwrap_or("").to_owned())
        .collect();
    // "/" is claimed by no plugin (the built-in follower reads it); the attacks yield nothing.
    assert_eq!(
        ok,
        [site.url("/hostile/one"), site.url("/hostile/two")].into()
    );
    let s = summary(&st);
    let errors = &s["plugins"]["hostile"]["errors"];
    assert_eq!(errors["timeout"], 1, "{s}");
    assert_eq!(errors["trap"], 1, "{s}");
    assert_eq!(errors["memory"], 1, "{s}");
    assert!(err.contains("timed out after 300 ms"), "{err}");
    assert!(err.contains("hostile plugin panics on purpose"), "{err}");
    // Plugin calls start on tokio workers; the panicking plugin's stderr write is a blocking
    // WASI call, which must move it to the blocking pool without a host panic on the way.
    assert!(!err.contains("Cannot start a runtime"), "{err}");
    assert!(!err.contains("tokio-rt-worker"), "{err}");
}

/// The items that identify a crawl's result, independent of when they were fetched.
fn item_set(items: &[serde_json::Value]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap_or("").to_owned(),
                format!("{} {} {}", i["url"], i["kind"], i["fields"]),
            )
        })
        .collect()
}

fn spawn_crawl(state: &Path, seeds: &[String]) -> Child {
    spawn_crawl_every(state, seeds, "checkpoint_interval_s=1")
}

fn spawn_crawl_every(state: &Path, seeds: &[String], checkpoint: &str) -> Child {
    spawn_crawl_with(state, seeds, &["--set", checkpoint])
}

fn spawn_crawl_with(state: &Path, seeds: &[String], more: &[&str]) -> Child {
    let st = state.display().to_string();
    let mut extra: Vec<&str> = seeds.iter().map(String::as_str).collect();
    extra.extend(["--per-host", "2"]);
    extra.extend(more);
    let args = crawl_args(&st, &extra);
    Command::new(sandcrawl_e2e::bin())
        .args(&args)
        .env("SANDCRAWL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// Everything the (finished) child wrote to stderr.
fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    err
}

fn slow_sites(rt: &tokio::runtime::Runtime) -> (Server, Server, Vec<String>) {
    let a = rt.block_on(demo_site("127.0.0.1", Duration::from_millis(40)));
    let b = rt.block_on(demo_site("127.0.0.2", Duration::from_millis(40)));
    let seeds = vec![a.url("/"), b.url("/")];
    (a, b, seeds)
}

fn reference(seeds: &[String]) -> BTreeMap<String, String> {
    let st = tempdir("reference");
    let mut child = spawn_crawl(&st, seeds);
    let status = wait_bounded(&mut child, LIMIT).expect("reference crawl finishes");
    assert!(status.success());
    let items = read_items(&st.join("items.jsonl"));
    let set = item_set(&items);
    assert_eq!(set.len(), items.len());
    assert_eq!(count_by_kind(&items), expected_kinds(2));
    set
}

/// Kills the crawl with -9 at random moments and resumes it (see `sandcrawl_e2e::kill_and_resume`).
fn kill_and_resume(st: &Path, seeds: &[String], args: &[&str], max_kills: u32) -> u32 {
    sandcrawl_e2e::kill_and_resume(&|| spawn_crawl_with(st, seeds, args), max_kills, LIMIT)
}

#[test]
fn kill_9_at_random_points_then_resume_loses_and_duplicates_nothing() {
    let rt = sandcrawl_e2e::runtime();
    let (_a, _b, seeds) = slow_sites(&rt);
    let want = reference(&seeds);

    let st = tempdir("crash");
    let kills = kill_and_resume(&st, &seeds, &["--set", "checkpoint_interval_s=1"], 5);
    eprintln!("killed {kills} times");
    assert!(
        kills >= 1,
        "the crawl finished before any kill; slow the site down"
    );
    let items = read_items(&st.join("items.jsonl"));
    let got = item_set(&items);
    assert_eq!(
        items.len(),
        got.len(),
        "duplicate items after {kills} kills"
    );
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "after {kills} kills: missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(got, want);
}

/// The same for CSV, one file per kind: every kind's file is cut back to its committed length
/// on resume, and a file of a kind first written after the last commit is removed.
#[test]
fn kill_9_with_csv_output_then_resume_loses_and_duplicates_nothing() {
    let rt = sandcrawl_e2e::runtime();
    let (_a, _b, seeds) = slow_sites(&rt);
    let want: std::collections::BTreeSet<String> = reference(&seeds).into_keys().collect();
    let st = tempdir("crash-csv");
    let args = ["--format", "csv", "--set", "checkpoint_interval_s=1"];
    let kills = kill_and_resume(&st, &seeds, &args, 4);
    assert!(kills >= 1, "the crawl finished before any kill");
    let mut ids = Vec::new();
    for (kind, (header, rows)) in csv_files(&st) {
        assert!(header.starts_with("id,url,"), "{kind}: {header}");
        ids.extend(
            rows.iter()
                .map(|r| r.split(',').next().unwrap_or_default().to_owned()),
        );
    }
    let got: std::collections::BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), got.len(), "duplicate rows after {kills} kills");
    assert_eq!(got, want, "after {kills} kills");
}

#[test]
fn ctrl_c_stops_cleanly_and_resume_completes() {
    let rt = sandcrawl_e2e::runtime();
    let (a, _b, seeds) = slow_sites(&rt);
    let want = reference(&seeds);
    let reference_hits = a.paths().len();
    let st = tempdir("sigint");
    let mut child = spawn_crawl(&st, &seeds);
    std::thread::sleep(Duration::from_millis(400));
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_bounded(&mut child, Duration::from_secs(30)).expect("stops after Ctrl+C");
    let err = stderr_of(&mut child);
    // 128 + SIGINT, as a shell reports a command stopped by Ctrl+C.
    assert_eq!(status.code(), Some(130), "Ctrl+C must exit 130: {err}");
    assert!(err.contains("stopped in"), "{err}");
    let s = summary(&st);
    assert_eq!(s["stopped_early"], true);
    assert!(
        s["queued_left"].as_u64().unwrap_or(0) > 0,
        "stopped before the end: {s}"
    );
    let partial = read_items(&st.join("items.jsonl")).len();
    assert!(partial < want.len());

    let status = wait_bounded(&mut spawn_crawl(&st, &seeds), LIMIT).expect("resume finishes");
    assert!(status.success());
    let items = read_items(&st.join("items.jsonl"));
    assert_eq!(item_set(&items), want);
    assert_eq!(items.len(), want.len());
    // The interrupted crawl plus its resume fetched every URL exactly once (robots.txt is
    // per process); the reference crawl on the same server accounts for the other fetch.
    let after_reference = counts(&a.paths()[..reference_hits]);
    let total = counts(&a.paths());
    for (p, n) in total {
        if p != "/robots.txt" {
            assert_eq!(
                n - after_reference.get(&p).copied().unwrap_or(0),
                1,
                "{p} fetched again after Ctrl+C"
            );
        }
    }
}

/// A power failure can lose the items file's tail that was written but not yet fsynced,
/// while the frontier's store, which syncs on its own schedule, kept those pages as done.
/// Simulated here at its worst: the crawl is stopped with Ctrl+C (a checkpoint: everything up
/// to here is fsynced), resumed with checkpoints turned off, killed with -9, and the items
/// file is then cut at a random point after the checkpoint. The resume must re-fetch exactly
/// the pages whose items are gone.
#[test]
fn power_loss_of_the_items_tail_resumes_from_the_last_checkpoint() {
    let rt = sandcrawl_e2e::runtime();
    let (_a, _b, seeds) = slow_sites(&rt);
    let want = reference(&seeds);
    let st = tempdir("powerloss");
    let items_path = st.join("items.jsonl");
    let mut rng = Lcg::new();
    let never = "checkpoint_interval_s=3600";

    let mut child = spawn_crawl_every(&st, &seeds, never);
    std::thread::sleep(Duration::from_millis(200 + rng.below(300)));
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_bounded(&mut child, Duration::from_secs(30)).expect("stops after Ctrl+C");
    // Stopped by Ctrl+C (130), or already finished (0): either way a clean exit.
    assert!(matches!(status.code(), Some(0 | 130)), "{status:?}");
    let synced = std::fs::metadata(&items_path).map_or(0, |m| m.len());

    let mut child = spawn_crawl_every(&st, &seeds, never);
    let at = Duration::from_millis(300 + rng.below(500));
    if wait_bounded(&mut child, at).is_none() {
        child.kill().expect("kill -9");
        let _ = child.wait();
    }
    let written = std::fs::metadata(&items_path).map_or(0, |m| m.len());
    assert!(
        written > synced,
        "the second run wrote nothing; slow the site down"
    );
    let cut = synced + rng.below(written - synced);
    eprintln!("items file: {synced} bytes synced, {written} written, cut to {cut}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&items_path)
        .and_then(|f| f.set_len(cut))
        .expect("truncate");

    let mut child = spawn_crawl_every(&st, &seeds, never);
    let status = wait_bounded(&mut child, LIMIT).expect("resume finishes");
    let err = stderr_of(&mut child);
    assert!(status.success(), "{err}");
    assert!(err.contains("unsynced tail was lost"), "{err}");
    let items = read_items(&items_path);
    let got = item_set(&items);
    assert_eq!(items.len(), got.len(), "duplicate items");
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(missing.is_empty(), "lost items: {missing:?}");
    assert_eq!(got, want);
}

fn counts(paths: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for p in paths {
        *m.entry(p.clone()).or_default() += 1;
    }
    m
}

#[test]
fn second_ctrl_c_exits_at_once_and_the_state_stays_consistent() {
    let rt = sandcrawl_e2e::runtime();
    // Slow enough that the graceful drain after the first Ctrl+C is still running when the
    // second one arrives.
    let a = rt.block_on(demo_site("127.0.0.1", Duration::from_millis(250)));
    let b = rt.block_on(demo_site("127.0.0.2", Duration::from_millis(250)));
    let seeds = vec![a.url("/"), b.url("/")];
    let want = reference(&seeds);
    let st = tempdir("sigint2");
    let mut child = spawn_crawl(&st, &seeds);
    std::thread::sleep(Duration::from_millis(400));
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(60));
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = wait_bounded(&mut child, Duration::from_secs(5)).expect("exits at once");
    assert_eq!(status.code(), Some(130));
    let status = wait_bounded(&mut spawn_crawl(&st, &seeds), LIMIT).expect("resume finishes");
    assert!(status.success());
    let items = read_items(&st.join("items.jsonl"));
    assert_eq!(items.len(), want.len(), "no duplicates, no losses");
    assert_eq!(item_set(&items), want);
}

/// Rows of every `items.KIND.csv` in `dir`: kind → (header, rows). The demo's texts have no
/// line breaks, so a line is a row.
fn csv_files(dir: &Path) -> BTreeMap<String, (String, Vec<String>)> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("state dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(kind) = name
            .strip_prefix("items.")
            .and_then(|n| n.strip_suffix(".csv"))
        else {
            continue;
        };
        let text = std::fs::read_to_string(e.path()).expect("csv file");
        let mut lines = text.lines().map(str::to_owned);
        let header = lines.next().unwrap_or_default();
        out.insert(kind.to_owned(), (header, lines.collect()));
    }
    out
}

#[test]
fn csv_output_has_one_file_per_kind_with_real_columns() {
    let rt = sandcrawl_e2e::runtime();
    let a = rt.block_on(demo_site("127.0.0.1", Duration::ZERO));
    let st = tempdir("csv");
    let ua = a.url("/");
    run_crawl(&st, &[&ua, "--format", "csv"]);
    let files = csv_files(&st);
    let counts: Vec<(String, usize)> = files
        .iter()
        .map(|(k, (_, rows))| (k.clone(), rows.len()))
        .collect();
    let mut want: Vec<(String, usize)> = sandcrawl::demo::expected_items()
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
    want.sort();
    assert_eq!(counts, want);
    let fixed = "id,url,fetched_at,plugin,plugin_version,plugin_sha256";
    // Columns in the order the plugin writes its fields; nested values are JSON cells.
    assert_eq!(files["quote"].0, format!("{fixed},text,author,tags,extra"));
    assert_eq!(
        files["file"].0,
        format!("{fixed},sha256,path,size,content_type,referrer,extra")
    );
    let first = &files["quote"].1[0];
    assert!(
        first.contains(",Ada Quill,\"[\"\"life\"\"]\","),
        "text cells plain, arrays as JSON: {first}"
    );
}

#[test]
fn requests_count_redirects_and_robots_and_idle_plugins_are_named() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        match req.uri().path() {
            "/" => hyper::Response::builder()
                .status(301)
                .header("location", "/home")
                .body(sandcrawl_e2e::full(""))
                .expect("response"),
            "/robots.txt" => html(404, ""),
            _ => html(200, "<p>home</p>"),
        }
    }));
    let st = tempdir("requests");
    let u = site.url("/");
    let err = run_crawl(
        &st,
        &[
            &u,
            "--set",
            "plugins.quotes.patterns=[\"https://quotes.example.com/*\"]",
        ],
    );
    let s = summary(&st);
    assert_eq!(s["pages"], 1, "{s}");
    // robots.txt, the redirect and the page.
    assert_eq!(s["requests"], 3, "{s}");
    assert!(err.contains("3 requests"), "{err}");
    // A plugin whose patterns cannot match this crawl is named at start and at the end.
    assert!(
        err.lines()
            .any(|l| l.contains("WARN") && l.contains("quotes") && l.contains("match no seed")),
        "{err}"
    );
    assert!(err.contains("plugin quotes: claimed no page"), "{err}");
    assert_eq!(s["plugins"]["quotes"]["calls"], 0, "{s}");
}

#[test]
fn fetch_resolve_maps_many_host_names_to_loopback() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        if req.uri().path() == "/robots.txt" {
            return html(404, "");
        }
        html(200, "<p>one of many hosts</p>")
    }));
    let port = site.addr.port();
    let seeds: Vec<String> = (0..20)
        .map(|i| format!("http://shop{i}.bench.test:{port}/"))
        .collect();
    let st = tempdir("resolve");
    let mut extra: Vec<&str> = seeds.iter().map(String::as_str).collect();
    extra.extend([
        "--set",
        "fetch.resolve={ \"*.bench.test\" = \"127.0.0.1\" }",
    ]);
    run_crawl(&st, &extra);
    let s = summary(&st);
    assert_eq!(s["pages"], 20, "{s}");
    // One robots.txt per host name: they are 20 hosts to the crawler, one server to us.
    let robots = site.paths().iter().filter(|p| *p == "/robots.txt").count();
    assert_eq!(robots, 20);
    assert_eq!(s["requests"], 40, "{s}");
}

/// A seeds file beside `state`: `http://hN.DOMAIN:PORT/` for N below `hosts`, one host name
/// each (the crawl maps them to loopback with `fetch.resolve`).
fn host_seeds(state: &Path, domain: &str, port: u16, hosts: usize) -> std::path::PathBuf {
    let file = state.with_extension("seeds");
    let seeds: String = (0..hosts)
        .map(|i| format!("http://h{i}.{domain}:{port}/\n"))
        .collect();
    std::fs::write(&file, seeds).expect("seeds file");
    file
}

/// Crawls `hosts` host names under `domain` (all resolved to 127.0.0.1), one request at a
/// time per host and `concurrency` in all, with `extra` arguments.
fn crawl_many_hosts(
    st: &Path,
    domain: &str,
    port: u16,
    hosts: usize,
    concurrency: &str,
    extra: &[&str],
) {
    let seeds_file = host_seeds(st, domain, port, hosts);
    let sf = seeds_file.display().to_string();
    let resolve = format!("fetch.resolve={{ \"*.{domain}\" = \"127.0.0.1\" }}");
    let mut args = vec![
        "--seeds-file",
        &sf,
        "--per-host",
        "1",
        "--concurrency",
        concurrency,
        "--set",
        &resolve,
    ];
    args.extend_from_slice(extra);
    run_crawl(st, &args);
    std::fs::remove_file(&seeds_file).ok();
}

/// 500 host names on one loopback server, one request at a time per host: every host gets
/// its three pages and its robots.txt, no host ever sees two requests at once, and the crawl
/// ends by itself.
#[test]
fn five_hundred_hosts_each_crawled_fully_and_politely() {
    use std::sync::{Arc, Mutex};
    // Per host: (requests in flight now, most in flight at once, requests served).
    type PerHost = Arc<Mutex<HashMap<String, (usize, usize, usize)>>>;
    let per_host: PerHost = Arc::default();
    let rt = sandcrawl_e2e::runtime();
    let track = Arc::clone(&per_host);
    let site = rt.block_on(serve("127.0.0.1", move |req| {
        let track = Arc::clone(&track);
        async move {
            let host = sandcrawl_e2e::header(&req, "host", "");
            if let Ok(mut m) = track.lock() {
                let e = m.entry(host.clone()).or_default();
                e.0 += 1;
                e.1 = e.1.max(e.0);
                e.2 += 1;
            }
            // Long enough that a second request to the same host would overlap.
            tokio::time::sleep(Duration::from_millis(5)).await;
            if let Ok(mut m) = track.lock() {
                m.entry(host).or_default().0 -= 1;
            }
            match req.uri().path() {
                "/robots.txt" => html(404, ""),
                "/" => html(200, "<a href=\"/a\">a</a> <a href=\"/b\">b</a>"),
                _ => html(200, "<a href=\"/\">home</a> <a href=\"/a\">a</a>"),
            }
        }
    }));
    let port = site.addr.port();
    let hosts = 500;
    let st = tempdir("many-hosts");
    crawl_many_hosts(&st, "many.test", port, hosts, "64", &[]);
    let s = summary(&st);
    assert_eq!(s["pages"], 3 * hosts, "{s}");
    assert_eq!(s["requests"], 4 * hosts, "{s}");
    let m = per_host.lock().map(|m| m.clone()).unwrap_or_default();
    assert_eq!(m.len(), hosts);
    for (host, (_, most, served)) in &m {
        assert_eq!(*served, 4, "{host}: robots.txt and three pages, each once");
        assert_eq!(*most, 1, "{host}: per_host = 1 held");
    }
}

/// Which host goes next: a host whose own request just finished goes first, while its
/// connection is warm, but at most 32 times in a row (`crawl/ready.rs`). One request at a time:
/// the seed host "big" links to 79 pages of its own and to ten small hosts, each a chain of
/// three pages. Big runs its first 33 pages back to back (its seed, then 32 turns at the
/// front), then yields: every small host runs its chain in one go, and big finishes last.
/// Before, each host went to the back after every page, so the small hosts' pages were
/// interleaved with each other and with big's.
#[test]
fn a_finished_host_goes_on_for_a_bounded_streak() {
    use std::sync::{Arc, Mutex};
    let order: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let rt = sandcrawl_e2e::runtime();
    let log = Arc::clone(&order);
    let site = rt.block_on(serve("127.0.0.1", move |req| {
        let log = Arc::clone(&log);
        async move {
            let host = sandcrawl_e2e::header(&req, "host", "");
            let name = host.split('.').next().unwrap_or_default().to_owned();
            let path = req.uri().path().to_owned();
            if path == "/robots.txt" {
                return html(404, "");
            }
            if let Ok(mut l) = log.lock() {
                l.push((name.clone(), path.clone()));
            }
            let port = host.rsplit(':').next().unwrap_or_default();
            let body = match (name.as_str(), path.as_str()) {
                ("big", "/1") => {
                    let own: String = (2..=80)
                        .map(|n| format!("<a href=\"/{n}\">{n}</a>"))
                        .collect();
                    let small: String = (0..10)
                        .map(|i| format!("<a href=\"http://s{i}.order.test:{port}/1\">s{i}</a>"))
                        .collect();
                    own + &small
                }
                ("big", _) => String::new(),
                (_, "/1") => "<a href=\"/2\">2</a>".into(),
                (_, "/2") => "<a href=\"/3\">3</a>".into(),
                _ => String::new(),
            };
            html(200, body)
        }
    }));
    let port = site.addr.port();
    let st = tempdir("streak");
    let seed = format!("http://big.order.test:{port}/1");
    let domain = format!("order.test:{port}");
    run_crawl(
        &st,
        &[
            "--allow-domain",
            &domain,
            "--per-host",
            "1",
            "--concurrency",
            "1",
            "--set",
            "fetch.resolve={ \"*.order.test\" = \"127.0.0.1\" }",
            &seed,
        ],
    );
    let s = summary(&st);
    assert_eq!(s["pages"], 80 + 30, "{s}");
    let order = order.lock().map(|l| l.clone()).unwrap_or_default();
    let hosts: Vec<&str> = order.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(hosts.len(), 110, "{order:?}");
    assert!(
        hosts[..33].iter().all(|h| *h == "big"),
        "big's seed and 32 more pages first: {hosts:?}"
    );
    let small = &order[33..63];
    let mut seen = BTreeSet::new();
    for chain in small.chunks(3) {
        let host = &chain[0].0;
        assert!(
            host.starts_with('s'),
            "a small host after big's streak: {hosts:?}"
        );
        let paths: Vec<&str> = chain
            .iter()
            .map(|(h, p)| {
                assert_eq!(h, host, "a small host's chain in one go: {order:?}");
                p.as_str()
            })
            .collect();
        assert_eq!(paths, ["/1", "/2", "/3"], "{order:?}");
        assert!(seen.insert(host.clone()), "{host} twice: {order:?}");
    }
    assert_eq!(seen.len(), 10);
    assert!(hosts[63..].iter().all(|h| *h == "big"), "{hosts:?}");
}

/// A host with nothing queued or in flight is done: its idle connection closes at once, not
/// after `fetch.idle_timeout_ms` (here 10 minutes). 300 hosts, each a robots.txt and a chain
/// of three pages, four requests at a time: the server never sees more than a few connections
/// open at once, and each host's pages share its one connection (a host whose next page is
/// queued keeps it). Before, every host's connection stayed open until the crawl ended.
#[test]
fn a_finished_hosts_connection_closes_at_once() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        match req.uri().path() {
            "/robots.txt" => html(404, ""),
            "/" => html(200, "<a href=\"/2\">2</a>"),
            "/2" => html(200, "<a href=\"/3\">3</a>"),
            _ => html(200, "<p>last</p>"),
        }
    }));
    let port = site.addr.port();
    let hosts = 300;
    let st = tempdir("close-done");
    crawl_many_hosts(
        &st,
        "done.test",
        port,
        hosts,
        "4",
        &["--set", "fetch.idle_timeout_ms=600000"],
    );
    let s = summary(&st);
    assert_eq!(s["pages"], 3 * hosts, "{s}");
    let accepted = site.connections_accepted();
    assert!(
        (hosts..=hosts + hosts / 10).contains(&accepted),
        "one connection per host for its robots.txt and its chain: {accepted}"
    );
    // Four requests in flight, and a closed connection is seen by the server a moment later.
    let most = site.connections_most();
    assert!(
        most <= 40,
        "{most} connections open at once ({accepted} accepted)"
    );
}

/// A broad crawl on a machine whose open-file limit is low (600, soft and hard): 1,200 host
/// names, each a connection of its own. Connections past what the limit leaves after the
/// store's reserve and the requests in flight close after their response, so the server never
/// sees more open at once than that, and the crawl gets every page. Before, every connection
/// stayed open and the store, unable to open a file, stopped the crawl. A limit too low for the
/// concurrency is refused with one line naming the fix.
#[test]
fn a_broad_crawl_fits_a_low_open_file_limit() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        match req.uri().path() {
            "/robots.txt" => html(404, ""),
            _ => html(200, "<p>one page per host</p>"),
        }
    }));
    let port = site.addr.port();
    let hosts = 1_200;
    let st = tempdir("open-files");
    let seeds_file = host_seeds(&st, "fd.test", port, hosts);
    let (sf, state) = (seeds_file.display().to_string(), st.display().to_string());
    let mut args = crawl_args(
        &state,
        &[
            "--seeds-file",
            &sf,
            "--per-host",
            "1",
            "--concurrency",
            "64",
            "--set",
            "fetch.resolve={ \"*.fd.test\" = \"127.0.0.1\" }",
        ],
    );
    let limit = 600;
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _, err) = sandcrawl_e2e::run_bin_with_open_files(limit, &refs, LIMIT);
    assert!(status.success(), "crawl failed: {err}");
    let s = summary(&st);
    assert_eq!(s["pages"], hosts, "{s}");
    assert_eq!(s["requests"], 2 * hosts, "{s}");
    // A host past the kept connections opens one per request (robots.txt, then its page).
    let accepted = site.connections_accepted();
    assert!(
        (hosts..=2 * hosts).contains(&accepted),
        "{accepted} connections"
    );
    // The store and outputs keep 256 descriptors back (fetch::conns::RESERVED_FDS), so the
    // crawler holds at most 600 - 256 connections: the kept ones and one per request in flight.
    // The server sees each close a little after the crawler makes it, and its count ran up to
    // 60 ahead here, so it is held to half the reserve. Without the bound, connections pile up
    // to the open-file limit (1,200 hosts) and the crawl stops.
    let most = site.connections_most();
    assert!(
        most <= limit as usize - 128,
        "{most} connections open at once under an open-file limit of {limit} ({accepted} accepted)"
    );

    let low = tempdir("open-files-low");
    args = crawl_args(&low.display().to_string(), &["--concurrency", "64"]);
    let seed = site.url("/");
    args.push(seed);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _, err) = sandcrawl_e2e::run_bin_with_open_files(200, &refs, LIMIT);
    assert_eq!(status.code(), Some(1), "{err}");
    let line = err.lines().last().unwrap_or_default();
    assert!(
        line.contains("open-file limit is 200") && line.contains("ulimit -n"),
        "{err}"
    );
    std::fs::remove_file(&seeds_file).ok();
}

/// A site whose robots.txt names a sitemap index: a nested index (one level too deep at the
/// end), a gzip urlset with lastmod dates, a text sitemap, malformed XML and a missing file.
fn sitemap_site() -> (tokio::runtime::Runtime, Server) {
    use std::io::Write as _;
    let rt = sandcrawl_e2e::runtime();
    let urlset = |entries: &[(&str, &str)]| {
        let mut x = String::from(
            r#"<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">"#,
        );
        for (loc, lastmod) in entries {
            x.push_str(&format!("<url><loc>{loc}</loc>"));
            if !lastmod.is_empty() {
                x.push_str(&format!("<lastmod>{lastmod}</lastmod>"));
            }
            x.push_str("</url>");
        }
        x + "</urlset>"
    };
    let index = |locs: &[&str]| {
        let mut x = String::from("<sitemapindex>");
        for l in locs {
            x.push_str(&format!("<sitemap><loc>{l}</loc></sitemap>"));
        }
        x + "</sitemapindex>"
    };
    let site = rt.block_on(serve("127.0.0.1", move |req| {
        let host = sandcrawl_e2e::header(&req, "host", "");
        let base = format!("http://{host}");
        let path = req.uri().path().to_owned();
        let gz = {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let body = urlset(&[
                (&format!("{base}/p/new"), "2024-06-01T10:00:00+00:00"),
                (&format!("{base}/p/old"), "2020-01-01"),
                (&format!("{base}/p/undated"), ""),
                (&format!("{base}/p/secret"), ""),
                ("http://elsewhere.test/p/x", ""),
            ]);
            enc.write_all(body.as_bytes()).expect("gzip");
            enc.finish().expect("gzip")
        };
        let body: Option<(u16, Vec<u8>)> = match path.as_str() {
            "/robots.txt" => Some((
                200,
                format!("User-agent: *\nDisallow: /p/secret\nSitemap: {base}/sm/index.xml\n")
                    .into_bytes(),
            )),
            "/sm/index.xml" => Some((
                200,
                index(&[
                    "/sm/pages.xml.gz",
                    "/sm/list.txt",
                    "/sm/n1.xml",
                    "/sm/broken.xml",
                    "/sm/missing.xml",
                ])
                .into_bytes(),
            )),
            "/sm/pages.xml.gz" => Some((200, gz)),
            "/sm/list.txt" => Some((
                200,
                format!("{base}/p/text1\n{base}/p/text2\n{base}/p/new\n").into_bytes(),
            )),
            "/sm/n1.xml" => Some((200, index(&["/sm/n2.xml"]).into_bytes())),
            "/sm/n2.xml" => Some((200, index(&["/sm/n3.xml"]).into_bytes())),
            "/sm/n3.xml" => Some((200, index(&["/sm/n4.xml"]).into_bytes())),
            "/sm/n4.xml" => Some((200, urlset(&[(&format!("{base}/p/too-deep"), "")]).into_bytes())),
            "/sm/broken.xml" => Some((
                200,
                format!("<urlset><url><loc>{base}/p/before-fault</loc></url><url><loc>{base}/p/x</loc><!-- never closed")
                    .into_bytes(),
            )),
            "/sitemap.xml" => Some((200, urlset(&[(&format!("{base}/p/fallback"), "")]).into_bytes())),
            p if p == "/" || p.starts_with("/p/") => Some((200, b"<p>no links</p>".to_vec())),
            _ => None,
        };
        async move {
            match body {
                Some((status, b)) => html(status, b),
                None => html(404, "not here"),
            }
        }
    }));
    (rt, site)
}

#[test]
fn sitemaps_seed_the_crawl_through_scope_robots_dedup_and_since() {
    let (_rt, site) = sitemap_site();
    let st = tempdir("sitemaps");
    let root = site.url("/");
    let err = run_crawl(&st, &[&root, "--sitemaps", "--since", "2024-01-01"]);
    let s = summary(&st);
    let mut pages: Vec<String> = page_paths(&site)
        .into_iter()
        .filter(|p| !p.starts_with("/sm/"))
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "/",
            "/p/before-fault",
            "/p/new",
            "/p/text1",
            "/p/text2",
            "/p/undated",
        ],
        "old, disallowed, off-site and too-deep entries are not fetched; /p/new once: {s}"
    );
    let sm = &s["sitemaps"];
    // index, pages.xml.gz, list.txt, n1, n2, n3, broken: n4 is one level too deep.
    assert_eq!(sm["files"], 7, "{s}");
    let errors = sm["errors"].to_string();
    assert!(errors.contains("broken.xml: malformed XML"), "{errors}");
    assert!(
        errors.contains("missing.xml") && errors.contains("404"),
        "{errors}"
    );
    assert!(
        errors.contains("n4.xml: sitemap indexes nested deeper than 3 levels"),
        "{errors}"
    );
    assert!(!site.paths().contains(&"/sm/n4.xml".to_owned()));
    assert_eq!(s["skipped"]["sitemap_older_than_since"], 1, "{s}");
    assert_eq!(s["skipped"]["off_domain"], 1, "{s}");
    assert_eq!(s["skipped"]["robots_disallowed"], 1, "{s}");
    assert!(err.contains("sitemaps: 7 files"), "{err}");
}

#[test]
fn sitemaps_fall_back_to_sitemap_xml_and_are_off_by_default() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        let host = sandcrawl_e2e::header(&req, "host", "");
        match req.uri().path() {
            "/robots.txt" => html(200, "User-agent: *\nAllow: /\n"),
            "/sitemap.xml" => html(
                200,
                format!("<urlset><url><loc>http://{host}/listed</loc></url></urlset>"),
            ),
            _ => html(200, "<p>no links</p>"),
        }
    }));
    let st = tempdir("sitemap-off");
    run_crawl(&st, &[&site.url("/")]);
    assert!(
        !site.paths().contains(&"/sitemap.xml".to_owned()),
        "off unless asked"
    );
    assert!(summary(&st).get("sitemaps").is_none());

    let st = tempdir("sitemap-fallback");
    run_crawl(&st, &[&site.url("/"), "--sitemaps"]);
    assert!(site.paths().contains(&"/listed".to_owned()));
    assert_eq!(summary(&st)["sitemaps"]["files"], 1);
}

#[test]
fn urls_are_fetched_as_written_and_deduplicated_by_their_normal_form() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        match req.uri().path() {
            "/robots.txt" => html(404, ""),
            "/" => html(
                200,
                "<a href=\"/p?flag\">1</a> <a href=\"/p?flag=\">same page for dedup</a> \
                 <a href=\"/q?b=2&amp;a=1\">2</a> <a href=\"/q?a=1&amp;b=2\">same</a> \
                 <a href=\"/s?q=a%20b\">3</a> <a href=\"/t#frag\">4</a>",
            ),
            _ => html(200, "<p>leaf</p>"),
        }
    }));
    let st = tempdir("as-written");
    run_crawl(&st, &[&site.url("/")]);
    let mut asked: Vec<String> = page_paths(&site);
    asked.sort();
    // What the page wrote goes on the wire (the first spelling of each page), once.
    assert_eq!(asked, ["/", "/p?flag", "/q?b=2&a=1", "/s?q=a%20b", "/t"]);
}

/// A server that never finishes a sitemap must not hold the crawl: Ctrl+C while sitemaps are
/// read stops at once (exit 130), and says which files were left.
#[test]
fn ctrl_c_while_sitemaps_are_read_stops_at_once() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        match req.uri().path() {
            "/robots.txt" => html(404, ""),
            "/sitemap.xml" => {
                tokio::time::sleep(Duration::from_secs(50)).await;
                html(200, "<urlset></urlset>")
            }
            _ => html(200, "<p>page</p>"),
        }
    }));
    let st = tempdir("sitemap-sigint");
    let s = st.display().to_string();
    let root = site.url("/");
    let args = crawl_args(&s, &[&root, "--sitemaps"]);
    let mut child = Command::new(sandcrawl_e2e::bin())
        .args(&args)
        .env("SANDCRAWL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let asked = Instant::now() + Duration::from_secs(20);
    while !site.paths().contains(&"/sitemap.xml".to_owned()) && Instant::now() < asked {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(site.paths().contains(&"/sitemap.xml".to_owned()));
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    // The sitemap answers after 50 s: stopping within this bound means it was not waited for.
    let status = wait_bounded(&mut child, Duration::from_secs(20)).expect("stops after Ctrl+C");
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(130), "{err}");
    let sm = summary(&st)["sitemaps"].to_string();
    assert!(
        sm.contains("stopped (Ctrl+C) with 1 sitemap files not read"),
        "{sm}"
    );
    assert!(
        !site.paths().contains(&"/".to_owned()),
        "no page fetched after the stop"
    );
}

/// A sitemap listing more URLs than the crawl may fetch queues no more than `max_pages`.
#[test]
fn sitemap_urls_are_capped_by_max_pages() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        let host = sandcrawl_e2e::header(&req, "host", "");
        match req.uri().path() {
            "/robots.txt" => html(404, ""),
            "/sitemap.xml" => {
                let list: String = (0..20).map(|i| format!("http://{host}/p/{i}\n")).collect();
                html(200, list)
            }
            _ => html(200, "<p>page</p>"),
        }
    }));
    let st = tempdir("sitemap-cap");
    run_crawl(&st, &[&site.url("/"), "--sitemaps", "--max-pages", "5"]);
    let s = summary(&st);
    assert_eq!(s["sitemaps"]["urls"], 5, "{s}");
    assert!(
        s["sitemaps"]["errors"]
            .to_string()
            .contains("15 URLs past scope.max_pages (5)"),
        "{s}"
    );
    assert_eq!(s["pages"], 5, "{s}");
}

/// A plugin that crashes on every page is disabled after `plugin_max_failures` crashes in a
/// row: its remaining pages fail with `plugin_disabled` instead of each spending a budget,
/// and the summary says so.
#[test]
fn a_plugin_that_keeps_crashing_is_disabled() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        match req.uri().path() {
            "/" => {
                let links: String = (0..10)
                    .map(|i| format!("<a href=\"/hostile/p{i}/panic\">{i}</a>"))
                    .collect();
                html(200, links)
            }
            _ => html(200, "<p>x</p>"),
        }
    }));
    let st = tempdir("disable");
    let state = st.display().to_string();
    let hostile = plugin("hostile").display().to_string();
    let u = site.url("/");
    let (status, _, err) = run_bin(
        &[
            "run",
            "--plugins",
            &hostile,
            "--state",
            &state,
            "--no-progress",
            "--set",
            "plugin_max_failures=3",
            &u,
        ],
        LIMIT,
    );
    assert!(status.success(), "{err}");
    let s = summary(&st);
    let traps = s["plugins"]["hostile"]["errors"]["trap"]
        .as_u64()
        .unwrap_or(0);
    let disabled = s["errors"]["plugin_disabled"].as_u64().unwrap_or(0);
    // Calls already running when the third crash lands may still crash; none start after.
    assert!((3..=5).contains(&traps), "{s}");
    assert_eq!(
        traps + disabled,
        10,
        "every page either crashed or failed as disabled: {s}"
    );
    // Each of those pages was answered (200) and failed after the answer.
    assert_eq!(
        s["status"]["200"], 11,
        "the start page and the ten hostile pages: {s}"
    );
    let why = s["plugins_disabled"]["hostile"].as_str().unwrap_or("");
    assert!(
        why.contains("consecutive calls trapped or timed out"),
        "{s}"
    );
    assert!(err.contains("plugin hostile was disabled"), "{err}");
    assert!(
        s["error_samples"]["plugin_disabled"]["cause"]
            .as_str()
            .is_some_and(|c| c.contains("plugin hostile is disabled")),
        "{s}"
    );
}
