//! The plugin platform end to end: real .wasm components run by the real runtime.
//! Example plugins on fixture pages give exact items and links; hostile plugins are stopped
//! within their budget with a clear error, and the next page still parses.

use sandcrawl::plugin::{Limits, LinkKind, PageInput, Plugin, PluginError, Runtime};
use sandcrawl_e2e::{plugin, plugin_in, root, tempdir};
use std::time::{Duration, Instant};

fn runtime(limits: Limits) -> Runtime {
    Runtime::new(limits, Some(tempdir("cache"))).expect("runtime")
}

fn page(url: &str, body: &[u8]) -> PageInput {
    PageInput {
        url: url.into(),
        status: 200,
        headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
        body: bytes::Bytes::copy_from_slice(body),
        encoding: "UTF-8".into(),
        ..PageInput::default()
    }
}

fn fixture(plugin: &str, name: &str) -> Vec<u8> {
    std::fs::read(
        root()
            .join("plugins")
            .join(plugin)
            .join("tests/fixtures")
            .join(name),
    )
    .expect("fixture")
}

#[test]
fn example_plugins_give_exact_items_and_links() {
    let rt = runtime(Limits::default());
    let quotes = rt
        .load_file_blocking(&plugin("quotes"))
        .expect("load quotes");
    assert_eq!(quotes.info.name, "quotes");
    assert_eq!(quotes.info.wit_version, "0.2.0");
    assert_eq!(quotes.info.sha256.len(), 64);

    let out = quotes
        .parse_blocking(&page(
            "http://demo.test/quotes/page/1/",
            &fixture("quotes", "quotes-page-1.html"),
        ))
        .expect("parse quotes");
    assert_eq!(out.items.len(), 10);
    assert_eq!(out.items[0].kind, "quote");
    assert_eq!(
        serde_json::Value::Object(out.items[0].fields()),
        serde_json::json!({
            "text": "Quote 1: patience is the road that rivers walks on.",
            "author": "Ada Quill",
            "tags": ["life"]
        })
    );
    let next = out
        .links
        .iter()
        .find(|l| l.priority == 10)
        .expect("next link");
    assert_eq!(next.url, "http://demo.test/quotes/page/2/");
    assert_eq!(out.links.len(), 11);
    // Metadata is JSON: the author's name travels as a JSON string.
    assert_eq!(out.links[0].metadata.as_deref(), Some("\"Ada Quill\""));

    let author = quotes
        .parse_blocking(&page(
            "http://demo.test/author/ada-quill/",
            &fixture("quotes", "author-ada-quill.html"),
        ))
        .expect("parse author");
    assert_eq!(
        serde_json::Value::Object(author.items[0].fields()),
        serde_json::json!({
            "name": "Ada Quill",
            "born": "March 3, 1900",
            "description": "Ada Quill wrote about patience and laughter."
        })
    );

    let products = rt
        .load_file_blocking(&plugin("products"))
        .expect("load products");
    let out = products
        .parse_blocking(&page(
            "http://demo.test/catalogue/travel-book-1/index.html",
            &fixture("products", "product-travel-book-1.html"),
        ))
        .expect("parse product");
    assert_eq!(out.items.len(), 1);
    let p = serde_json::Value::Object(out.items[0].fields());
    assert_eq!(p["title"], "Travel Book 1");
    assert_eq!(p["price"], 10.99);
    assert_eq!(p["in_stock"], true);
    assert_eq!(out.links.len(), 1);
    assert_eq!(out.links[0].kind, LinkKind::Download);
    assert_eq!(out.links[0].url, "http://demo.test/media/p0.jpg");
}

#[test]
fn plugin_config_reaches_the_guest() {
    let rt = runtime(Limits::default());
    let mut products = rt.load_file_blocking(&plugin("products")).expect("load");
    products.set_config(&serde_json::json!({ "currency": "CHF" }));
    let out = products
        .parse_blocking(&page(
            "http://demo.test/catalogue/x/index.html",
            b"<div class=product_main><h1>X</h1><p class=price_color>12.50</p></div>",
        ))
        .expect("parse");
    assert_eq!(out.items[0].fields()["currency"], "CHF");
}

