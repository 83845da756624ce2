//! A test plugin for what WIT 0.2 added: start requests built from config (one search form
//! POST per keyword), JSON metadata carried to child pages, a JSON API called with POST and
//! an extra header, and a rendering declaration. Used by `tests/requests.rs`.

use sandcrawl_plugin_sdk::prelude::*;

pub struct Requests;

impl Plugin for Requests {
    fn new() -> Self {
        Requests
    }

    fn manifest(&self) -> Manifest {
        Manifest::new("requests", env!("CARGO_PKG_VERSION"))
            .description("Searches by POST, calls a JSON API, follows results")
            .pattern("/search")
            .pattern("/api")
            .pattern("/item/*")
            .needs_browser()
    }

    /// `{"site": "http://…", "keywords": ["a", "b"]}`: one search per keyword.
    fn start_requests(&self) -> Vec<Request> {
        let cfg = sandcrawl_plugin_sdk::config();
        let site = cfg["site"].as_str().unwrap_or_default().to_owned();
        cfg["keywords"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str())
            .map(|k| {
                Request::follow(format!("{site}/search"))
                    .post_form([("q", k)])
                    .metadata(&json!({ "keyword": k }))
            })
            .collect()
    }

    /// The API answers JSON, which the default (HTML only) would not take.
    fn wants(&self, page: &Page) -> bool {
        page.is_success()
    }

    fn parse(&self, page: &Page, out: &mut Output) -> Result<(), ParseError> {
        Router::new()
            .route("/search", Self::search)
            .route("/api", Self::api)
            .route("/item/*", Self::item)
            .dispatch(self, page, out)
    }
}

impl Requests {
    fn keyword(page: &Page) -> String {
        page.metadata
            .as_ref()
            .and_then(|m| m["keyword"].as_str())
            .unwrap_or_default()
            .to_owned()
    }

    fn search(&self, page: &Page, out: &mut Output) -> Result<(), ParseError> {
        let keyword = Self::keyword(page);
        let results = page.select("a.result");
        out.item(
            "search",
            &json!({ "keyword": keyword, "method": page.method, "results": results.len() }),
        )?;
        for href in results.attrs("href") {
            out.follow_href(page, href)
                .map(|l| l.set_metadata(&json!({ "keyword": keyword, "from": "search" })));
        }
        let site = page.url.trim_end_matches("/search");
        // The same search again: dedup (URL, method and body) must drop it.
        out.request(
            Request::follow(page.url.clone())
                .post_form([("q", keyword.as_str())])
                .metadata(&json!({ "keyword": keyword })),
        );
        out.request(
            Request::follow(format!("{site}/api"))
                .post_json(&json!({ "q": keyword }))
                .header("Accept", "application/json")
                .metadata(&json!({ "keyword": keyword })),
        );
        Ok(())
    }

    fn api(&self, page: &Page, out: &mut Output) -> Result<(), ParseError> {
        let answer: sandcrawl_plugin_sdk::serde_json::Value =
            sandcrawl_plugin_sdk::serde_json::from_slice(&page.body)
                .map_err(|e| ParseError::failed(format!("API answer is not JSON: {e}")))?;
        out.item(
            "api",
            &json!({ "keyword": Self::keyword(page), "method": page.method, "answer": answer }),
        )
    }

    fn item(&self, page: &Page, out: &mut Output) -> Result<(), ParseError> {
        out.item(
            "item",
            &json!({
                "keyword": Self::keyword(page),
                "from": page.metadata.as_ref().and_then(|m| m["from"].as_str()),
                "title": page.select("h1").text(),
                "method": page.method,
            }),
        )
    }
}

export_plugin!(Requests);
