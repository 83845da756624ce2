//! robots.txt per RFC 9309: fetching, caching rules and answering "may we fetch this URL".
//!
//! Parsing is delegated to `texting_robots` (checked against Google's compliance cases in
//! `host/tests/robots_spec.rs`). This module owns the fetch policy around it: 4xx means
//! allow all, 5xx or unreachable means disallow all and retry later, at most 5 redirects, at
//! most 500 KiB parsed, rules cached for 24 hours. It must not schedule requests: the
//! engine asks it, `politeness` applies the Crawl-delay it reports.

use crate::fetch::{FetchError, Fetcher};
use std::time::{Duration, Instant};
use url::Url;

/// RFC 9309 §2.5: crawlers must parse at least 500 KiB.
pub const MAX_ROBOTS_BYTES: usize = 500 * 1024;
/// RFC 9309 §2.4: follow at least five redirects.
pub const MAX_ROBOTS_REDIRECTS: usize = 5;
/// RFC 9309 §2.4: do not use a cached robots.txt for more than 24 hours.
pub const CACHE_FOR: Duration = Duration::from_secs(24 * 3600);
/// After a 5xx or network failure everything is disallowed; try again after this long.
pub const RETRY_UNREACHABLE: Duration = Duration::from_secs(30);

#[derive(Debug)]
enum Rules {
    AllowAll,
    DisallowAll,
    Parsed(Box<texting_robots::Robot>),
}

/// The robots.txt verdict for one origin.
#[derive(Debug)]
pub struct Robots {
    rules: Rules,
    /// Crawl-delay for our user agent's group, if any.
    pub crawl_delay: Option<Duration>,
    pub sitemaps: Vec<String>,
    fetched_at: Instant,
    valid_for: Duration,
    /// What happened when fetching, for logs.
    pub note: String,
}

impl Robots {
    pub fn allow_all(note: &str) -> Self {
        Robots {
            rules: Rules::AllowAll,
            crawl_delay: None,
            sitemaps: Vec::new(),
            fetched_at: Instant::now(),
            valid_for: CACHE_FOR,
            note: note.to_owned(),
        }
    }

    fn disallow_all(note: String) -> Self {
        Robots {
            rules: Rules::DisallowAll,
            crawl_delay: None,
            sitemaps: Vec::new(),
            fetched_at: Instant::now(),
            valid_for: RETRY_UNREACHABLE,
            note,
        }
    }

    /// Parses a robots.txt body for `agent` (the product token, e.g. "sandcrawl").
    pub fn parse(agent: &str, body: &[u8]) -> Self {
        let body = &body[..body.len().min(MAX_ROBOTS_BYTES)];
        match texting_robots::Robot::new(agent, body) {
            Ok(robot) => Robots {
                crawl_delay: robot
                    .delay
                    .filter(|d| d.is_finite() && *d > 0.0)
                    .map(|d| Duration::from_secs_f32(d.min(3600.0))),
                sitemaps: robot.sitemaps.clone(),
                rules: Rules::Parsed(Box::new(robot)),
                fetched_at: Instant::now(),
                valid_for: CACHE_FOR,
                note: "parsed".into(),
            },
            // An unparsable file carries no rules we could honour; RFC 9309 treats
            // unparsable lines as absent.
            Err(e) => Robots::allow_all(&format!("unparsable robots.txt ({e}); allowing all")),
        }
    }

    /// Applies RFC 9309's status rules to a fetch outcome.
    pub fn from_outcome(agent: &str, outcome: Result<(u16, &[u8]), &FetchError>) -> Self {
        match outcome {
            Ok((status, body)) if (200..300).contains(&status) => Robots::parse(agent, body),
            Ok((status, _)) if (400..500).contains(&status) => {
                Robots::allow_all(&format!("robots.txt answered {status}; allowing all"))
            }
            Ok((status, _)) => Robots::disallow_all(format!(
                "robots.txt answered {status}; disallowing all until it is reachable"
            )),
            Err(e) => Robots::disallow_all(format!(
                "robots.txt unreachable ({e}); disallowing all until it is reachable"
            )),
        }
    }

    pub fn allowed(&self, url: &Url) -> bool {
        match &self.rules {
            Rules::AllowAll => true,
            Rules::DisallowAll => url.path() == "/robots.txt",
            Rules::Parsed(r) => r.allowed(url.as_str()),
        }
    }

    pub fn expired(&self) -> bool {
        self.fetched_at.elapsed() >= self.valid_for
    }

    /// True when the verdict is the temporary "unreachable" disallow-all.
    pub fn unreachable(&self) -> bool {
        matches!(self.rules, Rules::DisallowAll)
    }
}

/// The product token robots.txt groups are matched against: "sandcrawl/0.1 (+url)" -> "sandcrawl".
pub fn product_token(user_agent: &str) -> String {
    user_agent
        .split(['/', ' '])
        .next()
        .unwrap_or("sandcrawl")
        .to_owned()
}

/// Fetches and parses `origin`'s robots.txt (`origin` is any URL on the host).
pub async fn fetch(fetcher: &Fetcher, origin: &Url) -> Robots {
    let agent = product_token(&fetcher.config().user_agent);
    let mut robots_url = origin.clone();
    robots_url.set_path("/robots.txt");
    robots_url.set_query(None);
    robots_url.set_fragment(None);
    let mut hops = 0usize;
    let result = fetcher
        .fetch(&robots_url, |_| {
            hops += 1;
            let ok = hops <= MAX_ROBOTS_REDIRECTS;
            async move {
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "robots.txt redirected more than {MAX_ROBOTS_REDIRECTS} times"
                    ))
                }
            }
        })
        .await;
    match result {
        Ok(resp) => Robots::from_outcome(&agent, Ok((resp.status, &resp.body))),
        // Too many redirects counts as unavailable (RFC 9309 §2.3.1.2): allow all.
        Err(
            FetchError::RedirectRefused(_)
            | FetchError::TooManyRedirects(_)
            | FetchError::RedirectLoop(_),
        ) => Robots::allow_all("robots.txt redirects too often or nowhere; allowing all"),
        Err(e) => Robots::from_outcome(&agent, Err(&e)),
    }
}
