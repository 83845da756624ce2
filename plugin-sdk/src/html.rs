//! Streaming HTML extraction for plugins: CSS selectors to texts and attributes in one pass
//! over the bytes, without building a tree.
//!
//! It is built on `lol_html`, a streaming rewriter made for hostile input with bounded
//! memory, because a full DOM per page costs several times more (see ARCHITECTURE.md).
//! Plugins that need tree navigation enable the SDK's `dom` feature and call [`Page::dom`].
//! This module only reads the page it is given; it never fetches anything.

use crate::{Page, ParseError};
use lol_html::html_content::{Element, TextChunk};
use lol_html::{
    AsciiCompatibleEncoding, ElementContentHandlers, HtmlRewriter, MemorySettings, Selector,
    Settings,
};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Caps the extractor's own buffers, so a hostile page cannot exhaust the plugin's memory.
const MAX_PARSER_MEMORY: usize = 16 * 1024 * 1024;

#[derive(Debug, Clone)]
enum Target {
    Text,
    Attr(String),
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    selector: String,
    target: Target,
}

/// Describes what to pull out of a page. Build it once per page; running it is one pass.
#[derive(Debug, Clone, Default)]
pub struct Extractor {
    fields: Vec<Field>,
    scope: Option<(String, Vec<Field>)>,
    links: bool,
}

/// Field specs inside a repeated record (see [`Extractor::records`]).
#[derive(Debug, Clone, Default)]
pub struct RecordSpec {
    fields: Vec<Field>,
}

impl RecordSpec {
    /// The text content of every element matching `selector` inside the record.
    pub fn text(mut self, name: &str, selector: &str) -> Self {
        self.fields.push(field(name, selector, Target::Text));
        self
    }

    /// Attribute `attr` of every element matching `selector` inside the record.
    pub fn attr(mut self, name: &str, selector: &str, attr: &str) -> Self {
        self.fields
            .push(field(name, selector, Target::Attr(attr.to_owned())));
        self
    }
}

fn field(name: &str, selector: &str, target: Target) -> Field {
    Field {
        name: name.to_owned(),
        selector: selector.to_owned(),
        target,
    }
}

impl Extractor {
    pub fn new() -> Self {
        Extractor::default()
    }

    /// The whitespace-collapsed text of every element matching `selector`, in document order.
    pub fn text(mut self, name: &str, selector: &str) -> Self {
        self.fields.push(field(name, selector, Target::Text));
        self
    }

    /// Attribute `attr` of every element matching `selector`, in document order.
    pub fn attr(mut self, name: &str, selector: &str, attr: &str) -> Self {
        self.fields
            .push(field(name, selector, Target::Attr(attr.to_owned())));
        self
    }

    /// Repeated records: every element matching `scope` starts a [`Record`], and the fields of
    /// `spec` are matched inside it (e.g. one record per `.quote` with its text and tags).
    pub fn records(mut self, scope: &str, spec: impl FnOnce(RecordSpec) -> RecordSpec) -> Self {
        self.scope = Some((scope.to_owned(), spec(RecordSpec::default()).fields));
        self
    }

    /// Also collect every `<a href>` (with its `rel=nofollow` flag) and the `<base href>`.
    pub fn links(mut self) -> Self {
        self.links = true;
        self
    }

    /// Runs the extractor over the page body, decoding it with the page's encoding.
    pub fn run(&self, page: &Page) -> Result<Matches, ParseError> {
        self.run_bytes(&page.body, &page.encoding)
    }

    /// Runs the extractor over raw bytes in the given encoding (label, e.g. "utf-8").
    pub fn run_bytes(&self, body: &[u8], encoding: &str) -> Result<Matches, ParseError> {
        let state = Rc::new(RefCell::new(Matches::default()));
        let mut handlers: Vec<(Cow<'static, Selector>, ElementContentHandlers<'_>)> = Vec::new();

        for f in &self.fields {
            handlers.extend(field_handlers(f, None, &state)?);
        }
        if let Some((scope, fields)) = &self.scope {
            let sel = parse_selector(scope)?;
            let st = Rc::clone(&state);
            handlers.push((
                Cow::Owned(sel),
                ElementContentHandlers::default().element(move |_: &mut Element| {
                    st.borrow_mut().records.push(Record::default());
                    Ok(())
                }),
            ));
            for f in fields {
                handlers.extend(field_handlers(f, Some(scope), &state)?);
            }
        }
        if self.links {
            let st = Rc::clone(&state);
            handlers.push((
                Cow::Owned(parse_selector("a[href]")?),
                ElementContentHandlers::default().element(move |el: &mut Element| {
                    if let Some(href) = el.get_attribute("href") {
                        let nofollow = el
                            .get_attribute("rel")
                            .is_some_and(|r| r.to_ascii_lowercase().contains("nofollow"));
                        st.borrow_mut().links.push(Anchor {
                            href: decode(&href),
                            nofollow,
                        });
                    }
                    Ok(())
                }),
            ));
            let st = Rc::clone(&state);
            handlers.push((
                Cow::Owned(parse_selector("base[href]")?),
                ElementContentHandlers::default().element(move |el: &mut Element| {
                    let mut s = st.borrow_mut();
                    if s.base.is_none() {
                        s.base = el.get_attribute("href").map(|h| decode(&h));
                    }
                    Ok(())
                }),
            ));
        }

        stream(body, encoding, handlers)?;

        let mut out = state.take();
        out.finish();
        let names = |fields: &[Field]| -> std::sync::Arc<[String]> {
            fields.iter().map(|f| f.name.clone()).collect()
        };
        out.top.declared = names(&self.fields);
        if let Some((_, fields)) = &self.scope {
            let declared = names(fields);
            for r in &mut out.records {
                r.declared = std::sync::Arc::clone(&declared);
            }
        }
        Ok(out)
    }
}

