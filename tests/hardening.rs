//! Attacks on the crawl's promises, each reproduced with the real binary against real
//! servers on loopback: hostile plugins that sleep, flood the log, forge terminal output or
//! return huge items; hostile sites with redirect aliases, traps, pages of links, heavy
//! bodies, dripping hosts and other ports. Each test asserts the bound and that the
//! well-behaved part of the same crawl is all there.

use bytes::Bytes;
use sandcrawl_e2e::{
    Server, full, html, plugin, read_items, run_bin, run_measured, serve, summary, tempdir,
};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);
const MIB: u64 = 1024 * 1024;

/// Runs a crawl of `seeds` with `extra` flags; returns (exit status, stderr, state dir).
fn crawl(
    tag: &str,
    extra: &[&str],
    seeds: &[String],
) -> (std::process::ExitStatus, String, std::path::PathBuf) {
    let st = tempdir(tag);
    let state = st.display().to_string();
    let mut args: Vec<&str> = vec!["run", "--state", &state, "--no-progress"];
    args.extend_from_slice(extra);
    args.extend(seeds.iter().map(String::as_str));
    let (status, _, err) = run_bin(&args, LIMIT);
    (status, err, st)
}

/// No raw control character (ESC, CR, a stray LF inside a line) reached the output.
fn assert_no_raw_controls(text: &str) {
    assert!(!text.contains('\x1b'), "raw ESC in output:\n{text}");
    assert!(!text.contains('\r'), "raw CR in output:\n{text}");
}

/// Sends Ctrl+C (SIGINT) to `child`, waits for it to exit (bounded by `limit`) and returns
/// what it wrote to stderr.
fn interrupt(child: &mut std::process::Child, limit: Duration) -> String {
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let end = Instant::now() + limit;
    while child.try_wait().ok().flatten().is_none() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().ok().flatten().is_some(),
        "still running after Ctrl+C"
    );
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut err);
    }
    err
}

// ---- plugins, through the command line ----

#[test]
fn forged_manifest_text_never_reaches_the_terminal_raw() {
    let f = plugin("forged-manifest").display().to_string();
    let (st, out, err) = run_bin(&["plugins", "check", &f], LIMIT);
    assert!(!st.success());
    assert_no_raw_controls(&out);
    assert_no_raw_controls(&err);
    assert!(!out.contains("ok:"), "{out}");
    let line = err
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_default();
    assert!(line.contains("bad manifest: version"), "{err}");

    let dir = tempdir("forged-list");
    std::fs::copy(plugin("forged-manifest"), dir.join("forged.wasm")).expect("copy");
    std::fs::copy(plugin("quotes"), dir.join("quotes.wasm")).expect("copy");
    let d = dir.display().to_string();
    let (st, out, err) = run_bin(&["plugins", "list", &d], LIMIT);
    assert!(!st.success(), "a refused file makes list fail");
    assert_no_raw_controls(&out);
    assert_no_raw_controls(&err);
    // The one real plugin line, and no forged one.
    assert_eq!(
        out.lines().filter(|l| l.contains("ok: quotes")).count(),
        0,
        "{out}"
    );
    assert_eq!(
        out.lines().filter(|l| l.starts_with("quotes")).count(),
        1,
        "{out}"
    );
}

#[test]
fn a_manifest_that_sleeps_ends_at_the_deadline() {
    let f = plugin("slow-manifest").display().to_string();
    let started = Instant::now();
    let (st, _, err) = run_bin(&["plugins", "check", &f], LIMIT);
    assert!(!st.success());
    assert!(
        err.contains("manifest() failed: timed out after 2000 ms"),
        "{err}"
    );
    // The default 2 s budget, not the day the plugin asked for.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn plugin_log_lines_cannot_forge_host_lines() {
    let page = tempdir("forge").join("page.html");
    std::fs::write(&page, "<html></html>").expect("write");
    let h = plugin("hostile").display().to_string();
    let p = page.display().to_string();
    let (st, _, err) = run_bin(
        &[
            "parse",
            "--plugin",
            &h,
            "--url",
            "http://t.test/hostile/logforge",
            &p,
        ],
        LIMIT,
    );
    assert!(st.success(), "{err}");
    assert_no_raw_controls(&err);
    for forged in ["FORGED LOG LINE", "FORGED STDOUT LINE"] {
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(forged)).collect();
        assert_eq!(lines.len(), 1, "{err}");
        // Still on the plugin's own line, tagged with its name, after the escaped break.
        assert!(lines[0].contains("hostile"), "{err}");
        assert!(
            lines[0].contains("\\n") || lines[0].contains("\\r"),
            "{err}"
        );
    }
}

