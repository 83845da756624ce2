//! The bundled demo site: a quotes section (pagination, author pages) and a product
//! catalogue (categories, pagination, product pages, images) with a robots.txt, served on
//! 127.0.0.1 so the first run and the tests need no network.
//!
//! It owns the site's content (generated deterministically, so tests can count exactly
//! what a crawl must find). It must not crawl; `sandcrawl demo` points the
//! ordinary crawl at it.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use tokio::net::TcpListener;

pub const QUOTES: usize = 25;
pub const QUOTES_PER_PAGE: usize = 10;
pub const AUTHORS: usize = 6;
pub const CATEGORIES: &[(&str, &str, usize)] = &[
    ("travel", "Travel", 7),
    ("poetry", "Poetry", 5),
    ("science", "Science", 8),
];
pub const PRODUCTS_PER_PAGE: usize = 5;
/// Product images cycle through this many distinct contents (so downloads dedup by content).
pub const DISTINCT_IMAGES: usize = 15;

/// Items a full crawl of the demo site must produce, by kind.
pub fn expected_items() -> Vec<(&'static str, usize)> {
    vec![
        ("quote", QUOTES),
        ("author", AUTHORS),
        ("product", total_products()),
        ("file", total_products()),
    ]
}

pub fn total_products() -> usize {
    CATEGORIES.iter().map(|c| c.2).sum()
}

const AUTHOR_NAMES: [&str; AUTHORS] = [
    "Ada Quill",
    "Bram Stoker-Lane",
    "Cyra Moss",
    "Dov Ember",
    "Elin Marsh",
    "Faro Kettle",
];
const WORDS: [&str; 16] = [
    "patience",
    "courage",
    "light",
    "rivers",
    "doubt",
    "laughter",
    "maps",
    "silence",
    "gardens",
    "questions",
    "time",
    "kindness",
    "stone",
    "wind",
    "memory",
    "bread",
];
const TAGS: [&str; 6] = ["life", "wisdom", "humor", "change", "books", "travel"];

fn slug(name: &str) -> String {
    name.to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// Quote `i`: (text, author index, tags).
pub fn quote(i: usize) -> (String, usize, Vec<&'static str>) {
    let a = WORDS[i % WORDS.len()];
    let b = WORDS[(i * 7 + 3) % WORDS.len()];
    let text = format!("Quote {}: {a} is the road that {b} walks on.", i + 1);
    let tags = (0..=(i % 3))
        .map(|k| TAGS[(i + k * 2) % TAGS.len()])
        .collect();
    (text, i % AUTHORS, tags)
}

/// Product `n` (global index): (slug, title, category index, price, stock).
pub fn product(n: usize) -> (String, String, usize, f64, Option<u32>) {
    let mut idx = n;
    let mut cat = 0;
    for (ci, c) in CATEGORIES.iter().enumerate() {
        if idx < c.2 {
            cat = ci;
            break;
        }
        idx -= c.2;
    }
    let title = format!("{} Book {}", CATEGORIES[cat].1, idx + 1);
    let price = 10.0 + ((n * 37) % 50) as f64 + 0.99;
    let stock = (n % 6 != 5).then_some((n * 3 % 20 + 1) as u32);
    (slug(&title), title, cat, price, stock)
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><header><a href=\"/\">Demo shop &amp; quotes</a></header>{body}</body></html>"
    )
}

fn index() -> String {
    page(
        "sandcrawl demo",
        "<h1>sandcrawl demo site</h1><ul>\
         <li><a href=\"/quotes/page/1/\">Quotes</a></li>\
         <li><a href=\"/quotes/page/1/#top\">Quotes (same page, fragment)</a></li>\
         <li><a href=\"/catalogue/\">Catalogue</a></li>\
         <li><a href=\"/catalogue/?utm_source=demo\">Catalogue (tracking link)</a></li>\
         <li><a href=\"/about\">About</a></li>\
         <li><a href=\"/private/admin\">Admin (disallowed by robots.txt)</a></li>\
         <li><a href=\"/nofollow-trap\" rel=\"nofollow\">Not followed</a></li></ul>",
    )
}

