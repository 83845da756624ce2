//! What a request sends beyond its URL: a method, extra headers and a body. Plugins propose
//! it (WIT 0.2), the frontier stores it with the URL, the fetcher sends it.
//!
//! It owns the rules for what a plugin may put in a request (methods, header names, sizes)
//! and what part of it makes a request distinct for dedup (method and body, not headers, as
//! Scrapy's fingerprint). It must not send anything.

use serde::{Deserialize, Serialize};

/// Extra headers one request may carry.
pub const MAX_HEADERS: usize = 32;
/// Bytes of one header (name and value).
pub const MAX_HEADER_BYTES: usize = 8 * 1024;
/// Bytes of one request body: forms and API queries, not uploads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Headers the host alone sets: the connection's framing and the target, credentials (a
/// plugin must not carry a user's cookies or tokens from one site to another), the user agent
/// (robots.txt was read for the crawl's own agent; another one would sidestep it), and the
/// encodings the fetcher can decode.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "user-agent",
    "accept-encoding",
    "expect",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
    "authorization",
    "cookie",
    "content-type",
];

/// The methods a crawler sends: reading, and submitting a form or an API query. Methods that
/// change a server's state by design are not offered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// A request body, already encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Body {
    /// `application/x-www-form-urlencoded` text.
    Form(String),
    /// One JSON document.
    Json(String),
}

impl Body {
    /// Encodes form pairs, in order.
    pub fn form<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            s.append_pair(k, v);
        }
        Body::Form(s.finish())
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            Body::Form(_) => "application/x-www-form-urlencoded",
            Body::Json(_) => "application/json",
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Body::Form(t) | Body::Json(t) => t,
        }
    }
}

/// Everything a request sends besides its URL. A plain GET has none (`Option::None` where
/// it is stored), so links and seeds cost nothing extra.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestSpec {
    pub method: Method,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
}

impl RequestSpec {
    /// `None` for a plain GET without headers or body.
    pub fn nontrivial(self) -> Option<Self> {
        (self != RequestSpec::default()).then_some(self)
    }

    /// What, besides the normalized URL, makes this request distinct for dedup: the method
    /// and the body. `None` for a GET without a body, which dedups as its URL alone.
    pub fn identity(&self) -> Option<String> {
        match (&self.method, &self.body) {
            (Method::Get, None) => None,
            (m, None) => Some(m.as_str().to_owned()),
            (m, Some(b)) => Some(format!(
                "{}\n{}\n{}",
                m.as_str(),
                b.content_type(),
                b.text()
            )),
        }
    }

    /// Refuses what a plugin may not send; the message names the rule.
    pub fn check(&self) -> Result<(), String> {
        if self.headers.len() > MAX_HEADERS {
            return Err(format!(
                "{} headers on one request; at most {MAX_HEADERS}",
                self.headers.len()
            ));
        }
        for (name, value) in &self.headers {
            if name.len() + value.len() > MAX_HEADER_BYTES {
                return Err(format!("header {name:?} is over {MAX_HEADER_BYTES} bytes"));
            }
            if hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!("{name:?} is not a valid header name"));
            }
            if hyper::header::HeaderValue::from_str(value).is_err() {
                return Err(format!(
                    "header {name:?} has a value with control characters"
                ));
            }
            let lower = name.to_ascii_lowercase();
            if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("sec-") {
                return Err(format!(
                    "header {name:?} is set by the host only (framing, credentials, the user agent, encodings and the body's type are not a plugin's to choose)"
                ));
            }
        }
        if let Some(body) = &self.body {
            if self.method == Method::Get {
                return Err("a GET request cannot have a body; use post".into());
            }
            if body.text().len() > MAX_BODY_BYTES {
                return Err(format!(
                    "a body of {} bytes; at most {MAX_BODY_BYTES}",
                    body.text().len()
                ));
            }
            if let Body::Json(t) = body
                && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(t)
            {
                return Err(format!("the JSON body is not valid JSON: {e}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(body: Body) -> RequestSpec {
        RequestSpec {
            method: Method::Post,
            headers: vec![("X-Requested-With".into(), "sandcrawl".into())],
            body: Some(body),
        }
    }

    #[test]
    fn identity_covers_method_and_body_not_headers() {
        assert_eq!(RequestSpec::default().identity(), None);
        assert_eq!(RequestSpec::default().nontrivial(), None);
        let a = post(Body::form([("q", "rust"), ("page", "1")]));
        assert_eq!(a.body, Some(Body::Form("q=rust&page=1".into())));
        let mut b = a.clone();
        b.headers.clear();
        assert_eq!(a.identity(), b.identity());
        let c = post(Body::form([("q", "rust"), ("page", "2")]));
        assert_ne!(a.identity(), c.identity());
        let json = post(Body::Json("{\"q\":\"rust\"}".into()));
        assert_ne!(json.identity(), a.identity());
    }

    #[test]
    fn plugins_cannot_set_framing_credentials_or_huge_bodies() {
        for bad in [
            "Host",
            "cookie",
            "Authorization",
            "Content-Length",
            "Sec-Fetch-Mode",
        ] {
            let mut r = post(Body::Json("{}".into()));
            r.headers = vec![(bad.into(), "x".into())];
            assert!(r.check().is_err_and(|e| e.contains("host only")), "{bad}");
        }
        let mut r = post(Body::Json("{}".into()));
        r.headers = vec![("X-A".into(), "a\r\nInjected: 1".into())];
        assert!(r.check().is_err());
        r.headers = vec![("bad name".into(), "x".into())];
        assert!(r.check().is_err());
        assert!(post(Body::Json("{nope".into())).check().is_err());
        let big = post(Body::Form("a".repeat(MAX_BODY_BYTES + 1)));
        assert!(big.check().is_err_and(|e| e.contains("at most")));
        let get_with_body = RequestSpec {
            body: Some(Body::Form("a=1".into())),
            ..RequestSpec::default()
        };
        assert!(get_with_body.check().is_err());
        assert!(post(Body::Json("{\"ok\":true}".into())).check().is_ok());
    }
}
