//! The HTTP side of `--listen`: routes, the bearer-token check, request bounds, and the
//! status page's bytes. It owns the connections it accepts; it must not change the crawl:
//! every `POST` becomes a [`Control`] request the scheduler answers.

use super::{Control, MAX_SEEDS_PER_REQUEST, Metrics, RunState, Status};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

/// The status page: one file, no CDN, no external request.
const PAGE: &str = include_str!("page.html");
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 64;
/// Bytes a `POST /api/seeds` body may have.
const MAX_BODY: usize = 1024 * 1024;
/// Time to send a request's headers, or its body.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the scheduler has to answer a control request (it answers between commits).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

type Body = Full<Bytes>;

#[derive(Clone)]
pub(super) struct Handle {
    pub control: mpsc::Sender<Control>,
    pub status: watch::Receiver<Arc<Status>>,
    pub metrics: Arc<Metrics>,
    pub token: Option<Arc<str>>,
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Page,
    Metrics,
    Status,
    Pause,
    Resume,
    Stop,
    Seeds,
}

impl Route {
    fn of(method: &Method, path: &str) -> Result<Route, Refusal> {
        let (route, post) = match path {
            "/" | "/index.html" => (Route::Page, false),
            "/metrics" => (Route::Metrics, false),
            "/api/status" => (Route::Status, false),
            "/api/pause" => (Route::Pause, true),
            "/api/resume" => (Route::Resume, true),
            "/api/stop" => (Route::Stop, true),
            "/api/seeds" => (Route::Seeds, true),
            _ => return Err(Refusal::NotFound),
        };
        let allowed = if post { Method::POST } else { Method::GET };
        if *method == allowed || (!post && *method == Method::HEAD) {
            Ok(route)
        } else {
            Err(Refusal::Method(allowed))
        }
    }
}

/// Why a request is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Refusal {
    NotFound,
    /// The route takes only this method.
    Method(Method),
    /// No token, or a wrong one.
    Unauthorized,
    /// Without a token, a Host header that is not a loopback name (DNS rebinding).
    ForeignHost,
    /// A POST whose Origin is another site.
    CrossSite,
}

impl Refusal {
    fn response(&self) -> Response<Body> {
        match self {
            Refusal::NotFound => text(StatusCode::NOT_FOUND, "not found"),
            Refusal::Method(allowed) => {
                let mut r = text(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &format!("this path takes {allowed} only"),
                );
                if let Ok(v) = header::HeaderValue::from_str(allowed.as_str()) {
                    r.headers_mut().insert(header::ALLOW, v);
                }
                r
            }
            Refusal::Unauthorized => {
                let mut r = text(
                    StatusCode::UNAUTHORIZED,
                    "send the --listen-token as \"Authorization: Bearer TOKEN\" (or ?token=TOKEN in a browser)",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                r
            }
            Refusal::ForeignHost => text(
                StatusCode::FORBIDDEN,
                "without --listen-token only loopback host names are served",
            ),
            Refusal::CrossSite => text(
                StatusCode::FORBIDDEN,
                "cross-site requests may not steer the crawl",
            ),
        }
    }
}

pub(super) async fn serve(listener: tokio::net::TcpListener, handle: Handle) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // The crawl is over once the monitor (the status sender) is gone.
    let mut over = handle.status.clone();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = wait_closed(&mut over) => return,
        };
        let stream = tokio::select! {
            a = listener.accept() => match a {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::debug!("status server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = wait_closed(&mut over) => return,
        };
        let h = handle.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let h = h.clone();
                async move { Ok::<_, std::convert::Infallible>(h.answer(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = conn.await;
            drop(permit);
        });
    }
}

async fn wait_closed(rx: &mut watch::Receiver<Arc<Status>>) {
    while rx.changed().await.is_ok() {}
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", format!("{body}\n"))
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(v) => respond(status, "application/json", v),
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn respond(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(ctype) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    r
}

/// Compares without an early exit, so the time taken does not tell how much of a guess was
/// right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The `token` query parameter (the browser's way to pass it to the page).
fn query_token(query: Option<&str>) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
}

impl Handle {
    async fn answer(&self, req: Request<Incoming>) -> Response<Body> {
        let route = match self
            .allowed(&req)
            .and_then(|()| Route::of(req.method(), req.uri().path()))
        {
            Ok(r) => r,
            Err(refusal) => return refusal.response(),
        };
        match route {
            Route::Page => {
                let mut r = respond(StatusCode::OK, "text/html; charset=utf-8", PAGE);
                // The page shows URLs and error text from the crawled sites: it builds its DOM
                // with textContent only, and this forbids every script and request not its own.
                r.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    header::HeaderValue::from_static(
                        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                    ),
                );
                r
            }
            Route::Metrics => respond(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics.render(),
            ),
            Route::Status => {
                let s = Arc::clone(&self.status.borrow());
                json(StatusCode::OK, &*s)
            }
            Route::Pause => self.ask_state(Control::Pause).await,
            Route::Resume => self.ask_state(Control::Resume).await,
            Route::Stop => self.ask_state(Control::Stop).await,
            Route::Seeds => self.seeds(req).await,
        }
    }

    /// The token (when set), the Host (without a token: loopback names only, so a web page
    /// cannot reach the API through DNS rebinding) and, on a POST, the Origin (a browser
    /// sends it on a cross-site POST: another site's page cannot stop the crawl).
    fn allowed(&self, req: &Request<Incoming>) -> Result<(), Refusal> {
        let headers = req.headers();
        match &self.token {
            Some(token) => {
                let bearer = headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::to_owned);
                let given = bearer.or_else(|| query_token(req.uri().query()));
                if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
                    return Err(Refusal::Unauthorized);
                }
            }
            None => {
                let host = headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
                if !matches!(name, "127.0.0.1" | "localhost" | "[::1]" | "") {
                    return Err(Refusal::ForeignHost);
                }
            }
        }
        if req.method() == Method::POST
            && let Some(origin) = headers.get(header::ORIGIN)
        {
            let origin = origin.to_str().unwrap_or("");
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let same_site = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|o| o == host);
            if !same_site {
                return Err(Refusal::CrossSite);
            }
        }
        Ok(())
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Control) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let sent = tokio::time::timeout(ANSWER_TIMEOUT, self.control.send(make(tx))).await;
        if !matches!(sent, Ok(Ok(()))) {
            return None;
        }
        tokio::time::timeout(ANSWER_TIMEOUT, rx).await.ok()?.ok()
    }

    async fn ask_state(
        &self,
        make: impl FnOnce(oneshot::Sender<RunState>) -> Control,
    ) -> Response<Body> {
        match self.ask(make).await {
            Some(state) => json(StatusCode::OK, &serde_json::json!({ "state": state })),
            None => gone(),
        }
    }

    async fn seeds(&self, req: Request<Incoming>) -> Response<Body> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY as u64) {
            return too_large();
        }
        let body = Limited::new(req.into_body(), MAX_BODY);
        let bytes = match tokio::time::timeout(READ_TIMEOUT, body.collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(_)) => return too_large(),
            Err(_) => return text(StatusCode::REQUEST_TIMEOUT, "the body took too long"),
        };
        let urls = match parse_seeds(&bytes) {
            Ok(u) => u,
            Err(why) => return text(StatusCode::BAD_REQUEST, &why),
        };
        match self.ask(|reply| Control::Seeds { urls, reply }).await {
            Some(report) => json(StatusCode::OK, &report),
            None => gone(),
        }
    }
}

