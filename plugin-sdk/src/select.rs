//! One-line selections, Scrapy-style: `page.select("li.next a").attr("href")`.
//!
//! Each [`Page::select`] is one streaming pass (lol_html) that keeps, for every matching
//! element, its attributes, its text and its own text. [`Page::select_many`] runs several
//! selectors in one pass, and [`crate::html::Extractor`] stays the fastest way to pull many
//! fields out of a page. This module only reads the page it is given.

use crate::html::{Handler, StopPass, clean_text, decode, parse_selector, stream};
use crate::{Page, ParseError};
use lol_html::ElementContentHandlers;
use lol_html::html_content::{Element, TextChunk};
use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// One element matched by [`Page::select`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    tag: String,
    attrs: Vec<(String, String)>,
    text: String,
    own_text: String,
}

impl Node {
    /// The lowercase tag name (`"a"`, `"li"`).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// An attribute's value, entities decoded; `None` when the element has no such attribute.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every attribute, in source order.
    pub fn attrs(&self) -> &[(String, String)] {
        &self.attrs
    }

    /// The text of the element and everything inside it, entities decoded and whitespace
    /// collapsed (`<p>Hello <b>world</b></p>` → `"Hello world"`).
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Only the text directly inside the element, not inside its child elements
    /// (`<p>Hello <b>world</b></p>` → `"Hello"`), like XPath's `text()`.
    pub fn own_text(&self) -> &str {
        &self.own_text
    }
}

/// Every element a CSS selector matched, in document order.
///
/// Nested matches (a `div` inside a matched `div`) are both kept; text inside the inner one
/// counts towards the inner one only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    nodes: Vec<Node>,
}

impl Selection {
    /// The first match.
    pub fn first(&self) -> Option<&Node> {
        self.nodes.first()
    }

    /// Every match.
    pub fn all(&self) -> &[Node] {
        &self.nodes
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The first match's text (see [`Node::text`]), like Scrapy's `.css("x::text").get()`.
    pub fn text(&self) -> Option<&str> {
        self.first().map(Node::text)
    }

    /// Every match's text, in document order, like Scrapy's `.getall()`.
    pub fn texts(&self) -> Vec<&str> {
        self.nodes.iter().map(Node::text).collect()
    }

    /// The first match's own text (see [`Node::own_text`]).
    pub fn own_text(&self) -> Option<&str> {
        self.first().map(Node::own_text)
    }

    /// An attribute of the first match that has it, like `.css("a::attr(href)").get()`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.nodes.iter().find_map(|n| n.attr(name))
    }

    /// That attribute of every match that has it, in document order.
    pub fn attrs(&self, name: &str) -> Vec<&str> {
        self.nodes.iter().filter_map(|n| n.attr(name)).collect()
    }
}

impl<'a> IntoIterator for &'a Selection {
    type Item = &'a Node;
    type IntoIter = std::slice::Iter<'a, Node>;
    fn into_iter(self) -> Self::IntoIter {
        self.nodes.iter()
    }
}

impl Page {
    /// Every element matching the CSS selector `css`, in one pass over the page.
    ///
    /// Panics when `css` is not a valid selector, with the selector and the reason: selectors
    /// are written in the plugin's code, so a bad one is a bug the first native test finds
    /// (in a crawl the page fails with that message). Use [`Page::try_select`] for selectors
    /// built at run time.
    pub fn select(&self, css: &str) -> Selection {
        match self.try_select(css) {
            Ok(s) => s,
            Err(e) => panic!("page.select({css:?}): {e}"),
        }
    }

    /// Like [`Page::select`], but a bad selector (or an HTML stream over the SDK's memory cap)
    /// is an error, not a panic.
    pub fn try_select(&self, css: &str) -> Result<Selection, ParseError> {
        let mut all = self.try_select_many(&[css])?;
        Ok(all.pop().unwrap_or_default())
    }

    /// Several selectors in a single pass over the page, one [`Selection`] per selector in the
    /// same order. Panics on a bad selector, as [`Page::select`].
    pub fn select_many<const N: usize>(&self, css: [&str; N]) -> [Selection; N] {
        match self.try_select_many(&css) {
            Ok(v) => {
                let mut it = v.into_iter();
                std::array::from_fn(|_| it.next().unwrap_or_default())
            }
            Err(e) => panic!("page.select_many({css:?}): {e}"),
        }
    }

