//! The fetcher against a hostile server on 127.0.0.1: redirect loops and chains,
//! decompression bombs, a 1 GB body, slow drips, silent servers, resets, odd encodings,
//! self-signed TLS and HTTP/2. Then politeness as the server measures it: Retry-After,
//! per-host concurrency, delays, Crawl-delay and back-off.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use sandcrawl::fetch::{FetchConfig, FetchError, Fetcher, Oversize};
use sandcrawl_e2e::{Body, BoxError, Server, full, header, html, run_bin, serve, summary, tempdir};
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

fn stream_body<S>(s: S) -> Body
where
    S: futures_util::Stream<Item = Result<Bytes, BoxError>> + Send + Sync + 'static,
{
    BodyExt::boxed(StreamBody::new(s.map(|r| r.map(Frame::data))))
}

fn with(status: u16, headers: &[(&str, &str)], body: Body) -> Response<Body> {
    let mut b = Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(body).expect("response")
}

fn gzip_bomb() -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; MIB];
    for _ in 0..64 {
        e.write_all(&zeros).expect("gzip");
    }
    e.finish().expect("gzip")
}

fn brotli_bomb() -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 64 * 1024, 1, 22);
        let zeros = vec![0u8; MIB];
        for _ in 0..64 {
            w.write_all(&zeros).expect("brotli");
        }
    }
    out
}

async fn hostile_server() -> Server {
    let gz = Bytes::from(gzip_bomb());
    let br = Bytes::from(brotli_bomb());
    serve("127.0.0.1", move |req| {
        let (gz, br) = (gz.clone(), br.clone());
        async move {
            let path = req.uri().path().to_owned();
            let auth = header(&req, "authorization", "none");
            let redirect = |to: &str| with(302, &[("location", to)], full(""));
            match path.as_str() {
                "/ok" => html(200, "<p>ok</p>"),
                "/loop/a" => redirect("/loop/b"),
                "/loop/b" => redirect("/loop/a"),
                p if p.starts_with("/chain/") => {
                    let n: u32 = p[7..].parse().unwrap_or(0);
                    if n >= 50 { html(200, "end of chain") } else { redirect(&format!("/chain/{}", n + 1)) }
                }
                "/to-ftp" => redirect("ftp://127.0.0.1/file"),
                "/zstd" => with(
                    200,
                    &[("content-encoding", "zstd"), ("content-type", "text/html")],
                    full(zstd::encode_all(&b"<p>zstd body</p>"[..], 3).unwrap_or_default()),
                ),
                "/deflate" => {
                    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                    let _ = e.write_all(b"<p>deflate body</p>");
                    with(200, &[("content-encoding", "deflate"), ("content-type", "text/html")], full(e.finish().unwrap_or_default()))
                }
                "/bogus-encoding" => with(200, &[("content-encoding", "snappy9")], full("??")),
                "/gzip-bomb" => with(200, &[("content-encoding", "gzip"), ("content-type", "text/html")], full(gz)),
                "/br-bomb" => with(200, &[("content-encoding", "br"), ("content-type", "text/html")], full(br)),
                "/huge" => {
                    let chunk = Bytes::from(vec![b'a'; 64 * 1024]);
                    let s = futures_util::stream::iter(0..16 * 1024).map(move |_| Ok::<_, BoxError>(chunk.clone()));
                    with(200, &[("content-type", "text/html")], stream_body(s))
                }
                "/drip" => {
                    let s = futures_util::stream::unfold(0u64, |n| async move {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        Some((Ok::<_, BoxError>(Bytes::from_static(b"x")), n + 1))
                    });
                    with(200, &[("content-type", "text/html")], stream_body(s))
                }
                "/hang" => {
                    std::future::pending::<()>().await;
                    html(200, "never")
                }
                "/reset" => {
                    let s = futures_util::stream::iter(vec![
                        Ok::<_, BoxError>(Bytes::from(vec![b'a'; 1000])),
                        Err::<Bytes, BoxError>("reset on purpose".into()),
                    ]);
                    with(200, &[("content-type", "text/html"), ("content-length", "100000")], stream_body(s))
                }
                "/latin1" => with(
                    200,
                    &[("content-type", "text/html")],
                    full(&b"<html><head><meta charset=\"iso-8859-1\"></head><p>caf\xe9</p></html>"[..]),
                ),
                "/bad-utf8" => with(
                    200,
                    &[("content-type", "text/html; charset=utf-8")],
                    full(&b"<p>\xff\xfe\xc3(</p>"[..]),
                ),
                "/echo-auth" => html(200, auth),
                p if p.starts_with("/away") => {
                    let to = req.uri().query().unwrap_or("").to_owned();
                    redirect(&to)
                }
                _ => html(404, "nope"),
            }
        }
    })
    .await
}

