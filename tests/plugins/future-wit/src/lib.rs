//! A plugin built against a WIT version this host does not know (9.0.0), so the tests can
//! check that loading it fails with a clear message instead of a link error.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use exports::sandcrawl::plugin::parser::Guest;
use sandcrawl::plugin::types::{Page, ParseError, ParseOutput, PluginManifest as Manifest};

struct Future;

impl Guest for Future {
    fn manifest() -> Manifest {
        Manifest {
            name: "future".into(),
            version: "9.0.0".into(),
            description: "built against sandcrawl:plugin@9.0.0".into(),
            patterns: vec!["*".into()],
            seeds: vec![],
        }
    }

    fn parse(_page: Page) -> Result<ParseOutput, ParseError> {
        Err(ParseError::NotMine)
    }
}

export!(Future);
