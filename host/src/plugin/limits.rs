//! The per-plugin budgets (`[limits]`), the memory accounting that enforces them, and the
//! sizing of the shared instance pool so that no plugin can starve another.
//!
//! It owns the numbers and the `ResourceLimiter`. It must not run plugins or classify their
//! errors; `plugin` does that with what this module records.

/// Per-call budgets. Every one of them is enforced by the host, not trusted to the guest.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Wall-clock budget for one `parse` or `manifest` call, in milliseconds, time blocked
    /// in host calls (sleeps, polls) included.
    pub timeout_ms: u64,
    /// Maximum memory of one plugin instance, in MiB: all of its linear memories and tables
    /// together.
    pub memory_mib: u64,
    /// Maximum wasm call stack, in KiB.
    pub stack_kib: u64,
    /// Maximum items one page may produce.
    pub max_items: usize,
    /// Maximum links one page may propose.
    pub max_links: usize,
    /// Maximum total bytes of item JSON and link URLs from one page, in MiB.
    pub max_output_mib: u64,
    /// Maximum bytes a plugin may write to its log, stdout and stderr together, per call, in KiB.
    pub max_log_kib: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout_ms: 2_000,
            memory_mib: 128,
            stack_kib: 1024,
            max_items: 10_000,
            max_links: 100_000,
            max_output_mib: 32,
            max_log_kib: 64,
        }
    }
}

/// Core wasm instances one plugin component may contain. A plugin built with the SDK has 5;
/// the bound keeps one component from taking the pool's instances from the others.
pub const MAX_CORE_INSTANCES: u32 = 24;
/// Linear memories one plugin component may contain (an SDK plugin has 1-2).
pub const MAX_MEMORIES: u32 = 4;
/// Tables one plugin component may contain (an SDK plugin has 2-3).
pub const MAX_TABLES: u32 = 8;
/// Elements of one table.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Bytes a table element is charged against `memory_mib` (a pointer-sized reference).
const TABLE_ELEMENT_BYTES: usize = 8;

/// How many plugin calls run at once, over all plugins, and per plugin. Calls beyond that
/// wait their turn (before their deadline starts). Half the slots per plugin means a plugin
/// whose every call sleeps to its deadline still leaves the others half of them.
#[derive(Debug, Clone, Copy)]
pub struct Slots {
    pub calls: usize,
    pub per_plugin: usize,
    /// Idle instances kept warm, over all plugins.
    pub warm: usize,
}

impl Slots {
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let calls = (2 * cores).max(4);
        Slots {
            calls,
            per_plugin: (calls / 2).max(1),
            warm: 2 * cores,
        }
    }

    /// Component instances alive at most: every call's one instance plus every idle warm one
    /// (a call that retries on a fresh instance drops the first before making the second).
    pub fn component_instances(&self) -> u32 {
        u32::try_from(self.calls + self.warm + 2).unwrap_or(u32::MAX)
    }
}

/// Counts what an instance holds (all memories and tables together) and refuses growth past
/// `memory_mib`, remembering that it did, so the resulting trap (a guest allocation failure
/// aborts) is reported as the memory limit, not as a crash.
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    /// Bytes of all memories and tables of this store.
    pub(crate) used: usize,
    pub(crate) hit: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(memory_mib: u64) -> Self {
        MemoryLimiter {
            max_bytes: usize::try_from(memory_mib.saturating_mul(1024 * 1024))
                .unwrap_or(usize::MAX),
            used: 0,
            hit: false,
        }
    }

    fn grow(&mut self, bytes_now: usize, bytes_wanted: usize) -> bool {
        let more = bytes_wanted.saturating_sub(bytes_now);
        if self.used.saturating_add(more) > self.max_bytes {
            self.hit = true;
            return false;
        }
        self.used += more;
        true
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow(current, desired))
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.hit = true;
            return Ok(false);
        }
        Ok(self.grow(
            current.saturating_mul(TABLE_ELEMENT_BYTES),
            desired.saturating_mul(TABLE_ELEMENT_BYTES),
        ))
    }

    // The same per-component bounds as the pool's, for engines without the pool.
    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES as usize
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES as usize
    }

    fn tables(&self) -> usize {
        MAX_TABLES as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter as _;

    #[test]
    fn all_memories_and_tables_count_against_one_limit() -> wasmtime::Result<()> {
        let mut l = MemoryLimiter::new(1);
        assert!(l.memory_growing(0, 600 * 1024, None)?);
        // A second memory of the same instance: together they would pass 1 MiB.
        assert!(!l.memory_growing(0, 600 * 1024, None)?);
        assert!(l.hit);
        assert!(l.table_growing(0, 1000, None)?);
        assert!(!l.table_growing(0, MAX_TABLE_ELEMENTS + 1, None)?);
        assert_eq!(l.used, 600 * 1024 + 8000);
        Ok(())
    }
}
