//! The on-disk frontier: one fjall (LSM-tree) keyspace per crawl directory, laid out as
//! `keys.rs` says. It owns the store's files and its in-memory read-ahead; it must not fetch,
//! parse or decide scope.
//!
//! Each host keeps a small in-memory buffer of its next queue entries so leasing is one range
//! scan per 16 URLs.

use super::keys::{HostId, Key, Meta, QueueEntry, QueueKey, RecentEntry, UrlMark, decode_u64};
use super::{Completion, Counters, Frontier, Lease, NewUrl, Outcome, SeenCache, UrlState};
use crate::normalize::Fingerprint;
use anyhow::{Context as _, Result, anyhow, bail};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;

/// Bumped whenever the on-disk layout changes; a mismatch refuses to open.
pub const FORMAT_VERSION: u64 = 3;

/// Queue entries buffered per host; bounds memory at hosts x this.
const HOST_BUFFER: usize = 16;

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
    /// Next queue entries not in flight, read ahead from disk, in queue order.
    buf: VecDeque<Lease>,
    /// Entries at or after this key have not been read into `buf` yet.
    next: Option<Vec<u8>>,
    /// `buf` holds every entry of the host's queue that is not in flight: nothing is left to
    /// read from disk, and new entries go straight into `buf`. Most hosts of a broad crawl
    /// have a handful of URLs queued at a time; for them leasing never scans the store.
    complete: bool,
}

impl HostCursor {
    /// A cursor for a host with nothing queued but `first`.
    fn with(first: Lease) -> Self {
        HostCursor {
            buf: VecDeque::from([first]),
            next: None,
            complete: true,
        }
    }

    /// An entry that was just queued (new, released or re-queued) takes its place.
    fn add(&mut self, entry: Lease) {
        if !self.complete {
            self.rewind(&entry.queue);
            return;
        }
        let key = entry.queue.encode();
        let at = self.buf.partition_point(|l| l.queue.encode() < key);
        self.buf.insert(at, entry);
        if self.buf.len() > HOST_BUFFER
            && let Some(last) = self.buf.pop_back()
        {
            // Everything before the dropped entry is in `buf`, in flight or done.
            self.next = Some(last.queue.encode().to_vec());
            self.complete = false;
        }
    }

