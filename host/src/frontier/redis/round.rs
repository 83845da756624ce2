//! A worker's round trip to Redis (`round.lua`): the completions it has not sent yet, then
//! the leases it asks for, in one atomic script call. A lease call takes URLs for the host
//! the scheduler asks about and for every host where this worker's completions (in the same
//! call, or since its last call) freed slots, so a worker whose pages finish one at a time
//! still pays about one round trip per scheduler round, not one per page. It owns how
//! completions and leases become script arguments and how the reply (leases, refusals, and
//! the feed of fingerprints the other workers queued) is taken back; it must not decide
//! politeness (the script and the scheduler's `Politeness` do).

use super::{LEASE_BATCH, POLL, PendingCompletion, RedisFrontier, bytes, instant_at, int, now_ms};
use crate::frontier::{HostLimits, Lease, Outcome, UrlRecord};
use crate::normalize::Fingerprint;
use anyhow::{Result, anyhow, bail};
use std::collections::HashSet;
use std::time::Instant;

/// How soon a host whose slots other workers hold is asked again.
const FULL_RETRY: std::time::Duration = std::time::Duration::from_millis(5);

/// Hosts asked about in one lease call.
const HOSTS_PER_CALL: usize = 64;

/// What `round.lua` answers: links added, completions refused, one reply per host asked, the
/// feed's new bytes and cursor.
type RoundReply = (i64, Vec<Vec<u8>>, Vec<Vec<redis::Value>>, Vec<u8>, i64, u64);

impl RedisFrontier {
    /// Sends the waiting completions, if any.
    pub(super) fn flush_completions(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.round(Vec::new())
    }

    /// Sends the waiting completions and takes leases of `host`, and of the hosts where slots
    /// were freed, into the buffer.
    pub(super) fn fetch_leases(&mut self, host: &str, limits: HostLimits) -> Result<()> {
        for p in &self.pending {
            *self.freed.entry(p.host.clone()).or_default() += 1;
        }
        let mut ask: Vec<(String, HostLimits, usize)> =
            vec![(host.to_owned(), limits, want(limits, usize::MAX))];
        let freed: Vec<(String, usize)> = self.freed.drain().collect();
        let now = Instant::now();
        for (h, n) in freed {
            if ask.len() >= HOSTS_PER_CALL {
                break;
            }
            let idle = self.buffered.get(&h).is_none_or(|q| q.is_empty());
            let due = self.not_before.get(&h).is_none_or(|t| *t <= now);
            if h == host || !idle || !due || !self.work.contains(&h) {
                continue;
            }
            if let Some(l) = self.limits.get(&h).copied() {
                ask.push((h, l, want(l, n)));
            }
        }
        self.round(ask)
    }

    fn round(&mut self, ask: Vec<(String, HostLimits, usize)>) -> Result<()> {
        let batch = std::mem::take(&mut self.pending);
        let token = self.pending_token.take().unwrap_or_default();
        let mut args: Vec<Vec<u8>> = Vec::new();
        for p in &batch {
            args.extend(p.head.iter().cloned());
            args.push(p.links.len().to_string().into_bytes());
            args.extend(Self::link_args(&p.links)?);
        }
        tracing::trace!(completions = batch.len(), hosts = ask.len(), "round trip");
        let sent = Instant::now();
        let (prefix, worker, ttl, feed) = (&self.prefix, &self.worker, self.ttl_ms(), self.feed);
        let script = &self.scripts.round;
        let (added, refused, leases, fed, feed_g, feed_off): RoundReply = self.call(|c| {
            let mut inv = script.prepare_invoke();
            inv.arg(prefix)
                .arg(worker)
                .arg(now_ms())
                .arg(ttl)
                .arg(token.as_slice())
                .arg(feed.0)
                .arg(feed.1)
                .arg(batch.len());
            for a in &args {
                inv.arg(a.as_slice());
            }
            inv.arg(ask.len());
            for (h, l, w) in &ask {
                inv.arg(h)
                    .arg(l.per_host.max(1))
                    .arg(l.delay.as_millis() as u64)
                    .arg(*w);
            }
            inv.invoke(c)
        })?;
        // What the other workers queued: links this worker then meets cost no question.
        self.feed = (feed_g, feed_off);
        for fp in fed.chunks_exact(16) {
            if let Ok(fp) = <Fingerprint>::try_from(fp) {
                self.seen.insert(fp);
            }
        }
        if !batch.is_empty() {
            self.took_completions(batch, token, added, &refused);
        }
        for ((h, _, want), reply) in ask.iter().zip(leases) {
            self.take_reply(h, &reply, sent, *want)?;
        }
        Ok(())
    }

