//! The HTTP fetcher: one pooled hyper client (HTTP/1.1 and HTTP/2 over rustls), decoding,
//! redirects and every per-request limit.
//!
//! It owns connections, TLS, decompression and the request deadlines. It must not decide
//! *whether* a URL may be fetched (scope, robots.txt and rate limits belong to the engine and
//! `politeness`); it only asks the caller's redirect check at every hop, and reports errors
//! classified so the caller can retry or give up.

mod budget;
pub mod conns;
mod disposition;
pub mod download;
mod request;
mod resolve;
pub use budget::{BudgetHold, ByteBudget};
pub use disposition::{Disposition, Failure, TRUNCATED_HEADER, parse_retry_after};
pub use download::{DownloadConfig, DownloadTo, FileBody};
pub use request::{Body, MAX_BODY_BYTES, Method, RequestSpec};
use resolve::Resolver;

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};
use url::Url;

/// Fetcher settings; every field is also a config key under `[fetch]`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FetchConfig {
    /// Sent on every request, robots.txt included.
    pub user_agent: String,
    /// Extra request headers, e.g. `{ "Accept-Language" = "en" }`.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Host names resolved to fixed addresses before DNS, like curl's `--resolve`; globs
    /// allowed: `{ "*.bench.test" = "127.0.0.1" }`.
    pub resolve: std::collections::BTreeMap<String, String>,
    pub connect_timeout_ms: u64,
    /// An idle connection is closed after this long without a request.
    pub idle_timeout_ms: u64,
    /// Connections kept open between requests, over all hosts together (fewer when the
    /// open-file limit leaves less room); past it, a new connection closes after its response.
    pub max_kept_connections: usize,
    /// A response that sends nothing for this long is cut (slow-drip servers).
    pub read_timeout_ms: u64,
    /// Whole request, redirects and body included.
    pub total_timeout_ms: u64,
    /// Decoded body bytes kept per response.
    pub max_body_bytes: u64,
    /// What to do with a body over `max_body_bytes`: "truncate" keeps the first part and marks
    /// the page truncated (plugins still get it), "drop" fails the page.
    pub oversize: Oversize,
    /// Response head (status line and headers) in bytes, enforced exactly. A response may
    /// carry up to max_header_bytes / 64 headers (at least 100, at most 1,024).
    pub max_header_bytes: usize,
    /// Decoded body bytes held by all requests in flight together; fetches wait for room
    /// rather than grow memory (one body may go past it at a time, so progress never stops).
    pub max_bytes_in_flight: u64,
    pub max_url_len: usize,
    pub max_redirects: usize,
    /// Proxy for all requests, e.g. "http://user:pass@proxy:3128" (HTTPS goes through
    /// CONNECT). Empty: use HTTP_PROXY / HTTPS_PROXY / ALL_PROXY / NO_PROXY from the environment.
    pub proxy: String,
    /// Hosts that bypass `proxy`, comma-separated like NO_PROXY (e.g. "localhost,.internal").
    pub no_proxy: String,
    /// Keep cookies per host across requests (an opt-in cookie jar, like a browser session).
    pub cookies: bool,
    /// Trust the OS certificate store in addition to the bundled webpki roots.
    pub os_cert_store: bool,
    /// Accept invalid TLS certificates. Never on by default; for testing against
    /// self-signed servers only.
    pub danger_accept_invalid_certs: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Oversize {
    Truncate,
    Drop,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            user_agent: format!(
                "sandcrawl/{} (+https://github.com/sandcrawl/sandcrawl)",
                env!("CARGO_PKG_VERSION")
            ),
            headers: Default::default(),
            resolve: Default::default(),
            connect_timeout_ms: 10_000,
            idle_timeout_ms: 30_000,
            max_kept_connections: 16_384,
            read_timeout_ms: 15_000,
            total_timeout_ms: 60_000,
            max_body_bytes: 10 * 1024 * 1024,
            oversize: Oversize::Truncate,
            max_header_bytes: 64 * 1024,
            max_bytes_in_flight: 256 * 1024 * 1024,
            max_url_len: 8 * 1024,
            max_redirects: 10,
            proxy: String::new(),
            no_proxy: String::new(),
            cookies: false,
            os_cert_store: false,
            danger_accept_invalid_certs: false,
        }
    }
}