fn quotes_page(n: usize) -> Option<String> {
    let pages = QUOTES.div_ceil(QUOTES_PER_PAGE);
    if n == 0 || n > pages {
        return None;
    }
    let mut body = String::from("<div class=\"col-md-8\">");
    for i in (n - 1) * QUOTES_PER_PAGE..(n * QUOTES_PER_PAGE).min(QUOTES) {
        let (text, a, tags) = quote(i);
        let name = AUTHOR_NAMES[a];
        body.push_str(&format!(
            "<div class=\"quote\" itemscope><span class=\"text\">“{text}”</span>\
             <span>by <small class=\"author\">{name}</small> <a href=\"/author/{}/\">(about)</a></span>\
             <div class=\"tags\">Tags:",
            slug(name)
        ));
        for t in tags {
            body.push_str(&format!(
                " <a class=\"tag\" href=\"/quotes/tag/{t}/\">{t}</a>"
            ));
        }
        body.push_str("</div></div>");
    }
    body.push_str("<nav><ul class=\"pager\">");
    if n > 1 {
        body.push_str(&format!(
            "<li class=\"previous\"><a href=\"/quotes/page/{}/\">← Previous</a></li>",
            n - 1
        ));
    }
    if n < pages {
        body.push_str(&format!(
            "<li class=\"next\"><a href=\"/quotes/page/{}/\">Next →</a></li>",
            n + 1
        ));
    }
    body.push_str("</ul></nav></div>");
    Some(page(&format!("Quotes, page {n}"), &body))
}

fn author_page(s: &str) -> Option<String> {
    let (i, name) = AUTHOR_NAMES
        .iter()
        .enumerate()
        .find(|(_, n)| slug(n) == s)?;
    Some(page(
        name,
        &format!(
            "<div class=\"author-details\"><h3 class=\"author-title\">{name}</h3>\
             <p><strong>Born:</strong> <span class=\"author-born-date\">March {}, {}</span></p>\
             <div class=\"author-description\">\n  {name} wrote about {} and {}.\n</div></div>",
            i + 3,
            1900 + i * 11,
            WORDS[i],
            WORDS[i + 5]
        ),
    ))
}

fn catalogue_index() -> String {
    let mut body = String::from("<div class=\"side_categories\"><ul class=\"categories\">");
    for (s, name, _) in CATEGORIES {
        body.push_str(&format!(
            "<li><a href=\"/catalogue/category/{s}/page-1.html\">{name}</a></li>"
        ));
    }
    body.push_str("</ul></div>");
    page("All products", &body)
}

fn category_page(cat: &str, n: usize) -> Option<String> {
    let ci = CATEGORIES.iter().position(|c| c.0 == cat)?;
    let count = CATEGORIES[ci].2;
    let pages = count.div_ceil(PRODUCTS_PER_PAGE);
    if n == 0 || n > pages {
        return None;
    }
    let first: usize = CATEGORIES[..ci].iter().map(|c| c.2).sum();
    let mut body = format!("<h1>{}</h1><ol class=\"row\">", CATEGORIES[ci].1);
    for k in (n - 1) * PRODUCTS_PER_PAGE..(n * PRODUCTS_PER_PAGE).min(count) {
        let (s, title, _, price, _) = product(first + k);
        body.push_str(&format!(
            "<li><article class=\"product_pod\"><h3><a href=\"../../{s}/index.html\" title=\"{title}\">{title}</a></h3>\
             <p class=\"price_color\">£{price:.2}</p></article></li>"
        ));
    }
    body.push_str("</ol><ul class=\"pager\">");
    if n < pages {
        body.push_str(&format!(
            "<li class=\"next\"><a href=\"page-{}.html\">next</a></li>",
            n + 1
        ));
    }
    body.push_str("</ul>");
    Some(page(CATEGORIES[ci].1, &body))
}

fn product_page(s: &str) -> Option<String> {
    let n = (0..total_products()).find(|&n| product(n).0 == s)?;
    let (_, title, cat, price, stock) = product(n);
    let availability = match stock {
        Some(k) => format!("In stock ({k} available)"),
        None => "Out of stock".to_owned(),
    };
    Some(page(
        &title,
        &format!(
            "<ul class=\"breadcrumb\"><li><a href=\"/\">Home</a></li>\
             <li class=\"category\"><a href=\"/catalogue/category/{}/page-1.html\">{}</a></li></ul>\
             <div class=\"product_gallery\" id=\"product_gallery\"><img src=\"/media/p{n}.jpg\" alt=\"{title}\"></div>\
             <div class=\"product_main\"><h1>{title}</h1><p class=\"price_color\">£{price:.2}</p>\
             <p class=\"availability\">\n  {availability}\n</p></div>\
             <div id=\"product_description\"><h2>Product Description</h2>\
             <p>A demo book about {} &amp; {}.</p></div>\
             <table><tr class=\"upc\"><th>UPC</th><td>SKU-{n:05}</td></tr></table>",
            CATEGORIES[cat].0,
            CATEGORIES[cat].1,
            WORDS[n % WORDS.len()],
            WORDS[(n + 4) % WORDS.len()]
        ),
    ))
}

