//! Per-host politeness: how many requests may run at once, globally and per host, and when
//! the next request to a host may start.
//!
//! It owns concurrency slots, minimum delays (config and robots.txt Crawl-delay), host-wide
//! back-off (Retry-After, connection failures) and the adaptive mode. It keeps state per
//! host, never per URL, and it never performs I/O: the scheduler asks `can_start`, reports
//! `started` and `finished`, and sleeps until `ready_at`.
//!
//! A delay is counted from the end of the previous request, and a host with a delay gets one
//! request at a time (as Nutch, Heritrix and Yandex's Crawl-delay do): the crawler learns that
//! the server has a request only when its answer arrives, so this is the only rule under which
//! the server itself sees `delay` between any two requests, whatever the network or the load
//! on either machine. A delay timed from request starts lets a request that left late (a busy
//! machine) arrive less than `delay` after the one before it. For the same reason a host's
//! first request runs alone while robots.txt is obeyed: its Crawl-delay is known only when
//! that request ends.

use rand::Rng;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolitenessConfig {
    /// Requests in flight across all hosts.
    pub concurrency: usize,
    /// Requests in flight to one host.
    pub per_host: usize,
    /// Minimum time from the end of one request to a host to the start of the next, in ms;
    /// a host with a delay gets one request at a time.
    pub delay_ms: u64,
    /// Random extra delay up to this many ms, added to every delay (and pacing like one).
    pub jitter_ms: u64,
    /// Back off on rising latency, 429 and 503; recover slowly.
    pub adaptive: bool,
    /// Obey robots.txt (including Crawl-delay). On by default.
    pub respect_robots: bool,
    /// Attempts after the first for retryable failures (connect errors, timeouts, resets, 5xx, 429).
    pub max_retries: u32,
    /// First retry back-off in ms; doubles per attempt, with jitter.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Retry-After values are clamped to this many seconds.
    pub retry_after_max_s: u64,
    /// After this many timeouts in a row from one host (no answer in between), the host is
    /// given up: its queued URLs fail at once instead of each waiting out its timeouts.
    /// 0: never.
    pub host_max_timeouts: u32,
}

impl Default for PolitenessConfig {
    fn default() -> Self {
        PolitenessConfig {
            concurrency: 64,
            per_host: 8,
            delay_ms: 0,
            jitter_ms: 0,
            adaptive: false,
            respect_robots: true,
            max_retries: 3,
            backoff_base_ms: 500,
            backoff_max_ms: 60_000,
            retry_after_max_s: 600,
            host_max_timeouts: 10,
        }
    }
}

/// What the engine reports when a request to a host ends.
#[derive(Debug, Clone, Copy)]
pub struct Feedback {
    pub latency: Duration,
    /// HTTP status, or `None` when the request failed without one.
    pub status: Option<u16>,
}

#[derive(Debug)]
struct Host {
    in_flight: usize,
    next_start: Option<Instant>,
    /// A request to the host has ended, so its robots.txt (and Crawl-delay) is known.
    answered: bool,
    blocked_until: Option<Instant>,
    /// This host's own limits (`[hosts."GLOB"]`, or the crawl's).
    per_host: usize,
    delay: Duration,
    crawl_delay: Duration,
    adaptive_delay: Duration,
    latency_ewma: Option<f64>,
    /// The status of the last answer (for the status page).
    last_status: Option<u16>,
}

impl Host {
    /// The wait after each request: config, robots.txt Crawl-delay, adaptive back-off.
    fn delay_now(&self) -> Duration {
        self.delay.max(self.crawl_delay).max(self.adaptive_delay)
    }
}

/// One host's politeness as the status page shows it.
#[derive(Debug, Clone, Copy)]
pub struct HostView {
    pub in_flight: usize,
    pub delay: Duration,
    pub last_status: Option<u16>,
    /// Blocked (Retry-After, back-off) for this much longer.
    pub backing_off: Option<Duration>,
}

