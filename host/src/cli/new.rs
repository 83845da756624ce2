//! `sandcrawl plugins new NAME [--dir D]`: a plugin crate that builds on its own, outside this
//! repository: its SDK dependency points at this sandcrawl's `plugin-sdk` (or `--sdk`), and it
//! comes with wasm SIMD on, a manifest and a parse function, a fixture, a native test and a
//! README. It writes files only inside the new folder and refuses one that exists.

use super::say::say;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct NewArgs {
    /// The plugin's name (manifest name and crate name): lowercase letters, digits, '-'.
    pub name: String,
    /// Folder to create the crate in (default: ./NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// The sandcrawl-plugin-sdk folder to depend on. Default: the one beside the sources this
    /// sandcrawl was built from.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
    /// The URL pattern the plugin claims.
    #[arg(long, default_value = "https://example.com/**")]
    pub pattern: String,
}

fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !ok {
        bail!(
            "plugin name {name:?}: use lowercase letters, digits and '-', starting with a letter (e.g. my-shop)"
        );
    }
    Ok(())
}

/// `my-shop` → `MyShop`.
fn type_name(name: &str) -> String {
    name.split('-')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn default_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().unwrap_or(sdk))
}

pub fn new(args: NewArgs) -> Result<i32> {
    check_name(&args.name)?;
    if args.pattern.chars().any(char::is_control) || args.pattern.contains('"') {
        bail!(
            "--pattern {:?}: no quotes or control characters",
            args.pattern
        );
    }
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() {
        bail!(
            "{} already exists; pick another --dir (nothing was written)",
            dir.display()
        );
    }
    let sdk = match args.sdk.or_else(default_sdk) {
        Some(s) if s.join("Cargo.toml").is_file() => s.canonicalize().unwrap_or(s),
        Some(s) => bail!(
            "--sdk {}: no Cargo.toml there; give the plugin-sdk folder of a sandcrawl checkout",
            s.display()
        ),
        None => bail!(
            "the plugin-sdk sources this sandcrawl was built from are gone; pass --sdk PATH/TO/sandcrawl/plugin-sdk"
        ),
    };
    let sdk_str = sdk.display().to_string();
    if sdk_str.contains('"') || sdk_str.contains('\\') {
        bail!("--sdk {sdk_str}: a path with quotes or backslashes cannot go into Cargo.toml");
    }
    let name = &args.name;
    let ty = type_name(name);
    let krate = name.replace('-', "_");
    let files: Vec<(&str, String)> = vec![
        ("Cargo.toml", cargo_toml(name, &sdk_str)),
        (".cargo/config.toml", CARGO_CONFIG.to_owned()),
        ("src/lib.rs", lib_rs(name, &ty, &args.pattern)),
        ("tests/fixtures/page.html", FIXTURE.to_owned()),
        ("tests/parse.rs", test_rs(&krate, &ty)),
        ("README.md", readme(name, &krate)),
        (".gitignore", "/target\n".to_owned()),
    ];
    for (path, text) in &files {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    say!(
        "created plugin {name} in {}; next: cd {} && cargo test && cargo build --release --target wasm32-wasip2 (see its README.md)",
        dir.display(),
        dir.display()
    );
    Ok(0)
}

fn cargo_toml(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# A crate of its own, even inside another workspace's folder.
[workspace]

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
sandcrawl-plugin-sdk = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}

[dev-dependencies]
serde_json = "1"

[profile.release]
opt-level = 3
"#
    )
}

const CARGO_CONFIG: &str = r#"# wasm's 128-bit SIMD makes HTML scanning in the guest faster; wasmtime enables it.
[target.wasm32-wasip2]
rustflags = ["-C", "target-feature=+simd128"]
"#;

fn lib_rs(name: &str, ty: &str, pattern: &str) -> String {
    format!(
        r#"//! The {name} sandcrawl plugin: one `page` item (URL and title) per page it claims, and
//! every link on it proposed to the crawl.

use sandcrawl_plugin_sdk::prelude::*;

pub struct {ty};

#[derive(Serialize)]
struct PageItem<'a> {{
    url: &'a str,
    title: &'a str,
}}

impl Plugin for {ty} {{
    fn new() -> Self {{
        {ty}
    }}

    fn manifest(&self) -> Manifest {{
        Manifest::new("{name}", env!("CARGO_PKG_VERSION"))
            .description("Titles of the pages it claims; follows every link")
            .pattern("{pattern}")
    }}

    fn parse(&self, page: &Page, out: &mut Output) -> Result<(), ParseError> {{
        // One pass for both selectors; `page.select("title").text()` alone is one pass too.
        let [title, anchors] = page.select_many(["title", "a[href]:not([rel~=nofollow])"]);
        let Some(title) = title.text() else {{
            return Err(ParseError::failed("page without a <title>"));
        }};
        out.item(
            "page",
            &PageItem {{
                url: &page.url,
                title,
            }},
        )?;
        for href in anchors.attrs("href") {{
            // Resolved against the page's <base href> or URL; mailto: and the like are dropped.
            out.follow_href(page, href);
        }}
        Ok(())
    }}
}}

export_plugin!({ty});
"#
    )
}

const FIXTURE: &str = r#"<!doctype html>
<html><head><title>An example page</title></head>
<body>
  <h1>An example page</h1>
  <a href="/next">Next</a>
  <a href="https://elsewhere.example.org/">Elsewhere</a>
</body></html>
"#;

fn test_rs(krate: &str, ty: &str) -> String {
    format!(
        r#"//! Native tests on saved pages: plain `cargo test`, no wasm involved.

use sandcrawl_plugin_sdk::testing::{{page_from_file, run}};
use {krate}::{ty};

#[test]
fn a_page_gives_its_title_and_links() {{
    let page = page_from_file(
        "https://example.com/",
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/page.html"),
    )
    .unwrap();
    let out = run::<{ty}>(&page).unwrap();
    assert_eq!(out.items.len(), 1);
    assert_eq!(out.items[0].value()["title"], "An example page");
    assert_eq!(
        out.follows(),
        ["https://example.com/next", "https://elsewhere.example.org/"]
    );
}}
"#
    )
}

fn readme(name: &str, krate: &str) -> String {
    format!(
        r#"# {name}, a sandcrawl plugin

    cargo test                                         # native tests on tests/fixtures
    rustup target add wasm32-wasip2                    # once
    cargo build --release --target wasm32-wasip2
    sandcrawl plugins check target/wasm32-wasip2/release/{krate}.wasm
    sandcrawl parse --plugin target/wasm32-wasip2/release/{krate}.wasm \
        --url https://example.com/ tests/fixtures/page.html

Save more fixtures with `sandcrawl fetch URL -o tests/fixtures/NAME.html`, and pin the output
of a page with `sandcrawl parse … > tests/NAME.golden.json` and `sandcrawl parse …
--expect tests/NAME.golden.json`. Crawl with `sandcrawl run --plugins
target/wasm32-wasip2/release/ --state crawl https://example.com/`.
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types() {
        assert!(check_name("my-shop2").is_ok());
        for bad in ["My", "-x", "x-", "a b", "", "ä"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(type_name("my-shop2"), "MyShop2");
    }
}
