//! Which character encoding a page is in, in the WHATWG order: a byte order mark, then the
//! Content-Type charset, then a `<meta>` prescan of the first 1,024 bytes (the HTML
//! standard's "prescan a byte stream to determine its encoding", which skips comments and
//! reads only real `<meta>` attributes, not any `charset=` text such as one in a script),
//! then `chardetng` for a page that declares nothing (an undeclared page that is ASCII in its
//! first 64 KiB is UTF-8).
//!
//! It owns that decision and nothing else: it never decodes a page.

use encoding_rs::Encoding;

/// Bytes the `<meta>` prescan reads.
const PRESCAN_BYTES: usize = 1024;
/// Bytes the statistical detector reads for an undeclared page.
const DETECT_BYTES: usize = 64 * 1024;

/// The encoding of a page with these response headers and this body, by its name as
/// encoding_rs spells it (e.g. "UTF-8", "Shift_JIS", "windows-1251").
pub fn detect(headers: &[(String, String)], body: &[u8]) -> &'static str {
    if let Some((enc, _)) = Encoding::for_bom(body) {
        return enc.name();
    }
    let declared = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        .and_then(|(_, v)| charset_in_content_type(v));
    if let Some(enc) = declared {
        return enc.name();
    }
    if let Some(enc) = prescan(&body[..body.len().min(PRESCAN_BYTES)]) {
        return enc.name();
    }
    let sample = &body[..body.len().min(DETECT_BYTES)];
    // ASCII reads the same in every candidate; UTF-8, the web's usual encoding, also keeps
    // whatever non-ASCII text comes after the sample intact.
    if sample.is_ascii() {
        return encoding_rs::UTF_8.name();
    }
    let mut detector = chardetng::EncodingDetector::new();
    detector.feed(sample, sample.len() == body.len());
    detector.guess(None, true).name()
}

/// The charset parameter of a Content-Type value.
fn charset_in_content_type(value: &str) -> Option<&'static Encoding> {
    value.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        Encoding::for_label(v.trim().trim_matches(['"', '\'']).as_bytes())
    })
}

fn is_space(b: u8) -> bool {
    matches!(b, 0x09 | 0x0A | 0x0C | 0x0D | 0x20)
}

/// What a `<meta>` prescan decided: the encoding with the HTML standard's two overrides
/// (a UTF-16 label means UTF-8, x-user-defined means windows-1252).
fn finish(enc: &'static Encoding) -> &'static Encoding {
    if enc == encoding_rs::UTF_16BE || enc == encoding_rs::UTF_16LE {
        encoding_rs::UTF_8
    } else if enc == encoding_rs::X_USER_DEFINED {
        encoding_rs::WINDOWS_1252
    } else {
        enc
    }
}

/// The HTML standard's prescan (13.2.3.2) over `bytes`.
pub fn prescan(bytes: &[u8]) -> Option<&'static Encoding> {
    let mut p = Prescan { b: bytes, pos: 0 };
    p.run()
}

