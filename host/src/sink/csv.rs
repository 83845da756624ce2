//! CSV with real columns: one file per item kind (`items.quote.csv`, `items.author.csv`
//! beside the `--out` path), the fixed item columns, then one column per top-level field in
//! the order the plugin wrote them, then `extra`.
//!
//! A kind's columns are taken from its first item and written as the file's header; on resume
//! they are read back from that header, so they never change during a crawl. A field a later
//! item adds goes into `extra` (a JSON object) instead of shifting the columns. Strings are
//! written as text, `null` as an empty cell, and numbers, booleans, arrays and objects as
//! their JSON. Crash safety is the JSONL sink's, per file: the commit token records every
//! kind's committed length, and resume cuts each file back to it (a file of a kind first seen
//! after the last commit is removed). It owns the CSV layout only; it must not decide what
//! an item contains.
//!
//! At most `MAX_KINDS` kinds get a file of their own: every file stays open while the crawl
//! runs, and a plugin inventing a kind per item would otherwise use up the process's open
//! files. Items of further kinds go to one more file, `STEM.~other-kinds.csv`, with their
//! kind and their fields as JSON, so nothing is lost.

use super::{Item, Ordered, Sink, Token, cut_to_committed, open_for_resume};
use anyhow::{Context as _, Result, bail};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The columns every file starts with.
const FIXED: [&str; 6] = [
    "id",
    "url",
    "fetched_at",
    "plugin",
    "plugin_version",
    "plugin_sha256",
];
/// The last column: fields not in the header, as a JSON object.
const EXTRA: &str = "extra";

/// Kinds with a file of their own, per output.
pub const MAX_KINDS: usize = 64;

/// The key of the file for kinds past `MAX_KINDS`: a control character, which no real kind
/// may contain (`plugin::validate`), so it never meets one.
const OTHER_KINDS: &str = "\u{1}other";
/// That file's name after the stem: `~` is never in a real kind's file name (it is replaced).
const OTHER_KINDS_FILE: &str = "~other-kinds";

/// The commit token: each kind's committed length and item count.
#[derive(serde::Serialize, serde::Deserialize, Default)]
pub(super) struct CsvToken {
    csv: BTreeMap<String, Token>,
}

impl CsvToken {
    pub(super) fn parse(raw: &[u8]) -> Result<Self> {
        match serde_json::from_slice::<CsvToken>(raw) {
            Ok(t) => Ok(t),
            Err(_) if serde_json::from_slice::<Token>(raw).is_ok() => bail!(
                "this crawl's CSV output was started as one file by an older sandcrawl; CSV is now one file per item kind, so finish this crawl with that version, or start a new --state"
            ),
            Err(e) => Err(e).context("corrupt sink token in state"),
        }
    }
}

/// The file of one kind, beside `out`: `items.csv` gives `items.KIND.csv`. A kind with
/// characters a file name should not have is written with them replaced and a short hash of
/// the real kind, so two kinds never share a file.
pub fn kind_path(out: &Path, kind: &str) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "items".into());
    if kind == OTHER_KINDS {
        return out.with_file_name(format!("{stem}.{OTHER_KINDS_FILE}.csv"));
    }
    let safe: String = kind
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = if safe == kind {
        format!("{stem}.{kind}.csv")
    } else {
        use sha2::Digest as _;
        let h = hex::encode(&sha2::Sha256::digest(kind.as_bytes())[..4]);
        format!("{stem}.{safe}-{h}.csv")
    };
    out.with_file_name(name)
}

/// Files of this output's naming pattern (`STEM.*.csv`) in its folder.
fn kind_files(out: &Path) -> Vec<PathBuf> {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = match out.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from("."),
    };
    let prefix = format!("{stem}.");
    std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with(&prefix) && n.ends_with(".csv") && n.len() > prefix.len() + 4
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// When a kind's file is shorter than its committed length: (bytes present, committed).
pub(super) fn lost_tail(out: &Path, raw: &[u8]) -> Result<Option<(u64, u64)>> {
    let t = CsvToken::parse(raw)?;
    for (kind, committed) in &t.csv {
        let path = kind_path(out, kind);
        let have = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        if have < committed.len {
            return Ok(Some((have, committed.len)));
        }
    }
    Ok(None)
}