    /// Several selectors in one pass; errors instead of panicking.
    pub fn try_select_many(&self, css: &[&str]) -> Result<Vec<Selection>, ParseError> {
        let states: Vec<Rc<Collect>> = css.iter().map(|_| Rc::default()).collect();
        let mut handlers: Vec<Handler<'_>> = Vec::with_capacity(css.len() * 2);
        for (sel, state) in css.iter().zip(&states) {
            handlers.extend(select_handlers(sel, state)?);
        }
        stream(&self.body, &self.encoding, handlers)?;
        Ok(states
            .into_iter()
            .map(|s| {
                let mut nodes = s.nodes.take();
                for n in &mut nodes {
                    n.text = clean_text(&n.text);
                    n.own_text = clean_text(&n.own_text);
                }
                Selection { nodes }
            })
            .collect())
    }

    /// The URL relative links on this page resolve against: its `<base href>` (resolved
    /// against the page URL) when it has one, else the page URL. As in browsers, the first
    /// `<base href>` anywhere in the document counts; the scan stops there.
    pub fn base_url(&self) -> String {
        let found: Rc<RefCell<Option<String>>> = Rc::default();
        let seen = Rc::clone(&found);
        let handlers = match parse_selector("base[href]") {
            Ok(base) => vec![(
                Cow::Owned(base),
                ElementContentHandlers::default().element(move |el: &mut Element| {
                    *seen.borrow_mut() = el.get_attribute("href").map(|h| decode(&h));
                    Err(StopPass.into())
                }),
            )],
            Err(_) => Vec::new(),
        };
        // A page lol_html cannot stream has no base it could see either.
        let _ = stream(&self.body, &self.encoding, handlers);
        let base = found.take();
        base.as_deref()
            .and_then(|b| crate::html::resolve(&self.url, b))
            .unwrap_or_else(|| self.url.clone())
    }
}

/// What one selector's handlers collect during the pass.
#[derive(Default)]
struct Collect {
    nodes: RefCell<Vec<Node>>,
    /// How many child elements of the newest match are open: text is the match's own text
    /// only while this is 0.
    children_open: Rc<Cell<u32>>,
}

