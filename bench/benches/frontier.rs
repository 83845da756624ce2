//! Frontier scale: queue 1,000,000 URLs over 1,000 hosts, then lease and complete them all,
//! reporting throughput and the process's peak RSS (from /proc/self/status, VmHWM).
//!
//!     cargo bench -p sandcrawl-bench --bench frontier            # 1,000,000 URLs
//!     FRONTIER_URLS=100000 cargo bench -p sandcrawl-bench --bench frontier
//!
//! The point: memory must stay flat as the frontier grows, because URLs live on disk (fjall), not in RAM.

use sandcrawl::frontier::{
    Completion, FjallFrontier, Frontier, NewUrl, Outcome, UrlKind, UrlRecord,
};
use std::time::Instant;

fn rss_mb(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let total: u64 = std::env::var("FRONTIER_URLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let hosts = 1000u64;
    let dir = std::env::temp_dir().join(format!("sandcrawl-frontier-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut f = FjallFrontier::open(&dir).unwrap_or_else(|e| panic!("{e:#}"));
    println!("start: rss {:.1} MB", rss_mb("VmRSS"));
    let t = Instant::now();
    let batch = 1000;
    let mut n = 0u64;
    while n < total {
        let urls: Vec<NewUrl> = (n..(n + batch).min(total))
            .map(|i| {
                let host = format!("host{}.example", i % hosts);
                let url = format!("http://{host}/page/{i}?ref=bench");
                let u = url::Url::parse(&url).unwrap_or_else(|e| panic!("{e}"));
                NewUrl {
                    fp: sandcrawl::normalize::fingerprint(&u),
                    record: UrlRecord::new(url, host, (i % 7) as u32, 0, UrlKind::Page),
                }
            })
            .collect();
        n += f.add(urls).unwrap_or_else(|e| panic!("{e:#}")) as u64;
        // The crawl checkpoints (flushes) every few seconds; the benchmark flushes at a
        // similar rhythm.
        if n.is_multiple_of(20_000) {
            f.flush().unwrap_or_else(|e| panic!("{e:#}"));
        }
        if n.is_multiple_of(200_000) {
            println!(
                "queued {n:>8}: rss {:.1} MB; {}",
                rss_mb("VmRSS"),
                f.store_stats()
            );
        }
    }
    let queued_s = t.elapsed().as_secs_f64();
    println!(
        "queued {total} URLs in {queued_s:.1}s ({:.0}/s), rss {:.1} MB",
        total as f64 / queued_s,
        rss_mb("VmRSS")
    );
    f.flush().unwrap_or_else(|e| panic!("{e:#}"));

    let t = Instant::now();
    let mut done = 0u64;
    let token = b"{}".to_vec();
    let (mut t_lease, mut t_complete) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    'outer: loop {
        let hosts_now = f.hosts_with_work();
        if hosts_now.is_empty() {
            break;
        }
        for h in hosts_now {
            let t0 = Instant::now();
            let leased = f.lease(&h).unwrap_or_else(|e| panic!("{e:#}"));
            t_lease += t0.elapsed();
            if let Some(l) = leased {
                let t1 = Instant::now();
                f.complete(&l, Completion::new(Outcome::Done, &token).page())
                    .unwrap_or_else(|e| panic!("{e:#}"));
                t_complete += t1.elapsed();
                done += 1;
                if done.is_multiple_of(20_000) {
                    f.checkpoint(&token).unwrap_or_else(|e| panic!("{e:#}"));
                }
                if done.is_multiple_of(200_000) {
                    println!(
                        "done   {done:>8}: rss {:.1} MB; {}",
                        rss_mb("VmRSS"),
                        f.store_stats()
                    );
                }
                if done >= total {
                    break 'outer;
                }
            }
        }
    }
    let done_s = t.elapsed().as_secs_f64();
    println!(
        "leased+completed {done} in {done_s:.1}s ({:.0}/s)",
        done as f64 / done_s
    );
    println!(
        "  lease {:.1} µs/URL, complete {:.1} µs/URL",
        t_lease.as_secs_f64() * 1e6 / done.max(1) as f64,
        t_complete.as_secs_f64() * 1e6 / done.max(1) as f64
    );
    println!("peak rss (VmHWM) {:.1} MB", rss_mb("VmHWM"));
    let size: u64 = walk_size(&dir);
    println!("store on disk {:.1} MB", size as f64 / 1e6);
    let _ = std::fs::remove_dir_all(&dir);
}

fn walk_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let p = e.path();
                    if p.is_dir() {
                        walk_size(&p)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
