//! What happened to one leased URL, as the workers report it to the scheduler, and the typed
//! reasons the summary counts. It owns these types only; it must not fetch, store or count.

use super::links::LinkProposal;
use crate::fetch::{FetchError, Response};
use crate::frontier::Lease;
use crate::normalize::Fingerprint;
use crate::plugin::PluginError;
use crate::sink::Item;
use std::borrow::Cow;
use std::time::Duration;
use url::Url;

pub use super::scope::OutOfScope;

/// Why a URL or a proposed link was not fetched (the summary's `skipped` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    RobotsDisallowed,
    /// A redirect led to a URL the crawl already has.
    RedirectDuplicate,
    /// More links on one page than `follow_max_links`.
    LinkCap,
    /// Not an http(s) URL with a host, or unparsable.
    InvalidLink,
    Scope(OutOfScope),
    /// Sitemap entries older than `--since`.
    SitemapOld,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::RobotsDisallowed => "robots_disallowed",
            Skip::RedirectDuplicate => "redirect_duplicate",
            Skip::LinkCap => "link_cap",
            Skip::InvalidLink => "invalid_link",
            Skip::Scope(why) => why.as_str(),
            Skip::SitemapOld => "sitemap_older_than_since",
        }
    }
}

impl From<OutOfScope> for Skip {
    fn from(why: OutOfScope) -> Self {
        Skip::Scope(why)
    }
}

/// Why a URL failed or is retried (the summary's `errors` keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The fetch said so: a transport error or an HTTP status.
    Fetch(crate::fetch::Failure),
    /// robots.txt could not be fetched, so the host's URLs wait.
    RobotsUnreachable { timed_out: bool },
    /// The host kept timing out (`politeness.host_max_timeouts`).
    HostGaveUp,
    /// A download over `files.max_bytes`.
    DownloadTooLarge,
    /// A download could not be stored.
    DownloadStore,
    /// Every plugin that claims the page was disabled after repeated crashes.
    PluginDisabled,
    /// A sandcrawl bug, reported instead of losing the URL.
    Internal,
}

impl FailureKind {
    pub fn key(&self) -> Cow<'static, str> {
        match self {
            FailureKind::Fetch(f) => f.key(),
            FailureKind::RobotsUnreachable { .. } => "robots_unreachable".into(),
            FailureKind::HostGaveUp => "host_gave_up".into(),
            FailureKind::DownloadTooLarge => "download_too_large".into(),
            FailureKind::DownloadStore => "download_store".into(),
            FailureKind::PluginDisabled => "plugin_disabled".into(),
            FailureKind::Internal => "internal_error".into(),
        }
    }

    pub fn is_timeout(&self) -> bool {
        match self {
            FailureKind::Fetch(f) => f.is_timeout(),
            FailureKind::RobotsUnreachable { timed_out } => *timed_out,
            _ => false,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            FailureKind::Fetch(f) => f.status(),
            _ => None,
        }
    }

    pub fn transport(e: FetchError) -> Self {
        FailureKind::Fetch(crate::fetch::Failure::Transport(e))
    }
}

/// What one plugin did with a page.
pub enum RunResult {
    /// Parsed: how many items and links it gave.
    Parsed {
        items: u64,
        links: u64,
    },
    Failed(PluginError),
    /// Not called: the plugin is disabled (see `health.rs`).
    Disabled,
}

/// One plugin's turn on a page: the plugin's name, what came of it, and its duration. A name,
/// not a position: `--watch` may swap the set of plugins while the page is in flight.
pub type PluginRun = (std::sync::Arc<str>, RunResult, Duration);

/// Adds a page's plugin runs to the per-plugin counters (the crawl's summary, a replay's).
pub(super) fn tally(
    plugins: &mut std::collections::BTreeMap<String, crate::summary::PluginStats>,
    runs: Vec<PluginRun>,
) {
    for (name, result, took) in runs {
        let st = plugins.entry(name.to_string()).or_default();
        st.calls += 1;
        st.time_ms += took.as_secs_f64() * 1000.0;
        match result {
            RunResult::Parsed { items, links } => {
                st.items += items;
                st.links += links;
            }
            RunResult::Failed(e) => *st.errors.entry(e.kind().to_owned()).or_default() += 1,
            RunResult::Disabled => *st.errors.entry("disabled".into()).or_default() += 1,
        }
    }
}

/// What a worker did with a lease.
pub enum Work {
    Disallowed,
    /// A redirect led to a URL the crawl already has (queued, fetched, or being fetched
    /// through another alias): nothing is fetched or written twice.
    Duplicate {
        target: Url,
    },
    Page {
        resp: Box<Response>,
        items: Vec<Item>,
        links: Vec<LinkProposal>,
        links_dropped: u64,
        plugin_runs: Vec<PluginRun>,
        aliases: Vec<Fingerprint>,
    },
    Download {
        resp: Box<Response>,
        item: Option<Item>,
        new_file: bool,
        aliases: Vec<Fingerprint>,
    },
    Retry {
        kind: FailureKind,
        cause: String,
        retry_after: Option<Duration>,
    },
    Failed {
        kind: FailureKind,
        cause: String,
        /// The status the host answered with, when the failure came after an answer (a
        /// download too large, a page only a disabled plugin claims).
        status: Option<u16>,
    },
}

impl Work {
    /// The HTTP status the host answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Work::Page { resp, .. } | Work::Download { resp, .. } => Some(resp.status),
            Work::Retry { kind, .. } => kind.status(),
            Work::Failed { kind, status, .. } => status.or(kind.status()),
            Work::Disallowed | Work::Duplicate { .. } => None,
        }
    }
}

/// A lease's work, sent back to the scheduler.
pub struct Done {
    pub lease: Lease,
    pub work: Work,
    pub latency: Duration,
    pub crawl_delay: Option<Duration>,
}
