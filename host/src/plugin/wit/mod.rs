//! The versioned WIT contract, in one place: which `sandcrawl:plugin` versions this host
//! supports, one module of bindings per released folder (`wit/since_vX.Y.Z`, each with its
//! `bindgen!`, the host imports it offers and the conversions from and into the host's own
//! types), and enums that hold whichever bindings a component was bound to. Modelled on Zed's
//! `extension_host/src/wasm_host/wit.rs`.
//!
//! It owns the translation between versions and host types; it must not validate what a
//! plugin returns (`validate.rs` does, on host types, the same for every version) or decide
//! budgets (`limits.rs`).

mod since_v0_1;
mod since_v0_2;

use super::CallState;
use super::PageInput;
use super::validate::{PatternSyntax, RawItem, RawLink, RawManifest};
use anyhow::{Result, anyhow};
use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

/// A released WIT version this host can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WitVersion {
    V0_2,
    V0_1,
}

impl WitVersion {
    /// Every supported version, newest first.
    pub const ALL: &[WitVersion] = &[WitVersion::V0_2, WitVersion::V0_1];

    pub fn as_str(self) -> &'static str {
        match self {
            WitVersion::V0_2 => since_v0_2::VERSION,
            WitVersion::V0_1 => since_v0_1::VERSION,
        }
    }

    /// What a manifest's URL patterns mean in this version.
    pub fn pattern_syntax(self) -> PatternSyntax {
        match self {
            WitVersion::V0_2 => PatternSyntax::Url,
            WitVersion::V0_1 => PatternSyntax::Glob,
        }
    }

    /// The functions the `parser` interface exports in this version.
    pub fn parser_functions(self) -> &'static [&'static str] {
        match self {
            WitVersion::V0_2 => &["manifest", "start-requests", "parse"],
            WitVersion::V0_1 => &["manifest", "parse"],
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s)
    }

    /// The supported versions, for messages ("0.1.0, …").
    pub fn list() -> String {
        Self::ALL
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Adds the host imports of every supported version to `linker` (their interface names
/// carry the version, so they live side by side).
pub fn add_to_linker(linker: &mut Linker<CallState>) -> Result<()> {
    since_v0_2::add_to_linker(linker)?;
    since_v0_1::add_to_linker(linker)
}

/// A component's pre-instantiated bindings, for the version it was bound to.
pub enum BindingsPre {
    V0_2(since_v0_2::PluginPre<CallState>),
    V0_1(since_v0_1::PluginPre<CallState>),
}

impl BindingsPre {
    /// Checks the component's exports against `version`'s world.
    pub fn new(version: WitVersion, pre: InstancePre<CallState>) -> Result<Self> {
        match version {
            WitVersion::V0_2 => since_v0_2::PluginPre::new(pre)
                .map(BindingsPre::V0_2)
                .map_err(|e| anyhow!("{e:#}")),
            WitVersion::V0_1 => since_v0_1::PluginPre::new(pre)
                .map(BindingsPre::V0_1)
                .map_err(|e| anyhow!("{e:#}")),
        }
    }

    pub async fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Bindings> {
        match self {
            BindingsPre::V0_2(pre) => pre.instantiate_async(store).await.map(Bindings::V0_2),
            BindingsPre::V0_1(pre) => pre.instantiate_async(store).await.map(Bindings::V0_1),
        }
    }
}

/// An instance's bindings.
pub enum Bindings {
    V0_2(since_v0_2::Plugin),
    V0_1(since_v0_1::Plugin),
}

/// A plugin's own answer that a page gave nothing (as opposed to a trap).
pub enum Declined {
    NotMine,
    Failed(String),
}

impl Bindings {
    pub async fn manifest(&self, store: &mut Store<CallState>) -> wasmtime::Result<RawManifest> {
        match self {
            Bindings::V0_2(b) => since_v0_2::manifest(b, store).await,
            Bindings::V0_1(b) => since_v0_1::manifest(b, store).await,
        }
    }

    /// The plugin's start requests; a 0.1 plugin has none.
    pub async fn start_requests(
        &self,
        store: &mut Store<CallState>,
    ) -> wasmtime::Result<Vec<RawLink>> {
        match self {
            Bindings::V0_2(b) => since_v0_2::start_requests(b, store).await,
            Bindings::V0_1(_) => Ok(Vec::new()),
        }
    }

    /// One `parse` call: the page goes in as the version's types, the output comes back as
    /// the host's (not yet validated).
    pub async fn parse(
        &self,
        store: &mut Store<CallState>,
        page: &PageInput,
    ) -> wasmtime::Result<Result<(Vec<RawItem>, Vec<RawLink>), Declined>> {
        match self {
            Bindings::V0_2(b) => since_v0_2::parse(b, store, page).await,
            Bindings::V0_1(b) => since_v0_1::parse(b, store, page).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_listed_newest_first_and_parsed_exactly() {
        assert_eq!(WitVersion::parse("0.1.0"), Some(WitVersion::V0_1));
        assert_eq!(WitVersion::parse("0.2.0"), Some(WitVersion::V0_2));
        assert_eq!(WitVersion::parse("0.1"), None);
        assert_eq!(WitVersion::parse("9.0.0"), None);
        assert_eq!(WitVersion::list(), "0.2.0, 0.1.0");
        // Newest first: the order `Runtime::wit_version` relies on to pick the newest.
        let mut sorted = WitVersion::ALL.to_vec();
        sorted.sort();
        assert_eq!(sorted, WitVersion::ALL);
        for v in WitVersion::ALL {
            let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../wit")
                .join(format!("since_v{}", v.as_str()));
            assert!(folder.is_dir(), "{} has no WIT folder", v.as_str());
        }
    }
}
