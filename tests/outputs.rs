//! Items into real PostgreSQL and MariaDB, several outputs at once: every item exactly once
//! (also across kill -9 and a database outage), per-kind tables with typed columns, and one
//! clear line, before anything is fetched, for every bad database URL. Each test works in a
//! database of its own; the tests that stop a server or need password authentication start a
//! private server (`sandcrawl_e2e::db::PrivatePg`, `PrivateMariadb`).

use sandcrawl_e2e::db::{Engine, PrivateMariadb, PrivatePg, TempDb, free_port, wait_until};
use sandcrawl_e2e::{
    Server, demo_site, plugin, read_items, run_bin, summary, tempdir, wait_bounded,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(180);

fn crawl_args(state: &Path, seeds: &[String], extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "run".into(),
        "--plugins".into(),
        plugin("quotes").display().to_string(),
        "--plugins".into(),
        plugin("products").display().to_string(),
        "--state".into(),
        state.display().to_string(),
        "--no-progress".into(),
    ];
    a.extend(seeds.iter().cloned());
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn crawl(state: &Path, seeds: &[String], extra: &[&str]) -> (bool, String) {
    let args = crawl_args(state, seeds, extra);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (status, _out, err) = run_bin(&refs, LIMIT);
    (status.success(), err)
}

/// Starts a crawl with its log going to `log` (a file, so a long outage cannot fill a pipe).
fn spawn(state: &Path, seeds: &[String], extra: &[&str], log: &Path) -> Child {
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("log file");
    Command::new(sandcrawl_e2e::bin())
        .args(crawl_args(state, seeds, extra))
        .env("SANDCRAWL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .expect("spawn")
}

/// id → (kind, fields) of a JSONL output.
fn jsonl(path: &Path) -> BTreeMap<String, (String, serde_json::Value)> {
    let items = read_items(path);
    let map: BTreeMap<_, _> = items
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap_or_default().to_owned(),
                (
                    i["kind"].as_str().unwrap_or_default().to_owned(),
                    i["fields"].clone(),
                ),
            )
        })
        .collect();
    assert_eq!(
        map.len(),
        items.len(),
        "duplicate ids in {}",
        path.display()
    );
    map
}

/// id → (kind, fields) of a database's default table, asserting no id is there twice.
fn rows(db: &TempDb) -> BTreeMap<String, (String, serde_json::Value)> {
    let (n, distinct) = counts(db, "sandcrawl_items");
    assert_eq!(n, distinct, "{:?}: an id is in the table twice", db.engine);
    let sql = match db.engine {
        Engine::Postgres => "SELECT id, kind, fields::text FROM sandcrawl_items",
        Engine::Mariadb => "SELECT id, kind, fields FROM sandcrawl_items",
    };
    db.query(sql)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.splitn(3, '\t');
            let id = parts.next().unwrap_or_default().to_owned();
            let kind = parts.next().unwrap_or_default().to_owned();
            let fields = serde_json::from_str(parts.next().unwrap_or("null"))
                .unwrap_or_else(|e| panic!("{:?}: fields of {id} are not JSON: {e}", db.engine));
            (id, (kind, fields))
        })
        .collect()
}

fn counts(db: &TempDb, table: &str) -> (u64, u64) {
    (
        db.count(&format!("SELECT count(*) FROM {table}")),
        db.count(&format!("SELECT count(DISTINCT id) FROM {table}")),
    )
}

fn expected_total(hosts: usize) -> usize {
    sandcrawl::demo::expected_items()
        .iter()
        .map(|(_, n)| n * hosts)
        .sum()
}

