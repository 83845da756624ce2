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

/// Items and links collected while parsing one page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub items: Vec<Item>,
    pub links: Vec<ProposedLink>,
}

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
