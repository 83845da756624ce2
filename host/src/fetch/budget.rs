//! The global budget for body bytes held by requests in flight (`fetch.max_bytes_in_flight`).
//!
//! It owns the accounting: a fetch reserves budget as its decoded body grows and holds it
//! until its page is committed (the hold travels with the response). When the budget is
//! spent, fetches wait instead of growing memory. To make sure a crawl whose in-flight bodies
//! have spent the budget between them cannot wait on itself forever, one fetch at a time may
//! go past it (the overdraft, bounded by `max_body_bytes`), so the peak is the budget plus
//! one body. It must not read bodies or decide limits per response.

use std::sync::Arc;
use tokio::sync::{Mutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

/// Budget is counted in KiB, so a 4 GiB budget fits the semaphore's permit counts.
const UNIT: u64 = 1024;

#[derive(Clone)]
pub struct ByteBudget {
    permits: Arc<Semaphore>,
    overdraft: Arc<Mutex<()>>,
    total_units: u64,
}

/// What one response holds of the budget; given back when dropped.
#[derive(Default)]
pub struct BudgetHold {
    permit: Option<OwnedSemaphorePermit>,
    overdraft: Option<OwnedMutexGuard<()>>,
    units: u64,
}

impl std::fmt::Debug for BudgetHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BudgetHold({} KiB{})",
            self.units,
            if self.overdraft.is_some() {
                ", overdraft"
            } else {
                ""
            }
        )
    }
}

impl ByteBudget {
    pub fn new(bytes: u64) -> Self {
        let units = bytes.div_ceil(UNIT).clamp(1, Semaphore::MAX_PERMITS as u64);
        ByteBudget {
            permits: Arc::new(Semaphore::new(units as usize)),
            overdraft: Arc::new(Mutex::new(())),
            total_units: units,
        }
    }

    /// Bytes not held by any response right now.
    pub fn available_bytes(&self) -> u64 {
        self.permits.available_permits() as u64 * UNIT
    }

    /// Makes `hold` cover `bytes`, waiting while the budget is spent.
    pub async fn cover(&self, hold: &mut BudgetHold, bytes: u64) {
        if hold.overdraft.is_some() {
            return;
        }
        let want = bytes.div_ceil(UNIT).min(self.total_units);
        if want <= hold.units {
            return;
        }
        let more = u32::try_from(want - hold.units).unwrap_or(u32::MAX);
        let got = match Arc::clone(&self.permits).try_acquire_many_owned(more) {
            Ok(p) => Some(p),
            Err(_) => {
                tokio::select! {
                    p = Arc::clone(&self.permits).acquire_many_owned(more) => p.ok(),
                    g = Arc::clone(&self.overdraft).lock_owned() => {
                        hold.overdraft = Some(g);
                        None
                    }
                }
            }
        };
        if let Some(p) = got {
            hold.units += u64::from(more);
            match &mut hold.permit {
                Some(held) => held.merge(p),
                None => hold.permit = Some(p),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spent_budget_waits_and_one_overdraft_keeps_progress() {
        let b = ByteBudget::new(10 * 1024);
        let mut a = BudgetHold::default();
        b.cover(&mut a, 8 * 1024).await;
        assert_eq!(b.available_bytes(), 2 * 1024);
        let mut c = BudgetHold::default();
        // Not enough left: this one takes the overdraft instead of waiting forever.
        b.cover(&mut c, 4 * 1024).await;
        assert!(c.overdraft.is_some());
        // A third must wait until one of them lets go.
        let b2 = b.clone();
        let third = tokio::spawn(async move {
            let mut h = BudgetHold::default();
            b2.cover(&mut h, 6 * 1024).await;
            h.units
        });
        tokio::task::yield_now().await;
        assert!(!third.is_finished());
        drop(a);
        assert_eq!(third.await.ok(), Some(6));
    }
}