#[test]
fn one_crawl_writes_every_item_once_to_a_file_postgres_and_mariadb() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(demo_site("127.0.0.1", Duration::ZERO));
    let pg = TempDb::new(Engine::Postgres, "all");
    let my = TempDb::new(Engine::Mariadb, "all");
    let st = tempdir("out-all");
    let file = st.join("out").join("items.jsonl");
    let (f, p, m) = (file.display().to_string(), pg.url(), my.url());
    let outs = ["--out", &f, "--out", &p, "--out", &m];
    let (ok, err) = crawl(&st, &[site.url("/")], &outs);
    assert!(ok, "{err}");
    let want = jsonl(&file);
    assert_eq!(want.len(), expected_total(1));
    for db in [&pg, &my] {
        let got = rows(db);
        assert_eq!(got.len(), want.len(), "{:?}", db.engine);
        // The same items: ids, kinds and field values (JSONB orders keys its own way, so
        // compare values, not text).
        assert_eq!(got, want, "{:?}", db.engine);
        let by_plugin =
            db.count("SELECT count(*) FROM sandcrawl_items WHERE plugin_name = 'quotes'");
        assert_eq!(by_plugin, 31, "{:?}", db.engine);
        let dated =
            db.count("SELECT count(*) FROM sandcrawl_items WHERE fetched_at > '2020-01-01'");
        assert_eq!(dated as usize, want.len(), "{:?}", db.engine);
    }
    let s = summary(&st);
    let shown = s["output"].as_str().unwrap_or_default();
    assert!(
        shown.contains(&p) && shown.contains(&m) && shown.contains(&f),
        "{shown}"
    );
    assert_eq!(s["items"], want.len());

    // Running again on the finished crawl writes nothing anywhere.
    let (ok, err) = crawl(&st, &[site.url("/")], &outs);
    assert!(ok, "{err}");
    assert_eq!(jsonl(&file).len(), want.len());
    assert_eq!(counts(&pg, "sandcrawl_items").0 as usize, want.len());
    assert_eq!(counts(&my, "sandcrawl_items").0 as usize, want.len());
}

/// kill -9 at random points with a PostgreSQL, a MariaDB and a JSONL output at once: each
/// ends with exactly the items of an uninterrupted crawl, none twice.
#[test]
fn kill_9_with_database_outputs_loses_and_duplicates_nothing() {
    let rt = sandcrawl_e2e::runtime();
    let a = rt.block_on(demo_site("127.0.0.1", Duration::from_millis(40)));
    let b = rt.block_on(demo_site("127.0.0.2", Duration::from_millis(40)));
    let seeds = vec![a.url("/"), b.url("/")];
    let reference = tempdir("out-ref");
    let (ok, err) = crawl(&reference, &seeds, &["--per-host", "2"]);
    assert!(ok, "{err}");
    let want: BTreeSet<String> = jsonl(&reference.join("items.jsonl")).into_keys().collect();
    assert_eq!(want.len(), expected_total(2));

    let pg = TempDb::new(Engine::Postgres, "kill");
    let my = TempDb::new(Engine::Mariadb, "kill");
    let st = tempdir("out-kill");
    let file = st.join("items.jsonl").display().to_string();
    let (p, m) = (pg.url(), my.url());
    let args = [
        "--per-host",
        "2",
        "--set",
        "checkpoint_interval_s=1",
        "--out",
        &file,
        "--out",
        &p,
        "--out",
        &m,
    ];
    let log = st.with_extension("log");
    let kills = sandcrawl_e2e::kill_and_resume(&|| spawn(&st, &seeds, &args, &log), 5, LIMIT);
    eprintln!("killed {kills} times");
    assert!(kills >= 1, "the crawl finished before any kill");
    for db in [&pg, &my] {
        let (n, distinct) = counts(db, "sandcrawl_items");
        assert_eq!(
            n, distinct,
            "{:?}: duplicates after {kills} kills",
            db.engine
        );
        let got: BTreeSet<String> = rows(db).into_keys().collect();
        assert_eq!(got, want, "{:?} after {kills} kills", db.engine);
    }
    let got: BTreeSet<String> = jsonl(Path::new(&file)).into_keys().collect();
    assert_eq!(got, want, "JSONL beside the databases, after {kills} kills");
}