struct KindFile {
    path: PathBuf,
    w: BufWriter<File>,
    /// Field columns, in header order.
    columns: Vec<String>,
    len: u64,
    items: u64,
}

pub struct CsvSink {
    out: PathBuf,
    kinds: HashMap<String, KindFile>,
    items: u64,
    /// Whether items of kinds past `MAX_KINDS` have been met in this run (warned once).
    overflowed: bool,
}

impl CsvSink {
    pub fn open(out: &Path, token: Option<&[u8]>) -> Result<Self> {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create output folder {}", dir.display()))?;
        }
        let token = match token {
            Some(raw) => CsvToken::parse(raw)?,
            None => {
                if let Some(p) = kind_files(out)
                    .into_iter()
                    .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
                {
                    bail!(
                        "output {} already has data but the state directory has no record of it; choose another --out or remove the file",
                        p.display()
                    );
                }
                CsvToken::default()
            }
        };
        let mut sink = CsvSink {
            out: out.to_owned(),
            kinds: HashMap::new(),
            items: 0,
            overflowed: false,
        };
        let committed: Vec<PathBuf> = token.csv.keys().map(|k| kind_path(out, k)).collect();
        // A kind first written after the last commit has no committed bytes at all.
        for p in kind_files(out) {
            if !committed.contains(&p) {
                tracing::info!(output = %p.display(), "removing a CSV file of items written after the last commit (their pages will be fetched again)");
                std::fs::remove_file(&p)
                    .with_context(|| format!("cannot remove {}", p.display()))?;
            }
        }
        for (kind, t) in token.csv {
            let f = KindFile::reopen(&kind_path(out, &kind), t)?;
            sink.items += f.items;
            sink.kinds.insert(kind, f);
        }
        Ok(sink)
    }

    /// Kinds with a file of their own, counting those about to be created.
    fn own_files(&self, created: &[(String, KindFile)]) -> usize {
        self.kinds.keys().filter(|k| *k != OTHER_KINDS).count()
            + created.iter().filter(|(k, _)| k != OTHER_KINDS).count()
    }

    fn token(&self) -> CsvToken {
        CsvToken {
            csv: self
                .kinds
                .iter()
                .map(|(k, f)| {
                    (
                        k.clone(),
                        Token {
                            len: f.len,
                            items: f.items,
                        },
                    )
                })
                .collect(),
        }
    }
}

