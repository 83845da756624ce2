//! WIT 0.2 requests end to end: a plugin's start requests (one search form POST per keyword
//! from its config), JSON metadata handed to child pages, a JSON API called by POST with an
//! extra header, dedup that tells requests apart by method and body, and redirects that keep
//! or drop the method as browsers do. Real binary, real server on 127.0.0.1.

use http_body_util::BodyExt as _;
use sandcrawl::fetch::{Body, FetchConfig, Fetcher, Method, RequestSpec};
use sandcrawl_e2e::{header, html, plugin, read_items, run_bin, runtime, serve, tempdir};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the server saw it: method, path, content type, accept, body.
type Seen = (String, String, String, String, String);

/// Reads a request whole and logs it.
async fn record(req: hyper::Request<hyper::body::Incoming>, log: &Mutex<Vec<Seen>>) -> Seen {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let ct = header(&req, "content-type", "");
    let accept = header(&req, "accept", "");
    let body = match req.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    let seen = (method, path, ct, accept, body);
    if let Ok(mut l) = log.lock() {
        l.push(seen.clone());
    }
    seen
}

fn form_value(body: &str, key: &str) -> String {
    url::form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Runs a crawl with the requests plugin and `cfg`, no seeds, into `state`.
fn crawl(cfg: &Path, state: &Path, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let (cfg, state) = (cfg.display().to_string(), state.display().to_string());
    let plugin = plugin("requests").display().to_string();
    let mut args = vec![
        "run",
        "--no-progress",
        "--config",
        &cfg,
        "--plugins",
        &plugin,
        "--state",
        &state,
    ];
    args.extend(extra);
    let (status, _, stderr) = run_bin(&args, Duration::from_secs(120));
    (status, stderr)
}

#[test]
fn start_requests_post_forms_and_json_carry_metadata_and_dedup_by_body() {
    let rt = runtime();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = Arc::clone(&seen);
    let server = rt.block_on(serve("127.0.0.1", move |req| {
        let log = Arc::clone(&log);
        async move {
            let (method, path, ct, accept, body) = record(req, &log).await;
            match (method.as_str(), path.as_str()) {
                ("POST", "/search") if ct == "application/x-www-form-urlencoded" => {
                    let q = form_value(&body, "q");
                    html(
                        200,
                        format!(
                            "<h1>Results for {q}</h1><a class=result href=\"/item/{q}-1\">1</a><a class=result href=\"/item/{q}-2\">2</a>"
                        ),
                    )
                }
                ("POST", "/api") if ct == "application/json" && accept == "application/json" => {
                    let q: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    hyper::Response::builder()
                        .header("content-type", "application/json")
                        .body(sandcrawl_e2e::full(
                            serde_json::json!({ "q": q["q"], "hits": 2 }).to_string(),
                        ))
                        .expect("response")
                }
                ("GET", p) if p.starts_with("/item/") => {
                    html(200, format!("<h1>{}</h1>", p.trim_start_matches("/item/")))
                }
                _ => html(404, "no"),
            }
        }
    }));
    let dir = tempdir("requests");
    let cfg = dir.join("crawl.toml");
    std::fs::write(
        &cfg,
        format!(
            "[plugins.requests.config]\nsite = \"{}\"\nkeywords = [\"rust\", \"wasm\"]\n",
            server.url("").trim_end_matches('/')
        ),
    )
    .expect("config");
    let state = dir.join("state");
    // No seeds: the crawl starts from the plugin's start requests.
    let (status, stderr) = crawl(&cfg, &state, &[]);
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("need a browser"),
        "the rendering declaration is told once:\n{stderr}"
    );

    let mut items: Vec<(String, serde_json::Value)> = read_items(&state.join("items.jsonl"))
        .into_iter()
        .map(|i| {
            (
                i["kind"].as_str().unwrap_or_default().to_owned(),
                i["fields"].clone(),
            )
        })
        .collect();
    items.sort_by_key(|(k, f)| format!("{k} {f}"));
    assert_eq!(
        items,
        [
            (
                "api".into(),
                serde_json::json!({"keyword": "rust", "method": "POST", "answer": {"q": "rust", "hits": 2}})
            ),
            (
                "api".into(),
                serde_json::json!({"keyword": "wasm", "method": "POST", "answer": {"q": "wasm", "hits": 2}})
            ),
            (
                "item".into(),
                serde_json::json!({"keyword": "rust", "from": "search", "title": "rust-1", "method": "GET"})
            ),
            (
                "item".into(),
                serde_json::json!({"keyword": "rust", "from": "search", "title": "rust-2", "method": "GET"})
            ),
            (
                "item".into(),
                serde_json::json!({"keyword": "wasm", "from": "search", "title": "wasm-1", "method": "GET"})
            ),
            (
                "item".into(),
                serde_json::json!({"keyword": "wasm", "from": "search", "title": "wasm-2", "method": "GET"})
            ),
            (
                "search".into(),
                serde_json::json!({"keyword": "rust", "method": "POST", "results": 2})
            ),
            (
                "search".into(),
                serde_json::json!({"keyword": "wasm", "method": "POST", "results": 2})
            ),
        ],
        "{stderr}"
    );
    let log = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let searches: Vec<&str> = log
        .iter()
        .filter(|s| s.0 == "POST" && s.1 == "/search")
        .map(|s| s.4.as_str())
        .collect();
    // Each search once: the page proposed the same POST again, and dedup (URL, method,
    // body) dropped it, while the two bodies were two requests.
    assert_eq!(searches.len(), 2, "{log:?}");
    assert!(searches.contains(&"q=rust") && searches.contains(&"q=wasm"));
    assert_eq!(log.iter().filter(|s| s.1 == "/api").count(), 2, "{log:?}");
    let summary = sandcrawl_e2e::summary(&state);
    assert_eq!(summary["plugins"]["requests"]["items"], 8, "{summary}");

    // Start requests are proposals: outside the configured scope, they are not sent.
    let before = log.len();
    let (_, stderr) = crawl(&cfg, &dir.join("state-denied"), &["--deny", "/search$"]);
    assert_eq!(
        stderr.matches("is out of scope").count(),
        2,
        "one warning per start request:\n{stderr}"
    );
    let after: Vec<Seen> = seen
        .lock()
        .map(|s| s[before..].to_vec())
        .unwrap_or_default();
    assert!(
        after.iter().all(|s| s.1 != "/search"),
        "no denied request was sent: {after:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// 307 and 308 repeat a POST with its body; 301, 302 and 303 continue with a GET and no body.
#[test]
fn redirects_keep_or_drop_the_method_as_browsers_do() {
    let rt = runtime();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = Arc::clone(&seen);
    let server = rt.block_on(serve("127.0.0.1", move |req| {
        let log = Arc::clone(&log);
        async move {
            let (_, path, ..) = record(req, &log).await;
            match path.strip_prefix("/from/") {
                Some(code) => hyper::Response::builder()
                    .status(code.parse::<u16>().unwrap_or(500))
                    .header("location", "/to")
                    .body(sandcrawl_e2e::full(""))
                    .expect("response"),
                None => html(200, "landed"),
            }
        }
    }));
    let fetcher = Fetcher::new(FetchConfig::default(), 1).expect("fetcher");
    let spec = RequestSpec {
        method: Method::Post,
        headers: Vec::new(),
        body: Some(Body::form([("q", "x")])),
    };
    for (code, method, body) in [
        ("307", "POST", "q=x"),
        ("308", "POST", "q=x"),
        ("303", "GET", ""),
        ("302", "GET", ""),
        ("301", "GET", ""),
    ] {
        if let Ok(mut s) = seen.lock() {
            s.clear();
        }
        let url = url::Url::parse(&server.url(&format!("/from/{code}"))).expect("url");
        let resp = rt
            .block_on(fetcher.fetch_request(&url, Some(&spec), |_| async { Ok(()) }))
            .expect("fetch");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.method.as_str(), method, "{code}");
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen.len(), 2, "{code}: {seen:?}");
        assert_eq!((seen[0].0.as_str(), seen[0].4.as_str()), ("POST", "q=x"));
        assert_eq!(
            (seen[1].0.as_str(), seen[1].4.as_str()),
            (method, body),
            "{code}"
        );
        let ct = if body.is_empty() {
            ""
        } else {
            "application/x-www-form-urlencoded"
        };
        assert_eq!(seen[1].2, ct, "{code}");
    }
}
