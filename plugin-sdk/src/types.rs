//! Plain Rust mirrors of the WIT records, and the conversions to and from the generated
//! bindings. Plugin code works only with these types.

use crate::wit::sandcrawl::plugin::types as t;
use serde::Serialize;
use std::borrow::Cow;

/// Log severity for [`crate::log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// Who a plugin is and which URLs it handles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: String,
    /// URL globs matched by the host; `*` matches any run of characters.
    pub patterns: Vec<String>,
    /// Seeds used when a crawl names none.
    pub seeds: Vec<String>,
}

impl Manifest {
    pub fn new(name: &str, version: &str) -> Self {
        Manifest {
            name: name.to_owned(),
            version: version.to_owned(),
            ..Manifest::default()
        }
    }

    pub fn description(mut self, text: &str) -> Self {
        self.description = text.to_owned();
        self
    }

    pub fn pattern(mut self, glob: &str) -> Self {
        self.patterns.push(glob.to_owned());
        self
    }

    pub fn seed(mut self, url: &str) -> Self {
        self.seeds.push(url.to_owned());
        self
    }
}

/// A fetched page as the host hands it over.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Final URL after redirects.
    pub url: String,
    pub status: u16,
    /// Response headers in received order, duplicates kept.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Encoding label detected by the host ("utf-8", "windows-1252", ...).
    pub encoding: String,
    /// Link hops from the seed.
    pub depth: u32,
    pub referrer: Option<String>,
    /// Metadata this plugin attached to the link that led here.
    pub metadata: Option<String>,
}

impl Page {
    /// A 200 HTML page, for tests.
    pub fn html(url: &str, body: impl Into<Vec<u8>>) -> Self {
        Page {
            url: url.to_owned(),
            status: 200,
            headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
            body: body.into(),
            encoding: "utf-8".into(),
            ..Page::default()
        }
    }

    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// True when the content type says HTML, or when there is none and the body looks like it.
    pub fn is_html(&self) -> bool {
        match self.header("content-type") {
            Some(ct) => {
                let ct = ct.to_ascii_lowercase();
                ct.contains("text/html") || ct.contains("application/xhtml")
            }
            None => {
                let head = &self.body[..self.body.len().min(512)];
                String::from_utf8_lossy(head)
                    .to_ascii_lowercase()
                    .contains("<html")
            }
        }
    }

    /// The body decoded to text with the detected encoding; invalid bytes become U+FFFD.
    pub fn text(&self) -> Cow<'_, str> {
        let enc = encoding_rs::Encoding::for_label(self.encoding.as_bytes())
            .unwrap_or(encoding_rs::UTF_8);
        enc.decode_without_bom_handling(&self.body).0
    }

    /// Resolves `href` against the page URL. Returns `None` for unparsable or non-http(s)
    /// results (javascript:, mailto:, data: ...). Use [`crate::html::Matches::base`] when the
    /// page has a `<base href>`.
    pub fn join(&self, href: &str) -> Option<String> {
        crate::html::resolve(&self.url, href)
    }
}

/// What a link proposal asks the host to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    Follow,
    Download,
}

/// A link proposal. The host applies scope, robots.txt, dedup and politeness to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProposedLink {
    pub url: String,
    pub priority: Option<i32>,
    pub kind: LinkKind,
    pub metadata: Option<String>,
}

/// One extracted record: a kind and a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub kind: String,
    pub json: String,
}

impl Item {
    /// The item's fields as a JSON value.
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.json).unwrap_or(serde_json::Value::Null)
    }
}

impl ProposedLink {
    /// Sets the priority (higher is fetched sooner); chainable after [`Output::follow_href`].
    pub fn set_priority(&mut self, priority: i32) -> &mut Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the metadata handed back on the child page as [`Page::metadata`].
    pub fn set_metadata(&mut self, metadata: impl Into<String>) -> &mut Self {
        self.metadata = Some(metadata.into());
        self
    }
}

/// A request to propose, built step by step instead of with positional `Option`s:
/// `out.request(Request::follow(url).priority(10).metadata("author"))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    link: ProposedLink,
}

impl Request {
    /// A page to fetch and route to the plugins.
    pub fn follow(url: impl Into<String>) -> Self {
        Request::new(url.into(), LinkKind::Follow)
    }

