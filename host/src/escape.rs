//! Makes text that came from outside (plugins, manifests, servers) safe to print on a
//! terminal or inside one log line.
//!
//! It owns the rule for which characters are escaped. It must not truncate, judge or drop
//! text: callers decide how much to print.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Characters that could end a log line, move the cursor, start an escape sequence or flip
/// the direction of the text around them.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{2028}' | '\u{2029}' | '\u{202A}'
                ..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Whether `s` holds any character [`escape`] would rewrite.
pub fn has_control(s: &str) -> bool {
    s.chars().any(needs_escape)
}

/// `s` with CR, LF, tab, ESC and every other control or bidi-override character written as
/// `\n`, `\r`, `\t` or `\u{..}`, so the text stays on one line and cannot forge terminal
/// output. Text without such characters is returned as it is.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !has_control(s) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_break_a_line() {
        assert_eq!(escape("plain text ü"), "plain text ü");
        assert_eq!(
            escape("a\nINFO fake\r\x1b[2K\tz\u{202E}"),
            "a\\nINFO fake\\r\\u{1b}[2K\\tz\\u{202e}"
        );
        assert!(!escape("x\u{85}y").contains('\u{85}'));
        assert!(has_control("\x07"));
        assert!(!has_control("ok"));
    }
}
