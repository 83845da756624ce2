//! Shared helpers for the end-to-end tests: where the built binary and plugins are, and a
//! small hyper server on 127.0.0.1 with a request log. Tests never talk to anything but
//! loopback, and every wait here is bounded.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod db;
pub mod redis;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

/// The workspace root (this crate lives in `tests/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The `sandcrawl` binary built by `./dev test` (release profile).
pub fn bin() -> PathBuf {
    let p = target_dir().join("release").join("sandcrawl");
    assert!(
        p.is_file(),
        "{} is missing: run the suite with ./dev test, which builds it first",
        p.display()
    );
    // `cargo test` rebuilds the library these tests link, not the binary they run: refuse a
    // binary older than its sources rather than test stale code.
    let built = std::fs::metadata(&p).and_then(|m| m.modified()).ok();
    if let (Some(built), Some(src)) = (built, newest_mtime(&root().join("host"))) {
        assert!(
            built >= src,
            "{} is older than host/ sources: run ./dev test (or cargo build --release -p sandcrawl) first",
            p.display()
        );
    }
    p
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let path = e.path();
        let t = if path.is_dir() {
            newest_mtime(&path)
        } else if path.extension().is_some_and(|x| x == "rs" || x == "toml") {
            e.metadata().and_then(|m| m.modified()).ok()
        } else {
            None
        };
        newest = newest.max(t);
    }
    newest
}

/// A plugin `./dev test` built into `target/DIR` (`plugins-wit-0.1` holds the example
/// plugins built against the frozen WIT 0.1).
pub fn plugin_in(dir: &str, name: &str) -> PathBuf {
    let p = target_dir().join(dir).join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run the suite with ./dev test, which builds the plugins first",
        p.display()
    );
    p
}

/// A plugin built by `./dev test`: example plugins in target/plugins, test plugins in
/// target/test-plugins.
pub fn plugin(name: &str) -> PathBuf {
    for dir in ["plugins", "test-plugins"] {
        let p = target_dir().join(dir).join(format!("{name}.wasm"));
        if p.is_file() {
            return p;
        }
    }
    panic!(
        "plugin {name}.wasm is missing: run the suite with ./dev test, which builds the plugins first"
    );
}

/// A request header as text, or `default` when it is absent or not text.
pub fn header<B>(req: &Request<B>, name: &str, default: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(default)
        .to_owned()
}

/// A two-thread tokio runtime for the test servers (the crawler under test is a separate
/// process or uses its own).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A fresh, unique temporary directory.
pub fn tempdir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("sandcrawl-e2e-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
}

pub fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn html(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/html; charset=utf-8")
        .body(full(body))
        .expect("valid response")
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub at: Instant,
    /// The server's count of requests in flight when this one arrived (itself included).
    pub concurrent: usize,
    pub user_agent: String,
}

/// A test server; stops when dropped.
pub struct Server {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Hit>>>,
    conns: Arc<Conns>,
    task: tokio::task::JoinHandle<()>,
}

/// Connections as the server sees them: accepted in all, open now, most open at once.
#[derive(Default)]
struct Conns {
    accepted: std::sync::atomic::AtomicUsize,
    open: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn paths(&self) -> Vec<String> {
        self.hits().into_iter().map(|h| h.path).collect()
    }

    /// Connections accepted so far.
    pub fn connections_accepted(&self) -> usize {
        self.conns
            .accepted
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Connections open now (a connection counts until the client closes it).
    pub fn connections_open(&self) -> usize {
        self.conns.open.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The most connections that were open at once.
    pub fn connections_most(&self) -> usize {
        self.conns.most.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Serves `handler` on `ip:0` (HTTP/1.1 and h2c) and logs every request.
pub async fn serve<F, Fut>(ip: &str, handler: F) -> Server
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .expect("bind test server");
    let addr = listener.local_addr().expect("local addr");
    let log: Arc<Mutex<Vec<Hit>>> = Arc::default();
    let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handler = Arc::new(handler);
    let task_log = Arc::clone(&log);
    let conns: Arc<Conns> = Arc::default();
    let task_conns = Arc::clone(&conns);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (log, handler, active, conns) = (
                Arc::clone(&task_log),
                Arc::clone(&handler),
                Arc::clone(&active),
                Arc::clone(&task_conns),
            );
            use std::sync::atomic::Ordering::SeqCst;
            conns.accepted.fetch_add(1, SeqCst);
            let now = conns.open.fetch_add(1, SeqCst) + 1;
            conns.most.fetch_max(now, SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let (log, handler, active) =
                        (Arc::clone(&log), Arc::clone(&handler), Arc::clone(&active));
                    async move {
                        let now = active.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        let path = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        let user_agent = header(&req, "user-agent", "");
                        if let Ok(mut l) = log.lock() {
                            l.push(Hit {
                                path,
                                at: Instant::now(),
                                concurrent: now,
                                user_agent,
                            });
                        }
                        let resp = handler(req).await;
                        active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
                conns.open.fetch_sub(1, SeqCst);
            });
        }
    });
    Server {
        addr,
        log,
        conns,
        task,
    }
}