#[test]
fn per_kind_tables_get_typed_columns_new_fields_and_counted_clashes() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(demo_site("127.0.0.1", Duration::ZERO));
    let pg = TempDb::new(Engine::Postgres, "kinds");
    let my = TempDb::new(Engine::Mariadb, "kinds");
    // A quote table from an earlier crawl that knew only `text`: the crawl adds the rest.
    pg.query(
        "CREATE TABLE t_quote (id TEXT PRIMARY KEY, url TEXT NOT NULL, fetched_at TIMESTAMPTZ NOT NULL, \
         plugin_name TEXT NOT NULL, plugin_version TEXT NOT NULL, plugin_sha256 TEXT NOT NULL, text TEXT)",
    );
    let st = tempdir("out-kinds");
    let file = st.join("items.jsonl").display().to_string();
    let (p, m) = (pg.url(), my.url());
    let args = [
        "--out",
        &file,
        "--out",
        &p,
        "--out",
        &m,
        "--set",
        "output.sql.per_kind_tables=true",
        "--set",
        "output.sql.table_prefix=\"t_\"",
        // Authors' `born` is text; saying it is a number makes every author a type clash.
        "--set",
        "output.sql.columns.author.born=\"bigint\"",
    ];
    let (ok, err) = crawl(&st, &[site.url("/")], &args);
    assert!(ok, "{err}");
    let want = jsonl(Path::new(&file));
    let per_kind = |kind: &str| want.values().filter(|(k, _)| k == kind).count() as u64;

    for db in [&pg, &my] {
        for kind in ["quote", "product", "file"] {
            let (n, distinct) = counts(db, &format!("t_{kind}"));
            assert_eq!(
                (n, distinct),
                (per_kind(kind), per_kind(kind)),
                "{:?} {kind}",
                db.engine
            );
        }
        assert_eq!(
            counts(db, "t_author").0,
            0,
            "{:?}: authors clash",
            db.engine
        );
        let schema_filter = match db.engine {
            Engine::Postgres => "table_schema = current_schema()",
            Engine::Mariadb => "table_schema = DATABASE()",
        };
        let cols = db.query(&format!(
            "SELECT column_name, data_type FROM information_schema.columns \
             WHERE {schema_filter} AND table_name = 't_product' ORDER BY ordinal_position"
        ));
        let cols: Vec<(String, String)> = cols
            .lines()
            .map(|l| {
                let (a, b) = l.split_once('\t').unwrap_or((l, ""));
                (a.to_owned(), b.to_owned())
            })
            .collect();
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        // The fixed columns, then the fields in the order the plugin wrote them.
        assert_eq!(
            names[..10],
            [
                "id",
                "url",
                "fetched_at",
                "plugin_name",
                "plugin_version",
                "plugin_sha256",
                "title",
                "price",
                "currency",
                "availability"
            ],
            "{:?}",
            db.engine
        );
        let ty = |n: &str| cols.iter().find(|(c, _)| c == n).map(|(_, t)| t.clone());
        let (dbl, boolean) = match db.engine {
            Engine::Postgres => ("double precision", "boolean"),
            Engine::Mariadb => ("double", "tinyint"),
        };
        assert_eq!(ty("price").as_deref(), Some(dbl), "{:?}", db.engine);
        assert_eq!(ty("in_stock").as_deref(), Some(boolean), "{:?}", db.engine);
        assert_eq!(ty("stock").as_deref(), Some("bigint"), "{:?}", db.engine);
        // The typed values are the plugin's.
        let (id, (_, fields)) = want
            .iter()
            .find(|(_, (k, f))| k == "product" && f["stock"].is_u64())
            .expect("a product");
        let row = db.query(&format!(
            "SELECT title, price, stock FROM t_product WHERE id = '{id}'"
        ));
        let parts: Vec<&str> = row.split('\t').collect();
        assert_eq!(parts[0], fields["title"].as_str().unwrap_or_default());
        assert_eq!(parts[1].parse::<f64>().ok(), fields["price"].as_f64());
        assert_eq!(parts[2], fields["stock"].to_string());
    }
    // The quote table kept its `text` and got the new fields as nullable columns.
    let quote_cols = pg.query(
        "SELECT column_name || ' ' || data_type || ' ' || is_nullable FROM information_schema.columns \
         WHERE table_name = 't_quote' AND column_name IN ('author', 'tags') ORDER BY column_name",
    );
    assert_eq!(quote_cols, "author text YES\ntags jsonb YES");
    let tagged = pg.count("SELECT count(*) FROM t_quote WHERE jsonb_typeof(tags) = 'array'");
    assert_eq!(tagged, per_kind("quote"));

    let s = summary(&st);
    let rejected = &s["output_rejected"];
    assert_eq!(
        rejected[format!("sql_type_clash in {p}")],
        per_kind("author"),
        "{s}"
    );
    assert_eq!(
        rejected[format!("sql_type_clash in {m}")],
        per_kind("author"),
        "{s}"
    );
    // One line per output says which field clashed and how to fix it.
    let clash_lines = err.lines().filter(|l| l.contains("field \"born\"")).count();
    assert_eq!(clash_lines, 2, "{err}");
    assert!(err.contains("born = \"json\""), "{err}");
}