/// Why a fetch failed. `retryable` says whether trying again later can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("invalid URL: {0}")]
    BadUrl(String),
    #[error("DNS lookup failed: {0}")]
    Dns(String),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("TLS error: {0}")]
    Tls(String),
    #[error("timed out ({0})")]
    Timeout(&'static str),
    #[error("connection broken mid-response: {0}")]
    Broken(String),
    #[error("body over the limit of {0} bytes (fetch.max_body_bytes)")]
    TooLarge(u64),
    #[error("undecodable body ({0})")]
    Decode(String),
    #[error("more than {0} redirects (fetch.max_redirects)")]
    TooManyRedirects(usize),
    #[error("redirect loop at {0}")]
    RedirectLoop(String),
    #[error("redirect refused: {0}")]
    RedirectRefused(String),
    #[error("response head over the limit: {0}")]
    HeaderLimit(String),
}

impl FetchError {
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            FetchError::Dns(_)
                | FetchError::Connect(_)
                | FetchError::Timeout(_)
                | FetchError::Broken(_)
        )
    }

    /// Stable short name for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            FetchError::BadUrl(_) => "bad_url",
            FetchError::Dns(_) => "dns",
            FetchError::Connect(_) => "connect",
            FetchError::Tls(_) => "tls",
            FetchError::Timeout(_) => "timeout",
            FetchError::Broken(_) => "broken",
            FetchError::TooLarge(_) => "too_large",
            FetchError::Decode(_) => "decode",
            FetchError::TooManyRedirects(_) => "redirects",
            FetchError::RedirectLoop(_) => "redirect_loop",
            FetchError::RedirectRefused(_) => "redirect_refused",
            FetchError::HeaderLimit(_) => "header_limit",
        }
    }
}

/// A complete response. A body is only ever handed over whole (or explicitly `truncated`).
#[derive(Debug, Clone)]
pub struct Response {
    pub final_url: Url,
    /// Every URL before `final_url`, in order.
    pub redirects: Vec<Url>,
    pub status: u16,
    /// The method of the request that got this response (a 303 turns a POST into a GET).
    pub method: Method,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Bytes received on the wire (before decompression).
    pub wire_bytes: u64,
    pub truncated: bool,
    pub encoding: &'static str,
    pub elapsed: Duration,
    pub http_version: &'static str,
    /// The share of `fetch.max_bytes_in_flight` this body holds, until the response is dropped.
    pub budget: std::sync::Arc<BudgetHold>,
    /// A download's body, streamed to disk (`body` is then empty).
    pub file: Option<FileBody>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<ProxyConnector>, Full<Bytes>>;

/// The pooled client. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Fetcher {
    client: HttpsClient,
    connections: conns::Connections,
    matcher: std::sync::Arc<hyper_util::client::proxy::matcher::Matcher>,
    jar: Option<std::sync::Arc<std::sync::Mutex<cookie_store::CookieStore>>>,
    cfg: std::sync::Arc<FetchConfig>,
    headers: std::sync::Arc<Vec<(HeaderName, HeaderValue)>>,
    budget: ByteBudget,
    /// Responses received (every redirect hop and robots.txt included).
    responses: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Bytes of downloads written to disk so far (the progress line's download rate).
    download_bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Downloads streaming to disk now.
    downloads_active: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Counts one download as active while it lives (dropped on every way out, cancellation
/// included).
struct Active<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> Active<'a> {
    fn new(n: &'a std::sync::atomic::AtomicU64) -> Self {
        n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Active(n)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Fetcher {
    /// `in_flight` is the most requests the caller runs at once; with the open-file limit it
    /// decides how many connections may be kept for reuse (`conns`).
    pub fn new(cfg: FetchConfig, in_flight: usize) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let connections = conns::Connections::new(conns::kept_for(
            conns::open_file_limit(),
            in_flight,
            cfg.max_kept_connections,
        )?);
        let mut http = HttpConnector::new_with_resolver(Resolver::new(&cfg.resolve)?);
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)));
        http.set_nodelay(true);

        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS setup")?;
        let tls = if cfg.danger_accept_invalid_certs {
            builder
                .dangerous()
                .with_custom_certificate_verifier(std::sync::Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots_certs());
            if cfg.os_cert_store {
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    let _ = roots.add(cert);
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        let matcher = if cfg.proxy.trim().is_empty() {
            hyper_util::client::proxy::matcher::Matcher::from_env()
        } else {
            url::Url::parse(cfg.proxy.trim())
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .with_context(|| {
                    format!(
                        "fetch.proxy {:?} is not an http(s) URL; use e.g. http://proxy:3128",
                        cfg.proxy
                    )
                })?;
            hyper_util::client::proxy::matcher::Matcher::builder()
                .all(cfg.proxy.trim().to_owned())
                .no(cfg.no_proxy.clone())
                .build()
        };
        let matcher = std::sync::Arc::new(matcher);
        let connector = ProxyConnector {
            http,
            matcher: matcher.clone(),
            connections: connections.clone(),
        };
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            // Without a timer hyper's pool never evicts idle connections: those of hosts that
            // are done would stay open until the crawl ends.
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Duration::from_millis(cfg.idle_timeout_ms.max(1)))
            .pool_max_idle_per_host(64)
            .http1_max_buf_size(cfg.max_header_bytes.max(8192))
            .http1_max_headers(max_headers(cfg.max_header_bytes))
            .http2_max_header_list_size(cfg.max_header_bytes as u32)
            .build(https);

        let mut headers = Vec::new();
        for (k, v) in &cfg.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .with_context(|| format!("fetch.headers: {k:?} is not a valid header name"))?;
            let value = HeaderValue::from_str(v).with_context(|| {
                format!("fetch.headers: value of {k} is not a valid header value")
            })?;
            headers.push((name, value));
        }
        HeaderValue::from_str(&cfg.user_agent)
            .context("fetch.user_agent is not a valid header value")?;
        let jar = cfg.cookies.then(|| {
            std::sync::Arc::new(std::sync::Mutex::new(cookie_store::CookieStore::default()))
        });
        Ok(Fetcher {
            client,
            connections,
            matcher,
            jar,
            budget: ByteBudget::new(cfg.max_bytes_in_flight),
            responses: Default::default(),
            download_bytes: Default::default(),
            downloads_active: Default::default(),
            cfg: std::sync::Arc::new(cfg),
            headers: std::sync::Arc::new(headers),
        })
    }

