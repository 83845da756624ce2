//! The work done for one leased URL away from the scheduler: robots.txt, the fetch with its
//! redirect checks, then the page or download handling in `page.rs`. Workers run
//! concurrently and share only read-only state; they must not touch the frontier, the sink or
//! the summary, and ask the scheduler (through `Claim`) before a redirect may reach a URL.

use super::outcome::{Done, FailureKind, Work};
use super::page::{download, parse_page};
use super::scope::Scope;
use crate::fetch::{Disposition, Fetcher};
use crate::frontier::{Lease, UrlKind};
use crate::normalize::{Fingerprint, NormalizeConfig, host_key};
use crate::robots::{self, Robots};
use crate::sink::FilesStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use url::Url;

/// One host's robots.txt; the async mutex makes concurrent first requests wait for one fetch.
type RobotsSlot = Arc<tokio::sync::Mutex<Option<Arc<Robots>>>>;

/// robots.txt per host, fetched once and shared by every worker; concurrent first requests
/// to a host wait for one fetch.
#[derive(Default)]
pub struct RobotsCache {
    hosts: Mutex<HashMap<String, RobotsSlot>>,
    /// Where the other workers of a shared crawl left their answers.
    shared: Option<Arc<dyn robots::RobotsStore>>,
}

impl RobotsCache {
    pub fn new(shared: Option<Arc<dyn robots::RobotsStore>>) -> Self {
        RobotsCache {
            hosts: Mutex::default(),
            shared,
        }
    }

    pub async fn get(&self, fetcher: &Fetcher, url: &Url) -> Arc<Robots> {
        let key = format!("{}://{}", url.scheme(), host_key(url));
        let slot = {
            let mut map = match self.hosts.lock() {
                Ok(m) => m,
                Err(poisoned) => poisoned.into_inner(),
            };
            Arc::clone(map.entry(key).or_default())
        };
        let mut guard = slot.lock().await;
        if let Some(r) = guard.as_ref().filter(|r| !r.expired()) {
            return Arc::clone(r);
        }
        let fetched = Arc::new(robots::fetch_shared(fetcher, url, self.shared.as_deref()).await);
        if fetched.host_failure().is_some() {
            tracing::warn!(host = %host_key(url), "{}", fetched.note);
        } else {
            tracing::debug!(host = %host_key(url), note = %fetched.note, "robots.txt");
        }
        *guard = Some(Arc::clone(&fetched));
        fetched
    }
}

/// A worker's question to the scheduler: may the redirect of the URL leased as `lease` go
/// on to `target`? Yes claims `target` for that lease until its page is committed.
pub struct Claim {
    pub lease: Fingerprint,
    pub target: Fingerprint,
    pub reply: oneshot::Sender<bool>,
}

/// Read-only state shared with the workers.
pub struct Shared {
    pub fetcher: Fetcher,
    /// The plugins pages are routed to (swapped by `--watch`).
    pub roster: Arc<super::roster::Roster>,
    pub robots: RobotsCache,
    pub scope: Scope,
    pub files: FilesStore,
    pub normalize: NormalizeConfig,
    pub respect_robots: bool,
    pub follow_unclaimed: bool,
    pub follow_max_links: usize,
    pub claims: mpsc::UnboundedSender<Claim>,
}

/// `work`, but a panic in it (a host bug) fails the URL with `internal_error` and a log line
/// instead of losing the lease: the scheduler waits for every lease it hands out, so a lost
/// one would keep the crawl from ever finishing.
pub async fn work_or_report(shared: &Arc<Shared>, lease: Lease) -> Done {
    use futures_util::FutureExt as _;
    let spare = lease.clone();
    match std::panic::AssertUnwindSafe(work(shared, lease))
        .catch_unwind()
        .await
    {
        Ok(done) => done,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(url = %spare.record.url, "internal error while crawling this URL, which is a sandcrawl bug (please report it): {what}");
            Done {
                lease: spare,
                work: Work::Failed {
                    kind: FailureKind::Internal,
                    cause: what,
                    status: None,
                },
                latency: Duration::ZERO,
                crawl_delay: None,
            }
        }
    }
}

