//! Open connections and the process's open-file limit. It owns the count of the fetcher's
//! open connections and decides, when one opens, whether it may wait in the pool for the next
//! request to its host or must close after its response. It must not decide which URLs are
//! fetched or when (that is the scheduler's and `politeness`'s), and it never closes a
//! connection in use.
//!
//! Why: a broad crawl meets a new host every few pages, and a connection kept for every host
//! it has seen holds a file descriptor and some 25 KB of buffers each. Without a bound, a
//! crawl over a few thousand hosts used every descriptor of the common soft limit of 1,024,
//! and the frontier's store, failing to open a file, stopped the crawl.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

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
}

impl Connections {
    /// At most `kept` open connections stay in the pool between requests.
    pub fn new(kept: usize) -> Self {
        Connections {
            open: Arc::default(),
            kept,
        }
    }

    /// Counts a connection that was just opened. Once more than `kept` are open, the new one
    /// serves its request and closes; the connections already open stay for their hosts.
    pub fn opened(&self) -> Slot {
        let now = self.open.fetch_add(1, Ordering::Relaxed) + 1;
        Slot {
            open: Arc::clone(&self.open),
            reusable: now <= self.kept,
        }
    }

    /// Connections open now (the fetcher's, in use or idle).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn kept(&self) -> usize {
        self.kept
    }
}

/// One open connection's place in the count, given back when the connection closes.
pub struct Slot {
    open: Arc<AtomicUsize>,
    /// Whether the pool may keep the connection after its request.
    pub reusable: bool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_past_the_kept_number_are_single_use_and_slots_come_back() {
        let c = Connections::new(2);
        let a = c.opened();
        let b = c.opened();
        let third = c.opened();
        assert!(a.reusable && b.reusable);
        assert!(!third.reusable);
        assert_eq!(c.open(), 3);
        drop(a);
        drop(third);
        assert_eq!(c.open(), 1);
        assert!(c.opened().reusable, "room again once connections closed");
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
