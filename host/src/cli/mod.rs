//! The command line: one file per subcommand (`run`, `demo`, `plugins`, `new`, `parse`,
//! `fetch`, `replay`, `status`; `completions` is generated here), each turning its flags into a call on
//! the library and an exit code, and `say` for the form of what is printed on stderr (text or
//! JSON, `--quiet`). It owns flags, exit codes and what is printed for a person; it must not
//! crawl, fetch or parse itself.

mod demo;
mod fetch;
mod new;
mod parse;
mod plugins;
mod replay;
mod run;
pub(crate) mod say;
mod status;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

pub use run::RunArgs;

#[derive(Parser)]
#[command(
    name = "sandcrawl",
    version,
    about = "A web crawler whose parse logic runs in sandboxed WebAssembly plugins"
)]
pub struct Cli {
    /// Log filter, e.g. "info", "debug", "sandcrawl=debug" (or SANDCRAWL_LOG).
    #[arg(long, global = true, env = "SANDCRAWL_LOG", default_value = "info")]
    pub log_level: String,
    /// Log and report format on stderr: text, or json (one JSON object per line).
    #[arg(long, global = true, env = "SANDCRAWL_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Only warnings and errors on stderr: no progress line, no summary (summary.json is still written).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Crawl: seeds → frontier → fetch → plugins → items. Re-running on the same --state resumes.
    Run(RunArgs),
    /// Serve the bundled demo site on 127.0.0.1 and crawl it with the given plugins.
    Demo(RunArgs),
    /// Serve the bundled demo site until Ctrl+C (to point your own crawls at).
    ServeDemo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8000")]
        addr: SocketAddr,
    },
    /// Inspect plugins.
    #[command(subcommand)]
    Plugins(PluginsCmd),
    /// Run one plugin on a saved page, offline, and print its items and links as JSON.
    Parse(parse::ParseArgs),
    /// Save one page through the crawler's fetcher (user agent, robots.txt, decoding), for a
    /// plugin's test fixtures; its headers go to FILE.headers.json.
    Fetch(fetch::FetchArgs),
    /// Run plugins over the pages a crawl stored with --warc, with no network, and write
    /// their items as the crawl would (same routing, same item ids).
    Replay(replay::ReplayArgs),
    /// Show a shared crawl on Redis: queues per host, workers and their last heartbeat,
    /// pages/s, errors.
    Status(status::StatusArgs),
    /// Print a shell completion script: `sandcrawl completions bash > /etc/bash_completion.d/sandcrawl`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
pub enum PluginsCmd {
    /// List the plugins in a folder: name, version, WIT version, sha256, URL patterns.
    List {
        /// Folder of *.wasm plugin files.
        dir: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Validate a plugin file, or every *.wasm in a folder; exits non-zero with the reason
    /// for each one that cannot be loaded.
    Check {
        /// A plugin file, or a folder of *.wasm files.
        path: PathBuf,
    },
    /// Create a new plugin crate (manifest, parse function, fixture, native test, README)
    /// that builds outside this repository.
    New(new::NewArgs),
    /// Pin the plugins of a folder (name, version, WIT version, sha256) in DIR/plugins.lock,
    /// for `run --locked`.
    Lock {
        /// Folder of *.wasm plugin files; plugins.lock is written there.
        dir: PathBuf,
    },
}

pub async fn dispatch(cmd: Command) -> Result<i32> {
    match cmd {
        Command::Run(args) => run::run(args).await,
        Command::Demo(args) => demo::demo(args).await,
        Command::ServeDemo { addr } => demo::serve(addr).await,
        Command::Plugins(PluginsCmd::List { dir, json }) => plugins::list(&dir, json).await,
        Command::Plugins(PluginsCmd::Check { path }) => plugins::check(&path).await,
        Command::Plugins(PluginsCmd::Lock { dir }) => plugins::lock(&dir).await,
        Command::Plugins(PluginsCmd::New(args)) => new::new(args),
        Command::Parse(args) => parse::parse_offline(args).await,
        Command::Fetch(args) => fetch::fetch(args).await,
        Command::Replay(args) => replay::replay(args).await,
        Command::Status(args) => status::status(args),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "sandcrawl",
                &mut std::io::stdout(),
            );
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for a in cmd.get_arguments() {
            if matches!(a.get_id().as_str(), "help" | "version") {
                continue;
            }
            if a.get_help().is_none() && a.get_long_help().is_none() {
                missing.push(format!("{path}: {}", a.get_id()));
            }
        }
        for s in cmd.get_subcommands() {
            if s.get_name() == "help" {
                continue;
            }
            if s.get_about().is_none() {
                missing.push(format!("{path} {} (the command)", s.get_name()));
            }
            walk(s, &format!("{path} {}", s.get_name()), missing);
        }
    }

    /// `sandcrawl help` and every `--help` explain every flag and argument.
    #[test]
    fn every_command_flag_and_argument_has_help() {
        let mut missing = Vec::new();
        walk(&Cli::command(), "sandcrawl", &mut missing);
        assert!(missing.is_empty(), "no help text for: {missing:#?}");
    }
}
