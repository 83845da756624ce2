//! The URL frontier and dedup store: which URLs are known, which wait, which are in
//! flight, done or failed. Lives on disk (fjall, an LSM-tree), so memory does not grow with
//! the number of URLs.
//!
//! Everything sits in one keyspace with key prefixes, and every change the engine makes for
//! one page ("page done + its new links + the sink's committed offset") is one atomic batch.
//! This module must not fetch, parse or decide scope; it stores what the engine decided.
//!
//! Key layout (all integers big-endian, so the store's byte order is the crawl order):
//! - `u` fp(16)                                   -> state byte: 0 queued, 1 done, 2 failed
//! - `q` host(8) prio(4) depth(4) seq(8)          -> fp(16) + [`UrlRecord`] JSON (per-host queues)
//! - `h` host(8)                                  -> host name
//! - `c` host(8)                                  -> pages fetched from that host (u64)
//! - `r` seq(8)                                   -> counted(1) + queue key(25) + fp(16) + [`UrlRecord`]
//!   JSON: pages completed since the last checkpoint, in case the items file loses its
//!   unsynced tail in a power failure (see [`Frontier::rewind_to_checkpoint`])
//! - `m` name                                     -> metadata (format version, counters, sink
//!   tokens: `sink` = committed, `synced` = fsynced at the last checkpoint)
//!
//! Leases live in memory only. A leased URL stays in its queue on disk until the batch that
//! completes it removes it, so after a crash every URL that was in flight is simply still
//! queued: recovery needs no work, and leasing writes nothing. Each host keeps a small
//! in-memory buffer of its next queue entries so leasing is one range scan per 16 URLs.

use crate::normalize::Fingerprint;
use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::Path;

/// Bumped whenever the on-disk layout changes; a mismatch refuses to open.
pub const FORMAT_VERSION: u64 = 3;

/// The `u` value of a URL that was reached by another URL's redirect and done with it.
const ALIAS: u8 = 3;

/// Queue entries buffered per host; bounds memory at hosts x this.
const HOST_BUFFER: usize = 16;

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
}

/// A URL the engine wants queued (already normalized and in scope).
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
    queue_key: Vec<u8>,
}

#[cfg(test)]
impl Lease {
    /// A lease for tests of code that only reads one (nothing is in flight in a store).
    pub(crate) fn detached(fp: Fingerprint, record: UrlRecord) -> Self {
        Lease {
            fp,
            record,
            queue_key: Vec::new(),
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
    fn encode(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        for (i, v) in [self.known, self.queued, self.done, self.failed, self.pages]
            .iter()
            .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_be_bytes());
        }
        out
    }