struct Prescan<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Prescan<'_> {
    fn at(&self, i: usize) -> Option<u8> {
        self.b.get(i).copied()
    }

    fn starts_with_ci(&self, s: &[u8]) -> bool {
        self.b.len() >= self.pos + s.len()
            && self.b[self.pos..self.pos + s.len()].eq_ignore_ascii_case(s)
    }

    fn run(&mut self) -> Option<&'static Encoding> {
        while self.pos < self.b.len() {
            if self.starts_with_ci(b"<!--") {
                // To the end of a "-->" that starts after the "<!".
                let from = self.pos + 2;
                let end = self.b[from..].windows(3).position(|w| w == b"-->")?;
                self.pos = from + end + 2;
            } else if self.starts_with_ci(b"<meta")
                && self
                    .at(self.pos + 5)
                    .is_some_and(|c| is_space(c) || c == b'/')
            {
                self.pos += 5;
                if let Some(enc) = self.meta()? {
                    return Some(finish(enc));
                }
            } else if self.at(self.pos) == Some(b'<')
                && (self
                    .at(self.pos + 1)
                    .is_some_and(|c| c.is_ascii_alphabetic())
                    || (self.at(self.pos + 1) == Some(b'/')
                        && self
                            .at(self.pos + 2)
                            .is_some_and(|c| c.is_ascii_alphabetic())))
            {
                // A tag: skip its name, then read and ignore its attributes.
                while self.at(self.pos).is_some_and(|c| !is_space(c) && c != b'>') {
                    self.pos += 1;
                }
                self.at(self.pos)?;
                while self.attribute()?.is_some() {}
            } else if self.starts_with_ci(b"<!")
                || self.starts_with_ci(b"</")
                || self.starts_with_ci(b"<?")
            {
                let end = self.b[self.pos..].iter().position(|&c| c == b'>')?;
                self.pos += end;
            }
            self.pos += 1;
        }
        None
    }

    /// The attributes of one `<meta>`: `Some(Some(enc))` when it declares an encoding,
    /// `Some(None)` when it does not, `None` when the input ended inside it.
    fn meta(&mut self) -> Option<Option<&'static Encoding>> {
        let mut seen: Vec<Vec<u8>> = Vec::new();
        let mut got_pragma = false;
        let mut need_pragma: Option<bool> = None;
        let mut charset: Option<&'static Encoding> = None;
        while let Some((name, value)) = self.attribute()? {
            if seen.contains(&name) {
                continue;
            }
            seen.push(name.clone());
            match name.as_slice() {
                b"http-equiv" if value.eq_ignore_ascii_case(b"content-type") => {
                    got_pragma = true;
                }
                b"content" => {
                    if charset.is_none()
                        && let Some(enc) = charset_in_meta_content(&value)
                    {
                        charset = Some(enc);
                        need_pragma = Some(true);
                    }
                }
                b"charset" => {
                    charset = Encoding::for_label(trim_ascii(&value));
                    need_pragma = Some(false);
                }
                _ => {}
            }
        }
        Some(match (need_pragma, charset) {
            (None, _) | (_, None) => None,
            (Some(true), Some(_)) if !got_pragma => None,
            (_, Some(enc)) => Some(enc),
        })
    }

    /// "Get an attribute": `Some(Some((name, value)))`, `Some(None)` at the tag's end, `None`
    /// when the input ended.
    #[allow(clippy::type_complexity)]
    fn attribute(&mut self) -> Option<Option<(Vec<u8>, Vec<u8>)>> {
        while self.at(self.pos).is_some_and(|c| is_space(c) || c == b'/') {
            self.pos += 1;
        }
        if self.at(self.pos)? == b'>' {
            return Some(None);
        }
        let mut name = Vec::new();
        let mut value = Vec::new();
        loop {
            let c = self.at(self.pos)?;
            if c == b'=' && !name.is_empty() {
                self.pos += 1;
                break;
            }
            if is_space(c) {
                while self.at(self.pos).is_some_and(is_space) {
                    self.pos += 1;
                }
                if self.at(self.pos)? != b'=' {
                    return Some(Some((name, value)));
                }
                self.pos += 1;
                break;
            }
            if c == b'/' || c == b'>' {
                return Some(Some((name, value)));
            }
            name.push(c.to_ascii_lowercase());
            self.pos += 1;
        }
        while self.at(self.pos).is_some_and(is_space) {
            self.pos += 1;
        }
        let c = self.at(self.pos)?;
        if c == b'"' || c == b'\'' {
            self.pos += 1;
            loop {
                let d = self.at(self.pos)?;
                self.pos += 1;
                if d == c {
                    return Some(Some((name, value)));
                }
                value.push(d.to_ascii_lowercase());
            }
        }
        if c == b'>' {
            return Some(Some((name, value)));
        }
        loop {
            let d = self.at(self.pos)?;
            if is_space(d) || d == b'>' {
                return Some(Some((name, value)));
            }
            value.push(d.to_ascii_lowercase());
            self.pos += 1;
        }
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !is_space(*c)).unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !is_space(*c))
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// "Extract a character encoding from a meta element" (the `content` attribute).
fn charset_in_meta_content(s: &[u8]) -> Option<&'static Encoding> {
    let mut pos = 0;
    loop {
        let found = s[pos..]
            .windows(7)
            .position(|w| w.eq_ignore_ascii_case(b"charset"))?;
        pos += found + 7;
        while s.get(pos).is_some_and(|c| is_space(*c)) {
            pos += 1;
        }
        if s.get(pos) == Some(&b'=') {
            pos += 1;
            break;
        }
    }
    while s.get(pos).is_some_and(|c| is_space(*c)) {
        pos += 1;
    }
    match s.get(pos)? {
        q @ (b'"' | b'\'') => {
            let rest = &s[pos + 1..];
            let end = rest.iter().position(|c| c == q)?;
            Encoding::for_label(&rest[..end])
        }
        _ => {
            let rest = &s[pos..];
            let end = rest
                .iter()
                .position(|c| is_space(*c) || *c == b';')
                .unwrap_or(rest.len());
            Encoding::for_label(&rest[..end])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(v: &str) -> Vec<(String, String)> {
        vec![("Content-Type".into(), v.into())]
    }

    #[test]
    fn the_order_is_bom_header_meta_then_detection() {
        let meta = b"<meta charset=iso-8859-2><p>x";
        // A BOM beats the header.
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(meta);
        assert_eq!(
            detect(&ct("text/html; charset=windows-1251"), &bom),
            "UTF-8"
        );
        // The header beats <meta>.
        assert_eq!(
            detect(&ct("text/html; charset=windows-1251"), meta),
            "windows-1251"
        );
        // <meta> when the header says nothing.
        assert_eq!(detect(&ct("text/html"), meta), "ISO-8859-2");
        // charset= text in a script or a comment is not a declaration.
        let script = b"<script>var s = 'charset=iso-8859-2';</script><!-- <meta charset=koi8-r> --><p>plain</p>";
        assert_eq!(detect(&ct("text/html"), script), "UTF-8");
        assert_eq!(
            detect(
                &ct("text/html"),
                b"<meta http-equiv=Content-Type content='text/html; charset=koi8-r'>"
            ),
            "KOI8-R"
        );
        // A content charset without the http-equiv pragma does not count.
        assert_eq!(
            detect(
                &ct("text/html"),
                b"<meta content='text/html; charset=koi8-r'>abc"
            ),
            "UTF-8"
        );
    }

    #[test]
    fn undeclared_pages_are_detected() {
        let text = "日本語のページです。東京都の天気は晴れ、気温は二十度です。明日も良い天気になるでしょう。".repeat(8);
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode(&text);
        assert_eq!(detect(&ct("text/html"), &sjis), "Shift_JIS");
        let zh =
            "这是一个中文网页。北京的天气很好，温度是二十度。明天也会是好天气。我们去公园散步吧。"
                .repeat(8);
        let (gbk, _, _) = encoding_rs::GBK.encode(&zh);
        assert_eq!(detect(&ct("text/html"), &gbk), "GBK");
        let ru = "Это русская страница. Погода в Москве хорошая, температура двадцать градусов. Завтра тоже будет хорошая погода.".repeat(8);
        let (cp1251, _, _) = encoding_rs::WINDOWS_1251.encode(&ru);
        assert_eq!(detect(&ct("text/html"), &cp1251), "windows-1251");
        assert_eq!(detect(&ct("text/html"), ru.as_bytes()), "UTF-8");
    }
}
