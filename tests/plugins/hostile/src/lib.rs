//! A deliberately hostile plugin for the sandbox tests. What it does depends on the last
//! path segment of the page URL; any other page gets a well-behaved `ok` item, so a test can
//! check that the next page after an attack still parses.

use sandcrawl_plugin_sdk::prelude::*;
use std::hint::black_box;

pub struct Hostile;

#[allow(unconditional_recursion)] // the point: recursion until the guest stack is gone
fn recurse(n: u64) -> u64 {
    let buf = black_box([n; 64]);
    black_box(recurse(buf[3] + 1)) + buf[7]
}

impl Plugin for Hostile {
    fn new() -> Self {
        Hostile
    }

    fn manifest(&self) -> Manifest {
        Manifest::new("hostile", env!("CARGO_PKG_VERSION"))
            .description("Misbehaves on purpose")
            .pattern("/hostile/**")
    }

    fn wants(&self, _page: &Page) -> bool {
        true
    }

    fn parse(&self, page: &Page, out: &mut Output) -> Result<(), ParseError> {
        let what = page.url.rsplit('/').next().unwrap_or_default();
        match what {
            "loop" => {
                let mut i: u64 = 0;
                loop {
                    i = black_box(i.wrapping_add(1));
                }
            }
            "oom" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    black_box(&hoard);
                }
            }
            "recurse" => {
                black_box(recurse(0));
            }
            "panic" => panic!("hostile plugin panics on purpose"),
            "leak" => {
                // Keeps 6 MiB per call in the instance for good: an instance that serves
                // several pages runs out of memory where a fresh one would not.
                static HOARD: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
                let calls = match HOARD.lock() {
                    Ok(mut h) => {
                        h.push(black_box(vec![1u8; 6 << 20]));
                        h.len()
                    }
                    Err(_) => 0,
                };
                out.item("leak", &json!({ "calls_in_this_instance": calls }))?;
            }
            "count" => {
                static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                out.item("count", &json!({ "calls_in_this_instance": n }))?;
            }
            "links" => {
                for i in 0..1_000_000 {
                    out.follow(format!("http://127.0.0.1/hostile/l{i}"));
                }
            }
            "bigitem" => {
                let blob = "x".repeat(100 * 1024 * 1024);
                out.item("big", &json!({ "blob": blob }))?;
            }
            "manyitems" => {
                for i in 0..100_000 {
                    out.item("many", &json!({ "i": i }))?;
                }
            }
            "stdout" => {
                for i in 0..2_000_000 {
                    println!("flooding stdout line {i}");
                }
            }
            "file" => {
                let r = std::fs::read_to_string("/etc/passwd");
                out.item(
                    "probe",
                    &json!({ "probe": "file", "ok": r.is_ok(), "leak": r.ok() }),
                )?;
            }
            "socket" => {
                let target = page
                    .metadata_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| "127.0.0.1:80".into());
                let r = std::net::TcpStream::connect(target.as_str());
                out.item("probe", &json!({ "probe": "socket", "ok": r.is_ok() }))?;
            }
            "env" => {
                let vars: Vec<(String, String)> = std::env::vars().collect();
                let args: Vec<String> = std::env::args().collect();
                out.item(
                    "probe",
                    &json!({ "probe": "env", "ok": !vars.is_empty() || !args.is_empty(), "vars": vars, "args": args }),
                )?;
            }
            "dom" => {
                // Not an attack: the full-DOM path (html5ever via scraper) inside the sandbox.
                let doc = page.dom();
                let sel = sandcrawl_plugin_sdk::scraper::Selector::parse("div.box > h1")
                    .map_err(|e| ParseError::failed(format!("{e:?}")))?;
                let titles: Vec<String> = doc
                    .select(&sel)
                    .map(|e| e.text().collect::<String>())
                    .collect();
                out.item("dom", &json!({ "titles": titles }))?;
            }
            "sleep" => {
                // Blocked in WASI (a clock pollable), not running wasm: epoch ticks alone
                // would never stop it.
                std::thread::sleep(std::time::Duration::from_secs(10));
                out.item("slept", &json!({}))?;
            }
            "sleepday" => {
                std::thread::sleep(std::time::Duration::from_secs(86_400));
            }
            "logflood" => {
                let line = "l".repeat(1 << 20);
                for _ in 0..450 {
                    sandcrawl_plugin_sdk::log(LogLevel::Info, &line);
                }
                out.item("flooded", &json!({}))?;
            }
            "logforge" => {
                sandcrawl_plugin_sdk::log(
                    LogLevel::Warn,
                    "harmless\n2026-01-01T00:00:00Z  INFO sandcrawl: FORGED LOG LINE\r\x1b[2K",
                );
                println!("out\r\x1b[2KFORGED STDOUT LINE");
                out.item("ok", &json!({ "url": page.url }))?;
            }
            "exit" => std::process::exit(3),
            "bignum" => {
                out.items.push(Item {
                    kind: "num".into(),
                    json: "{\"big\":123456789012345678901234567890,\"precise\":0.1000000000000000055511151231257827,\"z\":1,\"a\":2}".into(),
                });
            }
            "filekind" => {
                out.item(
                    "file",
                    &json!({ "sha256": "0".repeat(64), "path": "/etc/passwd" }),
                )?;
            }
            "widejson" => {
                // About 31 MiB of tiny JSON values, under the 32 MiB output cap: a value tree
                // of it would take well over a GiB in the host.
                let mut json = String::with_capacity(31 << 20);
                json.push_str("{\"v\":[");
                while json.len() < (31 << 20) - 16 {
                    json.push_str("0,");
                }
                json.push_str("0]}");
                out.items.push(Item {
                    kind: "wide".into(),
                    json,
                });
            }
            "badjson" => {
                out.items.push(Item {
                    kind: "bad".into(),
                    json: "{not json".into(),
                });
            }
            _ => {
                out.item("ok", &json!({ "url": page.url }))?;
            }
        }
        Ok(())
    }
}

export_plugin!(Hostile);
