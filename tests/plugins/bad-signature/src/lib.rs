//! A plugin whose exports have the right names but other signatures.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use exports::sandcrawl::plugin::parser::Guest;

struct Bad;

impl Guest for Bad {
    fn manifest() -> String {
        "bad".into()
    }

    fn parse(_url: String) -> u32 {
        0
    }
}

export!(Bad);
