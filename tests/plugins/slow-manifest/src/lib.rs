//! A plugin whose `manifest()` sleeps for a day, so the tests can check that loading it
//! (`plugins check`, a crawl's start) ends at the call's deadline.

wit_bindgen::generate!({ path: "../../../wit/since_v0.1.0", world: "plugin" });

use exports::sandcrawl::plugin::parser::Guest;
use sandcrawl::plugin::types::{Page, ParseError, ParseOutput, PluginManifest as Manifest};

struct Slow;

impl Guest for Slow {
    fn manifest() -> Manifest {
        std::thread::sleep(std::time::Duration::from_secs(86_400));
        Manifest {
            name: "slow".into(),
            version: "1.0.0".into(),
            description: String::new(),
            patterns: vec!["*".into()],
            seeds: vec![],
        }
    }

    fn parse(_page: Page) -> Result<ParseOutput, ParseError> {
        Err(ParseError::NotMine)
    }
}

export!(Slow);
