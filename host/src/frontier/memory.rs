//! An in-memory [`Frontier`]: the same contract as the on-disk store, without a disk. For
//! scheduler tests and tools; a crawl that must resume uses [`super::FjallFrontier`]. It
//! must not fetch, parse or decide scope.

use super::keys::{HostId, QueueEntry, QueueKey, RecentEntry};
use super::{Completion, Counters, Frontier, Lease, NewUrl, Outcome, UrlState};
use crate::normalize::Fingerprint;
use anyhow::Result;
use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Queued,
    Done,
    Failed,
    Alias,
}

#[derive(Default)]
pub struct MemoryFrontier {
    marks: HashMap<Fingerprint, Mark>,
    /// Per host, queued entries not in flight, in crawl order (the encoded key sorts so).
    queues: HashMap<String, BTreeMap<[u8; 25], (QueueKey, QueueEntry)>>,
    in_flight: HashMap<QueueKey, QueueEntry>,
    host_pages: HashMap<String, u64>,
    counters: Counters,
    seq: u64,
    woken: Vec<String>,
    sink: Option<Vec<u8>>,
    synced: Option<Vec<u8>>,
    /// Completions since the last checkpoint, with the aliases they marked.
    recent: Vec<(RecentEntry, Vec<Fingerprint>)>,
}

impl MemoryFrontier {
    pub fn new() -> Self {
        Self::default()
    }

    fn enqueue(&mut self, queue: QueueKey, entry: QueueEntry) {
        let host = entry.record.host.clone();
        let q = self.queues.entry(host.clone()).or_default();
        if q.is_empty() {
            self.woken.push(host);
        }
        q.insert(queue.encode(), (queue, entry));
        self.counters.queued += 1;
    }

    fn stage_new(&mut self, urls: Vec<NewUrl>, admit: &mut dyn FnMut(&NewUrl) -> bool) -> usize {
        let mut added = 0;
        for new in urls {
            if self.marks.contains_key(&new.fp) || !admit(&new) {
                continue;
            }
            self.marks.insert(new.fp, Mark::Queued);
            self.seq += 1;
            let queue = QueueKey {
                host: HostId::of(&new.record.host),
                priority: new.record.priority,
                depth: new.record.depth,
                seq: self.seq,
            };
            self.enqueue(
                queue,
                QueueEntry {
                    fp: new.fp,
                    record: new.record,
                },
            );
            self.counters.known += 1;
            added += 1;
        }
        added
    }
}

impl Frontier for MemoryFrontier {
    fn add(&mut self, urls: Vec<NewUrl>) -> Result<usize> {
        Ok(self.stage_new(urls, &mut |_| true))
    }

