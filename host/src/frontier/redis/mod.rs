//! The shared frontier: several sandcrawl processes, on one machine or many, crawl one crawl
//! id whose queues, seen set, leases, per-host politeness and counters live in Redis.
//!
//! Every change is one Lua script (`scripts.rs`, keys in `common.lua`): a lease takes URLs of
//! a host only while the host's in-flight count (over all workers) is under its limit and its
//! next start has come; a completion is accepted only from the lease's current owner; a
//! worker's leases live as long as its heartbeat, and a heartbeat puts the leases of a worker
//! silent for the lease lifetime (one that died or stalled) back in their queues. This module
//! stores what the scheduler decided; it must not fetch, parse or decide scope, and it does
//! not write items (the scheduler asks [`Frontier::confirm`] before it does).

mod conn;
mod join;
mod robots;
mod round;
mod scripts;
pub mod status;

pub use join::{Description, Joined};

use super::{Completion, Counters, Frontier, HostLimits, Lease, NewUrl, Outcome, UrlState};
use crate::normalize::Fingerprint;
use anyhow::{Result, bail};
use conn::Conn;
use scripts::Scripts;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often the store is asked which hosts may start now.
const POLL: Duration = Duration::from_millis(50);
/// How often a worker renews its leases and reports itself.
const BEAT: Duration = Duration::from_secs(1);
/// URLs sent in one `add` call.
const ADD_BATCH: usize = 1_000;
/// Hosts taken from the schedule per poll.
const POLL_HOSTS: usize = 1_000;
/// URLs of one host leased in one call, when its delay lets several start at once.
const LEASE_BATCH: usize = 16;

/// Completions sent in one script call (the ones committed together by the scheduler).
const COMPLETE_BATCH: usize = 64;

/// A completion waiting for the batch it goes to Redis with.
struct PendingCompletion {
    fp: Fingerprint,
    url: String,
    host: String,
    outcome: Outcome,
    counted: bool,
    /// Its part of `round.lua`'s arguments up to the links: fingerprint, host, state,
    /// counted, aliases.
    head: Vec<Vec<u8>>,
    /// Its links not known to this worker.
    links: Vec<NewUrl>,
}

/// Where a crawl's frontier lives and who this process is in it.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    pub url: String,
    pub crawl_id: String,
    pub worker: String,
    pub lease_ttl: Duration,
    /// How long a call waits for an unreachable Redis before the crawl stops.
    pub max_wait: Duration,
}

pub struct RedisFrontier {
    /// In a cell so that the read-only questions of the trait (`state`, `host_queued`) can
    /// ask Redis too; the scheduler is the only user, from one task.
    conn: RefCell<Conn>,
    /// A call to Redis failed: the crawl is stopping with that error.
    failed: std::cell::Cell<bool>,
    scripts: Scripts,
    /// `sc:{ID}:`.
    prefix: String,
    /// robots.txt answers shared with the other workers (a connection of its own).
    robots: std::sync::Arc<robots::RedisRobots>,
    worker: String,
    ttl: Duration,
    /// Leases this worker holds and has not completed, handed out or still buffered, with
    /// when the store last said this worker holds them (the moment that call was sent).
    mine: HashMap<Fingerprint, (Lease, Instant)>,
    /// Leased in a batch, not yet handed to the scheduler.
    buffered: HashMap<String, VecDeque<Lease>>,
    /// Hosts the store last said have work.
    work: HashSet<String>,
    /// Hosts the store said may not start before a time (another worker just started one).
    not_before: HashMap<String, Instant>,
    /// Hosts where the store last gave this worker all it could (its share of `per_host` is
    /// in flight, or it got fewer URLs than it asked for): not asked again until one of its
    /// own requests there ends, which is when a slot of its share frees.
    share_full: HashSet<String>,
    host_pages: HashMap<String, u64>,
    woken: Vec<String>,
    counters: Counters,
    last_poll: Option<Instant>,
    last_beat: Option<Instant>,
    seen: super::SeenCache,
    token: Option<Vec<u8>>,
    /// Completions refused because the lease had expired and gone to another worker.
    lost: u64,
    /// Completions not sent yet: they go with the next lease call, or at the end of the
    /// scheduler's round (`tick`), so the pages it commits together cost one round trip.
    pending: Vec<PendingCompletion>,
    pending_token: Option<Vec<u8>>,
    /// Where this worker is in the feed of fingerprints the other workers queued
    /// (generation, offset; generation -1 before its first read).
    feed: (i64, u64),
    /// Each host's politeness as the scheduler last gave it, so that a lease call can take
    /// URLs of other hosts too.
    limits: HashMap<String, HostLimits>,
    /// Hosts where this worker's completions freed slots since its last lease call, and how
    /// many: the next lease call takes URLs for them in the same round trip.
    freed: HashMap<String, usize>,
    stats: String,
}