    /// A file to save into the crawl's files directory.
    pub fn download(url: impl Into<String>) -> Self {
        Request::new(url.into(), LinkKind::Download)
    }

    fn new(url: String, kind: LinkKind) -> Self {
        Request {
            link: ProposedLink {
                url,
                priority: None,
                kind,
                metadata: None,
            },
        }
    }

    /// Higher is fetched sooner; the default is 0.
    pub fn priority(mut self, priority: i32) -> Self {
        self.link.priority = Some(priority);
        self
    }

    /// A small string handed back on the child page as [`Page::metadata`].
    pub fn metadata(mut self, metadata: impl Into<String>) -> Self {
        self.link.metadata = Some(metadata.into());
        self
    }
}

/// Items and links collected while parsing one page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub items: Vec<Item>,
    pub links: Vec<ProposedLink>,
    base: BaseCache,
}

/// The last page's base URL, so that resolving many hrefs costs one `<base>` scan per page.
/// It is a cache, so it never makes two outputs unequal.
#[derive(Debug, Clone, Default)]
struct BaseCache(Option<(BaseKey, String)>);

/// Which page a cached base belongs to: its URL and the identity of its body buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BaseKey {
    url: String,
    body: usize,
    len: usize,
}

impl PartialEq for BaseCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for BaseCache {}

impl Output {
    /// Adds an item from anything that serializes to a JSON object.
    pub fn item<T: Serialize + ?Sized>(
        &mut self,
        kind: &str,
        fields: &T,
    ) -> Result<(), ParseError> {
        let value = serde_json::to_value(fields)
            .map_err(|e| ParseError::Failed(format!("item of kind {kind}: {e}")))?;
        if !value.is_object() {
            return Err(ParseError::Failed(format!(
                "item of kind {kind} must serialize to a JSON object"
            )));
        }
        self.items.push(Item {
            kind: kind.to_owned(),
            json: value.to_string(),
        });
        Ok(())
    }

    /// Proposes a page to crawl.
    pub fn follow(&mut self, url: impl Into<String>) {
        self.link(url, LinkKind::Follow, None, None);
    }

    /// Proposes a file to download into the crawl's files directory.
    pub fn download(&mut self, url: impl Into<String>) {
        self.link(url, LinkKind::Download, None, None);
    }

    /// Proposes a link with a priority and metadata handed back on the child page.
    pub fn link(
        &mut self,
        url: impl Into<String>,
        kind: LinkKind,
        priority: Option<i32>,
        metadata: Option<String>,
    ) {
        self.links.push(ProposedLink {
            url: url.into(),
            priority,
            kind,
            metadata,
        });
    }

    /// Proposes a request built with [`Request`].
    pub fn request(&mut self, request: Request) {
        self.links.push(request.link);
    }

    /// Resolves `href` as found on `page` (against its `<base href>`, else its URL) and
    /// proposes it as a page to follow, like Scrapy's `response.follow(href)`. Returns the
    /// proposal, to set a priority or metadata on, or `None` when `href` does not resolve to
    /// an http(s) URL (`javascript:`, `mailto:`, garbage), in which case nothing is proposed.
    pub fn follow_href(&mut self, page: &Page, href: &str) -> Option<&mut ProposedLink> {
        self.href_link(page, href, LinkKind::Follow)
    }

    /// As [`Output::follow_href`], for a file to download.
    pub fn download_href(&mut self, page: &Page, href: &str) -> Option<&mut ProposedLink> {
        self.href_link(page, href, LinkKind::Download)
    }

    /// Resolves `href` as found on `page`, against its `<base href>` or its URL; `None`
    /// unless the result is an http(s) URL.
    pub fn resolve_href(&mut self, page: &Page, href: &str) -> Option<String> {
        let key = BaseKey {
            url: page.url.clone(),
            body: page.body.as_ptr() as usize,
            len: page.body.len(),
        };
        let base = match &self.base.0 {
            Some((k, base)) if *k == key => base,
            _ => &self.base.0.insert((key, page.base_url())).1,
        };
        crate::html::resolve(base, href)
    }

    fn href_link(&mut self, page: &Page, href: &str, kind: LinkKind) -> Option<&mut ProposedLink> {
        let url = self.resolve_href(page, href)?;
        self.link(url, kind, None, None);
        self.links.last_mut()
    }