fn hostile(limits: Limits) -> Plugin {
    runtime(limits)
        .load_file_blocking(&plugin("hostile"))
        .expect("load hostile")
}

fn attack(
    p: &Plugin,
    what: &str,
) -> (
    Result<sandcrawl::plugin::ParseOutput, PluginError>,
    Duration,
) {
    let t = Instant::now();
    let r = p.parse_blocking(&page(
        &format!("http://t.test/hostile/{what}"),
        b"<html></html>",
    ));
    (r, t.elapsed())
}

/// After every attack, the same plugin parses an ordinary page normally.
fn still_works(p: &Plugin) {
    let out = p
        .parse_blocking(&page("http://t.test/hostile/fine", b"<html></html>"))
        .expect("a well-behaved page after an attack");
    assert_eq!(out.items.len(), 1);
    assert_eq!(out.items[0].kind, "ok");
}

#[test]
fn instances_are_reused_and_a_leak_never_costs_a_page() {
    let p = hostile(Limits {
        memory_mib: 16,
        ..Limits::default()
    });
    // Consecutive calls from one thread share a warm instance (what makes a page cheap).
    let calls: Vec<u64> = (0..3)
        .map(|_| {
            let (r, _) = attack(&p, "count");
            let out = r.expect("count");
            out.items[0].fields()["calls_in_this_instance"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(calls, [1, 2, 3]);
    // 6 MiB kept per call: the warm instance's second call outgrows the 16 MiB limit. That
    // page is parsed again in a fresh instance, so every call succeeds.
    for n in 0..4 {
        let (r, _) = attack(&p, "leak");
        let out = r.unwrap_or_else(|e| panic!("leak call {n}: {e}"));
        let in_instance = out.items[0].fields()["calls_in_this_instance"].as_u64();
        assert!(
            matches!(in_instance, Some(1 | 2)),
            "call {n}: {in_instance:?}"
        );
    }
    still_works(&p);
}

#[test]
fn infinite_loop_is_stopped_by_the_deadline() {
    let p = hostile(Limits {
        timeout_ms: 300,
        ..Limits::default()
    });
    let (r, took) = attack(&p, "loop");
    assert_eq!(r.unwrap_err(), PluginError::Timeout(300));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    still_works(&p);
}

#[test]
fn memory_bomb_hits_the_memory_cap() {
    let p = hostile(Limits {
        memory_mib: 32,
        ..Limits::default()
    });
    let (r, took) = attack(&p, "oom");
    assert_eq!(r.unwrap_err(), PluginError::Memory(32));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    still_works(&p);
}

#[test]
fn deep_recursion_traps() {
    let p = hostile(Limits::default());
    let (r, _) = attack(&p, "recurse");
    let e = r.unwrap_err();
    assert_eq!(e.kind(), "trap", "{e}");
    still_works(&p);
}

#[test]
fn panic_is_reported_with_its_message() {
    let p = hostile(Limits::default());
    let (r, _) = attack(&p, "panic");
    match r.unwrap_err() {
        PluginError::Trap(m) => assert!(m.contains("hostile plugin panics on purpose"), "{m}"),
        other => panic!("expected a trap, got {other}"),
    }
    still_works(&p);
}

#[test]
fn a_million_links_is_refused() {
    let p = hostile(Limits::default());
    let (r, took) = attack(&p, "links");
    let e = r.unwrap_err();
    assert!(matches!(e.kind(), "output_limit" | "memory"), "{e}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    still_works(&p);
}

#[test]
fn a_100_mb_item_is_refused() {
    let p = hostile(Limits::default());
    let (r, _) = attack(&p, "bigitem");
    let e = r.unwrap_err();
    assert!(matches!(e.kind(), "output_limit" | "memory"), "{e}");
    still_works(&p);
}

#[test]
fn too_many_items_is_refused_exactly() {
    let p = hostile(Limits {
        max_items: 1000,
        ..Limits::default()
    });
    let (r, _) = attack(&p, "manyitems");
    assert_eq!(
        r.unwrap_err(),
        PluginError::OutputLimit("100000 items (limits.max_items = 1000)".into())
    );
    still_works(&p);
}

#[test]
fn stdout_flood_is_cut() {
    let p = hostile(Limits::default());
    let (r, took) = attack(&p, "stdout");
    // Over limits.max_log_kib: counted as the plugin's log-limit error.
    assert_eq!(r.unwrap_err().kind(), "log_limit");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    still_works(&p);
}

#[test]
fn invalid_item_json_is_reported() {
    let p = hostile(Limits::default());
    let (r, _) = attack(&p, "badjson");
    let e = r.unwrap_err();
    assert_eq!(e.kind(), "invalid_output");
    assert!(e.to_string().contains("not valid JSON"), "{e}");
}

fn probe(p: &Plugin, what: &str, metadata: Option<String>) -> serde_json::Value {
    let mut pg = page(&format!("http://t.test/hostile/{what}"), b"");
    pg.metadata = metadata;
    let out = p.parse_blocking(&pg).expect("probe runs");
    serde_json::Value::Object(out.items[0].fields())
}

#[test]
fn no_files_sockets_or_environment() {
    let p = hostile(Limits::default());
    let f = probe(&p, "file", None);
    assert_eq!(f["ok"], false, "{f}");
    assert_eq!(f["leak"], serde_json::Value::Null);

    // A real listener on loopback: the guest must still not reach it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let target = listener.local_addr().expect("addr").to_string();
    let s = probe(&p, "socket", Some(target));
    assert_eq!(s["ok"], false, "{s}");
    listener.set_nonblocking(true).expect("nonblocking");
    assert!(listener.accept().is_err(), "the plugin opened a connection");

    // SAFETY: tests in this binary do not read the environment concurrently with this write.
    unsafe { std::env::set_var("SANDCRAWL_SECRET", "hunter2") };
    let e = probe(&p, "env", None);
    assert_eq!(e["ok"], false, "{e}");
}

#[test]
fn plugin_built_for_another_wit_version_is_rejected_clearly() {
    let rt = runtime(Limits::default());
    let err = rt
        .load_file_blocking(&plugin("future-wit"))
        .err()
        .expect("must be rejected");
    let msg = format!("{err:#}");
    assert!(msg.contains("sandcrawl:plugin@9.0.0"), "{msg}");
    assert!(msg.contains("supports 0.2.0, 0.1.0"), "{msg}");
    assert!(msg.contains("future-wit.wasm"), "{msg}");
}

#[test]
fn bad_files_get_one_line_each_and_the_rest_still_load() {
    let dir = tempdir("plugdir");
    std::fs::copy(plugin("quotes"), dir.join("a-quotes.wasm")).expect("copy");
    std::fs::copy(plugin("quotes"), dir.join("b-quotes-again.wasm")).expect("copy");
    std::fs::copy(plugin("future-wit"), dir.join("c-future.wasm")).expect("copy");
    std::fs::write(dir.join("d-garbage.wasm"), b"this is not wasm").expect("write");
    // A core module (what wasm32-unknown-unknown produces): magic + version 1.
    std::fs::write(dir.join("e-core.wasm"), b"\0asm\x01\0\0\0").expect("write");
    std::fs::copy(plugin("products"), dir.join("f-products.wasm")).expect("copy");
    let rt = runtime(Limits::default());
    let (ok, errors) = rt.load_dir_blocking(&dir).expect("folder readable");
    let names: Vec<_> = ok.iter().map(|p| p.info.name.as_str()).collect();
    assert_eq!(names, ["quotes", "products"]);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(errors.iter().all(|e| !e.contains('\n')), "{errors:#?}");
    let joined = errors.join("\n");
    assert!(
        joined.contains("b-quotes-again.wasm: a plugin named \"quotes\" is already loaded"),
        "{joined}"
    );
    assert!(
        joined.contains("c-future.wasm: built against WIT sandcrawl:plugin@9.0.0"),
        "{joined}"
    );
    assert!(
        joined.contains("d-garbage.wasm: not a WebAssembly file"),
        "{joined}"
    );
    assert!(
        joined.contains("e-core.wasm: a core wasm module, not a component"),
        "{joined}"
    );

    let missing = rt
        .load_dir_blocking(&dir.join("nope"))
        .err()
        .expect("missing folder is an error");
    assert!(format!("{missing:#}").contains("cannot read plugin folder"));
}

#[test]
fn compiled_code_is_cached_on_disk() {
    let cache = tempdir("cache2");
    let rt = Runtime::new(Limits::default(), Some(cache.clone())).expect("runtime");
    rt.load_file_blocking(&plugin("noop"))
        .expect("first load compiles");
    let files: Vec<_> = std::fs::read_dir(&cache)
        .expect("cache dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".cwasm"));
    // A second runtime loads from the cache; a corrupt cache file is recompiled, not trusted.
    std::fs::write(cache.join(&files[0]), b"corrupt").expect("corrupt it");
    let rt2 = Runtime::new(Limits::default(), Some(cache.clone())).expect("runtime");
    let p = rt2
        .load_file_blocking(&plugin("noop"))
        .expect("recompiles over a corrupt cache entry");
    assert!(
        p.parse_blocking(&page("http://x.test/", b""))
            .expect("noop")
            .items
            .is_empty()
    );
}

#[test]
fn full_dom_is_available_inside_the_guest() {
    let p = hostile(Limits::default());
    let out = p
        .parse_blocking(&page(
            "http://t.test/hostile/dom",
            b"<div class=box><h1>One</h1></div><h1>skip</h1><div class=box><p><h1>nested</h1></p><h1>Two</h1></div>",
        ))
        .expect("dom page");
    // A real HTML tree builder: the <h1> closes the open <p>, so "nested" becomes a direct
    // child of the div, as in a browser; the <h1> outside any div.box is not selected.
    assert_eq!(
        out.items[0].fields()["titles"],
        serde_json::json!(["One", "nested", "Two"])
    );
}

#[test]
fn a_call_blocked_in_wasi_is_stopped_at_its_deadline() {
    let p = hostile(Limits {
        timeout_ms: 300,
        ..Limits::default()
    });
    for what in ["sleep", "sleepday"] {
        let (r, took) = attack(&p, what);
        assert_eq!(r.unwrap_err(), PluginError::Timeout(300), "{what}");
        // The budget plus scheduling slack: nowhere near the 10 s or one day asked for.
        assert!(took < Duration::from_secs(3), "{what} took {took:?}");
    }
    still_works(&p);
}

#[test]
fn plugins_that_sleep_to_their_deadline_do_not_starve_the_others() {
    let exec = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rt = runtime(Limits {
        timeout_ms: 4_000,
        ..Limits::default()
    });
    let bad = std::sync::Arc::new(rt.load_file_blocking(&plugin("hostile")).expect("hostile"));
    let good = std::sync::Arc::new(rt.load_file_blocking(&plugin("quotes")).expect("quotes"));
    let quotes_page = fixture("quotes", "quotes-page-1.html");
    exec.block_on(async move {
        let started = Instant::now();
        // Far more sleeping calls than there are call slots.
        let sleepers: Vec<_> = (0..16)
            .map(|_| {
                let bad = std::sync::Arc::clone(&bad);
                tokio::spawn(async move {
                    bad.parse(&page("http://t.test/hostile/sleepday", b""))
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for _ in 0..8 {
            let out = good
                .parse(&page("http://demo.test/quotes/page/1/", &quotes_page))
                .await
                .expect("the well-behaved plugin still parses");
            assert_eq!(out.items.len(), 10);
        }
        // All eight pages were parsed while the sleepers held their share of the slots,
        // long before the sleepers' first deadline.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        for s in sleepers {
            let r = s.await.expect("task");
            assert_eq!(r.unwrap_err(), PluginError::Timeout(4_000));
        }
    });
}

#[test]
fn log_volume_is_capped_and_counted_as_a_plugin_error() {
    let p = hostile(Limits::default());
    let (r, took) = attack(&p, "logflood");
    match r.unwrap_err() {
        PluginError::LogLimit(m) => assert!(m.contains("limits.max_log_kib"), "{m}"),
        other => panic!("expected a log-limit error, got {other}"),
    }
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // stdout and the log share the budget too.
    let (r, _) = attack(&p, "stdout");
    assert_eq!(r.unwrap_err().kind(), "log_limit");
    still_works(&p);
}

#[test]
fn exit_is_reported_as_exit() {
    let p = hostile(Limits::default());
    let (r, _) = attack(&p, "exit");
    match r.unwrap_err() {
        // WASI p2 passes only success or failure, so exit(3) arrives as exit(1).
        PluginError::Trap(m) => assert!(m.contains("called exit(1)"), "{m}"),
        other => panic!("expected a trap, got {other}"),
    }
    still_works(&p);
}

#[test]
fn item_json_keeps_exact_numbers_and_field_order_and_host_kinds_are_reserved() {
    let p = hostile(Limits::default());
    let (r, _) = attack(&p, "bignum");
    let out = r.expect("bignum");
    assert_eq!(
        out.items[0].json.get(),
        "{\"big\":123456789012345678901234567890,\"precise\":0.1000000000000000055511151231257827,\"z\":1,\"a\":2}"
    );
    let (r, _) = attack(&p, "filekind");
    let e = r.unwrap_err();
    assert_eq!(e.kind(), "invalid_output");
    assert!(e.to_string().contains("reserved"), "{e}");
    still_works(&p);
}

#[test]
fn a_31_mib_item_of_tiny_values_stays_text() {
    let p = hostile(Limits::default());
    let (r, _) = attack(&p, "widejson");
    let out = r.expect("an item under the output cap is accepted");
    assert!(out.items[0].json.get().len() > 30 << 20);
    still_works(&p);
}

#[test]
fn exports_with_other_signatures_are_named_at_load() {
    let rt = runtime(Limits::default());
    let err = rt
        .load_file_blocking(&plugin("bad-signature"))
        .err()
        .expect("must be refused");
    let msg = format!("{err:#}");
    assert!(!msg.contains("trapped"), "{msg}");
    assert!(
        msg.contains("do not match WIT sandcrawl:plugin@0.1.0"),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn components_over_the_per_plugin_instance_bounds_are_refused_at_load() {
    let dir = tempdir("bounds");
    // 40 core instances, each with a memory: within the pool's totals for one component
    // it would take the instances every other plugin needs.
    let mut wat = String::from("(component (core module $m (memory 1))");
    for _ in 0..40 {
        wat.push_str(" (core instance (instantiate $m))");
    }
    wat.push(')');
    let bytes = wat::parse_str(&wat).expect("valid component text");
    let path = dir.join("many.wasm");
    std::fs::write(&path, bytes).expect("write");
    let err = runtime(Limits::default())
        .load_file_blocking(&path)
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("many.wasm: refused"), "{msg}");
    assert!(msg.contains("at most"), "{msg}");
    assert!(!msg.contains('\n'), "{msg}");
}

/// A hand-made v0.1 plugin component (no SDK) whose main module carries the manifest, plus
/// `n` helper core instances, each with a linear memory of its own of `min_pages` pages.
/// `parse` grows every helper memory by `grow_pages` pages and returns an empty output, or
/// traps when a grow is refused.
fn multi_memory_plugin(n: usize, min_pages: u32, grow_pages: u32) -> std::path::PathBuf {
    // The manifest record at offset 0: five (pointer, length) pairs.
    let mut data = vec![0u8; 64];
    let put = |bytes: &[u8], data: &mut Vec<u8>| {
        let at = data.len() as u32;
        data.extend_from_slice(bytes);
        at
    };
    let name = put(b"multimem", &mut data);
    let version = put(b"1.0.0", &mut data);
    let star = put(b"*", &mut data);
    // A list of strings is read as 4-byte aligned (pointer, length) pairs.
    data.resize(data.len().next_multiple_of(4), 0);
    let mut list = Vec::new();
    list.extend_from_slice(&star.to_le_bytes());
    list.extend_from_slice(&1u32.to_le_bytes());
    let patterns = put(&list, &mut data);
    let record: [u32; 10] = [name, 8, version, 5, 0, 0, patterns, 1, 0, 0];
    for (i, v) in record.iter().enumerate() {
        data[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    let escaped: String = data.iter().map(|b| format!("\\{b:02x}")).collect();
    let imports: String = (0..n)
        .map(|i| format!("(import \"b{i}\" \"grow\" (func $g{i} (result i32)))"))
        .collect();
    let grows: String = (0..n)
        .map(|i| format!("(if (i32.lt_s (call $g{i}) (i32.const 0)) (then unreachable))"))
        .collect();
    let helpers: String = (0..n)
        .map(|i| format!("(core instance $b{i} (instantiate $Big))"))
        .collect();
    let with: String = (0..n)
        .map(|i| format!("(with \"b{i}\" (instance $b{i}))"))
        .collect();
    let wat = format!(
        r#"(component
  (core module $Big
    (memory {min_pages})
    (func (export "grow") (result i32) (memory.grow (i32.const {grow_pages}))))
  (core module $M
    {imports}
    (memory (export "memory") 1)
    (global $bump (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (local $r i32)
      (local.set $r (i32.and
        (i32.add (global.get $bump) (i32.sub (local.get 2) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get 2))))
      (global.set $bump (i32.add (local.get $r) (local.get 3)))
      (local.get $r))
    (data (i32.const 0) "{escaped}")
    (func (export "manifest") (result i32) (i32.const 0))
    (func (export "parse") (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
      {grows} (i32.const 2048)))
  {helpers}
  (core instance $m (instantiate $M {with}))
  (type $header (record (field "name" string) (field "value" string)))
  (type $ctx (record (field "depth" u32) (field "referrer" (option string)) (field "metadata" (option string))))
  (type $page (record (field "url" string) (field "status" u16) (field "headers" (list $header)) (field "body" (list u8)) (field "encoding" string) (field "context" $ctx)))
  (type $kind (enum "follow" "download"))
  (type $link (record (field "url" string) (field "priority" (option s32)) (field "kind" $kind) (field "metadata" (option string))))
  (type $item (record (field "kind" string) (field "json" string)))
  (type $out (record (field "items" (list $item)) (field "links" (list $link))))
  (type $err (variant (case "not-mine") (case "failed" string)))
  (type $manifest (record (field "name" string) (field "version" string) (field "description" string) (field "patterns" (list string)) (field "seeds" (list string))))
  (func $manifest (result $manifest) (canon lift (core func $m "manifest") (memory (core memory $m "memory")) (realloc (core func $m "realloc"))))
  (func $parse (param "page" $page) (result (result $out (error $err))) (canon lift (core func $m "parse") (memory (core memory $m "memory")) (realloc (core func $m "realloc"))))
  (instance $parser
    (export "header" (type $header))
    (export "crawl-context" (type $ctx))
    (export "page" (type $page))
    (export "link-kind" (type $kind))
    (export "link" (type $link))
    (export "item" (type $item))
    (export "parse-output" (type $out))
    (export "parse-error" (type $err))
    (export "plugin-manifest" (type $manifest))
    (export "manifest" (func $manifest))
    (export "parse" (func $parse)))
  (export "sandcrawl:plugin/parser@0.1.0" (instance $parser)))"#
    );
    let bytes = wat::parse_str(&wat).unwrap_or_else(|e| panic!("component text: {e}"));
    let path = tempdir("multimem").join(format!("mm-{n}-{min_pages}-{grow_pages}.wasm"));
    std::fs::write(&path, bytes).expect("write");
    path
}

#[test]
fn the_memory_cap_covers_all_memories_of_an_instance_together() {
    // At load: three memories of 62.5 MiB each are 187.5 MiB of one instance.
    let rt = runtime(Limits::default());
    let err = rt
        .load_file_blocking(&multi_memory_plugin(3, 1000, 0))
        .err()
        .expect("over the cap at load");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("manifest() failed: exceeded its memory limit of 128 MiB"),
        "{msg}"
    );
    // One such memory fits: the component itself is a working plugin.
    rt.load_file_blocking(&multi_memory_plugin(1, 1000, 0))
        .expect("62.5 MiB in one memory loads");

    // Per call: each of three memories grows by 62.5 MiB; each alone is under the cap.
    let p = rt
        .load_file_blocking(&multi_memory_plugin(3, 1, 1000))
        .expect("small at load");
    let r = p.parse_blocking(&page("http://t.test/x", b""));
    assert_eq!(r.unwrap_err(), PluginError::Memory(128));
    // With room for all three, the same call succeeds.
    let roomy = runtime(Limits {
        memory_mib: 256,
        ..Limits::default()
    });
    let p = roomy
        .load_file_blocking(&multi_memory_plugin(3, 1, 1000))
        .expect("load");
    let out = p
        .parse_blocking(&page("http://t.test/x", b""))
        .expect("fits in 256 MiB");
    assert!(out.items.is_empty() && out.links.is_empty());
}

/// A plugin built against the frozen WIT 0.1 keeps working on this host, and gives exactly
/// the items and links its WIT 0.2 build gives, page for page: the example plugins, built both
/// ways by `./dev test`, walk the demo site (its pages served from memory) side by side.
#[test]
fn example_plugins_built_for_wit_0_1_and_0_2_give_identical_output() {
    let rt = runtime(Limits::default());
    let mut pairs = Vec::new();
    for name in ["quotes", "products", "shop"] {
        let new = rt.load_file_blocking(&plugin(name)).expect("0.2 build");
        let old = rt
            .load_file_blocking(&plugin_in("plugins-wit-0.1", name))
            .expect("0.1 build");
        assert_eq!(new.info.wit_version, "0.2.0", "{name}");
        assert_eq!(old.info.wit_version, "0.1.0", "{name}");
        assert_ne!(new.info.sha256, old.info.sha256);
        pairs.push((name, new, old, 0usize));
    }
    let mut queue = std::collections::VecDeque::from(["http://demo.test/".to_owned()]);
    let mut seen = std::collections::HashSet::new();
    let mut pages = 0;
    while let Some(url) = queue.pop_front() {
        if pages >= 80 || !seen.insert(url.clone()) {
            continue;
        }
        pages += 1;
        let path = url.trim_start_matches("http://demo.test");
        let (status, ct, body) = sandcrawl::demo::respond(path);
        let mut pg = page(&url, &body);
        pg.status = status.as_u16();
        pg.headers = vec![("content-type".into(), ct.into())];
        for (name, new, old, compared) in &mut pairs {
            if !new.matches(&url) && !old.matches(&url) {
                continue;
            }
            assert_eq!(new.matches(&url), old.matches(&url), "{name} on {url}");
            let a = new.parse_blocking(&pg);
            let b = old.parse_blocking(&pg);
            assert_eq!(a, b, "{name} on {url}");
            if let Ok(out) = a {
                *compared += out.items.len() + out.links.len();
                queue.extend(
                    out.links
                        .into_iter()
                        .map(|l| l.url)
                        .filter(|u| u.starts_with("http://demo.test/")),
                );
            }
        }
    }
    for (name, _, _, compared) in &pairs {
        assert!(
            *compared > 20,
            "{name}: only {compared} items and links compared over {pages} pages"
        );
    }
}
