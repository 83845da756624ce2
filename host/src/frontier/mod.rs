//! The URL frontier and dedup store: which URLs are known, which wait, which are in
//! flight, done or failed, behind the [`Frontier`] trait the crawl scheduler works through.
//!
//! [`FjallFrontier`] keeps it on disk (fjall, an LSM-tree, key layout in `keys.rs`), so
//! memory does not grow with the number of URLs; [`MemoryFrontier`] keeps it in memory, for
//! tests and short crawls that need no resume. Every change the scheduler makes for one page
//! ("page done + its new links + the sink's committed position") is one atomic call. This
//! module must not fetch, parse or decide scope; it stores what the scheduler decided.
//!
//! Leases live in memory only. A leased URL stays in its queue on disk until the batch that
//! completes it removes it, so after a crash every URL that was in flight is simply still
//! queued: recovery needs no work, and leasing writes nothing.

mod fjall;
pub mod keys;
mod memory;
pub mod redis;

pub use self::fjall::{FjallFrontier, MARKER};
pub use self::redis::{RedisFrontier, RedisTarget};
pub use memory::MemoryFrontier;

use crate::normalize::Fingerprint;
use anyhow::{Result, bail};
use keys::QueueKey;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UrlState {
    Queued,
    Leased,
    Done,
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UrlKind {
    Page,
    Download,
}

/// Everything known about a queued URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlRecord {
    pub url: String,
    pub host: String,
    pub depth: u32,
    pub priority: i32,
    pub kind: UrlKind,
    pub referrer: Option<String>,
    pub metadata: Option<String>,
    /// The plugin that proposed it (download records are attributed to it).
    pub proposer: Option<String>,
    pub attempts: u32,
    /// In a record of a recent completion only: fingerprints (hex) of the URLs its redirects
    /// led to, marked known with it and unmarked if the completion is undone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Method, headers and body, for a request that is more than a plain GET (WIT 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<crate::fetch::RequestSpec>,
}

impl UrlRecord {
    /// A URL new to the crawl: no referrer, metadata, proposer, attempts or aliases yet.
    pub fn new(url: String, host: String, depth: u32, priority: i32, kind: UrlKind) -> Self {
        UrlRecord {
            url,
            host,
            depth,
            priority,
            kind,
            referrer: None,
            metadata: None,
            proposer: None,
            attempts: 0,
            aliases: Vec::new(),
            request: None,
        }
    }
}

/// A URL the crawl wants queued (in scope; `fp` is its normalized form's fingerprint).
#[derive(Debug, Clone)]
pub struct NewUrl {
    pub fp: Fingerprint,
    pub record: UrlRecord,
}

/// A leased URL: in flight until completed or released.
#[derive(Debug, Clone)]
pub struct Lease {
    pub fp: Fingerprint,
    pub record: UrlRecord,
    /// Where the URL sits in its host's queue (the store's own key).
    pub(crate) queue: QueueKey,
}

impl Lease {
    /// A lease held by no store: for code that only reads one (tests, `replay`).
    pub(crate) fn detached(fp: Fingerprint, record: UrlRecord) -> Self {
        Lease {
            queue: QueueKey {
                host: keys::HostId::of(&record.host),
                priority: record.priority,
                depth: record.depth,
                seq: 0,
            },
            fp,
            record,
        }
    }
}

/// How a leased URL ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed,
}

/// Counters persisted with every commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub known: u64,
    /// Waiting in a queue (not in flight).
    pub queued: u64,
    pub done: u64,
    pub failed: u64,
    /// Page fetches counted against `max_pages` (downloads excluded).
    pub pages: u64,
}

impl Counters {
    pub(crate) fn encode(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        for (i, v) in [self.known, self.queued, self.done, self.failed, self.pages]
            .iter()
            .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    pub(crate) fn decode(raw: &[u8]) -> Result<Self> {
        if raw.len() != 40 {
            bail!("counters record has {} bytes, expected 40", raw.len());
        }
        let n = |i: usize| u64::from_be_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        Ok(Counters {
            known: n(0),
            queued: n(1),
            done: n(2),
            failed: n(3),
            pages: n(4),
        })
    }
}

/// How a leased URL ends, and everything that is committed with it in one atomic step.
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    pub outcome: Outcome,
    /// Counts against `max_pages` and `max_pages_per_host`.
    pub counted_page: bool,
    /// Fingerprints of the URLs its redirects reached: marked known with it, and unmarked
    /// if the completion is undone.
    pub aliases: &'a [Fingerprint],
    /// Links to queue (already normalized and in scope).
    pub links: Vec<NewUrl>,
    /// The sink's position once this page's items are written.
    pub sink_token: &'a [u8],
}