    fn hosts_with_work(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self
            .queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(h, _)| h.clone())
            .collect();
        hosts.sort();
        hosts
    }

    fn has_work(&self, host: &str) -> bool {
        self.queues.get(host).is_some_and(|q| !q.is_empty())
    }

    fn take_woken(&mut self) -> Vec<String> {
        std::mem::take(&mut self.woken)
    }

    fn lease(&mut self, host: &str) -> Result<Option<Lease>> {
        let Some((_, (queue, entry))) = self.queues.get_mut(host).and_then(|q| q.pop_first())
        else {
            return Ok(None);
        };
        self.counters.queued = self.counters.queued.saturating_sub(1);
        self.in_flight.insert(queue, entry.clone());
        Ok(Some(Lease {
            fp: entry.fp,
            record: entry.record,
            queue,
        }))
    }

    fn release(&mut self, lease: &Lease, attempts: u32) -> Result<()> {
        if let Some(mut entry) = self.in_flight.remove(&lease.queue) {
            entry.record.attempts = attempts;
            self.enqueue(lease.queue, entry);
        }
        Ok(())
    }

    fn complete_admitting(
        &mut self,
        lease: &Lease,
        done: Completion<'_>,
        admit: &mut dyn FnMut(&NewUrl) -> bool,
    ) -> Result<usize> {
        self.in_flight.remove(&lease.queue);
        for a in done.aliases.iter().filter(|a| **a != lease.fp) {
            self.marks.insert(*a, Mark::Alias);
        }
        let (mark, counter) = match done.outcome {
            Outcome::Done => (Mark::Done, &mut self.counters.done),
            Outcome::Failed => (Mark::Failed, &mut self.counters.failed),
        };
        *counter += 1;
        self.marks.insert(lease.fp, mark);
        if done.counted_page {
            self.counters.pages += 1;
            *self
                .host_pages
                .entry(lease.record.host.clone())
                .or_default() += 1;
        }
        let added = self.stage_new(done.links, admit);
        self.recent.push((
            RecentEntry {
                counted: done.counted_page,
                queue: lease.queue,
                entry: QueueEntry {
                    fp: lease.fp,
                    record: lease.record.clone(),
                },
            },
            done.aliases.to_vec(),
        ));
        self.sink = Some(done.sink_token.to_vec());
        Ok(added)
    }

    fn host_pages(&self, host: &str) -> u64 {
        self.host_pages.get(host).copied().unwrap_or(0)
    }

    fn host_queued(&self, host: &str) -> u64 {
        self.queues.get(host).map_or(0, |q| q.len() as u64)
    }

    fn largest_queues(&self, n: usize) -> Vec<(String, u64)> {
        super::largest(self.queues.iter().map(|(h, q)| (h, q.len() as u64)), n)
    }

    fn counters(&self) -> Counters {
        self.counters
    }

    fn sink_token(&self) -> Result<Option<Vec<u8>>> {
        Ok(self.sink.clone())
    }

    fn state(&self, fp: &Fingerprint) -> Result<Option<UrlState>> {
        Ok(self.marks.get(fp).map(|m| match m {
            Mark::Done | Mark::Alias => UrlState::Done,
            Mark::Failed => UrlState::Failed,
            Mark::Queued if self.in_flight.values().any(|e| e.fp == *fp) => UrlState::Leased,
            Mark::Queued => UrlState::Queued,
        }))
    }

    fn is_known(&mut self, fp: &Fingerprint) -> Result<bool> {
        Ok(self.marks.contains_key(fp))
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn checkpoint(&mut self, synced_sink_token: &[u8]) -> Result<()> {
        self.recent.clear();
        self.synced = Some(synced_sink_token.to_vec());
        Ok(())
    }

    fn rewind_to_checkpoint(&mut self) -> Result<(u64, Option<Vec<u8>>)> {
        let mut requeued = 0;
        for (r, aliases) in std::mem::take(&mut self.recent).into_iter().rev() {
            for a in aliases.iter().filter(|a| **a != r.entry.fp) {
                self.marks.remove(a);
            }
            match self.marks.get(&r.entry.fp) {
                Some(Mark::Done) => self.counters.done = self.counters.done.saturating_sub(1),
                Some(Mark::Failed) => self.counters.failed = self.counters.failed.saturating_sub(1),
                _ => continue,
            }
            if r.counted {
                self.counters.pages = self.counters.pages.saturating_sub(1);
                if let Some(n) = self.host_pages.get_mut(&r.entry.record.host) {
                    *n = n.saturating_sub(1);
                }
            }
            self.marks.insert(r.entry.fp, Mark::Queued);
            self.enqueue(r.queue, r.entry);
            requeued += 1;
        }
        self.sink = self.synced.clone();
        Ok((requeued, self.synced.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frontier::{UrlKind, UrlRecord};

    fn new_url(url: &str, host: &str, priority: i32, depth: u32) -> NewUrl {
        NewUrl {
            fp: crate::normalize::fingerprint_of(url),
            record: UrlRecord::new(url.into(), host.into(), depth, priority, UrlKind::Page),
        }
    }

    #[test]
    fn same_order_dedup_and_wake_ups_as_the_store() {
        let mut f = MemoryFrontier::new();
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
        assert_eq!(f.take_woken(), ["a", "b"]);
        assert!(f.take_woken().is_empty(), "reported once");
        let order: Vec<String> = std::iter::from_fn(|| f.lease("a").unwrap())
            .map(|l| l.record.url)
            .collect();
        assert_eq!(order, ["http://a/3", "http://a/2", "http://a/1"]);
        assert!(!f.has_work("a"));
        f.add(vec![new_url("http://a/4", "a", 0, 0)]).unwrap();
        assert_eq!(f.take_woken(), ["a"], "a host that ran out is woken again");

        let l = f.lease("b").unwrap().unwrap();
        f.release(&l, 1).unwrap();
        assert_eq!(f.take_woken(), ["b"]);
        let l = f.lease("b").unwrap().unwrap();
        assert_eq!(l.record.attempts, 1);
        f.complete(&l, Completion::new(Outcome::Done, b"t1").page())
            .unwrap();
        assert_eq!(f.state(&l.fp).unwrap(), Some(UrlState::Done));
        assert_eq!(f.rewind_to_checkpoint().unwrap(), (1, None));
        assert_eq!(f.state(&l.fp).unwrap(), Some(UrlState::Queued));
        assert_eq!(f.counters().pages, 0);
    }
}
