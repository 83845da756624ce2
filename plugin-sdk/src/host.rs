//! Calls into the host (logging, configuration), with native stand-ins so that plugin code
//! runs unchanged under `cargo test`. Owns nothing else: it must never offer a plugin a way
//! around the sandbox.

use crate::LogLevel;

/// Writes a line to the host's log, tagged with the plugin's name. Natively, to stderr.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::wit::sandcrawl::plugin::host::{Level, log};
        let level = match level {
            LogLevel::Trace => Level::Trace,
            LogLevel::Debug => Level::Debug,
            LogLevel::Info => Level::Info,
            LogLevel::Warn => Level::Warn,
            LogLevel::Error => Level::Error,
        };
        log(level, message);
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// The plugin's configuration from the crawl config's `[plugins.NAME]` table.
///
/// Returns `Value::Null` when the crawl gives none. Natively it returns what
/// [`crate::testing::set_config`] stored for the current thread.
pub fn config() -> serde_json::Value {
    #[cfg(target_arch = "wasm32")]
    {
        let raw = crate::wit::sandcrawl::plugin::host::config();
        serde_json::from_str(&raw).unwrap_or(serde_json::Value::Null)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        crate::testing::current_config()
    }
}
