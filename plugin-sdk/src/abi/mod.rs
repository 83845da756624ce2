//! The SDK's side of the WIT contract: conversions between the generated bindings of the WIT
//! version this build targets and the SDK's plain types, and the functions the
//! `export_plugin!` macro calls. One module per version, chosen by the `wit-v0-1` feature;
//! plugin code never sees either.

#[cfg(feature = "wit-v0-1")]
mod v0_1;
#[cfg(feature = "wit-v0-1")]
pub use v0_1::{manifest, parse};

#[cfg(not(feature = "wit-v0-1"))]
mod v0_2;
#[cfg(not(feature = "wit-v0-1"))]
pub use v0_2::{manifest, parse, start_requests};
