//! One connection to PostgreSQL or MySQL/MariaDB and the statements sandcrawl sends over it:
//! reading a table's shape, DDL, and batched idempotent inserts inside one transaction. It
//! owns the dialect differences (quoting, types, the conflict clause, parameter limits) and
//! the reading of driver errors into "retry later" or "tell the user"; it must not decide
//! what goes into a table (`kinds.rs`, `mod.rs`) or when to retry (`writer.rs`).

use super::SqlType;
use crate::sink::target::{Dialect, SqlUrl};
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection as _, Executor as _, MySql, Postgres, QueryBuilder, Row as _};
use std::borrow::Cow;
use std::str::FromStr as _;
use std::time::Duration;

/// Connecting gives up after this long (an address that drops packets would hang forever).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound parameters per statement: both servers stop at 65,535.
const MAX_PARAMS: usize = 60_000;

/// Binds one row's cells in order; the dialects differ only in how JSON and time text go in
/// (PostgreSQL casts them, MySQL takes a DATETIME string).
macro_rules! push_cells {
    ($b:ident, $row:expr, json: |$j:ident| $json:block, time: |$t:ident| $time:block) => {
        for cell in $row {
            match cell {
                Cell::Null => {
                    $b.push("NULL");
                }
                Cell::Text(s) => {
                    $b.push_bind(s.as_ref());
                }
                Cell::Int(i) => {
                    $b.push_bind(*i);
                }
                Cell::Float(f) => {
                    $b.push_bind(*f);
                }
                Cell::Bool(v) => {
                    $b.push_bind(*v);
                }
                Cell::Json($j) => {
                    let $j: &str = *$j;
                    $json
                }
                Cell::Time($t) => {
                    let $t: &str = *$t;
                    $time
                }
            }
        }
    };
}

pub(super) enum Conn {
    Pg(PgConnection),
    My(MySqlConnection),
}

