//! Sink throughput: items per second into JSONL, PostgreSQL and MariaDB through the real
//! sinks, pages of 20 items as a crawl hands them over, until every item is durable.
//!
//!     cargo bench -p sandcrawl-bench --bench sink                 # 200,000 items each
//!     SINK_ITEMS=50000 cargo bench -p sandcrawl-bench --bench sink
//!     SINK_PG=postgres://postgres@127.0.0.1:5432/test SINK_MY=mysql://root@127.0.0.1:3306/test cargo bench ...
//!
//! The databases are the machine's local servers; each run writes a table of its own and
//! drops it afterwards (with the servers' own command line clients).

use sandcrawl::sink::sql::{SqlConfig, SqlSink};
use sandcrawl::sink::target::Target;
use sandcrawl::sink::{Format, Item, PluginRef, Sink};
use serde_json::value::RawValue;
use std::time::{Duration, Instant};

const PER_PAGE: usize = 20;

fn items(total: usize) -> Vec<Item> {
    (0..total)
        .map(|i| Item {
            id: format!("{:020x}", i as u64 * 2654435761),
            url: format!("http://shop{}.example/product/{i}", i % 50),
            fetched_at: "2026-11-28T01:00:00.123Z".into(),
            plugin: PluginRef {
                name: "shop".into(),
                version: "0.1.0".into(),
                sha256: "ab".repeat(32),
            },
            kind: "product".into(),
            fields: RawValue::from_string(format!(
                r#"{{"name":"Product {i}","price":{}.99,"currency":"EUR","sku":"SKU-{i:06}","in_stock":{},"brand":"Brand {}","description":"A fine product, number {i}, described in a sentence or two so the row is realistic."}}"#,
                i % 500,
                i % 3 != 0,
                i % 40
            ))
            .unwrap_or_else(|e| panic!("{e}")),
        })
        .collect()
}

/// Writes every page, then waits until the sink says all of it is durable.
async fn drive(sink: &mut dyn Sink, all: &[Item]) -> Duration {
    let t = Instant::now();
    let mut last = 0;
    for page in all.chunks(PER_PAGE) {
        last = sink.write_page(page).unwrap_or_else(|e| panic!("{e:#}"));
        // What the scheduler does: never more than its backlog bound waiting.
        while sink.backlog() >= SqlConfig::default().max_backlog_items {
            sink.changed().await;
        }
    }
    while sink.durable().unwrap_or_else(|e| panic!("{e:#}")) < last {
        sink.changed().await;
    }
    sink.sync().unwrap_or_else(|e| panic!("{e:#}"));
    t.elapsed()
}

fn client(url: &str, sql: &str) {
    let u = url::Url::parse(url).unwrap_or_else(|e| panic!("{e}"));
    let db = u.path().trim_start_matches('/').to_owned();
    let host = u.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = u.port().unwrap_or(0).to_string();
    let status = if url.starts_with("postgres") {
        std::process::Command::new("psql")
            .args([
                "-h",
                &host,
                "-p",
                &port,
                "-U",
                u.username(),
                "-d",
                &db,
                "-qc",
                sql,
            ])
            .status()
    } else {
        std::process::Command::new("mariadb")
            .args(["-h", &host, "-P", &port, "-u", u.username(), &db, "-e", sql])
            .status()
    };
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("{sql}: failed");
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let total: usize = std::env::var("SINK_ITEMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let all = items(total);
    let dir = std::env::temp_dir().join(format!("sandcrawl-sink-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let path = dir.join("items.jsonl");
    let mut file = sandcrawl::sink::FileSink::open(&path, None).unwrap_or_else(|e| panic!("{e:#}"));
    let took = drive(&mut file, &all).await;
    println!(
        "jsonl      {total} items in {:.2}s: {:>9.0} items/s",
        took.as_secs_f64(),
        total as f64 / took.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);

    let table = format!("bench_items_{}", std::process::id());
    for (name, url) in [
        (
            "postgresql",
            std::env::var("SINK_PG")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        ),
        (
            "mariadb",
            std::env::var("SINK_MY").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
        ),
    ] {
        let Ok(Target::Sql(u)) = Target::parse(&url, Format::Jsonl) else {
            panic!("{url}: not a database URL");
        };
        let cfg = SqlConfig {
            table: table.clone(),
            ..SqlConfig::default()
        };
        let mut sink = match SqlSink::connect(&u, &cfg).await {
            Ok(s) => s,
            Err(e) => {
                println!("{name:<10} skipped: {e:#}");
                continue;
            }
        };
        let took = drive(&mut sink, &all).await;
        assert_eq!(sink.items_written(), total as u64, "{name}: rows missing");
        println!(
            "{name:<10} {total} items in {:.2}s: {:>9.0} items/s (batches of up to {} in one transaction)",
            took.as_secs_f64(),
            total as f64 / took.as_secs_f64(),
            cfg.batch_items
        );
        drop(sink);
        client(&url, &format!("DROP TABLE {table}"));
    }
}