#[test]
fn parse_prints_a_31_mib_item_without_amplification() {
    let page = tempdir("wide").join("page.html");
    std::fs::write(&page, "<html></html>").expect("write");
    let h = plugin("hostile").display().to_string();
    let p = page.display().to_string();
    let m = run_measured(
        &[
            "parse",
            "--plugin",
            &h,
            "--url",
            "http://t.test/hostile/widejson",
            &p,
        ],
        LIMIT,
    );
    assert!(m.status.success(), "{}", m.stderr);
    assert!(
        m.stdout.len() > 31 * MIB as usize - 1024,
        "{}",
        m.stdout.len()
    );
    // The item is 31 MiB of JSON text: a value tree of it took 1.7 GB. Text stays text:
    // the guest's copy, the host's copy and the printed one.
    assert!(m.max_rss < 400 * MIB, "peak RSS {} MiB", m.max_rss / MIB);
}

#[test]
fn ctrl_c_during_a_blocked_plugin_call_exits_without_a_backtrace() {
    let page = tempdir("sigint").join("page.html");
    std::fs::write(&page, "<html></html>").expect("write");
    let mut child = std::process::Command::new(sandcrawl_e2e::bin())
        .args([
            "parse",
            "--plugin",
            &plugin("hostile").display().to_string(),
            "--url",
            "http://t.test/hostile/sleepday",
            &page.display().to_string(),
        ])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(700));
    let err = interrupt(&mut child, Duration::from_secs(20));
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("backtrace"), "{err}");
}

// ---- plugins in a crawl ----

fn hostile_site(rt: &tokio::runtime::Runtime, attacks: &'static [&'static str]) -> Server {
    rt.block_on(serve("127.0.0.1", move |req| async move {
        match req.uri().path() {
            "/" => {
                let mut links: String = attacks
                    .iter()
                    .map(|a| format!("<a href=\"/hostile/{a}\">x</a>"))
                    .collect();
                for i in 0..10 {
                    links.push_str(&format!("<a href=\"/hostile/fine{i}\">ok</a>"));
                }
                html(200, links)
            }
            _ => html(200, "<p>x</p>"),
        }
    }))
}