    /// What the store made of the completions sent.
    fn took_completions(
        &mut self,
        batch: Vec<PendingCompletion>,
        token: Vec<u8>,
        added: i64,
        refused: &[Vec<u8>],
    ) {
        let refused: HashSet<Fingerprint> = refused
            .iter()
            .filter_map(|b| <Fingerprint>::try_from(b.as_slice()).ok())
            .collect();
        self.token = Some(token);
        for p in batch {
            if refused.contains(&p.fp) {
                self.lost += 1;
                match p.outcome {
                    Outcome::Done => self.counters.done = self.counters.done.saturating_sub(1),
                    Outcome::Failed => {
                        self.counters.failed = self.counters.failed.saturating_sub(1)
                    }
                }
                if p.counted {
                    self.counters.pages = self.counters.pages.saturating_sub(1);
                    if let Some(n) = self.host_pages.get_mut(&p.host) {
                        *n = n.saturating_sub(1);
                    }
                }
                tracing::warn!(
                    url = %p.url,
                    "the store refused this page's completion: its lease had expired and went to another worker"
                );
                continue;
            }
            for l in p.links {
                self.seen.insert(l.fp);
                if self.work.insert(l.record.host.clone()) {
                    self.woken.push(l.record.host);
                }
            }
        }
        self.counters.known += added.max(0) as u64;
        self.counters.queued += added.max(0) as u64;
    }

    /// The host is not asked again before one of this worker's own requests there ends (the
    /// scheduler wakes it then); with none of them in flight, it is asked again after `retry`.
    fn wait_for_own_request(&mut self, host: &str, retry: std::time::Duration) {
        if self.mine.values().any(|(l, _)| l.record.host == host) {
            self.share_full.insert(host.to_owned());
        } else {
            self.not_before
                .insert(host.to_owned(), Instant::now() + retry);
        }
    }

    /// One host's part of a lease reply.
    fn take_reply(
        &mut self,
        host: &str,
        reply: &[redis::Value],
        sent: Instant,
        want: usize,
    ) -> Result<()> {
        let status = reply.first().and_then(bytes);
        let own_share_full = status.as_deref() == Some(b"-1");
        // Leased, and with that this worker's share (or the host's limit) is in flight.
        let exhausted = status.as_deref() == Some(b"-2");
        let wait = reply.first().map_or(0, int);
        let pages = reply.get(1).map_or(0, int);
        tracing::trace!(
            host,
            wait,
            own_share_full,
            got = reply.len().saturating_sub(2) / 2,
            "lease reply"
        );
        self.host_pages.insert(host.to_owned(), pages);
        if own_share_full {
            // This worker's share of the host is in flight: one of its own requests ending
            // frees a slot (the scheduler wakes the host then). Leases held under this name
            // by a previous process are not this one's to wait for: poll (the heartbeat puts
            // them back).
            self.wait_for_own_request(host, POLL);
            return Ok(());
        }
        if wait > 0 {
            // The host's slots are all in flight: one of this worker's own requests there
            // ending frees one (the scheduler wakes the host then); with none, another
            // worker holds them (ask again soon: its requests take milliseconds). Or another
            // worker just started one (ask again when its delay is over).
            if wait >= 1e15 as u64 {
                self.wait_for_own_request(host, FULL_RETRY);
            } else {
                self.not_before.insert(host.to_owned(), instant_at(wait));
            }
            return Ok(());
        }
        if reply.len() <= 2 {
            // Its queue is empty: the store dropped it from the schedule.
            self.work.remove(host);
            return Ok(());
        }
        let mut got = 0u64;
        for pair in reply[2..].chunks(2) {
            let [fp, record] = pair else { continue };
            let (Some(fp), Some(record)) = (bytes(fp), bytes(record)) else {
                continue;
            };
            let Ok(fp) = <Fingerprint>::try_from(fp.as_slice()) else {
                bail!(
                    "Redis returned a lease with a {}-byte fingerprint",
                    fp.len()
                );
            };
            let record: UrlRecord = serde_json::from_slice(&record).map_err(|e| {
                anyhow!(
                    "Redis holds a corrupt URL record for {}: {e}",
                    hex::encode(fp)
                )
            })?;
            let lease = Lease::detached(fp, record);
            self.mine.insert(fp, (lease.clone(), sent));
            self.buffered
                .entry(host.to_owned())
                .or_default()
                .push_back(lease);
            got += 1;
        }
        self.counters.queued = self.counters.queued.saturating_sub(got);
        // Fewer than asked, or the share is now in flight: the store gave what this worker's
        // share (or the host's limit, or its queue) allows, so asking again before one of
        // these requests ends would be a round trip for nothing.
        if exhausted || got < want as u64 {
            self.share_full.insert(host.to_owned());
        }
        Ok(())
    }
}

/// URLs to ask for: up to the host's limit (and `at_most`) when it has no delay, else one.
fn want(l: HostLimits, at_most: usize) -> usize {
    if l.delay.is_zero() {
        l.per_host.min(at_most).clamp(1, LEASE_BATCH)
    } else {
        1
    }
}
