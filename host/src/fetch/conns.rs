//! Open connections and the process's open-file limit. It owns the count of the fetcher's
//! open connections and decides, when one opens, whether it may wait in the pool for the next
//! request to its host or must close after its response. It must not decide which URLs are
//! fetched or when (that is the scheduler's and `politeness`'s), and it never closes a
//! connection in use.
//!
//! It also ends the idle connections of a host the scheduler says is done (nothing queued,
//! nothing in flight): `close_idle` asks, and each of the host's connections reads end-of-file
//! on its next read, so hyper drops it. A host counts as busy from the start of a request to
//! it until its body is read or dropped (`busy`); a busy host's connections are never ended,
//! and a new request cancels a pending close. Without this, a broad crawl held every host's
//! idle connection for `fetch.idle_timeout_ms`: a peak of 307 MB and 9,541 descriptors at
//! 10,000 hosts, against 151 MB and 98 (BENCHMARKS.md §6).
//!
//! Why: a broad crawl meets a new host every few pages, and a connection kept for every host
//! it has seen holds a file descriptor and some 25 KB of buffers each. Without a bound, a
//! crawl over a few thousand hosts used every descriptor of the common soft limit of 1,024,
//! and the frontier's store, failing to open a file, stopped the crawl.

use futures_util::task::AtomicWaker;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

/// Descriptors kept back for everything that is not a fetch connection: the store (at most
/// `STORE_FILES` cached tables, plus its journals), outputs (files, database and Redis
/// connections), the `--listen` endpoint, logs and the runtime's own.
pub const RESERVED_FDS: u64 = 256;

/// Table files the frontier's store keeps open at most (fjall's descriptor cache; it reopens
/// files beyond this on demand). Part of `RESERVED_FDS`.
pub const STORE_FILES: usize = 128;

/// The fewest connections a crawl must be able to keep for reuse; below it, the open-file
/// limit is too low to crawl well and the crawl refuses to start.
const MIN_KEPT: u64 = 16;

/// The open-file limit in force, after raising the soft limit to the hard one (once per
/// process, the first time it is asked). Linux's usual soft limit is 1,024 while the hard
/// limit is far higher; a crawler is the kind of program the hard limit is there for.
pub fn open_file_limit() -> u64 {
    static LIMIT: OnceLock<u64> = OnceLock::new();
    *LIMIT.get_or_init(|| match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        // Not raised (an unusual platform or a sandbox refusing it): work with what there is.
        Err(_) => rlimit::getrlimit(rlimit::Resource::NOFILE)
            .map(|(soft, _)| soft)
            .unwrap_or(1024),
    })
}

/// How many connections may stay open for reuse, given the open-file limit, the most
/// requests in flight at once (each may hold a connection of its own besides the kept ones)
/// and `fetch.max_kept_connections`. One line naming the fix when the limit is too low.
pub fn kept_for(limit: u64, in_flight: usize, max_kept: usize) -> anyhow::Result<usize> {
    let in_flight = in_flight as u64;
    let need = RESERVED_FDS + in_flight + MIN_KEPT;
    if limit < need {
        anyhow::bail!(
            "the open-file limit is {limit}, too low for {in_flight} requests in flight (it needs at least {need}); raise it (ulimit -n {}) or lower --concurrency",
            need.next_power_of_two().max(1024)
        );
    }
    let by_limit = limit - RESERVED_FDS - in_flight;
    Ok(usize::try_from(by_limit)
        .unwrap_or(usize::MAX)
        .min(max_kept))
}

/// The fetcher's open connections (cheap to clone; clones share the count).
#[derive(Clone)]
pub struct Connections {
    open: Arc<AtomicUsize>,
    kept: usize,
    hosts: Registry,
}

/// Every host's `HostConns`, shared by the fetcher's connections and requests.
type Registry = Arc<Mutex<HashMap<String, HostConns>>>;

/// One host's requests in progress and its open connections' close switches. An entry
/// exists only while the host has either.
#[derive(Default)]
struct HostConns {
    busy: usize,
    conns: Vec<Weak<Closer>>,
}

/// The switch by which `close_idle` ends one idle connection.
#[derive(Default)]
struct Closer {
    requested: AtomicBool,
    reader: AtomicWaker,
}

impl Connections {
    /// At most `kept` open connections stay in the pool between requests.
    pub fn new(kept: usize) -> Self {
        Connections {
            open: Arc::default(),
            kept,
            hosts: Arc::default(),
        }
    }