#[test]
fn sleeping_and_flooding_plugins_cost_their_budget_and_the_crawl_goes_on() {
    let rt = sandcrawl_e2e::runtime();
    let site = hostile_site(&rt, &["sleepday", "sleep", "logflood", "exit"]);
    let h = plugin("hostile").display().to_string();
    let started = Instant::now();
    let (status, err, st) = crawl(
        "sleepers",
        &["--plugins", &h, "--set", "limits.timeout_ms=500"],
        &[site.url("/")],
    );
    assert!(status.success(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let items = read_items(&st.join("items.jsonl"));
    let ok: BTreeSet<String> = items
        .iter()
        .filter(|i| i["kind"] == "ok")
        .map(|i| i["url"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(ok.len(), 10, "every well-behaved page's item: {ok:?}");
    let s = summary(&st);
    let e = &s["plugins"]["hostile"]["errors"];
    assert_eq!(e["timeout"], 2, "{s}");
    assert_eq!(e["log_limit"], 1, "{s}");
    assert_eq!(e["trap"], 1, "{s}");
    assert!(err.contains("called exit(1)"), "{err}");
}

#[test]
fn a_plugin_that_cannot_load_is_in_the_summary_and_the_exit_code() {
    let rt = sandcrawl_e2e::runtime();
    let site = hostile_site(&rt, &[]);
    let dir = tempdir("refused");
    std::fs::copy(plugin("hostile"), dir.join("hostile.wasm")).expect("copy");
    std::fs::write(dir.join("broken.wasm"), b"not wasm").expect("write");
    let d = dir.display().to_string();
    let (status, err, st) = crawl("refused-run", &["--plugins", &d], &[site.url("/")]);
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(err.contains("could not be loaded"), "{err}");
    let s = summary(&st);
    let refused = s["plugins_refused"].as_array().cloned().unwrap_or_default();
    assert_eq!(refused.len(), 1, "{s}");
    assert!(
        refused[0]
            .as_str()
            .unwrap_or("")
            .contains("broken.wasm: not a WebAssembly file")
    );
    // The loadable plugin still did its work.
    assert_eq!(read_items(&st.join("items.jsonl")).len(), 10);
}

#[test]
fn url_pattern_bounds_are_one_clear_line() {
    let cfg = tempdir("patterns").join("crawl.toml");
    let pats: Vec<String> = (0..100_000)
        .map(|i| format!("\"http://x/{i}/*\""))
        .collect();
    std::fs::write(
        &cfg,
        format!("[plugins.quotes]\npatterns = [{}]\n", pats.join(",")),
    )
    .expect("write");
    let c = cfg.display().to_string();
    let state = tempdir("patterns-state").display().to_string();
    let m = run_measured(
        &[
            "run",
            "--config",
            &c,
            "--state",
            &state,
            "http://127.0.0.1:9/",
        ],
        LIMIT,
    );
    assert!(!m.status.success());
    let line = m
        .stderr
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_default();
    assert!(
        line.contains("plugins.quotes.patterns") && line.contains("at most 1000"),
        "{}",
        m.stderr
    );
    assert!(m.max_rss < 200 * MIB, "peak RSS {} MiB", m.max_rss / MIB);
}

// ---- hostile sites ----

#[test]
fn aliases_that_redirect_to_one_page_fetch_and_write_it_once() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        let path = req.uri().path().to_owned();
        if path.starts_with("/hostile/alias") {
            return hyper::Response::builder()
                .status(301)
                .header("location", "/hostile/target")
                .body(full(""))
                .expect("response");
        }
        html(200, "<p>the page</p>")
    }));
    let seeds: Vec<String> = (1..=5)
        .map(|i| site.url(&format!("/hostile/alias{i}")))
        .collect();
    let h = plugin("hostile").display().to_string();
    let (status, err, st) = crawl("aliases", &["--plugins", &h], &seeds);
    assert!(status.success(), "{err}");
    let target_hits = site
        .paths()
        .iter()
        .filter(|p| *p == "/hostile/target")
        .count();
    assert_eq!(target_hits, 1, "{:?}", site.paths());
    let items = read_items(&st.join("items.jsonl"));
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["url"], site.url("/hostile/target"));
    let s = summary(&st);
    assert_eq!(s["skipped"]["redirect_duplicate"], 4, "{s}");

    // The item id follows the final URL: a crawl seeded with the target itself agrees.
    let (_, _, direct) = crawl(
        "aliases-direct",
        &["--plugins", &h],
        &[site.url("/hostile/target")],
    );
    let again = read_items(&direct.join("items.jsonl"));
    assert_eq!(again[0]["id"], items[0]["id"]);
}

#[test]
fn calendar_session_id_and_repeating_path_traps_end_with_default_settings() {
    let rt = sandcrawl_e2e::runtime();
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let site = rt.block_on(serve("127.0.0.1", move |req| {
        let n = std::sync::Arc::clone(&n);
        async move {
            let path = req.uri().path().to_owned();
            let k = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let body = if let Some(day) = path.strip_prefix("/calendar/") {
                let d: u64 = day.parse().unwrap_or(0);
                format!("<a href=\"/calendar/{}\">next</a>", d + 1)
            } else if path == "/session" {
                (0..5)
                    .map(|i| format!("<a href=\"/session?sid={k}x{i}\">s</a>"))
                    .collect()
            } else if path.starts_with("/loop") {
                "<a href=\"a/b/\">deeper</a>".to_owned()
            } else {
                "<a href=\"/calendar/0\">c</a><a href=\"/session\">s</a><a href=\"/loop/\">l</a>"
                    .to_owned()
            };
            html(200, body)
        }
    }));
    let (status, err, st) = crawl("traps", &[], &[site.url("/")]);
    assert!(status.success(), "{err}");
    let s = summary(&st);
    let pages = s["pages"].as_u64().unwrap_or(0);
    // Depth 20 ends the calendar; 1,000 variants per path end the session ids; the path
    // rules end /loop/a/b/a/b/...
    assert!(pages < 1_200, "{pages} pages: {s}");
    assert!(
        s["skipped"]["trap_query_variants"].as_u64().unwrap_or(0) > 0,
        "{s}"
    );
    assert!(s["skipped"]["too_deep"].as_u64().unwrap_or(0) > 0, "{s}");
    assert!(
        s["skipped"]["trap_repeated_segments"].as_u64().unwrap_or(0) > 0,
        "{s}"
    );
    let calendar = site
        .paths()
        .iter()
        .filter(|p| p.starts_with("/calendar/"))
        .count();
    assert!(calendar <= 21, "{calendar}");
}