pub struct Politeness {
    cfg: PolitenessConfig,
    hosts: HashMap<String, Host>,
    in_flight: usize,
    /// `[hosts."GLOB"]` settings, most specific (longest pattern) first.
    overrides: Vec<(globset::GlobMatcher, HostSettings)>,
}

/// `[hosts."GLOB"]`: politeness for the hosts a glob matches (`*.example.com`,
/// `127.0.0.1:8080`). The longest matching pattern wins; unset keys keep the crawl's value.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostSettings {
    /// Requests in flight to one such host (when it has no delay).
    pub per_host: Option<usize>,
    /// Minimum time from the end of one request to such a host to the start of the next, in
    /// ms; one request at a time.
    pub delay_ms: Option<u64>,
}

impl Politeness {
    pub fn new(cfg: PolitenessConfig) -> Self {
        Politeness {
            cfg,
            hosts: HashMap::new(),
            in_flight: 0,
            overrides: Vec::new(),
        }
    }

    /// Adds per-host settings; a bad glob is one line naming it.
    pub fn with_hosts(
        mut self,
        hosts: &std::collections::BTreeMap<String, HostSettings>,
    ) -> anyhow::Result<Self> {
        let mut rules: Vec<(String, globset::GlobMatcher, HostSettings)> = Vec::new();
        for (pattern, settings) in hosts {
            if settings.per_host == Some(0) {
                anyhow::bail!("hosts.\"{pattern}\".per_host must be at least 1");
            }
            let glob = globset::GlobBuilder::new(&pattern.to_ascii_lowercase())
                .literal_separator(false)
                .build()
                .map_err(|e| anyhow::anyhow!("hosts.\"{pattern}\": {e}"))?;
            rules.push((pattern.clone(), glob.compile_matcher(), settings.clone()));
        }
        rules.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.len()));
        self.overrides = rules.into_iter().map(|(_, m, s)| (m, s)).collect();
        Ok(self)
    }

    /// A host's limits: the most specific `[hosts]` rule matching its key (`name:port`) or
    /// its name, over the crawl's.
    fn limits_for(&self, host: &str) -> (usize, Duration) {
        let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
        let rule = self
            .overrides
            .iter()
            .find(|(m, _)| m.is_match(host) || m.is_match(name))
            .map(|(_, s)| s);
        (
            rule.and_then(|s| s.per_host)
                .unwrap_or(self.cfg.per_host)
                .max(1),
            Duration::from_millis(rule.and_then(|s| s.delay_ms).unwrap_or(self.cfg.delay_ms)),
        )
    }

    /// `host`'s per-host limit and its delay now (config, robots.txt Crawl-delay, adaptive
    /// back-off): what a shared frontier enforces over every worker.
    ///
    /// The first-request rule is left out: it is this worker's (`can_start`), since a worker
    /// that passed a limit of 1 for a host before its own first answer would find that host
    /// full for as long as another worker keeps a request in flight there.
    pub fn limits(&mut self, host: &str) -> crate::frontier::HostLimits {
        let jitter_ms = self.cfg.jitter_ms;
        let h = self.host(host);
        let per_host = if Self::paced(h, jitter_ms) {
            1
        } else {
            h.per_host
        };
        crate::frontier::HostLimits {
            per_host,
            delay: self.effective_delay(host),
        }
    }

    /// Whether `h` waits between requests: then it has one at a time.
    fn paced(h: &Host, jitter_ms: u64) -> bool {
        !h.delay_now().is_zero() || jitter_ms > 0
    }

    /// Requests `h` may have in flight: one while it is paced by a delay (or jitter), or
    /// while its robots.txt is unknown; else its `per_host`.
    fn slots(&self, h: &Host) -> usize {
        if Self::paced(h, self.cfg.jitter_ms) || (self.cfg.respect_robots && !h.answered) {
            1
        } else {
            h.per_host
        }
    }

    pub fn config(&self) -> &PolitenessConfig {
        &self.cfg
    }

    fn host(&mut self, host: &str) -> &mut Host {
        // A host's limits are looked up once, when it is first seen.
        let (per_host, delay) = if self.hosts.contains_key(host) {
            (1, Duration::ZERO)
        } else {
            self.limits_for(host)
        };
        self.hosts.entry(host.to_owned()).or_insert(Host {
            in_flight: 0,
            next_start: None,
            answered: false,
            blocked_until: None,
            crawl_delay: Duration::ZERO,
            adaptive_delay: Duration::ZERO,
            latency_ewma: None,
            last_status: None,
            per_host,
            delay,
        })
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn host_in_flight(&self, host: &str) -> usize {
        self.hosts.get(host).map_or(0, |h| h.in_flight)
    }

    pub fn global_slot_free(&self) -> bool {
        self.in_flight < self.cfg.concurrency.max(1)
    }

    /// Whether a request to `host` may start now.
    pub fn can_start(&self, host: &str, now: Instant) -> bool {
        if !self.global_slot_free() {
            return false;
        }
        match self.hosts.get(host) {
            None => true,
            Some(h) => {
                h.in_flight < self.slots(h)
                    && h.next_start.is_none_or(|t| now >= t)
                    && h.blocked_until.is_none_or(|t| now >= t)
            }
        }
    }

    /// When `host` may next start, if it is waiting on time (not on a free slot).
    pub fn ready_at(&self, host: &str) -> Option<Instant> {
        let h = self.hosts.get(host)?;
        h.next_start.max(h.blocked_until)
    }

    pub fn started(&mut self, host: &str) {
        self.host(host).in_flight += 1;
        self.in_flight += 1;
    }

    /// A request to `host` ended (its answer is in, or it failed): a slot frees, and a paced
    /// host may start again `delay` (plus jitter) from now.
    pub fn finished(&mut self, host: &str, fb: Feedback) {
        self.in_flight = self.in_flight.saturating_sub(1);
        let (adaptive, jitter_ms) = (self.cfg.adaptive, self.cfg.jitter_ms);
        let h = self.host(host);
        h.in_flight = h.in_flight.saturating_sub(1);
        h.answered = true;
        if fb.status.is_some() {
            h.last_status = fb.status;
        }
        if adaptive {
            Self::adapt(h, fb);
        }
        // Only a paced host reads the clock: this runs once per page.
        if Self::paced(h, jitter_ms) {
            let jitter = Duration::from_millis(rand::rng().random_range(0..=jitter_ms));
            h.next_start = h
                .next_start
                .max(Some(Instant::now() + h.delay_now() + jitter));
        }
    }

    /// Adaptive mode: back off on 429, 503 or a latency far above the host's usual one.
    fn adapt(h: &mut Host, fb: Feedback) {
        let ms = fb.latency.as_secs_f64() * 1000.0;
        let baseline = *h.latency_ewma.get_or_insert(ms);
        let overloaded = matches!(fb.status, Some(429) | Some(503)) || ms > baseline * 3.0 + 50.0;
        if overloaded {
            h.adaptive_delay = (h.adaptive_delay * 2)
                .max(Duration::from_millis(100))
                .min(Duration::from_secs(30));
        } else {
            // Recover slowly: 10% per good response, so one lucky answer does not undo a back-off.
            h.adaptive_delay = h.adaptive_delay.mul_f64(0.9);
            if h.adaptive_delay < Duration::from_millis(5) {
                h.adaptive_delay = Duration::ZERO;
            }
        }
        h.latency_ewma = Some(baseline * 0.8 + ms * 0.2);
    }

    /// robots.txt Crawl-delay for `host`, reported with the end of the request that read
    /// it (before `finished`, which then waits it out).
    pub fn set_crawl_delay(&mut self, host: &str, delay: Duration) {
        self.host(host).crawl_delay = delay.min(Duration::from_secs(3600));
    }

    /// Blocks the whole host for `wait` (Retry-After, refused connections, DNS failures).
    pub fn block(&mut self, host: &str, wait: Duration) {
        let until = Instant::now() + wait;
        let h = self.host(host);
        h.blocked_until = h.blocked_until.max(Some(until));
    }

    /// Exponential back-off with full jitter for attempt `n` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let base = self.cfg.backoff_base_ms.max(1);
        let exp = base.saturating_mul(1u64 << attempt.saturating_sub(1).min(20));
        let capped = exp.min(self.cfg.backoff_max_ms.max(base));
        let lo = capped / 2;
        Duration::from_millis(rand::rng().random_range(lo..=capped))
    }

    pub fn clamp_retry_after(&self, d: Duration) -> Duration {
        d.min(Duration::from_secs(self.cfg.retry_after_max_s))
    }

    /// `host` as the status page shows it, if a request to it ever started.
    pub fn view(&self, host: &str, now: Instant) -> Option<HostView> {
        let h = self.hosts.get(host)?;
        Some(HostView {
            in_flight: h.in_flight,
            delay: self.effective_delay(host),
            last_status: h.last_status,
            backing_off: h
                .blocked_until
                .filter(|t| *t > now)
                .map(|t| t.saturating_duration_since(now)),
        })
    }

    /// Hosts with requests in flight or blocked now. O(hosts): for the status page only.
    pub fn busy_hosts(&self, now: Instant) -> impl Iterator<Item = &str> {
        self.hosts
            .iter()
            .filter(move |(_, h)| h.in_flight > 0 || h.blocked_until.is_some_and(|t| t > now))
            .map(|(name, _)| name.as_str())
    }

    /// Hosts blocked now (Retry-After, back-off). O(hosts): for the metrics only.
    pub fn backing_off(&self, now: Instant) -> usize {
        self.hosts
            .values()
            .filter(|h| h.blocked_until.is_some_and(|t| t > now))
            .count()
    }

    /// Hosts a request has started to.
    pub fn hosts_seen(&self) -> usize {
        self.hosts.len()
    }

    fn effective_delay(&self, host: &str) -> Duration {
        match self.hosts.get(host) {
            Some(h) => h.delay_now(),
            None => self.limits_for(host).1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Feedback {
        Feedback {
            latency: Duration::from_millis(1),
            status: Some(200),
        }
    }

    #[test]
    fn crawl_delay_counts_from_the_end_of_the_request_that_read_it() {
        let mut p = Politeness::new(PolitenessConfig {
            per_host: 4,
            ..Default::default()
        });
        let now = Instant::now();
        assert!(p.can_start("a", now));
        p.started("a");
        assert!(
            !p.can_start("a", now),
            "robots.txt unknown: the host's first request runs alone"
        );
        assert_eq!(
            p.limits("a").per_host,
            4,
            "a shared store gets the host's limit; the first-request rule is this worker's"
        );
        p.set_crawl_delay("a", Duration::from_millis(300));
        p.finished("a", ok());
        let ended = Instant::now();
        assert!(!p.can_start("a", now + Duration::from_millis(299)));
        assert!(p.can_start("a", ended + Duration::from_millis(301)));
        p.started("a");
        assert!(
            !p.can_start("a", ended + Duration::from_secs(60)),
            "Crawl-delay: one request at a time"
        );

        // Not obeying robots.txt: no wait for the first answer.
        let mut p = Politeness::new(PolitenessConfig {
            per_host: 4,
            respect_robots: false,
            ..Default::default()
        });
        p.started("a");
        assert!(p.can_start("a", now));
        // Jitter alone paces a host too.
        let mut p = Politeness::new(PolitenessConfig {
            jitter_ms: 50,
            ..Default::default()
        });
        p.started("a");
        p.finished("a", ok());
        p.started("a");
        assert!(!p.can_start("a", Instant::now() + Duration::from_secs(1)));
    }

    #[test]
    fn per_host_and_global_slots() {
        let mut p = Politeness::new(PolitenessConfig {
            concurrency: 3,
            per_host: 2,
            ..Default::default()
        });
        let now = Instant::now();
        p.started("a");
        p.started("a");
        assert!(!p.can_start("a", now));
        assert!(p.can_start("b", now));
        p.started("b");
        assert!(!p.can_start("c", now), "global limit");
        p.finished(
            "a",
            Feedback {
                latency: Duration::from_millis(1),
                status: Some(200),
            },
        );
        assert!(p.can_start("a", now));
    }

    #[test]
    fn per_host_settings_override_by_the_most_specific_glob() -> anyhow::Result<()> {
        let mut hosts = std::collections::BTreeMap::new();
        hosts.insert(
            "*.example.com".to_owned(),
            HostSettings {
                per_host: Some(2),
                delay_ms: Some(1000),
            },
        );
        hosts.insert(
            "slow.example.com".to_owned(),
            HostSettings {
                per_host: Some(1),
                delay_ms: None,
            },
        );
        hosts.insert(
            "*.fast.org".to_owned(),
            HostSettings {
                per_host: Some(2),
                delay_ms: None,
            },
        );
        let mut p = Politeness::new(PolitenessConfig::default()).with_hosts(&hosts)?;
        let now = Instant::now();
        p.started("a.example.com");
        assert!(
            !p.can_start("a.example.com", now + Duration::from_secs(5)),
            "a host with a delay has one request at a time, per_host = 2 notwithstanding"
        );
        assert_eq!(p.limits("a.example.com").per_host, 1);
        p.finished("a.example.com", ok());
        let ended = Instant::now();
        assert!(
            !p.can_start("a.example.com", now + Duration::from_millis(999)),
            "delay_ms = 1000 applies, from the end of the request"
        );
        assert!(p.can_start("a.example.com", ended + Duration::from_millis(1001)));
        // Without a delay, per_host = 2 once the first answer (robots.txt) is in.
        p.started("x.fast.org");
        assert!(
            !p.can_start("x.fast.org", now),
            "the first request runs alone"
        );
        p.finished("x.fast.org", ok());
        p.started("x.fast.org");
        assert!(p.can_start("x.fast.org", Instant::now()));
        p.started("x.fast.org");
        assert!(!p.can_start("x.fast.org", Instant::now()), "per_host = 2");
        p.started("slow.example.com");
        // The most specific rule decides alone: its unset delay is the crawl's, not the glob's.
        assert_eq!(p.limits_for("slow.example.com"), (1, Duration::ZERO));
        assert_eq!(p.limits_for("other.org:8080"), (8, Duration::ZERO));
        hosts.insert(
            "bad".to_owned(),
            HostSettings {
                per_host: Some(0),
                delay_ms: None,
            },
        );
        assert!(
            Politeness::new(PolitenessConfig::default())
                .with_hosts(&hosts)
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn delay_and_block() {
        let mut p = Politeness::new(PolitenessConfig {
            delay_ms: 1000,
            ..Default::default()
        });
        let now = Instant::now();
        p.started("a");
        assert!(
            !p.can_start("a", now + Duration::from_secs(5)),
            "one request at a time while it runs, however long"
        );
        p.finished("a", ok());
        let ended = Instant::now();
        assert!(!p.can_start("a", now + Duration::from_millis(999)));
        assert!(p.can_start("a", ended + Duration::from_millis(1001)));
        p.block("b", Duration::from_secs(60));
        assert!(!p.can_start("b", Instant::now()));
    }

    #[test]
    fn retry_after_forms() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        // Larger than u64 seconds: clamped, not ignored.
        let huge = crate::fetch::parse_retry_after("99999999999999999999999999", now);
        assert_eq!(huge, Some(Duration::MAX));
        let p = Politeness::new(PolitenessConfig::default());
        assert_eq!(
            p.clamp_retry_after(huge.unwrap_or_default()),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn adaptive_backs_off_and_recovers() {
        let mut p = Politeness::new(PolitenessConfig {
            adaptive: true,
            ..Default::default()
        });
        p.started("a");
        p.finished(
            "a",
            Feedback {
                latency: Duration::from_millis(10),
                status: Some(429),
            },
        );
        assert!(p.effective_delay("a") >= Duration::from_millis(100));
        for _ in 0..100 {
            p.started("a");
            p.finished(
                "a",
                Feedback {
                    latency: Duration::from_millis(10),
                    status: Some(200),
                },
            );
        }
        assert_eq!(p.effective_delay("a"), Duration::ZERO);
    }
}
