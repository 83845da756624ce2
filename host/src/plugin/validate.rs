//! Checks everything a plugin hands back before the host uses it: manifests, URL patterns,
//! items and links.
//!
//! It owns the rules (counts, sizes, reserved names, control characters) and turns the WIT
//! types into the host's own. Item JSON is checked without building a value tree: an item is
//! kept as the text the plugin wrote, so its memory stays the size of that text and numbers
//! stay exactly as written. It must not run plugins.

use super::{ItemOut, LinkKind, LinkOut, ParseOutput, PluginError};
use crate::escape::{escape, has_control};
use anyhow::{Result, anyhow, bail};
use serde_json::value::RawValue;

/// URL patterns one plugin (or one `[plugins.NAME] patterns`) may declare.
pub const MAX_PATTERNS: usize = 1_000;
/// Bytes of one URL pattern.
pub const MAX_PATTERN_BYTES: usize = 2_048;
/// Seeds one manifest may name.
pub const MAX_SEEDS: usize = 10_000;
/// Item kinds the host writes itself; a plugin may not mimic them.
pub const RESERVED_KINDS: &[&str] = &["file"];

/// A manifest in host terms, before checking.
pub struct RawManifest {
    pub name: String,
    pub version: String,
    pub description: String,
    pub patterns: Vec<String>,
    pub seeds: Vec<String>,
    pub rendering: super::Rendering,
}

/// Refuses a manifest that could not work or could forge terminal output; returns it with
/// the description escaped (the one free-text field, where a line break is plausible).
pub fn check_manifest(mut m: RawManifest) -> Result<RawManifest> {
    let name_ok = !m.name.is_empty()
        && m.name.len() <= 64
        && m.name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !name_ok {
        bail!("name {:?} must be 1-64 of a-z, 0-9, '-', '_'", m.name);
    }
    if m.version.trim().is_empty()
        || m.version.len() > 64
        || has_control(&m.version)
        || m.version.contains(char::is_whitespace)
    {
        bail!(
            "version {:?} must be 1-64 printable characters without spaces (e.g. \"1.2.0\")",
            m.version
        );
    }
    if m.description.len() > 4096 {
        bail!("description is {} bytes; at most 4096", m.description.len());
    }
    m.description = escape(&m.description).into_owned();
    if m.patterns.is_empty() {
        bail!("no URL patterns; add at least one (e.g. \"https://example.com/*\")");
    }
    check_patterns(&m.patterns)?;
    if m.seeds.len() > MAX_SEEDS {
        bail!(
            "{} seeds; a manifest may name at most {MAX_SEEDS}",
            m.seeds.len()
        );
    }
    for s in &m.seeds {
        if has_control(s) || s.len() > 8192 {
            bail!(
                "seed {:?} has control characters or is over 8192 bytes",
                escape(&truncated(s, 200))
            );
        }
        let u = url::Url::parse(s).map_err(|e| anyhow!("seed {s:?} is not a URL: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            bail!("seed {s:?} is not http(s)");
        }
    }
    Ok(m)
}

fn truncated(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Bounds on URL patterns, checked before any of them is compiled.
pub fn check_patterns(patterns: &[String]) -> Result<()> {
    if patterns.len() > MAX_PATTERNS {
        bail!(
            "{} URL patterns; at most {MAX_PATTERNS} (use broader globs, e.g. \"https://example.com/*\")",
            patterns.len()
        );
    }
    for p in patterns {
        if p.len() > MAX_PATTERN_BYTES {
            bail!(
                "a URL pattern of {} bytes; at most {MAX_PATTERN_BYTES}",
                p.len()
            );
        }
        if has_control(p) {
            bail!("URL pattern {:?} contains control characters", escape(p));
        }
    }
    Ok(())
}

/// What a plugin's URL patterns mean: WIT 0.1 globs, or WIT 0.2 URL patterns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatternSyntax {
    /// `*` matches any run of characters, `/` included (WIT 0.1).
    Glob,
    /// `*` within one path segment, `**` across segments, `/…` for the path alone (WIT 0.2,
    /// `sandcrawl_pattern`).
    Url,
}

/// Compiled URL patterns, in either syntax.
pub enum Patterns {
    Glob(globset::GlobSet),
    Url(Vec<sandcrawl_pattern::UrlPattern>),
}

impl Patterns {
    pub fn empty() -> Self {
        Patterns::Glob(globset::GlobSet::empty())
    }

    pub fn build(syntax: PatternSyntax, patterns: &[String]) -> Result<Self> {
        match syntax {
            PatternSyntax::Glob => build_globs(patterns).map(Patterns::Glob),
            PatternSyntax::Url => {
                check_patterns(patterns)?;
                Ok(Patterns::Url(
                    patterns
                        .iter()
                        .map(|p| sandcrawl_pattern::UrlPattern::new(p))
                        .collect(),
                ))
            }
        }
    }

    pub fn is_match(&self, url: &str) -> bool {
        match self {
            Patterns::Glob(g) => g.is_match(url),
            Patterns::Url(ps) => ps.iter().any(|p| p.matches(url)),
        }
    }
}

/// URL globs: `*` matches any run of characters, `/` included.
pub fn build_globs(patterns: &[String]) -> Result<globset::GlobSet> {
    check_patterns(patterns)?;
    let mut b = globset::GlobSetBuilder::new();
    for p in patterns {
        let g = globset::GlobBuilder::new(p)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| anyhow!("pattern {p:?}: {e}"))?;
        b.add(g);
    }
    b.build().map_err(|e| anyhow!("{e}"))
}

