//! Watching and steering a running crawl: what `--listen ADDR` serves. `server` answers
//! HTTP (the status page, `/metrics`, `/api/*`), `metrics` holds the Prometheus families,
//! `status` the snapshot the page and `/api/status` show, and [`Control`] is what the API
//! asks of the crawl. It owns the listening socket, the bearer-token check and those three
//! views; it must not change crawl state itself: pause, resume, stop and new seeds are
//! requests the scheduler (the crawl's one owner) reads and answers, and the snapshot and
//! counters are what the scheduler publishes.

mod metrics;
mod server;
mod status;

pub use metrics::{Gauges, Metrics, StatusClass};
pub use status::{ErrorRow, HOST_ROWS, HostRow, PluginRow, RunState, Status};

use crate::config::CrawlConfig;
use anyhow::{Result, bail};
use status::{History, RecentErrors};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};

/// How often the scheduler publishes a snapshot and copies its counters into the metrics.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// Seeds one `POST /api/seeds` may add.
pub const MAX_SEEDS_PER_REQUEST: usize = 10_000;

/// What the API asks of the crawl; each is answered once the scheduler has acted on it.
pub enum Control {
    Pause(oneshot::Sender<RunState>),
    Resume(oneshot::Sender<RunState>),
    /// The graceful stop Ctrl+C starts.
    Stop(oneshot::Sender<RunState>),
    /// URLs to add as seeds (depth 0), through scope, robots.txt and dedup like any link.
    Seeds {
        urls: Vec<String>,
        reply: oneshot::Sender<SeedReport>,
    },
}

/// What became of the URLs of one `POST /api/seeds`.
#[derive(Debug, Default, serde::Serialize)]
pub struct SeedReport {
    /// Queued as new.
    pub added: usize,
    /// Already known to the crawl (queued, fetched or failed): not queued again.
    pub known: usize,
    pub refused: Vec<RefusedSeed>,
}

#[derive(Debug, serde::Serialize)]
pub struct RefusedSeed {
    pub url: String,
    pub why: String,
}

/// The socket `--listen` names, bound before the crawl's state is opened (a taken port is
/// one line, and nothing is created).
pub struct Listener {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    token: Option<String>,
}

impl Listener {
    /// Binds `listen`, if set. The address and token were checked by the config
    /// (`check_listen`).
    pub async fn bind(cfg: &CrawlConfig) -> Result<Option<Listener>> {
        let Some(spec) = cfg.listen.as_deref() else {
            return Ok(None);
        };
        let addr = check_listen(spec, cfg.listen_token.as_deref())?;
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => bail!(
                "--listen {spec}: cannot listen there ({e}); pick a free port, e.g. --listen 127.0.0.1:0"
            ),
        };
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(Some(Listener {
            listener,
            addr,
            token: cfg.listen_token.clone(),
        }))
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts serving; the returned [`Monitor`] is the scheduler's end. The server stops
    /// accepting once the monitor is dropped (the crawl is over).
    pub fn start(self, max_pages: Option<u64>) -> Monitor {
        let (control_tx, control_rx) = mpsc::channel(64);
        let initial = Status {
            max_pages,
            ..Status::default()
        };
        let (status_tx, status_rx) = watch::channel(Arc::new(initial));
        let metrics = Arc::new(Metrics::new());
        let token_hint = if self.token.is_some() {
            " (with the bearer token: add ?token=… in a browser)"
        } else {
            ""
        };
        tracing::info!(
            "status page on http://{}/{token_hint}; metrics on /metrics",
            self.addr
        );
        let handle = server::Handle {
            control: control_tx,
            status: status_rx,
            metrics: Arc::clone(&metrics),
            token: self.token.map(Arc::from),
        };
        tokio::spawn(server::serve(self.listener, handle));
        Monitor {
            control: control_rx,
            status: status_tx,
            metrics,
            history: History::default(),
            errors: RecentErrors::default(),
            last_publish: None,
        }
    }
}

/// Reads a `listen` value: `IP:PORT` or `localhost:PORT`. Anything but loopback needs a
/// token, or the crawl would let anyone on the network stop it or read its URLs.
pub fn check_listen(spec: &str, token: Option<&str>) -> Result<SocketAddr> {
    let parsed = match spec.strip_prefix("localhost:") {
        Some(port) => format!("127.0.0.1:{port}").parse::<SocketAddr>(),
        None => spec.parse::<SocketAddr>(),
    };
    let Ok(addr) = parsed else {
        bail!("--listen {spec:?} is not an address; write IP:PORT, e.g. --listen 127.0.0.1:9187");
    };
    if let Some(t) = token
        && (t.len() < 16 || t.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        bail!(
            "--listen-token must be at least 16 characters without spaces, e.g. the output of `head -c 24 /dev/urandom | base64`"
        );
    }
    if !addr.ip().is_loopback() && token.is_none() {
        bail!(
            "--listen {spec}: other machines can reach this address, so it needs --listen-token TOKEN (or SANDCRAWL_LISTEN_TOKEN); or listen on 127.0.0.1"
        );
    }
    Ok(addr)
}

/// The scheduler's end of the monitor: control requests in, snapshots and counters out.
pub struct Monitor {
    control: mpsc::Receiver<Control>,
    status: watch::Sender<Arc<Status>>,
    metrics: Arc<Metrics>,
    history: History,
    errors: RecentErrors,
    last_publish: Option<Instant>,
}

impl Monitor {
    /// The next control request; never resolves when there is no monitor.
    pub async fn next(monitor: Option<&mut Monitor>) -> Control {
        match monitor {
            Some(m) => match m.control.recv().await {
                Some(c) => c,
                None => std::future::pending().await,
            },
            None => std::future::pending().await,
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Whether a snapshot is due (once a second).
    pub fn due(&self, now: Instant) -> bool {
        self.last_publish
            .is_none_or(|t| now.saturating_duration_since(t) >= PUBLISH_EVERY)
    }

    pub fn error(&mut self, row: ErrorRow) {
        self.errors.push(row);
    }

    /// Publishes a snapshot: the status the page and `/api/status` show, and the same
    /// numbers into the metrics, at the same moment.
    pub fn publish(&mut self, mut status: Status, summary: &crate::summary::Summary, g: &Gauges) {
        let now = Instant::now();
        self.history.sample(status.pages, now);
        status.pages_per_s = self.history.rates();
        status.recent_errors = self.errors.rows();
        self.metrics.sync(summary, g);
        self.status.send_replace(Arc::new(status));
        self.last_publish = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_and_tokens() {
        assert!(check_listen("127.0.0.1:9187", None).is_ok());
        assert!(check_listen("localhost:9187", None).is_ok());
        assert!(check_listen("[::1]:9187", None).is_ok());
        let e = check_listen("0.0.0.0:9187", None).unwrap_err().to_string();
        assert!(e.contains("--listen-token"), "{e}");
        assert!(check_listen("0.0.0.0:9187", Some("0123456789abcdef0123")).is_ok());
        let e = check_listen("0.0.0.0:9187", Some("short"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("at least 16"), "{e}");
        let e = check_listen("example.com:80", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an address"), "{e}");
    }
}
