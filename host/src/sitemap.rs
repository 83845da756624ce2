//! Sitemap files into URLs: XML `urlset` and `sitemapindex` (with or without the namespace),
//! plain-text sitemaps, RSS and Atom feeds, gzip-compressed or not, within the protocol's
//! caps (50,000 URLs and 50 MB uncompressed per file).
//!
//! It owns the format only: bytes in, entries out. It must not fetch, queue or decide scope
//! (`crawl::sitemaps` does); a malformed file gives the entries read before the fault and an
//! error that names it, never a panic.

use quick_xml::events::Event;
use std::io::Read as _;

/// Most URLs one sitemap file may list (sitemaps.org protocol).
pub const MAX_URLS: usize = 50_000;
/// Largest uncompressed sitemap file (sitemaps.org protocol).
pub const MAX_BYTES: usize = 50 * 1024 * 1024;

/// A calendar date, as `lastmod` and `--since` give it (time of day and zone are ignored:
/// filtering is by the date as written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    /// W3C datetime forms: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, optionally followed by `T…`.
    /// A missing month or day counts as the first.
    pub fn parse(s: &str) -> Option<Date> {
        let s = s.trim();
        let date = s.split(['T', 't', ' ']).next().unwrap_or(s);
        let mut parts = date.split('-');
        let num = |p: Option<&str>, len: usize| -> Option<u32> {
            let p = p?;
            (p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        };
        let year = num(parts.next(), 4)?;
        let month = match parts.next() {
            Some(m) => num(Some(m), 2)?,
            None => 1,
        };
        let day = match parts.next() {
            Some(d) => num(Some(d), 2)?,
            None => 1,
        };
        if parts.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
            return None;
        }
        Some(Date {
            year: year as u16,
            month: month as u8,
            day: day as u8,
        })
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// One `<url>` or `<sitemap>` entry (or a line of a text sitemap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The location as the file gives it, trimmed and unescaped (not yet a parsed URL).
    pub loc: String,
    pub lastmod: Option<Date>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    UrlSet,
    Index,
    Text,
    Feed,
    /// XML with a root element that is none of the above.
    Unknown,
}

/// What one sitemap file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sitemap {
    pub format: Format,
    /// Page URLs (`urlset`, text, feeds).
    pub urls: Vec<Entry>,
    /// Further sitemap files (`sitemapindex`).
    pub sitemaps: Vec<Entry>,
    /// Entries past `MAX_URLS` that were dropped.
    pub dropped: usize,
    /// Why reading stopped early (malformed XML), with what was read before kept.
    pub error: Option<String>,
}

/// Undoes gzip when the bytes are gzip (by their magic number, whatever the file name or
/// Content-Type says), refusing output over `MAX_BYTES`.
pub fn decompress(body: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    if !body.starts_with(&[0x1f, 0x8b]) {
        if body.len() > MAX_BYTES {
            return Err(format!("over {MAX_BYTES} bytes (the protocol's cap)"));
        }
        return Ok(body.into());
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(body)
        .take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("bad gzip data: {e}"))?;
    if out.len() > MAX_BYTES {
        return Err(format!(
            "over {MAX_BYTES} bytes once decompressed (the protocol's cap)"
        ));
    }
    Ok(out.into())
}

/// Reads a (decompressed) sitemap file.
pub fn parse(body: &[u8]) -> Sitemap {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'<') {
        parse_xml(body)
    } else {
        parse_text(body)
    }
}

fn parse_text(body: &[u8]) -> Sitemap {
    let mut s = Sitemap {
        format: Format::Text,
        urls: Vec::new(),
        sitemaps: Vec::new(),
        dropped: 0,
        error: None,
    };
    for line in String::from_utf8_lossy(body).lines() {
        let line = line.trim();
        if !(line.starts_with("http://") || line.starts_with("https://")) {
            continue;
        }
        push(&mut s.urls, &mut s.dropped, line.to_owned(), None);
    }
    s
}

fn push(list: &mut Vec<Entry>, dropped: &mut usize, loc: String, lastmod: Option<Date>) {
    if list.len() >= MAX_URLS {
        *dropped += 1;
    } else {
        list.push(Entry { loc, lastmod });
    }
}

/// The element whose text is being read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    None,
    Loc,
    LastMod,
    /// Text right inside `<sitemap>` or `<url>` (some sites omit `<loc>`).
    Bare,
    /// RSS `<link>`.
    Link,
}

