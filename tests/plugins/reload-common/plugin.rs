// The plugin both `reload` builds share; each crate defines `BUILD` and includes this file.

use sandcrawl_plugin_sdk::prelude::*;

pub struct Reload;

impl Plugin for Reload {
    fn new() -> Self {
        Reload
    }

    fn manifest(&self) -> Manifest {
        Manifest::new("reload", &format!("{BUILD}.0.0"))
            .description("Says which build parsed each page")
            .pattern("/r/*")
    }

    fn parse(&self, page: &Page, out: &mut Output) -> Result<(), ParseError> {
        out.item("page", &json!({ "build": BUILD, "title": page.select("title").text() }))?;
        for href in page.select("a[href]").attrs("href") {
            out.follow_href(page, href);
        }
        Ok(())
    }
}

export_plugin!(Reload);