/// Deterministic "image" bytes; products `n` and `n + DISTINCT_IMAGES` share content.
pub fn image(n: usize) -> Vec<u8> {
    let k = n % DISTINCT_IMAGES;
    let mut v = b"\xFF\xD8\xFF\xE0demo-jpeg".to_vec();
    v.extend(std::iter::repeat_n(k as u8, 256 + k));
    v
}

/// Routes one request path to (status, content type, body).
pub fn respond(path: &str) -> (StatusCode, &'static str, Vec<u8>) {
    const HTML: &str = "text/html; charset=utf-8";
    let ok = |s: String| (StatusCode::OK, HTML, s.into_bytes());
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let found = match parts.as_slice() {
        [""] => Some(ok(index())),
        ["robots.txt"] => Some((
            StatusCode::OK,
            "text/plain",
            b"User-agent: *\nDisallow: /private/\n".to_vec(),
        )),
        ["about"] => Some(ok(page(
            "About",
            "<p>A demo site for sandcrawl. <a href=\"/\">Home</a></p>",
        ))),
        ["private", ..] => Some(ok(page("Private", "<p>robots.txt says no.</p>"))),
        ["quotes", "page", n] => n.parse().ok().and_then(quotes_page).map(ok),
        ["quotes", "tag", t] => Some(ok(page(t, "<p>Tag pages are not part of the demo.</p>"))),
        ["author", s] => author_page(s).map(ok),
        ["catalogue"] => Some(ok(catalogue_index())),
        ["catalogue", "category", c, p] => p
            .strip_prefix("page-")
            .and_then(|p| p.strip_suffix(".html"))
            .and_then(|p| p.parse().ok())
            .and_then(|n| category_page(c, n))
            .map(ok),
        ["catalogue", s, "index.html"] => product_page(s).map(ok),
        ["media", f] => f
            .strip_prefix('p')
            .and_then(|f| f.strip_suffix(".jpg"))
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n < total_products())
            .map(|n| (StatusCode::OK, "image/jpeg", image(n))),
        _ => None,
    };
    found.unwrap_or((
        StatusCode::NOT_FOUND,
        HTML,
        page("Not found", "<p>404</p>").into_bytes(),
    ))
}

/// A running demo site.
pub struct DemoSite {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl DemoSite {
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for DemoSite {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the demo site on `addr` (port 0 picks a free port) on the current tokio runtime.
pub async fn start(addr: SocketAddr) -> std::io::Result<DemoSite> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| async move {
                    let (status, ct, body) = respond(req.uri().path());
                    let resp = Response::builder()
                        .status(status)
                        .header("content-type", ct)
                        .body(Full::new(Bytes::from(body)));
                    Ok::<_, hyper::http::Error>(resp.unwrap_or_default())
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(DemoSite { addr, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_shape() {
        assert_eq!(respond("/").0, StatusCode::OK);
        assert_eq!(respond("/quotes/page/3/").0, StatusCode::OK);
        assert_eq!(respond("/quotes/page/4/").0, StatusCode::NOT_FOUND);
        assert_eq!(
            respond("/catalogue/category/travel/page-2.html").0,
            StatusCode::OK
        );
        assert_eq!(
            respond("/catalogue/category/travel/page-3.html").0,
            StatusCode::NOT_FOUND
        );
        let (s, ct, body) = respond("/media/p19.jpg");
        assert_eq!((s, ct), (StatusCode::OK, "image/jpeg"));
        assert_eq!(body, image(4));
        for n in 0..total_products() {
            let (slug, ..) = product(n);
            assert_eq!(
                respond(&format!("/catalogue/{slug}/index.html")).0,
                StatusCode::OK
            );
        }
    }
}