/// One value to insert. Borrowed from the item where it can be.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell<'a> {
    Null,
    Text(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// JSON text.
    Json(&'a str),
    /// RFC 3339 text (`2026-11-28T00:50:08.123Z`).
    Time(&'a str),
}

/// A batch of rows for one table; `columns` are already quoted.
pub(super) struct Insert<'a> {
    pub table: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell<'a>>>,
}

/// A column as the server describes it.
#[derive(Debug, Clone)]
pub(super) struct ColumnInfo {
    pub name: String,
    pub data_type: String,
    /// NOT NULL and no default: an insert that leaves it out fails.
    pub required: bool,
}

impl Conn {
    pub(super) async fn connect(url: &SqlUrl) -> Result<Conn, sqlx::Error> {
        let fut = async {
            Ok(match url.dialect {
                Dialect::Postgres => {
                    let o = PgConnectOptions::from_str(&url.connect)?.application_name("sandcrawl");
                    Conn::Pg(PgConnection::connect_with(&o).await?)
                }
                Dialect::Mysql => {
                    let o = MySqlConnectOptions::from_str(&url.connect)?.charset("utf8mb4");
                    let mut c = MySqlConnection::connect_with(&o).await?;
                    // A value too long for its column is an error, never a silent cut, on
                    // servers configured without strict mode too.
                    c.execute("SET SESSION sql_mode = CONCAT_WS(',', @@SESSION.sql_mode, 'STRICT_ALL_TABLES')")
                        .await?;
                    Conn::My(c)
                }
            })
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
            Ok(r) => r,
            Err(_) => Err(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            ))),
        }
    }

    pub(super) fn dialect(&self) -> Dialect {
        match self {
            Conn::Pg(_) => Dialect::Postgres,
            Conn::My(_) => Dialect::Mysql,
        }
    }

    /// An identifier quoted for this dialect.
    pub(super) fn quote(&self, name: &str) -> String {
        quote(self.dialect(), name)
    }

    pub(super) async fn execute(&mut self, sql: &str) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Conn::Pg(c) => c.execute(sql).await?.rows_affected(),
            Conn::My(c) => c.execute(sql).await?.rows_affected(),
        })
    }

    /// The columns of `table` in the connection's current schema/database, in table order;
    /// empty when there is no such table.
    pub(super) async fn columns(&mut self, table: &str) -> Result<Vec<ColumnInfo>, sqlx::Error> {
        let rows: Vec<(String, String, bool)> = match self {
            Conn::Pg(c) => sqlx::query(
                "SELECT column_name::text, data_type::text, \
                 (is_nullable = 'NO' AND column_default IS NULL) \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 \
                 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(c)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<_, sqlx::Error>>()?,
            Conn::My(c) => sqlx::query(
                "SELECT CAST(column_name AS CHAR), CAST(data_type AS CHAR), \
                 CAST(is_nullable = 'NO' AND column_default IS NULL AND extra NOT LIKE '%auto_increment%' AS SIGNED) \
                 FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND table_name = ? \
                 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(c)
            .await?
            .iter()
            .map(|r| {
                let req: i64 = r.try_get(2)?;
                Ok((r.try_get(0)?, r.try_get(1)?, req != 0))
            })
            .collect::<Result<_, sqlx::Error>>()?,
        };
        Ok(rows
            .into_iter()
            .map(|(name, data_type, required)| ColumnInfo {
                name,
                data_type: data_type.to_ascii_lowercase(),
                required,
            })
            .collect())
    }

    /// Whether `id` alone is the primary key or a unique key of `table`: the upsert that makes
    /// writes idempotent depends on it.
    pub(super) async fn id_is_unique(&mut self, table: &str) -> Result<bool, sqlx::Error> {
        let n: i64 = match self {
            Conn::Pg(c) => sqlx::query(
                "SELECT count(*) FROM pg_index i \
                     JOIN pg_class t ON t.oid = i.indrelid \
                     JOIN pg_namespace n ON n.oid = t.relnamespace \
                     JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = i.indkey[0] \
                     WHERE n.nspname = current_schema() AND t.relname = $1 \
                     AND i.indisunique AND i.indnkeyatts = 1 AND a.attname = 'id'",
            )
            .bind(table)
            .fetch_one(c)
            .await?
            .try_get(0)?,
            Conn::My(c) => sqlx::query(
                "SELECT CAST(count(*) AS SIGNED) FROM information_schema.statistics s \
                     WHERE s.table_schema = DATABASE() AND s.table_name = ? \
                     AND s.column_name = 'id' AND s.non_unique = 0 AND s.seq_in_index = 1 \
                     AND NOT EXISTS (SELECT 1 FROM information_schema.statistics o \
                       WHERE o.table_schema = s.table_schema AND o.table_name = s.table_name \
                       AND o.index_name = s.index_name AND o.seq_in_index > 1)",
            )
            .bind(table)
            .fetch_one(c)
            .await?
            .try_get(0)?,
        };
        Ok(n > 0)
    }

    /// Runs `inserts` in one transaction; rows whose id is already there are skipped. Returns
    /// the rows actually inserted.
    pub(super) async fn insert_all(&mut self, inserts: &[Insert<'_>]) -> Result<u64, sqlx::Error> {
        let begin = match self {
            Conn::Pg(_) => "BEGIN",
            Conn::My(_) => "START TRANSACTION",
        };
        self.execute(begin).await?;
        let mut inserted = 0;
        for ins in inserts {
            match self.insert(ins).await {
                Ok(n) => inserted += n,
                Err(e) => {
                    // Best effort: a broken connection is dropped by the caller anyway.
                    let _ = self.execute("ROLLBACK").await;
                    return Err(e);
                }
            }
        }
        self.execute("COMMIT").await?;
        Ok(inserted)
    }

    async fn insert(&mut self, ins: &Insert<'_>) -> Result<u64, sqlx::Error> {
        let cols = ins.columns.len().max(1);
        let per_statement = (MAX_PARAMS / cols).max(1);
        let mut n = 0;
        for chunk in ins.rows.chunks(per_statement) {
            n += match self {
                Conn::Pg(c) => {
                    let mut q: QueryBuilder<'_, Postgres> = QueryBuilder::new(format!(
                        "INSERT INTO {} ({}) ",
                        ins.table,
                        ins.columns.join(", ")
                    ));
                    q.push_values(chunk, |mut b, row| {
                        push_cells!(b, row, json: |s| {
                            b.push_bind(s).push_unseparated("::jsonb");
                        }, time: |t| {
                            b.push_bind(t).push_unseparated("::timestamptz");
                        });
                    });
                    q.push(" ON CONFLICT (id) DO NOTHING");
                    q.build().execute(&mut *c).await?.rows_affected()
                }
                Conn::My(c) => {
                    // MySQL's INSERT IGNORE would also turn a value too long for its column
                    // into a silent truncation; so the ids already there are looked up first
                    // and only the others are inserted, with every error an error.
                    let mut q: QueryBuilder<'_, MySql> =
                        QueryBuilder::new(format!("SELECT id FROM {} WHERE id IN (", ins.table));
                    let mut ids = q.separated(", ");
                    for row in chunk {
                        if let Some(Cell::Text(id)) = row.first() {
                            ids.push_bind(id.as_ref());
                        }
                    }
                    q.push(")");
                    let existing: std::collections::HashSet<String> = q
                        .build()
                        .fetch_all(&mut *c)
                        .await?
                        .iter()
                        .filter_map(|r| r.try_get::<String, _>(0).ok())
                        .collect();
                    let mut seen = std::collections::HashSet::new();
                    let fresh: Vec<&Vec<Cell<'_>>> = chunk
                        .iter()
                        .filter(|row| match row.first() {
                            Some(Cell::Text(id)) => {
                                !existing.contains(id.as_ref()) && seen.insert(id.as_ref())
                            }
                            _ => true,
                        })
                        .collect();
                    if fresh.is_empty() {
                        continue;
                    }
                    let mut q: QueryBuilder<'_, MySql> = QueryBuilder::new(format!(
                        "INSERT INTO {} ({}) ",
                        ins.table,
                        ins.columns.join(", ")
                    ));
                    q.push_values(fresh, |mut b, row| {
                        push_cells!(b, row, json: |s| {
                            b.push_bind(s);
                        }, time: |t| {
                            b.push_bind(mysql_time(t));
                        });
                    });
                    q.build().execute(&mut *c).await?.rows_affected()
                }
            };
        }
        Ok(n)
    }

    /// Whether the connected user may insert into `table`: a probe row inside a transaction
    /// that is rolled back, so nothing stays.
    pub(super) async fn can_insert(
        &mut self,
        table: &str,
        columns: &[String],
        probe: Vec<Cell<'_>>,
    ) -> Result<(), sqlx::Error> {
        let ins = Insert {
            table: table.to_owned(),
            columns: columns.to_vec(),
            rows: vec![probe],
        };
        let begin = match self {
            Conn::Pg(_) => "BEGIN",
            Conn::My(_) => "START TRANSACTION",
        };
        self.execute(begin).await?;
        let r = self.insert(&ins).await;
        let _ = self.execute("ROLLBACK").await;
        r.map(|_| ())
    }

    pub(super) async fn close(self) {
        let _ = match self {
            Conn::Pg(c) => c.close().await,
            Conn::My(c) => c.close().await,
        };
    }
}

