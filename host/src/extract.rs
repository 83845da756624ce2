//! The built-in link follower for pages no plugin claims: `<a href>` (skipping
//! `rel=nofollow`), `<base href>` and `<meta http-equiv=refresh>`, in one streaming pass.
//!
//! It uses lol_html, the same streaming parser design the plugins use, because it is built
//! for hostile input with bounded memory. It only proposes URLs; scope, robots and dedup
//! are decided by the crawl scheduler.

use lol_html::html_content::Element;
use lol_html::{AsciiCompatibleEncoding, HtmlRewriter, MemorySettings, Settings, element};
use std::cell::RefCell;
use url::Url;

/// Links one page yielded: the first `max` of them, and how many more there were.
pub struct Extracted {
    pub links: Vec<Url>,
    pub dropped: u64,
}

/// Extracts absolute http(s) links from an HTML page, resolved against `<base href>`.
/// Keeps at most `max` `<a href>` links (a page of millions of links costs a count, not
/// memory); the rest are counted in `dropped`.
pub fn extract(page_url: &Url, body: &[u8], encoding: &str, max: usize) -> Extracted {
    let hrefs = RefCell::new(Vec::<String>::new());
    let over = std::cell::Cell::new(0u64);
    let base = RefCell::new(None::<String>);
    let refresh = RefCell::new(None::<String>);
    let enc = encoding_rs::Encoding::for_label(encoding.as_bytes())
        .and_then(AsciiCompatibleEncoding::new)
        .unwrap_or_else(AsciiCompatibleEncoding::utf_8);
    let mut memory = MemorySettings::new();
    memory.max_allowed_memory_usage = 16 * 1024 * 1024;
    let result = {
        let mut rewriter = HtmlRewriter::new(
            Settings {
                element_content_handlers: vec![
                    element!("a[href], area[href]", |el: &mut Element| {
                        let nofollow = el.get_attribute("rel").is_some_and(|r| {
                            r.to_ascii_lowercase()
                                .split_whitespace()
                                .any(|t| t == "nofollow")
                        });
                        if !nofollow {
                            let mut hrefs = hrefs.borrow_mut();
                            if hrefs.len() >= max {
                                over.set(over.get() + 1);
                            } else if let Some(h) = el.get_attribute("href") {
                                hrefs.push(h);
                            }
                        }
                        Ok(())
                    }),
                    element!("base[href]", |el: &mut Element| {
                        let mut b = base.borrow_mut();
                        if b.is_none() {
                            *b = el.get_attribute("href");
                        }
                        Ok(())
                    }),
                    element!("meta[http-equiv][content]", |el: &mut Element| {
                        let is_refresh = el
                            .get_attribute("http-equiv")
                            .is_some_and(|v| v.eq_ignore_ascii_case("refresh"));
                        if is_refresh
                            && let Some(target) =
                                el.get_attribute("content").and_then(|c| refresh_target(&c))
                        {
                            *refresh.borrow_mut() = Some(target);
                        }
                        Ok(())
                    }),
                ],
                encoding: enc,
                memory_settings: memory,
                strict: false,
                ..Settings::new()
            },
            |_: &[u8]| {},
        );
        rewriter.write(body).and_then(|()| rewriter.end())
    };
    if let Err(e) = result {
        tracing::debug!(url = %page_url, "link extraction stopped early: {e}");
    }
    let base_url = base
        .into_inner()
        .and_then(|b| page_url.join(&decode(&b)).ok())
        .unwrap_or_else(|| page_url.clone());
    let mut out = Vec::new();
    for h in hrefs.into_inner().into_iter().chain(refresh.into_inner()) {
        if let Ok(u) = base_url.join(decode(&h).trim())
            && matches!(u.scheme(), "http" | "https")
        {
            out.push(u);
        }
    }
    Extracted {
        links: out,
        dropped: over.get(),
    }
}

fn decode(s: &str) -> String {
    html_escape::decode_html_entities(s).into_owned()
}

/// `5; url=/next` -> `/next`.
fn refresh_target(content: &str) -> Option<String> {
    let lower = content.to_ascii_lowercase();
    let pos = lower.find("url")?;
    let rest = content[pos + 3..].trim_start();
    let rest = rest.strip_prefix('=')?.trim();
    let t = rest.trim_matches(['\'', '"']).trim();
    (!t.is_empty()).then(|| t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_anchors_base_and_refresh_skips_nofollow() {
        let page = Url::parse("http://e.com/dir/page.html").unwrap();
        let html = br#"<html><head><base href="/b/"><meta http-equiv="Refresh" content="0; URL='/moved'"></head>
            <a href="x?a=1&amp;b=2">x</a><a href="y" rel="nofollow">y</a><a href="mailto:z@e.com">m</a>
            <a href="https://other.org/">o</a></html>"#;
        let got: Vec<String> = extract(&page, html, "utf-8", 100)
            .links
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(
            got,
            [
                "http://e.com/b/x?a=1&b=2",
                "https://other.org/",
                "http://e.com/moved"
            ]
        );
    }

    #[test]
    fn a_page_of_many_links_keeps_the_first_and_counts_the_rest() {
        let page = Url::parse("http://e.com/").unwrap();
        let html: String = (0..5000).map(|i| format!("<a href=/l{i}>x</a>")).collect();
        let got = extract(&page, html.as_bytes(), "utf-8", 1000);
        assert_eq!(got.links.len(), 1000);
        assert_eq!(got.dropped, 4000);
        assert_eq!(got.links[999].as_str(), "http://e.com/l999");
    }
}