    /// Ends the idle connections to `host` (`normalize::host_key` form) unless a request to it
    /// is in progress: the scheduler calls it when the host has nothing queued or in flight.
    pub fn close_idle(&self, host: &str) -> usize {
        self.connections.close_idle(host)
    }

    /// Connections open now, in use or idle in the pool.
    pub fn open_connections(&self) -> usize {
        self.connections.open()
    }

    /// How many of them may be kept for reuse.
    pub fn kept_connections(&self) -> usize {
        self.connections.kept()
    }

    pub fn config(&self) -> &FetchConfig {
        &self.cfg
    }

    /// HTTP responses received so far by this fetcher and its clones: every redirect hop
    /// and every robots.txt included.
    pub fn responses(&self) -> u64 {
        self.responses.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Download bytes written to disk so far by this fetcher and its clones.
    pub fn download_bytes(&self) -> u64 {
        self.download_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Downloads streaming to disk right now.
    pub fn downloads_in_progress(&self) -> u64 {
        self.downloads_active
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A `download` link: like [`Fetcher::fetch_request`], but a 2xx body streams to
    /// `to.partial` (see `download.rs`), continuing an interrupted attempt with `Range` when
    /// the server allows, under the download's own size and time bounds.
    pub async fn download<F, Fut>(
        &self,
        url: &Url,
        spec: Option<&RequestSpec>,
        to: &DownloadTo,
        total: Option<Duration>,
        allow_hop: F,
    ) -> Result<Response, FetchError>
    where
        F: FnMut(Url) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let work = self.fetch_with(url, spec, Some(to), allow_hop);
        match total {
            Some(t) => tokio::time::timeout(t, work)
                .await
                .unwrap_or(Err(FetchError::Timeout(
                    "whole download (files.total_timeout_ms)",
                ))),
            None => work.await,
        }
    }

    /// Fetches `url` with a plain GET, following redirects. `allow_hop` is asked before
    /// every redirect hop (scope and robots.txt are re-checked there) and returns why a hop
    /// is refused.
    pub async fn fetch<F, Fut>(&self, url: &Url, allow_hop: F) -> Result<Response, FetchError>
    where
        F: FnMut(Url) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        self.fetch_request(url, None, allow_hop).await
    }

    /// [`Fetcher::fetch`] with a method, extra headers and a body (`None`: a plain GET).
    /// Redirects follow the browsers' rules: 307 and 308 repeat the method and body, the
    /// others continue with a GET and no body.
    pub async fn fetch_request<F, Fut>(
        &self,
        url: &Url,
        spec: Option<&RequestSpec>,
        allow_hop: F,
    ) -> Result<Response, FetchError>
    where
        F: FnMut(Url) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let deadline = Duration::from_millis(self.cfg.total_timeout_ms);
        tokio::time::timeout(deadline, self.fetch_with(url, spec, None, allow_hop))
            .await
            .unwrap_or(Err(FetchError::Timeout(
                "total deadline (fetch.total_timeout_ms)",
            )))
    }

