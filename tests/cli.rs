//! The command line as a user meets it: plugin inspection, offline replay, and bad input
//! that must end in one clear line and a non-zero exit with nothing damaged.

use sandcrawl_e2e::{plugin, root, run_bin, tempdir};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

fn first_error_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_else(|| panic!("no error line in: {stderr}"))
        .to_owned()
}

/// A saved page of the demo site, as the `PAGE` argument of `sandcrawl parse`.
fn quotes_page() -> String {
    root()
        .join("plugins/quotes/tests/fixtures/quotes-page-1.html")
        .display()
        .to_string()
}

#[test]
fn plugins_list_and_check() {
    let dir = tempdir("list");
    for p in ["quotes", "products"] {
        std::fs::copy(plugin(p), dir.join(format!("{p}.wasm"))).expect("copy");
    }
    let d = dir.display().to_string();
    let (st, out, err) = run_bin(&["plugins", "list", &d, "--json"], T);
    assert!(st.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let names: Vec<_> = v
        .as_array()
        .expect("array")
        .iter()
        .map(|p| p["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["products", "quotes"]);
    assert_eq!(v[0]["wit_version"], "0.2.0");
    assert_eq!(v[0]["rendering"], "http");
    assert_eq!(v[0]["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(v[0]["patterns"][0], "http*://*/catalogue/**");

    let (st, out, _) = run_bin(&["plugins", "list", &d], T);
    assert!(st.success());
    assert!(
        out.lines()
            .any(|l| l.starts_with("quotes") && l.contains("0.1.0")),
        "{out}"
    );

    let q = plugin("quotes").display().to_string();
    let (st, out, _) = run_bin(&["plugins", "check", &q], T);
    assert!(st.success());
    assert!(out.starts_with("ok: quotes 0.1.0 (WIT 0.2.0"), "{out}");

    let f = plugin("future-wit").display().to_string();
    let (st, _, err) = run_bin(&["plugins", "check", &f], T);
    assert!(!st.success());
    let line = first_error_line(&err);
    assert!(
        line.contains("sandcrawl:plugin@9.0.0") && line.contains("rebuild"),
        "{line}"
    );

    // A folder: every plugin in it is checked, and one that cannot load fails the check.
    let (st, out, err) = run_bin(&["plugins", "check", &d], T);
    assert!(st.success(), "{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok: ")).count(),
        2,
        "{out}"
    );
    std::fs::copy(plugin("future-wit"), dir.join("future.wasm")).expect("copy");
    let (st, out, err) = run_bin(&["plugins", "check", &d], T);
    assert_eq!(st.code(), Some(1));
    assert_eq!(
        out.lines().filter(|l| l.starts_with("ok: ")).count(),
        2,
        "{out}"
    );
    assert!(first_error_line(&err).contains("future.wasm"), "{err}");
    let empty = tempdir("empty-plugins").display().to_string();
    let (st, _, err) = run_bin(&["plugins", "check", &empty], T);
    assert_eq!(st.code(), Some(1));
    assert!(
        first_error_line(&err).contains("holds no .wasm files"),
        "{err}"
    );
}

/// A fixture saved with `sandcrawl fetch` (decoded, its headers beside it) replays with
/// `parse`, and `parse --expect` turns the output into a golden test.
#[test]
fn fetch_saves_a_fixture_and_parse_expect_compares_with_a_golden_file() {
    use std::io::Write as _;
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(sandcrawl_e2e::serve("127.0.0.1", |req| async move {
        let path = req.uri().path().to_owned();
        if path == "/robots.txt" {
            return sandcrawl_e2e::html(200, "User-agent: *\nDisallow: /private/\n");
        }
        let (status, ct, body) = sandcrawl::demo::respond(&path);
        // Served gzip-compressed: the fixture must hold the decoded page.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&body).expect("gzip");
        hyper::Response::builder()
            .status(status)
            .header("content-type", ct)
            .header("content-encoding", "gzip")
            .body(sandcrawl_e2e::full(gz.finish().expect("gzip")))
            .expect("response")
    }));
    let dir = tempdir("fixture");
    let page = dir.join("page.html");
    let p = page.display().to_string();
    let url = site.url("/quotes/page/1/");
    let (st, _, err) = run_bin(&["fetch", &url, "-o", &p], T);
    assert!(st.success(), "{err}");
    let saved = std::fs::read(&page).expect("saved page");
    assert_eq!(saved, sandcrawl::demo::respond("/quotes/page/1/").2);
    let side: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("page.html.headers.json")).expect("sidecar"),
    )
    .expect("json");
    assert_eq!(side["status"], 200);
    assert_eq!(side["encoding"], "UTF-8");

    let (st, _, err) = run_bin(&["fetch", &site.url("/private/x"), "-o", &p], T);
    assert_eq!(st.code(), Some(1));
    assert!(
        first_error_line(&err).contains("robots.txt disallows"),
        "{err}"
    );

    let q = plugin("quotes").display().to_string();
    let parse = ["parse", "--plugin", &q, "--url", &url, &p];
    let (st, out, err) = run_bin(&parse, T);
    assert!(st.success(), "{err}");
    let golden = dir.join("golden.json");
    std::fs::write(&golden, &out).expect("golden");
    let g = golden.display().to_string();
    let mut expect: Vec<&str> = parse.to_vec();
    expect.extend(["--expect", &g]);
    let (st, _, err) = run_bin(&expect, T);
    assert!(st.success(), "{err}");

    let changed = out.replacen("Ada Quill", "Someone Else", 1);
    std::fs::write(&golden, changed).expect("golden");
    let (st, _, err) = run_bin(&expect, T);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.lines().any(|l| l.contains("item 0: expected")
            && l.contains("Someone Else")
            && l.contains("Ada Quill")),
        "{err}"
    );
    assert!(first_error_line(&err).contains("differs from"), "{err}");
}

