//! `run --watch`: plugin builds swapped while a crawl runs. The test server holds chosen
//! pages until the test lets them go, so each swap happens at a known point of the crawl,
//! and every wait is bounded.

use sandcrawl_e2e::{bin, html, plugin, read_items, runtime, serve, sha256_hex, tempdir};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Pages /r/1 … /r/5, each linking to the next; /r/2, /r/3 and /r/4 wait for their gate.
const LAST: usize = 5;

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("gave up after {limit:?} waiting for {what}");
}

fn log_has(log: &Path, needle: &str) -> bool {
    std::fs::read_to_string(log).is_ok_and(|t| t.contains(needle))
}

/// Writes `bytes` as `dest` in one rename, as a build tool that writes atomically would; the
/// watcher must also cope with in-place writes, which `fs::write` below does.
fn replace(dest: &Path, bytes: &[u8]) {
    let tmp = dest.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write plugin");
    std::fs::rename(&tmp, dest).expect("rename plugin");
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(Some(st)) = child.try_wait() {
            return st;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("the crawl did not finish within {limit:?}");
}

#[test]
fn watch_swaps_changed_builds_keeps_the_old_on_a_broken_one_and_follows_removals_and_additions() {
    let rt = runtime();
    let gates: Arc<Vec<Semaphore>> = Arc::new((0..=LAST).map(|_| Semaphore::new(0)).collect());
    let server_gates = Arc::clone(&gates);
    let server = rt.block_on(serve("127.0.0.1", move |req| {
        let gates = Arc::clone(&server_gates);
        async move {
            let n: usize = req
                .uri()
                .path()
                .strip_prefix("/r/")
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if n == 0 {
                return html(404, "");
            }
            if (2..=4).contains(&n)
                && let Some(g) = gates.get(n)
                && let Ok(permit) = g.acquire().await
            {
                permit.forget();
            }
            let next = if n < LAST {
                format!("<a href=\"/r/{}\">next</a>", n + 1)
            } else {
                String::new()
            };
            html(200, format!("<title>page {n}</title>{next}"))
        }
    }));

    let dir = tempdir("reload");
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).expect("plugins dir");
    let live = plugins.join("reload.wasm");
    let v1 = std::fs::read(plugin("reload-v1")).expect("reload-v1.wasm");
    let v2 = std::fs::read(plugin("reload-v2")).expect("reload-v2.wasm");
    replace(&live, &v1);
    let state = dir.join("state");
    let log = dir.join("stderr.log");
    let mut child = Command::new(bin())
        .args([
            "run",
            "--watch",
            "--no-progress",
            "--plugins",
            &plugins.display().to_string(),
            "--state",
            &state.display().to_string(),
            "--set",
            &format!("cache_dir={:?}", dir.join("cache").display().to_string()),
            &server.url("/r/1"),
        ])
        .env("SANDCRAWL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn sandcrawl");
    let wait = Duration::from_secs(120);

    // Build 1 parsed /r/1 and proposed /r/2, which the server now holds.
    wait_for("the request for /r/2", wait, || {
        server.paths().iter().any(|p| p == "/r/2")
    });
    // A broken build (a half-written file, say): one error line, and build 1 stays.
    std::fs::write(&live, b"\0asm\x0d\0\x01\0 truncated").expect("write broken plugin");
    wait_for("the broken build's error line", wait, || {
        log_has(&log, "not reloaded, the running build stays")
    });
    // Build 2 replaces build 1 for the pages routed from now on.
    replace(&live, &v2);
    wait_for("build 2 to be swapped in", wait, || {
        log_has(&log, "reloaded (was version 1.0.0)")
    });
    gates[2].add_permits(1);
    wait_for("the request for /r/3", wait, || {
        server.paths().iter().any(|p| p == "/r/3")
    });
    // A second file with the same plugin name is refused while the first is there ...
    let added = plugins.join("added.wasm");
    replace(&added, &v1);
    wait_for("the name clash to be refused", wait, || {
        log_has(&log, "is already loaded from")
    });
    // ... and loaded once the first is removed: the removed build (2) gets no more pages, the
    // added one (1) gets /r/3 onwards.
    std::fs::remove_file(&live).expect("remove plugin");
    wait_for("the removal to be noticed", wait, || {
        log_has(&log, "was removed: no more pages go to this plugin")
    });
    wait_for("the added plugin to be loaded", wait, || {
        log_has(&log, "added.wasm: new plugin loaded")
    });
    gates[3].add_permits(1);
    gates[4].add_permits(1);
    let status = wait_exit(&mut child, wait);
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "exit {status:?}; stderr:\n{stderr}");

    let items = read_items(&state.join("items.jsonl"));
    let got: Vec<(String, u64, String)> = items
        .iter()
        .map(|i| {
            (
                i["url"].as_str().unwrap_or_default().to_owned(),
                i["fields"]["build"].as_u64().unwrap_or(0),
                i["plugin"]["sha256"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (server.url("/r/1"), 1, sha256_hex(&v1)),
            (server.url("/r/2"), 2, sha256_hex(&v2)),
            (server.url("/r/3"), 1, sha256_hex(&v1)),
            (server.url("/r/4"), 1, sha256_hex(&v1)),
            (server.url("/r/5"), 1, sha256_hex(&v1)),
        ],
        "stderr:\n{stderr}"
    );
    assert_eq!(items[1]["plugin"]["version"], "2.0.0");
    assert_eq!(
        stderr.matches("not reloaded").count(),
        2,
        "one error line for the broken build, one for the name clash:\n{stderr}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("summary.json")).expect("summary"))
            .expect("summary json");
    assert_eq!(summary["plugins"]["reload"]["items"], 5, "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
}