    fn decode(raw: &[u8]) -> Result<Self> {
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

/// The store behind the engine. Shaped so that a shared, multi-process implementation
/// (Redis with lease expiry) can slot in: leases are explicit, completion is one call that
/// carries the new links and the sink's commit token, and hosts with work are enumerable.
pub trait Frontier: Send {
    /// Queues URLs not seen before; returns how many were new.
    fn add(&mut self, urls: Vec<NewUrl>) -> Result<usize>;
    /// Hosts that have queued URLs not in flight.
    fn hosts_with_work(&self) -> Vec<String>;
    /// Takes the next URL of `host` (priority, then depth, then discovery order).
    fn lease(&mut self, host: &str) -> Result<Option<Lease>>;
    /// Puts a leased URL back (retry later, or shutdown), recording its attempts.
    fn release(&mut self, lease: &Lease, attempts: u32) -> Result<()>;
    /// Finishes a leased URL, marks the URLs its redirects reached (`aliases`) as known,
    /// queues its new links and records the sink's commit token, atomically. Returns how
    /// many links were new.
    fn complete(
        &mut self,
        lease: &Lease,
        outcome: Outcome,
        counted_page: bool,
        aliases: &[Fingerprint],
        links: Vec<NewUrl>,
        sink_token: &[u8],
    ) -> Result<usize> {
        self.complete_admitting(
            lease,
            outcome,
            counted_page,
            aliases,
            links,
            &mut |_| true,
            sink_token,
        )
    }
    /// `complete`, asking `admit` about each link that is new to the store (never about
    /// one it already knows), so that rules counting distinct URLs cost no extra lookup.
    #[allow(clippy::too_many_arguments)]
    fn complete_admitting(
        &mut self,
        lease: &Lease,
        outcome: Outcome,
        counted_page: bool,
        aliases: &[Fingerprint],
        links: Vec<NewUrl>,
        admit: &mut dyn FnMut(&NewUrl) -> bool,
        sink_token: &[u8],
    ) -> Result<usize>;
    /// Pages fetched from `host` so far (for `max_pages_per_host`).
    fn host_pages(&self, host: &str) -> u64;
    fn counters(&self) -> Counters;
    /// The sink token stored by the last `complete`.
    fn sink_token(&self) -> Result<Option<Vec<u8>>>;
    /// What the store knows about a URL.
    fn state(&self, fp: &Fingerprint) -> Result<Option<UrlState>>;
    /// Whether the URL was ever queued or reached (cheaper than `state`).
    fn is_known(&mut self, fp: &Fingerprint) -> Result<bool>;
    /// Makes everything so far durable on disk.
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
}

/// The file that says "this is a sandcrawl state directory, format N".
pub const MARKER: &str = "sandcrawl-state.json";
/// Refuses directories that are not ours or are from another format, before anything in
/// them is opened (opening a foreign database could rewrite it).
fn check_marker(dir: &Path) -> Result<()> {
    let marker = dir.join(MARKER);
    match std::fs::read(&marker) {
        Ok(raw) => {
            let v: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
            let found = v.get("format").and_then(|f| f.as_u64());
            if found != Some(FORMAT_VERSION) {
                bail!(
                    "state directory {} has format {}, this sandcrawl writes format {FORMAT_VERSION}; use a fresh --state or the sandcrawl version that wrote it",
                    dir.display(),
                    found.map_or("unknown".to_owned(), |f| f.to_string())
                );
            }
            Ok(())
        }
        Err(_) => {
            let non_empty = std::fs::read_dir(dir)
                .map(|mut d| d.next().is_some())
                .unwrap_or(false);
            if non_empty {
                bail!(
                    "{} is not empty and is not a sandcrawl state directory (no {MARKER}); use a fresh --state",
                    dir.display()
                );
            }
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create state directory {}", dir.display()))?;
            let doc = serde_json::json!({ "format": FORMAT_VERSION, "written_by": format!("sandcrawl {}", env!("CARGO_PKG_VERSION")) });
            std::fs::write(&marker, serde_json::to_vec_pretty(&doc)?)
                .with_context(|| format!("cannot write {}", marker.display()))?;
            Ok(())
        }
    }
}

fn host_hash(host: &str) -> [u8; 8] {
    let d = Sha256::digest(host.as_bytes());
    let mut h = [0u8; 8];
    h.copy_from_slice(&d[..8]);
    h
}

fn key(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

fn queue_key(host: &[u8; 8], priority: i32, depth: u32, seq: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(25);
    k.push(b'q');
    k.extend_from_slice(host);
    // Higher priority first: invert, and flip the sign bit so negatives sort after positives.
    let p = !((priority as u32) ^ 0x8000_0000);
    k.extend_from_slice(&p.to_be_bytes());
    k.extend_from_slice(&depth.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Memory the store may use, whatever the number of URLs: the block cache plus the
/// memtable. Bloom filters and index blocks of the on-disk tables come on top and grow by
/// about a byte per known URL (measured in BENCHMARKS.md §3).
const CACHE_BYTES: u64 = 8 * 1024 * 1024;
const MEMTABLE_BYTES: u64 = 4 * 1024 * 1024;
const TABLE_BYTES: u64 = 8 * 1024 * 1024;

/// Per-host read position, so leasing never re-reads the head of a queue. A log-structured
/// store keeps deleted entries as tombstones until compaction; scanning from the start of a
/// busy host's queue would walk every URL already done.
#[derive(Default)]
struct HostCursor {
    /// Next queue entries not in flight, read ahead from disk.
    buf: VecDeque<Lease>,
    /// Entries at or after this key have not been read into `buf` yet.
    next: Option<Vec<u8>>,
}

impl HostCursor {
    /// Moves the read position back to `key` if it is earlier, forgetting the read-ahead
    /// buffer when `key` sorts inside it: order is decided by the store again.
    fn rewind(&mut self, key: &[u8]) {
        if self
            .buf
            .back()
            .is_some_and(|last| key < last.queue_key.as_slice())
            && let Some(first) = self.buf.front()
        {
            let first = first.queue_key.clone();
            self.buf.clear();
            self.next = Some(first);
        }
        if self.next.as_deref().is_some_and(|n| key < n) {
            self.next = Some(key.to_vec());
        }
    }
}

/// The frontier of one crawl directory, in a fjall (LSM-tree) keyspace.
///
/// Why an LSM-tree: the frontier's writes are appends (new URLs) and deletes (done URLs),
/// and an LSM-tree turns both into sequential journal writes, with memory bounded by its
/// cache and memtable. sled 0.34, which held this first, keeps per-page state in memory and
/// grew to 1 GB at 600k URLs (BENCHMARKS.md §3).
pub struct FjallFrontier {
    db: fjall::Database,
    ks: fjall::Keyspace,
    counters: Counters,
    seq: u64,
    /// Queued entries not in flight, per host; bounded by the number of hosts, not URLs.
    host_queued: BTreeMap<String, u64>,
    host_pages: BTreeMap<String, u64>,
    /// Hosts whose name is already stored under `h`.
    known_hosts: HashSet<String>,
    cursors: HashMap<String, HostCursor>,
    /// Queue keys of leased URLs (bounded by the crawl's concurrency).
    in_flight: HashSet<Vec<u8>>,
    /// `r` records below this sequence number were dropped at a checkpoint; scanning from
    /// here skips their tombstones.
    recent_from: u64,
    /// Fingerprints known to be in the store, for the links most pages repeat.
    seen: SeenCache,
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

fn store_err(dir: &Path, e: fjall::Error) -> anyhow::Error {
    match e {
        fjall::Error::Locked => anyhow!(
            "state directory {} is in use by another sandcrawl process; wait for it or use another --state",
            dir.display()
        ),
        other => anyhow!(
            "cannot open state directory {}: {other:?}; if it was written by another sandcrawl version, use a fresh --state",
            dir.display()
        ),
    }
}

impl FjallFrontier {
    /// Opens (or creates) the store in `dir`. Leased URLs from an interrupted run go back to
    /// their queues.
    pub fn open(dir: &Path) -> Result<Self> {
        check_marker(dir)?;
        let db = fjall::Database::builder(dir.join("frontier"))
            .cache_size(CACHE_BYTES)
            .open()
            .map_err(|e| store_err(dir, e))?;
        let ks = db
            .keyspace("frontier", || {
                fjall::KeyspaceCreateOptions::default()
                    .max_memtable_size(MEMTABLE_BYTES)
                    // Compaction buffers a table's key hashes for its bloom filter; smaller
                    // tables keep that transient memory small.
                    .compaction_strategy(std::sync::Arc::new(
                        fjall::compaction::Leveled::default().with_table_target_size(TABLE_BYTES),
                    ))
            })
            .map_err(|e| store_err(dir, e))?;

        match ks.get(key(b'm', b"format"))? {
            None => {
                if !ks.is_empty()? {
                    bail!(
                        "state directory {} has no format marker; it is not a sandcrawl state directory, use a fresh --state",
                        dir.display()
                    );
                }
                ks.insert(key(b'm', b"format"), FORMAT_VERSION.to_be_bytes())?;
            }
            Some(v) => {
                let found = u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0xff; 8]));
                if found != FORMAT_VERSION {
                    bail!(
                        "state directory {} has format {found}, this sandcrawl writes format {FORMAT_VERSION}; use a fresh --state or the sandcrawl version that wrote it",
                        dir.display()
                    );
                }
            }
        }

        let counters = match ks.get(key(b'm', b"counters"))? {
            Some(v) => Counters::decode(&v).context("corrupt counters in state directory")?,
            None => Counters::default(),
        };
        let seq = match ks.get(key(b'm', b"seq"))? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().unwrap_or([0; 8])),
            None => 0,
        };
        let mut f = FjallFrontier {
            db,
            ks,
            counters,
            seq,
            host_queued: BTreeMap::new(),
            host_pages: BTreeMap::new(),
            known_hosts: HashSet::new(),
            cursors: HashMap::new(),
            in_flight: HashSet::new(),
            recent_from: 0,
            seen: SeenCache::default(),
        };
        f.load_hosts()?;
        Ok(f)
    }

    /// What the store holds in memory and on disk, for benchmarks and debug logs.
    pub fn store_stats(&self) -> String {
        format!(
            "write buffer {:.1} MB, block cache {:.1} MB, {} tables, {} sealed memtables, journal {:.1} MB",
            self.db.write_buffer_size() as f64 / 1e6,
            self.db.cache_size() as f64 / 1e6,
            self.ks.table_count(),
            self.ks.sealed_memtable_count(),
            self.db.journal_disk_space().unwrap_or(0) as f64 / 1e6,
        )
    }

    /// Rebuilds the per-host counts. URLs that were in flight when the last run stopped
    /// are still in their queues, so they are counted as queued again.
    fn load_hosts(&mut self) -> Result<()> {
        let mut queued = 0;
        let hosts: Vec<(Vec<u8>, String)> = self
            .ks
            .prefix([b'h'])
            .map(|g| {
                let (k, v) = g.into_inner()?;
                Ok((k.to_vec(), String::from_utf8_lossy(&v).into_owned()))
            })
            .collect::<Result<_, fjall::Error>>()?;
        for (hk, name) in hosts {
            let mut n = 0u64;
            for g in self.ks.prefix(key(b'q', &hk[1..])) {
                g.key()?;
                n += 1;
            }
            if n > 0 {
                self.host_queued.insert(name.clone(), n);
                queued += n;
            }
            if let Some(c) = self.ks.get(key(b'c', &hk[1..]))? {
                self.host_pages.insert(
                    name.clone(),
                    u64::from_be_bytes(c.as_ref().try_into().unwrap_or([0; 8])),
                );
            }
            self.known_hosts.insert(name);
        }
        if queued > self.counters.queued {
            tracing::info!(
                requeued = queued - self.counters.queued,
                "URLs that were in flight at the last stop are queued again"
            );
        }
        self.counters.queued = queued;
        Ok(())
    }

    fn stage_new(
        &mut self,
        batch: &mut fjall::OwnedWriteBatch,
        urls: Vec<NewUrl>,
        admit: &mut dyn FnMut(&NewUrl) -> bool,
    ) -> Result<usize> {
        let mut added = 0;
        let mut in_batch: HashSet<Fingerprint> = HashSet::new();
        for new in urls {
            let fp = new.fp;
            if !in_batch.insert(fp) || self.seen.contains(&fp) {
                continue;
            }
            if self.ks.contains_key(key(b'u', &fp))? {
                self.seen.insert(fp);
                continue;
            }
            // Refused URLs stay unknown: proposed again later, they are asked about again.
            if !admit(&new) {
                continue;
            }
            self.seen.insert(fp);
            let NewUrl { fp, record } = new;
            let hh = host_hash(&record.host);
            self.seq += 1;
            let qk = queue_key(&hh, record.priority, record.depth, self.seq);
            if let Some(c) = self.cursors.get_mut(&record.host) {
                c.rewind(&qk);
            }
            let mut value = fp.to_vec();
            serde_json::to_writer(&mut value, &record)?;
            batch.insert(&self.ks, qk, value);
            batch.insert(&self.ks, key(b'u', &fp), [0u8]);
            if !self.known_hosts.contains(&record.host) {
                batch.insert(&self.ks, key(b'h', &hh), record.host.as_bytes());
                self.known_hosts.insert(record.host.clone());
            }
            *self.host_queued.entry(record.host).or_default() += 1;
            added += 1;
        }
        if added > 0 {
            self.counters.known += added as u64;
            self.counters.queued += added as u64;
            batch.insert(&self.ks, key(b'm', b"seq"), self.seq.to_be_bytes());
        }
        Ok(added)
    }

    /// Persisted counters count in-flight URLs as queued: that is what they are on disk.
    fn stage_counters(&self, batch: &mut fjall::OwnedWriteBatch) {
        let mut c = self.counters;
        c.queued += self.in_flight.len() as u64;
        batch.insert(&self.ks, key(b'm', b"counters"), c.encode());
    }

    /// Reads the next entries of `host`'s queue that are not in flight, from the host's
    /// read position on.
    fn refill(&mut self, host: &str) -> Result<()> {
        let prefix = key(b'q', &host_hash(host));
        let cursor = self.cursors.entry(host.to_owned()).or_default();
        let start = cursor.next.clone().unwrap_or_else(|| prefix.clone());
        // Unbounded above: the scan stops at the first key outside the host's prefix.
        let range = self.ks.range(start..);
        let mut last: Option<Vec<u8>> = None;
        for g in range {
            let (qk, value) = g.into_inner()?;
            if !qk.starts_with(&prefix) {
                break;
            }
            last = Some(qk.to_vec());
            if self.in_flight.contains(qk.as_ref()) {
                continue;
            }
            if value.len() < 16 {
                bail!("frontier: corrupt queue entry");
            }
            let fp: Fingerprint = value[..16]
                .try_into()
                .map_err(|_| anyhow!("frontier: corrupt queue entry"))?;
            let record: UrlRecord =
                serde_json::from_slice(&value[16..]).context("frontier: corrupt queue record")?;
            cursor.buf.push_back(Lease {
                fp,
                record,
                queue_key: qk.to_vec(),
            });
            if cursor.buf.len() == HOST_BUFFER {
                break;
            }
        }
        // Everything up to `last` is buffered, in flight or gone; the next read starts just
        // after it (appending a zero byte gives the smallest key above it).
        if let Some(mut l) = last {
            l.push(0);
            cursor.next = Some(l);
        }
        Ok(())
    }

    /// The records of pages completed since the last checkpoint.
    fn recent(&self) -> fjall::Iter {
        self.ks
            .range(key(b'r', &self.recent_from.to_be_bytes())..key(b's', &[]))
    }

    fn dec_host(&mut self, host: &str) {
        if let Some(n) = self.host_queued.get_mut(host) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.host_queued.remove(host);
                self.cursors.remove(host);
            }
        }
    }
}

