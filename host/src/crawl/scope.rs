//! Which URLs the crawl may visit: origins (scheme, host, port), URL patterns, depth, and
//! the trap heuristics that keep a crawl from following an endless space of URLs.
//!
//! Plugins only propose; this decides. It owns the rules and the one piece of state they
//! need (distinct query strings seen per path). It must not fetch, queue or count anything.

use crate::config::ScopeConfig;
use anyhow::{Result, anyhow, bail};
use std::collections::HashMap;
use url::Url;

/// Why a URL is out of scope; also the summary's skip counter name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfScope {
    OffDomain,
    OffOrigin,
    DeniedPattern,
    NotAllowedPattern,
    TooDeep,
    PathTooDeep,
    RepeatedSegments,
    QueryVariants,
}

impl OutOfScope {
    pub fn as_str(self) -> &'static str {
        match self {
            OutOfScope::OffDomain => "off_domain",
            OutOfScope::OffOrigin => "off_origin",
            OutOfScope::DeniedPattern => "denied_pattern",
            OutOfScope::NotAllowedPattern => "not_allowed_pattern",
            OutOfScope::TooDeep => "too_deep",
            OutOfScope::PathTooDeep => "trap_path_depth",
            OutOfScope::RepeatedSegments => "trap_repeated_segments",
            OutOfScope::QueryVariants => "trap_query_variants",
        }
    }
}

/// The scheme/port pairs one allowed domain (subdomains included) may be reached on; `None`
/// as the scheme: any scheme on that port.
type Ports = Vec<(Option<String>, u16)>;

/// The crawl's scope. Built once; only `QueryVariants` keeps state.
pub struct Scope {
    /// Allowed domains and their ports, by domain: a URL's host and each of its parent
    /// domains are looked up, so checking a link costs the same with 4 seeds or 10,000.
    sites: HashMap<String, Ports>,
    extra_ports: Vec<u16>,
    allow: Option<regex::RegexSet>,
    deny: Option<regex::RegexSet>,
    max_depth: Option<u32>,
    max_path_segments: Option<u32>,
    max_segment_repeats: Option<u32>,
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// The scheme/port pairs a seed admits: its own, and, when it is on its scheme's default
/// port, the other scheme's default port (a site moving between http:// and https://).
fn seed_ports(u: &Url) -> Vec<(Option<String>, u16)> {
    let scheme = u.scheme().to_owned();
    let Some(port) = u.port_or_known_default() else {
        return Vec::new();
    };
    let mut v = vec![(Some(scheme.clone()), port)];
    if default_port(&scheme) == Some(port) {
        v.push((Some("http".into()), 80));
        v.push((Some("https".into()), 443));
    }
    v
}

impl Scope {
    pub fn new(cfg: &ScopeConfig, seeds: &[Url]) -> Result<Self> {
        let mut sites: HashMap<String, Ports> = HashMap::new();
        let mut add = |domain: String, ports: Ports| {
            let have = sites.entry(domain).or_default();
            for p in ports {
                if !have.contains(&p) {
                    have.push(p);
                }
            }
        };
        if cfg.allowed_domains.is_empty() {
            for u in seeds {
                if let Some(h) = u.host_str() {
                    add(h.to_ascii_lowercase(), seed_ports(u));
                }
            }
        } else {
            // A domain given without a port is reached on the default ports and on the
            // seeds' ports (a seed on :8080 with --allow-domain must stay in scope).
            let mut seed_ports: Vec<(Option<String>, u16)> =
                vec![(Some("http".into()), 80), (Some("https".into()), 443)];
            for u in seeds {
                if let Some(p) = u.port_or_known_default() {
                    let p = (Some(u.scheme().to_owned()), p);
                    if !seed_ports.contains(&p) {
                        seed_ports.push(p);
                    }
                }
            }
            for d in &cfg.allowed_domains {
                let d = d.trim().trim_start_matches("*.").to_ascii_lowercase();
                // "example.com:8080" admits that port; a bare domain the default ports.
                let (domain, ports) = match d.rsplit_once(':') {
                    Some((host, port)) if !host.contains(']') || host.ends_with(']') => {
                        let port: u16 = port.parse().map_err(|_| {
                            anyhow!("scope.allowed_domains: {d:?} has an invalid port; write e.g. \"example.com:8080\"")
                        })?;
                        (host.to_owned(), vec![(None, port)])
                    }
                    _ => (d.clone(), seed_ports.clone()),
                };
                if domain.is_empty() {
                    bail!("scope.allowed_domains: an empty domain");
                }
                add(domain, ports);
            }
        }
        for o in &cfg.allowed_origins {
            let u = Url::parse(o).map_err(|e| {
                anyhow!("scope.allowed_origins: {o:?} is not an origin ({e}); write e.g. \"http://127.0.0.1:8080\"")
            })?;
            let (Some(host), Some(port)) = (u.host_str(), u.port_or_known_default()) else {
                bail!(
                    "scope.allowed_origins: {o:?} needs a host; write e.g. \"http://127.0.0.1:8080\""
                );
            };
            add(
                host.to_ascii_lowercase(),
                vec![(Some(u.scheme().to_owned()), port)],
            );
        }
        let set = |v: &Vec<String>, key: &str| -> Result<Option<regex::RegexSet>> {
            if v.is_empty() {
                return Ok(None);
            }
            regex::RegexSet::new(v)
                .map(Some)
                .map_err(|e| anyhow!("{key}: {e}"))
        };
        Ok(Scope {
            sites,
            extra_ports: cfg.allowed_ports.clone(),
            allow: set(&cfg.allow, "scope.allow")?,
            deny: set(&cfg.deny, "scope.deny")?,
            max_depth: cfg.max_depth,
            max_path_segments: cfg.max_path_segments,
            max_segment_repeats: cfg.max_segment_repeats,
        })
    }

