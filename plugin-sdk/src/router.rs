//! Routing a page to one of a plugin's methods by its URL. The patterns are
//! [`sandcrawl_pattern::UrlPattern`]s, the same the host matches WIT 0.2 manifest patterns
//! with: `*` within one path segment, `**` across segments, `/…` for the path alone. This
//! module only looks at URLs; it never parses pages.

use crate::{Output, Page, ParseError};
use sandcrawl_pattern::UrlPattern;

/// A plugin method that handles one kind of page.
pub type Route<P> = fn(&P, &Page, &mut Output) -> Result<(), ParseError>;

/// Sends each page to the first route whose pattern matches its URL.
///
/// ```ignore
/// fn parse(&self, page: &Page, out: &mut Output) -> Result<(), ParseError> {
///     Router::new()
///         .route("/author/*", Self::author)
///         .route("/page/*", Self::listing)
///         .dispatch(self, page, out)
/// }
/// ```
pub struct Router<P> {
    routes: Vec<(UrlPattern, Route<P>)>,
}

impl<P> Default for Router<P> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<P> Router<P> {
    pub fn new() -> Self {
        Router::default()
    }

    /// Adds a route; earlier routes win.
    pub fn route(mut self, pattern: &str, handler: Route<P>) -> Self {
        self.routes.push((UrlPattern::new(pattern), handler));
        self
    }

    /// Whether any route takes this URL.
    pub fn matches(&self, url: &str) -> bool {
        self.routes.iter().any(|(p, _)| p.matches(url))
    }

    /// Runs the first matching route on the page; a page no route takes is "not mine".
    pub fn dispatch(&self, plugin: &P, page: &Page, out: &mut Output) -> Result<(), ParseError> {
        match self.routes.iter().find(|(p, _)| p.matches(&page.url)) {
            Some((_, handler)) => handler(plugin, page, out),
            None => Err(ParseError::NotMine),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct P;
    impl P {
        fn author(&self, _: &Page, out: &mut Output) -> Result<(), ParseError> {
            out.follow("http://e.com/author-route");
            Ok(())
        }
        fn listing(&self, _: &Page, out: &mut Output) -> Result<(), ParseError> {
            out.follow("http://e.com/listing-route");
            Ok(())
        }
    }

    #[test]
    fn the_first_matching_route_runs_and_no_route_is_not_mine() {
        let r = Router::new()
            .route("/author/*", P::author)
            .route("/page/*", P::listing)
            .route("/**", P::author);
        let mut out = Output::default();
        r.dispatch(&P, &Page::html("http://e.com/page/2/", ""), &mut out)
            .unwrap();
        assert_eq!(out.follows(), ["http://e.com/listing-route"]);
        let only = Router::new().route("/author/*", P::author);
        let mut out = Output::default();
        assert_eq!(
            only.dispatch(&P, &Page::html("http://e.com/tag/x/", ""), &mut out),
            Err(ParseError::NotMine)
        );
        assert!(out.links.is_empty());
        assert!(only.matches("http://e.com/author/x"));
    }
}
