//! Native test harness: run a plugin on a saved page with plain `cargo test`, no wasm
//! toolchain involved. It only builds pages and holds per-thread config; it never fetches.

use crate::{Output, Page, ParseError, Plugin};
use std::cell::RefCell;
use std::path::Path;

thread_local! {
    static CONFIG: RefCell<serde_json::Value> = const { RefCell::new(serde_json::Value::Null) };
}

/// Sets what [`crate::config`] returns on this thread (tests run one per thread).
pub fn set_config(value: serde_json::Value) {
    CONFIG.with(|c| *c.borrow_mut() = value);
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn current_config() -> serde_json::Value {
    CONFIG.with(|c| c.borrow().clone())
}

/// Loads a saved HTML file as a 200 `text/html` page served at `url`.
pub fn page_from_file(url: &str, path: impl AsRef<Path>) -> std::io::Result<Page> {
    let body = std::fs::read(path)?;
    Ok(Page::html(url, body))
}

/// Runs `P` on `page` exactly as the host would (`new`, `wants`, `parse`).
pub fn run<P: Plugin>(page: &Page) -> Result<Output, ParseError> {
    let plugin = P::new();
    crate::run_plugin(&plugin, page)
}