/// Streams `body` (in the `encoding` label) through lol_html with these handlers, under the
/// SDK's memory cap. A handler may stop the pass early by returning [`StopPass`].
pub(crate) fn stream(
    body: &[u8],
    encoding: &str,
    handlers: Vec<Handler<'_>>,
) -> Result<(), ParseError> {
    let encoding = encoding_rs::Encoding::for_label(encoding.as_bytes())
        .and_then(AsciiCompatibleEncoding::new)
        .unwrap_or_else(AsciiCompatibleEncoding::utf_8);
    let mut memory = MemorySettings::new();
    memory.max_allowed_memory_usage = MAX_PARSER_MEMORY;
    let settings = Settings {
        element_content_handlers: handlers,
        encoding,
        memory_settings: memory,
        // Extraction must not give up on the odd ambiguous markup real sites contain.
        strict: false,
        ..Settings::new()
    };
    let mut rewriter = HtmlRewriter::new(settings, |_: &[u8]| {});
    match rewriter.write(body).and_then(|()| rewriter.end()) {
        Ok(()) => Ok(()),
        Err(lol_html::errors::RewritingError::ContentHandlerError(e)) if e.is::<StopPass>() => {
            Ok(())
        }
        Err(e) => Err(ParseError::Failed(format!("HTML extraction: {e}"))),
    }
}

/// Returned by a handler that has seen all it needs: the pass ends early, successfully.
#[derive(Debug)]
pub(crate) struct StopPass;

impl std::fmt::Display for StopPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("stopped early")
    }
}

impl std::error::Error for StopPass {}

/// Parsed selectors by their text. A plugin uses the same few selectors on every page, and
/// the host may reuse its instance for many pages, so each is parsed once per instance;
/// cloning a parsed selector only bumps a reference count. Selectors built from page data
/// could be endless, so the cache stops taking new ones at `SELECTOR_CACHE` entries.
pub(crate) fn parse_selector(s: &str) -> Result<Selector, ParseError> {
    thread_local! {
        static PARSED: RefCell<HashMap<String, Selector>> = RefCell::new(HashMap::new());
    }
    if let Some(sel) = PARSED.with(|c| c.borrow().get(s).cloned()) {
        return Ok(sel);
    }
    let sel = s
        .parse::<Selector>()
        .map_err(|e| ParseError::Failed(format!("bad CSS selector {s:?}: {e}")))?;
    PARSED.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() < SELECTOR_CACHE {
            c.insert(s.to_owned(), sel.clone());
        }
    });
    Ok(sel)
}

const SELECTOR_CACHE: usize = 256;

pub(crate) type Handler<'h> = (Cow<'static, Selector>, ElementContentHandlers<'h>);

/// Handlers for one field. Text fields push an empty string at the start tag and let the text
/// handler append to it, so each matching element yields exactly one value.
fn field_handlers<'h>(
    f: &Field,
    scope: Option<&str>,
    state: &Rc<RefCell<Matches>>,
) -> Result<Vec<Handler<'h>>, ParseError> {
    let css = match scope {
        Some(scope) => format!("{scope} {}", f.selector),
        None => f.selector.clone(),
    };
    let sel = parse_selector(&css)?;
    let in_record = scope.is_some();
    let name = f.name.clone();
    let st = Rc::clone(state);
    let out = match &f.target {
        Target::Attr(attr) => {
            let attr = attr.clone();
            vec![(
                Cow::Owned(sel),
                ElementContentHandlers::default().element(move |el: &mut Element| {
                    if let Some(v) = el.get_attribute(&attr) {
                        st.borrow_mut().slot(in_record, &name).push(decode(&v));
                    }
                    Ok(())
                }),
            )]
        }
        Target::Text => {
            let name2 = name.clone();
            let st2 = Rc::clone(state);
            vec![(
                Cow::Owned(sel),
                ElementContentHandlers::default()
                    .element(move |_: &mut Element| {
                        st.borrow_mut().slot(in_record, &name).push(String::new());
                        Ok(())
                    })
                    .text(move |t: &mut TextChunk| {
                        let mut s = st2.borrow_mut();
                        if let Some(last) = s.slot(in_record, &name2).last_mut() {
                            last.push_str(t.as_str());
                        }
                        Ok(())
                    }),
            )]
        }
    };
    Ok(out)
}