impl Frontier for FjallFrontier {
    fn add(&mut self, urls: Vec<NewUrl>) -> Result<usize> {
        let mut batch = self.db.batch();
        let added = self.stage_new(&mut batch, urls, &mut |_| true)?;
        self.stage_counters(&mut batch);
        batch.commit()?;
        Ok(added)
    }

    fn hosts_with_work(&self) -> Vec<String> {
        self.host_queued.keys().cloned().collect()
    }

    fn lease(&mut self, host: &str) -> Result<Option<Lease>> {
        if !self.host_queued.contains_key(host) {
            return Ok(None);
        }
        if self.cursors.get(host).is_none_or(|c| c.buf.is_empty()) {
            self.refill(host)?;
        }
        let Some(lease) = self.cursors.get_mut(host).and_then(|c| c.buf.pop_front()) else {
            // The counts said work, the disk says none: trust the disk.
            self.host_queued.remove(host);
            self.cursors.remove(host);
            return Ok(None);
        };
        self.in_flight.insert(lease.queue_key.clone());
        self.counters.queued = self.counters.queued.saturating_sub(1);
        self.dec_host(host);
        Ok(Some(lease))
    }

    fn release(&mut self, lease: &Lease, attempts: u32) -> Result<()> {
        if !self.in_flight.remove(&lease.queue_key) {
            return Ok(());
        }
        let mut record = lease.record.clone();
        record.attempts = attempts;
        let mut value = lease.fp.to_vec();
        serde_json::to_writer(&mut value, &record)?;
        self.ks.insert(lease.queue_key.clone(), value)?;
        self.counters.queued += 1;
        *self.host_queued.entry(record.host.clone()).or_default() += 1;
        // The released URL takes its place in order again.
        self.cursors
            .entry(record.host.clone())
            .or_default()
            .rewind(&lease.queue_key);
        Ok(())
    }

