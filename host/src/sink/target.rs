//! What an `--out` value names: stdout, a file (JSONL or CSV), or a database URL
//! (`postgres://…`, `mysql://…`, `mariadb://…`). It owns the parsing of those strings and the
//! masking of passwords for anything shown to the user; it must not open or touch them.

use super::Format;
use anyhow::{Result, bail};
use std::path::{Path, PathBuf};

/// The SQL dialects sandcrawl writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    /// MySQL and MariaDB.
    Mysql,
}

/// A database output's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlUrl {
    pub dialect: Dialect,
    /// What the driver connects to (`mariadb://` is given to it as `mysql://`).
    pub connect: String,
    /// The URL with its password masked: the only form logs and errors show.
    pub shown: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File {
        path: PathBuf,
        format: Format,
    },
    Sql(SqlUrl),
    /// The WARC folder (`--warc`): pages, not items.
    Warc(PathBuf),
}

impl Target {
    /// Parses one output: a database URL by its scheme, "-" for stdout, anything else a file
    /// written in `format`.
    pub fn parse(raw: &str, format: Format) -> Result<Target> {
        let raw = raw.trim();
        if raw.is_empty() {
            bail!("output \"\" is empty; give a file path, -, postgres://… or mysql://…");
        }
        if raw == "-" {
            if format == Format::Csv {
                bail!(
                    "--format csv writes one file per item kind, so it cannot go to stdout (--out -); use --format jsonl with --out -, or name a file"
                );
            }
            return Ok(Target::Stdout);
        }
        let Some((scheme, _)) = raw.split_once("://") else {
            return Ok(Target::File {
                path: PathBuf::from(raw),
                format,
            });
        };
        let dialect = match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Dialect::Postgres,
            "mysql" | "mariadb" => Dialect::Mysql,
            _ => bail!(
                "output {}: unknown scheme {scheme:?}; use a file path, postgres://USER@HOST:PORT/DB or mysql://USER@HOST:PORT/DB",
                mask(raw)
            ),
        };
        let url = url::Url::parse(raw).map_err(|e| {
            anyhow::anyhow!(
                "output {}: not a valid URL ({e}); write it as {scheme}://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
                mask(raw)
            )
        })?;
        if url.host_str().is_none_or(str::is_empty) {
            bail!(
                "output {}: no host; write it as {scheme}://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
                mask(raw)
            );
        }
        if url.path().trim_matches('/').is_empty() {
            bail!(
                "output {}: no database name; add it after the host, e.g. {scheme}://USER@{}/DATABASE",
                mask(raw),
                url.host_str().unwrap_or("HOST")
            );
        }
        let connect = if scheme.eq_ignore_ascii_case("mariadb") {
            format!("mysql://{}", &raw[scheme.len() + 3..])
        } else {
            raw.to_owned()
        };
        Ok(Target::Sql(SqlUrl {
            dialect,
            connect,
            shown: mask(raw),
        }))
    }

    /// The name this output's commit token is kept under (several outputs at once): stable
    /// across runs, never containing a password.
    pub fn key(&self) -> String {
        match self {
            Target::Stdout => "-".into(),
            Target::File { path, .. } => path.display().to_string(),
            Target::Sql(u) => u.shown.clone(),
            Target::Warc(dir) => format!("warc:{}", dir.display()),
        }
    }

    pub fn file(&self) -> Option<&Path> {
        match self {
            Target::File { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// The URL with any password replaced by `***`; a string that does not parse is cut at its
/// `@` so a password cannot show either.
pub fn mask(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => match (raw.split_once("://"), raw.rfind('@')) {
            (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &raw[at..]),
            (None, Some(at)) => format!("***{}", &raw[at..]),
            _ => raw.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_files_stdout_and_databases() {
        let t = |s: &str| Target::parse(s, Format::Jsonl);
        assert_eq!(t("-").unwrap(), Target::Stdout);
        assert!(matches!(t("out/items.jsonl").unwrap(), Target::File { .. }));
        let Target::Sql(pg) = t("postgres://u:secret@127.0.0.1:5432/test").unwrap() else {
            panic!("not sql")
        };
        assert_eq!(pg.dialect, Dialect::Postgres);
        assert_eq!(pg.shown, "postgres://u:***@127.0.0.1:5432/test");
        assert_eq!(pg.key(), pg.shown);
        let Target::Sql(my) = t("mariadb://root@localhost/test").unwrap() else {
            panic!("not sql")
        };
        assert_eq!(my.dialect, Dialect::Mysql);
        assert_eq!(my.connect, "mysql://root@localhost/test");
        for bad in [
            "redis://127.0.0.1/0",
            "postgres://u@127.0.0.1:5432",
            "mysql://:5/db",
            "",
        ] {
            let e = t(bad).unwrap_err().to_string();
            assert!(!e.contains("secret") && e.contains("output"), "{e}");
        }
        let e = t("postgres://u:secret@[bad/db").unwrap_err().to_string();
        assert!(!e.contains("secret"), "{e}");
        assert!(Target::parse("-", Format::Csv).is_err());
    }

    trait Key {
        fn key(&self) -> String;
    }
    impl Key for SqlUrl {
        fn key(&self) -> String {
            Target::Sql(self.clone()).key()
        }
    }
}
