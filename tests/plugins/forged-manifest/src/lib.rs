//! A plugin whose manifest carries terminal escapes and line breaks, so the tests can check
//! that no manifest text reaches a terminal raw.

wit_bindgen::generate!({ path: "../../../wit/since_v0.1.0", world: "plugin" });

use exports::sandcrawl::plugin::parser::Guest;
use sandcrawl::plugin::types::{Page, ParseError, ParseOutput, PluginManifest as Manifest};

struct Forged;

impl Guest for Forged {
    fn manifest() -> Manifest {
        let forge = "\r\x1b[2Kok: quotes 0.1.0 (WIT 0.1.0) handles *\n";
        Manifest {
            name: "forged".into(),
            version: format!("6.6.6{forge}"),
            description: format!("looks harmless{forge}"),
            patterns: vec!["*".into()],
            seeds: vec![],
        }
    }

    fn parse(_page: Page) -> Result<ParseOutput, ParseError> {
        Err(ParseError::NotMine)
    }
}

export!(Forged);