fn fetcher(f: impl FnOnce(&mut FetchConfig)) -> Fetcher {
    let mut cfg = FetchConfig::default();
    f(&mut cfg);
    Fetcher::new(cfg, 64).expect("fetcher")
}

async fn get(f: &Fetcher, url: &str) -> (Result<sandcrawl::fetch::Response, FetchError>, Duration) {
    let u = url::Url::parse(url).expect("url");
    let t = Instant::now();
    let r = f.fetch(&u, |_| async { Ok(()) }).await;
    (r, t.elapsed())
}

#[test]
fn redirects_loops_chains_and_bad_targets() {
    let rt = sandcrawl_e2e::runtime();
    rt.block_on(async {
        let s = hostile_server().await;
        let f = fetcher(|_| {});
        let (r, _) = get(&f, &s.url("/loop/a")).await;
        assert!(matches!(r, Err(FetchError::RedirectLoop(_))), "{r:?}");
        let (r, _) = get(&f, &s.url("/chain/0")).await;
        assert_eq!(r.unwrap_err(), FetchError::TooManyRedirects(10));
        let long = fetcher(|c| c.max_redirects = 60);
        let resp = get(&long, &s.url("/chain/0"))
            .await
            .0
            .expect("a 50-hop chain within the cap");
        assert_eq!(resp.redirects.len(), 50);
        assert_eq!(resp.final_url.path(), "/chain/50");
        let (r, _) = get(&f, &s.url("/to-ftp")).await;
        assert!(
            matches!(r, Err(FetchError::RedirectRefused(ref m)) if m.contains("ftp://")),
            "{r:?}"
        );

        // The caller's hop check (scope, robots) is asked at every hop and can refuse.
        let u = url::Url::parse(&s.url("/chain/45")).expect("url");
        let mut asked = Vec::new();
        let r = f
            .fetch(&u, |hop| {
                asked.push(hop.path().to_owned());
                let refuse = hop.path() == "/chain/48";
                async move {
                    if refuse {
                        Err("out of scope".to_owned())
                    } else {
                        Ok(())
                    }
                }
            })
            .await;
        assert_eq!(
            r.unwrap_err(),
            FetchError::RedirectRefused("out of scope".into())
        );
        assert_eq!(asked, ["/chain/46", "/chain/47", "/chain/48"]);
    });
}

#[test]
fn credentials_stay_with_their_origin() {
    let rt = sandcrawl_e2e::runtime();
    rt.block_on(async {
        let s = hostile_server().await;
        let other = hostile_server_on("127.0.0.2").await;
        let f = fetcher(|_| {});
        let with_creds = s
            .url("/echo-auth")
            .replace("http://", "http://user:secret@");
        let resp = get(&f, &with_creds).await.0.expect("fetch");
        assert_eq!(&resp.body[..], b"Basic dXNlcjpzZWNyZXQ=");
        let away = format!("{}?{}", s.url("/away"), other.url("/echo-auth"))
            .replace("http://", "http://user:secret@");
        let resp = get(&f, &away).await.0.expect("fetch");
        assert_eq!(resp.final_url.host_str(), Some("127.0.0.2"));
        assert_eq!(
            &resp.body[..],
            b"none",
            "credentials leaked to another host"
        );
    });
}

async fn hostile_server_on(ip: &str) -> Server {
    serve(ip, |req| async move {
        let auth = header(&req, "authorization", "none");
        html(200, auth)
    })
    .await
}

