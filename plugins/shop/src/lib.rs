//! Example plugin: products marked up with schema.org microdata (`itemtype=".../Product"`,
//! `itemprop="name|sku|price|description"`), the markup most shops emit for search engines.
//! It follows every link on every page, so on its own it crawls a whole shop; it is the
//! plugin the benchmarks use.

use sandcrawl_plugin_sdk::prelude::*;

pub struct Shop;

#[derive(Serialize)]
struct Product<'a> {
    title: &'a str,
    sku: Option<&'a str>,
    /// Kept as the page states it (a decimal string), so no float rounding creeps in.
    price: Option<&'a str>,
    description: Option<&'a str>,
}

const PRODUCT: &str = "[itemtype$=\"schema.org/Product\"]";

impl Plugin for Shop {
    fn new() -> Self {
        Shop
    }

    fn manifest(&self) -> Manifest {
        Manifest::new("shop", env!("CARGO_PKG_VERSION"))
            .description("schema.org microdata products; follows all links")
            .pattern("http*://**")
    }

    fn parse(&self, page: &Page, out: &mut Output) -> Result<(), ParseError> {
        let m = Extractor::new()
            .text("title", &format!("{PRODUCT} [itemprop=name]"))
            .text("sku", &format!("{PRODUCT} [itemprop=sku]"))
            .attr(
                "price",
                &format!("{PRODUCT} [itemprop=price][content]"),
                "content",
            )
            .text("price_text", &format!("{PRODUCT} [itemprop=price]"))
            .text("description", &format!("{PRODUCT} [itemprop=description]"))
            .links()
            .run(page)?;
        if let Some(title) = m.first("title") {
            let price = m.first("price").or_else(|| {
                m.first("price_text")
                    .map(|p| p.trim_start_matches(['$', '£', '€']))
            });
            out.item(
                "product",
                &Product {
                    title,
                    sku: m.first("sku"),
                    price,
                    description: m.first("description"),
                },
            )?;
        }
        for url in m.follow_urls(&page.url) {
            out.follow(url);
        }
        Ok(())
    }
}

export_plugin!(Shop);
