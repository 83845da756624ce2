//! sandcrawl: a web crawler whose site-specific parse logic runs in sandboxed WebAssembly
//! plugins. See ARCHITECTURE.md for how the modules fit together.

pub mod charset;
pub mod config;
pub mod crawl;
pub mod demo;
pub mod escape;
pub mod extract;
pub mod fetch;
pub mod frontier;
#[cfg(test)]
mod fuzz;
pub mod monitor;
pub mod normalize;
pub mod plugin;
pub mod politeness;
pub mod progress;
pub mod robots;
pub mod sink;
pub mod sitemap;
pub mod summary;
pub mod warc;