    fn complete_admitting(
        &mut self,
        lease: &Lease,
        outcome: Outcome,
        counted_page: bool,
        aliases: &[Fingerprint],
        links: Vec<NewUrl>,
        admit: &mut dyn FnMut(&NewUrl) -> bool,
        sink_token: &[u8],
    ) -> Result<usize> {
        let mut batch = self.db.batch();
        for a in aliases.iter().filter(|a| **a != lease.fp) {
            batch.insert(&self.ks, key(b'u', a), [ALIAS]);
            self.seen.insert(*a);
        }
        batch.remove(&self.ks, lease.queue_key.clone());
        let state: u8 = match outcome {
            Outcome::Done => 1,
            Outcome::Failed => 2,
        };
        batch.insert(&self.ks, key(b'u', &lease.fp), [state]);
        match outcome {
            Outcome::Done => self.counters.done += 1,
            Outcome::Failed => self.counters.failed += 1,
        }
        if counted_page {
            self.counters.pages += 1;
            let host = &lease.record.host;
            let n = self.host_pages.entry(host.clone()).or_default();
            *n += 1;
            batch.insert(&self.ks, key(b'c', &host_hash(host)), n.to_be_bytes());
        }
        let added = self.stage_new(&mut batch, links, admit)?;
        let mut recent = Vec::with_capacity(1 + lease.queue_key.len() + 16 + 256);
        recent.push(u8::from(counted_page));
        recent.extend_from_slice(&lease.queue_key);
        recent.extend_from_slice(&lease.fp);
        if aliases.is_empty() {
            serde_json::to_writer(&mut recent, &lease.record)?;
        } else {
            let mut record = lease.record.clone();
            record.aliases = aliases.iter().map(hex::encode).collect();
            serde_json::to_writer(&mut recent, &record)?;
        }
        self.seq += 1;
        batch.insert(&self.ks, key(b'r', &self.seq.to_be_bytes()), recent);
        batch.insert(&self.ks, key(b'm', b"seq"), self.seq.to_be_bytes());
        batch.insert(&self.ks, key(b'm', b"sink"), sink_token);
        self.in_flight.remove(&lease.queue_key);
        self.stage_counters(&mut batch);
        // Committing hands the batch to the OS (a `write`), so a killed process keeps it;
        // `flush` makes it survive power loss.
        batch.commit()?;
        Ok(added)
    }

