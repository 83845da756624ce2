//! From a page's proposed links to URLs the frontier can queue: resolve against the page,
//! check scheme, scope and depth, and fingerprint by the normalized form while keeping the
//! URL as written for the fetch. It owns the cache of link texts already known; it must not
//! queue anything itself (the scheduler hands the result to the frontier).

use super::outcome::Skip;
use super::scope::Scope;
use crate::frontier::{Lease, NewUrl, SeenCache, UrlKind, UrlRecord};
use crate::normalize::{Fingerprint, NormalizeConfig, fingerprint_of, host_key};
use crate::plugin::{LinkKind, LinkOut};
use url::Url;

/// A link as a plugin proposed it, and which plugin (None: the built-in link follower).
pub type LinkProposal = (LinkOut, Option<String>);

/// Plugin metadata longer than this is dropped from the link (it travels in every queue
/// entry).
const MAX_METADATA: usize = 4096;

/// The URL to fetch for `url` as written: everything but the fragment, which never goes on
/// the wire. Query order, empty values (`?flag`) and escapes stay as the page wrote them.
pub fn fetch_form(url: &Url) -> Url {
    let mut u = url.clone();
    u.set_fragment(None);
    u
}

/// Resolves `raw` against `base` and applies the scope rules to its normalized form (the one
/// dedup knows the URL by). Returns the URL as written and its dedup fingerprint, or why it is
/// skipped. Depth is the caller's: it depends on who proposed the URL.
pub fn resolve_in_scope(
    base: &Url,
    raw: &str,
    norm: &NormalizeConfig,
    scope: &Scope,
) -> Result<(Url, Fingerprint), Skip> {
    let u = base.join(raw).map_err(|_| Skip::InvalidLink)?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(Skip::InvalidLink);
    }
    let mut normalized = u.clone();
    norm.apply(&mut normalized);
    scope.check_url(&normalized)?;
    Ok((u, crate::normalize::fingerprint(&normalized)))
}

/// A URL to queue: fetched as written, deduplicated by its normalized form.
pub fn new_url(url: &Url, norm: &NormalizeConfig, depth: u32, kind: UrlKind) -> NewUrl {
    queued(url, norm.fingerprint(url), depth, kind)
}

/// [`new_url`] with the fingerprint already known (`resolve_in_scope` computed it).
pub fn queued(url: &Url, fp: Fingerprint, depth: u32, kind: UrlKind) -> NewUrl {
    NewUrl {
        fp,
        record: UrlRecord::new(fetch_form(url).to_string(), host_key(url), depth, 0, kind),
    }
}

/// The links a page gave, turned into queueable URLs.
pub struct Accepted {
    pub urls: Vec<NewUrl>,
    /// Raw-text hashes of the absolute links among them: known once they are committed.
    pub raw: Vec<Fingerprint>,
}

/// Accepts links, remembering which link texts are already known to the frontier.
#[derive(Default)]
pub struct LinkFilter {
    /// Hashes of absolute link strings, exactly as plugins proposed them, whose URL is known
    /// to the frontier.
    known: SeenCache,
}

impl LinkFilter {
    /// Turns proposals into queueable URLs: resolve, scope, depth. `skip` is told about each
    /// link dropped and why.
    ///
    /// Most links a page proposes were proposed before, in the same words, and resolving and
    /// normalizing each again was the larger part of a commit's cost. An absolute link whose
    /// exact string is known maps to a URL already in the frontier, so it would be dropped as
    /// a duplicate anyway: it is dropped here, after the one check that depends on the page
    /// proposing it (depth), so the skip counts stay what they were. Scope rules do not change
    /// during a crawl, and the frontier's set of known URLs only grows.
    pub fn accept(
        &mut self,
        lease: &Lease,
        page_url: &Url,
        links: Vec<LinkProposal>,
        rules: (&NormalizeConfig, &Scope),
        skip: &mut dyn FnMut(Skip),
    ) -> Accepted {
        let (norm, scope) = rules;
        let depth = lease.record.depth + 1;
        let mut urls = Vec::with_capacity(links.len());
        let mut raw_hashes = Vec::with_capacity(links.len());
        for (l, proposer) in links {
            let raw = l.url.trim();
            // Only plain GETs are known by their link text: a request with a method or body
            // is a different request from a link to the same URL.
            let raw_hash = (l.request.is_none()
                && (raw.starts_with("http://") || raw.starts_with("https://")))
            .then(|| fingerprint_of(raw));
            if let Some(h) = &raw_hash
                && self.known.contains(h)
            {
                if l.kind == LinkKind::Follow
                    && let Err(why) = scope.check_depth(depth)
                {
                    skip(why.into());
                }
                continue;
            }
            let (u, mut fp) = match resolve_in_scope(page_url, raw, norm, scope) {
                Ok(r) => r,
                Err(why) => {
                    skip(why);
                    continue;
                }
            };
            if l.request.is_some() {
                fp = norm.request_fingerprint(&u, l.request.as_ref());
            }
            let kind = match l.kind {
                LinkKind::Follow => UrlKind::Page,
                LinkKind::Download => UrlKind::Download,
            };
            // Downloads belong to the page that proposed them, so depth limits pages only.
            if kind == UrlKind::Page
                && let Err(why) = scope.check_depth(depth)
            {
                skip(why.into());
                continue;
            }
            raw_hashes.extend(raw_hash);
            let mut n = queued(&u, fp, depth, kind);
            n.record.priority = l.priority;
            n.record.referrer = Some(lease.record.url.clone());
            n.record.metadata = l.metadata.filter(|m| m.len() <= MAX_METADATA);
            n.record.proposer = proposer;
            n.record.request = l.request;
            urls.push(n);
        }
        Accepted {
            urls,
            raw: raw_hashes,
        }
    }

