//! The `sandcrawl` binary: sets up logging and the async runtime, then hands the parsed
//! command to `cli`. Every failure ends here as one line on stderr and a non-zero exit.

mod cli;

use clap::Parser as _;

fn main() {
    let cli = cli::Cli::parse();
    // The store's own housekeeping (memtable flushes, compactions) logs at info; that is
    // noise in a crawl's log unless asked for by name (`--log-level info,fjall=debug`).
    let mut level = cli.log_level.clone();
    for store in ["fjall", "lsm_tree"] {
        if !level.contains(store) {
            level.push_str(&format!(",{store}=warn"));
        }
    }
    let filter = match tracing_subscriber::EnvFilter::try_new(&level) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "error: --log-level {:?} is not a valid log filter ({e}); use e.g. info, debug or sandcrawl=debug",
                cli.log_level
            );
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .compact()
        .init();
    let result = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(cli::dispatch(cli.cmd)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            std::process::exit(1);
        }
    }
}
