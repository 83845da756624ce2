//! Which hosts the scheduler should look at next, so that a dispatch round costs what it
//! starts, not what the crawl holds: a FIFO of hosts that may start now and a min-heap of
//! hosts waiting for a time (politeness delay, Retry-After, back-off). Hosts that wait for
//! their own requests to finish are parked and woken by the scheduler when one does.
//!
//! A host woken by its own finished request goes to the front of the queue, up to `STREAK`
//! times in a row, then to the back. Its connection, buffers and frontier keys are still in
//! the CPU's caches, so a broad crawl works through a few dozen hosts at a time instead of
//! touching every host's state once per cycle; the streak keeps a large site from holding
//! the crawl's slots while other hosts wait.
//!
//! It owns that bookkeeping only; it must not decide whether a host may start (politeness
//! does) or whether it has work (the frontier does).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// In the ready queue.
    Ready,
    /// In the heap, due at this time.
    Waiting(Instant),
    /// Has work but waits for one of its own requests to finish (per-host limit).
    Parked,
}

/// The hosts with work, by when they may start.
#[derive(Default)]
pub struct ReadyHosts {
    slots: HashMap<String, Slot>,
    ready: VecDeque<String>,
    /// Min-heap by due time; entries whose slot no longer says `Waiting(that time)` are stale
    /// and dropped when they surface.
    waiting: BinaryHeap<Reverse<(Instant, String)>>,
    /// Hosts in `ready` or (live) in `waiting`.
    scheduled: usize,
    /// Times in a row each host went to the front (`wake_hot`); only hosts that still have
    /// work or requests in flight have an entry.
    streaks: HashMap<String, u32>,
}

/// How many times in a row a host may go to the front of the queue.
const STREAK: u32 = 32;

impl ReadyHosts {
    /// A host has work and may be able to start: ready unless it already is, or waits for
    /// a time (which still holds).
    pub fn wake(&mut self, host: &str) {
        match self.slots.get(host) {
            Some(Slot::Ready | Slot::Waiting(_)) => {}
            Some(Slot::Parked) | None => {
                self.slots.insert(host.to_owned(), Slot::Ready);
                self.ready.push_back(host.to_owned());
                self.scheduled += 1;
            }
        }
    }

    /// A host to look at now even if it waits for a time: one just given up, whose queued
    /// URLs fail without a request instead of waiting out its back-off.
    pub fn wake_now(&mut self, host: &str) {
        match self.slots.get(host) {
            Some(Slot::Ready) => {}
            // Still counted in `scheduled`; its heap entry goes stale.
            Some(Slot::Waiting(_)) => {
                self.slots.insert(host.to_owned(), Slot::Ready);
                self.ready.push_back(host.to_owned());
            }
            Some(Slot::Parked) | None => self.wake(host),
        }
    }

    /// A host one of whose own requests just finished, and which has more work: to the
    /// front of the queue unless it has been there `STREAK` times in a row.
    pub fn wake_hot(&mut self, host: &str) {
        if matches!(self.slots.get(host), Some(Slot::Ready | Slot::Waiting(_))) {
            return;
        }
        // Called once per finished request: no allocation for a host already on a streak.
        let streak = match self.streaks.get_mut(host) {
            Some(n) => {
                *n += 1;
                *n
            }
            None => {
                self.streaks.insert(host.to_owned(), 1);
                1
            }
        };
        if streak > STREAK {
            self.streaks.remove(host);
            self.wake(host);
            return;
        }
        self.slots.insert(host.to_owned(), Slot::Ready);
        self.ready.push_front(host.to_owned());
        self.scheduled += 1;
    }

    /// A popped host with no work left: its streak ends.
    pub fn forget(&mut self, host: &str) {
        self.streaks.remove(host);
    }

    /// The next ready host, taken out of the structure: the caller puts it back with
    /// `wake`, `wait_until`, `park` or `unpop`, or drops it when it has no work.
    pub fn pop(&mut self) -> Option<String> {
        let host = self.ready.pop_front()?;
        self.slots.remove(&host);
        self.scheduled = self.scheduled.saturating_sub(1);
        Some(host)
    }

    /// Puts a popped host back at the front (it could not start for a reason that is not
    /// its own, such as the global concurrency limit).
    pub fn unpop(&mut self, host: String) {
        self.slots.insert(host.clone(), Slot::Ready);
        self.ready.push_front(host);
        self.scheduled += 1;
    }

    /// A popped host that may start again at `at`.
    pub fn wait_until(&mut self, host: String, at: Instant) {
        // A host that waits for a time is not kept warm.
        self.streaks.remove(&host);
        self.slots.insert(host.clone(), Slot::Waiting(at));
        self.waiting.push(Reverse((at, host)));
        self.scheduled += 1;
    }

    /// A popped host that waits for its own requests; `wake` it when one finishes.
    pub fn park(&mut self, host: String) {
        self.slots.insert(host, Slot::Parked);
    }

