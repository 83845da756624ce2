//! The `sandcrawl` binary: sets up logging and the async runtime, then hands the parsed
//! command to `cli`. Every failure ends here as one line on stderr and a non-zero exit.

mod cli;

/// mimalloc instead of glibc's malloc: a broad crawl opens a connection per host, and with
/// glibc the allocations behind each (buffers, tasks, pool entries) made malloc and its
/// consolidation the largest single cost at 10,000 hosts (BENCHMARKS.md §6).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With all of mimalloc's defaults a crawl's peak RSS rose by half (60 → 92 MB on the peer
/// benchmark), so eager arena commit and huge pages are off. Freed memory goes back to the
/// OS after 10 ms (`purge_delay`), not at once: returning it at once cost an `madvise` and a
/// TLB shoot-down on the other core for every freed page run (on the 10,000-host benchmark
/// 92–103 µs a page against 80–100 µs), for 3–15 MB less peak RSS (BENCHMARKS.md §6). The option numbers
/// are `mi_option_e`'s, the same in mimalloc 2 and in mimalloc 3, which `libmimalloc-sys`
/// builds by default.
fn tune_allocator() {
    const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
    const ALLOW_LARGE_OS_PAGES: libmimalloc_sys::mi_option_t = 6;
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    for (option, value) in [
        (ARENA_EAGER_COMMIT, 0),
        (ALLOW_LARGE_OS_PAGES, 0),
        (PURGE_DELAY, 10),
    ] {
        // SAFETY: setting an option only stores an integer that mimalloc reads on later
        // allocations; any value is valid for these three.
        unsafe { libmimalloc_sys::mi_option_set(option, value) };
    }
}

use clap::Parser as _;

fn main() {
    tune_allocator();
    // Before anything opens files: the soft open-file limit goes up to the hard one, so a
    // broad crawl's connections and the store's files both fit (`fetch::conns`).
    sandcrawl::fetch::conns::open_file_limit();
    let cli = cli::Cli::parse();
    // The store's own housekeeping (memtable flushes, compactions) logs at info; that is
    // noise in a crawl's log unless asked for by name (`--log-level info,fjall=debug`).
    let json = cli.log_format == "json";
    cli::say::init(json, cli.quiet);
    // --quiet keeps warnings and errors, whatever the default level.
    let mut level = if cli.quiet && cli.log_level == "info" {
        "warn".to_owned()
    } else {
        cli.log_level.clone()
    };
    for store in ["fjall", "lsm_tree"] {
        if !level.contains(store) {
            level.push_str(&format!(",{store}=warn"));
        }
    }
    let filter = match tracing_subscriber::EnvFilter::try_new(&level) {
        Ok(f) => f,
        Err(e) => {
            cli::say::line(&format!(
                "error: --log-level {:?} is not a valid log filter ({e}); use e.g. info, debug or sandcrawl=debug",
                cli.log_level
            ));
            std::process::exit(2);
        }
    };
    // Colour only on a terminal, and never when NO_COLOR is set to anything (no-color.org).
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        log.json().init();
    } else {
        log.with_ansi(color).compact().init();
    }
    let result = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(cli::dispatch(cli.cmd)),
        Err(e) => {
            cli::say::line(&format!("error: cannot start the async runtime: {e}"));
            std::process::exit(1);
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            cli::say::line(&format!("error: {msg}"));
            std::process::exit(1);
        }
    }
}