#[test]
fn decompression_bombs_and_huge_bodies_stop_at_the_limit() {
    let rt = sandcrawl_e2e::runtime();
    rt.block_on(async {
        let s = hostile_server().await;
        let f = fetcher(|_| {});
        for path in ["/gzip-bomb", "/br-bomb", "/huge"] {
            let (r, took) = get(&f, &s.url(path)).await;
            let resp = r.unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(resp.body.len(), 10 * MIB, "{path}");
            assert!(resp.truncated, "{path}");
            assert!(took < Duration::from_secs(15), "{path} took {took:?}");
            if path != "/huge" {
                assert!(
                    resp.wire_bytes < MIB as u64,
                    "{path}: {} wire bytes",
                    resp.wire_bytes
                );
            }
        }
        let strict = fetcher(|c| c.oversize = Oversize::Drop);
        for path in ["/gzip-bomb", "/br-bomb", "/huge"] {
            let (r, _) = get(&strict, &s.url(path)).await;
            assert_eq!(
                r.unwrap_err(),
                FetchError::TooLarge(10 * MIB as u64),
                "{path}"
            );
        }
    });
}

#[test]
fn every_content_encoding_decodes() {
    let rt = sandcrawl_e2e::runtime();
    rt.block_on(async {
        let s = hostile_server().await;
        let f = fetcher(|_| {});
        assert_eq!(
            &get(&f, &s.url("/zstd")).await.0.expect("zstd").body[..],
            b"<p>zstd body</p>"
        );
        assert_eq!(
            &get(&f, &s.url("/deflate")).await.0.expect("deflate").body[..],
            b"<p>deflate body</p>"
        );
        let e = get(&f, &s.url("/bogus-encoding")).await.0.unwrap_err();
        assert!(
            matches!(e, FetchError::Decode(ref m) if m.contains("snappy9")),
            "{e:?}"
        );
    });
}

#[test]
fn slow_silent_and_broken_servers_are_cut() {
    let rt = sandcrawl_e2e::runtime();
    rt.block_on(async {
        let s = hostile_server().await;
        let f = fetcher(|c| c.read_timeout_ms = 300);
        let (r, took) = get(&f, &s.url("/drip")).await;
        assert!(
            matches!(r, Err(FetchError::Timeout(m)) if m.contains("body stalled")),
            "{r:?}"
        );
        assert!(took < Duration::from_secs(3), "drip took {took:?}");

        let (r, took) = get(&f, &s.url("/hang")).await;
        assert!(
            matches!(r, Err(FetchError::Timeout(m)) if m.contains("no response headers")),
            "{r:?}"
        );
        assert!(took < Duration::from_secs(3), "hang took {took:?}");

        let total = fetcher(|c| {
            c.read_timeout_ms = 60_000;
            c.total_timeout_ms = 400;
        });
        let (r, took) = get(&total, &s.url("/drip")).await;
        assert!(
            matches!(r, Err(FetchError::Timeout(m)) if m.contains("total deadline")),
            "{r:?}"
        );
        assert!(
            took < Duration::from_secs(3),
            "total deadline took {took:?}"
        );

        let (r, _) = get(&f, &s.url("/reset")).await;
        let e = r.unwrap_err();
        assert!(matches!(e, FetchError::Broken(_)), "{e:?}");
        assert!(e.retryable());

        let refused = get(&f, "http://127.0.0.1:1/").await.0.unwrap_err();
        assert!(matches!(refused, FetchError::Connect(_)), "{refused:?}");
        assert!(refused.retryable());

        // The server is still fine after all that.
        assert_eq!(get(&f, &s.url("/ok")).await.0.expect("ok").status, 200);
    });
}

#[test]
fn encodings_are_detected_and_bad_bytes_do_not_panic() {
    let rt = sandcrawl_e2e::runtime();
    rt.block_on(async {
        let s = hostile_server().await;
        let f = fetcher(|_| {});
        let r = get(&f, &s.url("/latin1")).await.0.expect("latin1");
        assert_eq!(r.encoding, "windows-1252");
        assert!(
            r.body.ends_with(b"caf\xe9</p></html>"),
            "raw bytes are kept"
        );
        let r = get(&f, &s.url("/bad-utf8")).await.0.expect("bad utf8");
        assert_eq!(r.encoding, "UTF-8");
        let links =
            sandcrawl::extract::extract(&r.final_url, &r.body, r.encoding, usize::MAX).links;
        assert!(links.is_empty());
    });
}

async fn tls_server(alpn: Vec<Vec<u8>>) -> std::net::SocketAddr {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("self-signed cert");
    let cert = CertificateDer::from(ck.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .expect("cert");
    cfg.alpn_protocols = alpn;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let v = format!("{:?}", req.version());
                        Ok::<_, std::convert::Infallible>(html(200, v))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(
                    hyper_util::rt::TokioExecutor::new(),
                )
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                .await;
            });
        }
    });
    addr
}