impl<'a> Completion<'a> {
    pub fn new(outcome: Outcome, sink_token: &'a [u8]) -> Self {
        Completion {
            outcome,
            counted_page: false,
            aliases: &[],
            links: Vec::new(),
            sink_token,
        }
    }

    /// Counts as a fetched page.
    pub fn page(mut self) -> Self {
        self.counted_page = true;
        self
    }

    pub fn links(mut self, links: Vec<NewUrl>) -> Self {
        self.links = links;
        self
    }

    pub fn aliases(mut self, aliases: &'a [Fingerprint]) -> Self {
        self.aliases = aliases;
        self
    }
}

/// A host's politeness as this worker's config and robots.txt set it: a store shared by
/// several workers enforces it across all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    pub per_host: usize,
    pub delay: Duration,
}

impl Default for HostLimits {
    fn default() -> Self {
        HostLimits {
            per_host: 1,
            delay: Duration::ZERO,
        }
    }
}

/// What a worker reports about itself to a shared store (`sandcrawl status`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WorkerStats {
    pub pages: u64,
    pub items: u64,
    pub errors: u64,
    pub pages_per_s: f64,
    pub in_flight: usize,
    pub pid: u32,
}

/// The store behind the crawl scheduler. Shaped so that a shared, multi-process
/// implementation (Redis with lease expiry) can slot in: leases are explicit, completion is
/// one call that carries the new links and the sink's commit token, and the scheduler learns
/// which hosts gained work from [`Frontier::take_woken`] instead of scanning every host.
pub trait Frontier: Send {
    /// Queues URLs not seen before; returns how many were new.
    fn add(&mut self, urls: Vec<NewUrl>) -> Result<usize>;
    /// Every host that has queued URLs not in flight. O(hosts): for the start of a crawl.
    fn hosts_with_work(&self) -> Vec<String>;
    /// Whether `host` has queued URLs not in flight.
    fn has_work(&self, host: &str) -> bool;
    /// Hosts that had no queued URL and gained one (new links, a release, a rewind) since
    /// the last call. A host with work is reported again only after it ran out.
    fn take_woken(&mut self) -> Vec<String>;
    /// Takes the next URL of `host` (priority, then depth, then discovery order).
    fn lease(&mut self, host: &str) -> Result<Option<Lease>>;
    /// Puts a leased URL back (retry later, or shutdown), recording its attempts.
    fn release(&mut self, lease: &Lease, attempts: u32) -> Result<()>;
    /// Finishes a leased URL as `done` says, atomically. Returns how many links were new.
    fn complete(&mut self, lease: &Lease, done: Completion<'_>) -> Result<usize> {
        self.complete_admitting(lease, done, &mut |_| true)
    }
    /// `complete`, asking `admit` about each link that is new to the store (never about
    /// one it already knows), so that rules counting distinct URLs cost no extra lookup.
    fn complete_admitting(
        &mut self,
        lease: &Lease,
        done: Completion<'_>,
        admit: &mut dyn FnMut(&NewUrl) -> bool,
    ) -> Result<usize>;
    /// Pages fetched from `host` so far (for `max_pages_per_host`).
    fn host_pages(&self, host: &str) -> u64;
    /// URLs of `host` queued and not in flight.
    fn host_queued(&self, host: &str) -> u64;
    /// The `n` hosts with the most queued URLs, largest first (the status page's table;
    /// O(hosts), asked once a second at most and only with `--listen`).
    fn largest_queues(&self, n: usize) -> Vec<(String, u64)>;
    fn counters(&self) -> Counters;
    /// The sink token stored by the last `complete`.
    fn sink_token(&self) -> Result<Option<Vec<u8>>>;
    /// What the store knows about a URL.
    fn state(&self, fp: &Fingerprint) -> Result<Option<UrlState>>;
    /// Whether the URL was ever queued or reached (cheaper than `state`).
    fn is_known(&mut self, fp: &Fingerprint) -> Result<bool>;
    /// Makes everything so far durable.
    fn flush(&self) -> Result<()>;
    /// Called after the sink has been fsynced at `synced_sink_token`: every page completed so
    /// far has its items on disk, so the record of recent completions is dropped, and the
    /// store is flushed.
    fn checkpoint(&mut self, synced_sink_token: &[u8]) -> Result<()>;
    /// Undoes every completion since the last checkpoint: those pages go back to their queues.
    /// Used when the items file lost its unsynced tail (power failure) while the store, which
    /// may sync on its own schedule, kept the completions. Returns how many pages were
    /// re-queued and the sink token of the last checkpoint (None: no checkpoint yet).
    fn rewind_to_checkpoint(&mut self) -> Result<(u64, Option<Vec<u8>>)>;
    /// What the store holds in memory and on disk, for benchmarks and debug logs.
    fn store_stats(&self) -> String {
        String::new()
    }