/// Runs blocking Redis I/O from inside the crawl's async runtime without stalling it.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Milliseconds since the epoch: the clock every worker's times in Redis are on (keep the
/// machines' clocks in sync, as NTP does).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn instant_at(ms: u64) -> Instant {
    Instant::now() + Duration::from_millis(ms.saturating_sub(now_ms()))
}

/// The order of a queued URL inside its host's queue: priority (highest first), then depth.
fn order(priority: i32, depth: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&(!((priority as u32) ^ 0x8000_0000)).to_be_bytes());
    k[4..].copy_from_slice(&depth.to_be_bytes());
    k
}

impl RedisFrontier {
    /// Connects, creates or joins the crawl, and checks this worker may join it (see
    /// [`Joined`]).
    pub fn join(target: &RedisTarget, me: &Description) -> Result<Joined> {
        let conn = blocking(|| Conn::open(&target.url, target.max_wait))?;
        let frontier = RedisFrontier {
            conn: RefCell::new(conn),
            failed: std::cell::Cell::new(false),
            robots: std::sync::Arc::new(robots::RedisRobots::open(&target.url, &target.crawl_id)?),
            scripts: Scripts::new(),
            prefix: prefix(&target.crawl_id),
            worker: target.worker.clone(),
            ttl: target.lease_ttl,
            mine: HashMap::new(),
            buffered: HashMap::new(),
            work: HashSet::new(),
            not_before: HashMap::new(),
            share_full: HashSet::new(),
            host_pages: HashMap::new(),
            woken: Vec::new(),
            counters: Counters::default(),
            last_poll: None,
            last_beat: None,
            seen: super::SeenCache::default(),
            token: None,
            lost: 0,
            pending: Vec::new(),
            pending_token: None,
            feed: (-1, 0),
            limits: HashMap::new(),
            freed: HashMap::new(),
            stats: "{}".to_owned(),
        };
        join::join(frontier, target, me)
    }

    fn call<T>(&self, f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>) -> Result<T> {
        let mut conn = self.conn.borrow_mut();
        let result = blocking(move || conn.call(f));
        if result.is_err() {
            self.failed.set(true);
        }
        result
    }

    /// The lease lifetime in ms: a worker silent that long loses its leases.
    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    /// Asks the store which hosts may start now, at most every `POLL`.
    fn poll(&mut self) -> Result<()> {
        if self.last_poll.is_some_and(|t| t.elapsed() < POLL) {
            return Ok(());
        }
        self.last_poll = Some(Instant::now());
        self.flush_completions()?;
        let key = format!("{}hosts", self.prefix);
        let now = now_ms();
        let due: Vec<String> = self.call(|c| {
            redis::cmd("ZRANGEBYSCORE")
                .arg(&key)
                .arg("-inf")
                .arg(now)
                .arg("LIMIT")
                .arg(0)
                .arg(POLL_HOSTS)
                .query(c)
        })?;
        for h in due {
            self.not_before.remove(&h);
            self.work.insert(h.clone());
            self.woken.push(h);
        }
        Ok(())
    }