impl KindFile {
    /// Reopens a kind's file at its committed length, its columns read from its header.
    fn reopen(path: &Path, t: Token) -> Result<Self> {
        let mut file = open_for_resume(path)?;
        let len = cut_to_committed(&file, path, &t)?;
        let mut header = String::new();
        BufReader::new(&file)
            .read_line(&mut header)
            .with_context(|| format!("reading the header of {}", path.display()))?;
        let mut columns = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(header.as_bytes())
            .records()
            .next()
            .and_then(|r| r.ok())
            .map(|r| r.iter().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default();
        if columns.len() < FIXED.len() + 1 {
            bail!(
                "{} has no sandcrawl CSV header; it was changed outside sandcrawl (start a new --state, or restore the file)",
                path.display()
            );
        }
        columns.truncate(columns.len() - 1);
        columns.drain(..FIXED.len());
        let columns = columns
            .into_iter()
            .map(|c| c.strip_prefix("field:").map(str::to_owned).unwrap_or(c))
            .collect();
        file.seek(SeekFrom::Start(len))?;
        Ok(KindFile {
            path: path.to_owned(),
            w: BufWriter::with_capacity(64 * 1024, file),
            columns,
            len,
            items: t.items,
        })
    }

    fn create(path: &Path, first: &[(String, &RawValue)]) -> Result<(Self, Vec<u8>)> {
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .with_context(|| format!("cannot create output {}", path.display()))?;
        let columns: Vec<String> = first.iter().map(|(k, _)| k.clone()).collect();
        let mut header: Vec<String> = FIXED.iter().map(|c| (*c).to_owned()).collect();
        // A field named like a fixed column (or `extra`) gets a prefix, so no name repeats.
        header.extend(columns.iter().map(|c| {
            if FIXED.contains(&c.as_str()) || c == EXTRA || c.starts_with("field:") {
                format!("field:{c}")
            } else {
                c.clone()
            }
        }));
        header.push(EXTRA.to_owned());
        let mut buf = Vec::new();
        {
            let mut w = ::csv::WriterBuilder::new().from_writer(&mut buf);
            w.write_record(&header)?;
            w.flush()?;
        }
        Ok((
            KindFile {
                path: path.to_owned(),
                w: BufWriter::with_capacity(64 * 1024, file),
                columns,
                len: 0,
                items: 0,
            },
            buf,
        ))
    }

    fn row(&self, it: &Item, fields: &[(String, &RawValue)], buf: &mut Vec<u8>) -> Result<()> {
        let mut cells: Vec<String> = vec![
            it.id.clone(),
            it.url.clone(),
            it.fetched_at.clone(),
            it.plugin.name.clone(),
            it.plugin.version.clone(),
            it.plugin.sha256.clone(),
        ];
        for c in &self.columns {
            cells.push(
                fields
                    .iter()
                    .find(|(k, _)| k == c)
                    .map(|(_, v)| cell(v))
                    .unwrap_or_default(),
            );
        }
        let extra: Vec<&(String, &RawValue)> = fields
            .iter()
            .filter(|(k, _)| !self.columns.contains(k))
            .collect();
        cells.push(if extra.is_empty() {
            String::new()
        } else {
            let mut m = serde_json::Map::new();
            for (k, v) in extra {
                m.insert(
                    k.clone(),
                    serde_json::from_str(v.get()).unwrap_or(serde_json::Value::Null),
                );
            }
            serde_json::Value::Object(m).to_string()
        });
        let mut w = ::csv::WriterBuilder::new().from_writer(&mut *buf);
        w.write_record(&cells)?;
        w.flush()?;
        Ok(())
    }
}

/// A JSON value as a cell: a string as its text, null as nothing, the rest as JSON.
fn cell(v: &RawValue) -> String {
    let t = v.get();
    if t.starts_with('"') {
        serde_json::from_str::<String>(t).unwrap_or_else(|_| t.to_owned())
    } else if t == "null" {
        String::new()
    } else {
        t.to_owned()
    }
}

impl Sink for CsvSink {
    fn write_page(&mut self, items: &[Item]) -> Result<u64> {
        // Encode everything first, then write: a page's rows reach the files together.
        let mut pending: Vec<(String, Vec<u8>, u64)> = Vec::new();
        let mut created: Vec<(String, KindFile)> = Vec::new();
        for it in items {
            // The kind as a JSON string, for an item that goes to the file of further kinds.
            let kind_json: Box<RawValue>;
            let mut fields = serde_json::from_str::<Ordered<'_>>(it.fields.get())
                .with_context(|| format!("item {} is not a JSON object", it.id))?
                .0;
            let mut buf = Vec::new();
            let mut kind = it.kind.as_str();
            let known = |k: &str, created: &[(String, KindFile)]| {
                self.kinds.contains_key(k) || created.iter().any(|(c, _)| c == k)
            };
            if !known(kind, &created) && self.own_files(&created) >= MAX_KINDS {
                if !self.overflowed {
                    self.overflowed = true;
                    tracing::warn!(
                        output = %kind_path(&self.out, OTHER_KINDS).display(),
                        "CSV output: more than {MAX_KINDS} item kinds; items of further kinds (first: {:?}) go to one file with their kind and their fields as JSON",
                        crate::escape::escape(kind)
                    );
                }
                kind = OTHER_KINDS;
                kind_json = RawValue::from_string(serde_json::to_string(&it.kind)?)?;
                fields = vec![
                    ("kind".to_owned(), &*kind_json),
                    ("fields".to_owned(), &*it.fields),
                ];
            }
            if !known(kind, &created) {
                let (f, header) = KindFile::create(&kind_path(&self.out, kind), &fields)?;
                buf.extend_from_slice(&header);
                created.push((kind.to_owned(), f));
            }
            let file = self
                .kinds
                .get(kind)
                .or_else(|| created.iter().find(|(k, _)| k == kind).map(|(_, f)| f));
            if let Some(f) = file {
                f.row(it, &fields, &mut buf)?;
            }
            match pending.iter_mut().find(|(k, _, _)| k == kind) {
                Some((_, b, n)) => {
                    b.extend_from_slice(&buf);
                    *n += 1;
                }
                None => pending.push((kind.to_owned(), buf, 1)),
            }
        }
        self.kinds.extend(created);
        for (kind, buf, n) in pending {
            let Some(f) = self.kinds.get_mut(&kind) else {
                continue;
            };
            f.w.write_all(&buf)
                .and_then(|()| f.w.flush())
                .with_context(|| format!("writing items to {}", f.path.display()))?;
            f.len += buf.len() as u64;
            f.items += n;
            self.items += n;
        }
        Ok(0)
    }