    /// Origin, pattern and URL-shape rules (not depth, not query variants).
    pub fn check_url(&self, url: &Url) -> Result<(), OutOfScope> {
        self.check_origin(url)?;
        if let Some(deny) = &self.deny
            && deny.is_match(url.as_str())
        {
            return Err(OutOfScope::DeniedPattern);
        }
        if let Some(allow) = &self.allow
            && !allow.is_match(url.as_str())
        {
            return Err(OutOfScope::NotAllowedPattern);
        }
        self.check_shape(url)
    }

    /// The origin rules alone: an allowed domain, on an allowed scheme and port. Sitemap
    /// files are fetched from any in-scope origin, whatever the URL patterns say.
    pub fn check_origin(&self, url: &Url) -> Result<(), OutOfScope> {
        let host = url.host_str().unwrap_or("").to_ascii_lowercase();
        // The host itself, then each parent domain ("a.b.example.com", "b.example.com", …).
        let mut suffixes = std::iter::successors(Some(host.as_str()), |h| {
            h.split_once('.').map(|(_, rest)| rest)
        })
        .filter(|d| !d.is_empty())
        .filter_map(|d| self.sites.get(d))
        .peekable();
        if suffixes.peek().is_none() {
            return Err(OutOfScope::OffDomain);
        }
        let scheme = url.scheme();
        let port = url.port_or_known_default().unwrap_or(0);
        let origin_ok = self.extra_ports.contains(&port)
            || suffixes.any(|ports| {
                ports
                    .iter()
                    .any(|(sc, p)| *p == port && sc.as_deref().is_none_or(|sc| sc == scheme))
            });
        if !origin_ok {
            return Err(OutOfScope::OffOrigin);
        }
        Ok(())
    }

    /// Heritrix-style trap rules on the path: too many segments, or one segment repeated
    /// (`/a/b/a/b/a/b/…`). Runs for every proposed link, so it allocates nothing: repeats are
    /// counted among the first `REPEAT_WINDOW` segments.
    fn check_shape(&self, url: &Url) -> Result<(), OutOfScope> {
        const REPEAT_WINDOW: usize = 64;
        if self.max_path_segments.is_none() && self.max_segment_repeats.is_none() {
            return Ok(());
        }
        let Some(segments) = url.path_segments() else {
            return Ok(());
        };
        let mut window: [&str; REPEAT_WINDOW] = [""; REPEAT_WINDOW];
        let mut n = 0usize;
        for seg in segments.filter(|x| !x.is_empty()) {
            n += 1;
            if self.max_path_segments.is_some_and(|max| n > max as usize) {
                return Err(OutOfScope::PathTooDeep);
            }
            if let Some(max) = self.max_segment_repeats
                && n <= REPEAT_WINDOW
            {
                let earlier = window[..n - 1].iter().filter(|x| **x == seg).count();
                if earlier + 1 > max as usize {
                    return Err(OutOfScope::RepeatedSegments);
                }
                window[n - 1] = seg;
            }
        }
        Ok(())
    }

    pub fn check_depth(&self, depth: u32) -> Result<(), OutOfScope> {
        match self.max_depth {
            Some(max) if depth > max => Err(OutOfScope::TooDeep),
            _ => Ok(()),
        }
    }
}

/// Distinct query strings admitted per host and path (session ids, calendars, faceted
/// search). Keyed by a 64-bit hash of host and path, so its memory is bounded by the number
/// of distinct paths that carry a query, not by URLs.
pub struct QueryVariants {
    max: Option<u32>,
    seen: HashMap<u64, u32>,
}

impl QueryVariants {
    pub fn new(max: Option<u32>) -> Self {
        QueryVariants {
            max,
            seen: HashMap::new(),
        }
    }

