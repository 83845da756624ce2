//! `sandcrawl:plugin@0.2.0` (`wit/since_v0.2.0`): its bindings, the host imports it offers
//! (`log`, `config`), and conversions between its types and the host's. New here: requests
//! with a method, headers and a body; JSON metadata; start requests; URL patterns; a
//! rendering declaration.

use super::Declined;
use crate::fetch::{Body, Method, RequestSpec};
use crate::plugin::validate::{RawItem, RawLink, RawManifest};
use crate::plugin::{CallState, LinkKind, PageInput, Rendering, metadata_as_json};
use anyhow::anyhow;
use wasmtime::Store;
use wasmtime::component::Linker;

pub const VERSION: &str = "0.2.0";

/// The generated bindings, in a module of their own (see `since_v0_1`).
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/since_v0.2.0",
        world: "plugin",
        ownership: Borrowing { duplicate_if_necessary: true },
        imports: { default: trappable },
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
        rendering: match m.rendering {
            t::Rendering::Http => Rendering::Http,
            t::Rendering::Browser => Rendering::Browser,
        },
    })
}

pub async fn start_requests(
    b: &Plugin,
    store: &mut Store<CallState>,
) -> wasmtime::Result<Vec<RawLink>> {
    let requests = b
        .sandcrawl_plugin_parser()
        .call_start_requests(store)
        .await?;
    Ok(requests.into_iter().map(request).collect())
}

fn method(m: Method) -> t::Method {
    match m {
        Method::Get => t::Method::Get,
        Method::Post => t::Method::Post,
    }
}

fn request(r: t::Request) -> RawLink {
    let body = r.body.map(|b| match b {
        t::Body::Form(pairs) => Body::form(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        t::Body::Json(text) => Body::Json(text),
    });
    RawLink {
        url: r.url,
        priority: r.priority,
        kind: match r.kind {
            t::RequestKind::Follow => LinkKind::Follow,
            t::RequestKind::Download => LinkKind::Download,
        },
        metadata: r.metadata,
        request: Some(RequestSpec {
            method: match r.method {
                t::Method::Get => Method::Get,
                t::Method::Post => Method::Post,
            },
            headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            body,
        }),
    }
}

pub async fn parse(
    b: &Plugin,
    store: &mut Store<CallState>,
    page: &PageInput,
) -> wasmtime::Result<Result<(Vec<RawItem>, Vec<RawLink>), Declined>> {
    let headers: Vec<t::HeaderParam<'_>> = page
        .headers
        .iter()
        .map(|(n, v)| t::HeaderParam { name: n, value: v })
        .collect();
    let metadata = page.metadata.as_deref().map(metadata_as_json);
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
            method: method(page.method),
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
    let links = out.requests.into_iter().map(request).collect();
    Ok(Ok((items, links)))
}