    /// Marks link texts known, once the frontier has every one of their URLs.
    pub fn remember(&mut self, raw: Vec<Fingerprint>) {
        for h in raw {
            self.known.insert(h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Result;

    fn link(url: &str) -> LinkProposal {
        (
            LinkOut {
                url: url.into(),
                priority: 0,
                kind: LinkKind::Follow,
                metadata: None,
                request: None,
            },
            None,
        )
    }

    #[test]
    fn a_link_proposed_again_skips_resolving_but_still_counts_its_depth_skip() -> Result<()> {
        let root = Url::parse("http://a.test/")?;
        let scope = Scope::new(
            &crate::config::ScopeConfig {
                max_depth: Some(1),
                ..Default::default()
            },
            std::slice::from_ref(&root),
        )?;
        let norm = NormalizeConfig::default();
        let page = |depth| {
            let n = new_url(&root, &norm, depth, UrlKind::Page);
            Lease::detached(n.fp, n.record)
        };
        let links = || vec![link("http://a.test/x?b=2&a=1"), link("/y")];
        let urls = |out: &[NewUrl]| out.iter().map(|n| n.record.url.clone()).collect::<Vec<_>>();
        let mut filter = LinkFilter::default();
        let mut skipped = Vec::new();
        let mut accept = |filter: &mut LinkFilter, depth| {
            filter.accept(&page(depth), &root, links(), (&norm, &scope), &mut |s| {
                skipped.push(s)
            })
        };

        let out = accept(&mut filter, 0);
        // Fetched as written; the query order only matters to dedup.
        assert_eq!(
            urls(&out.urls),
            ["http://a.test/x?b=2&a=1", "http://a.test/y"]
        );
        assert_eq!(
            out.urls[0].fp,
            crate::normalize::fingerprint(&Url::parse("http://a.test/x?a=1&b=2")?)
        );
        assert_eq!(
            out.raw.len(),
            1,
            "only absolute links are remembered by their text"
        );
        filter.remember(out.raw);

        // Once committed, the same absolute text is dropped before it is parsed; a relative
        // link depends on its page, so it is resolved every time.
        let out = accept(&mut filter, 0);
        assert_eq!(urls(&out.urls), ["http://a.test/y"]);
        assert!(out.raw.is_empty());

        // From a page at the depth limit both are skipped and counted, cached or not.
        let out = accept(&mut filter, 1);
        assert!(out.urls.is_empty());
        assert_eq!(
            skipped,
            [Skip::Scope(super::super::scope::OutOfScope::TooDeep); 2]
        );
        Ok(())
    }

    #[test]
    fn urls_are_fetched_as_written_without_the_fragment() -> Result<()> {
        let norm = NormalizeConfig::default();
        for (written, fetched) in [
            ("http://a.test/p?flag", "http://a.test/p?flag"),
            ("http://a.test/p?q=a%20b", "http://a.test/p?q=a%20b"),
            ("http://a.test/p?b=1&a=2#top", "http://a.test/p?b=1&a=2"),
            (
                "http://a.test/p?utm_source=x&id=1",
                "http://a.test/p?utm_source=x&id=1",
            ),
        ] {
            let u = Url::parse(written)?;
            let n = new_url(&u, &norm, 0, UrlKind::Page);
            assert_eq!(n.record.url, fetched);
            assert_eq!(n.fp, norm.fingerprint(&u), "dedup by the normalized form");
        }
        let a = new_url(
            &Url::parse("http://a.test/p?b=1&a=2")?,
            &norm,
            0,
            UrlKind::Page,
        );
        let b = new_url(
            &Url::parse("http://a.test/p?a=2&b=1#x")?,
            &norm,
            0,
            UrlKind::Page,
        );
        assert_eq!(a.fp, b.fp, "the same page for dedup");
        assert_ne!(a.record.url, b.record.url, "each fetched as written");
        Ok(())
    }
}