    /// Reports this worker alive (which keeps its leases), learns which leases it lost, has
    /// the leases of silent workers requeued, and refreshes the counters; at most every `BEAT`
    /// unless `force`.
    fn beat(&mut self, force: bool) -> Result<()> {
        if !force && self.last_beat.is_some_and(|t| t.elapsed() < BEAT) {
            return Ok(());
        }
        self.flush_completions()?;
        let sent = Instant::now();
        self.last_beat = Some(sent);
        let (prefix, worker, ttl, stats) = (&self.prefix, &self.worker, self.ttl_ms(), &self.stats);
        let fps: Vec<Vec<u8>> = self.mine.keys().map(|f| f.to_vec()).collect();
        let script = &self.scripts.heartbeat;
        let reply: Vec<redis::Value> = self.call(|c| {
            let mut inv = script.prepare_invoke();
            inv.arg(prefix)
                .arg(now_ms())
                .arg(worker)
                .arg(ttl)
                .arg(stats);
            for fp in &fps {
                inv.arg(fp.as_slice());
            }
            inv.invoke(c)
        })?;
        let requeued = reply.first().map_or(0, int);
        if requeued > 0 {
            tracing::info!(
                requeued,
                "expired leases (a worker died or stalled) went back to their queues"
            );
        }
        if let Some(redis::Value::Array(flat)) = reply.get(1) {
            self.counters = CrawlCounters::from_flat(flat).counters;
        }
        let mut gone: HashSet<Fingerprint> = HashSet::new();
        if let Some(redis::Value::Array(fps)) = reply.get(2) {
            gone.extend(
                fps.iter()
                    .filter_map(bytes)
                    .filter_map(|b| <Fingerprint>::try_from(b.as_slice()).ok()),
            );
        }
        for (fp, (_, renewed)) in self.mine.iter_mut() {
            if !gone.contains(fp) {
                *renewed = sent;
            }
        }
        // Leases this worker stalled past: `confirm` asks the store about them (and is told
        // no), so their pages' items are not written here.
        self.mine.retain(|fp, _| !gone.contains(fp));
        for q in self.buffered.values_mut() {
            q.retain(|l| !gone.contains(&l.fp));
        }
        if !gone.is_empty() {
            // Leases dropped from the buffer will never end here: ask the store again.
            self.share_full.clear();
        }
        Ok(())
    }

    fn record_json(record: &super::UrlRecord) -> Result<String> {
        Ok(serde_json::to_string(record)?)
    }

    /// `add`'s and `complete`'s arguments for new URLs: fingerprint, host, order, record.
    fn link_args(urls: &[NewUrl]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::with_capacity(urls.len() * 4);
        for n in urls {
            out.push(n.fp.to_vec());
            out.push(n.record.host.as_bytes().to_vec());
            out.push(order(n.record.priority, n.record.depth).to_vec());
            out.push(Self::record_json(&n.record)?.into_bytes());
        }
        Ok(out)
    }

    /// `state` of a fingerprint as the seen set holds it.
    fn seen_field(fp: &Fingerprint) -> (u32, Vec<u8>) {
        (
            (u32::from(fp[0]) * 256 + u32::from(fp[1])) % 8192,
            fp[2..10].to_vec(),
        )
    }
}

pub(crate) fn prefix(crawl_id: &str) -> String {
    format!("sc:{{{crawl_id}}}:")
}

fn int(v: &redis::Value) -> u64 {
    match v {
        redis::Value::Int(i) => (*i).max(0) as u64,
        redis::Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map_or(0, |f| f.max(0.0) as u64),
        redis::Value::SimpleString(s) => s.parse::<f64>().map_or(0, |f| f.max(0.0) as u64),
        _ => 0,
    }
}

