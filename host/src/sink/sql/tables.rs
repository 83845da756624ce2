//! What the items look like as rows: the default `sandcrawl_items` table (fixed columns and
//! `fields` as JSON) or one table per item kind with one column per top-level field. It owns
//! table and column names, the checking of a table that already exists, column types (from
//! config, else inferred from the first value) and the per-item type check; it must not
//! decide when to write or retry (`writer.rs`).

use super::SqlConfig;
use super::SqlType;
use super::db::{Cell, ColumnInfo, Conn, Insert, quote, type_from_server, type_name};
use crate::sink::target::Dialect;
use crate::sink::{Item, Ordered};
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

/// The item columns every table starts with, in order.
const FIXED: [&str; 6] = [
    "id",
    "url",
    "fetched_at",
    "plugin_name",
    "plugin_version",
    "plugin_sha256",
];
/// Longest identifier both servers take (PostgreSQL: 63 bytes, MySQL: 64 characters).
const MAX_IDENT: usize = 63;

/// An item with its top-level fields in the order written.
type Parsed<'a> = (&'a Item, Vec<(String, &'a RawValue)>);

/// Per-item problems in one batch, by summary key.
pub(super) type Rejected = BTreeMap<String, u64>;

/// A field's column in a kind's table.
#[derive(Debug, Clone)]
struct FieldColumn {
    column: String,
    ty: SqlType,
}

#[derive(Debug)]
struct KindTable {
    /// Quoted table name.
    table: String,
    shown: String,
    /// Field name → column, for every field seen so far (and the table's columns on start).
    fields: HashMap<String, FieldColumn>,
    /// Column name → type, as the table has them (what a field may map to).
    columns: Vec<(String, SqlType)>,
}

/// A kind whose table cannot be used: every item of it is counted, and logged once.
#[derive(Debug)]
struct Refused(String);

pub(super) struct Tables {
    dialect: Dialect,
    cfg: SqlConfig,
    shown_url: String,
    kinds: HashMap<String, Result<KindTable, Refused>>,
    /// (kind, field) pairs whose type clash was already logged.
    warned: std::collections::HashSet<(String, String)>,
}

impl Tables {
    pub(super) fn new(dialect: Dialect, cfg: SqlConfig, shown_url: String) -> Self {
        Tables {
            dialect,
            cfg,
            shown_url,
            kinds: HashMap::new(),
            warned: Default::default(),
        }
    }

    /// The default table's DDL.
    pub(super) fn default_table_ddl(&self) -> String {
        let t = quote(self.dialect, &self.cfg.table);
        match self.dialect {
            Dialect::Postgres => format!(
                "CREATE TABLE IF NOT EXISTS {t} (id TEXT PRIMARY KEY, url TEXT NOT NULL, \
                 fetched_at TIMESTAMPTZ NOT NULL, plugin_name TEXT NOT NULL, \
                 plugin_version TEXT NOT NULL, plugin_sha256 TEXT NOT NULL, kind TEXT NOT NULL, \
                 fields JSONB NOT NULL)"
            ),
            Dialect::Mysql => format!(
                "CREATE TABLE IF NOT EXISTS {t} (id VARCHAR(64) NOT NULL PRIMARY KEY, \
                 url TEXT NOT NULL, fetched_at DATETIME(3) NOT NULL, plugin_name TEXT NOT NULL, \
                 plugin_version TEXT NOT NULL, plugin_sha256 VARCHAR(64) NOT NULL, \
                 kind TEXT NOT NULL, fields JSON NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
            ),
        }
    }

    /// Why an existing default table cannot take items, if it cannot.
    pub(super) fn default_table_misfit(
        &self,
        cols: &[ColumnInfo],
        id_unique: bool,
    ) -> Option<String> {
        let mut want: Vec<(&str, &[SqlType])> = vec![
            ("id", &[SqlType::Text]),
            ("url", &[SqlType::Text, SqlType::Json]),
            ("plugin_name", &[SqlType::Text, SqlType::Json]),
            ("plugin_version", &[SqlType::Text, SqlType::Json]),
            ("plugin_sha256", &[SqlType::Text]),
            ("kind", &[SqlType::Text, SqlType::Json]),
            ("fields", &[SqlType::Json]),
        ];
        let mut problems = Vec::new();
        for (name, ok) in want.drain(..) {
            match cols.iter().find(|c| c.name == name) {
                None => problems.push(format!("no column {name}")),
                Some(c) => match type_from_server(self.dialect, &c.data_type) {
                    Some(t) if ok.contains(&t) => {}
                    _ => problems.push(format!("column {name} is {}", c.data_type)),
                },
            }
        }
        match cols.iter().find(|c| c.name == "fetched_at") {
            None => problems.push("no column fetched_at".into()),
            Some(c)
                if !c.data_type.starts_with("timestamp")
                    && !c.data_type.starts_with("datetime") =>
            {
                problems.push(format!("column fetched_at is {}", c.data_type))
            }
            Some(_) => {}
        }
        const OURS: [&str; 8] = [
            "id",
            "url",
            "fetched_at",
            "plugin_name",
            "plugin_version",
            "plugin_sha256",
            "kind",
            "fields",
        ];
        for c in cols
            .iter()
            .filter(|c| c.required && !OURS.contains(&c.name.as_str()))
        {
            problems.push(format!("column {} is NOT NULL without a default", c.name));
        }
        if !id_unique && cols.iter().any(|c| c.name == "id") {
            problems.push("id is not its primary key".into());
        }
        (!problems.is_empty()).then(|| problems.join(", "))
    }

    /// The default table's columns, quoted, in insert order.
    pub(super) fn default_columns(&self) -> Vec<String> {
        FIXED
            .iter()
            .chain(["kind", "fields"].iter())
            .map(|c| quote(self.dialect, c))
            .collect()
    }

    /// A row that fits the default table (for the insert probe).
    pub(super) fn probe_row() -> Vec<Cell<'static>> {
        let t = |s: &'static str| Cell::Text(Cow::Borrowed(s));
        vec![
            t("sandcrawl-probe"),
            t("http://probe.invalid/"),
            Cell::Time("2000-01-01T00:00:00Z"),
            t("probe"),
            t("0"),
            t("0"),
            t("probe"),
            Cell::Json("{}"),
        ]
    }

    /// The statements for one batch of items. Per-kind tables and columns a batch needs are
    /// created here, before its transaction (MySQL commits any open transaction on DDL).
    /// Items that cannot be written (a type clash) are counted in the returned map.
    pub(super) async fn plan<'a>(
        &mut self,
        conn: &mut Conn,
        items: &[&'a Item],
    ) -> Result<(Vec<Insert<'a>>, Rejected), sqlx::Error> {
        if !self.cfg.per_kind_tables {
            let rows = items
                .iter()
                .map(|it| {
                    let mut row = fixed_cells(it);
                    row.push(Cell::Text(Cow::Borrowed(it.kind.as_str())));
                    row.push(Cell::Json(it.fields.get()));
                    row
                })
                .collect();
            let ins = Insert {
                table: quote(self.dialect, &self.cfg.table),
                columns: self.default_columns(),
                rows,
            };
            return Ok((vec![ins], Rejected::new()));
        }
        let mut rejected = Rejected::new();
        // Items of one kind, in order, with their fields parsed.
        let mut by_kind: Vec<(&str, Vec<Parsed<'a>>)> = Vec::new();
        for it in items {
            let fields = match serde_json::from_str::<Ordered<'a>>(it.fields.get()) {
                Ok(f) => f.0,
                Err(_) => {
                    *rejected.entry("sql_not_an_object".into()).or_default() += 1;
                    continue;
                }
            };
            match by_kind.iter_mut().find(|(k, _)| *k == it.kind) {
                Some((_, v)) => v.push((it, fields)),
                None => by_kind.push((it.kind.as_str(), vec![(it, fields)])),
            }
        }
        let mut inserts = Vec::new();
        for (kind, group) in by_kind {
            if !self.kinds.contains_key(kind) {
                let first: Vec<(String, &RawValue)> = group[0].1.clone();
                let t = self.open_kind(conn, kind, &first).await?;
                self.kinds.insert(kind.to_owned(), t);
            }
            // New fields become nullable columns, typed by config or by their first value.
            let mut added: Vec<(String, FieldColumn)> = Vec::new();
            if let Some(Ok(t)) = self.kinds.get(kind) {
                for (_, fields) in &group {
                    for (name, v) in fields {
                        if t.fields.contains_key(name) || added.iter().any(|(n, _)| n == name) {
                            continue;
                        }
                        let Some(ty) = self.configured(kind, name).or_else(|| infer(v)) else {
                            continue;
                        };
                        let column = column_name(name);
                        let ty = t
                            .columns
                            .iter()
                            .find(|(c, _)| *c == column)
                            .map_or(ty, |(_, existing)| *existing);
                        added.push((name.clone(), FieldColumn { column, ty }));
                    }
                }
            }
            let d = self.dialect;
            match self.kinds.get_mut(kind) {
                Some(Ok(t)) => {
                    for (name, fc) in added {
                        if !t.columns.iter().any(|(c, _)| *c == fc.column) {
                            // MySQL 8 has no ADD COLUMN IF NOT EXISTS (MariaDB has); the
                            // table's columns were read when it was opened, so it is not needed.
                            let guard = match d {
                                Dialect::Postgres => "IF NOT EXISTS ",
                                Dialect::Mysql => "",
                            };
                            let sql = format!(
                                "ALTER TABLE {} ADD COLUMN {guard}{} {} NULL",
                                t.table,
                                quote(d, &fc.column),
                                type_name(d, fc.ty)
                            );
                            conn.execute(&sql).await?;
                            t.columns.push((fc.column.clone(), fc.ty));
                        }
                        t.fields.insert(name, fc);
                    }
                }
                Some(Err(Refused(why))) => {
                    *rejected.entry("sql_table_refused".into()).or_default() += group.len() as u64;
                    if self.warned.insert((kind.to_owned(), String::new())) {
                        tracing::error!(output = %self.shown_url, kind, "{why}");
                    }
                    continue;
                }
                None => continue,
            }
            let Some(Ok(t)) = self.kinds.get(kind) else {
                continue;
            };
            let mut columns: Vec<String> = FIXED.iter().map(|c| quote(d, c)).collect();
            columns.extend(t.columns.iter().map(|(c, _)| quote(d, c)));
            let mut rows = Vec::with_capacity(group.len());
            'items: for (it, fields) in group {
                let mut row = fixed_cells(it);
                row.resize(FIXED.len() + t.columns.len(), Cell::Null);
                for (name, v) in fields {
                    let Some(fc) = t.fields.get(&name) else {
                        // A null field that never had a value: nothing to keep.
                        continue;
                    };
                    let Some(pos) = t.columns.iter().position(|(c, _)| *c == fc.column) else {
                        continue;
                    };
                    match cell(v, fc.ty) {
                        Ok(c) => row[FIXED.len() + pos] = c,
                        Err(got) => {
                            *rejected.entry("sql_type_clash".into()).or_default() += 1;
                            if self.warned.insert((kind.to_owned(), name.clone())) {
                                tracing::error!(
                                    output = %self.shown_url,
                                    "item kind {kind:?} field {name:?} is {got} but column {} of table {} is {}; such items are not written (counted under sql_type_clash in the summary). Set [output.sql.columns.{kind}] {name} = \"json\" to take mixed values",
                                    fc.column,
                                    t.shown,
                                    fc.ty.as_str()
                                );
                            }
                            continue 'items;
                        }
                    }
                }
                rows.push(row);
            }
            if !rows.is_empty() {
                inserts.push(Insert {
                    table: t.table.clone(),
                    columns,
                    rows,
                });
            }
        }
        Ok((inserts, rejected))
    }

    fn configured(&self, kind: &str, field: &str) -> Option<SqlType> {
        self.cfg
            .columns
            .get(kind)
            .and_then(|c| c.get(field))
            .copied()
    }

    /// Finds or creates the table of `kind`; a table that exists is read, not altered.
    async fn open_kind(
        &self,
        conn: &mut Conn,
        kind: &str,
        first: &[(String, &RawValue)],
    ) -> Result<Result<KindTable, Refused>, sqlx::Error> {
        let d = self.dialect;
        let name = table_name(&self.cfg.table_prefix, kind);
        let table = quote(d, &name);
        let existing = conn.columns(&name).await?;
        if existing.is_empty() {
            let mut cols: Vec<String> = match d {
                Dialect::Postgres => vec![
                    "id TEXT PRIMARY KEY".into(),
                    "url TEXT NOT NULL".into(),
                    "fetched_at TIMESTAMPTZ NOT NULL".into(),
                    "plugin_name TEXT NOT NULL".into(),
                    "plugin_version TEXT NOT NULL".into(),
                    "plugin_sha256 TEXT NOT NULL".into(),
                ],
                Dialect::Mysql => vec![
                    "id VARCHAR(64) NOT NULL PRIMARY KEY".into(),
                    "url TEXT NOT NULL".into(),
                    "fetched_at DATETIME(3) NOT NULL".into(),
                    "plugin_name TEXT NOT NULL".into(),
                    "plugin_version TEXT NOT NULL".into(),
                    "plugin_sha256 VARCHAR(64) NOT NULL".into(),
                ],
            };
            let mut fields = HashMap::new();
            let mut columns = Vec::new();
            for (f, v) in first {
                let Some(ty) = self.configured(kind, f).or_else(|| infer(v)) else {
                    continue;
                };
                let column = column_name(f);
                if columns.iter().any(|(c, _)| *c == column) {
                    continue;
                }
                cols.push(format!("{} {} NULL", quote(d, &column), type_name(d, ty)));
                columns.push((column.clone(), ty));
                fields.insert(f.clone(), FieldColumn { column, ty });
            }
            let tail = match d {
                Dialect::Postgres => "",
                Dialect::Mysql => " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
            };
            conn.execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} ({}){tail}",
                cols.join(", ")
            ))
            .await?;
            tracing::info!(output = %self.shown_url, kind, "created table {name}");
            return Ok(Ok(KindTable {
                table,
                shown: name,
                fields,
                columns,
            }));
        }
        let mut problems = Vec::new();
        for f in FIXED {
            if !existing.iter().any(|c| c.name == f) {
                problems.push(format!("no column {f}"));
            }
        }
        if !conn.id_is_unique(&name).await? {
            problems.push("id is not its primary key".into());
        }
        let mut columns = Vec::new();
        for c in existing
            .iter()
            .filter(|c| !FIXED.contains(&c.name.as_str()))
        {
            match type_from_server(d, &c.data_type) {
                Some(t) if !c.required => columns.push((c.name.clone(), t)),
                Some(_) => problems.push(format!("column {} is NOT NULL", c.name)),
                None => problems.push(format!(
                    "column {} is {}, which sandcrawl does not write",
                    c.name, c.data_type
                )),
            }
        }
        if !problems.is_empty() {
            return Ok(Err(Refused(format!(
                "table {name} exists but does not fit items of kind {kind:?} ({}); its items are not written (counted under sql_table_refused). Drop or rename the table, or set [output.sql] table_prefix",
                problems.join(", ")
            ))));
        }
        // Fields map to the existing columns by name; their types are the table's.
        let fields = HashMap::new();
        Ok(Ok(KindTable {
            table,
            shown: name,
            fields,
            columns,
        }))
    }
}