    fn host_pages(&self, host: &str) -> u64 {
        self.host_pages.get(host).copied().unwrap_or(0)
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn sink_token(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.ks.get(key(b'm', b"sink"))?.map(|v| v.to_vec()))
    }

    fn is_known(&mut self, fp: &Fingerprint) -> Result<bool> {
        if self.seen.contains(fp) {
            return Ok(true);
        }
        let known = self.ks.contains_key(key(b'u', fp))?;
        if known {
            self.seen.insert(*fp);
        }
        Ok(known)
    }

    fn state(&self, fp: &Fingerprint) -> Result<Option<UrlState>> {
        Ok(match self.ks.get(key(b'u', fp))?.as_deref() {
            None => None,
            Some([1]) | Some([ALIAS]) => Some(UrlState::Done),
            Some([2]) => Some(UrlState::Failed),
            Some(_) => {
                let leased = self.in_flight.iter().any(|qk| {
                    self.ks
                        .get(qk)
                        .ok()
                        .flatten()
                        .is_some_and(|v| v.get(..16) == Some(&fp[..]))
                });
                Some(if leased {
                    UrlState::Leased
                } else {
                    UrlState::Queued
                })
            }
        })
    }

    fn flush(&self) -> Result<()> {
        self.db
            .persist(fjall::PersistMode::SyncAll)
            .context("flushing the frontier to disk")?;
        Ok(())
    }

