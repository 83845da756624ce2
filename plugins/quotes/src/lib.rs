//! Example plugin: a quotes site (quotes.toscrape.com's layout, as served by `sandcrawl demo`).
//!
//! Listing pages yield one `quote` item per quote (text, author, tags) and propose the next
//! page and each author page; author pages yield one `author` item.

use sandcrawl_plugin_sdk::prelude::*;

pub struct Quotes;

#[derive(Serialize)]
struct Quote<'a> {
    text: &'a str,
    author: &'a str,
    tags: &'a [String],
}

#[derive(Serialize)]
struct Author<'a> {
    name: &'a str,
    born: Option<&'a str>,
    description: Option<&'a str>,
}

impl Plugin for Quotes {
    fn new() -> Self {
        Quotes
    }

    fn manifest(&self) -> Manifest {
        Manifest::new("quotes", env!("CARGO_PKG_VERSION"))
            .description("Quotes with authors and tags; follows pagination and author pages")
            .pattern("http*://*/quotes/page/*")
            .pattern("http*://*/author/*")
    }

    fn parse(&self, page: &Page, out: &mut Output) -> Result<(), ParseError> {
        if page.url.contains("/author/") {
            let m = Extractor::new()
                .text("name", ".author-details .author-title")
                .text("born", ".author-born-date")
                .text("description", ".author-description")
                .run(page)?;
            let name = m
                .first("name")
                .ok_or_else(|| ParseError::failed("author page without .author-title"))?;
            return out.item(
                "author",
                &Author {
                    name,
                    born: m.first("born"),
                    description: m.first("description"),
                },
            );
        }

        let m = Extractor::new()
            .records("div.quote", |r| {
                r.text("text", ".text")
                    .text("author", ".author")
                    .attr("about", "a[href*='/author/']", "href")
                    .text("tags", "a.tag")
            })
            .attr("next", "li.next a", "href")
            .links()
            .run(page)?;
        if m.records().is_empty() {
            return Err(ParseError::NotMine);
        }
        for q in m.records() {
            let (Some(text), Some(author)) = (q.first("text"), q.first("author")) else {
                return Err(ParseError::failed("quote without .text or .author"));
            };
            let text = text.trim_matches(['“', '”', '"']);
            out.item(
                "quote",
                &Quote {
                    text,
                    author,
                    tags: q.all("tags"),
                },
            )?;
            if let Some(url) = q.first("about").and_then(|h| m.resolve(&page.url, h)) {
                out.link(url, LinkKind::Follow, None, Some(author.to_owned()));
            }
        }
        if let Some(url) = m.first("next").and_then(|h| m.resolve(&page.url, h)) {
            // Pagination first: it is what keeps the crawl going.
            out.link(url, LinkKind::Follow, Some(10), None);
        }
        Ok(())
    }
}

export_plugin!(Quotes);