impl SqlType {
    pub fn as_str(self) -> &'static str {
        match self {
            SqlType::Text => "text",
            SqlType::Bigint => "bigint",
            SqlType::Double => "double",
            SqlType::Boolean => "boolean",
            SqlType::Json => "json",
        }
    }
}

fn fixed_cells<'a>(it: &'a Item) -> Vec<Cell<'a>> {
    vec![
        Cell::Text(Cow::Borrowed(it.id.as_str())),
        Cell::Text(Cow::Borrowed(it.url.as_str())),
        Cell::Time(it.fetched_at.as_str()),
        Cell::Text(Cow::Borrowed(it.plugin.name.as_str())),
        Cell::Text(Cow::Borrowed(it.plugin.version.as_str())),
        Cell::Text(Cow::Borrowed(it.plugin.sha256.as_str())),
    ]
}

/// What a JSON value is, for messages and inference.
fn shape(v: &RawValue) -> &'static str {
    match v.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        _ if is_integer(v.get()) => "an integer",
        _ => "a number",
    }
}

fn is_integer(t: &str) -> bool {
    !t.contains(['.', 'e', 'E']) && t.parse::<i64>().is_ok()
}

/// The column type a field gets from its first value; `None` for null (no column until a
/// value shows up).
fn infer(v: &RawValue) -> Option<SqlType> {
    Some(match shape(v) {
        "a string" => SqlType::Text,
        "a boolean" => SqlType::Boolean,
        "null" => return None,
        "an integer" => SqlType::Bigint,
        "a number" => SqlType::Double,
        _ => SqlType::Json,
    })
}