pub(super) fn quote(d: Dialect, name: &str) -> String {
    match d {
        Dialect::Postgres => format!("\"{}\"", name.replace('"', "\"\"")),
        Dialect::Mysql => format!("`{}`", name.replace('`', "``")),
    }
}

/// The column type for `t` in dialect `d`.
pub(super) fn type_name(d: Dialect, t: SqlType) -> &'static str {
    match (d, t) {
        (Dialect::Postgres, SqlType::Text) => "TEXT",
        (Dialect::Postgres, SqlType::Bigint) => "BIGINT",
        (Dialect::Postgres, SqlType::Double) => "DOUBLE PRECISION",
        (Dialect::Postgres, SqlType::Boolean) => "BOOLEAN",
        (Dialect::Postgres, SqlType::Json) => "JSONB",
        (Dialect::Mysql, SqlType::Text) => "MEDIUMTEXT",
        (Dialect::Mysql, SqlType::Bigint) => "BIGINT",
        (Dialect::Mysql, SqlType::Double) => "DOUBLE",
        (Dialect::Mysql, SqlType::Boolean) => "BOOLEAN",
        (Dialect::Mysql, SqlType::Json) => "JSON",
    }
}

/// Reads a column type the server reports back into ours; `None` for one sandcrawl does not
/// write (a date column, say).
pub(super) fn type_from_server(d: Dialect, data_type: &str) -> Option<SqlType> {
    let t = data_type.to_ascii_lowercase();
    Some(match (d, t.as_str()) {
        (_, "text" | "character varying" | "varchar" | "character" | "char") => SqlType::Text,
        (Dialect::Mysql, "mediumtext" | "tinytext") => SqlType::Text,
        // MariaDB reports its JSON type as longtext (with a json_valid check).
        (Dialect::Mysql, "longtext" | "json") => SqlType::Json,
        (_, "bigint" | "integer" | "smallint" | "int") => SqlType::Bigint,
        (Dialect::Mysql, "mediumint") => SqlType::Bigint,
        // MySQL's BOOLEAN is tinyint(1).
        (Dialect::Mysql, "tinyint") => SqlType::Boolean,
        (_, "double precision" | "double" | "real" | "numeric" | "decimal" | "float") => {
            SqlType::Double
        }
        (_, "boolean") => SqlType::Boolean,
        (Dialect::Postgres, "jsonb" | "json") => SqlType::Json,
        _ => return None,
    })
}

