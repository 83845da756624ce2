//! The per-plugin failure policy (Envoy's outlier ejection, in miniature): a plugin whose
//! calls trap, time out or run out of memory this many times in a row is disabled for the
//! rest of the crawl, so a broken plugin costs a bounded number of budgets instead of one per
//! page. Its pages are then failed with that reason (`plugin_disabled`), and the summary
//! names it.
//!
//! It owns the counters only; it must not call plugins or decide what a page becomes
//! (`page.rs` asks it).

use crate::plugin::PluginError;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// One plugin's run of failures, shared by the workers that call it.
pub struct PluginHealth {
    /// Consecutive crashes that disable it (0: never).
    limit: u32,
    consecutive: AtomicU32,
    disabled: OnceLock<String>,
}

impl PluginHealth {
    pub fn new(limit: u32) -> Self {
        PluginHealth {
            limit,
            consecutive: AtomicU32::new(0),
            disabled: OnceLock::new(),
        }
    }

    /// Why the plugin is disabled, if it is.
    pub fn disabled(&self) -> Option<&str> {
        self.disabled.get().map(String::as_str)
    }

    /// Counts one call's result. Returns the reason when this call is the one that disabled
    /// the plugin (so it is announced once).
    pub fn record<T>(&self, result: &Result<T, PluginError>) -> Option<&str> {
        let crashed = matches!(
            result,
            Err(PluginError::Trap(_) | PluginError::Timeout(_) | PluginError::Memory(_))
        );
        if !crashed {
            self.consecutive.store(0, Ordering::Relaxed);
            return None;
        }
        let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if self.limit == 0 || n < self.limit {
            return None;
        }
        let why = match result {
            Err(e) => format!(
                "{n} consecutive calls trapped or timed out (plugin_max_failures = {}); last: {e}",
                self.limit
            ),
            Ok(_) => return None,
        };
        let mut first = false;
        self.disabled.get_or_init(|| {
            first = true;
            why
        });
        if first { self.disabled() } else { None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_run_of_crashes_disables() {
        let h = PluginHealth::new(3);
        let trap: Result<(), PluginError> = Err(PluginError::Trap("boom".into()));
        let own: Result<(), PluginError> = Err(PluginError::Failed("no price".into()));
        assert!(h.record(&trap).is_none());
        assert!(h.record(&trap).is_none());
        // A plugin's own error, or a success, breaks the run.
        assert!(h.record(&own).is_none());
        assert!(h.record(&trap).is_none());
        assert!(h.record(&Err::<(), _>(PluginError::Timeout(5))).is_none());
        let why = h
            .record(&Err::<(), _>(PluginError::Memory(128)))
            .map(str::to_owned);
        assert!(
            why.as_deref()
                .is_some_and(|w| w.starts_with("3 consecutive")),
            "{why:?}"
        );
        assert!(h.disabled().is_some());
        assert!(h.record(&trap).is_none(), "announced once");
        let never = PluginHealth::new(0);
        for _ in 0..100 {
            assert!(never.record(&trap).is_none());
        }
        assert!(never.disabled().is_none());
    }
}
