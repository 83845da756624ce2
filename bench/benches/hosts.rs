//! Broad crawls: does the cost per page stay flat as the number of hosts grows? The real
//! `sandcrawl` binary (target/release, built by `./dev build`) crawls 400,000 pages spread
//! over 4, 1,000 and 10,000 host names, resolved (`fetch.resolve`) to servers in this process
//! on 64 loopback addresses. Reported: the crawler's own CPU per page (the child's rusage, so the
//! server's work is not counted), and its ratio to the 4-host figure of the same round. Runs
//! are interleaved and repeated (HOSTS_ROUNDS, default 3), and the medians are reported,
//! because the machine is shared. Three rounds take about 5 minutes.
//!
//!     ./dev build && cargo bench -p sandcrawl-bench --bench hosts
//!
//! Every host of the broadest crawl has 40 pages. A host costs one TCP connection whatever
//! the crawler does (about 130 µs of CPU on loopback, half of it in the kernel): with
//! `HOSTS_PAGES=40000` (4 pages a host at 10,000 hosts) that connection is a quarter of a
//! page's cost and the ratio measures TCP handshakes rather than the crawler.
//! `HOSTS_CLOSE_EVERY=N` is the control for that: the servers close every connection after N
//! responses, so that every size opens as many connections per page (BENCHMARKS.md §6 has
//! both figures).
//!
//! Every size keeps 64 requests in flight: 16 per host for 4 hosts, 1 per host for a broad
//! crawl (HOSTS_PER_HOST overrides). Each host name is a connection of its own, so 10,000
//! hosts open 10,000 connections where 4 hosts open 64; that cost is part of the figure.
//!
//! robots.txt is off (`--no-robots`): with it, every host costs one more request, which is
//! the crawl's work, not the scheduler's. Each host is a binary tree of pages (page n links
//! to 2n and 2n+1), so every page is found by a link.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::path::PathBuf;
use std::time::Instant;

/// Pages per crawl, in every configuration (HOSTS_PAGES overrides): 40 a host at 10,000
/// hosts, so that a host's connection is not what the ratio measures.
const PAGES: u64 = 400_000;