    fn checkpoint(&mut self, synced_sink_token: &[u8]) -> Result<()> {
        let mut batch = self.db.batch();
        for g in self.recent() {
            batch.remove(&self.ks, g.key()?);
        }
        batch.insert(&self.ks, key(b'm', b"synced"), synced_sink_token);
        batch.commit()?;
        self.recent_from = self.seq + 1;
        self.flush()
    }

    fn rewind_to_checkpoint(&mut self) -> Result<(u64, Option<Vec<u8>>)> {
        let recent: Vec<(Vec<u8>, Vec<u8>)> = self
            .recent()
            .map(|g| {
                let (k, v) = g.into_inner()?;
                Ok((k.to_vec(), v.to_vec()))
            })
            .collect::<Result<_, fjall::Error>>()?;
        let mut batch = self.db.batch();
        let mut requeued = 0u64;
        for (rk, v) in recent {
            batch.remove(&self.ks, rk);
            if v.len() < 1 + 25 + 16 {
                bail!("frontier: corrupt record of a recent completion");
            }
            let counted = v[0] == 1;
            let qk = v[1..26].to_vec();
            let entry = v[26..].to_vec();
            let fp: Fingerprint = entry[..16]
                .try_into()
                .map_err(|_| anyhow!("frontier: corrupt record of a recent completion"))?;
            let mut record: UrlRecord = serde_json::from_slice(&entry[16..])
                .context("frontier: corrupt record of a recent completion")?;
            // The URLs its redirects reached are unknown again: the page's refetch claims them.
            for a in std::mem::take(&mut record.aliases) {
                if let Ok(raw) = hex::decode(&a)
                    && raw.len() == 16
                {
                    batch.remove(&self.ks, key(b'u', &raw));
                }
            }
            let entry = {
                let mut e = fp.to_vec();
                serde_json::to_writer(&mut e, &record)?;
                e
            };
            match self.ks.get(key(b'u', &fp))?.as_deref() {
                Some([1]) => self.counters.done = self.counters.done.saturating_sub(1),
                Some([2]) => self.counters.failed = self.counters.failed.saturating_sub(1),
                // Already queued again (a retry recorded twice): nothing to undo.
                _ => continue,
            }
            if counted {
                self.counters.pages = self.counters.pages.saturating_sub(1);
                let n = self.host_pages.entry(record.host.clone()).or_default();
                *n = n.saturating_sub(1);
                batch.insert(
                    &self.ks,
                    key(b'c', &host_hash(&record.host)),
                    n.to_be_bytes(),
                );
            }
            batch.insert(&self.ks, key(b'u', &fp), [0u8]);
            batch.insert(&self.ks, qk.clone(), entry);
            self.counters.queued += 1;
            *self.host_queued.entry(record.host.clone()).or_default() += 1;
            if let Some(c) = self.cursors.get_mut(&record.host) {
                c.rewind(&qk);
            }
            requeued += 1;
        }
        let synced = self.ks.get(key(b'm', b"synced"))?.map(|v| v.to_vec());
        match &synced {
            Some(t) => batch.insert(&self.ks, key(b'm', b"sink"), t.clone()),
            None => batch.remove(&self.ks, key(b'm', b"sink")),
        }
        self.stage_counters(&mut batch);
        batch.commit()?;
        self.flush()?;
        Ok((requeued, synced))
    }
}