/// Requests (a POST form, a JSON body, a header, JSON metadata) print the same in the native
/// harness and in `sandcrawl parse` of the built plugin.
#[test]
fn parse_and_the_native_harness_agree_on_requests() {
    let dir = tempdir("parse-requests");
    let page = dir.join("search.html");
    std::fs::write(
        &page,
        "<h1>Results</h1><a class=result href=\"/item/a\">a</a><a class=result href=\"/item/b\">b</a>",
    )
    .expect("page");
    let page = page.display().to_string();
    let url = "http://shop.test/search";
    let r = plugin("requests").display().to_string();
    let (st, out, err) = run_bin(&["parse", "--plugin", &r, "--url", url, &page], T);
    assert!(st.success(), "{err}");
    let mut replayed: serde_json::Value = serde_json::from_str(&out).expect("json");
    if let Some(doc) = replayed.as_object_mut() {
        doc.remove("plugin");
    }
    let links = replayed["links"].as_array().cloned().unwrap_or_default();
    assert_eq!(links.len(), 4, "{out}");
    assert_eq!(
        links[0]["metadata"],
        serde_json::json!({"keyword": "", "from": "search"})
    );
    assert_eq!(
        links[2]["request"],
        serde_json::json!({"method": "POST", "body": {"form": "q="}}),
        "{out}"
    );
    assert_eq!(
        links[3]["request"],
        serde_json::json!({
            "method": "POST",
            "headers": [["Accept", "application/json"]],
            "body": {"json": "{\"q\":\"\"}"}
        }),
        "{out}"
    );
    let native_page = sandcrawl_plugin_sdk::testing::page_from_file(url, &page).expect("page");
    let native =
        sandcrawl_plugin_sdk::testing::run::<sandcrawl_plugin_requests::Requests>(&native_page)
            .expect("native parse");
    assert_eq!(
        sandcrawl_plugin_sdk::testing::parse_json(url, &native),
        replayed
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn parse_replays_a_saved_page_deterministically() {
    let page = quotes_page();
    let q = plugin("quotes").display().to_string();
    let args = [
        "parse",
        "--plugin",
        &q,
        "--url",
        "http://demo.test/quotes/page/1/",
        &page,
    ];
    let (st, out, err) = run_bin(&args, T);
    assert!(st.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["items"].as_array().map(Vec::len), Some(10));
    assert_eq!(v["items"][0]["kind"], "quote");
    assert_eq!(v["items"][0]["fields"]["author"], "Ada Quill");
    assert_eq!(v["links"].as_array().map(Vec::len), Some(11));
    assert_eq!(v["plugin"]["name"], "quotes");
    let (_, again, _) = run_bin(&args, T);
    assert_eq!(out, again, "replay must be deterministic");

    let (st, _, err) = run_bin(&["parse", "--plugin", &q, "--url", "not a url", &page], T);
    assert!(!st.success());
    assert!(first_error_line(&err).contains("--url"), "{err}");

    // The native test harness describes the same page in the same JSON (no priority is 0 in
    // both), so a golden file serves `cargo test` and `sandcrawl parse --expect` alike.
    let url = "http://demo.test/quotes/page/1/";
    let native_page = sandcrawl_plugin_sdk::testing::page_from_file(url, &page).expect("fixture");
    let native =
        sandcrawl_plugin_sdk::testing::run::<sandcrawl_plugin_quotes::Quotes>(&native_page)
            .expect("native parse");
    let mut replayed = v.clone();
    if let Some(doc) = replayed.as_object_mut() {
        doc.remove("plugin");
    }
    assert_eq!(
        sandcrawl_plugin_sdk::testing::parse_json(url, &native),
        replayed
    );
}

#[test]
fn parse_reports_a_panicking_or_printing_plugin_as_one_error_line() {
    // A plugin's stderr and stdout are blocking WASI streams; the host must serve them
    // without starting a runtime inside its own (which used to abort `parse` with a panic).
    let page = quotes_page();
    let h = plugin("hostile").display().to_string();
    for (what, says) in [
        (
            "panic",
            "trapped: plugin panicked: hostile plugin panics on purpose",
        ),
        // A flood of stdout is stopped by the shared log budget.
        ("stdout", "log over limit: wrote more than 64 KiB"),
    ] {
        let url = format!("http://t.test/hostile/{what}");
        let (st, out, err) = run_bin(&["parse", "--plugin", &h, "--url", &url, &page], T);
        assert_eq!(st.code(), Some(1), "{what}: {err}");
        assert!(out.is_empty(), "{what}: {out}");
        let line = first_error_line(&err);
        assert!(line.contains(says), "{what}: {line}");
        assert!(!err.contains("Cannot start a runtime"), "{what}: {err}");
    }
}

#[test]
fn bad_input_is_one_clear_line() {
    let dir = tempdir("bad");
    let state = dir.join("state").display().to_string();

    let (st, _, err) = run_bin(&["run", "--bogus"], T);
    assert_eq!(st.code(), Some(2));
    assert!(first_error_line(&err).contains("--bogus"), "{err}");

    let (st, _, err) = run_bin(&["--log-level", "info=loud", "plugins", "list", "."], T);
    assert_eq!(st.code(), Some(2));
    assert!(first_error_line(&err).contains("--log-level"), "{err}");

    let cfg = dir.join("crawl.toml");
    std::fs::write(
        &cfg,
        "seeds = [\"http://127.0.0.1:1/\"]\n[politeness]\nconcurency = 4\n",
    )
    .expect("write");
    let c = cfg.display().to_string();
    let (st, _, err) = run_bin(&["run", "--config", &c, "--state", &state], T);
    assert_eq!(st.code(), Some(1));
    let line = first_error_line(&err);
    assert!(
        line.contains("crawl.toml") && line.contains("concurency"),
        "{line}"
    );
    assert_eq!(err.lines().filter(|l| l.starts_with("error")).count(), 1);

    std::fs::write(&cfg, "seeds = [\"http://127.0.0.1:1/\"\n").expect("write");
    let (st, _, err) = run_bin(&["run", "--config", &c, "--state", &state], T);
    assert_eq!(st.code(), Some(1));
    assert!(first_error_line(&err).contains("crawl.toml"), "{err}");

    let (st, _, err) = run_bin(&["run", "--state", &state, "--no-progress", "not a url"], T);
    assert_eq!(st.code(), Some(1));
    assert!(
        first_error_line(&err).contains("seed URL \"not a url\""),
        "{err}"
    );

    let (st, _, err) = run_bin(
        &[
            "run",
            "--state",
            &state,
            "--no-progress",
            "ftp://example.com/",
        ],
        T,
    );
    assert_eq!(st.code(), Some(1));
    assert!(first_error_line(&err).contains("must be http(s)"), "{err}");

    // Sitemap options: a date that is not one, and --since without --sitemaps.
    let (st, _, err) = run_bin(
        &[
            "run",
            "--state",
            &state,
            "--sitemaps",
            "--since",
            "last week",
            "http://127.0.0.1:1/",
        ],
        T,
    );
    assert_eq!(st.code(), Some(1));
    let line = first_error_line(&err);
    assert!(
        line.contains("--since") && line.contains("YYYY-MM-DD"),
        "{line}"
    );
    let (st, _, err) = run_bin(
        &[
            "run",
            "--state",
            &state,
            "--since",
            "2024-01-01",
            "http://127.0.0.1:1/",
        ],
        T,
    );
    assert_eq!(st.code(), Some(1));
    assert!(first_error_line(&err).contains("add --sitemaps"), "{err}");
    assert!(
        !dir.join("state").exists(),
        "nothing written for a bad flag"
    );

    let missing = dir.join("no-such-folder").display().to_string();
    let (st, _, err) = run_bin(
        &[
            "run",
            "--plugins",
            &missing,
            "--state",
            &state,
            "http://127.0.0.1:1/",
        ],
        T,
    );
    assert_eq!(st.code(), Some(1));
    assert!(
        first_error_line(&err).contains("does not exist; check --plugins"),
        "{err}"
    );

    let (st, _, err) = run_bin(
        &[
            "run",
            "--state",
            &state,
            "--set",
            "politeness.per_host=0",
            "http://127.0.0.1:1/",
        ],
        T,
    );
    assert_eq!(st.code(), Some(1));
    assert!(first_error_line(&err).contains("per_host"), "{err}");

    // A state directory that is not sandcrawl's (or from an incompatible version) is refused
    // and left exactly as it was.
    let foreign = dir.join("foreign");
    std::fs::create_dir_all(foreign.join("frontier")).expect("mkdir");
    std::fs::write(
        foreign.join("frontier").join("journal"),
        b"not a sandcrawl store",
    )
    .expect("write");
    let f = foreign.display().to_string();
    let (st, _, err) = run_bin(
        &["run", "--state", &f, "--no-progress", "http://127.0.0.1:1/"],
        T,
    );
    assert_eq!(st.code(), Some(1));
    assert!(first_error_line(&err).contains("state directory"), "{err}");
    assert_eq!(
        std::fs::read(foreign.join("frontier").join("journal")).expect("read"),
        b"not a sandcrawl store"
    );

    // An output file with data the state knows nothing about is not mixed into.
    let out = dir.join("existing.jsonl");
    std::fs::write(&out, b"{\"mine\":1}\n").expect("write");
    let o = out.display().to_string();
    let fresh = dir.join("fresh").display().to_string();
    let (st, _, err) = run_bin(
        &[
            "run",
            "--state",
            &fresh,
            "--out",
            &o,
            "--no-progress",
            "http://127.0.0.1:1/",
        ],
        T,
    );
    assert_eq!(st.code(), Some(1));
    assert!(first_error_line(&err).contains("already has data"), "{err}");
    assert_eq!(std::fs::read(&out).expect("read"), b"{\"mine\":1}\n");
}

#[test]
fn demo_command_crawls_the_bundled_site() {
    let dir = tempdir("demo");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("mkdir");
    for p in ["quotes", "products"] {
        std::fs::copy(plugin(p), plugins.join(format!("{p}.wasm"))).expect("copy");
    }
    let state = dir.join("demo-crawl").display().to_string();
    let pl = plugins.display().to_string();
    let (st, _, err) = run_bin(
        &["demo", "--plugins", &pl, "--state", &state, "--no-progress"],
        T,
    );
    assert!(st.success(), "{err}");
    let total: usize = sandcrawl::demo::expected_items()
        .iter()
        .map(|(_, n)| n)
        .sum();
    assert!(err.contains(&format!("{total} items written")), "{err}");
    assert!(err.contains("items: "), "{err}");
    assert_eq!(
        sandcrawl_e2e::read_items(&dir.join("demo-crawl/items.jsonl")).len(),
        total
    );

    // Running the demo again starts over on its own state ...
    let (st, _, err) = run_bin(
        &["demo", "--plugins", &pl, "--state", &state, "--no-progress"],
        T,
    );
    assert!(st.success(), "{err}");
    assert_eq!(
        sandcrawl_e2e::read_items(&dir.join("demo-crawl/items.jsonl")).len(),
        total
    );
    // ... but never clears a folder that is not a demo state.
    let mine = dir.join("mine");
    std::fs::create_dir_all(&mine).expect("mkdir");
    std::fs::write(mine.join("notes.txt"), b"keep me").expect("write");
    let m = mine.display().to_string();
    let (st, _, err) = run_bin(
        &["demo", "--plugins", &pl, "--state", &m, "--no-progress"],
        T,
    );
    assert_eq!(st.code(), Some(1));
    assert!(
        first_error_line(&err).contains("is not a demo state"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(mine.join("notes.txt")).expect("read"),
        b"keep me"
    );
}

#[test]
fn a_seed_without_its_scheme_gets_a_hint_and_leaves_no_state_behind() {
    let state = tempdir("noscheme").join("state");
    let s = state.display().to_string();
    let (st, _, err) = run_bin(&["run", "--state", &s, "127.0.0.1:5099/"], T);
    assert_eq!(st.code(), Some(1), "{err}");
    let line = first_error_line(&err);
    assert!(
        line.contains("did you mean http://127.0.0.1:5099/"),
        "{line}"
    );
    assert!(!state.exists(), "the state directory was created");
    let (st, _, err) = run_bin(&["run", "--state", &s, "localhost:8080"], T);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        first_error_line(&err).contains("did you mean http://localhost:8080"),
        "{err}"
    );
    assert!(!state.exists());
}

#[test]
fn a_crawl_whose_every_fetch_failed_exits_non_zero_with_one_line() {
    // Port 9 (discard) on loopback: nothing listens, every connection is refused.
    let state = tempdir("allfail").display().to_string();
    let (st, _, err) = run_bin(
        &[
            "run",
            "--state",
            &state,
            "--no-progress",
            "--set",
            "politeness.max_retries=0",
            "http://127.0.0.1:9/",
        ],
        T,
    );
    assert_eq!(st.code(), Some(2), "{err}");
    let line = first_error_line(&err);
    assert!(line.contains("every fetch failed"), "{line}");
    assert!(line.contains("summary.json"), "{line}");
}

/// `plugins lock` pins a folder's builds; `run --locked` refuses a build whose sha256 differs
/// (here: the same plugin with a custom section appended), naming both digests.
#[test]
fn plugins_lock_pins_builds_and_run_locked_refuses_another() {
    let dir = tempdir("lock");
    for p in ["quotes", "products"] {
        std::fs::copy(plugin(p), dir.join(format!("{p}.wasm"))).expect("copy");
    }
    let d = dir.display().to_string();
    let (st, out, err) = run_bin(&["plugins", "lock", &d], T);
    assert!(st.success(), "{err}");
    assert_eq!(
        out.lines().filter(|l| l.starts_with("locked: ")).count(),
        2,
        "{out}"
    );
    let lock = std::fs::read_to_string(dir.join("plugins.lock")).expect("lock file");
    assert!(
        lock.contains("name = \"quotes\"") && lock.contains("sha256 = "),
        "{lock}"
    );

    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(sandcrawl_e2e::demo_site("127.0.0.1", Duration::ZERO));
    let root = site.url("/");
    let run = |tag: &str| {
        let state = tempdir(tag).display().to_string();
        run_bin(
            &[
                "run",
                "--locked",
                "--plugins",
                &d,
                "--state",
                &state,
                "--no-progress",
                "--max-pages",
                "3",
                &root,
            ],
            T,
        )
    };
    let (st, _, err) = run("locked-ok");
    assert!(st.success(), "the locked builds run: {err}");

    // Another build of quotes: a custom section appended changes its digest, not its name.
    let path = dir.join("quotes.wasm");
    let mut wasm = std::fs::read(&path).expect("read");
    let before = sandcrawl_e2e::sha256_hex(&wasm);
    wasm.extend_from_slice(&[0x00, 0x03, 0x01, b'x', b'y']);
    std::fs::write(&path, &wasm).expect("write");
    let after = sandcrawl_e2e::sha256_hex(&wasm);
    let (st, _, err) = run("locked-refused");
    assert_eq!(st.code(), Some(3), "{err}");
    assert!(
        err.lines()
            .any(|l| l.contains("quotes") && l.contains(&after) && l.contains(&before)),
        "names both digests: {err}"
    );

    let (st, _, err) = run_bin(
        &[
            "run",
            "--locked",
            "--plugins",
            &plugin("noop").display().to_string(),
            "--state",
            &tempdir("nolock").display().to_string(),
            &root,
        ],
        T,
    );
    assert_eq!(st.code(), Some(1));
    assert!(first_error_line(&err).contains("plugins lock"), "{err}");
}

/// Runs a command to completion within `limit` (killed past it), returning (success, output).
fn run_cmd(cmd: &mut std::process::Command, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let end = std::time::Instant::now() + limit;
    while child.try_wait().ok().flatten().is_none() {
        if std::time::Instant::now() > end {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// `plugins new` makes a crate that builds on its own: its native test passes, it builds to
/// wasm, the build passes `plugins check`, and `parse` replays its fixture.
#[test]
fn plugins_new_scaffolds_a_crate_that_tests_builds_checks_and_parses() {
    let dir = tempdir("scaffold");
    let krate = dir.join("my-shop");
    let k = krate.display().to_string();
    let (st, _, err) = run_bin(&["plugins", "new", "my-shop", "--dir", &k], T);
    assert!(st.success(), "{err}");
    let (st, _, err) = run_bin(&["plugins", "new", "my-shop", "--dir", &k], T);
    assert_eq!(st.code(), Some(1), "an existing folder is refused");
    assert!(first_error_line(&err).contains("already exists"), "{err}");
    let (st, _, err) = run_bin(&["plugins", "new", "My Shop"], T);
    assert_eq!(st.code(), Some(1));
    assert!(first_error_line(&err).contains("lowercase"), "{err}");

    // Its own target dir (the suite's is locked by the cargo running it), kept between runs.
    let target = root().join("target/scaffold-test");
    let cargo = |args: &[&str]| {
        let mut c = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()));
        c.args(args)
            .current_dir(&krate)
            .env("CARGO_TARGET_DIR", &target);
        run_cmd(&mut c, Duration::from_secs(900))
    };
    let (ok, out) = cargo(&["test", "--release"]);
    assert!(
        ok && out.contains("a_page_gives_its_title_and_links ... ok"),
        "{out}"
    );
    let (ok, out) = cargo(&["build", "--release", "--target", "wasm32-wasip2"]);
    assert!(ok, "{out}");
    let wasm = target.join("wasm32-wasip2/release/my_shop.wasm");
    let w = wasm.display().to_string();
    let (st, out, err) = run_bin(&["plugins", "check", &w], T);
    assert!(st.success(), "{err}");
    assert!(out.starts_with("ok: my-shop 0.1.0"), "{out}");
    let fixture = krate.join("tests/fixtures/page.html").display().to_string();
    let (st, out, err) = run_bin(
        &[
            "parse",
            "--plugin",
            &w,
            "--url",
            "https://example.com/",
            &fixture,
        ],
        T,
    );
    assert!(st.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["items"][0]["fields"]["title"], "An example page");
    assert_eq!(v["links"].as_array().map(Vec::len), Some(2));
}

/// Runs the binary in `cwd` with extra environment, bounded; (success, stdout, stderr).
fn run_in(cwd: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(sandcrawl_e2e::bin());
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("SANDCRAWL_LOG")
        .env_remove("XDG_CONFIG_HOME")
        .env("HOME", cwd)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn sandcrawl");
    let status = sandcrawl_e2e::wait_bounded(&mut child, T).expect("sandcrawl finishes");
    let out = child.wait_with_output().expect("output");
    (
        status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn completions_for_each_shell() {
    let dir = tempdir("completions");
    for shell in ["bash", "zsh", "fish"] {
        let (ok, out, err) = run_in(&dir, &[], &["completions", shell]);
        assert!(ok, "{shell}: {err}");
        assert!(
            out.contains("sandcrawl") && out.contains("replay") && out.contains("max-pages"),
            "{shell}: {out}"
        );
    }
    let (ok, _, err) = run_in(&dir, &[], &["completions", "tcsh"]);
    assert!(!ok && err.contains("tcsh"), "{err}");
}

/// `--log-format json`: every line on stderr is one JSON object, the summary included.
#[test]
fn json_log_format_is_one_object_per_line() {
    let dir = tempdir("json-log");
    let quotes = plugin("quotes").display().to_string();
    let args = [
        "--log-format",
        "json",
        "demo",
        "--plugins",
        &quotes,
        "--state",
        "st",
        "--no-progress",
    ];
    let (ok, _, err) = run_in(&dir, &[], &args);
    assert!(ok, "{err}");
    let mut summary = None;
    for line in err.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        if v["fields"]["summary"].is_object() {
            summary = Some(v["fields"]["summary"].clone());
        }
    }
    let summary = summary.unwrap_or_else(|| panic!("no summary object in: {err}"));
    assert_eq!(summary["items"], 31);
    assert!(summary["requests"].as_u64().unwrap_or(0) > summary["pages"].as_u64().unwrap_or(0));
    // An error is a JSON line too.
    let (ok, _, err) = run_in(
        &dir,
        &[],
        &[
            "--log-format",
            "json",
            "run",
            "--state",
            "x",
            "127.0.0.1:1/",
        ],
    );
    assert!(!ok);
    let last: serde_json::Value =
        serde_json::from_str(err.lines().last().unwrap_or("")).expect("json");
    assert_eq!(last["level"], "ERROR", "{err}");
}

#[test]
fn quiet_prints_nothing_but_errors() {
    let dir = tempdir("quiet");
    let quotes = plugin("quotes").display().to_string();
    let (ok, _, err) = run_in(
        &dir,
        &[],
        &["-q", "demo", "--plugins", &quotes, "--state", "st"],
    );
    assert!(ok, "{err}");
    assert_eq!(err.trim(), "", "--quiet printed: {err}");
    assert_eq!(
        sandcrawl_e2e::read_items(&dir.join("st/items.jsonl")).len(),
        31
    );
    // Warnings and errors still show.
    let (ok, _, err) = run_in(&dir, &[], &["-q", "run", "--state", "x", "127.0.0.1:1/"]);
    assert!(!ok, "{err}");
    assert!(err.contains("WARN no plugins given"), "{err}");
    assert!(
        err.lines()
            .last()
            .unwrap_or("")
            .starts_with("error: seed URL"),
        "{err}"
    );
    assert!(!err.contains("INFO"), "{err}");
}

/// Without --config: ./sandcrawl.toml, else $XDG_CONFIG_HOME/sandcrawl/config.toml, and the
/// log says which.
#[test]
fn config_is_found_in_the_working_folder_then_the_user_config() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(sandcrawl_e2e::demo_site("127.0.0.1", Duration::ZERO));
    let quotes = plugin("quotes").display().to_string();
    let seed = site.url("/");
    let pages = |dir: &std::path::Path, state: &str| {
        sandcrawl_e2e::summary(&dir.join(state))["pages"]
            .as_u64()
            .unwrap_or(0)
    };

    let dir = tempdir("config-discovery");
    let xdg = dir.join("xdg");
    std::fs::create_dir_all(xdg.join("sandcrawl")).expect("xdg dir");
    std::fs::write(
        xdg.join("sandcrawl/config.toml"),
        "[scope]\nmax_pages = 3\n",
    )
    .expect("write");
    let xdg_s = xdg.display().to_string();
    let env = [("XDG_CONFIG_HOME", xdg_s.as_str())];
    let args = |state: &'static str| {
        vec![
            "run",
            "--plugins",
            quotes.as_str(),
            "--state",
            state,
            "--no-progress",
            seed.as_str(),
        ]
    };
    let (ok, _, err) = run_in(&dir, &env, &args("a"));
    assert!(ok, "{err}");
    assert!(
        err.contains("using config") && err.contains("xdg/sandcrawl/config.toml"),
        "{err}"
    );
    assert_eq!(pages(&dir, "a"), 3);

    std::fs::write(dir.join("sandcrawl.toml"), "[scope]\nmax_pages = 2\n").expect("write");
    let (ok, _, err) = run_in(&dir, &env, &args("b"));
    assert!(ok, "{err}");
    assert!(err.contains("using config sandcrawl.toml"), "{err}");
    assert_eq!(pages(&dir, "b"), 2);

    // --config wins, and is not announced as found.
    std::fs::write(dir.join("other.toml"), "[scope]\nmax_pages = 1\n").expect("write");
    let mut a = args("c");
    a.extend(["--config", "other.toml"]);
    let (ok, _, err) = run_in(&dir, &env, &a);
    assert!(ok, "{err}");
    assert!(!err.contains("using config"), "{err}");
    assert_eq!(pages(&dir, "c"), 1);
}