fn too_large() -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("a seeds request may have at most {MAX_BODY} bytes"),
    )
}

fn gone() -> Response<Body> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the crawl is finishing and takes no more requests",
    )
}

/// `{"urls": [...]}`, a JSON array of strings, or one URL per line.
fn parse_seeds(body: &[u8]) -> Result<Vec<String>, String> {
    let urls: Vec<String> = match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {
            #[derive(serde::Deserialize)]
            struct Seeds {
                urls: Vec<String>,
            }
            serde_json::from_slice::<Seeds>(body)
                .map_err(|e| format!("expected {{\"urls\": [\"https://…\"]}}: {e}"))?
                .urls
        }
        Some(b'[') => serde_json::from_slice(body)
            .map_err(|e| format!("expected a JSON array of URL strings: {e}"))?,
        Some(_) => std::str::from_utf8(body)
            .map_err(|_| "the body is not UTF-8".to_owned())?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect(),
        None => Vec::new(),
    };
    if urls.is_empty() {
        return Err("no URLs: send {\"urls\": [\"https://…\"]} or one URL per line".into());
    }
    if urls.len() > MAX_SEEDS_PER_REQUEST {
        return Err(format!(
            "{} URLs: at most {MAX_SEEDS_PER_REQUEST} per request",
            urls.len()
        ));
    }
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_methods() {
        assert_eq!(Route::of(&Method::GET, "/metrics"), Ok(Route::Metrics));
        assert_eq!(Route::of(&Method::HEAD, "/"), Ok(Route::Page));
        assert_eq!(Route::of(&Method::POST, "/api/stop"), Ok(Route::Stop));
        let r = Route::of(&Method::GET, "/api/stop");
        assert_eq!(r, Err(Refusal::Method(Method::POST)));
        let r = r.err().map(|r| r.response().status());
        assert_eq!(r, Some(StatusCode::METHOD_NOT_ALLOWED));
        assert_eq!(Route::of(&Method::GET, "/nope"), Err(Refusal::NotFound));
    }

    #[test]
    fn seeds_bodies() {
        assert_eq!(
            parse_seeds(br#"{"urls": ["http://a/"]}"#),
            Ok(vec!["http://a/".to_owned()])
        );
        assert_eq!(
            parse_seeds(br#"["http://a/", "http://b/"]"#).map(|v| v.len()),
            Ok(2)
        );
        assert_eq!(
            parse_seeds(b"http://a/\n# comment\n\nhttp://b/\n").map(|v| v.len()),
            Ok(2)
        );
        assert!(parse_seeds(b"  ").is_err());
        assert!(parse_seeds(b"{\"urls\": 3}").is_err());
    }

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert_eq!(query_token(Some("a=1&token=x%20y")), Some("x y".into()));
    }
}
