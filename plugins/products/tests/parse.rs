//! Native unit tests on saved pages: plain `cargo test`, no wasm involved.

use sandcrawl_plugin_products::{Products, parse_price, parse_stock};
use sandcrawl_plugin_sdk::testing::{page_from_file, run, set_config};
use sandcrawl_plugin_sdk::{Page, ParseError};

fn fixture(name: &str, url: &str) -> Page {
    page_from_file(
        url,
        format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR")),
    )
    .unwrap()
}

#[test]
fn product_page_yields_product_and_image_download() {
    let page = fixture(
        "product-travel-book-1.html",
        "http://demo.test/catalogue/travel-book-1/index.html",
    );
    let out = run::<Products>(&page).unwrap();
    assert_eq!(out.items.len(), 1);
    assert_eq!(out.items[0].kind, "product");
    let p = out.items[0].value();
    assert_eq!(p["title"], "Travel Book 1");
    assert_eq!(p["price"], 10.99);
    assert_eq!(p["currency"], "GBP");
    assert_eq!(p["availability"], "In stock (1 available)");
    assert_eq!(p["in_stock"], true);
    assert_eq!(p["stock"], 1);
    assert_eq!(p["description"], "A demo book about patience & doubt.");
    assert_eq!(p["sku"], "SKU-00000");
    assert_eq!(p["category"], "Travel");
    assert_eq!(p["image"], "http://demo.test/media/p0.jpg");
    assert_eq!(out.downloads(), ["http://demo.test/media/p0.jpg"]);
    assert!(out.follows().is_empty());
}

#[test]
fn out_of_stock_product() {
    let page = fixture(
        "product-travel-book-6.html",
        "http://demo.test/catalogue/travel-book-6/index.html",
    );
    let p = run::<Products>(&page).unwrap().items[0].value();
    assert_eq!(p["title"], "Travel Book 6");
    assert_eq!(p["in_stock"], false);
    assert_eq!(p["stock"], serde_json::Value::Null);
}

#[test]
fn category_page_follows_products_and_next_page() {
    let page = fixture(
        "category-travel-1.html",
        "http://demo.test/catalogue/category/travel/page-1.html",
    );
    let out = run::<Products>(&page).unwrap();
    assert!(out.items.is_empty());
    let follows = out.follows();
    assert_eq!(follows.len(), 6);
    assert_eq!(
        follows[0],
        "http://demo.test/catalogue/travel-book-1/index.html"
    );
    assert_eq!(
        follows[5],
        "http://demo.test/catalogue/category/travel/page-2.html"
    );
}

#[test]
fn catalogue_index_follows_categories() {
    let page = fixture("catalogue.html", "http://demo.test/catalogue/");
    let out = run::<Products>(&page).unwrap();
    assert_eq!(
        out.follows(),
        [
            "http://demo.test/catalogue/category/travel/page-1.html",
            "http://demo.test/catalogue/category/poetry/page-1.html",
            "http://demo.test/catalogue/category/science/page-1.html"
        ]
    );
}

#[test]
fn config_sets_default_currency() {
    set_config(serde_json::json!({ "currency": "CHF" }));
    let page = Page::html(
        "http://demo.test/catalogue/x/index.html",
        "<div class=product_main><h1>X</h1><p class=price_color>12.50</p></div>",
    );
    let p = run::<Products>(&page).unwrap().items[0].value();
    set_config(serde_json::Value::Null);
    assert_eq!(p["currency"], "CHF");
    assert_eq!(p["price"], 12.5);
}

#[test]
fn helpers_and_failures() {
    assert_eq!(parse_price("£51.77", "GBP"), Some((51.77, "GBP".into())));
    assert_eq!(parse_price("$3", "GBP"), Some((3.0, "USD".into())));
    assert_eq!(parse_price("free", "GBP"), None);
    assert_eq!(parse_stock("In stock (22 available)"), Some(22));
    let no_price = Page::html(
        "http://demo.test/catalogue/x/index.html",
        "<div class=product_main><h1>X</h1></div>",
    );
    assert!(
        matches!(run::<Products>(&no_price), Err(ParseError::Failed(m)) if m.contains("no price"))
    );
    let other = Page::html("http://demo.test/catalogue/x/", "<p>hello</p>");
    assert_eq!(run::<Products>(&other).unwrap_err(), ParseError::NotMine);
}