fn parse_xml(body: &[u8]) -> Sitemap {
    let mut reader = quick_xml::Reader::from_reader(body);
    reader.config_mut().check_end_names = false;
    let mut s = Sitemap {
        format: Format::Unknown,
        urls: Vec::new(),
        sitemaps: Vec::new(),
        dropped: 0,
        error: None,
    };
    let mut root_seen = false;
    // Inside an entry: `<url>`/`<item>`/`<entry>` (a page) or `<sitemap>` (an index entry).
    let mut entry: Option<bool> = None; // Some(true): sitemap entry
    let mut field = Field::None;
    let (mut loc, mut lastmod, mut bare, mut text) =
        (String::new(), String::new(), String::new(), String::new());
    loop {
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) => {
                s.error = Some(format!(
                    "malformed XML at byte {}: {e}",
                    reader.error_position()
                ));
                break;
            }
        };
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                let empty = matches!(event, Event::Empty(_));
                let name = e.local_name().as_ref().to_ascii_lowercase();
                if !root_seen {
                    root_seen = true;
                    s.format = match name.as_slice() {
                        b"urlset" => Format::UrlSet,
                        b"sitemapindex" => Format::Index,
                        b"rss" | b"feed" | b"rdf" => Format::Feed,
                        _ => Format::Unknown,
                    };
                    continue;
                }
                match (name.as_slice(), entry) {
                    (b"url" | b"item" | b"entry", None) => {
                        entry = Some(false);
                        (loc, lastmod, bare) = Default::default();
                    }
                    (b"sitemap", None) => {
                        entry = Some(true);
                        (loc, lastmod, bare) = Default::default();
                    }
                    (b"loc", Some(_)) => field = Field::Loc,
                    (b"lastmod" | b"updated" | b"pubdate", Some(_)) => field = Field::LastMod,
                    (b"link", Some(false)) => {
                        // Atom: <link href="…"/>; RSS: <link>…</link>.
                        match e.try_get_attribute("href") {
                            Ok(Some(href)) => {
                                if let Ok(v) = href.unescape_value() {
                                    loc = v.into_owned();
                                }
                            }
                            _ => field = Field::Link,
                        }
                    }
                    _ => field = Field::None,
                }
                text.clear();
                if empty {
                    // `<loc/>`, `<url/>`: nothing to read, and no end tag will come.
                    field = Field::None;
                    if matches!(name.as_slice(), b"url" | b"item" | b"entry" | b"sitemap") {
                        entry = None;
                    }
                }
            }
            Event::Text(t) => {
                let target = match field {
                    Field::None if entry.is_some() => Field::Bare,
                    f => f,
                };
                if target != Field::None {
                    text.push_str(&t.decode().unwrap_or_default());
                    field = target;
                }
            }
            Event::CData(t) if field != Field::None => {
                text.push_str(&String::from_utf8_lossy(&t));
            }
            Event::GeneralRef(r) => {
                if field == Field::None && entry.is_none() {
                    continue;
                }
                if field == Field::None {
                    field = Field::Bare;
                }
                if let Ok(Some(c)) = r.resolve_char_ref() {
                    text.push(c);
                } else if let Ok(name) = r.decode()
                    && let Some(v) = quick_xml::escape::resolve_predefined_entity(&name)
                {
                    text.push_str(v);
                }
            }
            Event::End(e) => {
                let name = e.local_name().as_ref().to_ascii_lowercase();
                let value = std::mem::take(&mut text).trim().to_owned();
                match field {
                    Field::Loc | Field::Link if loc.is_empty() => loc = value,
                    Field::LastMod => lastmod = value,
                    Field::Bare if bare.is_empty() => bare = value,
                    _ => {}
                }
                field = Field::None;
                let closes = matches!(
                    (name.as_slice(), entry),
                    (b"url" | b"item" | b"entry", Some(false)) | (b"sitemap", Some(true))
                );
                if closes {
                    let target = if entry == Some(true) {
                        &mut s.sitemaps
                    } else {
                        &mut s.urls
                    };
                    let l = if loc.is_empty() {
                        std::mem::take(&mut bare)
                    } else {
                        std::mem::take(&mut loc)
                    };
                    if !l.is_empty() {
                        push(target, &mut s.dropped, l, Date::parse(&lastmod));
                    }
                    entry = None;
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_w3c_forms() {
        let d = |y, m, day| {
            Some(Date {
                year: y,
                month: m,
                day,
            })
        };
        assert_eq!(Date::parse("2024-05-06"), d(2024, 5, 6));
        assert_eq!(Date::parse("2024-05-06T10:00:00+02:00"), d(2024, 5, 6));
        assert_eq!(Date::parse("2024-05"), d(2024, 5, 1));
        assert_eq!(Date::parse("2024"), d(2024, 1, 1));
        assert_eq!(Date::parse("yesterday"), None);
        assert_eq!(Date::parse("2024-13-01"), None);
        assert!(Date::parse("2024-01-02") < Date::parse("2024-02-01"));
    }

    #[test]
    fn urlset_index_text_and_lenient_forms() {
        let s = parse(
            br#"<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
            <url><loc> http://a.test/1?x=1&amp;y=2 </loc><lastmod>2024-01-02</lastmod></url>
            <url><loc><![CDATA[http://a.test/2]]></loc></url></urlset>"#,
        );
        assert_eq!(s.format, Format::UrlSet);
        assert_eq!(
            s.urls,
            [
                Entry {
                    loc: "http://a.test/1?x=1&y=2".into(),
                    lastmod: Date::parse("2024-01-02")
                },
                Entry {
                    loc: "http://a.test/2".into(),
                    lastmod: None
                }
            ]
        );
        let idx = parse(b"<sitemapindex><sitemap>\nhttp://a.test/s1.xml\n</sitemap><sitemap><loc>http://a.test/s2.xml.gz</loc></sitemap></sitemapindex>");
        assert_eq!(idx.format, Format::Index);
        let locs: Vec<&str> = idx.sitemaps.iter().map(|e| e.loc.as_str()).collect();
        assert_eq!(locs, ["http://a.test/s1.xml", "http://a.test/s2.xml.gz"]);
        let txt = parse(b"\xEF\xBB\xBFhttp://a.test/a\n\n# not a url\nhttps://a.test/b\r\n");
        assert_eq!(txt.format, Format::Text);
        assert_eq!(txt.urls.len(), 2);
    }

    #[test]
    fn malformed_xml_keeps_what_came_before_and_says_where() {
        let s = parse(b"<urlset><url><loc>http://a.test/ok</loc></url><url><loc>http://a.test/x</loc></url><<<");
        assert_eq!(s.urls.len(), 2);
        assert!(
            s.error
                .as_deref()
                .is_some_and(|e| e.contains("malformed XML")),
            "{s:?}"
        );
    }

    #[test]
    fn caps_hold() {
        let mut body = String::new();
        for i in 0..MAX_URLS + 5 {
            body.push_str(&format!("http://a.test/{i}\n"));
        }
        let s = parse(body.as_bytes());
        assert_eq!((s.urls.len(), s.dropped), (MAX_URLS, 5));
        // A gzip bomb stops at the cap.
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut enc, &vec![b' '; MAX_BYTES + 10]).unwrap_or_default();
        let bomb = enc.finish().unwrap_or_default();
        assert!(bomb.len() < 1_000_000);
        assert!(decompress(&bomb).is_err());
    }

    /// crawler-commons' real-world sitemaps (../shared/testdata): every file reads without a
    /// panic, and the plain ones give the URLs they list.
    #[test]
    fn crawler_commons_sitemaps() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/testdata/crawler-commons-sitemaps");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            panic!(
                "{} is missing: the shared test suites live beside the repository",
                dir.display()
            );
        };
        let mut files: Vec<std::path::PathBuf> = entries.flatten().map(|e| e.path()).collect();
        files.extend(
            std::fs::read_dir(dir.join("extension"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path()),
        );
        let mut read = 0;
        for f in files.iter().filter(|f| f.is_file()) {
            let raw = std::fs::read(f).unwrap_or_default();
            if let Ok(body) = decompress(&raw) {
                let s = parse(&body);
                read += 1;
                assert!(s.urls.len() + s.sitemaps.len() <= MAX_URLS);
            }
        }
        assert!(read >= 15, "read {read} files");
        let get = |name: &str| {
            let raw = std::fs::read(dir.join(name)).unwrap_or_default();
            parse(&decompress(&raw).unwrap_or_default())
        };
        let badns = get("sitemap.badns.xml");
        let locs: Vec<&str> = badns.urls.iter().map(|e| e.loc.as_str()).collect();
        assert_eq!(
            locs,
            ["http://www.example.com/1", "http://www.example.com/2"]
        );
        let index = get("sitemap.index.xml");
        assert_eq!(index.format, Format::Index);
        assert!(
            index.sitemaps.first().is_some_and(
                |e| e.loc == "https://example.com/sitemap.jss?portalCode=10260&lang=en"
            ),
            "{:?}",
            index.sitemaps.first()
        );
        let gz = get("sitemap.txt.gz");
        assert_eq!((gz.format, gz.urls.len()), (Format::Text, 5), "{gz:?}");
        assert_eq!(
            gz.urls[1].loc,
            "http://www.example.com/catalog?item=12&desc=vacation_hawaii"
        );
        assert_eq!(get("sitemap.txt").urls.len(), 2);
        assert_eq!(get("sitemap-with-bom.txt").format, Format::Text);
        assert!(!get("sitemap-with-bom.txt").urls.is_empty());
        assert!(!get("atom.xml").urls.is_empty(), "Atom entries' links");
    }
}
