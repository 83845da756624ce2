//! `sandcrawl:plugin@0.1.0` (`wit/since_v0.1.0`, frozen): its bindings, the host imports it
//! offers (`log`, `config`), and conversions between its types and the host's.

use super::Declined;
use crate::plugin::validate::{RawItem, RawLink, RawManifest};
use crate::plugin::{
    CallState, LinkKind, PageInput, Rendering, metadata_as_text, metadata_from_text,
};
use anyhow::anyhow;
use wasmtime::Store;
use wasmtime::component::Linker;

pub const VERSION: &str = "0.1.0";

/// The generated bindings, in a module of their own: the WIT package is named `sandcrawl`,
/// like this crate, so its paths are always written `bindings::sandcrawl::…`.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.1.0",
        world: "plugin",
        // The page goes to the guest by reference: its body and headers are copied once,
        // into guest memory, not first into owned bindings types.
        ownership: Borrowing { duplicate_if_necessary: true },
        // `log` may trap the call (over its volume budget).
        imports: { default: trappable },
        // Exports run on a fiber, so a call can yield at epoch ticks and be cancelled.
        exports: { default: async },
    });
}

use bindings::sandcrawl::plugin::host as h;
use bindings::sandcrawl::plugin::types as t;
pub use bindings::{Plugin, PluginPre};

pub fn add_to_linker(linker: &mut Linker<CallState>) -> anyhow::Result<()> {
    Plugin::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)
        .map_err(|e| anyhow!("linking host API {VERSION}: {e}"))
}

impl t::Host for CallState {}

impl h::Host for CallState {
    fn log(&mut self, level: h::Level, message: String) -> wasmtime::Result<()> {
        use h::Level;
        let level = match level {
            Level::Trace => tracing::Level::TRACE,
            Level::Debug => tracing::Level::DEBUG,
            Level::Info => tracing::Level::INFO,
            Level::Warn => tracing::Level::WARN,
            Level::Error => tracing::Level::ERROR,
        };
        self.guest_log(level, &message)
    }

    fn config(&mut self) -> wasmtime::Result<String> {
        Ok(self.guest_config())
    }
}

pub async fn manifest(b: &Plugin, store: &mut Store<CallState>) -> wasmtime::Result<RawManifest> {
    let m = b.sandcrawl_plugin_parser().call_manifest(store).await?;
    Ok(RawManifest {
        name: m.name,
        version: m.version,
        description: m.description,
        patterns: m.patterns,
        seeds: m.seeds,
        rendering: Rendering::Http,
    })
}

pub async fn parse(
    b: &Plugin,
    store: &mut Store<CallState>,
    page: &PageInput,
) -> wasmtime::Result<Result<(Vec<RawItem>, Vec<RawLink>), Declined>> {
    let headers: Vec<t::Header<'_>> = page
        .headers
        .iter()
        .map(|(n, v)| t::Header { name: n, value: v })
        .collect();
    // 0.1 metadata is text: a JSON string comes back as the string it holds.
    let metadata = page.metadata.as_deref().map(metadata_as_text);
    let wit_page = t::Page {
        url: &page.url,
        status: page.status,
        headers: &headers,
        body: &page.body,
        encoding: &page.encoding,
        context: t::CrawlContext {
            depth: page.depth,
            referrer: page.referrer.as_deref(),
            metadata: metadata.as_deref(),
        },
    };
    let out = match b
        .sandcrawl_plugin_parser()
        .call_parse(store, wit_page)
        .await?
    {
        Ok(out) => out,
        Err(t::ParseError::NotMine) => return Ok(Err(Declined::NotMine)),
        Err(t::ParseError::Failed(m)) => return Ok(Err(Declined::Failed(m))),
    };
    let items = out
        .items
        .into_iter()
        .map(|i| RawItem {
            kind: i.kind,
            json: i.json,
        })
        .collect();
    let links = out
        .links
        .into_iter()
        .map(|k| RawLink {
            url: k.url,
            priority: k.priority,
            kind: match k.kind {
                t::LinkKind::Follow => LinkKind::Follow,
                t::LinkKind::Download => LinkKind::Download,
            },
            metadata: k.metadata.map(metadata_from_text),
            request: None,
        })
        .collect();
    Ok(Ok((items, links)))
}