/// A value its column cannot hold (here a title longer than a table made by hand allows) is
/// the server refusing that item: it alone is left out, counted and logged once per output;
/// the other items of the same batch are written and the crawl goes on.
#[test]
fn values_a_column_cannot_hold_refuse_only_their_items() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(demo_site("127.0.0.1", Duration::ZERO));
    let pg = TempDb::new(Engine::Postgres, "narrow");
    let my = TempDb::new(Engine::Mariadb, "narrow");
    pg.query(
        "CREATE TABLE t_product (id TEXT PRIMARY KEY, url TEXT NOT NULL, fetched_at TIMESTAMPTZ NOT NULL, \
         plugin_name TEXT NOT NULL, plugin_version TEXT NOT NULL, plugin_sha256 TEXT NOT NULL, title VARCHAR(13))",
    );
    my.query(
        "CREATE TABLE t_product (id VARCHAR(64) PRIMARY KEY, url TEXT NOT NULL, fetched_at DATETIME(3) NOT NULL, \
         plugin_name TEXT NOT NULL, plugin_version TEXT NOT NULL, plugin_sha256 VARCHAR(64) NOT NULL, title VARCHAR(13))",
    );
    let st = tempdir("out-narrow");
    let file = st.join("items.jsonl").display().to_string();
    let (p, m) = (pg.url(), my.url());
    let args = [
        "--out",
        &file,
        "--out",
        &p,
        "--out",
        &m,
        "--set",
        "output.sql.per_kind_tables=true",
        "--set",
        "output.sql.table_prefix=\"t_\"",
    ];
    let (ok, err) = crawl(&st, &[site.url("/")], &args);
    assert!(ok, "{err}");
    let want = jsonl(Path::new(&file));
    let titles: Vec<usize> = want
        .values()
        .filter(|(k, _)| k == "product")
        .map(|(_, f)| f["title"].as_str().unwrap_or_default().chars().count())
        .collect();
    let fit = titles.iter().filter(|n| **n <= 13).count() as u64;
    let too_long = titles.len() as u64 - fit;
    assert!(
        fit > 0 && too_long > 0,
        "the demo's titles should be of both kinds: {titles:?}"
    );
    let s = summary(&st);
    for (db, url) in [(&pg, &p), (&my, &m)] {
        let (n, distinct) = counts(db, "t_product");
        assert_eq!((n, distinct), (fit, fit), "{:?}", db.engine);
        let longest = db.count("SELECT max(char_length(title)) FROM t_product");
        assert!(
            longest <= 13,
            "{:?}: a title was cut instead of refused",
            db.engine
        );
        assert_eq!(
            s["output_rejected"][format!("sql_item_refused in {url}")],
            too_long,
            "{s}"
        );
        // Every other kind is complete.
        let quotes = want.values().filter(|(k, _)| k == "quote").count() as u64;
        assert_eq!(counts(db, "t_quote").0, quotes, "{:?}", db.engine);
    }
    assert_eq!(err.matches("the database refused item").count(), 2, "{err}");
}

