//! Plain Rust mirrors of the WIT records. Plugin code works only with these types; the
//! conversions to and from the generated bindings are `abi`'s.

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
    /// URL patterns matched by the host against whole URLs: `*` within one path segment,
    /// `**` across segments, a leading `/` for the path on any host (see [`crate::UrlPattern`];
    /// in a `wit-v0-1` build they are globs where `*` matches anything).
    pub patterns: Vec<String>,
    /// Seeds used when a crawl names none.
    pub seeds: Vec<String>,
    /// Whether the pages need a browser (WIT 0.2).
    pub rendering: Rendering,
}

/// How a plugin's pages must be fetched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rendering {
    /// A plain HTTP fetch is enough.
    #[default]
    Http,
    /// The pages need a browser to run their JavaScript first.
    Browser,
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

    /// Declares that the plugin's pages need a browser to run their JavaScript.
    pub fn needs_browser(mut self) -> Self {
        self.rendering = Rendering::Browser;
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
    /// The metadata this plugin attached to the request that led here.
    pub metadata: Option<serde_json::Value>,
    /// The method of the request that fetched the page.
    pub method: Method,
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

    /// The metadata as text, when it is a JSON string (what `set_metadata("text")` gave).
    pub fn metadata_str(&self) -> Option<&str> {
        self.metadata.as_ref().and_then(serde_json::Value::as_str)
    }

    /// Resolves `href` against the page URL. Returns `None` for unparsable or non-http(s)
    /// results (javascript:, mailto:, data: ...). Use [`crate::html::Matches::base`] when the
    /// page has a `<base href>`.
    pub fn join(&self, href: &str) -> Option<String> {
        crate::html::resolve(&self.url, href)
    }
}

/// What a link proposal asks the host to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    #[default]
    Follow,
    Download,
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

/// The request methods a plugin may use: reading, and submitting a form or an API query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
}

/// A request body; the host sets the Content-Type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Form fields, sent as `application/x-www-form-urlencoded` in this order.
    Form(Vec<(String, String)>),
    /// One JSON document, sent as `application/json`.
    Json(String),
}

/// A link or request proposal. The host applies scope, robots.txt, dedup and politeness to
/// it. Dedup covers the URL, the method and the body (not the headers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProposedLink {
    pub url: String,
    pub priority: Option<i32>,
    pub kind: LinkKind,
    /// Any JSON, handed back on the child page as [`Page::metadata`].
    pub metadata: Option<serde_json::Value>,
    pub method: Method,
    /// Extra request headers (not connection, cookie, authorization or content-type headers,
    /// which the host refuses).
    pub headers: Vec<(String, String)>,
    pub body: Option<Body>,
}

impl ProposedLink {
    /// Sets the priority (higher is fetched sooner); chainable after [`Output::follow_href`].
    pub fn set_priority(&mut self, priority: i32) -> &mut Self {
        self.priority = Some(priority);
        self
    }

    /// Sets the metadata handed back on the child page as [`Page::metadata`]: a string, or
    /// anything that serializes to JSON.
    pub fn set_metadata<T: Serialize + ?Sized>(&mut self, metadata: &T) -> &mut Self {
        self.metadata = serde_json::to_value(metadata).ok();
        self
    }

    /// Whether this is more than a plain GET (a method, headers or a body).
    pub fn is_request(&self) -> bool {
        self.method != Method::Get || !self.headers.is_empty() || self.body.is_some()
    }
}

/// A request to propose, built step by step instead of with positional `Option`s:
/// `out.request(Request::follow(url).priority(10).metadata("author"))`, or a search form:
/// `Request::follow(url).post_form([("q", "rust")])`.
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
                kind,
                ..ProposedLink::default()
            },
        }
    }

    /// Higher is fetched sooner; the default is 0.
    pub fn priority(mut self, priority: i32) -> Self {
        self.link.priority = Some(priority);
        self
    }

    /// Metadata handed back on the child page as [`Page::metadata`]: a string, or anything
    /// that serializes to JSON (keep it small: the host drops metadata over 4 KiB).
    pub fn metadata<T: Serialize + ?Sized>(mut self, metadata: &T) -> Self {
        self.link.metadata = serde_json::to_value(metadata).ok();
        self
    }

    /// A POST of these form fields (`application/x-www-form-urlencoded`), like submitting a
    /// search form.
    pub fn post_form<K: Into<String>, V: Into<String>>(
        mut self,
        fields: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.link.method = Method::Post;
        self.link.body = Some(Body::Form(
            fields
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        ));
        self
    }

    /// A POST of this JSON document (`application/json`), like a call to a JSON API. A value
    /// that does not serialize gives `null`.
    pub fn post_json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        self.link.method = Method::Post;
        let json = serde_json::to_string(body).unwrap_or_else(|_| "null".to_owned());
        self.link.body = Some(Body::Json(json));
        self
    }

    /// An extra request header (`Accept: application/json`, `X-Requested-With`, ...).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.link.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The proposal as it stands.
    pub fn into_link(self) -> ProposedLink {
        self.link
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
        // Serialized straight to text, not through a `Value` (whose map sorts its keys), so
        // the fields keep the order the plugin wrote them in: a struct's declaration order.
        let json = serde_json::to_string(fields)
            .map_err(|e| ParseError::Failed(format!("item of kind {kind}: {e}")))?;
        if !json.starts_with('{') {
            return Err(ParseError::Failed(format!(
                "item of kind {kind} must serialize to a JSON object"
            )));
        }
        self.items.push(Item {
            kind: kind.to_owned(),
            json,
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

    /// Proposes a link with a priority and metadata (text) handed back on the child page.
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
            metadata: metadata.map(serde_json::Value::String),
            ..ProposedLink::default()
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
        out.request(
            Request::follow("http://e.com/search")
                .post_form([("q", "rust"), ("page", "1")])
                .header("X-Requested-With", "sandcrawl")
                .metadata(&serde_json::json!({"q": "rust"})),
        );
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
                    ..ProposedLink::default()
                },
                ProposedLink {
                    url: "http://e.com/img/1.jpg".into(),
                    kind: LinkKind::Download,
                    metadata: Some("img".into()),
                    ..ProposedLink::default()
                },
                ProposedLink {
                    url: "http://e.com/search".into(),
                    metadata: Some(serde_json::json!({"q": "rust"})),
                    method: Method::Post,
                    headers: vec![("X-Requested-With".into(), "sandcrawl".into())],
                    body: Some(Body::Form(vec![
                        ("q".into(), "rust".into()),
                        ("page".into(), "1".into())
                    ])),
                    ..ProposedLink::default()
                },
                ProposedLink {
                    url: "http://e.com/x/b".into(),
                    ..ProposedLink::default()
                },
                ProposedLink {
                    url: "http://e.com/next".into(),
                    priority: Some(10),
                    metadata: Some("m".into()),
                    ..ProposedLink::default()
                },
            ]
        );
        assert!(out.links[2].is_request() && !out.links[0].is_request());
        // Fields keep the order they were written in; anything but an object is refused.
        #[derive(Serialize)]
        struct Z {
            zebra: u8,
            apple: u8,
        }
        let mut items = Output::default();
        items.item("z", &Z { zebra: 1, apple: 2 }).unwrap();
        assert_eq!(items.items[0].json, "{\"zebra\":1,\"apple\":2}");
        assert!(items.item("n", &3).is_err());
        assert!(items.item("s", "text").is_err());

        // The base cache never makes equal outputs unequal.
        let fresh = Output {
            links: out.links.clone(),
            ..Output::default()
        };
        assert_eq!(fresh, out);
    }
}