/// `2026-11-28T00:50:08.123Z` as MySQL's DATETIME reads it: `2026-11-28 00:50:08.123`.
fn mysql_time(rfc3339: &str) -> String {
    rfc3339
        .trim_end_matches('Z')
        .trim_end_matches("+00:00")
        .replacen('T', " ", 1)
}

/// What a failed database call means for the crawl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// The server is gone or busy (restart, network, too many connections, deadlock):
    /// wait and try again; nothing is lost.
    Transient,
    /// Wrong password or user.
    Auth,
    UnknownDatabase,
    /// The user may not create or insert.
    Permission,
    /// The server refuses the values themselves (too long for the column, out of range, a
    /// character it cannot store): another item may go in where this one cannot.
    Data,
    /// Anything else: a bug or a table changed under the crawl.
    Other,
}

pub(super) fn classify(e: &sqlx::Error) -> Failure {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Failure::Transient,
        sqlx::Error::Database(db) => {
            if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return match my.number() {
                    1045 | 1698 => Failure::Auth,
                    1049 => Failure::UnknownDatabase,
                    1044 | 1142 | 1227 | 1290 | 1792 => Failure::Permission,
                    1048 | 1264 | 1292 | 1366 | 1406 | 3140 | 4025 => Failure::Data,
                    // Another writer inserted one of the ids meanwhile: look again.
                    1062 => Failure::Transient,
                    1040 | 1053 | 1205 | 1213 | 2002 | 2003 | 2006 | 2013 | 1927 | 4031 => {
                        Failure::Transient
                    }
                    _ => Failure::Other,
                };
            }
            let code = db.code().unwrap_or_default();
            match code.as_ref() {
                "28P01" | "28000" => Failure::Auth,
                "3D000" => Failure::UnknownDatabase,
                "42501" | "25006" => Failure::Permission,
                c if c.starts_with("08") || c.starts_with("57P") || c.starts_with("53") => {
                    Failure::Transient
                }
                "40001" | "40P01" => Failure::Transient,
                // Data exceptions (a value too long, out of range, a NUL character) and
                // integrity violations of a table's own constraints.
                c if c.starts_with("22") || (c.starts_with("23") && c != "23505") => Failure::Data,
                _ => Failure::Other,
            }
        }
        _ => Failure::Other,
    }
}

/// The driver's message on one line, without anything that could hold a password.
pub(super) fn message(e: &sqlx::Error) -> String {
    let text = match e {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_times() {
        assert_eq!(quote(Dialect::Postgres, "a\"b"), "\"a\"\"b\"");
        assert_eq!(quote(Dialect::Mysql, "a`b"), "`a``b`");
        assert_eq!(
            mysql_time("2026-11-28T00:50:08.123Z"),
            "2026-11-28 00:50:08.123"
        );
        assert_eq!(
            type_from_server(Dialect::Mysql, "longtext"),
            Some(SqlType::Json)
        );
        assert_eq!(type_from_server(Dialect::Postgres, "date"), None);
    }
}