fn bytes(v: &redis::Value) -> Option<Vec<u8>> {
    match v {
        redis::Value::BulkString(b) => Some(b.clone()),
        redis::Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

/// The crawl's `counters` hash: the store's counters, and the two only Redis has.
#[derive(Debug, Clone, Copy, Default)]
struct CrawlCounters {
    counters: Counters,
    /// URLs leased to workers now.
    leased: u64,
    /// Leases that expired and went back to a queue.
    expired: u64,
}

impl CrawlCounters {
    /// From `HGETALL`'s flat field, value list.
    fn from_flat(flat: &[redis::Value]) -> Self {
        let mut all = CrawlCounters::default();
        let c = &mut all.counters;
        for pair in flat.chunks(2) {
            let [k, v] = pair else { continue };
            let v = int(v);
            match bytes(k).as_deref() {
                Some(b"known") => c.known = v,
                Some(b"queued") => c.queued = v,
                Some(b"done") => c.done = v,
                Some(b"failed") => c.failed = v,
                Some(b"pages") => c.pages = v,
                Some(b"leased") => all.leased = v,
                Some(b"expired") => all.expired = v,
                _ => {}
            }
        }
        all
    }

    /// Nothing queued or in flight any more, after something was.
    fn finished(&self) -> bool {
        self.counters.known > 0 && self.counters.queued == 0 && self.leased == 0
    }
}

impl Frontier for RedisFrontier {
    fn add(&mut self, urls: Vec<NewUrl>) -> Result<usize> {
        let fresh: Vec<NewUrl> = urls
            .into_iter()
            .filter(|n| !self.seen.contains(&n.fp))
            .collect();
        let mut added = 0;
        for chunk in fresh.chunks(ADD_BATCH) {
            let args = Self::link_args(chunk)?;
            let prefix = &self.prefix;
            let script = &self.scripts.add;
            let n: i64 = self.call(|c| {
                let mut inv = script.prepare_invoke();
                inv.arg(prefix).arg(chunk.len());
                for a in &args {
                    inv.arg(a.as_slice());
                }
                inv.invoke(c)
            })?;
            added += n.max(0) as usize;
            for u in chunk {
                self.seen.insert(u.fp);
                if self.work.insert(u.record.host.clone()) {
                    self.woken.push(u.record.host.clone());
                }
            }
        }
        self.counters.known += added as u64;
        self.counters.queued += added as u64;
        Ok(added)
    }

    fn hosts_with_work(&self) -> Vec<String> {
        // The schedule is asked on the first `take_woken`.
        Vec::new()
    }

    fn has_work(&self, host: &str) -> bool {
        self.buffered.get(host).is_some_and(|q| !q.is_empty()) || self.work.contains(host)
    }

    fn take_woken(&mut self) -> Vec<String> {
        if let Err(e) = self.poll() {
            // The next round asks again; a Redis that stays away stops the crawl from the
            // calls that must succeed (lease, complete).
            tracing::debug!("polling the schedule: {e:#}");
        }
        std::mem::take(&mut self.woken)
    }

    fn lease(&mut self, host: &str) -> Result<Option<Lease>> {
        self.lease_polite(host, HostLimits::default())
    }

    fn lease_polite(&mut self, host: &str, limits: HostLimits) -> Result<Option<Lease>> {
        // Remembered so that a later call can lease this host's freed slots along with
        // another host's.
        if self.limits.get(host) != Some(&limits) {
            self.limits.insert(host.to_owned(), limits);
        }
        if let Some(l) = self.buffered.get_mut(host).and_then(|q| q.pop_front()) {
            return Ok(Some(l));
        }
        if self.share_full.contains(host)
            || self
                .not_before
                .get(host)
                .is_some_and(|t| *t > Instant::now())
        {
            return Ok(None);
        }
        self.fetch_leases(host, limits)?;
        Ok(self.buffered.get_mut(host).and_then(|q| q.pop_front()))
    }

    fn not_before(&self, host: &str) -> Option<Instant> {
        self.not_before.get(host).copied()
    }

    fn release(&mut self, lease: &Lease, attempts: u32) -> Result<()> {
        self.flush_completions()?;
        self.mine.remove(&lease.fp);
        self.share_full.remove(&lease.record.host);
        let mut record = lease.record.clone();
        record.attempts = attempts;
        let json = Self::record_json(&record)?;
        let (prefix, worker) = (&self.prefix, &self.worker);
        let script = &self.scripts.release;
        let fp = lease.fp;
        let r: i64 = self.call(|c| {
            {
                script
                    .prepare_invoke()
                    .arg(prefix)
                    .arg(worker)
                    .arg(fp.as_slice())
                    .arg(&json)
                    .arg(now_ms())
                    .invoke(c)
            }
        })?;
        if r < 0 {
            self.lost += 1;
            tracing::warn!(url = %lease.record.url, "this worker's lease had expired and went to another worker; not retried here");
        } else {
            self.counters.queued += 1;
            self.work.insert(lease.record.host.clone());
        }
        Ok(())
    }

    fn block_host(&mut self, host: &str, wait: Duration) -> Result<()> {
        self.flush_completions()?;
        let until = now_ms() + wait.as_millis() as u64;
        let prefix = &self.prefix;
        let script = &self.scripts.block;
        let _: i64 = self.call(|c| {
            {
                script
                    .prepare_invoke()
                    .arg(prefix)
                    .arg(host)
                    .arg(until)
                    .invoke(c)
            }
        })?;
        Ok(())
    }

    fn confirm(&mut self, lease: &Lease) -> Result<bool> {
        // A worker whose last heartbeat is less than half the lease lifetime old cannot have
        // lost the lease (unless the machines' clocks differ by that much): no round trip on
        // the hot path.
        let fresh = self
            .mine
            .get(&lease.fp)
            .is_some_and(|(_, renewed)| renewed.elapsed() < self.ttl / 2);
        if fresh {
            return Ok(true);
        }
        let sent = Instant::now();
        let (prefix, worker) = (&self.prefix, &self.worker);
        let script = &self.scripts.confirm;
        let fp = lease.fp;
        let held: i64 = self.call(|c| {
            {
                script
                    .prepare_invoke()
                    .arg(prefix)
                    .arg(worker)
                    .arg(now_ms())
                    .arg(fp.as_slice())
                    .invoke(c)
            }
        })?;
        if held == 1 {
            if let Some((_, renewed)) = self.mine.get_mut(&lease.fp) {
                *renewed = sent;
            }
        } else {
            self.mine.remove(&lease.fp);
            self.share_full.remove(&lease.record.host);
            self.lost += 1;
            tracing::warn!(
                url = %lease.record.url,
                "this worker's lease expired (it stalled past lease_ttl_s) and went to another worker: this page's items are not written here"
            );
        }
        Ok(held == 1)
    }

    fn complete_admitting(
        &mut self,
        lease: &Lease,
        done: Completion<'_>,
        admit: &mut dyn FnMut(&NewUrl) -> bool,
    ) -> Result<usize> {
        self.mine.remove(&lease.fp);
        // One of this worker's requests to the host ended: a slot of its share is free.
        self.share_full.remove(&lease.record.host);
        let links: Vec<NewUrl> = done
            .links
            .into_iter()
            .filter(|n| !self.seen.contains(&n.fp))
            .filter(|n| admit(n))
            .collect();
        let mut head: Vec<Vec<u8>> = vec![
            lease.fp.to_vec(),
            lease.record.host.as_bytes().to_vec(),
            match done.outcome {
                Outcome::Done => b"d".to_vec(),
                Outcome::Failed => b"f".to_vec(),
            },
            if done.counted_page { b"1" } else { b"0" }.to_vec(),
        ];
        let aliases: Vec<&Fingerprint> = done.aliases.iter().filter(|a| **a != lease.fp).collect();
        head.push(aliases.len().to_string().into_bytes());
        head.extend(aliases.iter().map(|a| a.to_vec()));
        // Counted now, so the page budget holds while the batch waits; undone if refused.
        match done.outcome {
            Outcome::Done => self.counters.done += 1,
            Outcome::Failed => self.counters.failed += 1,
        }
        if done.counted_page {
            self.counters.pages += 1;
            *self
                .host_pages
                .entry(lease.record.host.clone())
                .or_default() += 1;
        }
        let n = links.len();
        self.pending.push(PendingCompletion {
            fp: lease.fp,
            url: lease.record.url.clone(),
            host: lease.record.host.clone(),
            outcome: done.outcome,
            counted: done.counted_page,
            links,
            head,
        });
        self.pending_token = Some(done.sink_token.to_vec());
        if self.pending.len() >= COMPLETE_BATCH {
            self.flush_completions()?;
        }
        Ok(n)
    }

    fn host_pages(&self, host: &str) -> u64 {
        self.host_pages.get(host).copied().unwrap_or(0)
    }

    fn host_queued(&self, host: &str) -> u64 {
        let key = format!("{}q:{host}", self.prefix);
        let queued: Result<u64> = self.call(|c| redis::cmd("ZCARD").arg(&key).query(c));
        queued.unwrap_or(0)
    }

    fn largest_queues(&self, n: usize) -> Vec<(String, u64)> {
        let key = format!("{}hosts", self.prefix);
        let prefix = &self.prefix;
        let sizes: Result<Vec<(String, u64)>> = self.call(|c| {
            let hosts: Vec<String> = redis::cmd("ZRANGE").arg(&key).arg(0).arg(9_999).query(c)?;
            if hosts.is_empty() {
                return Ok(Vec::new());
            }
            let mut pipe = redis::pipe();
            for h in &hosts {
                pipe.cmd("ZCARD").arg(format!("{prefix}q:{h}"));
            }
            let counts: Vec<u64> = pipe.query(c)?;
            Ok(hosts.into_iter().zip(counts).collect())
        });
        let sizes = sizes.unwrap_or_default();
        super::largest(sizes.iter().map(|(h, q)| (h, *q)), n)
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn sink_token(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.token.clone())
    }

    fn state(&self, fp: &Fingerprint) -> Result<Option<UrlState>> {
        let (bucket, field) = Self::seen_field(fp);
        let key = format!("{}s:{bucket}", self.prefix);
        // Only this worker's leases are told apart from queued URLs.
        let lease = format!("{}l:{}", self.prefix, self.worker);
        let (mark, leased): (Option<String>, bool) = self.call(|c| {
            redis::pipe()
                .cmd("HGET")
                .arg(&key)
                .arg(&field)
                .cmd("HEXISTS")
                .arg(&lease)
                .arg(fp.as_slice())
                .query(c)
        })?;
        Ok(mark.map(|m| match m.as_str() {
            "d" | "a" => UrlState::Done,
            "f" => UrlState::Failed,
            _ if leased => UrlState::Leased,
            _ => UrlState::Queued,
        }))
    }

    fn is_known(&mut self, fp: &Fingerprint) -> Result<bool> {
        if self.seen.contains(fp) {
            return Ok(true);
        }
        self.flush_completions()?;
        let (bucket, field) = Self::seen_field(fp);
        let key = format!("{}s:{bucket}", self.prefix);
        let known: bool = self.call(|c| redis::cmd("HEXISTS").arg(&key).arg(&field).query(c))?;
        if known {
            self.seen.insert(*fp);
        }
        Ok(known)
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn checkpoint(&mut self, _synced_sink_token: &[u8]) -> Result<()> {
        self.flush_completions()
    }

    fn rewind_to_checkpoint(&mut self) -> Result<(u64, Option<Vec<u8>>)> {
        bail!(
            "this worker's output lost its unsynced tail (power failure or OS crash), and pages completed in the shared frontier cannot be given back from one worker; run this worker with a new output (and --worker name), or use a database output, whose item ids make re-crawled pages idempotent"
        )
    }

    fn tick(&mut self, stats: &dyn Fn() -> super::WorkerStats) -> Result<()> {
        self.flush_completions()?;
        // The stats are only built when a heartbeat carries them, not every round.
        if self.last_beat.is_none_or(|t| t.elapsed() >= BEAT) {
            self.stats = serde_json::to_string(&stats())?;
        }
        self.beat(false)
    }

    fn shared_work(&mut self) -> Result<bool> {
        self.flush_completions()?;
        let key = format!("{}counters", self.prefix);
        let (queued, leased): (Option<i64>, Option<i64>) = self.call(|c| {
            redis::cmd("HMGET")
                .arg(&key)
                .arg("queued")
                .arg("leased")
                .query(c)
        })?;
        // Leases of this worker still buffered count: the scheduler will start them.
        Ok(queued.unwrap_or(0) > 0 || leased.unwrap_or(0) > 0)
    }

    fn wake_at(&self) -> Option<Instant> {
        Some(self.last_poll.map_or_else(Instant::now, |t| t + POLL))
    }

    fn leases_lost(&self) -> u64 {
        self.lost
    }

    fn close(&mut self) -> Result<()> {
        // After a failed call (Redis gone for redis_wait_s, out of memory) nothing is sent:
        // the leases expire on their own.
        if self.failed.get() {
            return Ok(());
        }
        self.flush_completions()?;
        // Leases not completed (buffered, or in flight when the crawl stopped) go back now
        // rather than after their expiry, so the other workers take them at once.
        let held: Vec<Lease> = self.mine.values().map(|(l, _)| l.clone()).collect();
        for l in held {
            let attempts = l.record.attempts;
            self.release(&l, attempts)?;
        }
        self.buffered.clear();
        let key = format!("{}w:{}", self.prefix, self.worker);
        let now = now_ms();
        self.beat(true)?;
        // Out of `alive` at once, so the other workers' shares of each host grow now rather
        // than after the lease lifetime.
        let alive = format!("{}alive", self.prefix);
        let worker = &self.worker;
        let _: () = self.call(|c| {
            redis::pipe()
                .cmd("HSET")
                .arg(&key)
                .arg("stopped")
                .arg(now)
                .ignore()
                .cmd("ZREM")
                .arg(&alive)
                .arg(worker)
                .ignore()
                .query(c)
        })?;
        Ok(())
    }

    fn robots_store(&self) -> Option<std::sync::Arc<dyn crate::robots::RobotsStore>> {
        Some(self.robots.clone())
    }

    fn store_stats(&self) -> String {
        format!(
            "redis frontier {}: {} leases held, {} lost",
            self.conn.borrow().shown(),
            self.mine.len(),
            self.lost
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontier::keys::{HostId, QueueKey};

    /// A host's queue in Redis is ordered by these bytes (then the sequence): the same order
    /// as the fjall store's queue keys, so a crawl visits URLs in the same order on either.
    #[test]
    fn queue_order_matches_the_embedded_store() {
        let cases = [
            (5, 0),
            (5, 3),
            (0, 0),
            (0, 7),
            (-1, 0),
            (-1, 2),
            (i32::MAX, 9),
            (i32::MIN, 0),
        ];
        let mut by_redis: Vec<(i32, u32)> = cases.to_vec();
        by_redis.sort_by_key(|(p, d)| order(*p, *d));
        let mut by_fjall: Vec<(i32, u32)> = cases.to_vec();
        by_fjall.sort_by_key(|(p, d)| {
            QueueKey {
                host: HostId::of("h"),
                priority: *p,
                depth: *d,
                seq: 0,
            }
            .encode()
        });
        assert_eq!(by_redis, by_fjall);
        assert_eq!(
            by_redis.first(),
            Some(&(i32::MAX, 9)),
            "highest priority first"
        );
    }

    #[test]
    fn passwords_never_show() {
        use crate::sink::target::mask;
        assert_eq!(
            mask("redis://:s3cret@10.0.0.5:6379/0"),
            "redis://:***@10.0.0.5:6379/0"
        );
        assert_eq!(mask("redis://user:s3cret@h:1/2"), "redis://user:***@h:1/2");
        assert_eq!(mask("redis://h:6379/0"), "redis://h:6379/0");
        assert!(!mask("not a url :s3cret@").contains("s3cret"));
    }

    #[test]
    fn shared_crawl_settings_are_checked() {
        let cfg = |frontier: Option<&str>, id: Option<&str>, worker: Option<&str>| {
            crate::config::CrawlConfig {
                frontier: frontier.map(String::from),
                crawl_id: id.map(String::from),
                worker: worker.map(String::from),
                ..Default::default()
            }
            .check_shared()
            .map_err(|e| e.to_string())
        };
        assert!(cfg(None, None, None).is_ok());
        assert!(cfg(Some("redis://h:1/0"), Some("shop-2026.11"), Some("w:1")).is_ok());
        let err = |r: Result<(), String>| r.err().unwrap_or_default();
        assert!(err(cfg(Some("redis://h:1/0"), None, None)).contains("needs --crawl-id"));
        assert!(err(cfg(None, Some("x"), None)).contains("add --frontier"));
        assert!(err(cfg(Some("rediss://h:1/0"), Some("x"), None)).contains("TLS"));
        assert!(err(cfg(Some("postgres://h/db"), Some("x"), None)).contains("not a Redis URL"));
        assert!(err(cfg(Some("redis://h:1/0"), Some("a b"), None)).contains("--crawl-id"));
        assert!(
            err(cfg(Some("redis://h:1/0"), Some("x"), Some(&"w".repeat(65)))).contains("--worker")
        );
        let pw = err(cfg(Some("rediss://:s3cret@h:1/0"), Some("x"), None));
        assert!(!pw.contains("s3cret"), "{pw}");
    }
}
