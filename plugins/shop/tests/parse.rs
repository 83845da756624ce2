//! Native unit tests on pages saved from the benchmark site generator.

use sandcrawl_plugin_sdk::testing::{page_from_file, run};

fn fixture(name: &str, url: &str) -> sandcrawl_plugin_sdk::Page {
    page_from_file(
        url,
        format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR")),
    )
    .unwrap()
}

#[test]
fn product_page() {
    let page = fixture("product.html", "http://127.0.0.2:8080/p/00017.html");
    let out = run::<sandcrawl_plugin_shop::Shop>(&page).unwrap();
    assert_eq!(out.items.len(), 1);
    let p = out.items[0].value();
    assert_eq!(p["title"], "Vintage Mug Classic 1-00017");
    assert_eq!(p["sku"], "SKU-1-00017");
    assert_eq!(p["price"], "129.55");
    assert!(
        p["description"]
            .as_str()
            .unwrap()
            .starts_with("Quiet indoor portable handmade")
    );
    let follows = out.follows();
    assert!(!follows.is_empty());
    assert!(follows.iter().all(|u| u.starts_with("http")));
    assert!(
        !follows.iter().any(|u| u.contains("/cart/add")),
        "rel=nofollow links are skipped"
    );
}

#[test]
fn pages_without_a_product_only_follow() {
    let page = fixture("home.html", "http://127.0.0.2:8080/");
    let out = run::<sandcrawl_plugin_shop::Shop>(&page).unwrap();
    assert!(out.items.is_empty());
    assert!(out.follows().len() > 5);
}