/// Serves the bundled demo site, each response delayed by `delay`.
pub async fn demo_site(ip: &str, delay: Duration) -> Server {
    serve(ip, move |req| async move {
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (status, ct, body) = sandcrawl::demo::respond(req.uri().path());
        Response::builder()
            .status(status)
            .header("content-type", ct)
            .body(full(body))
            .expect("valid response")
    })
    .await
}

/// Reads a crawl's `STATE/summary.json`.
pub fn summary(state: &Path) -> serde_json::Value {
    let raw = std::fs::read(state.join("summary.json")).expect("summary.json");
    serde_json::from_slice(&raw).expect("summary json")
}

/// Reads a JSONL items file.
pub fn read_items(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSONL line {l:?}: {e}")))
        .collect()
}

/// Starts the sandcrawl binary with its stdout and stderr piped, logging at info.
fn spawn_bin(args: &[&str]) -> std::process::Child {
    spawn(std::process::Command::new(bin()), args)
}

fn spawn(mut cmd: std::process::Command, args: &[&str]) -> std::process::Child {
    cmd.args(args)
        .env("SANDCRAWL_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn sandcrawl")
}

/// Runs the sandcrawl binary to completion (bounded by `timeout`), returning (status, stdout, stderr).
pub fn run_bin(args: &[&str], timeout: Duration) -> (std::process::ExitStatus, String, String) {
    finish(spawn_bin(args), args, timeout)
}

/// `run_bin` with the open-file limit (soft and hard) set to `open_files`, through util-linux's
/// `prlimit`, as a machine or container with a low limit runs it.
pub fn run_bin_with_open_files(
    open_files: u64,
    args: &[&str],
    timeout: Duration,
) -> (std::process::ExitStatus, String, String) {
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg(format!("--nofile={open_files}:{open_files}"))
        .arg("--")
        .arg(bin());
    finish(spawn(cmd, args), args, timeout)
}

fn finish(
    mut child: std::process::Child,
    args: &[&str],
    timeout: Duration,
) -> (std::process::ExitStatus, String, String) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(_status) = child.try_wait().expect("wait") {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "sandcrawl {args:?} did not finish within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What a finished child process printed and how much memory it peaked at.
pub struct Measured {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident set of that one process, in bytes (its own rusage, not the test's).
    pub max_rss: u64,
    pub elapsed: Duration,
}

/// Runs the sandcrawl binary to completion (bounded by `timeout`) and measures its peak RSS
/// with `wait4`, which reports that child alone even while other tests run children too.
// The child is reaped by `wait4` (which std's `Child::wait` cannot give us), not by `wait`.
#[allow(clippy::zombie_processes)]
pub fn run_measured(args: &[&str], timeout: Duration) -> Measured {
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let started = Instant::now();
    let mut child = spawn_bin(args);
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let pid = child.id() as libc::pid_t;
    let deadline = started + timeout;
    let mut raw_status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own child, not yet reaped (std's Child is never waited on).
        let r = unsafe { libc::wait4(pid, &mut raw_status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        assert!(r >= 0, "wait4 failed");
        if Instant::now() > deadline {
            let _ = child.kill();
            // SAFETY: as above.
            unsafe { libc::wait4(pid, &mut raw_status, 0, &mut usage) };
            panic!(
                "sandcrawl {args:?} did not finish within {timeout:?}; stderr:\n{}",
                err.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Measured {
        status: std::process::ExitStatus::from_raw(raw_status),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        max_rss: u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024,
        elapsed: started.elapsed(),
    }
}

/// SHA-256 of `bytes`, lowercase hex (how sandcrawl names a plugin build).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Waits for `child` at most `limit`; `None` if it is still running.
pub fn wait_bounded(
    child: &mut std::process::Child,
    limit: Duration,
) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// A tiny deterministic generator, seeded from the clock and printed, so a failing
/// interleaving can be replayed by setting SANDCRAWL_CRASH_SEED.
pub struct Lcg(u64);

impl Lcg {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        let seed = std::env::var("SANDCRAWL_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(7)
            });
        eprintln!("crash test seed: {seed} (set SANDCRAWL_CRASH_SEED to replay)");
        Lcg(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n.max(1)
    }
}

/// Starts a crawl with `spawn` and kills it with -9 at a random moment, again and again, until
/// it finishes on its own or has been killed `max_kills` times (then one last run, bounded by
/// `limit`, finishes it). Returns how many times it was killed.
pub fn kill_and_resume(
    spawn: &dyn Fn() -> std::process::Child,
    max_kills: u32,
    limit: Duration,
) -> u32 {
    let mut rng = Lcg::new();
    let mut kills = 0;
    loop {
        let mut child = spawn();
        let at = Duration::from_millis(150 + rng.below(700));
        if let Some(status) = wait_bounded(&mut child, at) {
            assert!(status.success(), "crawl failed on resume");
            return kills;
        }
        child.kill().expect("kill -9");
        let _ = child.wait();
        kills += 1;
        if kills >= max_kills {
            let status = wait_bounded(&mut spawn(), limit).expect("final run finishes");
            assert!(status.success());
            return kills;
        }
    }
}
