//! URL patterns with clear semantics, shared by the sandcrawl host (WIT 0.2 manifest
//! patterns) and the plugin SDK (`Router`), so a pattern means the same on both sides.
//!
//! `*` matches within one path segment (never a `/`), `**` matches across segments. A
//! pattern starting with `/` is matched against the URL's path alone (any host, query
//! ignored); any other pattern against the whole URL (fragment dropped, query kept). A
//! trailing `/` on the URL is optional, so `/page/*` matches `/page/2` and `/page/2/`.
//! Matching is linear in the pattern times the URL: no backtracking blow-up on hostile URLs.
//! This crate only compares strings; it fetches and parses nothing else.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Vec<u8>),
    /// `*`: any run of bytes without `/`.
    Segment,
    /// `**`: any run of bytes.
    Any,
}

/// A compiled URL pattern (see the module docs for its semantics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPattern {
    tokens: Vec<Token>,
    path_only: bool,
}

impl UrlPattern {
    pub fn new(pattern: &str) -> Self {
        let mut tokens = Vec::new();
        let mut lit = Vec::new();
        let bytes = pattern.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'*' {
                if !lit.is_empty() {
                    tokens.push(Token::Literal(std::mem::take(&mut lit)));
                }
                let mut run = 0;
                while i < bytes.len() && bytes[i] == b'*' {
                    run += 1;
                    i += 1;
                }
                tokens.push(if run >= 2 { Token::Any } else { Token::Segment });
            } else {
                lit.push(bytes[i]);
                i += 1;
            }
        }
        if !lit.is_empty() {
            tokens.push(Token::Literal(lit));
        }
        UrlPattern {
            tokens,
            path_only: pattern.starts_with('/'),
        }
    }

    /// Whether `url` (absolute) matches.
    pub fn matches(&self, url: &str) -> bool {
        let subject = if self.path_only {
            match url::Url::parse(url) {
                Ok(u) => return self.matches_subject(u.path()),
                // Not an absolute URL: treat the text itself as the path.
                Err(_) => url.split(['?', '#']).next().unwrap_or(url),
            }
        } else {
            url.split('#').next().unwrap_or(url)
        };
        self.matches_subject(subject)
    }

    fn matches_subject(&self, subject: &str) -> bool {
        glob(&self.tokens, subject.as_bytes())
            || subject
                .strip_suffix('/')
                .is_some_and(|s| glob(&self.tokens, s.as_bytes()))
    }
}

/// Dynamic programming over (tokens consumed, bytes consumed): linear in the pattern times
/// the URL, with no backtracking blow-up on hostile URLs.
fn glob(tokens: &[Token], s: &[u8]) -> bool {
    // reach[j]: the tokens so far can consume exactly s[..j].
    let mut reach = vec![false; s.len() + 1];
    reach[0] = true;
    for t in tokens {
        let mut next = vec![false; s.len() + 1];
        match t {
            Token::Literal(lit) => {
                for j in 0..=s.len() {
                    if reach[j] && s[j..].starts_with(lit) {
                        next[j + lit.len()] = true;
                    }
                }
            }
            Token::Segment | Token::Any => {
                let crosses = matches!(t, Token::Any);
                let mut open = false;
                for j in 0..=s.len() {
                    // `open`: some earlier reachable position can extend up to j.
                    open = open || reach[j];
                    next[j] = open;
                    if !crosses && j < s.len() && s[j] == b'/' {
                        open = false;
                    }
                }
            }
        }
        reach = next;
    }
    reach[s.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_stays_in_a_segment_and_double_star_crosses() {
        let p = UrlPattern::new("/author/*");
        assert!(p.matches("http://e.com/author/Jane-Austen"));
        assert!(p.matches("http://e.com/author/Jane-Austen/"));
        assert!(!p.matches("http://e.com/author/Jane/books"));
        assert!(!p.matches("http://e.com/x/author/Jane"));
        let deep = UrlPattern::new("/docs/**");
        assert!(deep.matches("http://e.com/docs/a/b/c.html"));
        assert!(!deep.matches("http://e.com/doc/a"));
        let mid = UrlPattern::new("/shop/*/item-*.html");
        assert!(mid.matches("http://e.com/shop/tools/item-42.html"));
        assert!(!mid.matches("http://e.com/shop/tools/sub/item-42.html"));
    }

    #[test]
    fn path_patterns_ignore_the_query_and_full_patterns_keep_it() {
        assert!(UrlPattern::new("/search").matches("http://e.com/search?q=x#top"));
        let full = UrlPattern::new("https://*.example.com/**");
        assert!(full.matches("https://shop.example.com/a/b?c=d"));
        assert!(!full.matches("https://a.b.example.com.evil/a"));
        assert!(!full.matches("http://shop.example.com/a"));
        assert!(UrlPattern::new("http*://e.com/*").matches("https://e.com/x"));
    }

    #[test]
    fn hostile_urls_match_in_linear_steps() {
        let p = UrlPattern::new("/**a**a**a**a**b");
        let url = format!("http://e.com/{}", "a".repeat(20_000));
        assert!(!p.matches(&url));
    }
}