/// The value for a column of type `ty`, or what the value is when it does not fit.
fn cell(v: &RawValue, ty: SqlType) -> Result<Cell<'_>, &'static str> {
    let t = v.get();
    let got = shape(v);
    if got == "null" {
        return Ok(Cell::Null);
    }
    match (ty, got) {
        (SqlType::Json, _) => Ok(Cell::Json(t)),
        (SqlType::Text, "a string") => serde_json::from_str::<Cow<'_, str>>(t)
            .map(Cell::Text)
            .map_err(|_| got),
        (SqlType::Bigint, "an integer") => t.parse().map(Cell::Int).map_err(|_| got),
        (SqlType::Double, "an integer" | "a number") => t
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Cell::Float)
            .ok_or(got),
        (SqlType::Boolean, "a boolean") => Ok(Cell::Bool(t == "true")),
        _ => Err(got),
    }
}

/// A name as an identifier both servers take unquoted-safe: lower case letters, digits and
/// `_`, at most 63 bytes. A name that had to change gets a short hash of the original, so
/// two names never meet in one identifier.
fn identifier(raw: &str, reserved: &[&str]) -> String {
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert_str(0, "f_");
    }
    if reserved.contains(&s.as_str()) {
        s.insert_str(0, "field_");
    }
    if s != raw || s.len() > MAX_IDENT {
        let h = hex::encode(&Sha256::digest(raw.as_bytes())[..3]);
        s.truncate(MAX_IDENT - 7);
        s.push('_');
        s.push_str(&h);
    }
    s
}