/// A table dropped under a running crawl is not something reconnecting fixes: the crawl stops
/// with one line naming the output, and the same command, run again, resumes and finishes.
#[test]
fn a_table_dropped_mid_crawl_stops_the_crawl_in_one_line_and_resume_finishes() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(demo_site("127.0.0.1", Duration::from_millis(60)));
    let pg = TempDb::new(Engine::Postgres, "dropped");
    let st = tempdir("out-dropped");
    let (state, log) = (st.join("state"), st.join("crawl.log"));
    let url = pg.url();
    let args = ["--per-host", "2", "--out", &url];
    let mut child = spawn(&state, &[site.url("/")], &args, &log);
    let count = || {
        std::panic::catch_unwind(|| pg.count("SELECT count(*) FROM sandcrawl_items")).unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(60), || count() > 0),
        "no row arrived"
    );
    pg.query("DROP TABLE sandcrawl_items");
    let status = wait_bounded(&mut child, Duration::from_secs(60)).expect("the crawl stops");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(1), "{text}");
    let errors: Vec<&str> = text.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(
        errors[0].contains(&url)
            && errors[0].contains("does not exist")
            && errors[0].contains("run again"),
        "{text}"
    );
    // Run again: the table is made anew, the pages whose items were not written are fetched
    // again, and the crawl ends; no id twice.
    let (ok, err) = crawl(&state, &[site.url("/")], &args);
    assert!(ok, "{err}");
    let (n, distinct) = counts(&pg, "sandcrawl_items");
    assert!(n > 0 && n == distinct, "{n} rows, {distinct} ids");
}

/// Every bad database output is refused in one line naming the URL (password masked) and
/// the fix, before any request and before the state directory exists.
#[test]
fn bad_database_outputs_are_refused_before_anything_is_fetched() {
    let rt = sandcrawl_e2e::runtime();
    let site = rt.block_on(demo_site("127.0.0.1", Duration::ZERO));
    let pg = TempDb::new(Engine::Postgres, "bad");
    let my = TempDb::new(Engine::Mariadb, "bad");
    let tag = format!("{}", std::process::id());

    // Read-only users: PostgreSQL's may connect and read, MariaDB's may only SELECT.
    let pg_ro = format!("sc_ro_{tag}");
    pg.admin(&format!("DROP ROLE IF EXISTS {pg_ro}"));
    pg.admin(&format!("CREATE ROLE {pg_ro} LOGIN"));
    let my_ro = format!("sc_ro_{tag}");
    my.admin(&format!(
        "DROP USER IF EXISTS '{my_ro}'@'%'; CREATE USER '{my_ro}'@'%' IDENTIFIED BY 'rightpw'; \
         GRANT SELECT ON {}.* TO '{my_ro}'@'%'",
        my.name
    ));
    // A table named like sandcrawl's that holds something else.
    let other = TempDb::new(Engine::Postgres, "other");
    other.query("CREATE TABLE sandcrawl_items (id INT PRIMARY KEY, name TEXT)");

    let port = free_port();
    let cases: Vec<(String, &str)> = vec![
        (
            format!("postgres://postgres@127.0.0.1:5432/sc_no_such_db_{tag}"),
            "create the database",
        ),
        (
            format!("postgres://postgres:pw@127.0.0.1:{port}/test"),
            "check that the server is running",
        ),
        (pg.url_as(&pg_ro, None), "grant it CREATE and INSERT"),
        (
            format!("mysql://root@127.0.0.1:3306/sc_no_such_db_{tag}"),
            "create the database",
        ),
        (
            my.url_as(&my_ro, Some("wrongpw")),
            "check the user and password",
        ),
        (
            my.url_as(&my_ro, Some("rightpw")),
            "grant it CREATE and INSERT",
        ),
        (other.url(), "does not fit sandcrawl's items"),
        ("redis://127.0.0.1:6379/0".into(), "unknown scheme"),
        (
            "postgres://postgres@127.0.0.1:5432".into(),
            "no database name",
        ),
    ];
    for (url, fix) in &cases {
        let st = tempdir("out-bad").join("state");
        let (ok, err) = crawl(&st, &[site.url("/")], &["--out", url]);
        assert!(!ok, "{url} was accepted");
        let lines: Vec<&str> = err.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "{url}: {err}");
        assert!(lines[0].contains(fix), "{url}: {err}");
        assert!(
            !err.contains("wrongpw") && !err.contains(":pw@"),
            "password shown: {err}"
        );
        assert!(!st.exists(), "{url}: the state directory was created");
    }
    assert_eq!(site.paths().len(), 0, "a bad output let the crawl fetch");
    // The misfit table was left as it was.
    assert_eq!(
        other.query(
            "SELECT string_agg(column_name, ',' ORDER BY ordinal_position) \
             FROM information_schema.columns WHERE table_name = 'sandcrawl_items'"
        ),
        "id,name"
    );
    my.admin(&format!("DROP USER IF EXISTS '{my_ro}'@'%'"));
    pg.admin(&format!("DROP ROLE IF EXISTS {pg_ro}"));
}