async fn work(shared: &Arc<Shared>, lease: Lease) -> Done {
    let started = Instant::now();
    let mut crawl_delay = None;
    let work = match Url::parse(&lease.record.url) {
        Err(e) => Work::Failed {
            kind: FailureKind::transport(crate::fetch::FetchError::BadUrl(e.to_string())),
            cause: e.to_string(),
            status: None,
        },
        Ok(url) => {
            let mut verdict = None;
            if shared.respect_robots {
                let r = shared.robots.get(&shared.fetcher, &url).await;
                crawl_delay = r.crawl_delay;
                if let Some(e) = r.host_failure() {
                    // Permanent (a TLS failure): retrying cannot help, so nothing waits.
                    verdict = Some(Work::Failed {
                        kind: FailureKind::transport(e.clone()),
                        cause: format!("robots.txt: {e}"),
                        status: None,
                    });
                } else if !r.allowed(&url) {
                    verdict = Some(if r.unreachable() {
                        Work::Retry {
                            kind: FailureKind::RobotsUnreachable {
                                timed_out: r.timed_out,
                            },
                            cause: r.note.clone(),
                            retry_after: Some(robots::RETRY_UNREACHABLE),
                        }
                    } else {
                        Work::Disallowed
                    });
                }
            }
            match verdict {
                Some(v) => v,
                None => fetch_and_parse(shared, &lease, url).await,
            }
        }
    };
    Done {
        lease,
        work,
        latency: started.elapsed(),
        crawl_delay,
    }
}

/// What the redirect checks of one fetch found out.
#[derive(Default)]
struct Hops {
    /// Targets claimed for this lease, in order.
    claimed: Vec<Fingerprint>,
    /// The target that the crawl already has, if a redirect led to one.
    duplicate: Option<Url>,
}

async fn fetch_and_parse(shared: &Arc<Shared>, lease: &Lease, url: Url) -> Work {
    let hops = Arc::new(Mutex::new(Hops::default()));
    let hop_shared = Arc::clone(shared);
    let hop_log = Arc::clone(&hops);
    let lease_fp = lease.fp;
    let allow_hop = move |hop: Url| {
        let s = Arc::clone(&hop_shared);
        let log = Arc::clone(&hop_log);
        async move {
            s.scope
                .check_url(&hop)
                .map_err(|why| format!("{hop} is out of scope ({})", why.as_str()))?;
            if s.respect_robots && !s.robots.get(&s.fetcher, &hop).await.allowed(&hop) {
                return Err(format!("robots.txt disallows {hop}"));
            }
            // Dedup applies to every hop's target: a URL the crawl already has is not
            // fetched again through an alias.
            let target = s.normalize.fingerprint(&hop);
            let (reply, answer) = oneshot::channel();
            let asked = s.claims.send(Claim {
                lease: lease_fp,
                target,
                reply,
            });
            let fresh = asked.is_ok() && answer.await.unwrap_or(false);
            let mut log = match log.lock() {
                Ok(l) => l,
                Err(poisoned) => poisoned.into_inner(),
            };
            if !fresh {
                log.duplicate = Some(hop.clone());
                return Err(format!("{hop} is already known to the crawl"));
            }
            log.claimed.push(target);
            Ok(())
        }
    };
    let spec = lease.record.request.as_ref();
    let result = match lease.record.kind {
        // A download streams to disk under its own bounds (`[files]`), resuming an earlier
        // attempt's part when the server allows.
        UrlKind::Download => {
            let to = shared.files.download_to(&lease.fp);
            let total = shared.files.total_timeout();
            match shared
                .fetcher
                .download(&url, spec, &to, total, allow_hop)
                .await
            {
                Err(crate::fetch::FetchError::TooLarge(limit)) => {
                    return Work::Failed {
                        kind: FailureKind::DownloadTooLarge,
                        cause: format!("over files.max_bytes ({limit} bytes)"),
                        status: None,
                    };
                }
                other => other,
            }
        }
        UrlKind::Page => shared.fetcher.fetch_request(&url, spec, allow_hop).await,
    };
    let Hops { claimed, duplicate } = match Arc::try_unwrap(hops) {
        Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
        Err(shared_hops) => match shared_hops.lock() {
            Ok(mut h) => std::mem::take(&mut *h),
            Err(_) => Hops::default(),
        },
    };
    if let Some(target) = duplicate {
        return Work::Duplicate { target };
    }
    let resp = match Disposition::of(result) {
        Disposition::Page(r) => *r,
        Disposition::Retry {
            failure,
            cause,
            after,
        } => {
            return Work::Retry {
                kind: FailureKind::Fetch(failure),
                cause,
                retry_after: after,
            };
        }
        Disposition::Fail { failure, cause } => {
            tracing::info!(url = %url, "fetch failed: {cause}");
            return Work::Failed {
                kind: FailureKind::Fetch(failure),
                cause,
                status: None,
            };
        }
    };
    if resp.truncated {
        tracing::info!(url = %resp.final_url, "body cut at fetch.max_body_bytes ({} bytes); the page is parsed as truncated", resp.body.len());
    }
    match lease.record.kind {
        UrlKind::Download => download(shared, lease, resp, claimed),
        UrlKind::Page => parse_page(shared, lease, resp, claimed).await,
    }
}
