//! A crawl shared by several sandcrawl processes through Redis (`--frontier redis://…`), each
//! test on a `redis-server` of its own: three workers give the items of a single-process
//! crawl, fetch no URL twice and keep `per_host` across them; a worker killed with -9 loses
//! nothing (its leases expire and go to the others); a Redis killed and restarted from its
//! AOF mid-crawl is waited for; and bad input is one line each.

use sandcrawl_e2e::redis::PrivateRedis;
use sandcrawl_e2e::*;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The demo site under these host names (all on one loopback server).
const HOSTS: usize = 4;
const PER_HOST: usize = 2;

/// What the site saw: every request as (host, path), and per host the requests in flight now
/// and the most at once.
#[derive(Default)]
struct Seen {
    requests: Vec<(String, String)>,
    in_flight: HashMap<String, (usize, usize)>,
}

struct Site {
    server: Server,
    seen: Arc<Mutex<Seen>>,
    /// While set, every request waits (bounded) before it is answered: a test holds the
    /// crawl still until the workers it wants have joined.
    held: Arc<std::sync::atomic::AtomicBool>,
}

impl Site {
    fn start(rt: &tokio::runtime::Runtime, delay: Duration) -> Site {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let held: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let log = Arc::clone(&seen);
        let hold = Arc::clone(&held);
        let server = rt.block_on(serve("127.0.0.1", move |req| {
            let log = Arc::clone(&log);
            let hold = Arc::clone(&hold);
            async move {
                for _ in 0..12_000 {
                    if !hold.load(std::sync::atomic::Ordering::SeqCst) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let host = header(&req, "host", "");
                let path = req.uri().path().to_owned();
                if let Ok(mut s) = log.lock() {
                    s.requests.push((host.clone(), path.clone()));
                    let e = s.in_flight.entry(host.clone()).or_default();
                    e.0 += 1;
                    e.1 = e.1.max(e.0);
                }
                tokio::time::sleep(delay).await;
                let (status, ct, body) = sandcrawl::demo::respond(&path);
                if let Some(e) = log
                    .lock()
                    .ok()
                    .as_mut()
                    .and_then(|s| s.in_flight.get_mut(&host))
                {
                    e.0 = e.0.saturating_sub(1);
                }
                hyper::Response::builder()
                    .status(status)
                    .header("content-type", ct)
                    .body(full(body))
                    .expect("response")
            }
        }));
        Site { server, seen, held }
    }

    fn seeds(&self) -> Vec<String> {
        (0..HOSTS)
            .map(|i| format!("http://h{i}.shared.test:{}/", self.server.addr.port()))
            .collect()
    }

    fn reset(&self) {
        if let Ok(mut s) = self.seen.lock() {
            *s = Seen::default();
        }
    }

    /// Page requests (robots.txt is fetched once per worker and host, by design).
    fn page_requests(&self) -> Vec<(String, String)> {
        let s = self.seen.lock().expect("log");
        s.requests
            .iter()
            .filter(|(_, p)| p != "/robots.txt")
            .cloned()
            .collect()
    }

    fn most_at_once(&self) -> usize {
        let s = self.seen.lock().expect("log");
        s.in_flight.values().map(|(_, m)| *m).max().unwrap_or(0)
    }
}

/// The flags every run shares: the plugins, the host names, the politeness, the seeds.
fn common(site: &Site) -> Vec<String> {
    let mut a = flags();
    a.extend(site.seeds());
    a
}

/// `common` without the seeds.
fn flags() -> Vec<String> {
    flags_with(&["quotes", "products"])
}

/// `flags` with these plugins.
fn flags_with(plugins: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["run".into(), "--no-progress".into()];
    for p in plugins {
        a.extend(["--plugins".into(), plugin(p).display().to_string()]);
    }
    a.extend([
        "--per-host".into(),
        PER_HOST.to_string(),
        "--set".into(),
        "fetch.resolve={ \"*.shared.test\" = \"127.0.0.1\" }".into(),
    ]);
    a
}

fn worker(site: &Site, redis: &str, id: &str, name: &str, state: &Path, extra: &[&str]) -> Child {
    spawn_worker(common(site), redis, id, name, state, extra)
}

fn spawn_worker(
    mut args: Vec<String>,
    redis: &str,
    id: &str,
    name: &str,
    state: &Path,
    extra: &[&str],
) -> Child {
    args.extend(
        [
            "--frontier",
            redis,
            "--crawl-id",
            id,
            "--worker",
            name,
            "--state",
            &state.display().to_string(),
        ]
        .map(String::from),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    Command::new(bin())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn worker")
}

/// `n` workers named `{id}{i}` on state directories of their own, started together.
struct Crew {
    states: Vec<PathBuf>,
    workers: Vec<Child>,
}

impl Crew {
    fn start(site: &Site, redis: &str, id: &str, n: usize, extra: &[&str]) -> Crew {
        let states: Vec<PathBuf> = (0..n).map(|i| tempdir(&format!("redis-{id}{i}"))).collect();
        let workers = states
            .iter()
            .enumerate()
            .map(|(i, st)| worker(site, redis, id, &format!("{id}{i}"), st, extra))
            .collect();
        Crew { states, workers }
    }
}

impl Site {
    /// Waits (bounded) until the crawl has fetched `n` pages.
    fn wait_for_pages(&self, n: usize) {
        assert!(
            db::wait_until(Duration::from_secs(60), || self.page_requests().len() >= n),
            "the crawl did not get going"
        );
    }
}

/// Freezes (SIGSTOP) `child`, the worker `name` of crawl `id`, at a moment it holds leases,
/// and says whether it did. A worker between two requests holds none, and one that started
/// last may not have leased anything yet, so the test cannot just stop it at a fixed time:
/// this stops it, looks at its lease table, and lets it run on a little when it is empty.
/// The pause before looking lets a script call already on its way to Redis land.
fn freeze_holding_leases(child: &Child, redis: &PrivateRedis, id: &str, name: &str) -> bool {
    let pid = child.id() as i32;
    let end = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < end {
        // SAFETY: signalling a child process this test spawned and still owns.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
        std::thread::sleep(Duration::from_millis(100));
        let reply = redis.command(&format!("HLEN sc:{{{id}}}:l:{name}"));
        let held: u64 = reply.trim().trim_start_matches(':').parse().unwrap_or(0);
        if held > 0 {
            return true;
        }
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        std::thread::sleep(Duration::from_millis(30));
    }
    false
}

fn finish(mut child: Child, what: &str) -> String {
    let status = wait_bounded(&mut child, Duration::from_secs(120));
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        if status.is_none() {
            let _ = child.kill();
        }
        let _ = e.read_to_string(&mut err);
    }
    let status = status.unwrap_or_else(|| panic!("{what} did not finish in 120 s: {err}"));
    assert!(status.success(), "{what} failed ({status}): {err}");
    err
}

/// Item ids of every items file given; panics on an id written twice.
fn item_ids(states: &[PathBuf]) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    for st in states {
        let path = st.join("items.jsonl");
        if !path.exists() {
            continue;
        }
        for item in read_items(&path) {
            let id = item["id"].as_str().expect("item id").to_owned();
            assert!(ids.insert(id.clone()), "item {id} written twice: {item}");
        }
    }
    ids
}

