//! `sandcrawl:plugin@0.1.0` (frozen): links only, metadata as text. What 0.1 cannot carry (a
//! method, headers or a body) fails the page with a message that says so.

use crate::wit::sandcrawl::plugin::types as t;
use crate::{LinkKind, Output, Page, ParseError, Plugin};

pub fn manifest<P: Plugin>() -> t::PluginManifest {
    let m = P::new().manifest();
    t::PluginManifest {
        name: m.name,
        version: m.version,
        description: m.description,
        patterns: m.patterns,
        seeds: m.seeds,
    }
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
        metadata: page.context.metadata.map(serde_json::Value::String),
        ..Page::default()
    };
    let plugin = P::new();
    let result = crate::run_plugin(&plugin, &page).and_then(output);
    match result {
        Ok(out) => Ok(out),
        Err(ParseError::NotMine) => Err(t::ParseError::NotMine),
        Err(ParseError::Failed(m)) => Err(t::ParseError::Failed(m)),
    }
}

fn output(o: Output) -> Result<t::ParseOutput, ParseError> {
    let mut links = Vec::with_capacity(o.links.len());
    for l in o.links {
        if l.is_request() {
            return Err(ParseError::Failed(format!(
                "{}: a request with a method, headers or a body needs WIT 0.2; build without the SDK's wit-v0-1 feature",
                l.url
            )));
        }
        links.push(t::Link {
            url: l.url,
            priority: l.priority,
            kind: match l.kind {
                LinkKind::Follow => t::LinkKind::Follow,
                LinkKind::Download => t::LinkKind::Download,
            },
            // 0.1 metadata is text: a JSON string travels as its text, other JSON as JSON text.
            metadata: l.metadata.map(|m| match m {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
        });
    }
    Ok(t::ParseOutput {
        items: o
            .items
            .into_iter()
            .map(|i| t::Item {
                kind: i.kind,
                json: i.json,
            })
            .collect(),
        links,
    })
}
