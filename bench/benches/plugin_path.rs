//! Per-page cost of the plugin path, against the same extraction done natively.
//!
//!     ./dev build-plugins && cargo bench -p sandcrawl-bench --bench plugin_path
//!
//! Prints mean and median per page for: the fixed cost of a no-op plugin (instantiate, call,
//! copy the page in and the result out), the `shop` plugin's streaming extraction in the
//! sandbox, the same plugin code run natively, and a full DOM (html5ever via scraper) doing
//! the same selections natively. Not a test: nothing here asserts a time.

use sandcrawl::plugin::{Limits, PageInput, Runtime};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn measure(name: &str, iters: usize, mut f: impl FnMut()) {
    for _ in 0..iters / 10 {
        f();
    }
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / iters as u32;
    let p50 = samples[iters / 2];
    let p99 = samples[iters * 99 / 100];
    println!(
        "{name:<44} mean {:>8.1} µs   p50 {:>8.1} µs   p99 {:>8.1} µs",
        mean.as_secs_f64() * 1e6,
        p50.as_secs_f64() * 1e6,
        p99.as_secs_f64() * 1e6
    );
}

fn main() {
    let page_path = root().join("plugins/shop/tests/fixtures/product.html");
    let body = std::fs::read(&page_path).unwrap_or_else(|e| panic!("{}: {e}", page_path.display()));
    let url = "http://127.0.0.2:8080/p/00017.html";
    println!("page: {} ({} bytes)", page_path.display(), body.len());
    let input = PageInput {
        url: url.into(),
        status: 200,
        headers: vec![("content-type".into(), "text/html".into())],
        body: body.clone().into(),
        encoding: "UTF-8".into(),
        ..PageInput::default()
    };
    // BENCH_PLUGINS points at another build of the plugins (e.g. other rustflags) to compare.
    let plugins = std::env::var_os("BENCH_PLUGINS")
        .map_or_else(|| root().join("target/plugins"), PathBuf::from);
    let rt = Runtime::new(Limits::default(), None).unwrap_or_else(|e| panic!("runtime: {e:#}"));
    let load = |name: &str| {
        rt.load_file_blocking(&plugins.join(format!("{name}.wasm")))
            .unwrap_or_else(|e| panic!("{e:#} (build plugins first: ./dev build-plugins)"))
    };
    let noop = load("noop");
    let shop = load("shop");
    let n = 2000;
    // Calls are async, as in a crawl: one runtime drives them all.
    let exec = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));

    measure("noop plugin (fixed overhead)", n, || {
        let out = exec.block_on(noop.parse(&input));
        assert!(out.is_ok_and(|o| o.items.is_empty()));
    });
    measure("shop plugin in the sandbox (extract + links)", n, || {
        let out = exec.block_on(shop.parse(&input));
        assert!(out.is_ok_and(|o| o.items.len() == 1));
    });

    let sdk_page = sandcrawl_plugin_sdk::Page::html(url, body.clone());
    measure("same shop code, native", n, || {
        let out = sandcrawl_plugin_sdk::testing::run::<sandcrawl_plugin_shop::Shop>(&sdk_page);
        assert!(out.is_ok_and(|o| o.items.len() == 1));
    });

    let sel = |s: &str| scraper::Selector::parse(s).unwrap_or_else(|e| panic!("{s}: {e:?}"));
    let (name, sku, price, desc, a) = (
        sel("[itemprop=name]"),
        sel("[itemprop=sku]"),
        sel("[itemprop=price]"),
        sel("[itemprop=description]"),
        sel("a[href]"),
    );
    use sandcrawl_plugin_sdk::scraper;
    measure("full DOM (html5ever/scraper), native", n / 4, || {
        let doc = scraper::Html::parse_document(&String::from_utf8_lossy(&body));
        let t: String = doc.select(&name).flat_map(|e| e.text()).collect();
        let s: String = doc.select(&sku).flat_map(|e| e.text()).collect();
        let p = doc
            .select(&price)
            .next()
            .and_then(|e| e.value().attr("content"));
        let d: String = doc.select(&desc).flat_map(|e| e.text()).collect();
        let links = doc
            .select(&a)
            .filter_map(|e| e.value().attr("href"))
            .count();
        assert!(!t.is_empty() && !s.is_empty() && p.is_some() && !d.is_empty() && links > 0);
    });
    let page_url = url::Url::parse(url).unwrap_or_else(|e| panic!("{e}"));
    measure("host link follower (lol_html), native", n, || {
        assert!(
            !sandcrawl::extract::extract(&page_url, &body, "UTF-8", usize::MAX)
                .links
                .is_empty()
        );
    });
}
