//! URL normalization and fingerprints: decides when two URLs are "the same page".
//!
//! It owns the canonical form used for dedup and nothing else: it does not decide scope or
//! whether a URL is fetched, and the canonical form never goes on the wire (a URL is fetched
//! as written; only its fingerprint comes from this form, as in Scrapy). The `url` crate already lowercases scheme and host, drops
//! default ports, resolves dot-segments and normalizes percent-encoding; on top of that this
//! module drops fragments, sorts query arguments and removes tracking parameters. Every rule
//! can be switched off in `[normalize]`.

use sha2::{Digest, Sha256};
use url::Url;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizeConfig {
    /// Drop `#fragment`.
    pub strip_fragment: bool,
    /// Sort query arguments by name, then value (stable for equal names).
    pub sort_query: bool,
    /// Drop `utm_*` arguments and those in `tracking_params`.
    pub strip_tracking: bool,
    /// Extra argument names to drop when `strip_tracking` is on.
    pub tracking_params: Vec<String>,
    /// Turn `http://h/p?` into `http://h/p`.
    pub strip_empty_query: bool,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        NormalizeConfig {
            strip_fragment: true,
            sort_query: true,
            strip_tracking: true,
            tracking_params: [
                "fbclid", "gclid", "dclid", "msclkid", "mc_cid", "mc_eid", "_ga", "yclid",
            ]
            .map(String::from)
            .to_vec(),
            strip_empty_query: true,
        }
    }
}

/// 16 bytes of SHA-256 over the normalized URL: collisions are negligible at crawl scale
/// (~2^-64 per pair) and the key stays small in the store.
pub type Fingerprint = [u8; 16];

impl NormalizeConfig {
    /// Parses and normalizes; `None` for unparsable or non-http(s) URLs.
    pub fn normalize(&self, raw: &str) -> Option<Url> {
        let mut url = Url::parse(raw.trim()).ok()?;
        self.apply(&mut url);
        matches!(url.scheme(), "http" | "https").then_some(url)
    }

    /// The fingerprint a URL is deduplicated by: that of its normalized form. The URL itself
    /// is fetched as written.
    pub fn fingerprint(&self, url: &Url) -> Fingerprint {
        let mut u = url.clone();
        self.apply(&mut u);
        fingerprint(&u)
    }

    /// The dedup fingerprint of a request: its normalized URL, joined by its method and body
    /// when it is more than a plain GET (`RequestSpec::identity`).
    pub fn request_fingerprint(
        &self,
        url: &Url,
        spec: Option<&crate::fetch::RequestSpec>,
    ) -> Fingerprint {
        match spec.and_then(|s| s.identity()) {
            None => self.fingerprint(url),
            Some(id) => {
                let mut u = url.clone();
                self.apply(&mut u);
                fingerprint_of(&format!("{u}\n{id}"))
            }
        }
    }

    /// Normalizes an already-parsed URL in place.
    pub fn apply(&self, url: &mut Url) {
        if self.strip_fragment {
            url.set_fragment(None);
        }
        if let Some(q) = url.query() {
            if self.sort_query || self.strip_tracking {
                let mut pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                let before = pairs.len();
                if self.strip_tracking {
                    pairs.retain(|(k, _)| {
                        let k = k.to_ascii_lowercase();
                        !k.starts_with("utm_")
                            && !self
                                .tracking_params
                                .iter()
                                .any(|t| t.eq_ignore_ascii_case(&k))
                    });
                }
                let changed = pairs.len() != before;
                if self.sort_query {
                    pairs.sort();
                }
                if self.sort_query || changed {
                    if pairs.is_empty() {
                        url.set_query(None);
                    } else if !q.is_empty() {
                        url.query_pairs_mut().clear().extend_pairs(pairs);
                    }
                }
            }
            if self.strip_empty_query && url.query() == Some("") {
                url.set_query(None);
            }
        }
    }
}

pub fn fingerprint(url: &Url) -> Fingerprint {
    fingerprint_of(url.as_str())
}

/// The same 16 bytes of SHA-256 over any text: the engine keys link texts, before they are
/// normalized, with it.
pub fn fingerprint_of(text: &str) -> Fingerprint {
    let digest = Sha256::digest(text.as_bytes());
    let mut fp = [0u8; 16];
    fp.copy_from_slice(&digest[..16]);
    fp
}

/// The politeness key of a URL: host plus explicit port.
pub fn host_key(url: &Url) -> String {
    host_port_key(url.host_str(), url.port())
}

/// `host_key` from a host and an explicit port, for callers that hold an `http::Uri`
/// rather than a `Url` (the fetcher's connector): one format for every per-host table.
pub fn host_port_key(host: Option<&str>, port: Option<u16>) -> String {
    match (host, port) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        NormalizeConfig::default().normalize(s).unwrap().to_string()
    }

    #[test]
    fn equivalent_urls_normalize_equal() {
        let canonical = "http://example.com/a/c?x=1&y=2";
        for v in [
            "HTTP://Example.COM:80/a/b/../c?y=2&x=1",
            "http://example.com/a/./c?x=1&y=2#frag",
            "http://example.com/a/c?utm_source=n&x=1&utm_medium=m&y=2",
            "http://example.com/a/c?x=1&fbclid=zzz&y=2",
        ] {
            assert_eq!(n(v), canonical, "{v}");
        }
        assert_eq!(n("https://e.com/p?utm_source=x"), "https://e.com/p");
        assert_eq!(n("https://e.com/p?"), "https://e.com/p");
        assert_eq!(n("https://e.com/%7Efoo"), "https://e.com/%7Efoo");
        assert!(NormalizeConfig::default().normalize("mailto:a@b").is_none());
        assert!(NormalizeConfig::default().normalize("not a url").is_none());
    }

    #[test]
    fn rules_can_be_switched_off() {
        let cfg = NormalizeConfig {
            strip_fragment: false,
            sort_query: false,
            strip_tracking: false,
            ..NormalizeConfig::default()
        };
        assert_eq!(
            cfg.normalize("http://e.com/p?b=1&utm_x=2&a=3#f")
                .unwrap()
                .as_str(),
            "http://e.com/p?b=1&utm_x=2&a=3#f"
        );
    }
}