    fn hosts(&self) -> std::sync::MutexGuard<'_, HashMap<String, HostConns>> {
        lock(&self.hosts)
    }

    /// Counts a connection to `host` (`normalize::host_key` form) that was just opened. Once
    /// more than `kept` are open, the new one serves its request and closes; the connections
    /// already open stay for their hosts.
    pub fn opened(&self, host: &str) -> Slot {
        let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        let closer = Arc::new(Closer::default());
        self.hosts()
            .entry(host.to_owned())
            .or_default()
            .conns
            .push(Arc::downgrade(&closer));
        Slot {
            open: Arc::clone(&self.open),
            reusable: now <= self.kept,
            host: host.to_owned(),
            hosts: Arc::clone(&self.hosts),
            closer,
        }
    }

    /// Marks a request to `host` in progress until the guard drops; it cancels a pending
    /// `close_idle` of the host.
    pub fn busy(&self, host: &str) -> Busy {
        let mut hosts = self.hosts();
        // Once per request: the key is allocated only for a host not yet in the registry.
        let entry = match hosts.get_mut(host) {
            Some(e) => e,
            None => hosts.entry(host.to_owned()).or_default(),
        };
        entry.busy += 1;
        for c in entry.conns.iter().filter_map(Weak::upgrade) {
            c.requested.store(false, Ordering::Release);
        }
        Busy {
            host: host.to_owned(),
            hosts: Arc::clone(&self.hosts),
        }
    }

    /// Ends the idle connections of `host`, unless a request to it is in progress. Returns
    /// how many connections were asked to close.
    pub fn close_idle(&self, host: &str) -> usize {
        let hosts = self.hosts();
        let Some(entry) = hosts.get(host).filter(|e| e.busy == 0) else {
            return 0;
        };
        let mut asked = 0;
        for c in entry.conns.iter().filter_map(Weak::upgrade) {
            c.requested.store(true, Ordering::Release);
            c.reader.wake();
            asked += 1;
        }
        asked
    }

    /// Connections open now (the fetcher's, in use or idle).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn kept(&self) -> usize {
        self.kept
    }
}

fn lock(hosts: &Registry) -> std::sync::MutexGuard<'_, HashMap<String, HostConns>> {
    hosts.lock().unwrap_or_else(|p| p.into_inner())
}

/// Applies `change` to a host's entry, then drops the entry once it has neither requests in
/// progress nor live connections.
fn settle(hosts: &Registry, host: &str, change: impl FnOnce(&mut HostConns)) {
    let mut hosts = lock(hosts);
    if let Some(entry) = hosts.get_mut(host) {
        change(entry);
        entry.conns.retain(|w| w.strong_count() > 0);
        if entry.busy == 0 && entry.conns.is_empty() {
            hosts.remove(host);
        }
    }
}

/// A request in progress to one host (see `Connections::busy`).
pub struct Busy {
    host: String,
    hosts: Registry,
}

impl Drop for Busy {
    fn drop(&mut self) {
        settle(&self.hosts, &self.host, |e| {
            e.busy = e.busy.saturating_sub(1)
        });
    }
}

/// One open connection's place in the count, given back when the connection closes.
pub struct Slot {
    open: Arc<AtomicUsize>,
    /// Whether the pool may keep the connection after its request.
    pub reusable: bool,
    host: String,
    hosts: Registry,
    closer: Arc<Closer>,
}

impl Slot {
    /// Whether the scheduler asked this idle connection to close; the reading task is woken
    /// when it does.
    pub fn close_requested(&self, cx: &std::task::Context<'_>) -> bool {
        self.closer.reader.register(cx.waker());
        self.closer.requested.load(Ordering::Acquire)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        let me = Arc::as_ptr(&self.closer);
        settle(&self.hosts, &self.host, |e| {
            e.conns.retain(|w| w.as_ptr() != me)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_past_the_kept_number_are_single_use_and_slots_come_back() {
        let c = Connections::new(2);
        let a = c.opened("a");
        let b = c.opened("a");
        let third = c.opened("b");
        assert!(a.reusable && b.reusable);
        assert!(!third.reusable);
        assert_eq!(c.open(), 3);
        drop(a);
        drop(third);
        assert_eq!(c.open(), 1);
        assert!(c.opened("c").reusable, "room again once connections closed");
    }

    #[test]
    fn only_an_idle_hosts_connections_are_asked_to_close() {
        let cx = std::task::Context::from_waker(std::task::Waker::noop());
        let c = Connections::new(10);
        let a1 = c.opened("a");
        let a2 = c.opened("a");
        let b = c.opened("b:8080");
        let busy = c.busy("a");
        assert_eq!(c.close_idle("a"), 0, "a request to the host is in progress");
        drop(busy);
        assert_eq!(c.close_idle("a"), 2);
        assert!(a1.close_requested(&cx) && a2.close_requested(&cx));
        assert!(!b.close_requested(&cx), "another host's connection stays");
        // A new request to the host cancels the close before its connection reads again.
        let again = c.busy("a");
        assert!(!a1.close_requested(&cx) && !a2.close_requested(&cx));
        drop(again);
        drop((a1, a2, b));
        assert_eq!(c.close_idle("a"), 0);
        assert!(
            c.hosts().is_empty(),
            "no entry outlives its host's connections and requests"
        );
    }

    #[test]
    fn the_kept_number_leaves_room_for_requests_in_flight_and_the_store() {
        assert_eq!(kept_for(100_000, 64, 16_384).ok(), Some(16_384));
        assert_eq!(kept_for(1_024, 64, 16_384).ok(), Some(1_024 - 256 - 64));
        let err = kept_for(300, 64, 16_384)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("open-file limit is 300"), "{err}");
        assert!(err.contains("ulimit -n 1024"), "{err}");
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let limit = open_file_limit();
        let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap_or((0, 0));
        assert_eq!(limit, soft);
        assert!(
            soft == hard || hard == rlimit::INFINITY || soft >= 1024,
            "{soft} {hard}"
        );
    }
}
