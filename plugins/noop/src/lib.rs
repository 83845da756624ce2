//! Does nothing, on every page: measures the fixed cost of the plugin path
//! (instantiate + call + copy results) in the benchmarks.

use sandcrawl_plugin_sdk::prelude::*;

pub struct Noop;

impl Plugin for Noop {
    fn new() -> Self {
        Noop
    }

    fn manifest(&self) -> Manifest {
        Manifest::new("noop", env!("CARGO_PKG_VERSION"))
            .description("Returns nothing; for measuring plugin overhead")
            .pattern("**")
    }

    fn wants(&self, _page: &Page) -> bool {
        true
    }

    fn parse(&self, _page: &Page, _out: &mut Output) -> Result<(), ParseError> {
        Ok(())
    }
}

export_plugin!(Noop);
