//! The sandcrawl plugin SDK: everything a plugin author touches.
//!
//! A plugin is a type implementing [`Plugin`], exported with [`export_plugin!`] and built with
//! `cargo build --release --target wasm32-wasip2`. The SDK owns the translation between the
//! WIT contract (`wit/since_v0.2.0`; with the `wit-v0-1` feature, the frozen
//! `wit/since_v0.1.0`, for hosts that predate 0.2) and plain Rust types, so plugin code never
//! sees generated bindings. It must not grow anything that reaches outside the sandbox: plugins
//! get a page and return items and links, nothing else.
//!
//! ```ignore
//! use sandcrawl_plugin_sdk::prelude::*;
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn new() -> Self { Hello }
//!     fn manifest(&self) -> Manifest {
//!         Manifest::new("hello", env!("CARGO_PKG_VERSION")).pattern("https://example.com/**")
//!     }
//!     fn parse(&self, page: &Page, out: &mut Output) -> Result<(), ParseError> {
//!         out.item("page", &json!({ "title": page.select("title").text() }))?;
//!         for href in page.select("a[href]").attrs("href") {
//!             out.follow_href(page, href);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_plugin!(Hello);
//! ```

mod abi;
mod host;
pub mod html;
mod router;
mod select;
pub mod testing;
mod types;

pub use host::{config, log};
pub use router::{Route, Router};
pub use sandcrawl_pattern::UrlPattern;
pub use select::{Node, Selection};
pub use types::{
    Body, Item, LinkKind, LogLevel, Manifest, Method, Output, Page, ParseError, ProposedLink,
    Rendering, Request,
};

pub use serde;
pub use serde_json;
pub use url;

#[cfg(feature = "dom")]
pub use scraper;

/// The contract version this SDK builds plugins against.
#[cfg(not(feature = "wit-v0-1"))]
pub const WIT_VERSION: &str = "0.2.0";
/// The contract version this SDK builds plugins against.
#[cfg(feature = "wit-v0-1")]
pub const WIT_VERSION: &str = "0.1.0";

/// Everything a plugin usually needs in one `use`.
pub mod prelude {
    pub use crate::html::{Extractor, Matches, Record};
    pub use crate::{
        Item, LinkKind, LogLevel, Manifest, Node, Output, Page, ParseError, Plugin, ProposedLink,
        Request, Router, Selection, UrlPattern, export_plugin,
    };
    pub use serde::Serialize;
    pub use serde_json::json;
}

/// A site-specific parser.
///
/// The host calls `new` for every page, so it should be cheap. The wasm instance around it may
/// be reused for later pages (only `static`s survive that), or it may be fresh: do not rely on
/// state carried between pages, nor on its absence.
pub trait Plugin {
    /// Builds the plugin. Read [`config`] here if the plugin is configurable.
    fn new() -> Self
    where
        Self: Sized;

    /// Name, version, URL patterns and default seeds.
    fn manifest(&self) -> Manifest;

    /// Whether this page should be parsed at all. The default accepts successful HTML pages;
    /// everything else is reported to the host as "not mine" without calling [`Plugin::parse`].
    fn wants(&self, page: &Page) -> bool {
        page.is_success() && page.is_html()
    }

    /// Extracts items and proposes links for one page.
    fn parse(&self, page: &Page, out: &mut Output) -> Result<(), ParseError>;

    /// The crawl's first requests, built from [`config`] (one search per keyword, say). The
    /// host uses them, with the manifest's seeds, when the crawl names no seeds. None by
    /// default. Needs WIT 0.2 (a `wit-v0-1` build never calls it).
    fn start_requests(&self) -> Vec<Request> {
        Vec::new()
    }
}

/// Runs a plugin on a page the way the host does: `wants`, then `parse`.
pub fn run_plugin<P: Plugin>(plugin: &P, page: &Page) -> Result<Output, ParseError> {
    if !plugin.wants(page) {
        return Err(ParseError::NotMine);
    }
    let mut out = Output::default();
    plugin.parse(page, &mut out)?;
    Ok(out)
}

/// Generated WIT bindings. Public only so that [`export_plugin!`] can reach them.
#[doc(hidden)]
#[cfg(not(feature = "wit-v0-1"))]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit/since_v0.2.0",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_wit",
        default_bindings_module: "sandcrawl_plugin_sdk::wit",
    });
}

/// Generated WIT bindings (the frozen 0.1 contract). Public only for [`export_plugin!`].
#[doc(hidden)]
#[cfg(feature = "wit-v0-1")]
pub mod wit {
    wit_bindgen::generate!({
        path: "../wit/since_v0.1.0",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_wit",
        default_bindings_module: "sandcrawl_plugin_sdk::wit",
    });
}

#[doc(hidden)]
pub mod __private {
    #[cfg(not(feature = "wit-v0-1"))]
    pub use crate::abi::start_requests;
    pub use crate::abi::{manifest, parse};
    pub use crate::wit::exports::sandcrawl::plugin::parser::Guest;
}

/// Exports a [`Plugin`] implementation as the component's `parser` interface.
///
/// On non-wasm targets this only type-checks the plugin, so the same crate builds natively
/// for `cargo test`.
#[cfg(not(feature = "wit-v0-1"))]
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __SandcrawlExport;

        impl $crate::__private::Guest for __SandcrawlExport {
            fn manifest() -> $crate::wit::sandcrawl::plugin::types::PluginManifest {
                $crate::__private::manifest::<$plugin>()
            }
            fn start_requests() -> ::std::vec::Vec<$crate::wit::sandcrawl::plugin::types::Request>
            {
                $crate::__private::start_requests::<$plugin>()
            }
            fn parse(
                page: $crate::wit::sandcrawl::plugin::types::Page,
            ) -> ::core::result::Result<
                $crate::wit::sandcrawl::plugin::types::ParseOutput,
                $crate::wit::sandcrawl::plugin::types::ParseError,
            > {
                $crate::__private::parse::<$plugin>(page)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::wit::export_wit!(__SandcrawlExport with_types_in $crate::wit);
    };
}

/// Exports a [`Plugin`] implementation as the component's `parser` interface (WIT 0.1).
#[cfg(feature = "wit-v0-1")]
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[doc(hidden)]
        pub struct __SandcrawlExport;

        impl $crate::__private::Guest for __SandcrawlExport {
            fn manifest() -> $crate::wit::sandcrawl::plugin::types::PluginManifest {
                $crate::__private::manifest::<$plugin>()
            }
            fn parse(
                page: $crate::wit::sandcrawl::plugin::types::Page,
            ) -> ::core::result::Result<
                $crate::wit::sandcrawl::plugin::types::ParseOutput,
                $crate::wit::sandcrawl::plugin::types::ParseError,
            > {
                $crate::__private::parse::<$plugin>(page)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::wit::export_wit!(__SandcrawlExport with_types_in $crate::wit);
    };
}
