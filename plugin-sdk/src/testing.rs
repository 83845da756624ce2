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

/// The JSON `sandcrawl parse` prints for this output on a page served at `url`, without the
/// plugin's identity (`plugin`, which only the built `.wasm` has): items as `{kind, fields}`,
/// links as `{url, priority, kind, metadata}` with the host's defaults (no priority is `0`),
/// plus `request` (`{method, headers, body}`) for a request that is more than a plain GET.
/// A native test and a replay of the built plugin can therefore be compared, or share one
/// golden file.
pub fn parse_json(url: &str, out: &Output) -> serde_json::Value {
    let items: Vec<serde_json::Value> = out
        .items
        .iter()
        .map(|i| serde_json::json!({ "kind": i.kind, "fields": i.value() }))
        .collect();
    let links: Vec<serde_json::Value> = out
        .links
        .iter()
        .map(|l| {
            let mut link = serde_json::json!({
                "url": l.url,
                "priority": l.priority.unwrap_or(0),
                "kind": l.kind,
                "metadata": l.metadata,
            });
            if l.is_request() {
                link["request"] = request_json(l);
            }
            link
        })
        .collect();
    serde_json::json!({ "url": url, "items": items, "links": links })
}

/// A request's method, headers and body as the host writes them (headers only when there
/// are some; a form body as the encoded text it sends).
fn request_json(l: &crate::ProposedLink) -> serde_json::Value {
    let mut r = serde_json::json!({ "method": l.method });
    if !l.headers.is_empty() {
        r["headers"] = serde_json::json!(l.headers);
    }
    match &l.body {
        Some(crate::Body::Form(pairs)) => {
            let mut s = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in pairs {
                s.append_pair(k, v);
            }
            r["body"] = serde_json::json!({ "form": s.finish() });
        }
        Some(crate::Body::Json(text)) => r["body"] = serde_json::json!({ "json": text }),
        None => {}
    }
    r
}