    /// Moves every host due by `now` to the ready queue. Costs O(log n) per host moved.
    pub fn promote(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.waiting.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, host))) = self.waiting.pop() else {
                break;
            };
            if self.slots.get(&host) == Some(&Slot::Waiting(at)) {
                self.slots.insert(host.clone(), Slot::Ready);
                self.ready.push_back(host);
            }
        }
    }

    /// When the next waiting host is due (stale heap entries are dropped on the way).
    pub fn next_due(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, host))) = self.waiting.peek() {
            if self.slots.get(host) == Some(&Slot::Waiting(*at)) {
                return Some(*at);
            }
            self.waiting.pop();
        }
        None
    }

    /// Whether some host is ready or waiting for a time (parked hosts are not counted: the
    /// requests they wait for keep the crawl going).
    pub fn has_scheduled(&self) -> bool {
        self.scheduled > 0
    }

    #[cfg(test)]
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_round_touches_only_hosts_that_are_due() {
        let mut r = ReadyHosts::default();
        let t0 = Instant::now();
        for i in 0..10_000 {
            r.wake(&format!("h{i}"));
        }
        assert_eq!(r.ready_len(), 10_000);
        // Every host started once and must wait 1 s, except h7 which is due at once.
        while let Some(h) = r.pop() {
            let at = if h == "h7" {
                t0
            } else {
                t0 + Duration::from_secs(1)
            };
            r.wait_until(h, at);
        }
        assert_eq!(r.ready_len(), 0);
        assert!(r.has_scheduled());
        r.promote(t0);
        assert_eq!(r.ready_len(), 1, "only the due host moves");
        assert_eq!(r.pop().as_deref(), Some("h7"));
        r.park("h7".into());
        assert_eq!(r.next_due(), Some(t0 + Duration::from_secs(1)));
        r.promote(t0 + Duration::from_secs(1));
        assert_eq!(r.ready_len(), 9_999);
    }

    #[test]
    fn wake_now_skips_a_wait() {
        let mut r = ReadyHosts::default();
        let later = Instant::now() + Duration::from_secs(60);
        r.wake("a");
        let Some(a) = r.pop() else {
            panic!("a is ready")
        };
        r.wait_until(a, later);
        r.wake_now("a");
        assert_eq!(r.pop().as_deref(), Some("a"));
        assert!(!r.has_scheduled(), "counted once");
        assert_eq!(r.next_due(), None, "the heap entry went stale");
        r.wake_now("b");
        r.wake_now("b");
        assert_eq!(r.pop().as_deref(), Some("b"));
        assert_eq!(r.pop(), None);
    }

    #[test]
    fn waking_is_idempotent_and_respects_a_wait() {
        let mut r = ReadyHosts::default();
        let later = Instant::now() + Duration::from_secs(60);
        r.wake("a");
        r.wake("a");
        assert_eq!(r.ready_len(), 1);
        let a = r.pop().unwrap_or_default();
        r.wait_until(a, later);
        r.wake("a");
        assert_eq!(r.ready_len(), 0, "a waiting host stays waiting");
        r.park("b".into());
        assert!(r.has_scheduled());
        r.wake("b");
        assert_eq!(r.pop().as_deref(), Some("b"), "a parked host is woken");
        assert_eq!(r.pop(), None);
        assert_eq!(r.next_due(), Some(later));
        r.promote(later);
        assert_eq!(r.pop().as_deref(), Some("a"));
        // Popped and not put back (no work left): gone.
        assert_eq!(r.next_due(), None);
        assert!(!r.has_scheduled());
    }

    #[test]
    fn a_finished_host_goes_first_for_a_bounded_streak() {
        let mut r = ReadyHosts::default();
        for h in ["a", "b", "c"] {
            r.wake(h);
        }
        // "a" starts, is parked on its per-host limit, and its request finishes: it goes
        // ahead of "b" and "c", which have not started yet, STREAK times in a row.
        for _ in 0..STREAK {
            assert_eq!(r.pop().as_deref(), Some("a"));
            r.park("a".into());
            r.wake_hot("a");
        }
        assert_eq!(r.pop().as_deref(), Some("a"));
        r.park("a".into());
        // The streak is spent: behind the others, and a fresh streak after that.
        r.wake_hot("a");
        assert_eq!(r.pop().as_deref(), Some("b"));
        assert_eq!(r.pop().as_deref(), Some("c"));
        assert_eq!(r.pop().as_deref(), Some("a"));
        r.wake("d");
        r.wake_hot("a");
        assert_eq!(r.pop().as_deref(), Some("a"), "a new streak starts");
        assert_eq!(r.pop().as_deref(), Some("d"));
        assert_eq!(r.pop(), None);
    }

    #[test]
    fn a_hot_wake_leaves_queued_and_waiting_hosts_where_they_are() {
        let mut r = ReadyHosts::default();
        let later = Instant::now() + Duration::from_secs(60);
        r.wake("a");
        r.wake("b");
        r.wake_hot("b");
        assert_eq!(r.ready_len(), 2, "already queued: not queued twice");
        assert_eq!(r.pop().as_deref(), Some("a"));
        let b = r.pop().unwrap_or_default();
        r.wait_until(b, later);
        r.wake_hot("b");
        assert_eq!(
            r.ready_len(),
            0,
            "a host waiting for its delay keeps waiting"
        );
        // A host that ran out of work and found more starts a new streak.
        r.wake_hot("c");
        assert_eq!(r.pop().as_deref(), Some("c"));
        r.forget("c");
        assert!(
            r.streaks.is_empty(),
            "no entry is kept for a host without work"
        );
    }
}