#[test]
fn self_signed_tls_is_rejected_by_default_and_http2_is_negotiated() {
    let rt = sandcrawl_e2e::runtime();
    rt.block_on(async {
        let h1 = tls_server(vec![b"http/1.1".to_vec()]).await;
        let h2_only = tls_server(vec![b"h2".to_vec()]).await;
        let f = fetcher(|_| {});
        let (r, _) = get(&f, &format!("https://{h1}/")).await;
        assert!(matches!(r, Err(FetchError::Tls(_))), "{r:?}");
        assert!(!r.unwrap_err().retryable());

        let lax = fetcher(|c| c.danger_accept_invalid_certs = true);
        let r = get(&lax, &format!("https://{h1}/"))
            .await
            .0
            .expect("h1 with checks off");
        assert_eq!(r.http_version, "HTTP/1.1");
        let r = get(&lax, &format!("https://{h2_only}/"))
            .await
            .0
            .expect("h2-only endpoint");
        assert_eq!(r.http_version, "HTTP/2");
        assert_eq!(&r.body[..], b"HTTP/2.0");
    });
}

/// Polls `cond` every 10 ms until it holds, for at most `limit`.
async fn eventually(limit: Duration, cond: impl Fn() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// Connections are bounded, as the server counts them: past `fetch.max_kept_connections` a
/// new connection closes after its response while the kept ones are reused, and an idle
/// connection closes after `fetch.idle_timeout_ms` (hyper's pool evicts nothing without a
/// timer, so a broad crawl kept one connection per host it had seen).
#[test]
fn kept_connections_are_bounded_and_idle_ones_close() {
    let rt = sandcrawl_e2e::runtime();
    rt.block_on(async {
        let s = serve("127.0.0.1", |_| async { html(200, "<p>ok</p>") }).await;
        let port = s.addr.port();
        let url = |host: usize| format!("http://h{host}.conns.test:{port}/");
        let resolve = |c: &mut FetchConfig| {
            c.resolve
                .insert("*.conns.test".to_owned(), "127.0.0.1".to_owned());
        };
        let f = fetcher(|c| {
            resolve(c);
            c.max_kept_connections = 2;
            c.idle_timeout_ms = 60_000;
        });
        assert_eq!(f.kept_connections(), 2);
        for host in 0..6 {
            let (r, _) = get(&f, &url(host)).await;
            assert_eq!(r.expect("fetched").status, 200);
        }
        assert_eq!(s.connections_accepted(), 6, "one connection per host name");
        assert!(
            eventually(Duration::from_secs(10), || s.connections_open() == 2).await,
            "the 4 connections past the 2 kept ones close: {} open",
            s.connections_open()
        );
        assert_eq!(f.open_connections(), 2);
        // The kept ones serve their hosts again; a host past them gets a new connection.
        get(&f, &url(0)).await.0.expect("fetched");
        get(&f, &url(1)).await.0.expect("fetched");
        assert_eq!(
            s.connections_accepted(),
            6,
            "hosts 0 and 1 reuse their connections"
        );
        get(&f, &url(5)).await.0.expect("fetched");
        assert_eq!(s.connections_accepted(), 7);
        assert!(eventually(Duration::from_secs(10), || s.connections_open() == 2).await);

        let idle = fetcher(|c| {
            resolve(c);
            c.idle_timeout_ms = 200;
        });
        for host in 10..13 {
            get(&idle, &url(host)).await.0.expect("fetched");
        }
        assert!(
            eventually(Duration::from_secs(20), || s.connections_open() == 2).await,
            "idle connections close after fetch.idle_timeout_ms: {} open",
            s.connections_open()
        );
        assert_eq!(idle.open_connections(), 0);
    });
}

// ---- politeness, measured by the server ----

fn crawl(site: &Server, extra: &[&str]) -> serde_json::Value {
    crawl_paths(site, &["/"], extra)
}

/// A crawl seeded with `paths` of `site`.
fn crawl_paths(site: &Server, paths: &[&str], extra: &[&str]) -> serde_json::Value {
    let st = tempdir("polite");
    let state = st.display().to_string();
    let seeds: Vec<String> = paths.iter().map(|p| site.url(p)).collect();
    let mut args = vec!["run", "--state", &state, "--no-progress"];
    args.extend_from_slice(extra);
    args.extend(seeds.iter().map(String::as_str));
    let (status, _, err) = run_bin(&args, Duration::from_secs(120));
    // 2: every fetch failed, which the failing-host tests provoke on purpose.
    assert!(matches!(status.code(), Some(0 | 2)), "{err}");
    summary(&st)
}

fn leaf_site(
    rt: &tokio::runtime::Runtime,
    pages: usize,
    delay: Duration,
    robots: &'static str,
) -> Server {
    rt.block_on(serve("127.0.0.1", move |req| async move {
        let path = req.uri().path().to_owned();
        if path == "/robots.txt" {
            return with(200, &[("content-type", "text/plain")], full(robots));
        }
        tokio::time::sleep(delay).await;
        if path == "/" {
            let links: String = (0..pages)
                .map(|i| format!("<a href=\"/p{i}\">{i}</a>"))
                .collect();
            html(200, links)
        } else {
            html(200, "<p>leaf</p>")
        }
    }))
}

#[test]
fn per_host_concurrency_is_never_exceeded() {
    let rt = sandcrawl_e2e::runtime();
    let site = leaf_site(&rt, 40, Duration::from_millis(100), "");
    let s = crawl(&site, &["--per-host", "3", "--concurrency", "64"]);
    assert_eq!(s["pages"], 41);
    let max = site.hits().iter().map(|h| h.concurrent).max().unwrap_or(0);
    assert!(max <= 3, "server saw {max} concurrent requests");
    assert!(max >= 2, "no parallelism at all ({max})");
}

fn min_gap(site: &Server) -> Duration {
    let hits: Vec<_> = site
        .hits()
        .into_iter()
        .filter(|h| h.path != "/robots.txt")
        .collect();
    hits.windows(2)
        .map(|w| w[1].at - w[0].at)
        .min()
        .unwrap_or_default()
}

#[test]
fn delay_and_crawl_delay_are_respected() {
    let rt = sandcrawl_e2e::runtime();
    let site = leaf_site(&rt, 5, Duration::ZERO, "");
    crawl(&site, &["--delay-ms", "200", "--per-host", "4"]);
    let gap = min_gap(&site);
    assert!(
        gap >= Duration::from_millis(190),
        "requests {gap:?} apart with delay_ms=200"
    );

    let site = leaf_site(&rt, 4, Duration::ZERO, "User-agent: *\nCrawl-delay: 0.3\n");
    crawl(&site, &["--per-host", "4"]);
    let gap = min_gap(&site);
    assert!(
        gap >= Duration::from_millis(290),
        "requests {gap:?} apart with Crawl-delay 0.3"
    );
}

#[test]
fn a_delay_runs_from_the_end_of_a_request_one_request_at_a_time() {
    // Answers take 150 ms and the delay is 100 ms: timed from the end of each request, the
    // server sees every request alone and at least 250 ms after the one before, four seeds
    // on one host and --per-host 4 notwithstanding. robots.txt's Crawl-delay holds from the
    // first page on, because the host's first request runs alone until robots.txt is read.
    let rt = sandcrawl_e2e::runtime();
    let seeds = ["/p0", "/p1", "/p2", "/p3"];
    for (robots, flags) in [
        ("", &["--delay-ms", "100", "--per-host", "4"][..]),
        (
            "User-agent: *\nCrawl-delay: 0.1\n",
            &["--per-host", "4"][..],
        ),
    ] {
        let site = leaf_site(&rt, 0, Duration::from_millis(150), robots);
        let s = crawl_paths(&site, &seeds, flags);
        assert_eq!(s["pages"], 4, "{robots:?} {flags:?}");
        let hits: Vec<_> = site
            .hits()
            .into_iter()
            .filter(|h| h.path != "/robots.txt")
            .collect();
        assert_eq!(hits.len(), 4);
        assert!(
            hits.iter().all(|h| h.concurrent == 1),
            "{robots:?} {flags:?}: requests overlapped: {:?}",
            hits.iter().map(|h| h.concurrent).collect::<Vec<_>>()
        );
        let gap = min_gap(&site);
        assert!(
            gap >= Duration::from_millis(250),
            "{robots:?} {flags:?}: requests {gap:?} apart"
        );
    }
}

fn flaky_site(rt: &tokio::runtime::Runtime, status: u16, retry_after: fn() -> String) -> Server {
    let first = Arc::new(AtomicUsize::new(0));
    rt.block_on(serve("127.0.0.1", move |req| {
        let first = first.clone();
        async move {
            match req.uri().path() {
                "/" => html(
                    200,
                    "<a href=\"/a\">a</a><a href=\"/b\">b</a><a href=\"/c\">c</a>",
                ),
                "/robots.txt" => html(404, ""),
                "/a" if first.fetch_add(1, Ordering::SeqCst) == 0 => with(
                    status,
                    &[("retry-after", retry_after().as_str())],
                    full("slow down"),
                ),
                _ => html(200, "<p>fine</p>"),
            }
        }
    }))
}

fn gap_after_throttle(site: &Server) -> Duration {
    let hits: Vec<_> = site
        .hits()
        .into_iter()
        .filter(|h| h.path != "/robots.txt")
        .collect();
    let i = hits
        .iter()
        .position(|h| h.path == "/a")
        .expect("a requested");
    // Every later request, to any path of the host, waits for Retry-After.
    hits.get(i + 1)
        .map(|n| n.at - hits[i].at)
        .unwrap_or_default()
}

#[test]
fn retry_after_seconds_and_http_date_throttle_the_whole_host() {
    let rt = sandcrawl_e2e::runtime();
    let site = flaky_site(&rt, 429, || "1".to_owned());
    let s = crawl(
        &site,
        &["--per-host", "1", "--set", "politeness.backoff_base_ms=10"],
    );
    assert_eq!(s["retries"], 1);
    assert_eq!(s["pages"], 4);
    assert_eq!(s["status"]["429"], 1);
    let gap = gap_after_throttle(&site);
    assert!(
        gap >= Duration::from_millis(950),
        "next request {gap:?} after 429 Retry-After: 1"
    );

    let site = flaky_site(&rt, 503, || {
        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(2))
    });
    let s = crawl(&site, &["--per-host", "1"]);
    assert_eq!(s["retries"], 1);
    assert_eq!(s["pages"], 4);
    let gap = gap_after_throttle(&site);
    // HTTP-dates have one-second resolution: "now + 2 s" is at least 1 s away.
    assert!(
        gap >= Duration::from_millis(950),
        "next request {gap:?} after 503 with an HTTP-date"
    );
}