fn column_name(field: &str) -> String {
    identifier(field, &FIXED)
}

fn table_name(prefix: &str, kind: &str) -> String {
    let k = identifier(kind, &[]);
    let mut name = format!("{prefix}{k}");
    if name.len() > MAX_IDENT {
        let h = hex::encode(&Sha256::digest(name.as_bytes())[..3]);
        name.truncate(MAX_IDENT - 7);
        name.push('_');
        name.push_str(&h);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn names_are_safe_and_distinct() {
        assert_eq!(column_name("price"), "price");
        assert!(column_name("url").starts_with("field_url_"));
        assert_ne!(column_name("Price"), column_name("price"));
        assert_ne!(column_name("a-b"), column_name("a_b"));
        assert!(column_name(&"x".repeat(200)).len() <= MAX_IDENT);
        assert!(column_name("9lives").starts_with("f_9lives_"));
        assert_eq!(table_name("sandcrawl_", "quote"), "sandcrawl_quote");
        assert!(table_name("p_", &"k".repeat(100)).len() <= MAX_IDENT);
    }

    #[test]
    fn types_are_inferred_and_checked() {
        assert_eq!(infer(&raw("\"a\"")), Some(SqlType::Text));
        assert_eq!(infer(&raw("3")), Some(SqlType::Bigint));
        assert_eq!(infer(&raw("3.5")), Some(SqlType::Double));
        assert_eq!(infer(&raw("true")), Some(SqlType::Boolean));
        assert_eq!(infer(&raw("[1]")), Some(SqlType::Json));
        assert_eq!(infer(&raw("null")), None);
        assert_eq!(cell(&raw("3"), SqlType::Double), Ok(Cell::Float(3.0)));
        assert_eq!(cell(&raw("3.5"), SqlType::Bigint), Err("a number"));
        assert_eq!(cell(&raw("\"x\""), SqlType::Bigint), Err("a string"));
        assert_eq!(cell(&raw("null"), SqlType::Bigint), Ok(Cell::Null));
        assert_eq!(
            cell(&raw("{\"a\":1}"), SqlType::Json),
            Ok(Cell::Json("{\"a\":1}"))
        );
        assert_eq!(
            cell(&raw("\"a\\\"b\""), SqlType::Text),
            Ok(Cell::Text(Cow::Owned("a\"b".into())))
        );
        assert_eq!(
            cell(&raw("99999999999999999999"), SqlType::Bigint),
            Err("a number")
        );
    }
}
