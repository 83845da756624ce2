//! `sandcrawl status` for a shared crawl: what Redis says about it, read without joining
//! (no lease is taken, nothing is written). It owns that read and its text form; it must not
//! change the crawl.

use super::conn::Conn;
use super::{CrawlCounters, now_ms, prefix};
use crate::frontier::Counters;
use anyhow::Result;
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct CrawlStatus {
    pub crawl_id: String,
    pub exists: bool,
    pub counters: Counters,
    /// URLs leased to workers now.
    pub leased: u64,
    /// Leases that expired and went back to a queue (a worker died or stalled).
    pub expired: u64,
    pub finished: bool,
    /// The largest host queues, largest first.
    pub hosts: Vec<(String, u64)>,
    pub hosts_with_work: u64,
    pub workers: Vec<WorkerStatus>,
    /// Pages per second over every live worker.
    pub pages_per_s: f64,
    /// Errors over every worker.
    pub errors: u64,
}

#[derive(Debug, Serialize)]
pub struct WorkerStatus {
    pub name: String,
    /// Seconds since its last heartbeat.
    pub last_heartbeat_s: f64,
    pub alive: bool,
    pub stopped: bool,
    pub pages: u64,
    pub stats: serde_json::Value,
}

/// Whether the crawl exists, its counters, the hosts with work, the workers and heartbeats.
type Overview = (bool, Vec<redis::Value>, Vec<String>, Vec<(String, f64)>);

/// Reads the crawl's state; `ttl` decides when a silent worker counts as gone.
pub fn read(url: &str, crawl_id: &str, ttl: Duration) -> Result<CrawlStatus> {
    let mut conn = Conn::open(url, Duration::from_secs(5))?;
    let p = prefix(crawl_id);
    let (exists, counters, hosts, workers): Overview = conn.call(|c| {
        redis::pipe()
            .cmd("EXISTS")
            .arg(format!("{p}meta"))
            .cmd("HGETALL")
            .arg(format!("{p}counters"))
            .cmd("ZRANGE")
            .arg(format!("{p}hosts"))
            .arg(0)
            .arg(9_999)
            .cmd("ZRANGE")
            .arg(format!("{p}workers"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query(c)
    })?;
    let all = CrawlCounters::from_flat(&counters);
    let sizes: Vec<u64> = if hosts.is_empty() {
        Vec::new()
    } else {
        conn.call(|con| {
            let mut pipe = redis::pipe();
            for h in &hosts {
                pipe.cmd("ZCARD").arg(format!("{p}q:{h}"));
            }
            pipe.query(con)
        })?
    };
    let mut queues: Vec<(String, u64)> = hosts.iter().cloned().zip(sizes).collect();
    queues.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let hosts_with_work = queues.len() as u64;
    queues.truncate(20);
    let now = now_ms();
    let mut out = Vec::new();
    let (mut rate, mut errors) = (0.0, 0u64);
    // One round trip for every worker's record.
    type Record = (Option<String>, Option<u64>, Option<f64>);
    let records: Vec<Record> = if workers.is_empty() {
        Vec::new()
    } else {
        conn.call(|con| {
            let mut pipe = redis::pipe();
            for (name, _) in &workers {
                pipe.cmd("HMGET")
                    .arg(format!("{p}w:{name}"))
                    .arg("stats")
                    .arg("pages")
                    .arg("stopped");
            }
            pipe.query(con)
        })?
    };
    for ((name, beat), (stats, pages, stopped)) in workers.into_iter().zip(records) {
        let stats: serde_json::Value = stats
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or(serde_json::Value::Null);
        let age = now.saturating_sub(beat as u64) as f64 / 1000.0;
        let stopped = stopped.is_some_and(|s| s >= beat);
        let alive = !stopped && age < ttl.as_secs_f64();
        if alive {
            rate += stats["pages_per_s"].as_f64().unwrap_or(0.0);
        }
        errors += stats["errors"].as_u64().unwrap_or(0);
        out.push(WorkerStatus {
            name,
            last_heartbeat_s: age,
            alive,
            stopped,
            pages: pages.unwrap_or(0),
            stats,
        });
    }
    Ok(CrawlStatus {
        crawl_id: crawl_id.to_owned(),
        exists,
        finished: exists && all.finished(),
        counters: all.counters,
        leased: all.leased,
        expired: all.expired,
        hosts: queues,
        hosts_with_work,
        workers: out,
        pages_per_s: rate,
        errors,
    })
}

impl std::fmt::Display for CrawlStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.exists {
            return writeln!(f, "crawl {}: no such crawl in this Redis", self.crawl_id);
        }
        let c = &self.counters;
        let state = if self.finished { "finished" } else { "running" };
        writeln!(
            f,
            "crawl {} ({state}): {} known, {} queued, {} in flight, {} done, {} failed, {} pages, {} leases expired",
            self.crawl_id, c.known, c.queued, self.leased, c.done, c.failed, c.pages, self.expired
        )?;
        writeln!(
            f,
            "rate: {:.1} pages/s over live workers; errors: {}",
            self.pages_per_s, self.errors
        )?;
        writeln!(f, "workers ({}):", self.workers.len())?;
        for w in &self.workers {
            let state = if w.stopped {
                "stopped"
            } else if w.alive {
                "alive"
            } else {
                "silent (dead?)"
            };
            writeln!(
                f,
                "  {:<32} {state:<15} last heartbeat {:>7.1} s ago, {} pages, {:.1} pages/s",
                crate::escape::escape(&w.name),
                w.last_heartbeat_s,
                w.pages,
                w.stats["pages_per_s"].as_f64().unwrap_or(0.0)
            )?;
        }
        writeln!(
            f,
            "queues ({} hosts with queued URLs; largest first):",
            self.hosts_with_work
        )?;
        for (h, q) in &self.hosts {
            writeln!(f, "  {:<40} {q}", crate::escape::escape(h))?;
        }
        Ok(())
    }
}
