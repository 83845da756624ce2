//! One WARC record, formatted: the header block, the HTTP message, gzip per record. It owns
//! how a response is stored so that `reader.rs` gives plugins back exactly what they saw: the
//! body is stored decoded, so the `Content-Encoding`, `Transfer-Encoding` and
//! `Content-Length` the server sent are kept under a `X-Sandcrawl-Was-` prefix and a
//! `Content-Length` of the stored body is written; the crawl's own facts about the page (the
//! key its item ids come from, depth, metadata) go in `Sandcrawl-*` WARC header fields.

use crate::fetch::Response;
use anyhow::{Context as _, Result};
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::{Read as _, Write};

/// Response headers the stored message cannot carry as sent (the body is stored decoded) are
/// kept under this prefix.
pub const HIDDEN_PREFIX: &str = "X-Sandcrawl-Was-";

/// What one committed page or download puts in the WARC.
pub struct Capture<'a> {
    pub resp: &'a Response,
    /// When the page was fetched, as its items say (RFC 3339).
    pub fetched_at: &'a str,
    /// The fingerprint item ids are derived from (hex).
    pub key: String,
    pub depth: u32,
    pub download: bool,
    pub metadata: Option<&'a str>,
    pub referrer: Option<&'a str>,
    pub proposer: Option<&'a str>,
    /// A POST's body, as sent.
    pub request_body: Option<(&'a str, String)>,
}

fn uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "<urn:uuid:{}-{}-4{}-a{}-{}>",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// A header value on one line (a value with a line break would end the header block).
fn one_line(v: &str) -> String {
    v.replace(['\r', '\n'], " ")
}

fn gz(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut e = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 3 + 64),
        Compression::fast(),
    );
    e.write_all(bytes)?;
    Ok(e.finish()?)
}

fn header_block(fields: &[(&str, String)], len: u64) -> Vec<u8> {
    let mut h = b"WARC/1.1\r\n".to_vec();
    for (k, v) in fields {
        h.extend_from_slice(format!("{k}: {}\r\n", one_line(v)).as_bytes());
    }
    h.extend_from_slice(format!("Content-Length: {len}\r\n\r\n").as_bytes());
    h
}

/// The `warcinfo` record a file starts with.
pub fn warcinfo(file: &str, user_agent: &str) -> Result<Vec<u8>> {
    let body = format!(
        "software: sandcrawl/{}\r\nformat: WARC File Format 1.1\r\nhttp-header-user-agent: {}\r\n",
        env!("CARGO_PKG_VERSION"),
        one_line(user_agent)
    );
    let mut rec = header_block(
        &[
            ("WARC-Type", "warcinfo".into()),
            ("WARC-Record-ID", uuid()),
            ("WARC-Date", now()),
            ("WARC-Filename", file.to_owned()),
            ("Content-Type", "application/warc-fields".into()),
        ],
        body.len() as u64,
    );
    rec.extend_from_slice(body.as_bytes());
    rec.extend_from_slice(b"\r\n\r\n");
    gz(&rec)
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Writes the `request` and `response` records of `cap`, each a gzip member; returns the
/// bytes written.
pub fn write_pair(w: &mut impl Write, cap: &Capture<'_>, user_agent: &str) -> Result<u64> {
    let resp = cap.resp;
    let url = resp.final_url.as_str();
    let response_id = uuid();
    // The response: status line, headers (re-labelled where the stored body differs from
    // what was sent), the body.
    let mut head = format!(
        "{} {} {}\r\n",
        resp.http_version,
        resp.status,
        http::StatusCode::from_u16(resp.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
    );
    for (k, v) in &resp.headers {
        let lower = k.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "content-encoding" | "transfer-encoding" | "content-length"
        ) {
            head.push_str(&format!("{HIDDEN_PREFIX}{k}: {}\r\n", one_line(v)));
        } else {
            head.push_str(&format!("{k}: {}\r\n", one_line(v)));
        }
    }
    let body_len = match &resp.file {
        Some(f) => f.size,
        None => resp.body.len() as u64,
    };
    head.push_str(&format!("Content-Length: {body_len}\r\n\r\n"));
    let mut fields: Vec<(&str, String)> = vec![
        ("WARC-Type", "response".into()),
        ("WARC-Record-ID", response_id.clone()),
        ("WARC-Date", cap.fetched_at.to_owned()),
        ("WARC-Target-URI", url.to_owned()),
        ("Content-Type", "application/http;msgtype=response".into()),
        ("Sandcrawl-Key", cap.key.clone()),
        ("Sandcrawl-Depth", cap.depth.to_string()),
        (
            "Sandcrawl-Kind",
            if cap.download { "download" } else { "page" }.into(),
        ),
        ("Sandcrawl-Method", resp.method.as_str().to_owned()),
    ];
    if resp.truncated {
        fields.push(("Sandcrawl-Truncated", "1".into()));
    }
    if let Some(m) = cap.metadata {
        // Compact JSON has no line breaks.
        let compact = serde_json::from_str::<serde_json::Value>(m)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| m.to_owned());
        fields.push(("Sandcrawl-Metadata", compact));
    }
    if let Some(r) = cap.referrer {
        fields.push(("Sandcrawl-Referrer", r.to_owned()));
    }
    if let Some(p) = cap.proposer {
        fields.push(("Sandcrawl-Proposer", p.to_owned()));
    }
    for (i, r) in resp.redirects.iter().enumerate() {
        fields.push(("Sandcrawl-Redirected-From", format!("{i} {r}")));
    }
    let block_len = head.len() as u64 + body_len;
    let mut written = 0u64;
    // The request as sent (its first line, the headers that matter, a POST's body).
    let target = match resp.final_url.query() {
        Some(q) => format!("{}?{q}", resp.final_url.path()),
        None => resp.final_url.path().to_owned(),
    };
    let host = &resp.final_url[url::Position::BeforeHost..url::Position::AfterPort];
    let mut req = format!(
        "{} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {}\r\n",
        resp.method.as_str(),
        one_line(user_agent)
    );
    if let Some((ct, body)) = &cap.request_body {
        req.push_str(&format!(
            "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    } else {
        req.push_str("\r\n");
    }
    let mut rec = header_block(
        &[
            ("WARC-Type", "request".into()),
            ("WARC-Record-ID", uuid()),
            ("WARC-Date", cap.fetched_at.to_owned()),
            ("WARC-Target-URI", url.to_owned()),
            ("WARC-Concurrent-To", response_id),
            ("Content-Type", "application/http;msgtype=request".into()),
        ],
        req.len() as u64,
    );
    rec.extend_from_slice(req.as_bytes());
    rec.extend_from_slice(b"\r\n\r\n");
    let z = gz(&rec)?;
    w.write_all(&z)?;
    written += z.len() as u64;

    let mut counting = Counting { inner: w, n: 0 };
    let mut e = GzEncoder::new(&mut counting, Compression::fast());
    e.write_all(&header_block(&fields, block_len))?;
    e.write_all(head.as_bytes())?;
    match &resp.file {
        // A download streams from its stored file, never whole in memory.
        Some(f) => {
            let mut src = std::fs::File::open(&f.path)
                .with_context(|| format!("reading {} for the WARC", f.path.display()))?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = src.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                e.write_all(&buf[..n])?;
            }
        }
        None => e.write_all(&resp.body)?,
    }
    e.write_all(b"\r\n\r\n")?;
    e.finish()?;
    written += counting.n;
    Ok(written)
}

/// Counts what goes through to `inner`.
struct Counting<'a, W: Write> {
    inner: &'a mut W,
    n: u64,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
