//! What the command line prints for a person on stderr, in the form chosen with the global
//! flags: plain lines, or with `--log-format json` one JSON object per line shaped like the
//! log's own (`timestamp`, `level`, `fields.message`), so a log shipper reads stderr whole.
//! `--quiet` keeps only errors. It owns that choice; it must not decide what is said.

use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, Default)]
struct Mode {
    json: bool,
    quiet: bool,
}

static MODE: OnceLock<Mode> = OnceLock::new();

pub fn init(json: bool, quiet: bool) {
    let _ = MODE.set(Mode { json, quiet });
}

fn mode() -> Mode {
    MODE.get().copied().unwrap_or_default()
}

pub fn quiet() -> bool {
    mode().quiet
}

fn json_line(level: &str, fields: serde_json::Value) -> String {
    serde_json::json!({
        "timestamp": humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string(),
        "level": level,
        "fields": fields,
    })
    .to_string()
}

/// One message. A message that starts with `error:` is an error: shown even with `--quiet`,
/// and at level ERROR in JSON.
pub fn line(text: &str) {
    let m = mode();
    let error = text.starts_with("error:");
    if m.quiet && !error {
        return;
    }
    if !m.json {
        eprintln!("{text}");
        return;
    }
    if text.trim().is_empty() {
        return;
    }
    let level = if error { "ERROR" } else { "INFO" };
    eprintln!(
        "{}",
        json_line(level, serde_json::json!({ "message": text }))
    );
}

/// The end-of-run report: its text for a person, the whole object in JSON.
pub fn report<T: serde::Serialize + std::fmt::Display>(summary: &T) {
    let m = mode();
    if m.quiet {
        return;
    }
    if m.json {
        let value = serde_json::to_value(summary).unwrap_or_default();
        eprintln!(
            "{}",
            json_line(
                "INFO",
                serde_json::json!({ "message": "summary", "summary": value })
            )
        );
    } else {
        eprintln!();
        eprintln!("{summary}");
    }
}

/// `eprintln!` for a person: plain, JSON or nothing (`--quiet`), as chosen.
macro_rules! say {
    () => {
        $crate::cli::say::line("")
    };
    ($($arg:tt)*) => {
        $crate::cli::say::line(&format!($($arg)*))
    };
}
pub(crate) use say;