/// One item as the plugin gave it.
pub struct RawItem {
    pub kind: String,
    pub json: String,
}

/// One link (or, from WIT 0.2, request) as the plugin gave it.
pub struct RawLink {
    pub url: String,
    pub priority: Option<i32>,
    pub kind: LinkKind,
    /// JSON text (a 0.1 plugin's string arrives as a JSON string).
    pub metadata: Option<String>,
    pub request: Option<crate::fetch::RequestSpec>,
}

impl RawLink {
    fn bytes(&self) -> usize {
        let request = self.request.as_ref().map_or(0, |r| {
            r.headers
                .iter()
                .map(|(n, v)| n.len() + v.len())
                .sum::<usize>()
                + r.body.as_ref().map_or(0, |b| b.text().len())
        });
        self.url.len() + self.metadata.as_ref().map_or(0, String::len) + request
    }
}

/// Applies `limits` to a call's output and converts it.
pub fn check_output(
    limits: &super::Limits,
    items: Vec<RawItem>,
    links: Vec<RawLink>,
) -> Result<ParseOutput, PluginError> {
    if items.len() > limits.max_items {
        return Err(PluginError::OutputLimit(format!(
            "{} items (limits.max_items = {})",
            items.len(),
            limits.max_items
        )));
    }
    if links.len() > limits.max_links {
        return Err(PluginError::OutputLimit(format!(
            "{} links (limits.max_links = {})",
            links.len(),
            limits.max_links
        )));
    }
    let bytes: usize = items
        .iter()
        .map(|i| i.json.len() + i.kind.len())
        .chain(links.iter().map(RawLink::bytes))
        .sum();
    if bytes as u64 > limits.max_output_mib.saturating_mul(1024 * 1024) {
        return Err(PluginError::OutputLimit(format!(
            "{bytes} bytes of items and links (limits.max_output_mib = {})",
            limits.max_output_mib
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for (n, i) in items.into_iter().enumerate() {
        out.push(check_item(n, i)?);
    }
    let links = check_links(links)?;
    Ok(ParseOutput { items: out, links })
}

/// Checks each link's request (method, headers, body) and metadata (one JSON document).
pub fn check_links(links: Vec<RawLink>) -> Result<Vec<LinkOut>, PluginError> {
    links
        .into_iter()
        .enumerate()
        .map(|(n, k)| {
            if let Some(m) = &k.metadata
                && let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(m)
            {
                return Err(PluginError::InvalidOutput(format!(
                    "request #{n}: its metadata is not valid JSON: {e}"
                )));
            }
            if let Some(r) = &k.request
                && let Err(e) = r.check()
            {
                return Err(PluginError::InvalidOutput(format!(
                    "request #{n} ({}): {}",
                    escape(&truncated(&k.url, 200)),
                    escape(&e)
                )));
            }
            Ok(LinkOut {
                url: k.url,
                priority: k.priority.unwrap_or(0),
                kind: k.kind,
                metadata: k.metadata,
                request: k.request.and_then(crate::fetch::RequestSpec::nontrivial),
            })
        })
        .collect()
}

/// Validates one item's JSON in a single pass that builds no value tree, and keeps its text.
pub fn check_item(n: usize, item: RawItem) -> Result<ItemOut, PluginError> {
    let RawItem { kind, json } = item;
    if kind.is_empty() || kind.len() > 128 || has_control(&kind) {
        return Err(PluginError::InvalidOutput(format!(
            "item #{n} has an empty, over-long or unprintable kind"
        )));
    }
    if RESERVED_KINDS.contains(&kind.as_str()) {
        return Err(PluginError::InvalidOutput(format!(
            "item #{n} has kind {kind:?}, which is reserved for the host's own records; choose another kind"
        )));
    }
    let shown = escape(&kind).into_owned();
    let raw: Box<RawValue> = serde_json::from_str(&json).map_err(|e| {
        PluginError::InvalidOutput(format!("item #{n} ({shown}) is not valid JSON: {e}"))
    })?;
    if !raw.get().starts_with('{') {
        return Err(PluginError::InvalidOutput(format!(
            "item #{n} ({shown}) is JSON but not an object"
        )));
    }
    // JSON strings cannot hold a raw line break, so any CR or LF is whitespace between
    // tokens; one line per item in JSONL needs it gone.
    let raw = if raw.get().contains(['\n', '\r']) {
        let flat = raw.get().replace(['\n', '\r'], " ");
        RawValue::from_string(flat).map_err(|e| {
            PluginError::InvalidOutput(format!("item #{n} ({shown}) is not valid JSON: {e}"))
        })?
    } else {
        raw
    };
    Ok(ItemOut { kind, json: raw })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(json: &str) -> Result<ItemOut, PluginError> {
        check_item(
            0,
            RawItem {
                kind: "k".into(),
                json: json.into(),
            },
        )
    }

    #[test]
    fn items_keep_their_text_numbers_and_order() {
        let i =
            item("{\"z\": 12345678901234567890123, \"a\":\n 0.1000000000000000055511151231257827}")
                .expect("valid");
        assert_eq!(
            i.json.get(),
            "{\"z\": 12345678901234567890123, \"a\":  0.1000000000000000055511151231257827}"
        );
        assert!(item("[1]").is_err_and(|e| e.to_string().contains("not an object")));
        assert!(item("{not json").is_err_and(|e| e.to_string().contains("not valid JSON")));
        assert!(item("{\"a\":1} x").is_err());
        let file = check_item(
            0,
            RawItem {
                kind: "file".into(),
                json: "{}".into(),
            },
        );
        assert!(file.is_err_and(|e| e.to_string().contains("reserved")));
    }

    #[test]
    fn pattern_bounds() {
        let many: Vec<String> = (0..MAX_PATTERNS + 1)
            .map(|i| format!("http://x/{i}/*"))
            .collect();
        let e = build_globs(&many)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("at most 1000"), "{e}");
        let long = vec!["x".repeat(MAX_PATTERN_BYTES + 1)];
        assert!(build_globs(&long).is_err());
        assert!(build_globs(&["http://a/\x1b[2K*".to_owned()]).is_err());
    }

    fn manifest(version: &str, description: &str) -> RawManifest {
        RawManifest {
            name: "p".into(),
            version: version.into(),
            description: description.into(),
            patterns: vec!["http://x/*".into()],
            seeds: vec![],
            rendering: crate::plugin::Rendering::Http,
        }
    }

    #[test]
    fn manifest_text_cannot_reach_a_terminal_raw() {
        assert!(check_manifest(manifest("0.1.0\r\nok: quotes 0.1.0", "")).is_err());
        assert!(check_manifest(manifest("\x1b[31m1", "")).is_err());
        let m = check_manifest(manifest("1.0.0", "line one\nline two \x1b[2K")).expect("ok");
        assert_eq!(m.description, "line one\\nline two \\u{1b}[2K");
    }
}
