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
    /// robots.txt failed in a way retrying cannot fix (a TLS failure): the host itself is
    /// unusable, so its URLs fail at once with this error.
    HostFailed(FetchError),
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
    /// robots.txt timed out (so the host counts a timeout, as a page fetch would).
    pub timed_out: bool,
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
            timed_out: false,
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
            timed_out: false,
        }
    }

    /// Parses a robots.txt body for `agent` (the product token, e.g. "sandcrawl").
    pub fn parse(agent: &str, body: &[u8]) -> Self {
        let body = sanitize(&body[..body.len().min(MAX_ROBOTS_BYTES)]);
        if !has_group(&body) {
            // RFC 9309 §2.1: rules belong to groups; rules outside any group apply to no one.
            return Robots::allow_all("no user-agent groups; allowing all");
        }
        let body = agent_lines_to_tokens(&body);
        let body = &body[..];
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
                timed_out: false,
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
            Err(e @ FetchError::Tls(_)) => Robots {
                rules: Rules::HostFailed(e.clone()),
                crawl_delay: None,
                sitemaps: Vec::new(),
                fetched_at: Instant::now(),
                valid_for: CACHE_FOR,
                note: format!("robots.txt failed permanently ({e}); the host's URLs fail"),
                timed_out: false,
            },
            Err(e) => Robots {
                timed_out: matches!(e, FetchError::Timeout(_)),
                ..Robots::disallow_all(format!(
                    "robots.txt unreachable ({e}); disallowing all until it is reachable"
                ))
            },
        }
    }

    /// The permanent failure that makes every URL of this host fail, if any.
    pub fn host_failure(&self) -> Option<&FetchError> {
        match &self.rules {
            Rules::HostFailed(e) => Some(e),
            _ => None,
        }
    }

    pub fn allowed(&self, url: &Url) -> bool {
        // RFC 9309 2.2.2: the robots.txt file itself is implicitly allowed.
        url.path() == "/robots.txt" || self.allowed_str(url.as_str())
    }

    /// Matches a URL exactly as given. RFC 9309 leaves percent-encoding the URL to the
    /// caller; the crawler's own URLs are always encoded by the `url` crate.
    pub fn allowed_str(&self, url: &str) -> bool {
        match &self.rules {
            Rules::AllowAll => true,
            Rules::DisallowAll | Rules::HostFailed(_) => url.ends_with("/robots.txt"),
            // Google's contract: octets outside ASCII in an unencoded URL are compared raw
            // and so never equal a (percent-encoded) rule; stand in a byte no rule contains.
            Rules::Parsed(r) if !url.is_ascii() => {
                let raw: String = url
                    .chars()
                    .map(|c| if c.is_ascii() { c } else { '\u{1}' })
                    .collect();
                r.allowed(&raw)
            }
            Rules::Parsed(r) => r.allowed(url),
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

/// The key of a `key: value` line, lowercased, without spaces, `-` or `_` (so `User-agent`,
/// `user_agent` and `useragent` are one key).
fn line_key(line: &[u8]) -> Option<String> {
    let colon = line.iter().position(|&b| b == b':')?;
    Some(
        String::from_utf8_lossy(&line[..colon])
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase(),
    )
}

/// Rewrites every `User-agent:` value to its product token, as Google's parser reads it: the
/// leading run of letters, `_` and `-` (`sandcrawl/2.1` and `sandcrawl*` are `sandcrawl`),
/// or `*`. The rules parser then compares tokens exactly. Called only on a body that has
/// groups (`has_group`).
fn agent_lines_to_tokens(body: &[u8]) -> Vec<u8> {
    let is_break = |b: &u8| *b == b'\n' || *b == b'\r';
    // Lines end in LF, CR or CRLF (all three occur); the breaks are copied as they are.
    let mut out = Vec::with_capacity(body.len());
    let mut rest = body;
    while !rest.is_empty() {
        let end = rest.iter().position(is_break).unwrap_or(rest.len());
        let (line, tail) = rest.split_at(end);
        let brk = tail.iter().take_while(|b| is_break(b)).count();
        if line_key(line).as_deref() == Some("useragent") {
            let colon = line.iter().position(|&b| b == b':').unwrap_or(line.len());
            let value = String::from_utf8_lossy(&line[(colon + 1).min(line.len())..]).into_owned();
            // A comment ends the value.
            let value = value.split('#').next().unwrap_or("").trim();
            let token: String = if value.starts_with('*') {
                "*".into()
            } else {
                value
                    .chars()
                    .take_while(|c| c.is_ascii_alphabetic() || *c == '_' || *c == '-')
                    .collect()
            };
            out.extend_from_slice(b"User-agent: ");
            out.extend_from_slice(token.as_bytes());
        } else {
            out.extend_from_slice(line);
        }
        out.extend_from_slice(&tail[..brk]);
        rest = &tail[brk..];
    }
    out
}

/// Whether any line starts a group (`user-agent:`, with the spellings RFC 9309 parsers accept).
fn has_group(body: &[u8]) -> bool {
    body.split(|&b| b == b'\n' || b == b'\r')
        .any(|line| line_key(line).as_deref() == Some("useragent"))
}

/// Skips a UTF-8 byte order mark, or the part of one a file starts with, the way Google's
/// reference parser does; a first line that then starts with a control or non-ASCII byte is
/// a broken line, not a directive, so it is dropped rather than guessed at.
fn sanitize(body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];
    let mut skip = 0;
    while skip < 3 && body.get(skip) == Some(&BOM[skip]) {
        skip += 1;
    }
    let rest = &body[skip..];
    match rest.first() {
        Some(&b) if (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b >= 0x80 => {
            let cut = rest
                .iter()
                .position(|&c| c == b'\n')
                .map_or(rest.len(), |p| p + 1);
            std::borrow::Cow::Owned(rest[cut..].to_vec())
        }
        _ => std::borrow::Cow::Borrowed(rest),
    }
}

/// The product token robots.txt groups are matched against: "sandcrawl/0.1 (+url)" -> "sandcrawl".
pub fn product_token(user_agent: &str) -> String {
    let token: String = user_agent
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_alphabetic() || *c == '_' || *c == '-')
        .collect();
    if token.is_empty() {
        "sandcrawl".into()
    } else {
        token
    }
}

/// Fetches and parses `origin`'s robots.txt (`origin` is any URL on the host).
/// robots.txt answers shared between the processes of one crawl (the Redis frontier keeps
/// them), so each host's file is fetched once per crawl rather than once per worker. Only
/// HTTP answers are shared, not network failures: those are each worker's to retry.
pub trait RobotsStore: Send + Sync {
    /// The stored answer for `origin` ("scheme://host:port"): status, body, time left.
    fn get(&self, origin: &str) -> Option<(u16, Vec<u8>, Duration)>;
    fn put(&self, origin: &str, status: u16, body: &[u8], valid_for: Duration);
    /// Whether this worker is the one to fetch `origin`'s robots.txt now (the others wait
    /// for its answer, for at most `CLAIM_WAIT`).
    fn claim(&self, origin: &str) -> bool;
}

/// How long a worker waits for another worker's robots.txt answer before it fetches itself.
pub const CLAIM_WAIT: Duration = Duration::from_secs(10);

/// `fetch`, first asking `store` (and telling it what was fetched).
pub async fn fetch_shared(
    fetcher: &Fetcher,
    origin: &Url,
    store: Option<&dyn RobotsStore>,
) -> Robots {
    let Some(store) = store else {
        return fetch(fetcher, origin).await;
    };
    let key = format!(
        "{}://{}",
        origin.scheme(),
        crate::normalize::host_key(origin)
    );
    let agent = product_token(&fetcher.config().user_agent);
    let from_store = |(status, body, left): (u16, Vec<u8>, Duration)| {
        let mut r = Robots::from_outcome(&agent, Ok((status, &body)));
        r.valid_for = left.min(r.valid_for);
        r.note = format!("robots.txt ({status}) as another worker of the crawl fetched it");
        r
    };
    if let Some(hit) = store.get(&key) {
        return from_store(hit);
    }
    if !store.claim(&key) {
        let until = Instant::now() + CLAIM_WAIT;
        while Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Some(hit) = store.get(&key) {
                return from_store(hit);
            }
        }
    }
    let (r, answer) = fetch_answer(fetcher, origin).await;
    if let Some((status, body)) = answer.filter(|(s, _)| *s < 500) {
        store.put(&key, status, &body, r.valid_for);
    }
    r
}