#[test]
fn failing_hosts_are_backed_off_then_given_up() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        match req.uri().path() {
            "/robots.txt" => html(404, ""),
            _ => {
                let s = futures_util::stream::iter(vec![Err::<Bytes, BoxError>("reset".into())]);
                with(200, &[("content-length", "10")], stream_body(s))
            }
        }
    }));
    let s = crawl(
        &site,
        &[
            "--set",
            "politeness.backoff_base_ms=200",
            "--set",
            "politeness.max_retries=3",
        ],
    );
    assert_eq!(s["errors"]["broken"], 1, "{s}");
    // The last cause is kept, the whole chain of it.
    let cause = s["error_samples"]["broken"]["cause"].as_str().unwrap_or("");
    assert!(
        cause.contains("connection closed before message completed"),
        "{s}"
    );
    assert_eq!(s["error_samples"]["broken"]["url"], site.url("/"));
    let hits: Vec<_> = site.hits().into_iter().filter(|h| h.path == "/").collect();
    assert_eq!(hits.len(), 4, "first try + 3 retries");
    for (n, w) in hits.windows(2).enumerate() {
        // Full jitter between half and all of base * 2^n.
        let floor = Duration::from_millis(100 << n);
        assert!(
            w[1].at - w[0].at >= floor,
            "retry {} came {:?} after the previous",
            n + 1,
            w[1].at - w[0].at
        );
    }
}

