//! Example plugin: a product catalogue (books.toscrape.com's layout, as served by
//! `sandcrawl demo`).
//!
//! Category pages propose product pages and the next page; product pages yield one
//! `product` item (title, price, availability, description, SKU, image) and propose the
//! product image as a `download` link.
//!
//! Config (`[plugins.products]` in the crawl config): `currency` overrides the currency
//! reported when the price has no symbol the plugin knows.

use sandcrawl_plugin_sdk::prelude::*;

pub struct Products {
    default_currency: String,
}

#[derive(Serialize)]
struct Product<'a> {
    title: &'a str,
    price: f64,
    currency: &'a str,
    availability: Option<&'a str>,
    in_stock: bool,
    stock: Option<u32>,
    description: Option<&'a str>,
    sku: Option<&'a str>,
    category: Option<&'a str>,
    image: Option<String>,
}

/// Splits "£51.77" into (51.77, "GBP").
pub fn parse_price(raw: &str, default_currency: &str) -> Option<(f64, String)> {
    let currency = match raw
        .chars()
        .find(|c| !c.is_ascii_digit() && !matches!(c, '.' | ',' | ' '))
    {
        Some('£') => "GBP",
        Some('$') => "USD",
        Some('€') => "EUR",
        _ => default_currency,
    };
    let number: String = raw
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    Some((number.parse().ok()?, currency.to_owned()))
}

/// "In stock (22 available)" -> Some(22).
pub fn parse_stock(raw: &str) -> Option<u32> {
    let digits: String = raw
        .split('(')
        .nth(1)?
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

impl Plugin for Products {
    fn new() -> Self {
        let cfg = sandcrawl_plugin_sdk::config();
        let default_currency = cfg
            .get("currency")
            .and_then(|v| v.as_str())
            .unwrap_or("GBP")
            .to_owned();
        Products { default_currency }
    }

    fn manifest(&self) -> Manifest {
        Manifest::new("products", env!("CARGO_PKG_VERSION"))
            .description(
                "Product catalogue: title, price, availability, description; downloads images",
            )
            .pattern("http*://*/catalogue/**")
    }

    fn parse(&self, page: &Page, out: &mut Output) -> Result<(), ParseError> {
        let m = Extractor::new()
            .text("title", ".product_main h1")
            .text("price", ".product_main .price_color")
            .text("availability", ".product_main .availability")
            .text("description", "#product_description p")
            .text("sku", "tr.upc td")
            .text("category", "ul.breadcrumb li.category")
            .attr("image", "#product_gallery img", "src")
            .attr("products", "article.product_pod h3 a", "href")
            .attr("categories", "ul.categories a", "href")
            .attr("next", "li.next a", "href")
            .links()
            .run(page)?;

        if let Some(title) = m.first("title") {
            let raw_price = m
                .first("price")
                .ok_or_else(|| ParseError::failed(format!("product {title:?} has no price")))?;
            let (price, currency) = parse_price(raw_price, &self.default_currency)
                .ok_or_else(|| ParseError::failed(format!("unreadable price {raw_price:?}")))?;
            let availability = m.first("availability");
            let image = m.first("image").and_then(|h| m.resolve(&page.url, h));
            out.item(
                "product",
                &Product {
                    title,
                    price,
                    currency: &currency,
                    availability,
                    in_stock: availability
                        .is_some_and(|a| a.to_ascii_lowercase().starts_with("in stock")),
                    stock: availability.and_then(parse_stock),
                    description: m.first("description"),
                    sku: m.first("sku"),
                    category: m.first("category"),
                    image: image.clone(),
                },
            )?;
            if let Some(img) = image {
                out.download(img);
            }
            return Ok(());
        }

        let listing: Vec<&String> = m
            .all("products")
            .iter()
            .chain(m.all("categories"))
            .collect();
        if listing.is_empty() {
            return Err(ParseError::NotMine);
        }
        for href in listing {
            if let Some(url) = m.resolve(&page.url, href) {
                out.follow(url);
            }
        }
        if let Some(url) = m.first("next").and_then(|h| m.resolve(&page.url, h)) {
            out.link(url, LinkKind::Follow, Some(10), None);
        }
        Ok(())
    }
}

export_plugin!(Products);