/// The items of one process crawling the site alone on the embedded frontier.
fn reference(site: &Site) -> BTreeSet<String> {
    let st = tempdir("redis-ref");
    let mut args = common(site);
    args.extend(["--state".to_string(), st.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _, err) = run_bin(&args, Duration::from_secs(120));
    assert!(status.success(), "reference crawl: {err}");
    let ids = item_ids(std::slice::from_ref(&st));
    assert!(
        ids.len() > 200,
        "the reference crawl found {} items",
        ids.len()
    );
    site.reset();
    ids
}

fn status_json(redis: &str, id: &str) -> serde_json::Value {
    let (st, out, err) = run_bin(
        &["status", "--frontier", redis, "--crawl-id", id, "--json"],
        Duration::from_secs(30),
    );
    assert!(st.success(), "status: {err}");
    serde_json::from_str(&out).expect("status json")
}

#[test]
fn three_workers_crawl_once_what_one_process_crawls() {
    let rt = runtime();
    let site = Site::start(&rt, Duration::from_millis(5));
    let want = reference(&site);
    let redis = PrivateRedis::start("three");
    let states: Vec<PathBuf> = (0..3).map(|i| tempdir(&format!("redis-w{i}"))).collect();
    // The site holds every request until all three have joined, so that the crawl cannot end
    // before the third arrives. The third is started without seeds: it joins with the crawl's
    // (after the first, which creates the crawl).
    site.held.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut workers: Vec<Child> = Vec::new();
    for (i, st) in states.iter().enumerate() {
        let args = if i == 2 { flags() } else { common(&site) };
        if i == 2 {
            // `status` fails on a crawl that does not exist yet.
            let url = redis.url();
            let status = ["status", "--frontier", url.as_str(), "--crawl-id", "three"];
            assert!(
                db::wait_until(Duration::from_secs(60), || {
                    run_bin(&status, Duration::from_secs(30)).0.success()
                }),
                "the first workers did not create the crawl"
            );
        }
        workers.push(spawn_worker(
            args,
            &redis.url(),
            "three",
            &format!("w{i}"),
            st,
            &[],
        ));
    }
    let all_joined = db::wait_until(Duration::from_secs(60), || {
        let s = status_json(&redis.url(), "three");
        s["workers"].as_array().map_or(0, |w| w.len()) == 3
    });
    site.held.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(all_joined, "the three workers did not all join");
    for (i, w) in workers.into_iter().enumerate() {
        finish(w, &format!("worker {i}"));
    }
    assert_eq!(item_ids(&states), want, "the union of the workers' items");
    let pages = site.page_requests();
    let distinct: BTreeSet<&(String, String)> = pages.iter().collect();
    assert_eq!(distinct.len(), pages.len(), "a URL was fetched twice");
    // robots.txt is fetched once per host for the whole crawl, not once per worker.
    let robots = site
        .seen
        .lock()
        .expect("log")
        .requests
        .iter()
        .filter(|(_, p)| p == "/robots.txt")
        .count();
    assert_eq!(robots, HOSTS, "robots.txt fetches over 3 workers");
    assert!(
        site.most_at_once() <= PER_HOST,
        "a host saw {} requests at once over all workers (per_host {PER_HOST})",
        site.most_at_once()
    );
    // Every worker took part, and each summary names the shared crawl.
    let worked = states
        .iter()
        .filter(|st| summary(st)["pages"].as_u64().unwrap_or(0) > 0)
        .count();
    assert!(worked >= 2, "only {worked} of 3 workers fetched anything");
    assert_eq!(summary(&states[0])["shared"]["crawl_id"], "three");

    let s = status_json(&redis.url(), "three");
    assert_eq!(s["finished"], true, "{s}");
    assert_eq!(s["workers"].as_array().map(Vec::len), Some(3), "{s}");
    assert_eq!(s["counters"]["queued"], 0, "{s}");
    let (ok, text, _) = run_bin(
        &["status", "--frontier", &redis.url(), "--crawl-id", "three"],
        Duration::from_secs(30),
    );
    assert!(ok.success());
    assert!(text.contains("crawl three (finished)"), "{text}");
    assert!(
        text.contains("w0") && text.contains("last heartbeat"),
        "{text}"
    );

    // A worker started on the finished crawl says so and exits 0, fetching nothing.
    site.reset();
    let late = tempdir("redis-late");
    let err = finish(
        worker(&site, &redis.url(), "three", "late", &late, &[]),
        "late worker",
    );
    assert!(err.contains("is finished"), "{err}");
    assert!(site.page_requests().is_empty());
}

#[test]
fn a_host_with_a_delay_has_one_request_at_a_time_over_all_workers() {
    // Answers take longer (60 ms) than the delay (20 ms): timed from request starts, a
    // second request would start while the first is still being answered.
    let rt = runtime();
    let site = Site::start(&rt, Duration::from_millis(60));
    let want = reference(&site);
    let redis = PrivateRedis::start("paced");
    // Held until both have joined, so that both take part from the first request on.
    site.held.store(true, std::sync::atomic::Ordering::SeqCst);
    let crew = Crew::start(&site, &redis.url(), "paced", 2, &["--delay-ms", "20"]);
    let url = redis.url();
    let status = [
        "status",
        "--frontier",
        &url,
        "--crawl-id",
        "paced",
        "--json",
    ];
    let joined = db::wait_until(Duration::from_secs(60), || {
        // Until the first worker has created the crawl, `status` fails.
        let (ok, out, _) = run_bin(&status, Duration::from_secs(30));
        let s: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        ok.success() && s["workers"].as_array().map_or(0, |w| w.len()) == 2
    });
    site.held.store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(joined, "the two workers did not both join");
    for (i, w) in crew.workers.into_iter().enumerate() {
        finish(w, &format!("worker {i}"));
    }
    assert_eq!(
        item_ids(&crew.states),
        want,
        "the union of the workers' items"
    );
    assert_eq!(
        site.most_at_once(),
        1,
        "delay_ms: one request at a time per host over all workers (per_host {PER_HOST})"
    );
}

#[test]
fn a_worker_killed_mid_crawl_loses_nothing() {
    let rt = runtime();
    let site = Site::start(&rt, Duration::from_millis(60));
    let want = reference(&site);
    let redis = PrivateRedis::start("kill");
    let ttl = ["--set", "lease_ttl_s=5"];
    let Crew {
        states,
        mut workers,
    } = Crew::start(&site, &redis.url(), "kill", 3, &ttl);
    site.wait_for_pages(40);
    let mut victim = workers.remove(0);
    assert!(
        freeze_holding_leases(&victim, &redis, "kill", "kill0"),
        "the victim never held a lease"
    );
    victim.kill().expect("kill -9");
    let _ = victim.wait();
    for (i, w) in workers.into_iter().enumerate() {
        finish(w, &format!("worker {}", i + 1));
    }
    let s = status_json(&redis.url(), "kill");
    assert_eq!(s["finished"], true, "{s}");
    let expired = s["expired"].as_u64().unwrap_or(0);
    assert!(expired > 0, "the killed worker held no lease? {s}");
    // Restarted, the killed worker finds the crawl finished and cuts its output back to the
    // last page it committed (it may have written the items of a page it was completing).
    let err = finish(
        worker(&site, &redis.url(), "kill", "kill0", &states[0], &ttl),
        "restarted worker",
    );
    assert!(err.contains("is finished"), "{err}");
    assert_eq!(item_ids(&states), want, "the union of the workers' items");
    // Only the URLs the killed worker had leased may have been fetched twice.
    let pages = site.page_requests();
    let distinct: BTreeSet<&(String, String)> = pages.iter().collect();
    let again = pages.len() - distinct.len();
    assert!(
        again as u64 <= expired,
        "{again} URLs fetched twice, but only {expired} leases expired"
    );
}

/// A worker frozen (SIGSTOP) past its leases' expiry: the other worker takes its URLs; thawed,
/// the frozen one finishes its requests but writes none of those pages' items (its leases are
/// gone), so no item is written twice.
#[test]
fn a_stalled_worker_keeps_nothing_of_the_leases_it_lost() {
    let rt = runtime();
    let site = Site::start(&rt, Duration::from_millis(60));
    let want = reference(&site);
    let redis = PrivateRedis::start("stall");
    let Crew { states, workers } =
        Crew::start(&site, &redis.url(), "stall", 2, &["--set", "lease_ttl_s=5"]);
    site.wait_for_pages(30);
    // A second process under a live worker's name is refused.
    let twin = tempdir("redis-twin").display().to_string();
    let line = refused(
        common(&site),
        &[
            "--frontier",
            &redis.url(),
            "--crawl-id",
            "stall",
            "--worker",
            "stall1",
            "--state",
            &twin,
            "--set",
            "lease_ttl_s=5",
        ],
    );
    assert!(line.contains("worker name stall1 is in use"), "{line}");
    let frozen = workers[0].id() as i32;
    assert!(
        freeze_holding_leases(&workers[0], &redis, "stall", "stall0"),
        "the worker to freeze never held a lease"
    );
    std::thread::sleep(Duration::from_secs(8));
    // SAFETY: signalling a child process this test spawned and still owns.
    unsafe { libc::kill(frozen, libc::SIGCONT) };
    for (i, w) in workers.into_iter().enumerate() {
        finish(w, &format!("worker {i}"));
    }
    assert_eq!(item_ids(&states), want, "the union of the workers' items");
    let lost = summary(&states[0])["leases_lost"].as_u64().unwrap_or(0);
    assert!(
        lost > 0,
        "the frozen worker lost no lease: {}",
        summary(&states[0])
    );
    assert!(
        status_json(&redis.url(), "stall")["expired"]
            .as_u64()
            .unwrap_or(0)
            >= lost
    );
}

/// Ctrl+C on one worker: it finishes its requests, gives back the URLs it had leased but not
/// started, and exits 130; the other worker takes them at once (no lease has to expire).
#[test]
fn an_interrupted_worker_gives_its_leases_back() {
    let rt = runtime();
    let site = Site::start(&rt, Duration::from_millis(60));
    let want = reference(&site);
    let redis = PrivateRedis::start("sigint");
    let Crew {
        states,
        mut workers,
    } = Crew::start(&site, &redis.url(), "sigint", 2, &[]);
    site.wait_for_pages(30);
    let mut stopped = workers.remove(0);
    // SAFETY: signalling a child process this test spawned and still owns.
    unsafe { libc::kill(stopped.id() as i32, libc::SIGINT) };
    let status = wait_bounded(&mut stopped, Duration::from_secs(30)).expect("stops on SIGINT");
    assert_eq!(status.code(), Some(130));
    finish(workers.remove(0), "the other worker");
    let s = status_json(&redis.url(), "sigint");
    assert_eq!(s["finished"], true, "{s}");
    // Had the interrupted worker kept its leases, they would have had to expire first.
    assert_eq!(s["expired"], 0, "{s}");
    let w = &s["workers"].as_array().expect("workers")[..];
    assert!(
        w.iter()
            .any(|w| w["name"] == "sigint0" && w["stopped"] == true),
        "{s}"
    );
    assert_eq!(item_ids(&states), want, "the union of the workers' items");
}

#[test]
fn a_redis_restart_mid_crawl_is_waited_for() {
    let rt = runtime();
    let site = Site::start(&rt, Duration::from_millis(40));
    let want = reference(&site);
    let mut redis = PrivateRedis::start("restart");
    let url = redis.url();
    let Crew { states, workers } =
        Crew::start(&site, &url, "restart", 2, &["--set", "lease_ttl_s=5"]);
    site.wait_for_pages(40);
    redis.kill();
    std::thread::sleep(Duration::from_secs(2));
    redis.start_server();
    let logs: Vec<String> = workers
        .into_iter()
        .enumerate()
        .map(|(i, w)| finish(w, &format!("worker {i}")))
        .collect();
    assert!(
        logs.iter().any(|l| l.contains("lost Redis"))
            && logs.iter().any(|l| l.contains("Redis is back")),
        "{logs:?}"
    );
    assert_eq!(item_ids(&states), want, "the union of the workers' items");
    assert_eq!(status_json(&url, "restart")["finished"], true);
}

/// A Redis out of memory (`noeviction`) stops the worker with one line naming the error, and
/// no script runs halfway; with room again, the same worker (its name free after
/// `lease_ttl_s`) resumes and the crawl ends with the reference items, none written twice.
#[test]
fn a_full_redis_stops_the_worker_in_one_line_and_it_resumes() {
    let rt = runtime();
    let site = Site::start(&rt, Duration::from_millis(5));
    let want = reference(&site);
    let redis = PrivateRedis::start("oom");
    let used: u64 = redis
        .command("INFO memory")
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory");
    // Room for the crawl's start, not for all of it.
    assert!(
        redis
            .command(&format!("CONFIG SET maxmemory {}", used + 60_000))
            .starts_with("+OK")
    );
    let st = tempdir("redis-oom");
    let ttl = ["--set", "lease_ttl_s=5"];
    let mut child = worker(&site, &redis.url(), "oom", "full", &st, &ttl);
    let status = wait_bounded(&mut child, Duration::from_secs(120)).expect("worker ends");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut err);
    }
    assert!(!status.success(), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("OOM"), "{err}");
    // No script stopped halfway: the crawl's count of leases is the worker's lease table.
    // Integer (`:N`) and bulk (`$n` then N, or `$-1` for none) replies alike.
    let int = |reply: String| -> i64 {
        let last = reply.lines().last().unwrap_or("");
        last.trim_start_matches(':').parse().unwrap_or(0)
    };
    let leased = int(redis.command("HGET sc:{oom}:counters leased"));
    let held = int(redis.command("HLEN sc:{oom}:l:full"));
    assert_eq!(leased, held, "leases counted {leased} vs held {held}");

    assert!(redis.command("CONFIG SET maxmemory 0").starts_with("+OK"));
    std::thread::sleep(Duration::from_secs(6));
    let log = finish(
        worker(&site, &redis.url(), "oom", "full", &st, &ttl),
        "the worker, resumed",
    );
    assert!(!log.contains("error:"), "{log}");
    assert_eq!(item_ids(std::slice::from_ref(&st)), want);
    assert_eq!(status_json(&redis.url(), "oom")["finished"], true);
}