pub async fn fetch(fetcher: &Fetcher, origin: &Url) -> Robots {
    fetch_answer(fetcher, origin).await.0
}

/// The parsed robots.txt, and the HTTP answer it came from, if there was one.
async fn fetch_answer(fetcher: &Fetcher, origin: &Url) -> (Robots, Option<(u16, Vec<u8>)>) {
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
        Ok(resp) => (
            Robots::from_outcome(&agent, Ok((resp.status, &resp.body))),
            Some((resp.status, resp.body.to_vec())),
        ),
        // Too many redirects counts as unavailable (RFC 9309 §2.3.1.2): allow all.
        Err(
            FetchError::RedirectRefused(_)
            | FetchError::TooManyRedirects(_)
            | FetchError::RedirectLoop(_),
        ) => (
            Robots::allow_all("robots.txt redirects too often or nowhere; allowing all"),
            None,
        ),
        Err(e) => (Robots::from_outcome(&agent, Err(&e)), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn status_rules_follow_rfc_9309() {
        let body = b"User-agent: *\nDisallow: /private\nCrawl-delay: 2\n";
        let ok = Robots::from_outcome("sandcrawl", Ok((200, body)));
        assert!(!ok.allowed(&url("http://e/private/x")));
        assert!(ok.allowed(&url("http://e/public")));
        assert_eq!(ok.crawl_delay, Some(Duration::from_secs(2)));
        assert!(!ok.unreachable());

        let gone = Robots::from_outcome("sandcrawl", Ok((404, b"")));
        assert!(gone.allowed(&url("http://e/private/x")), "4xx: allow all");

        let down = Robots::from_outcome("sandcrawl", Ok((503, b"")));
        assert!(
            !down.allowed(&url("http://e/anything")),
            "5xx: disallow all"
        );
        assert!(down.unreachable());
        assert!(down.allowed(&url("http://e/robots.txt")));

        let err = FetchError::Connect("refused".into());
        let unreachable = Robots::from_outcome("sandcrawl", Err(&err));
        assert!(!unreachable.allowed(&url("http://e/")));
        assert!(unreachable.unreachable());
    }

    #[test]
    fn our_group_and_the_parse_limit() {
        let body = b"User-agent: sandcrawl\nDisallow: /only-us\n\nUser-agent: *\nDisallow: /\n";
        let r = Robots::parse(&product_token("sandcrawl/0.1 (+https://x)"), body);
        assert!(r.allowed(&url("http://e/page")));
        assert!(!r.allowed(&url("http://e/only-us")));
        // Rules past 500 KiB are not read.
        let mut big = b"User-agent: *\n".to_vec();
        big.extend(std::iter::repeat_n(b'#', MAX_ROBOTS_BYTES));
        big.extend_from_slice(b"\nDisallow: /late\n");
        assert!(Robots::parse("sandcrawl", &big).allowed(&url("http://e/late")));
    }

    #[test]
    fn user_agent_lines_match_by_product_token_as_google_does() {
        for line in [
            "User-agent: sandcrawl*",
            "User-agent: sandcrawl/2.1",
            "user_agent: SandCrawl (+https://example.com/bot)",
            "User-agent: sandcrawl # our group",
        ] {
            let body = format!("{line}\nDisallow: /us\n\nUser-agent: *\nDisallow: /\n");
            let r = Robots::parse(
                &product_token("sandcrawl/0.1 (+https://x)"),
                body.as_bytes(),
            );
            assert!(r.allowed(&url("http://e/page")), "{line}");
            assert!(!r.allowed(&url("http://e/us")), "{line}");
            // RFC 9309 2.2.2: /robots.txt itself is always allowed.
            assert!(r.allowed(&url("http://e/robots.txt")), "{line}");
        }
        let all = Robots::parse("sandcrawl", b"User-agent: *\nDisallow: /\n");
        assert!(all.allowed(&url("http://e/robots.txt")));
        assert!(!all.allowed(&url("http://e/robots.txt/x")));
        // Another crawler's token that merely starts like ours is not ours.
        let body = b"User-agent: sandcrawlerbot\nDisallow: /\n";
        assert!(Robots::parse("sandcrawl", body).allowed(&url("http://e/page")));
        assert_eq!(product_token("Mozilla/5.0 sandcrawl"), "Mozilla");
    }
}
