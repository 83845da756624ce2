//! `--listen`: the live status page in a real headless Chromium (through chromedriver and
//! fantoccini), `/api/status` and `/metrics` agreeing with it, pause that really stops
//! fetching, resume, stop, seeds added from the API, the bearer token, and the refusals.

use sandcrawl_e2e::*;
use std::io::{BufRead as _, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Pages on the test site: /p/0 … /p/(PAGES-1), /p/N linking to /p/5N+1 … /p/5N+5 (a page
/// with no children is /leaf/N instead).
const PAGES: usize = 400;

/// With `missing`, page 0 also links to a page that answers 404.
async fn slow_site(delay: Duration, missing: bool) -> Server {
    serve("127.0.0.1", move |req| async move {
        tokio::time::sleep(delay).await;
        let path = req.uri().path().to_owned();
        if path == "/robots.txt" {
            return html(404, "");
        }
        if path == "/hidden" {
            return html(
                200,
                "<html><body>only reachable as a seed from the API</body></html>",
            );
        }
        let n: usize = match path
            .strip_prefix("/p/")
            .or_else(|| path.strip_prefix("/leaf/"))
            .and_then(|n| n.parse().ok())
        {
            Some(n) if n < PAGES => n,
            _ => return html(404, "no such page"),
        };
        // A tree, five children a page: every page within four hops of /p/0.
        // Pages without children are /leaf/N, so a plugin can claim just those.
        let mut links: String = (5 * n + 1..(5 * n + 6).min(PAGES))
            .map(|i| {
                let kind = if 5 * i + 1 < PAGES { "p" } else { "leaf" };
                format!("<a href=\"/{kind}/{i}\">{i}</a> ")
            })
            .collect();
        if missing && n == 0 {
            links.push_str("<a href=\"/missing\">gone</a>");
        }
        html(
            200,
            format!("<html><body><h1>page {n}</h1>{links}</body></html>"),
        )
    })
    .await
}

/// A crawl started with `--listen 127.0.0.1:0`; its address is read off its log.
struct Crawl {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Crawl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Crawl {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Crawl {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .args(["--listen", "127.0.0.1:0", "--no-progress"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sandcrawl");
        let stderr = child.stderr.take().expect("stderr");
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        let end = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            assert!(
                Instant::now() < end,
                "no status page address in the log: {:?}",
                log.lock().map(|l| l.clone())
            );
            let found = log.lock().ok().and_then(|l| {
                l.iter().find_map(|line| {
                    let rest = line.split("status page on http://").nth(1)?;
                    rest.split('/').next()?.parse::<SocketAddr>().ok()
                })
            });
            if let Some(a) = found {
                break a;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Crawl { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    fn status(&self) -> serde_json::Value {
        let (code, body) = http(self.addr, "GET", "/api/status", &[], "");
        assert_eq!(code, 200, "{body}\nlog:\n{}", self.log());
        serde_json::from_str(&body).expect("status json")
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            let s = self.status();
            if cond(&s) {
                return s;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; last status {s}\nlog:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One HTTP/1.1 request over a fresh connection; returns the status and the body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, "cannot connect to the status server".into());
    };
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        addr.port(),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, body.to_owned())
}

/// A metric's value in a `/metrics` text (the sum over its label sets).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// chromedriver on a free port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Driver {
    let exe = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!("chromedriver is not installed: run ./dev test as root (it installs it) or sudo apt-get install chromium chromium-driver")
        });
    let port = free_port();
    let child = Command::new(exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let end = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "chromedriver did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

async fn browser(driver: &Driver, profile: &Path) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--no-first-run", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromium session through chromedriver")
}

async fn text_of(c: &fantoccini::Client, id: &str) -> String {
    c.find(fantoccini::Locator::Id(id))
        .await
        .expect("element on the status page")
        .text()
        .await
        .expect("element text")
}

/// Reads a number the page shows ("1,234" → 1234).
async fn number_of(c: &fantoccini::Client, id: &str) -> u64 {
    text_of(c, id).await.replace(',', "").parse().unwrap_or(0)
}

fn artifact_dir() -> PathBuf {
    let d = root().join("target").join("test-artifacts");
    std::fs::create_dir_all(&d).expect("artifact dir");
    d
}

#[test]
fn status_page_in_chromium_agrees_with_api_and_metrics_and_pause_stops_fetching() {
    let rt = runtime();
    let site = rt.block_on(slow_site(Duration::from_millis(50), true));
    let state = tempdir("monitor-page");
    let seed = site.url("/p/0");
    let leaves = format!("plugins.noop.patterns=[\"{}\"]", site.url("/leaf/**"));
    let crawl = Crawl::start(
        &[
            "run",
            &seed,
            "--state",
            state.to_str().expect("utf-8 path"),
            "--concurrency",
            "2",
            "--per-host",
            "2",
            "--max-pages",
            "1000",
            "--plugins",
            plugin("noop").to_str().expect("utf-8 path"),
            "--set",
            &leaves,
            // The connection kept during the pause must outlive a slow browser check.
            "--set",
            "fetch.idle_timeout_ms=600000",
        ],
        &[],
    );
    crawl.wait_for("a few pages", |s| s["pages"].as_u64().unwrap_or(0) >= 5);

    // Pause from the API: requests in flight finish, then the server sees none.
    let (code, body) = http(crawl.addr, "POST", "/api/pause", &[], "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("paused"), "{body}");
    let paused = crawl.wait_for("the pause to settle", |s| {
        s["state"] == "paused" && s["in_flight"] == 0
    });
    assert!(
        paused["queued"].as_u64().unwrap_or(0) > 0,
        "work left to resume: {paused}"
    );
    let before = site.hits().len();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(site.hits().len(), before, "a request started while paused");

    let driver = chromedriver();
    let profile = tempdir("monitor-chromium");
    rt.block_on(async {
        let c = browser(&driver, &profile).await;
        c.goto(&format!("http://{}/", crawl.addr))
            .await
            .expect("open the status page");

        // While paused the numbers hold still: the page, /api/status and /metrics agree.
        let end = Instant::now() + Duration::from_secs(30);
        let (api, pages, requests, queued) = loop {
            let api = crawl.status();
            let pages = number_of(&c, "pages").await;
            let requests = number_of(&c, "requests").await;
            let queued = number_of(&c, "queued").await;
            let state = text_of(&c, "state").await;
            if state == "paused"
                && Some(pages) == api["pages"].as_u64()
                && Some(requests) == api["requests"].as_u64()
            {
                break (api, pages, requests, queued);
            }
            assert!(
                Instant::now() < end,
                "the page ({state}, {pages} pages, {requests} requests) never matched {api}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(Some(queued), api["queued"].as_u64(), "{api}");
        assert_eq!(site.hits().len(), before, "a request started while paused");
        let (code, metrics) = http(crawl.addr, "GET", "/metrics", &[], "");
        assert_eq!(code, 200);
        assert_eq!(metric(&metrics, "sandcrawl_requests_total") as u64, requests, "{metrics}");
        assert_eq!(metric(&metrics, "sandcrawl_queue_depth") as u64, queued, "{metrics}");
        assert_eq!(metric(&metrics, "sandcrawl_paused") as u64, 1, "{metrics}");
        assert_eq!(metric(&metrics, "sandcrawl_in_flight") as u64, 0, "{metrics}");
        // Nothing in flight, and the connection to the site kept for the next request.
        let open = metric(&metrics, "sandcrawl_open_connections") as usize;
        assert!(
            (1..=site.connections_accepted()).contains(&open),
            "{open} open connections, {} accepted: {metrics}",
            site.connections_accepted()
        );
        // Every page answered 200, and each was one fetch of a crawled URL.
        assert_eq!(
            metric(&metrics, "sandcrawl_pages_total{status=\"2xx\"}") as u64,
            pages,
            "{metrics}"
        );
        assert!(requests > pages, "robots.txt counts as a request: {api}");

        // The page's Resume button: fetching continues, and the page's numbers move.
        c.find(fantoccini::Locator::Id("resume"))
            .await
            .expect("resume button")
            .click()
            .await
            .expect("click resume");
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let now = number_of(&c, "pages").await;
            let state = text_of(&c, "state").await;
            if state == "running" && now > pages + 5 {
                break;
            }
            assert!(
                Instant::now() < end,
                "the page stayed at {now} pages ({state}); api: {}\nlog:\n{}",
                crawl.status(),
                crawl.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(site.hits().len() > before, "no request after resume");
        // The chart has points, and the host table names the site.
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let hosts = text_of(&c, "hosts").await;
            let points = c
                .find(fantoccini::Locator::Id("chart-line"))
                .await
                .expect("chart")
                .attr("points")
                .await
                .expect("points")
                .unwrap_or_default();
            let plugins = text_of(&c, "plugins").await;
            let errors = text_of(&c, "recent-errors").await;
            if hosts.contains(&site.addr.to_string())
                && points.split(' ').count() >= 3
                && plugins.contains("noop")
                && errors.contains("/missing")
            {
                break;
            }
            assert!(
                Instant::now() < end,
                "no host, plugin or error row, or no chart: {hosts:?} {plugins:?} {errors:?} {points:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let png = c.screenshot().await.expect("screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(artifact_dir().join("status-page.png"), &png).expect("keep the screenshot");
        c.close().await.ok();
    });

    // The crawl finishes the whole site, nothing fetched twice across the pause.
    let mut crawl = crawl;
    let st = wait_bounded(&mut crawl.child, Duration::from_secs(120)).expect("the crawl ends");
    assert!(st.success(), "{st:?}\n{}", crawl.log());
    let s = summary(&state);
    assert_eq!(s["pages"], PAGES as u64, "{s}");
    let mut paths = site.paths();
    let n = paths.len();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), n, "a URL was fetched twice");
}

#[test]
fn api_seeds_stop_token_and_every_metric() {
    let rt = runtime();
    let site = rt.block_on(slow_site(Duration::from_millis(40), true));
    let state = tempdir("monitor-api");
    let seed = site.url("/p/0");
    let token = "test-token-0123456789abcdef";
    let crawl = Crawl::start(
        &[
            "run",
            &seed,
            "--state",
            state.to_str().expect("utf-8 path"),
            "--concurrency",
            "1",
            "--per-host",
            "1",
            "--plugins",
            plugin("noop").to_str().expect("utf-8 path"),
            "--set",
            &format!("plugins.noop.patterns=[\"{}\"]", site.url("/hidden")),
        ],
        &[("SANDCRAWL_LISTEN_TOKEN", token)],
    );
    let auth = format!("Bearer {token}");
    let with = [("Authorization", auth.as_str())];
    // Without the token, or with a wrong one: 401 on every route, the page included.
    for path in ["/", "/metrics", "/api/status"] {
        assert_eq!(http(crawl.addr, "GET", path, &[], "").0, 401, "{path}");
    }
    let wrong = [("Authorization", "Bearer test-token-0123456789abcdeX")];
    assert_eq!(http(crawl.addr, "GET", "/api/status", &wrong, "").0, 401);
    assert_eq!(http(crawl.addr, "POST", "/api/stop", &[], "").0, 401);
    // The browser's way: ?token= on the page.
    let (code, page) = http(crawl.addr, "GET", &format!("/?token={token}"), &[], "");
    assert_eq!(code, 200);
    assert!(page.contains("<title>sandcrawl</title>"));
    // Wrong methods and paths.
    assert_eq!(http(crawl.addr, "GET", "/api/stop", &with, "").0, 405);
    assert_eq!(http(crawl.addr, "GET", "/nope", &with, "").0, 404);
    // Another site's page cannot steer the crawl, even with the token in hand.
    let cross = [
        ("Authorization", auth.as_str()),
        ("Origin", "http://evil.example"),
    ];
    assert_eq!(http(crawl.addr, "POST", "/api/pause", &cross, "").0, 403);
    // Held while the API is probed, so the crawl is still running afterwards.
    let (code, body) = http(crawl.addr, "POST", "/api/pause", &with, "");
    assert_eq!((code, body.contains("paused")), (200, true), "{body}");

    // Seeds from the API: scope and dedup hold, bad URLs are refused one by one.
    let hidden = site.url("/hidden");
    let other = "http://127.0.0.2:9/elsewhere";
    let body = serde_json::json!({ "urls": [hidden, other, "not a url", seed] }).to_string();
    let (code, report) = http(crawl.addr, "POST", "/api/seeds", &with, &body);
    assert_eq!(code, 200, "{report}");
    let report: serde_json::Value = serde_json::from_str(&report).expect("seed report");
    assert_eq!(report["added"], 1, "{report}");
    assert_eq!(report["known"], 1, "the seed is known already: {report}");
    let refused = report["refused"].as_array().cloned().unwrap_or_default();
    assert_eq!(refused.len(), 2, "{report}");
    assert!(
        refused[0]["why"]
            .as_str()
            .unwrap_or("")
            .contains("out of scope"),
        "{report}"
    );
    let (code, report) = http(
        crawl.addr,
        "POST",
        "/api/seeds",
        &with,
        &format!("{hidden}\n"),
    );
    assert_eq!(code, 200);
    assert!(
        report.contains("\"added\":0") && report.contains("\"known\":1"),
        "{report}"
    );
    assert_eq!(
        http(crawl.addr, "POST", "/api/seeds", &with, "{\"urls\": 5}").0,
        400
    );
    // A body over the limit is refused from its Content-Length, before it is read.
    let mut s = TcpStream::connect(crawl.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let req = format!(
        "POST /api/seeds HTTP/1.1\r\nHost: {}\r\nAuthorization: {auth}\r\nContent-Length: 2097152\r\nConnection: close\r\n\r\n",
        crawl.addr
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok();
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    let (code, body) = http(crawl.addr, "POST", "/api/resume", &with, "");
    assert_eq!((code, body.contains("running")), (200, true), "{body}");
    let end = Instant::now() + Duration::from_secs(60);
    while !site.paths().iter().any(|p| p == "/hidden") {
        assert!(Instant::now() < end, "the API's seed was never fetched");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Every documented metric is exported (a labelled family once it has a value: the 404,
    // the noop plugin's calls).
    let end = Instant::now() + Duration::from_secs(60);
    let metrics = loop {
        let (code, metrics) = http(crawl.addr, "GET", "/metrics", &with, "");
        assert_eq!(code, 200);
        if metrics.contains("reason=\"http_404\"") && metrics.contains("plugin=\"noop\"") {
            break metrics;
        }
        assert!(
            Instant::now() < end,
            "the 404 never showed in the metrics:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for name in [
        "sandcrawl_requests",
        "sandcrawl_pages",
        "sandcrawl_downloads",
        "sandcrawl_bytes",
        "sandcrawl_items_written",
        "sandcrawl_errors",
        "sandcrawl_retries",
        "sandcrawl_robots_denied",
        "sandcrawl_plugin_calls",
        "sandcrawl_plugin_items",
        "sandcrawl_plugin_duration_seconds",
        "sandcrawl_fetch_duration_seconds",
        "sandcrawl_queue_depth",
        "sandcrawl_known_urls",
        "sandcrawl_in_flight",
        "sandcrawl_hosts_backing_off",
        "sandcrawl_downloads_in_progress",
        "sandcrawl_open_connections",
        "sandcrawl_output_backlog_items",
        "sandcrawl_paused",
    ] {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{metrics}"
        );
    }
    assert!(
        metric(&metrics, "sandcrawl_fetch_duration_seconds_count") >= 1.0,
        "{metrics}"
    );

    // Stop from the API: the same graceful stop as Ctrl+C (exit 130, resumable).
    let (code, body) = http(crawl.addr, "POST", "/api/stop", &with, "");
    assert_eq!(code, 200, "{body}");
    let mut crawl = crawl;
    let st = wait_bounded(&mut crawl.child, Duration::from_secs(60)).expect("the crawl stops");
    assert_eq!(st.code(), Some(130), "{}", crawl.log());
    let s = summary(&state);
    assert_eq!(s["stopped_early"], true, "{s}");
    assert!(s["queued_left"].as_u64().unwrap_or(0) > 0, "{s}");
}

/// Error lines in a log (warnings, such as "no plugins given", are not errors).
fn errors(log: &str) -> usize {
    log.lines().filter(|l| l.contains("error")).count()
}

#[test]
fn listen_refusals_are_one_line_and_leave_nothing_behind() {
    let dir = tempdir("monitor-refuse");
    let state = dir.join("state");
    let state_arg = state.to_str().expect("utf-8 path");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = taken.local_addr().expect("addr").to_string();
    for (listen, says) in [
        ("0.0.0.0:0", "--listen-token"), // off loopback without a token
        (taken.as_str(), "cannot listen there"), // a port already taken
        ("somewhere", "not an address"),
    ] {
        let (st, _, err) = run_bin(
            &[
                "run",
                "http://127.0.0.1:9/",
                "--state",
                state_arg,
                "--listen",
                listen,
            ],
            Duration::from_secs(60),
        );
        assert!(!st.success(), "{listen}");
        assert!(err.contains(says), "{listen}: {err}");
        assert_eq!(errors(&err), 1, "{listen}: {err}");
    }
    assert!(
        !state.exists(),
        "a refused --listen created the state directory"
    );
}