/// `--listen` on a worker of a shared crawl: its status API answers with the crawl's known
/// and queued counts (from Redis) and its per-host queue sizes, and `/metrics` answers too.
#[test]
fn a_worker_serves_its_status_page() {
    use std::io::{BufRead as _, Read as _, Write as _};
    let rt = runtime();
    let site = Site::start(&rt, Duration::from_millis(60));
    let redis = PrivateRedis::start("listen");
    let st = tempdir("redis-listen");
    let mut child = worker(
        &site,
        &redis.url(),
        "listen",
        "l0",
        &st,
        &["--listen", "127.0.0.1:0", "--log-level", "info"],
    );
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a status page address in the log");
        if let Some(rest) = line.split("status page on http://").nth(1) {
            break rest.split('/').next().unwrap_or_default().to_owned();
        }
    };
    let get = |path: &str| -> (String, String) {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect to the status page");
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        (
            head.lines().next().unwrap_or("").to_owned(),
            body.to_owned(),
        )
    };
    // Bounded: the crawl takes a few seconds; the status is read while it runs.
    let mut seen = None;
    for _ in 0..200 {
        let (line, body) = get("/api/status");
        assert!(line.contains("200"), "{line}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("status json");
        if v["known"].as_u64().unwrap_or(0) > 0
            && !v["hosts"].as_array().is_none_or(|h| h.is_empty())
        {
            seen = Some(v);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let v = seen.expect("a status with known URLs and a hosts table");
    assert!(v["known"].as_u64() >= v["queued"].as_u64(), "{v}");
    let (line, metrics) = get("/metrics");
    assert!(
        line.contains("200") && metrics.contains("sandcrawl_"),
        "{line}"
    );
    let status = wait_bounded(&mut child, Duration::from_secs(120)).expect("worker ends");
    assert!(status.success());
    assert_eq!(status_json(&redis.url(), "listen")["finished"], true);
}

/// Runs `args` + `extra`, which must be refused, and returns its stderr's error line.
fn refused(mut args: Vec<String>, extra: &[&str]) -> String {
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _, err) = run_bin(&args, Duration::from_secs(60));
    assert!(!status.success(), "{args:?} was not refused: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line: {err}");
    errors[0].to_owned()
}

#[test]
fn bad_redis_input_is_one_line_each() {
    let rt = runtime();
    let site = Site::start(&rt, Duration::ZERO);
    let st = tempdir("redis-bad");
    let state = st.display().to_string();
    let check = |extra: &[&str], want: &str| {
        let line = refused(common(&site), &[&["--state", &state], extra].concat());
        assert!(line.contains(want), "{extra:?}: {line}");
        line
    };
    let nobody = format!("redis://127.0.0.1:{}/0", db::free_port());
    check(
        &["--frontier", &nobody, "--crawl-id", "x"],
        "cannot reach Redis at",
    );
    check(&["--frontier", &nobody], "--frontier needs --crawl-id");
    check(&["--crawl-id", "x"], "add --frontier");
    check(
        &["--frontier", "rediss://127.0.0.1:1/0", "--crawl-id", "x"],
        "TLS",
    );
    check(
        &["--frontier", "http://127.0.0.1:1/", "--crawl-id", "x"],
        "not a Redis URL",
    );
    check(&["--frontier", &nobody, "--crawl-id", "a b"], "--crawl-id");
    // A worker without seeds cannot start a crawl that does not exist.
    let empty = PrivateRedis::start("empty");
    let line = refused(
        flags(),
        &[
            "--frontier",
            &empty.url(),
            "--crawl-id",
            "new",
            "--state",
            &state,
        ],
    );
    assert!(
        line.contains("does not exist") && line.contains("seed"),
        "{line}"
    );

    let locked = PrivateRedis::with_password("pw", "right-password");
    let wrong = format!("redis://:wrong@127.0.0.1:{}/0", locked.port);
    let line = check(
        &["--frontier", &wrong, "--crawl-id", "x"],
        "refused the password",
    );
    assert!(
        !line.contains("wrong"),
        "the password is not printed: {line}"
    );
    let none = format!("redis://127.0.0.1:{}/0", locked.port);
    check(
        &["--frontier", &none, "--crawl-id", "x"],
        "needs a password",
    );

    // A crawl id created with one politeness refuses a worker with another, naming it.
    let redis = PrivateRedis::start("cfg");
    let first = worker(
        &site,
        &redis.url(),
        "cfg",
        "one",
        &tempdir("redis-cfg1"),
        &["--max-pages", "3"],
    );
    finish(first, "first worker");
    let other = tempdir("redis-cfg2").display().to_string();
    let joining = [
        "--frontier",
        &redis.url(),
        "--crawl-id",
        "cfg",
        "--state",
        &other,
        "--max-pages",
        "3",
    ];
    let line = refused(
        common(&site),
        &[&joining[..], &["--set", "politeness.delay_ms=250"]].concat(),
    );
    assert!(
        line.contains("politeness.delay_ms (here 250, in the crawl 0)"),
        "{line}"
    );
    // Another plugin set is refused the same way.
    let mut only_quotes = flags_with(&["quotes"]);
    only_quotes.extend(site.seeds());
    let line = refused(only_quotes, &joining);
    assert!(line.contains("different plugins"), "{line}");
}

/// The feed of queued fingerprints (`common.lua`) stays bounded: a new generation every 1 MB,
/// two kept. A reader that fell behind reads every byte of the older generation before moving
/// on, and one two generations behind skips ahead. The script's own functions run on a real
/// Redis (through `redis-cli --eval`) with 70,000 and more fingerprints, which no crawl in
/// this suite reaches.
#[test]
fn the_feed_stays_bounded_and_a_late_reader_misses_nothing_it_can_still_read() {
    const CHECK: &str = r#"
local function fps(n, tag)
  local t = {}
  for i = 1, n do t[#t + 1] = string.format('%08d%8s', i, tag) end
  return t
end
local out = {}
FEED = fps(40000, 'aaaaaaaa'); flush()
local d, g, off = feed_read(-1, 0, 65536)
out[#out + 1] = 'new ' .. #d .. ' ' .. g .. ' ' .. off
FEED = fps(30000, 'bbbbbbbb'); flush()
FEED = fps(10, 'cccccccc'); flush()
out[#out + 1] = 'generation ' .. redis.call('GET', P .. 'feedgen')
local total, calls = 0, 0
repeat
  d, g, off = feed_read(g, off, 65536)
  total, calls = total + #d, calls + 1
until #d == 0 or calls > 100
out[#out + 1] = 'behind ' .. total .. ' ' .. g .. ' ' .. off
FEED = fps(70000, 'dddddddd'); flush()
d, g, off = feed_read(0, 100, 65536)
out[#out + 1] = 'stale ' .. #d .. ' ' .. g .. ' ' .. off
out[#out + 1] = 'kept ' .. redis.call('EXISTS', P .. 'feed:0', P .. 'feed:1', P .. 'feed:2')
return out
"#;
    let redis = PrivateRedis::start("feed");
    let file = tempdir("redis-feed").join("feed.lua");
    let script = format!(
        "{}\n{CHECK}",
        include_str!("../host/src/frontier/redis/common.lua")
    );
    std::fs::write(&file, script).expect("write the script");
    let out = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "--eval"])
        .arg(&file)
        .args([",", "sc:{feed}:"])
        .output()
        .expect("redis-cli runs (Debian: apt-get install redis-tools)");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    // 40,000 + 30,000 fingerprints (1,120,000 bytes) fill generation 0 past 1 MB; the ten
    // after them open generation 1. A reader 64 KB into generation 0 gets the rest of it, then
    // generation 1. 70,000 more fill generation 1, so generation 0 is deleted and a reader
    // still in it starts again at the (empty) generation 2.
    assert_eq!(
        lines,
        [
            "new 65536 0 65536",
            "generation 1",
            &format!("behind {} 1 160", 1_120_000 - 65_536 + 160),
            "stale 0 2 0",
            "kept 1",
        ],
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