    // What a store shared by several workers (Redis) needs on top; the local stores keep
    // the defaults, under which nothing changes.

    /// `lease`, with this worker's politeness for the host, which a shared store enforces
    /// over every worker (a `None` may then mean "not yet": see `not_before`).
    fn lease_polite(&mut self, host: &str, _limits: HostLimits) -> Result<Option<Lease>> {
        self.lease(host)
    }
    /// When a host that has work may be asked again (another worker holds its slots).
    fn not_before(&self, _host: &str) -> Option<Instant> {
        None
    }
    /// No request to `host` starts before `wait` has passed (Retry-After, back-off), in any
    /// worker.
    fn block_host(&mut self, _host: &str, _wait: Duration) -> Result<()> {
        Ok(())
    }
    /// Whether this worker still holds `lease` (renewed if so). Asked right before a page's
    /// items are written: a lease that expired and went to another worker writes nothing.
    fn confirm(&mut self, _lease: &Lease) -> Result<bool> {
        Ok(true)
    }
    /// Called every scheduler round: a shared store renews leases and reports the worker.
    /// `stats` is asked only when the store reports the worker.
    fn tick(&mut self, _stats: &dyn Fn() -> WorkerStats) -> Result<()> {
        Ok(())
    }
    /// Whether other workers still have URLs queued or in flight (this one must wait for
    /// the links they may add rather than end the crawl).
    fn shared_work(&mut self) -> Result<bool> {
        Ok(false)
    }
    /// When the scheduler should look at the store again even if nothing happens locally.
    fn wake_at(&self) -> Option<Instant> {
        None
    }
    /// Leases that expired under this worker and went to another.
    fn leases_lost(&self) -> u64 {
        0
    }
    /// Where robots.txt answers are shared with the crawl's other workers.
    fn robots_store(&self) -> Option<std::sync::Arc<dyn crate::robots::RobotsStore>> {
        None
    }
    /// The crawl ends in this worker: leases it still holds go back to their queues.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The `n` largest of `sizes`, largest first, ties by name.
pub(crate) fn largest<'a>(
    sizes: impl Iterator<Item = (&'a String, u64)>,
    n: usize,
) -> Vec<(String, u64)> {
    let mut all: Vec<(&String, u64)> = sizes.filter(|(_, q)| *q > 0).collect();
    let by_size = |a: &(&String, u64), b: &(&String, u64)| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0));
    if all.len() > n && n > 0 {
        all.select_nth_unstable_by(n - 1, by_size);
    }
    all.truncate(n);
    all.sort_by(by_size);
    all.into_iter().map(|(h, q)| (h.clone(), q)).collect()
}

/// Fingerprints recently found in the store or written to it (the frontier's use), or any
/// other set of fingerprints that only grows (the engine's cache of raw link strings).
///
/// Most links a page proposes are already known (on the benchmark site, 96 % of them:
/// navigation, related products), and asking the LSM-tree each time was 10 % of a crawl's CPU.
/// The seen set only ever grows, so a cached "known" never goes stale. Two generations of at
/// most `SEEN_CACHE` entries each keep the memory bounded (about 1.5 MB) at any crawl size: when
/// the young one fills, the old one is dropped, and a hit in the old one is promoted.
#[derive(Default)]
pub(crate) struct SeenCache {
    young: HashSet<Fingerprint>,
    old: HashSet<Fingerprint>,
}

const SEEN_CACHE: usize = 32 * 1024;

impl SeenCache {
    pub(crate) fn contains(&mut self, fp: &Fingerprint) -> bool {
        if self.young.contains(fp) {
            return true;
        }
        if self.old.remove(fp) {
            self.insert(*fp);
            return true;
        }
        false
    }

    pub(crate) fn insert(&mut self, fp: Fingerprint) {
        if self.young.len() >= SEEN_CACHE {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(fp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_cache_stays_bounded_and_keeps_what_is_used() {
        let fp = |n: u32| {
            let mut f = [0u8; 16];
            f[..4].copy_from_slice(&n.to_be_bytes());
            f
        };
        let mut c = SeenCache::default();
        c.insert(fp(0));
        for n in 1..(3 * SEEN_CACHE as u32) {
            c.insert(fp(n));
            // A fingerprint in use keeps being found, so it is never evicted.
            assert!(c.contains(&fp(0)), "lost a hot entry at {n}");
        }
        assert!(c.young.len() + c.old.len() <= 2 * SEEN_CACHE);
        assert!(
            !c.contains(&fp(1)),
            "a cold entry from two generations ago is gone"
        );
        assert!(!c.contains(&fp(u32::MAX)));
    }
}
