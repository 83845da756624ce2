//! Fetch throughput of the host's HTTP client alone (no plugins, no frontier): every URL in
//! FETCH_URLS (one per line) fetched with 64 requests in flight, reporting requests/s and
//! CPU per request (/proc/self/stat, whole process). Compare with `wrk` on the same paths.
//! The list is fetched FETCH_PASSES times (default 5) with one client: the first pass opens
//! the connections and warms the page cache, so compare the later ones. One pass of the
//! benchmark site takes a fraction of a second, so each is reported on its own.
//!
//!     FETCH_URLS=urls.txt cargo bench -p sandcrawl-bench --bench fetch
//!
//! bench/run.sh prepares urls.txt from the generated site and runs this next to wrk.

use sandcrawl::fetch::{FetchConfig, Fetcher};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let Some(list) = std::env::var_os("FETCH_URLS") else {
        println!("set FETCH_URLS to a file with one URL per line (see bench/run.sh); skipping");
        return;
    };
    let urls: Vec<url::Url> = std::fs::read_to_string(&list)
        .unwrap_or_else(|e| panic!("{}: {e}", list.to_string_lossy()))
        .lines()
        .filter_map(|l| url::Url::parse(l.trim()).ok())
        .collect();
    let conc: usize = std::env::var("FETCH_CONC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let fetcher = Fetcher::new(FetchConfig::default(), conc).unwrap_or_else(|e| panic!("{e:#}"));
    let passes: usize = std::env::var("FETCH_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let urls = Arc::new(urls);
    for pass in 1..=passes {
        let (cpu0, t0) = (
            sandcrawl_bench::cpu_seconds(sandcrawl_bench::Whose::Own),
            Instant::now(),
        );
        let (ok, bytes) = rt.block_on(async {
            let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..conc {
                let (f, urls, next) = (fetcher.clone(), urls.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    let (mut ok, mut bytes) = (0u64, 0u64);
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(u) = urls.get(i) else { break };
                        if let Ok(r) = f.fetch(u, |_| async { Ok(()) }).await {
                            ok += 1;
                            bytes += r.body.len() as u64;
                        }
                    }
                    (ok, bytes)
                }));
            }
            let mut total = (0u64, 0u64);
            for t in tasks {
                if let Ok((o, b)) = t.await {
                    total.0 += o;
                    total.1 += b;
                }
            }
            total
        });
        let (wall, cpu) = (
            t0.elapsed().as_secs_f64(),
            sandcrawl_bench::cpu_seconds(sandcrawl_bench::Whose::Own) - cpu0,
        );
        println!(
            "pass {pass}: fetched {ok}/{} URLs, {:.1} MB, concurrency {conc}: {:.0} req/s, {:.3} ms CPU per request ({:.2} CPU-s over {:.2} s)",
            urls.len(),
            bytes as f64 / 1e6,
            ok as f64 / wall,
            cpu * 1000.0 / ok.max(1) as f64,
            cpu,
            wall
        );
    }
}