#[cfg(test)]
mod tests {
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

    use super::*;

    fn new_url(url: &str, host: &str, prio: i32, depth: u32) -> NewUrl {
        let u = url::Url::parse(url).unwrap();
        NewUrl {
            fp: crate::normalize::fingerprint(&u),
            record: UrlRecord {
                url: url.into(),
                host: host.into(),
                depth,
                priority: prio,
                kind: UrlKind::Page,
                referrer: None,
                metadata: None,
                proposer: None,
                attempts: 0,
                aliases: Vec::new(),
            },
        }
    }

    #[test]
    fn dedup_order_lease_and_recovery() {
        let dir = tempdir();
        {
            let mut f = FjallFrontier::open(&dir).unwrap();
            let added = f
                .add(vec![
                    new_url("http://a/1", "a", 0, 1),
                    new_url("http://a/2", "a", 0, 0),
                    new_url("http://a/3", "a", 5, 2),
                    new_url("http://a/1", "a", 0, 1),
                    new_url("http://b/1", "b", -3, 0),
                ])
                .unwrap();
            assert_eq!(added, 4);
            assert_eq!(f.hosts_with_work(), ["a", "b"]);
            // Priority first, then depth (breadth-first).
            let l = f.lease("a").unwrap().unwrap();
            assert_eq!(l.record.url, "http://a/3");
            let l2 = f.lease("a").unwrap().unwrap();
            assert_eq!(l2.record.url, "http://a/2");
            assert_eq!(f.state(&l2.fp).unwrap(), Some(UrlState::Leased));
            // A higher-priority discovery jumps the read-ahead buffer.
            f.complete(
                &l,
                Outcome::Done,
                true,
                &[],
                vec![new_url("http://a/9", "a", 7, 3)],
                b"tok",
            )
            .unwrap();
            assert_eq!(f.state(&l.fp).unwrap(), Some(UrlState::Done));
            assert_eq!(f.sink_token().unwrap().unwrap(), b"tok");
            assert_eq!(f.host_pages("a"), 1);
            assert_eq!(f.counters().queued, 3);
            f.flush().unwrap();
            // l2 stays leased: a crash now must give it back.
        }
        let mut f = FjallFrontier::open(&dir).unwrap();
        let c = f.counters();
        assert_eq!((c.known, c.done, c.queued), (5, 1, 4));
        let mut got = Vec::new();
        while let Some(l) = f.lease("a").unwrap() {
            got.push(l.record.url.clone());
            f.complete(&l, Outcome::Done, true, &[], vec![], b"t")
                .unwrap();
        }
        assert_eq!(got, ["http://a/9", "http://a/2", "http://a/1"]);
        assert_eq!(f.host_pages("a"), 4);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn rewind_to_checkpoint_requeues_only_pages_completed_since() {
        let dir = tempdir();
        let mut f = FjallFrontier::open(&dir).unwrap();
        f.add(
            (0..4)
                .map(|i| new_url(&format!("http://a/{i}"), "a", 0, 0))
                .collect(),
        )
        .unwrap();
        let first = f.lease("a").unwrap().unwrap();
        f.complete(&first, Outcome::Done, true, &[], vec![], b"one")
            .unwrap();
        f.checkpoint(b"one").unwrap();
        let second = f.lease("a").unwrap().unwrap();
        f.complete(
            &second,
            Outcome::Done,
            true,
            &[],
            vec![new_url("http://a/new", "a", 0, 1)],
            b"two",
        )
        .unwrap();
        let third = f.lease("a").unwrap().unwrap();
        f.complete(&third, Outcome::Failed, false, &[], vec![], b"three")
            .unwrap();
        drop(f);

        let mut f = FjallFrontier::open(&dir).unwrap();
        assert_eq!(f.sink_token().unwrap().unwrap(), b"three");
        let (requeued, synced) = f.rewind_to_checkpoint().unwrap();
        assert_eq!((requeued, synced.as_deref()), (2, Some(&b"one"[..])));
        assert_eq!(f.sink_token().unwrap().unwrap(), b"one");
        let c = f.counters();
        assert_eq!(
            (c.known, c.done, c.failed, c.pages, c.queued),
            (5, 1, 0, 1, 4)
        );
        assert_eq!(f.host_pages("a"), 1);
        assert_eq!(f.state(&first.fp).unwrap(), Some(UrlState::Done));
        assert_eq!(f.state(&second.fp).unwrap(), Some(UrlState::Queued));
        // Back in their original order, ahead of the deeper link the second page found.
        let order: Vec<String> = std::iter::from_fn(|| {
            let l = f.lease("a").unwrap()?;
            f.complete(&l, Outcome::Done, true, &[], vec![], b"t")
                .unwrap();
            Some(l.record.url)
        })
        .collect();
        assert_eq!(
            order,
            ["http://a/1", "http://a/2", "http://a/3", "http://a/new"]
        );
        // Nothing left to undo after a rewind and a checkpoint.
        f.checkpoint(b"t").unwrap();
        assert_eq!(f.rewind_to_checkpoint().unwrap().0, 0);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_state_directory_in_use_is_refused() {
        let dir = tempdir();
        let first = FjallFrontier::open(&dir).unwrap();
        let err = FjallFrontier::open(&dir).err().unwrap().to_string();
        assert!(err.contains("in use by another sandcrawl process"), "{err}");
        drop(first);
        assert!(FjallFrontier::open(&dir).is_ok(), "free again once closed");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn released_urls_keep_their_place_and_attempts() {
        let dir = tempdir();
        let mut f = FjallFrontier::open(&dir).unwrap();
        f.add(vec![
            new_url("http://a/1", "a", 0, 0),
            new_url("http://a/2", "a", 0, 1),
        ])
        .unwrap();
        let l = f.lease("a").unwrap().unwrap();
        f.release(&l, 2).unwrap();
        let again = f.lease("a").unwrap().unwrap();
        assert_eq!(again.record.url, "http://a/1");
        assert_eq!(again.record.attempts, 2);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn refuses_other_format_versions_and_foreign_dirs() {
        let dir = tempdir();
        drop(FjallFrontier::open(&dir).unwrap());
        std::fs::write(dir.join(MARKER), br#"{"format": 99}"#).unwrap();
        let err = FjallFrontier::open(&dir).err().unwrap().to_string();
        assert!(err.contains("format 99"), "{err}");
        std::fs::remove_dir_all(&dir).ok();

        let foreign = tempdir();
        std::fs::write(foreign.join("notes.txt"), b"mine").unwrap();
        let err = FjallFrontier::open(&foreign).err().unwrap().to_string();
        assert!(err.contains("not a sandcrawl state directory"), "{err}");
        assert_eq!(
            std::fs::read_dir(&foreign).unwrap().count(),
            1,
            "nothing was written"
        );
        std::fs::remove_dir_all(&foreign).ok();
    }

    fn tempdir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "sandcrawl-frontier-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