#[test]
fn cookie_jar_is_opt_in_and_per_host() {
    let rt = sandcrawl_e2e::runtime();
    rt.block_on(async {
        let handler = |req: hyper::Request<hyper::body::Incoming>| async move {
            match req.uri().path() {
                "/login" => with(
                    200,
                    &[("set-cookie", "session=abc123; Path=/; HttpOnly")],
                    full("welcome"),
                ),
                _ => {
                    let c = header(&req, "cookie", "none");
                    html(200, c)
                }
            }
        };
        let a = serve("127.0.0.1", handler).await;
        let b = serve("127.0.0.2", handler).await;

        let plain = fetcher(|_| {});
        get(&plain, &a.url("/login")).await.0.expect("login");
        assert_eq!(
            &get(&plain, &a.url("/whoami")).await.0.expect("whoami").body[..],
            b"none"
        );

        let jar = fetcher(|c| c.cookies = true);
        get(&jar, &a.url("/login")).await.0.expect("login");
        assert_eq!(
            &get(&jar, &a.url("/whoami")).await.0.expect("whoami").body[..],
            b"session=abc123"
        );
        assert_eq!(
            &get(&jar, &b.url("/whoami"))
                .await
                .0
                .expect("other host")
                .body[..],
            b"none"
        );
    });
}