/// A private server a test may stop and start.
trait Stoppable {
    fn stop(&self);
    fn start(&self);
}

impl Stoppable for PrivatePg {
    fn stop(&self) {
        self.stop_server();
    }
    fn start(&self) {
        self.start_server();
    }
}

impl Stoppable for PrivateMariadb {
    fn stop(&self) {
        self.stop_server();
    }
    fn start(&self) {
        self.start_server();
    }
}

/// The database goes away mid-crawl: fetching pauses (bounded memory), one line says so, the
/// crawl goes on when the server is back, and every item is there exactly once.
fn outage_pauses_fetching_and_loses_nothing(server: &dyn Stoppable, db: &TempDb, url: &str) {
    let rt = sandcrawl_e2e::runtime();
    let site: Server = rt.block_on(demo_site("127.0.0.1", Duration::from_millis(60)));
    let st = tempdir("out-outage");
    let file = st.join("items.jsonl").display().to_string();
    let log = st.join("crawl.log");
    let state = st.join("state");
    let args = [
        "--per-host",
        "2",
        "--out",
        url,
        "--out",
        &file,
        "--set",
        "output.sql.max_backlog_items=5",
    ];
    let mut child = spawn(&state, &[site.url("/")], &args, &log);
    let count = || {
        std::panic::catch_unwind(|| db.count("SELECT count(*) FROM sandcrawl_items")).unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(60), || count() > 0),
        "no row arrived"
    );
    server.stop();
    // With the server away the backlog fills and fetching stops: after a while, the site
    // sees no more requests (the pages in flight at most).
    std::thread::sleep(Duration::from_secs(3));
    let paused_at = site.paths().len();
    std::thread::sleep(Duration::from_secs(2));
    let later = site.paths().len();
    assert!(
        later - paused_at <= 2,
        "fetching went on while the database was away: {paused_at} → {later} requests"
    );
    assert!(matches!(child.try_wait(), Ok(None)), "the crawl gave up");
    server.start();
    let status =
        wait_bounded(&mut child, LIMIT).expect("the crawl finishes once the server is back");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(status.success(), "{text}");
    assert_eq!(text.matches("database unreachable").count(), 1, "{text}");
    assert_eq!(text.matches("database is back").count(), 1, "{text}");
    assert!(text.contains("fetching paused"), "{text}");

    let want: BTreeSet<String> = jsonl(Path::new(&file)).into_keys().collect();
    assert_eq!(want.len(), expected_total(1));
    let (n, distinct) = counts(db, "sandcrawl_items");
    assert_eq!((n, distinct), (want.len() as u64, want.len() as u64));
    let got: BTreeSet<String> = rows(db).into_keys().collect();
    assert_eq!(got, want);
}

#[test]
fn postgres_outage_pauses_fetching_and_loses_nothing() {
    let pg = PrivatePg::start("outage");
    let db = pg.database("outage");
    // Password authentication is real here: a wrong one is refused up front.
    let rt = sandcrawl_e2e::runtime();
    let site: Server = rt.block_on(demo_site("127.0.0.1", Duration::ZERO));
    let st = tempdir("out-pw");
    let bad = db.url_as("postgres", Some("badpw123"));
    let (ok, err) = crawl(&st.join("never"), &[site.url("/")], &["--out", &bad]);
    assert!(!ok && err.contains("check the user and password"), "{err}");
    assert!(!err.contains("badpw123"), "{err}");
    assert!(!st.join("never").exists());
    assert_eq!(site.paths().len(), 0);
    outage_pauses_fetching_and_loses_nothing(&pg, &db, &db.url_as("postgres", Some(&pg.password)));
}

#[test]
fn mariadb_outage_pauses_fetching_and_loses_nothing() {
    let my = PrivateMariadb::start("outage");
    let db = my.database("outage");
    outage_pauses_fetching_and_loses_nothing(&my, &db, &db.url());
}