    /// Counts a URL (its text as the `url` crate writes it) as a new variant of its path, or
    /// refuses it past the cap. The path key is everything before `?`: scheme, host, port and
    /// path. Call only for URLs not seen before (a duplicate is not a new variant).
    pub fn admit_str(&mut self, url: &str) -> Result<(), OutOfScope> {
        let Some(max) = self.max else { return Ok(()) };
        let Some((base, _query)) = url.split_once('?') else {
            return Ok(());
        };
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        base.hash(&mut h);
        let n = self.seen.entry(h.finish()).or_default();
        if *n >= max {
            return Err(OutOfScope::QueryVariants);
        }
        *n += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).expect("url")
    }

    /// A URL's text as the crawl stores it.
    fn written(s: &str) -> String {
        u(s).to_string()
    }

    fn scope(cfg: ScopeConfig, seeds: &[&str]) -> Scope {
        let seeds: Vec<Url> = seeds.iter().map(|s| u(s)).collect();
        Scope::new(&cfg, &seeds).expect("scope")
    }

    #[test]
    fn scope_is_by_origin() {
        let s = scope(
            ScopeConfig::default(),
            &["http://127.0.0.1:5000/", "https://example.com/"],
        );
        assert_eq!(s.check_url(&u("http://127.0.0.1:5000/a")), Ok(()));
        assert_eq!(
            s.check_url(&u("http://127.0.0.1:5001/a")),
            Err(OutOfScope::OffOrigin)
        );
        assert_eq!(
            s.check_url(&u("http://127.0.0.1:22/")),
            Err(OutOfScope::OffOrigin)
        );
        assert_eq!(
            s.check_url(&u("https://127.0.0.1:5000/")),
            Err(OutOfScope::OffOrigin)
        );
        assert_eq!(
            s.check_url(&u("http://example.com/x")),
            Ok(()),
            "default ports admit both schemes"
        );
        assert_eq!(s.check_url(&u("https://www.example.com/x")), Ok(()));
        assert_eq!(
            s.check_url(&u("https://example.com:8443/x")),
            Err(OutOfScope::OffOrigin)
        );
        assert_eq!(
            s.check_url(&u("https://other.com/")),
            Err(OutOfScope::OffDomain)
        );

        let cfg = ScopeConfig {
            allowed_ports: vec![8443],
            allowed_origins: vec!["http://127.0.0.1:5001".into()],
            ..ScopeConfig::default()
        };
        let s = scope(cfg, &["http://127.0.0.1:5000/", "https://example.com/"]);
        assert_eq!(s.check_url(&u("https://example.com:8443/x")), Ok(()));
        assert_eq!(s.check_url(&u("http://127.0.0.1:5001/a")), Ok(()));
        assert_eq!(
            s.check_url(&u("http://127.0.0.1:5002/a")),
            Err(OutOfScope::OffOrigin)
        );
    }

    #[test]
    fn allowed_domains_with_and_without_ports() {
        let cfg = ScopeConfig {
            allowed_domains: vec!["example.com".into(), "localhost:9000".into()],
            ..ScopeConfig::default()
        };
        let s = scope(cfg, &["http://example.com:8080/"]);
        assert_eq!(s.check_url(&u("https://a.example.com/")), Ok(()));
        assert_eq!(
            s.check_url(&u("http://example.com:8080/")),
            Ok(()),
            "the seed's port"
        );
        assert_eq!(
            s.check_url(&u("http://example.com:81/")),
            Err(OutOfScope::OffOrigin)
        );
        assert_eq!(s.check_url(&u("http://localhost:9000/")), Ok(()));
        assert_eq!(
            s.check_url(&u("http://localhost/")),
            Err(OutOfScope::OffOrigin)
        );
    }

    #[test]
    fn trap_shapes_and_query_variants() {
        let s = scope(ScopeConfig::default(), &["http://t.test/"]);
        let deep = format!(
            "http://t.test/{}",
            "d/".repeat(40)
                .replace("d/", "x/")
                .chars()
                .enumerate()
                .map(|(i, c)| if c == 'x' {
                    char::from(b'a' + (i % 26) as u8)
                } else {
                    c
                })
                .collect::<String>()
        );
        assert_eq!(s.check_url(&u(&deep)), Err(OutOfScope::PathTooDeep));
        assert_eq!(
            s.check_url(&u("http://t.test/a/b/a/b/a/b/a")),
            Err(OutOfScope::RepeatedSegments)
        );
        assert_eq!(s.check_url(&u("http://t.test/2024/01/01/post")), Ok(()));
        let mut q = QueryVariants::new(Some(3));
        for i in 0..3 {
            assert_eq!(
                q.admit_str(&written(&format!("http://t.test/p?sid={i}"))),
                Ok(())
            );
        }
        assert_eq!(
            q.admit_str(&written("http://t.test/p?sid=99")),
            Err(OutOfScope::QueryVariants)
        );
        assert_eq!(q.admit_str(&written("http://t.test/other?sid=99")), Ok(()));
        assert_eq!(
            q.admit_str(&written("http://t.test/p")),
            Ok(()),
            "the bare path is not a variant"
        );
    }
}