    /// Moves the read position back to `key` if it is earlier, forgetting the read-ahead
    /// buffer when `key` sorts inside it: order is decided by the store again.
    fn rewind(&mut self, key: &QueueKey) {
        let key = key.encode();
        if self
            .buf
            .back()
            .is_some_and(|last| key < last.queue.encode())
            && let Some(first) = self.buf.front()
        {
            let first = first.queue.encode().to_vec();
            self.buf.clear();
            self.next = Some(first);
        }
        if self.next.as_deref().is_some_and(|n| key.as_slice() < n) {
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
    host_queued: HashMap<String, u64>,
    host_pages: HashMap<String, u64>,
    /// Hosts whose name is already stored under `h`.
    known_hosts: HashSet<String>,
    cursors: HashMap<String, HostCursor>,
    /// Leased URLs (bounded by the crawl's concurrency).
    in_flight: HashSet<QueueKey>,
    /// `r` records below this sequence number were dropped at a checkpoint; scanning from
    /// here skips their tombstones.
    recent_from: u64,
    /// Fingerprints known to be in the store, for the links most pages repeat.
    seen: SeenCache,
    /// Hosts that gained work after having none, for `take_woken`.
    woken: Vec<String>,
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
            // fjall keeps up to 900 table files open by default: most of the usual soft
            // open-file limit of 1,024, which the fetch connections need.
            .max_cached_files(Some(crate::fetch::conns::STORE_FILES))
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

        let format_key = Key::Meta(Meta::Format).encode();
        match ks.get(&format_key)? {
            None => {
                if !ks.is_empty()? {
                    bail!(
                        "state directory {} has no format marker; it is not a sandcrawl state directory, use a fresh --state",
                        dir.display()
                    );
                }
                ks.insert(&format_key, FORMAT_VERSION.to_be_bytes())?;
            }
            Some(v) => {
                let found = decode_u64(&v).unwrap_or(u64::MAX);
                if found != FORMAT_VERSION {
                    bail!(
                        "state directory {} has format {found}, this sandcrawl writes format {FORMAT_VERSION}; use a fresh --state or the sandcrawl version that wrote it",
                        dir.display()
                    );
                }
            }
        }

        let counters = match ks.get(Key::Meta(Meta::Counters).encode())? {
            Some(v) => Counters::decode(&v).context("corrupt counters in state directory")?,
            None => Counters::default(),
        };
        let seq = match ks.get(Key::Meta(Meta::Seq).encode())? {
            Some(v) => decode_u64(&v).context("corrupt sequence number in state directory")?,
            None => 0,
        };
        let mut f = FjallFrontier {
            db,
            ks,
            counters,
            seq,
            host_queued: HashMap::new(),
            host_pages: HashMap::new(),
            known_hosts: HashSet::new(),
            cursors: HashMap::new(),
            in_flight: HashSet::new(),
            recent_from: 0,
            seen: SeenCache::default(),
            woken: Vec::new(),
        };
        f.load_hosts()?;
        Ok(f)
    }

    /// Rebuilds the per-host counts. URLs that were in flight when the last run stopped
    /// are still in their queues, so they are counted as queued again.
    fn load_hosts(&mut self) -> Result<()> {
        let mut queued = 0;
        let hosts: Vec<(HostId, String)> = self
            .ks
            .prefix(Key::HOSTS)
            .map(|g| {
                let (k, v) = g.into_inner()?;
                Ok((Key::host_of(&k)?, String::from_utf8_lossy(&v).into_owned()))
            })
            .collect::<Result<_>>()?;
        for (id, name) in hosts {
            let mut n = 0u64;
            for g in self.ks.prefix(QueueKey::prefix(id)) {
                g.key()?;
                n += 1;
            }
            if n > 0 {
                self.host_queued.insert(name.clone(), n);
                queued += n;
            }
            if let Some(c) = self.ks.get(Key::HostPages(id).encode())? {
                self.host_pages.insert(name.clone(), decode_u64(&c)?);
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

    /// One more queued URL for `host`; a host that had none is reported by `take_woken`.
    fn inc_host(&mut self, host: &str) {
        match self.host_queued.get_mut(host) {
            Some(n) => *n += 1,
            None => {
                self.host_queued.insert(host.to_owned(), 1);
                self.woken.push(host.to_owned());
            }
        }
    }

    /// An entry that is on disk now (in the batch being built): counted, and placed in its
    /// host's read-ahead when the cursor has everything else.
    fn queued(&mut self, entry: Lease) {
        let host = entry.record.host.clone();
        let had_work = self.host_queued.contains_key(&host);
        self.inc_host(&host);
        match self.cursors.get_mut(&host) {
            Some(c) => c.add(entry),
            // Nothing of this host is queued outside the leases in flight, so `entry` is
            // all there is to read.
            None if !had_work => {
                self.cursors.insert(host, HostCursor::with(entry));
            }
            None => {}
        }
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
            if self.ks.contains_key(Key::Url(fp).encode())? {
                self.seen.insert(fp);
                continue;
            }
            // Refused URLs stay unknown: proposed again later, they are asked about again.
            if !admit(&new) {
                continue;
            }
            self.seen.insert(fp);
            let NewUrl { fp, record } = new;
            let host = HostId::of(&record.host);
            self.seq += 1;
            let qk = QueueKey {
                host,
                priority: record.priority,
                depth: record.depth,
                seq: self.seq,
            };
            if !self.known_hosts.contains(&record.host) {
                batch.insert(&self.ks, Key::Host(host).encode(), record.host.as_bytes());
                self.known_hosts.insert(record.host.clone());
            }
            let entry = QueueEntry { fp, record };
            batch.insert(&self.ks, qk.encode(), entry.encode()?);
            self.queued(Lease {
                fp,
                record: entry.record,
                queue: qk,
            });
            batch.insert(&self.ks, Key::Url(fp).encode(), UrlMark::Queued.byte());
            added += 1;
        }
        if added > 0 {
            self.counters.known += added as u64;
            self.counters.queued += added as u64;
            batch.insert(
                &self.ks,
                Key::Meta(Meta::Seq).encode(),
                self.seq.to_be_bytes(),
            );
        }
        Ok(added)
    }

    /// Persisted counters count in-flight URLs as queued: that is what they are on disk.
    fn stage_counters(&self, batch: &mut fjall::OwnedWriteBatch) {
        let mut c = self.counters;
        c.queued += self.in_flight.len() as u64;
        batch.insert(&self.ks, Key::Meta(Meta::Counters).encode(), c.encode());
    }

    /// Reads the next entries of `host`'s queue that are not in flight, from the host's
    /// read position on.
    fn refill(&mut self, host: &str) -> Result<()> {
        let prefix = QueueKey::prefix(HostId::of(host));
        let cursor = self.cursors.entry(host.to_owned()).or_default();
        let start = cursor.next.clone().unwrap_or_else(|| prefix.to_vec());
        // Unbounded above: the scan stops at the first key outside the host's prefix.
        let range = self.ks.range(start..);
        let mut last: Option<Vec<u8>> = None;
        let mut complete = true;
        for g in range {
            let (raw_key, value) = g.into_inner()?;
            if !raw_key.starts_with(&prefix) {
                break;
            }
            last = Some(raw_key.to_vec());
            let queue = QueueKey::decode(&raw_key)?;
            if self.in_flight.contains(&queue) {
                continue;
            }
            let QueueEntry { fp, record } = QueueEntry::decode(&value)?;
            cursor.buf.push_back(Lease { fp, record, queue });
            if cursor.buf.len() == HOST_BUFFER {
                complete = false;
                break;
            }
        }
        cursor.complete = complete;
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
            .range(Key::Recent(self.recent_from).encode()..Key::recent_end())
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
        let mut hosts: Vec<String> = self.host_queued.keys().cloned().collect();
        hosts.sort();
        hosts
    }

    fn has_work(&self, host: &str) -> bool {
        self.host_queued.contains_key(host)
    }

    fn host_queued(&self, host: &str) -> u64 {
        self.host_queued.get(host).copied().unwrap_or(0)
    }

    fn largest_queues(&self, n: usize) -> Vec<(String, u64)> {
        super::largest(self.host_queued.iter().map(|(h, q)| (h, *q)), n)
    }

    fn take_woken(&mut self) -> Vec<String> {
        std::mem::take(&mut self.woken)
    }

    fn lease(&mut self, host: &str) -> Result<Option<Lease>> {
        if !self.host_queued.contains_key(host) {
            return Ok(None);
        }
        // A complete cursor with an empty buffer has nothing on disk either, and then the
        // host has no count: the check above returned.
        if self.cursors.get(host).is_none_or(|c| c.buf.is_empty()) {
            self.refill(host)?;
        }
        let Some(lease) = self.cursors.get_mut(host).and_then(|c| c.buf.pop_front()) else {
            // The counts said work, the disk says none: trust the disk.
            self.host_queued.remove(host);
            self.cursors.remove(host);
            return Ok(None);
        };
        self.in_flight.insert(lease.queue);
        self.counters.queued = self.counters.queued.saturating_sub(1);
        self.dec_host(host);
        Ok(Some(lease))
    }

    fn release(&mut self, lease: &Lease, attempts: u32) -> Result<()> {
        if !self.in_flight.remove(&lease.queue) {
            return Ok(());
        }
        let mut record = lease.record.clone();
        record.attempts = attempts;
        let entry = QueueEntry {
            fp: lease.fp,
            record,
        };
        self.ks.insert(lease.queue.encode(), entry.encode()?)?;
        self.counters.queued += 1;
        // The released URL takes its place in order again.
        self.queued(Lease {
            fp: entry.fp,
            record: entry.record,
            queue: lease.queue,
        });
        Ok(())
    }

    fn complete_admitting(
        &mut self,
        lease: &Lease,
        done: Completion<'_>,
        admit: &mut dyn FnMut(&NewUrl) -> bool,
    ) -> Result<usize> {
        let Completion {
            outcome,
            counted_page,
            aliases,
            links,
            sink_token,
        } = done;
        let mut batch = self.db.batch();
        for a in aliases.iter().filter(|a| **a != lease.fp) {
            batch.insert(&self.ks, Key::Url(*a).encode(), UrlMark::Alias.byte());
            self.seen.insert(*a);
        }
        batch.remove(&self.ks, lease.queue.encode());
        let mark = match outcome {
            Outcome::Done => UrlMark::Done,
            Outcome::Failed => UrlMark::Failed,
        };
        batch.insert(&self.ks, Key::Url(lease.fp).encode(), mark.byte());
        match outcome {
            Outcome::Done => self.counters.done += 1,
            Outcome::Failed => self.counters.failed += 1,
        }
        if counted_page {
            self.counters.pages += 1;
            let host = &lease.record.host;
            let n = self.host_pages.entry(host.clone()).or_default();
            *n += 1;
            batch.insert(
                &self.ks,
                Key::HostPages(HostId::of(host)).encode(),
                n.to_be_bytes(),
            );
        }
        let added = self.stage_new(&mut batch, links, admit)?;
        let mut record = lease.record.clone();
        record.aliases = aliases.iter().map(hex::encode).collect();
        let recent = RecentEntry {
            counted: counted_page,
            queue: lease.queue,
            entry: QueueEntry {
                fp: lease.fp,
                record,
            },
        };
        self.seq += 1;
        batch.insert(&self.ks, Key::Recent(self.seq).encode(), recent.encode()?);
        batch.insert(
            &self.ks,
            Key::Meta(Meta::Seq).encode(),
            self.seq.to_be_bytes(),
        );
        batch.insert(&self.ks, Key::Meta(Meta::Sink).encode(), sink_token);
        self.in_flight.remove(&lease.queue);
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
        Ok(self
            .ks
            .get(Key::Meta(Meta::Sink).encode())?
            .map(|v| v.to_vec()))
    }

    fn is_known(&mut self, fp: &Fingerprint) -> Result<bool> {
        if self.seen.contains(fp) {
            return Ok(true);
        }
        let known = self.ks.contains_key(Key::Url(*fp).encode())?;
        if known {
            self.seen.insert(*fp);
        }
        Ok(known)
    }

    fn state(&self, fp: &Fingerprint) -> Result<Option<UrlState>> {
        let Some(raw) = self.ks.get(Key::Url(*fp).encode())? else {
            return Ok(None);
        };
        Ok(Some(match UrlMark::decode(&raw)? {
            UrlMark::Done | UrlMark::Alias => UrlState::Done,
            UrlMark::Failed => UrlState::Failed,
            UrlMark::Queued => {
                let leased = self.in_flight.iter().any(|qk| {
                    self.ks
                        .get(qk.encode())
                        .ok()
                        .flatten()
                        .and_then(|v| QueueEntry::fp_of(&v))
                        == Some(*fp)
                });
                if leased {
                    UrlState::Leased
                } else {
                    UrlState::Queued
                }
            }
        }))
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
        batch.insert(
            &self.ks,
            Key::Meta(Meta::Synced).encode(),
            synced_sink_token,
        );
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
            let RecentEntry {
                counted,
                queue,
                entry: QueueEntry { fp, mut record },
            } = RecentEntry::decode(&v)?;
            // The URLs its redirects reached are unknown again: the page's refetch claims them.
            for a in std::mem::take(&mut record.aliases) {
                if let Ok(raw) = hex::decode(&a)
                    && let Ok(alias) = Fingerprint::try_from(raw.as_slice())
                {
                    batch.remove(&self.ks, Key::Url(alias).encode());
                }
            }
            match self
                .ks
                .get(Key::Url(fp).encode())?
                .map(|m| UrlMark::decode(&m))
                .transpose()?
            {
                Some(UrlMark::Done) => self.counters.done = self.counters.done.saturating_sub(1),
                Some(UrlMark::Failed) => {
                    self.counters.failed = self.counters.failed.saturating_sub(1)
                }
                // Already queued again (a retry recorded twice): nothing to undo.
                _ => continue,
            }
            if counted {
                self.counters.pages = self.counters.pages.saturating_sub(1);
                let n = self.host_pages.entry(record.host.clone()).or_default();
                *n = n.saturating_sub(1);
                batch.insert(
                    &self.ks,
                    Key::HostPages(HostId::of(&record.host)).encode(),
                    n.to_be_bytes(),
                );
            }
            batch.insert(&self.ks, Key::Url(fp).encode(), UrlMark::Queued.byte());
            let entry = QueueEntry { fp, record };
            batch.insert(&self.ks, queue.encode(), entry.encode()?);
            self.counters.queued += 1;
            self.queued(Lease {
                fp,
                record: entry.record,
                queue,
            });
            requeued += 1;
        }
        let synced = self
            .ks
            .get(Key::Meta(Meta::Synced).encode())?
            .map(|v| v.to_vec());
        match &synced {
            Some(t) => batch.insert(&self.ks, Key::Meta(Meta::Sink).encode(), t.clone()),
            None => batch.remove(&self.ks, Key::Meta(Meta::Sink).encode()),
        }
        self.stage_counters(&mut batch);
        batch.commit()?;
        self.flush()?;
        Ok((requeued, synced))
    }

    fn store_stats(&self) -> String {
        format!(
            "write buffer {:.1} MB, block cache {:.1} MB, {} tables, {} sealed memtables, journal {:.1} MB",
            self.db.write_buffer_size() as f64 / 1e6,
            self.db.cache_size() as f64 / 1e6,
            self.ks.table_count(),
            self.ks.sealed_memtable_count(),
            self.db.journal_disk_space().unwrap_or(0) as f64 / 1e6,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontier::{UrlKind, UrlRecord};

    fn new_url(url: &str, host: &str, prio: i32, depth: u32) -> NewUrl {
        let u = url::Url::parse(url).unwrap();
        NewUrl {
            fp: crate::normalize::fingerprint(&u),
            record: UrlRecord::new(url.into(), host.into(), depth, prio, UrlKind::Page),
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
                Completion::new(Outcome::Done, b"tok")
                    .page()
                    .links(vec![new_url("http://a/9", "a", 7, 3)]),
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
            f.complete(&l, Completion::new(Outcome::Done, b"t").page())
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
        f.complete(&first, Completion::new(Outcome::Done, b"one").page())
            .unwrap();
        f.checkpoint(b"one").unwrap();
        let second = f.lease("a").unwrap().unwrap();
        f.complete(
            &second,
            Completion::new(Outcome::Done, b"two")
                .page()
                .links(vec![new_url("http://a/new", "a", 0, 1)]),
        )
        .unwrap();
        let third = f.lease("a").unwrap().unwrap();
        f.complete(&third, Completion::new(Outcome::Failed, b"three"))
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
            f.complete(&l, Completion::new(Outcome::Done, b"t").page())
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

    /// A host whose read-ahead holds all its queue takes new, released and overflowing
    /// entries in queue order, exactly as a scan of the store would give them.
    #[test]
    fn a_complete_read_ahead_takes_new_entries_in_queue_order() {
        let dir = tempdir();
        let mut f = FjallFrontier::open(&dir).unwrap();
        f.add(vec![new_url("http://a/first", "a", 0, 0)]).unwrap();
        let first = f.lease("a").unwrap().unwrap();
        // 40 entries (more than the read-ahead holds) in an order that is not queue order.
        let mut urls = Vec::new();
        for i in 0..40 {
            let prio = i * 7 % 5;
            urls.push(new_url(&format!("http://a/{i}"), "a", prio, 1));
        }
        f.complete(&first, Completion::new(Outcome::Done, b"t").links(urls))
            .unwrap();
        let l = f.lease("a").unwrap().unwrap();
        f.release(&l, 1).unwrap();
        let mut got = Vec::new();
        while let Some(l) = f.lease("a").unwrap() {
            got.push((l.record.priority, l.record.url.clone()));
        }
        assert_eq!(got.len(), 40);
        let mut want = got.clone();
        // Higher priority first; within one priority, discovery order (numeric here).
        want.sort_by_key(|(p, u)| {
            (
                -p,
                u.trim_start_matches("http://a/")
                    .parse::<u32>()
                    .unwrap_or(0),
            )
        });
        assert_eq!(got, want);
        std::fs::remove_dir_all(&dir).ok();
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
