//! Native unit tests on saved pages: plain `cargo test`, no wasm involved.

use sandcrawl_plugin_quotes::Quotes;
use sandcrawl_plugin_sdk::testing::{page_from_file, run};
use sandcrawl_plugin_sdk::{LinkKind, Page, ParseError};

fn fixture(name: &str, url: &str) -> Page {
    page_from_file(
        url,
        format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR")),
    )
    .unwrap()
}

#[test]
fn listing_page_yields_quotes_authors_and_next() {
    let page = fixture("quotes-page-1.html", "http://demo.test/quotes/page/1/");
    let out = run::<Quotes>(&page).unwrap();
    assert_eq!(out.items.len(), 10);
    assert!(out.items.iter().all(|i| i.kind == "quote"));
    let first = out.items[0].value();
    assert_eq!(
        first["text"],
        "Quote 1: patience is the road that rivers walks on."
    );
    assert_eq!(first["author"], "Ada Quill");
    assert_eq!(first["tags"], serde_json::json!(["life"]));
    let third = out.items[2].value();
    assert_eq!(third["tags"], serde_json::json!(["humor", "books", "life"]));

    let next: Vec<_> = out
        .links
        .iter()
        .filter(|l| l.priority == Some(10))
        .collect();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].url, "http://demo.test/quotes/page/2/");
    let authors: Vec<&str> = out
        .links
        .iter()
        .filter(|l| l.url.contains("/author/"))
        .map(|l| l.url.as_str())
        .collect();
    assert_eq!(authors.len(), 10);
    assert_eq!(authors[0], "http://demo.test/author/ada-quill/");
    let meta = out
        .links
        .iter()
        .find(|l| l.url.contains("/author/"))
        .unwrap();
    assert_eq!(meta.metadata, Some(serde_json::json!("Ada Quill")));
    assert!(out.links.iter().all(|l| l.kind == LinkKind::Follow));
}

#[test]
fn last_page_has_no_next() {
    let page = fixture("quotes-page-3.html", "http://demo.test/quotes/page/3/");
    let out = run::<Quotes>(&page).unwrap();
    assert_eq!(out.items.len(), 5);
    assert!(out.links.iter().all(|l| l.priority.is_none()));
}

#[test]
fn author_page_yields_one_author() {
    let page = fixture(
        "author-ada-quill.html",
        "http://demo.test/author/ada-quill/",
    );
    let out = run::<Quotes>(&page).unwrap();
    assert_eq!(out.items.len(), 1);
    assert_eq!(out.items[0].kind, "author");
    let a = out.items[0].value();
    assert_eq!(a["name"], "Ada Quill");
    assert_eq!(a["born"], "March 3, 1900");
    assert_eq!(
        a["description"],
        "Ada Quill wrote about patience and laughter."
    );
    assert!(out.links.is_empty());
}

#[test]
fn other_pages_are_not_mine() {
    let page = Page::html(
        "http://demo.test/quotes/page/9/",
        "<html><p>nothing</p></html>",
    );
    assert_eq!(run::<Quotes>(&page).unwrap_err(), ParseError::NotMine);
    let mut not_found = Page::html("http://demo.test/quotes/page/1/", "<html></html>");
    not_found.status = 404;
    assert_eq!(run::<Quotes>(&not_found).unwrap_err(), ParseError::NotMine);
}