    /// The redirect loop, then the body: in memory, or streamed to `to` for a download.
    async fn fetch_with<F, Fut>(
        &self,
        url: &Url,
        spec: Option<&RequestSpec>,
        to: Option<&DownloadTo>,
        mut allow_hop: F,
    ) -> Result<Response, FetchError>
    where
        F: FnMut(Url) -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        let started = Instant::now();
        let resume = to.and_then(DownloadTo::resume);
        // Credentials in the URL travel as Basic auth to that URL's origin only: a redirect to
        // another scheme, host or port drops them.
        let origin = url.origin();
        let credentials = basic_auth(url);
        let work = async {
            let mut current = url.clone();
            let mut chain: Vec<Url> = Vec::new();
            let mut spec: Option<std::borrow::Cow<'_, RequestSpec>> =
                spec.map(std::borrow::Cow::Borrowed);
            loop {
                let auth = credentials
                    .as_deref()
                    .filter(|_| current.origin() == origin);
                // Until this hop's body is read or dropped, its host's connections stay.
                let _busy = self.connections.busy(&crate::normalize::host_key(&current));
                let (status, headers, location, resp) = self
                    .request(&current, auth, spec.as_deref(), to.map(|_| resume.as_ref()))
                    .await?;
                if let Some(loc) = location.filter(|_| (300..400).contains(&status)) {
                    if !matches!(status, 307 | 308)
                        && let Some(s) = spec.as_mut()
                        && s.method != Method::Get
                    {
                        let s = s.to_mut();
                        s.method = Method::Get;
                        s.body = None;
                    }
                    let next = current.join(&loc).map_err(|e| {
                        FetchError::RedirectRefused(format!("bad Location {loc:?}: {e}"))
                    })?;
                    if !matches!(next.scheme(), "http" | "https") {
                        return Err(FetchError::RedirectRefused(format!(
                            "non-http(s) target {next}"
                        )));
                    }
                    if next == current || chain.contains(&next) {
                        return Err(FetchError::RedirectLoop(next.to_string()));
                    }
                    if chain.len() >= self.cfg.max_redirects {
                        return Err(FetchError::TooManyRedirects(self.cfg.max_redirects));
                    }
                    allow_hop(next.clone())
                        .await
                        .map_err(FetchError::RedirectRefused)?;
                    drop(resp);
                    chain.push(std::mem::replace(&mut current, next));
                    continue;
                }
                let mut hold = BudgetHold::default();
                if let Some(to) = to.filter(|_| (200..300).contains(&status)) {
                    let version = version_name(resp.version());
                    let _active = Active::new(&self.downloads_active);
                    let (file, wire_bytes) = download::stream(
                        resp,
                        status,
                        &headers,
                        to,
                        resume.as_ref(),
                        &self.download_bytes,
                    )
                    .await?;
                    return Ok(Response {
                        final_url: current,
                        redirects: chain,
                        status,
                        method: spec.map_or(Method::Get, |s| s.method),
                        headers,
                        body: Bytes::new(),
                        wire_bytes,
                        truncated: false,
                        encoding: "",
                        elapsed: started.elapsed(),
                        http_version: version,
                        budget: std::sync::Arc::new(hold),
                        file: Some(file),
                    });
                }
                let (body, wire_bytes, truncated, version) =
                    self.read_body(resp, &headers, &mut hold).await?;
                let encoding = detect_encoding(&headers, &body);
                return Ok(Response {
                    final_url: current,
                    redirects: chain,
                    status,
                    method: spec.map_or(Method::Get, |s| s.method),
                    headers,
                    body,
                    wire_bytes,
                    truncated,
                    encoding,
                    elapsed: started.elapsed(),
                    http_version: version,
                    budget: std::sync::Arc::new(hold),
                    file: None,
                });
            }
        };
        work.await
    }

    #[allow(clippy::type_complexity)]
    async fn request(
        &self,
        url: &Url,
        auth: Option<&str>,
        spec: Option<&RequestSpec>,
        download: Option<Option<&download::Resume>>,
    ) -> Result<
        (
            u16,
            Vec<(String, String)>,
            Option<String>,
            hyper::Response<hyper::body::Incoming>,
        ),
        FetchError,
    > {
        if url.as_str().len() > self.cfg.max_url_len {
            return Err(FetchError::BadUrl(format!(
                "longer than {} bytes (fetch.max_url_len)",
                self.cfg.max_url_len
            )));
        }
        let mut bare = url.clone();
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        let uri: hyper::Uri = bare
            .as_str()
            .parse()
            .map_err(|e| FetchError::BadUrl(format!("{bare}: {e}")))?;
        let method = match spec.map(|s| s.method) {
            Some(Method::Post) => hyper::Method::POST,
            _ => hyper::Method::GET,
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(uri.clone())
            .header(header::USER_AGENT, self.cfg.user_agent.as_str());
        req = match download {
            // A download is asked for as stored (a range of encoded bytes would not resume),
            // and for the rest only when an earlier attempt left a validated part.
            Some(resume) => {
                req = req
                    .header(header::ACCEPT_ENCODING, "identity")
                    .header(header::ACCEPT, "*/*");
                match resume {
                    Some(r) => req
                        .header(header::RANGE, format!("bytes={}-", r.have))
                        .header(header::IF_RANGE, r.validator.as_str()),
                    None => req,
                }
            }
            None => req
                .header(header::ACCEPT_ENCODING, "gzip, deflate, br, zstd")
                .header(
                    header::ACCEPT,
                    "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
                ),
        };
        for (k, v) in self.headers.iter() {
            req = req.header(k, v);
        }
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        if bare.scheme() == "http"
            && let Some(icpt) = self.matcher.intercept(&uri)
            && let Some(auth) = icpt.basic_auth()
        {
            req = req.header(header::PROXY_AUTHORIZATION, auth.clone());
        }
        if let Some(jar) = &self.jar {
            let cookies = match jar.lock() {
                Ok(j) => j
                    .get_request_values(url)
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect::<Vec<_>>()
                    .join("; "),
                Err(_) => String::new(),
            };
            if !cookies.is_empty() {
                req = req.header(header::COOKIE, cookies);
            }
        }
        // A plugin's header replaces the crawl's own of that name (an API that wants JSON
        // sets Accept); `RequestSpec::check` kept framing and credentials out of them.
        let mut body = Bytes::new();
        if let Some(s) = spec {
            if let Some(h) = req.headers_mut() {
                let mut replaced: Vec<header::HeaderName> = Vec::new();
                for (k, v) in &s.headers {
                    let (Ok(k), Ok(v)) = (
                        header::HeaderName::from_bytes(k.as_bytes()),
                        header::HeaderValue::from_str(v),
                    ) else {
                        continue;
                    };
                    if replaced.contains(&k) {
                        h.append(k, v);
                    } else {
                        h.insert(k.clone(), v);
                        replaced.push(k);
                    }
                }
            }
            if let Some(b) = &s.body {
                req = req.header(header::CONTENT_TYPE, b.content_type());
                body = Bytes::copy_from_slice(b.text().as_bytes());
            }
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| FetchError::BadUrl(e.to_string()))?;
        let read_timeout = Duration::from_millis(self.cfg.read_timeout_ms);
        let resp = tokio::time::timeout(read_timeout, self.client.request(req))
            .await
            .map_err(|_| FetchError::Timeout("no response headers (fetch.read_timeout_ms)"))?
            .map_err(classify_client_error)?;
        self.responses
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let status = resp.status().as_u16();
        // The status line and every header line with its CRLF, as on the wire.
        let head_bytes = 17
            + resp
                .headers()
                .iter()
                .map(|(k, v)| k.as_str().len() + v.as_bytes().len() + 4)
                .sum::<usize>();
        if head_bytes > self.cfg.max_header_bytes {
            return Err(FetchError::HeaderLimit(format!(
                "{head_bytes} bytes of headers (fetch.max_header_bytes = {})",
                self.cfg.max_header_bytes
            )));
        }
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        if let Some(jar) = &self.jar {
            let set: Vec<cookie::Cookie<'static>> = resp
                .headers()
                .get_all(header::SET_COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(|v| cookie::Cookie::parse(v.to_owned()).ok())
                .collect();
            if !set.is_empty()
                && let Ok(mut j) = jar.lock()
            {
                j.store_response_cookies(set.into_iter(), url);
            }
        }
        let location = resp
            .headers()
            .get(header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        Ok((status, headers, location, resp))
    }

    async fn read_body(
        &self,
        resp: hyper::Response<hyper::body::Incoming>,
        headers: &[(String, String)],
        hold: &mut BudgetHold,
    ) -> Result<(Bytes, u64, bool, &'static str), FetchError> {
        let version = version_name(resp.version());
        let coding = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-encoding"))
            .map(|(_, v)| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if coding.is_empty() || coding == "identity" {
            return self.read_plain_body(resp, headers, version, hold).await;
        }
        let wire = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let wire_count = wire.clone();
        let stream = resp
            .into_body()
            .into_data_stream()
            .map_ok(move |b: Bytes| {
                wire_count.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
                b
            })
            .map_err(std::io::Error::other);
        let raw = tokio_util::io::StreamReader::new(stream);
        let mut reader = decoder(&coding, raw)?;

        // Decoded bytes are counted, so a decompression bomb stops at the same limit as a
        // large plain body.
        let limit = self.cfg.max_body_bytes;
        let read_timeout = Duration::from_millis(self.cfg.read_timeout_ms);
        let mut body = Vec::with_capacity(16 * 1024);
        let mut chunk = vec![0u8; 32 * 1024];
        let mut truncated = false;
        loop {
            let n = tokio::time::timeout(read_timeout, reader.read(&mut chunk))
                .await
                .map_err(|_| FetchError::Timeout("body stalled (fetch.read_timeout_ms)"))?
                .map_err(|e| classify_body_error(e, !coding.is_empty()))?;
            if n == 0 {
                break;
            }
            self.budget
                .cover(hold, (body.len() + n).min(limit as usize) as u64)
                .await;
            let room = limit.saturating_sub(body.len() as u64) as usize;
            if n > room {
                body.extend_from_slice(&chunk[..room]);
                if self.cfg.oversize == Oversize::Drop {
                    return Err(FetchError::TooLarge(limit));
                }
                truncated = true;
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        let wire_bytes = wire.load(std::sync::atomic::Ordering::Relaxed);
        Ok((Bytes::from(body), wire_bytes, truncated, version))
    }

    /// An uncompressed body is taken frame by frame as hyper hands it over: a body that
    /// arrives in one frame is kept as that frame's buffer, and a longer one is gathered
    /// into a buffer sized from Content-Length. Going through a reader instead cost a zeroed
    /// scratch buffer, two copies and a few reallocations per page (BENCHMARKS.md §1).
    async fn read_plain_body(
        &self,
        resp: hyper::Response<hyper::body::Incoming>,
        headers: &[(String, String)],
        version: &'static str,
        hold: &mut BudgetHold,
    ) -> Result<(Bytes, u64, bool, &'static str), FetchError> {
        let limit = usize::try_from(self.cfg.max_body_bytes).unwrap_or(usize::MAX);
        let read_timeout = Duration::from_millis(self.cfg.read_timeout_ms);
        let declared = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok());
        let mut incoming = resp.into_body();
        let mut first: Option<Bytes> = None;
        let mut gathered: Vec<u8> = Vec::new();
        let mut wire = 0u64;
        let mut truncated = false;
        loop {
            let frame = tokio::time::timeout(read_timeout, incoming.frame())
                .await
                .map_err(|_| FetchError::Timeout("body stalled (fetch.read_timeout_ms)"))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| classify_body_error(std::io::Error::other(e), false))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers carry no body bytes
            };
            wire += data.len() as u64;
            let have = first.as_ref().map_or(0, Bytes::len) + gathered.len();
            self.budget
                .cover(hold, (have + data.len()).min(limit) as u64)
                .await;
            let room = limit.saturating_sub(have);
            let data = if data.len() > room {
                if self.cfg.oversize == Oversize::Drop {
                    return Err(FetchError::TooLarge(self.cfg.max_body_bytes));
                }
                truncated = true;
                data.slice(..room)
            } else {
                data
            };
            if first.is_none() && gathered.is_empty() {
                first = Some(data);
            } else {
                if let Some(earlier) = first.take() {
                    let want = declared
                        .unwrap_or(0)
                        .clamp(earlier.len() + data.len(), limit);
                    gathered.reserve_exact(want);
                    gathered.extend_from_slice(&earlier);
                }
                gathered.extend_from_slice(&data);
            }
            if truncated {
                break;
            }
        }
        let body = match first {
            Some(only) => only,
            None => Bytes::from(gathered),
        };
        Ok((body, wire, truncated, version))
    }
}

/// Connects directly, through an HTTP proxy (absolute-form requests), or through a CONNECT
/// tunnel for HTTPS, as the proxy matcher decides per destination.
#[derive(Clone)]
struct ProxyConnector {
    http: HttpConnector<Resolver>,
    matcher: std::sync::Arc<hyper_util::client::proxy::matcher::Matcher>,
    connections: conns::Connections,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Io = hyper_util::rt::TokioIo<tokio::net::TcpStream>;

impl tower_service::Service<hyper::Uri> for ProxyConnector {
    type Response = ProxiedIo;
    type Error = BoxError;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<ProxiedIo, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: hyper::Uri) -> Self::Future {
        let mut http = self.http.clone();
        let connections = self.connections.clone();
        // The key `normalize::host_key` gives the same URL: the host, and the port if the
        // URL names one (the URI is built from the URL's text, which drops a default port).
        let host = crate::normalize::host_port_key(dst.host(), dst.port_u16());
        match self.matcher.intercept(&dst) {
            None => Box::pin(async move {
                let io: Io = http.call(dst).await.map_err(BoxError::from)?;
                Ok(ProxiedIo::new(io, false, connections.opened(&host)))
            }),
            Some(icpt) if dst.scheme_str() == Some("https") => {
                let mut tunnel = hyper_util::client::legacy::connect::proxy::Tunnel::new(
                    icpt.uri().clone(),
                    http,
                );
                if let Some(auth) = icpt.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                Box::pin(async move {
                    let io: Io = tunnel.call(dst).await.map_err(BoxError::from)?;
                    Ok(ProxiedIo::new(io, false, connections.opened(&host)))
                })
            }
            Some(icpt) => {
                let proxy = icpt.uri().clone();
                Box::pin(async move {
                    let io: Io = http.call(proxy).await.map_err(BoxError::from)?;
                    Ok(ProxiedIo::new(io, true, connections.opened(&host)))
                })
            }
        }
    }
}

/// A connection that tells the pool whether it goes to a plain-HTTP proxy, so hyper sends
/// absolute-form request targets on it, and whether it may be kept for reuse (`conns`).
struct ProxiedIo {
    io: Io,
    proxied: bool,
    /// Its place in the count of open connections, given back when it closes.
    slot: conns::Slot,
}

impl ProxiedIo {
    fn new(io: Io, proxied: bool, slot: conns::Slot) -> Self {
        ProxiedIo { io, proxied, slot }
    }
}

impl hyper_util::client::legacy::connect::Connection for ProxiedIo {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        let connected = self.io.connected().proxy(self.proxied);
        if !self.slot.reusable {
            // A poisoned connection serves the request it was opened for, and the pool drops
            // it (closing it) instead of keeping it. The client asks once, when it connects.
            connected.poison();
        }
        connected
    }
}

impl hyper::rt::Read for ProxiedIo {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        // End of file for an idle connection of a host that is done: hyper drops it now
        // instead of keeping it for `fetch.idle_timeout_ms` (`conns::Connections::close_idle`).
        if self.slot.close_requested(cx) {
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for ProxiedIo {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A reader that decodes `coding` (Content-Encoding) from `raw`.
fn decoder<R>(coding: &str, raw: R) -> Result<Box<dyn AsyncRead + Send + Unpin>, FetchError>
where
    R: tokio::io::AsyncBufRead + Send + Unpin + 'static,
{
    Ok(match coding {
        "gzip" | "x-gzip" => Box::new(GzipDecoder::new(raw)),
        "deflate" => Box::new(ZlibDecoder::new(raw)),
        "br" => Box::new(BrotliDecoder::new(raw)),
        "zstd" => Box::new(ZstdDecoder::new(raw)),
        other => {
            return Err(FetchError::Decode(format!(
                "unknown Content-Encoding {other:?}"
            )));
        }
    })
}

fn version_name(v: hyper::Version) -> &'static str {
    match v {
        hyper::Version::HTTP_2 => "HTTP/2",
        hyper::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
}

fn basic_auth(url: &Url) -> Option<String> {
    use base64::Engine as _;
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let pair = format!(
        "{}:{}",
        decode(url.username()),
        decode(url.password().unwrap_or(""))
    );
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

/// Classifies by the types in the error's source chain (our resolver's `DnsError`, hyper's
/// parse errors, rustls' errors, I/O error kinds), never by message text.
fn classify_client_error(e: hyper_util::client::legacy::Error) -> FetchError {
    let text = error_chain(&e);
    for err in causes(&e) {
        if err.downcast_ref::<resolve::DnsError>().is_some() {
            return FetchError::Dns(text);
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_parse_too_large() {
                return FetchError::HeaderLimit(text);
            }
            if h.is_timeout() {
                return FetchError::Timeout("response (fetch.read_timeout_ms)");
            }
        }
        if err.downcast_ref::<rustls::Error>().is_some() {
            return FetchError::Tls(text);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return FetchError::Timeout("connect (fetch.connect_timeout_ms)");
        }
    }
    if e.is_connect() {
        FetchError::Connect(text)
    } else {
        FetchError::Broken(text)
    }
}

/// Every error in `e`'s chain, including what `io::Error`s wrap (their `source()` skips
/// the wrapped error itself, and connectors nest them: hyper-rustls wraps tokio-rustls's
/// `io::Error`, which wraps the `rustls::Error`).
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Vec<&'a (dyn std::error::Error + 'static)> {
    let mut out = Vec::new();
    let mut todo = vec![e];
    while let Some(err) = todo.pop() {
        if out.len() >= 32 {
            break;
        }
        out.push(err);
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            todo.push(inner);
        }
        if let Some(next) = err.source() {
            todo.push(next);
        }
    }
    out
}

/// hyper's header-count limit, derived from the byte limit. The count sizes a parse buffer
/// that hyper allocates for every response head (about 40 bytes a slot), so it stays under
/// the allocator's mmap threshold: 1,024 headers at the default 64 KiB.
fn max_headers(max_header_bytes: usize) -> usize {
    (max_header_bytes / 64).clamp(100, 1024)
}

fn classify_body_error(e: std::io::Error, compressed: bool) -> FetchError {
    let text = error_chain(&e);
    if compressed && e.kind() == std::io::ErrorKind::InvalidData {
        FetchError::Decode(text)
    } else {
        FetchError::Broken(text)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Checks the settings that only the fetcher reads (`fetch.resolve`), so a bad one stops the
/// crawl at config time, before anything is written.
pub fn check_config(cfg: &FetchConfig) -> anyhow::Result<()> {
    Resolver::new(&cfg.resolve).map(|_| ())
}

/// The page's encoding in the WHATWG order (see `charset`).
pub fn detect_encoding(headers: &[(String, String)], body: &[u8]) -> &'static str {
    crate::charset::detect(headers, body)
}

fn webpki_roots_certs() -> impl Iterator<Item = rustls::pki_types::TrustAnchor<'static>> {
    webpki_roots::TLS_SERVER_ROOTS.iter().cloned()
}

/// Certificate verifier for `danger_accept_invalid_certs`: checks signatures, not identity.
#[derive(Debug)]
struct NoVerify(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_detection_order() {
        let h = |v: &str| vec![("Content-Type".to_owned(), v.to_owned())];
        assert_eq!(
            detect_encoding(&h("text/html; charset=ISO-8859-1"), b""),
            "windows-1252"
        );
        assert_eq!(detect_encoding(&[], b"\xEF\xBB\xBFhi"), "UTF-8");
        assert_eq!(
            detect_encoding(&h("text/html"), b"<meta charset=\"shift_jis\">"),
            "Shift_JIS"
        );
        assert_eq!(detect_encoding(&[], b"<p>plain"), "UTF-8");
    }
}