fn pages_total() -> u64 {
    std::env::var("HOSTS_PAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &u64| n > 0)
        .unwrap_or(PAGES)
}

/// Requests in flight, in every configuration.
const CONCURRENCY: u64 = 64;

/// Requests in flight per host: the crawl's whole concurrency spread over its hosts (16 for
/// 4 hosts, 1 for a broad crawl), so every configuration keeps 64 requests in flight, as a
/// user would set it for each kind of crawl. HOSTS_PER_HOST fixes it for every size.
fn per_host_limit(hosts: u64) -> u64 {
    std::env::var("HOSTS_PER_HOST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or((CONCURRENCY / hosts).max(1))
}

/// Loopback addresses the host names are spread over.
const ADDRS: usize = 64;

/// Connections the servers accepted, over every crawl so far.
static ACCEPTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Page n of a site of `per_host` pages: links to its two children that exist.
fn page(path: &str, per_host: u64) -> String {
    let n: u64 = path.trim_start_matches('/').parse().unwrap_or(1).max(1);
    let mut body = format!("<html><body><h1>page {n}</h1>");
    for c in [2 * n, 2 * n + 1] {
        if c <= per_host {
            body.push_str(&format!("<a href=\"/{c}\">child {c}</a>"));
        }
    }
    body + &"<p>filler text for a page of a realistic size</p>".repeat(20) + "</body></html>"
}

async fn serve(ip: &str, per_host: std::sync::Arc<std::sync::atomic::AtomicU64>) -> u16 {
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap_or_else(|e| panic!("bind: {e}"));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            ACCEPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let per_host = per_host.clone();
            // HOSTS_CLOSE_EVERY=N closes each connection after N responses: the control run,
            // in which every size opens the same number of connections per page.
            let close_every: usize = std::env::var("HOSTS_CLOSE_EVERY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let n = per_host.load(std::sync::atomic::Ordering::Relaxed);
                    let body = page(req.uri().path(), n);
                    let count = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    let close = close_every > 0 && count.is_multiple_of(close_every);
                    async move {
                        let mut resp =
                            Response::builder().header("content-type", "text/html; charset=utf-8");
                        if close {
                            resp = resp.header("connection", "close");
                        }
                        Ok::<_, std::convert::Infallible>(
                            resp.body(Full::new(Bytes::from(body))).unwrap_or_default(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    port
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = std::env::var_os("SANDCRAWL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target/release/sandcrawl"));
    if !bin.exists() {
        println!("{} is missing; run ./dev build first", bin.display());
        return;
    }
    let rounds: usize = std::env::var("HOSTS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(3);
    let rt = tokio::runtime::Runtime::new().unwrap_or_else(|e| panic!("{e}"));
    let per_host = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1));
    // Host names are spread over ADDRS loopback addresses, as a broad crawl's hosts are over
    // many servers: with every connection going to one address and port, the kernel's search
    // for a free ephemeral port (`__inet_check_established`) took a third of the CPU at
    // 10,000 hosts, which measures the loopback setup, not the crawler.
    let servers: Vec<(String, u16)> = (0..ADDRS)
        .map(|k| {
            let ip = format!("127.0.1.{}", k + 1);
            let port = rt.block_on(serve(&ip, per_host.clone()));
            (ip, port)
        })
        .collect();
    let resolve: String = servers
        .iter()
        .enumerate()
        .map(|(k, (ip, _))| format!("\"*.g{k}.bench.test\" = \"{ip}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let resolve = format!("fetch.resolve={{ {resolve} }}");
    // HOSTS_CONFIGS="10000" runs one size only (for a profile); the first size is the base.
    let configs: Vec<u64> = std::env::var("HOSTS_CONFIGS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<u64>| !v.is_empty())
        .unwrap_or_else(|| vec![4, 1_000, 10_000]);
    let mut cpu_per_page: Vec<Vec<f64>> = vec![Vec::new(); configs.len()];
    let tmp = std::env::temp_dir().join(format!("sandcrawl-bench-hosts-{}", std::process::id()));
    for round in 1..=rounds {
        for (k, &hosts) in configs.iter().enumerate() {
            let pages_per_host = pages_total() / hosts;
            per_host.store(pages_per_host, std::sync::atomic::Ordering::Relaxed);
            let _ = std::fs::remove_dir_all(&tmp);
            std::fs::create_dir_all(&tmp).unwrap_or_else(|e| panic!("{e}"));
            let seeds = tmp.join("seeds.txt");
            let list: String = (0..hosts as usize)
                .map(|i| {
                    let k = i % servers.len();
                    format!("http://h{i}.g{k}.bench.test:{}/1\n", servers[k].1)
                })
                .collect();
            std::fs::write(&seeds, list).unwrap_or_else(|e| panic!("{e}"));
            let accepted0 = ACCEPTED.load(std::sync::atomic::Ordering::Relaxed);
            let (cpu0, t0) = (
                sandcrawl_bench::cpu_seconds(sandcrawl_bench::Whose::Children),
                Instant::now(),
            );
            // HOSTS_WRAP="perf record -g -o /tmp/perf.data --" runs the crawler under a profiler.
            let wrap = std::env::var("HOSTS_WRAP").unwrap_or_default();
            let mut words = wrap.split_whitespace();
            let mut cmd = match words.next() {
                Some(w) => {
                    let mut c = std::process::Command::new(w);
                    c.args(words).arg(&bin);
                    c
                }
                None => std::process::Command::new(&bin),
            };
            let out = cmd
                .args(["run", "--no-robots", "--no-progress", "--log-level", "warn"])
                .arg("--state")
                .arg(tmp.join("state"))
                .arg("--seeds-file")
                .arg(&seeds)
                .args(["--concurrency", &CONCURRENCY.to_string(), "--per-host"])
                .arg(per_host_limit(hosts).to_string())
                .args(["--set", &resolve])
                .output()
                .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
            let (wall, cpu) = (
                t0.elapsed().as_secs_f64(),
                sandcrawl_bench::cpu_seconds(sandcrawl_bench::Whose::Children) - cpu0,
            );
            let summary: serde_json::Value = std::fs::read(tmp.join("state/summary.json"))
                .ok()
                .and_then(|raw| serde_json::from_slice(&raw).ok())
                .unwrap_or_default();
            let pages = summary["pages"].as_u64().unwrap_or(0);
            if !out.status.success() || pages != pages_per_host * hosts {
                panic!(
                    "{hosts} hosts: exit {:?}, {pages} pages; {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            let us = cpu * 1e6 / pages as f64;
            cpu_per_page[k].push(us);
            let conns = ACCEPTED.load(std::sync::atomic::Ordering::Relaxed) - accepted0;
            println!(
                "round {round}: {hosts:>6} hosts x {pages_per_host:>5} pages, {} per host: {pages} pages in {wall:.2} s ({:.0} pages/s), {conns} connections, {cpu:.2} CPU-s, {us:.1} µs CPU/page",
                per_host_limit(hosts),
                pages as f64 / wall
            );
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    // Each round's ratio compares two crawls run back to back, so a slow spell of the shared
    // machine moves both; the median of those ratios is the figure to judge by. The ratio of
    // the medians is printed too, but it pairs crawls from different rounds.
    let base = median(cpu_per_page[0].clone());
    println!(
        "median over {rounds} rounds (CPU per page; its ratio to the {}-host figure of the same round):",
        configs[0]
    );
    for (k, hosts) in configs.iter().enumerate() {
        let m = median(cpu_per_page[k].clone());
        let ratios: Vec<f64> = cpu_per_page[k]
            .iter()
            .zip(&cpu_per_page[0])
            .map(|(us, base)| us / base)
            .collect();
        println!(
            "  {hosts:>6} hosts: {m:.1} µs/page; ratio {:.2} (ratio of the medians {:.2})",
            median(ratios),
            m / base
        );
    }
}