    /// URLs of the `follow` links, in order (handy in tests).
    pub fn follows(&self) -> Vec<&str> {
        self.urls(LinkKind::Follow)
    }

    /// URLs of the `download` links, in order (handy in tests).
    pub fn downloads(&self) -> Vec<&str> {
        self.urls(LinkKind::Download)
    }

    fn urls(&self, kind: LinkKind) -> Vec<&str> {
        self.links
            .iter()
            .filter(|l| l.kind == kind)
            .map(|l| l.url.as_str())
            .collect()
    }
}

/// Why a page produced no output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not a page this plugin understands; skipped without counting as an error.
    NotMine,
    /// Extraction failed; the message is logged and counted by the host.
    Failed(String),
}

impl ParseError {
    pub fn failed(message: impl Into<String>) -> Self {
        ParseError::Failed(message.into())
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::NotMine => f.write_str("not my page"),
            ParseError::Failed(m) => write!(f, "extraction failed: {m}"),
        }
    }
}

impl std::error::Error for ParseError {}

impl From<t::Page> for Page {
    fn from(p: t::Page) -> Self {
        Page {
            url: p.url,
            status: p.status,
            headers: p.headers.into_iter().map(|h| (h.name, h.value)).collect(),
            body: p.body,
            encoding: p.encoding,
            depth: p.context.depth,
            referrer: p.context.referrer,
            metadata: p.context.metadata,
        }
    }
}

impl From<Manifest> for t::PluginManifest {
    fn from(m: Manifest) -> Self {
        t::PluginManifest {
            name: m.name,
            version: m.version,
            description: m.description,
            patterns: m.patterns,
            seeds: m.seeds,
        }
    }
}

impl From<Output> for t::ParseOutput {
    fn from(o: Output) -> Self {
        t::ParseOutput {
            items: o
                .items
                .into_iter()
                .map(|i| t::Item {
                    kind: i.kind,
                    json: i.json,
                })
                .collect(),
            links: o
                .links
                .into_iter()
                .map(|l| t::Link {
                    url: l.url,
                    priority: l.priority,
                    kind: match l.kind {
                        LinkKind::Follow => t::LinkKind::Follow,
                        LinkKind::Download => t::LinkKind::Download,
                    },
                    metadata: l.metadata,
                })
                .collect(),
        }
    }
}

impl From<ParseError> for t::ParseError {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::NotMine => t::ParseError::NotMine,
            ParseError::Failed(m) => t::ParseError::Failed(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follow_href_resolves_against_base_and_skips_non_http() {
        let page = Page::html(
            "http://e.com/dir/page",
            r#"<head><base href="/shop/"></head><a href="a">"#,
        );
        let other = Page::html("http://e.com/x/y", "<a href=b>");
        let mut out = Output::default();
        out.follow_href(&page, "a").map(|l| l.set_priority(5));
        assert!(out.follow_href(&page, "javascript:void(0)").is_none());
        assert!(out.follow_href(&page, "mailto:a@b").is_none());
        out.download_href(&page, "/img/1.jpg")
            .map(|l| l.set_metadata("img"));
        // A second page on the same output resolves against its own URL, not the cached base.
        out.follow_href(&other, "b");
        out.request(
            Request::follow("http://e.com/next")
                .priority(10)
                .metadata("m"),
        );
        assert_eq!(
            out.links,
            [
                ProposedLink {
                    url: "http://e.com/shop/a".into(),
                    priority: Some(5),
                    kind: LinkKind::Follow,
                    metadata: None
                },
                ProposedLink {
                    url: "http://e.com/img/1.jpg".into(),
                    priority: None,
                    kind: LinkKind::Download,
                    metadata: Some("img".into())
                },
                ProposedLink {
                    url: "http://e.com/x/b".into(),
                    priority: None,
                    kind: LinkKind::Follow,
                    metadata: None
                },
                ProposedLink {
                    url: "http://e.com/next".into(),
                    priority: Some(10),
                    kind: LinkKind::Follow,
                    metadata: Some("m".into())
                },
            ]
        );
        // The base cache never makes equal outputs unequal.
        let mut fresh = Output::default();
        fresh.links = out.links.clone();
        assert_eq!(fresh, out);
    }
}
