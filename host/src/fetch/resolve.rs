//! Name resolution for the fetcher: `fetch.resolve` rules first (like curl's `--resolve`, with
//! globs: `"*.bench.test" = "127.0.0.1"`), the system resolver for every other name.
//!
//! It owns the rules and the lookup. It must not decide which URLs are fetched: a rule only
//! says where a host name lives.

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// The resolver the fetcher's connector uses.
#[derive(Clone)]
pub struct Resolver {
    /// Every rule's glob in one matcher (one pass per name, not one per rule: a benchmark
    /// with 64 rules spent 1 % of a broad crawl matching them in turn), and each rule's
    /// address by its index.
    globs: Arc<globset::GlobSet>,
    ips: Arc<Vec<IpAddr>>,
    system: GaiResolver,
}

impl Resolver {
    /// Builds the rules from `fetch.resolve` (host glob → IP address); a bad glob or address
    /// is one line naming it.
    pub fn new(rules: &std::collections::BTreeMap<String, String>) -> anyhow::Result<Self> {
        let mut globs = globset::GlobSetBuilder::new();
        let mut ips = Vec::new();
        for (host, ip) in rules {
            let glob = globset::GlobBuilder::new(&host.to_ascii_lowercase())
                .literal_separator(false)
                .build()
                .map_err(|e| anyhow::anyhow!("fetch.resolve: host pattern {host:?}: {e}"))?;
            let ip: IpAddr = ip.trim().parse().map_err(|_| {
                anyhow::anyhow!(
                    "fetch.resolve: {ip:?} (for {host:?}) is not an IP address; write e.g. \"127.0.0.1\""
                )
            })?;
            globs.add(glob);
            ips.push(ip);
        }
        let globs = globs
            .build()
            .map_err(|e| anyhow::anyhow!("fetch.resolve: {e}"))?;
        Ok(Resolver {
            globs: Arc::new(globs),
            ips: Arc::new(ips),
            system: GaiResolver::new(),
        })
    }

    /// The address a rule gives `host`, if any (the first matching rule, in key order).
    pub fn lookup(&self, host: &str) -> Option<IpAddr> {
        if self.ips.is_empty() {
            return None;
        }
        let host = host.to_ascii_lowercase();
        // `matches` lists the matching rules' indices in ascending order.
        let first = *self.globs.matches(&host).first()?;
        self.ips.get(first).copied()
    }
}

type Addrs = std::vec::IntoIter<SocketAddr>;

/// A name lookup that failed or found no address. The connector wraps it (in an
/// `io::Error`), and the fetcher finds it by type in the error's source chain: DNS failures
/// are told from connect failures without reading any message.
#[derive(Debug, thiserror::Error)]
#[error("DNS lookup of {host} failed: {why}")]
pub struct DnsError {
    host: String,
    why: String,
}

impl tower_service::Service<Name> for Resolver {
    type Response = Addrs;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addrs, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        // The connector puts the URL's port on every address.
        if let Some(ip) = self.lookup(name.as_str()) {
            return Box::pin(async move { Ok(vec![SocketAddr::new(ip, 0)].into_iter()) });
        }
        let host = name.as_str().to_owned();
        let lookup = self.system.call(name);
        Box::pin(async move {
            let fail = |why: String| std::io::Error::other(DnsError { host, why });
            let addrs: Vec<SocketAddr> = match lookup.await {
                Ok(a) => a.collect(),
                Err(e) => return Err(fail(e.to_string())),
            };
            if addrs.is_empty() {
                return Err(fail("no address".into()));
            }
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_globs_in_order_and_bad_ones_are_one_line() {
        let mut rules = std::collections::BTreeMap::new();
        rules.insert("*.bench.test".to_owned(), "127.0.0.1".to_owned());
        rules.insert("exact.test".to_owned(), "::1".to_owned());
        let r = Resolver::new(&rules).expect("valid");
        assert_eq!(r.lookup("Shop7.bench.test"), "127.0.0.1".parse().ok());
        assert_eq!(r.lookup("exact.test"), "::1".parse().ok());
        assert_eq!(r.lookup("other.test"), None);
        // Both "*.test" and "exact.test" match; the first in key order wins.
        let mut both = std::collections::BTreeMap::new();
        both.insert("*.test".to_owned(), "10.0.0.1".to_owned());
        both.insert("exact.test".to_owned(), "10.0.0.2".to_owned());
        let r = Resolver::new(&both).expect("valid");
        assert_eq!(r.lookup("exact.test"), "10.0.0.1".parse().ok());
        assert_eq!(r.lookup("a.b.test"), "10.0.0.1".parse().ok());
        rules.insert("x.test".to_owned(), "localhost".to_owned());
        let e = Resolver::new(&rules)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("fetch.resolve") && e.contains("not an IP address"),
            "{e}"
        );
    }
}