/// Two handler sets: `css > *` counts open child elements of a match (up at the start tag,
/// down at the end tag), then `css` collects. lol_html runs element handlers in registration
/// order, so when an element is both a child of one match and a match itself (`<li>`s whose
/// end tags are implied), the match handler runs second and starts it with no open children.
/// A child whose end tag is implied is closed at the latest by the next match.
fn select_handlers<'h>(css: &str, state: &Rc<Collect>) -> Result<Vec<Handler<'h>>, ParseError> {
    let sel = parse_selector(css)?;
    let child = parse_selector(&format!("{css} > *"))?;
    let counter = Rc::clone(&state.children_open);
    let opener = Rc::clone(state);
    let collector = Rc::clone(state);
    Ok(vec![
        (
            Cow::Owned(child),
            ElementContentHandlers::default().element(move |el: &mut Element| {
                if let Some(on_end) = el.end_tag_handlers() {
                    counter.set(counter.get().saturating_add(1));
                    let closer = Rc::clone(&counter);
                    on_end.push(Box::new(move |_| {
                        closer.set(closer.get().saturating_sub(1));
                        Ok(())
                    }));
                }
                Ok(())
            }),
        ),
        (
            Cow::Owned(sel),
            ElementContentHandlers::default()
                .element(move |el: &mut Element| {
                    let attrs = el
                        .attributes()
                        .iter()
                        .map(|a| (a.name(), decode(&a.value())))
                        .collect();
                    opener.nodes.borrow_mut().push(Node {
                        tag: el.tag_name(),
                        attrs,
                        ..Node::default()
                    });
                    opener.children_open.set(0);
                    Ok(())
                })
                .text(move |t: &mut TextChunk| {
                    let own = collector.children_open.get() == 0;
                    if let Some(last) = collector.nodes.borrow_mut().last_mut() {
                        last.text.push_str(t.as_str());
                        if own {
                            last.own_text.push_str(t.as_str());
                        }
                    }
                    Ok(())
                }),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<html><head><title>T &amp; Co</title></head><body>
      <h1 class="t">  Hello <b>big</b> world </h1>
      <ul><li class="next"><a href="/page/2/" title="Next &raquo;">Next</a></ul>
      <div class="q"><span class="text">one</span><a class="tag" href="a">A</a><a class="tag">B</a></div>
      <div class="q"><span class="text">two</span></div>
      <ul class="open"><li>first<li>second <i>it</i> too<li><p>para <p>more</ul>
      </body></html>"#;

    fn page() -> Page {
        Page::html("http://e.com/dir/p", PAGE)
    }

    #[test]
    fn one_liners_match_scrapy_get_and_getall() {
        let p = page();
        assert_eq!(p.select("li.next a").attr("href"), Some("/page/2/"));
        assert_eq!(p.select("li.next a").attr("title"), Some("Next »"));
        assert_eq!(p.select("title").text(), Some("T & Co"));
        assert_eq!(p.select("h1.t").text(), Some("Hello big world"));
        assert_eq!(p.select("h1.t").own_text(), Some("Hello world"));
        assert_eq!(p.select(".q .text").texts(), ["one", "two"]);
        assert_eq!(p.select("a.tag").attrs("href"), ["a"]);
        assert_eq!(p.select("a.tag").len(), 2);
        assert!(p.select("table").is_empty());
        assert_eq!(p.select("table").text(), None);
        assert_eq!(p.select("li.next a").first().map(Node::tag), Some("a"));
        let nofollow = Page::html(
            "http://e.com/",
            r#"<a href=a rel="nofollow ugc">x</a><a href=b>y</a>"#,
        );
        assert_eq!(
            nofollow
                .select("a[href]:not([rel~=nofollow])")
                .attrs("href"),
            ["b"]
        );
    }

    #[test]
    fn implicitly_closed_elements_keep_their_own_text() {
        let p = page();
        let items = p.select("ul.open li");
        assert_eq!(items.texts(), ["first", "second it too", "para more"]);
        let own: Vec<&str> = items.all().iter().map(Node::own_text).collect();
        assert_eq!(own, ["first", "second too", ""]);
    }

    #[test]
    fn select_many_is_one_pass_with_the_same_answers() {
        let p = page();
        let [next, texts, h1] = p.select_many(["li.next a", ".q .text", "h1"]);
        assert_eq!(next, p.select("li.next a"));
        assert_eq!(texts, p.select(".q .text"));
        assert_eq!(h1.own_text(), Some("Hello world"));
    }

    #[test]
    fn a_bad_selector_panics_with_its_text_or_errors_with_try() {
        let p = page();
        assert!(matches!(p.try_select("div[["), Err(ParseError::Failed(m)) if m.contains("div[[")));
        let msg = std::panic::catch_unwind(|| p.select("div[[").len())
            .err()
            .and_then(|e| e.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        assert!(msg.contains("page.select(\"div[[\")"), "{msg}");
    }

    #[test]
    fn base_url_is_the_first_base_href_resolved() {
        let p = Page::html(
            "http://e.com/a/b",
            r#"<head><base href="/shop/"></head><a href="x">"#,
        );
        assert_eq!(p.base_url(), "http://e.com/shop/");
        let late = Page::html(
            "http://e.com/a/b",
            r#"<head></head><body><base href="/late/"><base href="/later/"></body>"#,
        );
        assert_eq!(late.base_url(), "http://e.com/late/");
        let bad = Page::html("http://e.com/a/b", r#"<base href="javascript:x">"#);
        assert_eq!(bad.base_url(), "http://e.com/a/b");
    }

    #[test]
    fn windows_1252_pages_decode() {
        let mut p = Page::html("http://e.com/", &b"<p class=x>caf\xe9</p>"[..]);
        p.encoding = "windows-1252".into();
        assert_eq!(p.select("p.x").text(), Some("café"));
    }
}