pub(crate) fn decode(raw: &str) -> String {
    html_escape::decode_html_entities(raw).into_owned()
}

pub(crate) fn clean_text(raw: &str) -> String {
    let decoded = html_escape::decode_html_entities(raw);
    decoded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One `<a href>` found by [`Extractor::links`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub href: String,
    pub nofollow: bool,
}

/// One repeated record found by [`Extractor::records`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    fields: HashMap<String, Vec<String>>,
    /// The field names the extractor declared here; asking for another is a bug.
    declared: std::sync::Arc<[String]>,
}

impl Record {
    /// A name the extractor never declared would silently give nothing on every page: that
    /// is a typo, and it panics with the declared names (in a native test the test fails; in
    /// a crawl the page fails with this message).
    fn check(&self, name: &str) {
        if !self.declared.is_empty() && !self.declared.iter().any(|d| d == name) {
            panic!(
                "field {name:?} was never declared on this Extractor (declared: {}); check its spelling",
                self.declared.join(", ")
            );
        }
    }

    /// The first value of a field, if any matched. Panics for a name the extractor never
    /// declared (a misspelt field must not silently return nothing).
    pub fn first(&self, name: &str) -> Option<&str> {
        self.check(name);
        self.fields
            .get(name)
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// Every value of a field, in document order. Panics for an undeclared name, as `first`.
    pub fn all(&self, name: &str) -> &[String] {
        self.check(name);
        self.fields.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// What an [`Extractor`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matches {
    top: Record,
    records: Vec<Record>,
    links: Vec<Anchor>,
    base: Option<String>,
}

impl Matches {
    fn slot(&mut self, in_record: bool, name: &str) -> &mut Vec<String> {
        let rec = if in_record {
            // A record field outside any record cannot happen (the selector is scoped), but
            // a stray match must not panic: it lands in a record of its own.
            if self.records.is_empty() {
                self.records.push(Record::default());
            }
            let last = self.records.len() - 1;
            &mut self.records[last]
        } else {
            &mut self.top
        };
        rec.fields.entry(name.to_owned()).or_default()
    }

    fn finish(&mut self) {
        for rec in std::iter::once(&mut self.top).chain(self.records.iter_mut()) {
            for values in rec.fields.values_mut() {
                for v in values.iter_mut() {
                    *v = clean_text(v);
                }
            }
        }
    }

    /// The first value of a top-level field.
    pub fn first(&self, name: &str) -> Option<&str> {
        self.top.first(name)
    }

    /// Every value of a top-level field, in document order.
    pub fn all(&self, name: &str) -> &[String] {
        self.top.all(name)
    }

    /// Records found by [`Extractor::records`], in document order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Anchors found by [`Extractor::links`], in document order.
    pub fn anchors(&self) -> &[Anchor] {
        &self.links
    }

    /// The document's `<base href>`, if any.
    pub fn base(&self) -> Option<&str> {
        self.base.as_deref()
    }

    /// The URL relative links resolve against: `<base href>` (itself resolved against the
    /// page URL) or the page URL.
    pub fn base_url(&self, page_url: &str) -> String {
        self.base
            .as_deref()
            .and_then(|b| resolve(page_url, b))
            .unwrap_or_else(|| page_url.to_owned())
    }

    /// Resolves a (possibly relative) href found on this page.
    pub fn resolve(&self, page_url: &str, href: &str) -> Option<String> {
        resolve(&self.base_url(page_url), href)
    }

    /// Absolute http(s) URLs of all followable anchors (`rel=nofollow` skipped), resolved
    /// against `<base href>`, in document order.
    pub fn follow_urls(&self, page_url: &str) -> Vec<String> {
        // Parse the base once, not per link: URL parsing dominates link-heavy pages.
        let Ok(base) = url::Url::parse(&self.base_url(page_url)) else {
            return Vec::new();
        };
        self.links
            .iter()
            .filter(|a| !a.nofollow)
            .filter_map(|a| base.join(a.href.trim()).ok())
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .map(String::from)
            .collect()
    }
}

/// Resolves `href` against `base`; `None` unless the result is an http(s) URL.
pub fn resolve(base: &str, href: &str) -> Option<String> {
    let base = url::Url::parse(base).ok()?;
    let joined = base.join(href.trim()).ok()?;
    matches!(joined.scheme(), "http" | "https").then(|| joined.into())
}

#[cfg(feature = "dom")]
impl Page {
    /// The page as a full DOM tree (html5ever via `scraper`). Several times costlier than
    /// [`Extractor`]; use it when the site needs tree navigation.
    pub fn dom(&self) -> scraper::Html {
        scraper::Html::parse_document(&self.text())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_misspelt_field_name_panics_with_the_declared_ones() {
        let m = Extractor::new()
            .text("title", "h1")
            .records("li", |r| r.text("name", "b"))
            .run_bytes(b"<h1>T</h1><ul><li><b>x</b></li></ul>", "utf-8")
            .unwrap_or_default();
        assert_eq!(m.first("title"), Some("T"));
        assert_eq!(m.records()[0].first("name"), Some("x"));
        let top = std::panic::catch_unwind(|| m.first("titel").map(str::to_owned));
        let msg = top
            .err()
            .and_then(|p| p.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(
            msg.contains("\"titel\" was never declared") && msg.contains("title"),
            "{msg}"
        );
        let rec = m.records()[0].clone();
        assert!(std::panic::catch_unwind(move || rec.all("nmae").len()).is_err());
    }

    use super::*;

    const PAGE: &str = r#"<html><head><base href="/shop/"><title>T &amp; Co</title></head>
      <body><h1 class="t">  Hello
        <b>world</b> </h1>
      <div class="q"><span class="x">one</span><a class="tag" href="a">A</a><a class="tag" href="b">B</a></div>
      <div class="q"><span class="x">two</span></div>
      <a href="n" rel="nofollow">skip</a><a href="javascript:void(0)">js</a>
      <img class="m" src="/img/1.jpg?a=1&amp;b=2"></body></html>"#;

    #[test]
    fn extracts_text_attrs_records_and_links() {
        let m = Extractor::new()
            .text("title", "title")
            .text("h1", "h1.t")
            .attr("img", "img.m", "src")
            .records("div.q", |r| r.text("x", ".x").text("tags", "a.tag"))
            .links()
            .run_bytes(PAGE.as_bytes(), "utf-8")
            .unwrap();
        assert_eq!(m.first("title"), Some("T & Co"));
        assert_eq!(m.first("h1"), Some("Hello world"));
        assert_eq!(m.first("img"), Some("/img/1.jpg?a=1&b=2"));
        assert_eq!(m.records().len(), 2);
        assert_eq!(m.records()[0].first("x"), Some("one"));
        assert_eq!(m.records()[0].all("tags"), ["A", "B"]);
        assert!(m.records()[1].all("tags").is_empty());
        assert_eq!(
            m.follow_urls("http://e.com/dir/page"),
            ["http://e.com/shop/a", "http://e.com/shop/b"]
        );
    }

    #[test]
    fn bad_selector_is_an_error_not_a_panic() {
        let err = Extractor::new()
            .text("x", "div[[")
            .run_bytes(b"<p>", "utf-8")
            .unwrap_err();
        assert!(matches!(err, ParseError::Failed(m) if m.contains("div[[")));
    }

    #[test]
    fn cached_selectors_give_the_same_results_page_after_page() {
        // One thread stands for one wasm instance serving several pages.
        let ex = Extractor::new().text("x", "div.q .x").links();
        for _ in 0..3 {
            let m = ex.run_bytes(PAGE.as_bytes(), "utf-8").unwrap();
            assert_eq!(m.all("x"), ["one", "two"]);
            assert_eq!(m.follow_urls("http://e.com/").len(), 2);
            let other = ex
                .run_bytes(b"<div class=q><i class=x>z</i></div>", "utf-8")
                .unwrap();
            assert_eq!(other.all("x"), ["z"]);
            let bad = Extractor::new()
                .text("x", "div[[")
                .run_bytes(b"<p>", "utf-8");
            assert!(bad.is_err(), "a bad selector is never cached as good");
        }
    }

    #[test]
    fn latin1_and_invalid_utf8_do_not_panic() {
        let m = Extractor::new()
            .text("p", "p")
            .run_bytes(b"<p>caf\xe9</p>", "windows-1252")
            .unwrap();
        assert_eq!(m.first("p"), Some("café"));
        let m = Extractor::new()
            .text("p", "p")
            .run_bytes(b"<p>bad \xff\xfe</p>", "utf-8")
            .unwrap();
        assert!(m.first("p").is_some());
    }
}
