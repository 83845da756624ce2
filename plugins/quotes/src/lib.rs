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
        Router::new()
            .route("/author/*", Self::author)
            .route("/quotes/page/*", Self::listing)
            .dispatch(self, page, out)
    }
}

impl Quotes {
    fn author(&self, page: &Page, out: &mut Output) -> Result<(), ParseError> {
        let [name, born, description] = page.select_many([
            ".author-details .author-title",
            ".author-born-date",
            ".author-description",
        ]);
        let name = name
            .text()
            .ok_or_else(|| ParseError::failed("author page without .author-title"))?;
        out.item(
            "author",
            &Author {
                name,
                born: born.text(),
                description: description.text(),
            },
        )
    }

    /// Repeated records are the streaming extractor's job: one pass gives every quote with
    /// its own fields.
    fn listing(&self, page: &Page, out: &mut Output) -> Result<(), ParseError> {
        let m = Extractor::new()
            .records("div.quote", |r| {
                r.text("text", ".text")
                    .text("author", ".author")
                    .attr("about", "a[href*='/author/']", "href")
                    .text("tags", "a.tag")
            })
            .attr("next", "li.next a", "href")
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
            if let Some(about) = q.first("about") {
                out.follow_href(page, about).map(|l| l.set_metadata(author));
            }
        }
        if let Some(next) = m.first("next") {
            // Pagination first: it is what keeps the crawl going.
            out.follow_href(page, next).map(|l| l.set_priority(10));
        }
        Ok(())
    }
}

export_plugin!(Quotes);
