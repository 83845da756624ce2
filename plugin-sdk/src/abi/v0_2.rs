//! `sandcrawl:plugin@0.2.0`: requests with a method, headers and a body; JSON metadata;
//! start requests; a rendering declaration.

use crate::wit::sandcrawl::plugin::types as t;
use crate::{Body, LinkKind, Method, Output, Page, ParseError, Plugin, ProposedLink, Rendering};

pub fn manifest<P: Plugin>() -> t::PluginManifest {
    let m = P::new().manifest();
    t::PluginManifest {
        name: m.name,
        version: m.version,
        description: m.description,
        patterns: m.patterns,
        seeds: m.seeds,
        rendering: match m.rendering {
            Rendering::Http => t::Rendering::Http,
            Rendering::Browser => t::Rendering::Browser,
        },
    }
}

pub fn start_requests<P: Plugin>() -> Vec<t::Request> {
    P::new()
        .start_requests()
        .into_iter()
        .map(|r| request(r.into_link()))
        .collect()
}

pub fn parse<P: Plugin>(page: t::Page) -> Result<t::ParseOutput, t::ParseError> {
    let page = Page {
        url: page.url,
        status: page.status,
        headers: page
            .headers
            .into_iter()
            .map(|h| (h.name, h.value))
            .collect(),
        body: page.body,
        encoding: page.encoding,
        depth: page.context.depth,
        referrer: page.context.referrer,
        // The host hands back valid JSON; anything else would be a host bug, kept as text.
        metadata: page
            .context
            .metadata
            .map(|m| serde_json::from_str(&m).unwrap_or(serde_json::Value::String(m))),
        method: match page.context.method {
            t::Method::Get => Method::Get,
            t::Method::Post => Method::Post,
        },
    };
    let plugin = P::new();
    match crate::run_plugin(&plugin, &page) {
        Ok(out) => Ok(output(out)),
        Err(ParseError::NotMine) => Err(t::ParseError::NotMine),
        Err(ParseError::Failed(m)) => Err(t::ParseError::Failed(m)),
    }
}

fn output(o: Output) -> t::ParseOutput {
    t::ParseOutput {
        items: o
            .items
            .into_iter()
            .map(|i| t::Item {
                kind: i.kind,
                json: i.json,
            })
            .collect(),
        requests: o.links.into_iter().map(request).collect(),
    }
}

fn request(l: ProposedLink) -> t::Request {
    t::Request {
        url: l.url,
        method: match l.method {
            Method::Get => t::Method::Get,
            Method::Post => t::Method::Post,
        },
        headers: l
            .headers
            .into_iter()
            .map(|(name, value)| t::Header { name, value })
            .collect(),
        body: l.body.map(|b| match b {
            Body::Form(pairs) => t::Body::Form(pairs),
            Body::Json(text) => t::Body::Json(text),
        }),
        priority: l.priority,
        kind: match l.kind {
            LinkKind::Follow => t::RequestKind::Follow,
            LinkKind::Download => t::RequestKind::Download,
        },
        metadata: l.metadata.map(|m| m.to_string()),
    }
}
