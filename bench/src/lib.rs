//! Helpers the benchmarks share (`benches/*.rs`). Measurement only; nothing here is part of
//! sandcrawl.

/// Whose CPU time to read.
#[derive(Debug, Clone, Copy)]
pub enum Whose {
    /// This process (utime + stime).
    Own,
    /// Its children that were waited for (cutime + cstime).
    Children,
}

/// CPU seconds from `/proc/self/stat` (clock ticks of 1/100 s).
pub fn cpu_seconds(whose: Whose) -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime, stime, cutime, cstime are fields 14–17 of /proc/self/stat (11–14 after the ')').
    let first = match whose {
        Whose::Own => 11,
        Whose::Children => 13,
    };
    (ticks(first) + ticks(first + 1)) / 100.0
}