    fn commit_token(&self) -> Vec<u8> {
        serde_json::to_vec(&self.token()).unwrap_or_default()
    }

    fn sync(&mut self) -> Result<()> {
        for f in self.kinds.values_mut() {
            f.w.flush()?;
            f.w.get_ref().sync_data()?;
        }
        Ok(())
    }

    fn items_written(&self) -> u64 {
        self.items
    }

    fn describe(&self) -> String {
        kind_path(&self.out, "KIND").display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::PluginRef;

    fn item(id: &str, kind: &str, fields: &str) -> Item {
        Item {
            id: id.into(),
            url: "http://e/".into(),
            fetched_at: "t".into(),
            plugin: PluginRef {
                name: "p".into(),
                version: "1".into(),
                sha256: "s".into(),
            },
            kind: kind.into(),
            fields: RawValue::from_string(fields.into()).expect("valid JSON"),
        }
    }

    fn read(path: &Path) -> Vec<Vec<String>> {
        ::csv::ReaderBuilder::new()
            .has_headers(false)
            .from_path(path)
            .expect("csv")
            .records()
            .map(|r| r.expect("row").iter().map(str::to_owned).collect())
            .collect()
    }

    #[test]
    fn columns_follow_the_plugins_field_order_and_survive_resume() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("sandcrawl-csv-{}", rand::random::<u64>()));
        let out = dir.join("items.csv");
        let mut s = CsvSink::open(&out, None)?;
        s.write_page(&[
            item(
                "a",
                "quote",
                r#"{"text":"say \"hi\", then\nleave","tags":["x"],"n":1.50,"none":null}"#,
            ),
            item("b", "odd kind/x", r#"{"url":"u","extra":1}"#),
        ])?;
        let token = s.commit_token();
        // Written after the commit: a quote with a new field, and a kind never seen before.
        s.write_page(&[
            item("c", "quote", r#"{"text":"t","tags":[],"z":true}"#),
            item("d", "late", r#"{"q":1}"#),
        ])?;
        drop(s);
        let quote = kind_path(&out, "quote");
        let odd = kind_path(&out, "odd kind/x");
        assert_eq!(
            quote.file_name().and_then(|n| n.to_str()),
            Some("items.quote.csv")
        );
        assert!(odd.display().to_string().contains("items.odd_kind_x-"));
        assert_eq!(read(&quote).len(), 3);
        assert!(kind_path(&out, "late").is_file());

        // Resume at the token: the uncommitted row is cut, the late kind's file removed, and
        // the header (so the columns) read back from the file.
        assert!(lost_tail(&out, &token)?.is_none());
        let mut s = CsvSink::open(&out, Some(&token))?;
        assert_eq!(s.items_written(), 2);
        assert!(!kind_path(&out, "late").exists());
        s.write_page(&[item("e", "quote", r#"{"n":2,"text":"again","z":[1]}"#)])?;
        drop(s);
        let rows = read(&quote);
        let fixed = [
            "id",
            "url",
            "fetched_at",
            "plugin",
            "plugin_version",
            "plugin_sha256",
        ];
        let mut header: Vec<String> = fixed.iter().map(|s| (*s).to_owned()).collect();
        header.extend(["text", "tags", "n", "none", "extra"].map(str::to_owned));
        assert_eq!(rows[0], header);
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(
            rows[1][6..],
            ["say \"hi\", then\nleave", "[\"x\"]", "1.50", "", ""]
        );
        // A field the header lacks goes to `extra`; a missing one is an empty cell.
        assert_eq!(rows[2][0], "e");
        assert_eq!(rows[2][6..], ["again", "", "2", "", "{\"z\":[1]}"]);
        // A field named like a fixed column keeps its own column.
        let odd_rows = read(&odd);
        assert_eq!(odd_rows[0][6..], ["field:url", "field:extra", "extra"]);
        assert_eq!(odd_rows[1][1], "http://e/");
        assert_eq!(odd_rows[1][6..], ["u", "1", ""]);

        // A file shorter than committed (an unsynced tail lost to a power cut) is reported.
        let f = OpenOptions::new().write(true).open(&quote)?;
        f.set_len(10)?;
        assert!(lost_tail(&out, &token)?.is_some());
        // No token, but files with data: refused rather than mixed into.
        assert!(CsvSink::open(&out, None).is_err());
        // A token of the old single-file CSV: one clear line.
        let old = serde_json::to_vec(&Token { len: 0, items: 0 })?;
        let e = CsvSink::open(&out, Some(&old))
            .err()
            .map(|e| format!("{e:#}"));
        assert!(e.is_some_and(|e| e.contains("one file per item kind")));
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }

    #[test]
    fn kinds_past_the_cap_share_one_file_and_nothing_is_lost() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("sandcrawl-csv-{}", rand::random::<u64>()));
        let out = dir.join("items.csv");
        let mut s = CsvSink::open(&out, None)?;
        let extra = 6;
        let page: Vec<Item> = (0..MAX_KINDS + extra)
            .map(|k| {
                item(
                    &format!("i{k}"),
                    &format!("k{k}"),
                    &format!(r#"{{"n":{k}}}"#),
                )
            })
            .collect();
        s.write_page(&page)?;
        let token = s.commit_token();
        // A later item of a capped kind goes to the shared file too; an early kind keeps its own.
        s.write_page(&[
            item("late", &format!("k{}", MAX_KINDS + 1), r#"{"n":"x"}"#),
            item("first", "k0", r#"{"n":0}"#),
        ])?;
        assert_eq!(s.items_written(), (MAX_KINDS + extra + 2) as u64);
        drop(s);
        let files = kind_files(&out);
        assert_eq!(files.len(), MAX_KINDS + 1, "{files:?}");
        let other = kind_path(&out, OTHER_KINDS);
        assert_eq!(
            other.file_name().and_then(|n| n.to_str()),
            Some("items.~other-kinds.csv")
        );
        let rows = read(&other);
        assert_eq!(rows[0][6..], ["kind", "fields", "extra"]);
        assert_eq!(rows.len(), 1 + extra + 1, "{rows:?}");
        assert_eq!(rows[1][0], format!("i{MAX_KINDS}"));
        assert_eq!(
            rows[1][6..],
            [
                format!("k{MAX_KINDS}"),
                format!(r#"{{"n":{MAX_KINDS}}}"#),
                String::new()
            ]
        );
        assert_eq!(rows[extra + 1][6..7], [format!("k{}", MAX_KINDS + 1)]);
        assert_eq!(read(&kind_path(&out, "k0")).len(), 3);

        // Resume at the token: the shared file is cut back like any other, and stays the place
        // for kinds past the cap.
        let mut s = CsvSink::open(&out, Some(&token))?;
        assert_eq!(s.items_written(), (MAX_KINDS + extra) as u64);
        assert_eq!(read(&other).len(), 1 + extra);
        s.write_page(&[item("new", "brand-new", r#"{"n":1}"#)])?;
        drop(s);
        assert!(!kind_path(&out, "brand-new").exists());
        assert_eq!(read(&other).len(), 1 + extra + 1);
        std::fs::remove_dir_all(&dir).ok();
        Ok(())
    }
}