#[test]
fn the_link_follower_keeps_a_bounded_number_of_links_per_page() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        if req.uri().path() == "/" {
            let links: String = (0..50_000)
                .map(|i| format!("<a href=/l{i}>x</a>"))
                .collect();
            html(200, links)
        } else {
            html(200, "")
        }
    }));
    let (status, err, st) = crawl("linkcap", &["--max-pages", "1"], &[site.url("/")]);
    assert!(status.success(), "{err}");
    let s = summary(&st);
    assert_eq!(s["skipped"]["link_cap"], 40_000, "{s}");
    assert_eq!(s["queued_left"], 10_000, "{s}");
}

#[test]
fn memory_stays_bounded_by_the_in_flight_budget() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b'a'; 9 * MIB as usize]).expect("gzip");
    let body = Bytes::from(gz.finish().expect("gzip"));
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", move |req| {
        let body = body.clone();
        async move {
            if req.uri().path() == "/" {
                let links: String = (0..120).map(|i| format!("<a href=/big{i}>x</a>")).collect();
                return html(200, links);
            }
            // Slow enough that many bodies are in flight at once.
            tokio::time::sleep(Duration::from_millis(200)).await;
            hyper::Response::builder()
                .header("content-type", "text/html")
                .header("content-encoding", "gzip")
                .body(full(body))
                .expect("response")
        }
    }));
    let st = tempdir("budget");
    let state = st.display().to_string();
    let seed = site.url("/");
    let m = run_measured(
        &[
            "run",
            "--state",
            &state,
            "--no-progress",
            "--concurrency",
            "64",
            "--per-host",
            "64",
            "--set",
            "fetch.max_bytes_in_flight=67108864",
            &seed,
        ],
        LIMIT,
    );
    assert!(m.status.success(), "{}", m.stderr);
    let s = summary(&st);
    assert_eq!(s["pages"], 121, "no page is lost while fetches wait: {s}");
    // 64 MiB budget plus one 9 MiB overdraft, instead of 64 x 9 MiB in flight.
    assert!(m.max_rss < 200 * MIB, "peak RSS {} MiB", m.max_rss / MIB);
}

#[test]
fn a_body_cut_at_the_limit_is_logged_and_counted() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |_| async move {
        html(200, vec![b'x'; 2 * MIB as usize])
    }));
    let (status, err, st) = crawl(
        "cut",
        &["--set", "fetch.max_body_bytes=1048576"],
        &[site.url("/")],
    );
    assert!(status.success(), "{err}");
    assert_eq!(summary(&st)["truncated_bodies"], 1);
    assert!(err.contains("body cut at fetch.max_body_bytes"), "{err}");
}