/// A forward proxy on loopback: CONNECT tunnels for real; plain requests in absolute form are
/// answered by the proxy itself with what it saw, so the test can tell they came through it.
async fn proxy_server() -> Server {
    serve(
        "127.0.0.1",
        |req: hyper::Request<hyper::body::Incoming>| async move {
            let auth = header(&req, "proxy-authorization", "none");
            if req.method() == hyper::Method::CONNECT {
                let target = req
                    .uri()
                    .authority()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                tokio::spawn(async move {
                    if let Ok(upgraded) = hyper::upgrade::on(req).await
                        && let Ok(mut server) = tokio::net::TcpStream::connect(&target).await
                    {
                        let mut client = hyper_util::rt::TokioIo::new(upgraded);
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                return with(200, &[], full(""));
            }
            html(200, format!("via proxy: {} auth: {auth}", req.uri()))
        },
    )
    .await
}

#[test]
fn proxies_plain_http_and_tunnel_https() {
    let rt = sandcrawl_e2e::runtime();
    rt.block_on(async {
        let proxy = proxy_server().await;
        let origin = hostile_server().await;
        let tls = tls_server(vec![b"http/1.1".to_vec()]).await;
        let via = fetcher(|c| {
            c.proxy = format!("http://bob:pw@{}", proxy.addr);
            c.danger_accept_invalid_certs = true;
        });
        let r = get(&via, &origin.url("/ok"))
            .await
            .0
            .expect("through the proxy");
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(
            body,
            format!("via proxy: {} auth: Basic Ym9iOnB3", origin.url("/ok"))
        );
        assert!(
            origin.paths().is_empty(),
            "the origin was contacted directly"
        );

        let r = get(&via, &format!("https://{tls}/"))
            .await
            .0
            .expect("CONNECT tunnel");
        assert_eq!(
            &r.body[..],
            b"HTTP/1.1",
            "TLS went end to end through the tunnel"
        );
        // One absolute-form GET and one CONNECT (logged with an empty path) reached the proxy.
        assert_eq!(proxy.paths(), ["/ok", ""]);

        let bypass = fetcher(|c| {
            c.proxy = format!("http://{}", proxy.addr);
            c.no_proxy = "127.0.0.1".into();
        });
        let r = get(&bypass, &origin.url("/ok")).await.0.expect("direct");
        assert_eq!(&r.body[..], b"<p>ok</p>");

        let bad = FetchConfig {
            proxy: "socks9://nope".into(),
            ..FetchConfig::default()
        };
        let err = Fetcher::new(bad, 1)
            .err()
            .expect("bad proxy URL is refused");
        assert!(format!("{err:#}").contains("fetch.proxy"), "{err:#}");
    });
}

#[test]
fn many_headers_are_kept_and_an_oversized_head_fails_at_once() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(serve("127.0.0.1", |req| async move {
        let mut b = Response::builder().header("content-type", "text/html");
        match req.uri().path() {
            "/many" => {
                for i in 0..150 {
                    b = b.header(format!("x-h{i}"), "v");
                }
            }
            "/huge" => b = b.header("x-big", "a".repeat(110_000)),
            "/robots.txt" => return html(404, ""),
            _ => {}
        }
        b.body(full("<p>ok</p>")).expect("response")
    }));
    rt.block_on(async {
        let f = fetcher(|_| {});
        let (r, _) = get(&f, &site.url("/many")).await;
        let r = r.expect("150 headers are a page, not a broken connection");
        assert!(r.headers.len() > 150);
        let (r, _) = get(&f, &site.url("/huge")).await;
        let e = r.expect_err("110,000 bytes of headers over a 65,536 limit");
        assert_eq!(e.kind(), "header_limit", "{e}");
        assert!(!e.retryable());
    });
    let s = crawl(&site, &["--set", "politeness.max_retries=3"]);
    assert_eq!(s["pages"], 1, "{s}");
    drop(s);
    let st = tempdir("huge-head");
    let state = st.display().to_string();
    let u = site.url("/huge");
    let (status, _, err) = run_bin(
        &["run", "--state", &state, "--no-progress", &u],
        Duration::from_secs(60),
    );
    assert_eq!(status.code(), Some(2), "its one fetch failed: {err}");
    let s: serde_json::Value = summary(&st);
    assert_eq!(s["errors"]["header_limit"], 1, "{s}");
    assert_eq!(s["retries"], 0, "{s}");
    let huge_hits = site.paths().iter().filter(|p| *p == "/huge").count();
    assert_eq!(
        huge_hits, 2,
        "one fetch above, one in the crawl: not retried"
    );
}

#[test]
fn a_tls_failure_on_robots_txt_fails_the_host_at_once_with_its_cause() {
    let rt = sandcrawl_e2e::runtime();
    let addr = rt.block_on(tls_server(vec![b"http/1.1".to_vec()]));
    let st = tempdir("tls-robots");
    let state = st.display().to_string();
    let seeds: Vec<String> = (0..3).map(|i| format!("https://{addr}/p{i}")).collect();
    let mut args = vec!["run", "--state", &state, "--no-progress"];
    args.extend(seeds.iter().map(String::as_str));
    let started = Instant::now();
    let (status, _, err) = run_bin(&args, Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "every fetch failed: {err}");
    // Not 3 retries 30 s apart: a certificate does not get better by waiting.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let s: serde_json::Value = summary(&st);
    assert_eq!(s["errors"]["tls"], 3, "{s}");
    assert_eq!(s["retries"], 0, "{s}");
    let cause = s["error_samples"]["tls"]["cause"].as_str().unwrap_or("");
    assert!(cause.to_ascii_lowercase().contains("certificate"), "{s}");
    let warn = err
        .lines()
        .find(|l| l.contains("WARN") && l.contains("robots.txt failed permanently"));
    assert!(
        warn.is_some_and(|l| l.to_ascii_lowercase().contains("certificate")),
        "{err}"
    );
}

#[test]
fn per_host_settings_override_politeness_for_matching_hosts() {
    let rt = sandcrawl_e2e::runtime();
    let leaves = |ip: &'static str| {
        rt.block_on(serve(ip, |req| async move {
            match req.uri().path() {
                "/robots.txt" => html(404, ""),
                "/" => html(
                    200,
                    (0..20)
                        .map(|i| format!("<a href=/p{i}>x</a>"))
                        .collect::<String>(),
                ),
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    html(200, "leaf")
                }
            }
        }))
    };
    let (fast, slow) = (leaves("127.0.0.1"), leaves("127.0.0.2"));
    let st = tempdir("hosts");
    let cfg = st.join("crawl.toml");
    std::fs::write(&cfg, "[hosts.\"127.0.0.2\"]\nper_host = 1\ndelay_ms = 80\n").expect("write");
    let (state, c) = (
        st.join("state").display().to_string(),
        cfg.display().to_string(),
    );
    let (fu, su) = (fast.url("/"), slow.url("/"));
    let (status, _, err) = run_bin(
        &[
            "run",
            "--config",
            &c,
            "--state",
            &state,
            "--no-progress",
            "--per-host",
            "4",
            &fu,
            &su,
        ],
        Duration::from_secs(120),
    );
    assert!(status.success(), "{err}");
    let max = |s: &Server| s.hits().iter().map(|h| h.concurrent).max().unwrap_or(0);
    assert_eq!(max(&slow), 1, "[hosts.\"127.0.0.2\"] per_host = 1");
    assert!(
        min_gap(&slow) >= Duration::from_millis(75),
        "{:?}",
        min_gap(&slow)
    );
    assert!(
        max(&fast) >= 2,
        "the other host keeps --per-host 4: {}",
        max(&fast)
    );
}