#[test]
fn a_host_that_keeps_timing_out_is_given_up() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        if req.uri().path() == "/" {
            let links: String = (0..40).map(|i| format!("<a href=/drip{i}>x</a>")).collect();
            return html(200, links);
        }
        if req.uri().path() == "/robots.txt" {
            return html(404, "");
        }
        // Never answers within the read timeout.
        tokio::time::sleep(Duration::from_secs(30)).await;
        html(200, "")
    }));
    let started = Instant::now();
    let (status, err, st) = crawl(
        "drip",
        &[
            "--per-host",
            "2",
            "--set",
            "fetch.read_timeout_ms=300",
            "--set",
            "politeness.backoff_base_ms=50",
            "--set",
            "politeness.host_max_timeouts=4",
        ],
        &[site.url("/")],
    );
    assert!(status.success(), "{err}");
    let s = summary(&st);
    assert!(
        s["errors"]["host_gave_up"].as_u64().unwrap_or(0) >= 30,
        "{s}"
    );
    assert!(
        s["hosts_given_up"]
            .as_object()
            .is_some_and(|m| m.len() == 1),
        "{s}"
    );
    assert!(err.contains("giving up on this host"), "{err}");
    // 40 URLs x 4 attempts x 300 ms would be 48 s even at full speed.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_host_whose_robots_txt_keeps_timing_out_is_given_up_too() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |_| async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        html(200, "")
    }));
    let seeds: Vec<String> = (0..6).map(|i| site.url(&format!("/p{i}"))).collect();
    let started = Instant::now();
    let (status, err, st) = crawl(
        "robots-drip",
        &[
            "--set",
            "fetch.read_timeout_ms=300",
            "--set",
            "politeness.host_max_timeouts=3",
        ],
        &seeds,
    );
    assert_eq!(status.code(), Some(2), "every fetch failed: {err}");
    let s = summary(&st);
    assert_eq!(s["errors"]["host_gave_up"], 6, "{s}");
    // Without the host-level give-up: 6 URLs x 3 retries 30 s apart.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn other_ports_of_an_allowed_host_are_out_of_scope() {
    let rt = sandcrawl_e2e::runtime();
    let canary = rt.block_on(serve("127.0.0.1", |_| async move { html(200, "canary") }));
    let other = canary.url("/steal");
    let site = rt.block_on(serve("127.0.0.1", move |req| {
        let other = other.clone();
        async move {
            match req.uri().path() {
                "/" => html(
                    200,
                    format!("<a href=\"{other}\">x</a><a href=\"/moved\">m</a><a href=\"http://127.0.0.1:22/\">ssh</a>"),
                ),
                "/moved" => hyper::Response::builder()
                    .status(302)
                    .header("location", other.as_str())
                    .body(full(""))
                    .expect("response"),
                _ => html(200, ""),
            }
        }
    }));
    let (status, err, st) = crawl("ports", &[], &[site.url("/")]);
    assert!(status.success(), "{err}");
    assert!(
        canary.paths().is_empty(),
        "the canary was reached: {:?}",
        canary.paths()
    );
    let s = summary(&st);
    assert_eq!(s["skipped"]["off_origin"], 2, "{s}");
    assert_eq!(s["errors"]["redirect_refused"], 1, "{s}");

    // Allowed explicitly, the other origin is crawled.
    let extra = format!("scope.allowed_origins=[\"http://{}\"]", canary.addr);
    let (status, err, _) = crawl("ports-allowed", &["--set", &extra], &[site.url("/")]);
    assert!(status.success(), "{err}");
    assert!(
        canary.paths().iter().any(|p| p == "/steal"),
        "{:?}",
        canary.paths()
    );
}

#[test]
fn ctrl_c_counts_the_urls_in_flight_as_still_to_do() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
        html(200, "<a href=/slow>s</a>")
    }));
    let st = tempdir("stop-msg");
    let mut child = std::process::Command::new(sandcrawl_e2e::bin())
        .args([
            "run",
            "--state",
            &st.display().to_string(),
            "--no-progress",
            &site.url("/"),
        ])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let end = Instant::now() + Duration::from_secs(30);
    while !site.paths().iter().any(|p| p == "/slow") && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let err = interrupt(&mut child, Duration::from_secs(40));
    assert!(
        err.contains("1 URLs still to do (1 of them were in flight)"),
        "{err}"
    );
    assert_eq!(summary(&st)["queued_left"], 1);
}

#[test]
fn ten_pages_of_31_mib_items_keep_the_crawl_small() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        if req.uri().path() == "/" {
            let links: String = (0..10)
                .map(|i| format!("<a href=\"/hostile/p{i}/widejson\">x</a>"))
                .collect();
            return html(200, links);
        }
        html(200, "<p>x</p>")
    }));
    let st = tempdir("wide-crawl");
    let state = st.display().to_string();
    let h = plugin("hostile").display().to_string();
    let seed = site.url("/");
    let m = run_measured(
        &[
            "run",
            "--plugins",
            &h,
            "--state",
            &state,
            "--no-progress",
            &seed,
        ],
        LIMIT,
    );
    assert!(m.status.success(), "{}", m.stderr);
    let s = summary(&st);
    assert_eq!(s["plugins"]["hostile"]["items"], 10, "{s}");
    let written = std::fs::metadata(st.join("items.jsonl"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(written > 300 * MIB, "{written}");
    // 2.2 GB when items became value trees; now each is its text, a few at a time.
    assert!(m.max_rss < 700 * MIB, "peak RSS {} MiB", m.max_rss / MIB);
}
