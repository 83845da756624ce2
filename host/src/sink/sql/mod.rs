//! Items into PostgreSQL or MySQL/MariaDB (`--out postgres://…`, `mysql://…`).
//!
//! [`SqlSink::connect`] checks everything a crawl needs from the server before a page is
//! fetched (it connects, finds or creates the table and probes that the user may insert) and
//! turns each failure into one line naming the URL, password masked, and the fix. Then the
//! crawl hands each page's items to a writer task (`writer.rs`) and gets a ticket; the page
//! is committed to the frontier only when the writer reports that ticket durable. Rows are
//! inserted idempotently on the deterministic item id, so a page fetched again after a crash
//! cannot add a row twice. `tables.rs` owns the table layouts, `db.rs` the dialects. This
//! module must not touch the frontier or decide what an item contains.

mod db;
mod tables;
mod writer;

pub use writer::WriterState;

use self::db::{Conn, Failure, classify, message};
use self::tables::Tables;
use self::writer::{Job, Writer};
use super::target::SqlUrl;
use super::{Item, Sink};
use anyhow::{Result, anyhow, bail};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{mpsc, watch};

/// `[output.sql]`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlConfig {
    /// The items table (when `per_kind_tables` is off).
    pub table: String,
    /// One table per item kind, one column per top-level field.
    pub per_kind_tables: bool,
    /// Per-kind tables are named PREFIX + kind.
    pub table_prefix: String,
    /// Column types for per-kind tables: `[output.sql.columns.KIND] FIELD = "double"`. Fields
    /// not named here take the type of their first value.
    pub columns: BTreeMap<String, BTreeMap<String, SqlType>>,
    /// Most items in one transaction.
    pub batch_items: usize,
    /// Items waiting for the database beyond which no new page is fetched (back-pressure
    /// while the server is slow or away).
    pub max_backlog_items: usize,
}

impl Default for SqlConfig {
    fn default() -> Self {
        SqlConfig {
            table: "sandcrawl_items".into(),
            per_kind_tables: false,
            table_prefix: "sandcrawl_".into(),
            columns: BTreeMap::new(),
            batch_items: 2_000,
            max_backlog_items: 20_000,
        }
    }
}

impl SqlConfig {
    pub fn check(&self) -> Result<()> {
        let ident = |s: &str| {
            !s.is_empty()
                && s.len() <= 48
                && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !s.starts_with(|c: char| c.is_ascii_digit())
        };
        if !ident(&self.table) {
            bail!(
                "output.sql.table {:?}: use letters, digits and _ (at most 48, not starting with a digit)",
                self.table
            );
        }
        if !self.table_prefix.is_empty() && !ident(&self.table_prefix) {
            bail!(
                "output.sql.table_prefix {:?}: use letters, digits and _ (at most 48, not starting with a digit)",
                self.table_prefix
            );
        }
        if self.batch_items == 0 || self.max_backlog_items == 0 {
            bail!("output.sql.batch_items and output.sql.max_backlog_items must be at least 1");
        }
        Ok(())
    }
}

/// A column type in per-kind tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqlType {
    Text,
    Bigint,
    Double,
    Boolean,
    Json,
}

/// The commit token: rows inserted so far (for the summary; resume needs nothing else, as
/// inserts are idempotent).
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct SqlToken {
    sql: Count,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Count {
    items: u64,
}

pub struct SqlSink {
    url: SqlUrl,
    tx: mpsc::UnboundedSender<Job>,
    state: watch::Receiver<WriterState>,
    /// The last ticket handed out.
    sent: u64,
    backlog: Arc<AtomicUsize>,
    /// Rows inserted by earlier runs of this crawl.
    before: u64,
}

impl SqlSink {
    /// Connects and checks the table and the user's rights, then starts the writer. Every
    /// failure is one line with the URL (password masked) and the fix.
    pub async fn connect(url: &SqlUrl, cfg: &SqlConfig) -> Result<SqlSink> {
        let fail = |e: &sqlx::Error, doing: &str| -> anyhow::Error {
            let msg = message(e);
            let fix = match classify(e) {
                Failure::Auth => "check the user and password in the URL",
                Failure::UnknownDatabase => {
                    "create the database (CREATE DATABASE …) or fix its name in the URL"
                }
                Failure::Permission => {
                    "the user may not write there: grant it CREATE and INSERT, or use another user"
                }
                Failure::Transient => {
                    "check that the server is running and the host and port in the URL are right"
                }
                Failure::Other | Failure::Data => "check the URL and the server",
            };
            anyhow!("output {}: {doing}: {msg}; {fix}", url.shown)
        };
        let mut conn = Conn::connect(url)
            .await
            .map_err(|e| fail(&e, "cannot connect"))?;
        let tables = Tables::new(conn.dialect(), cfg.clone(), url.shown.clone());
        if cfg.per_kind_tables {
            // Tables are created as kinds show up: check now that the user may.
            let probe = conn.quote(&format!(
                "{}probe_{:08x}",
                cfg.table_prefix,
                rand::random::<u32>()
            ));
            conn.execute(&format!("CREATE TABLE {probe} (id INT)"))
                .await
                .map_err(|e| fail(&e, "cannot create tables"))?;
            conn.execute(&format!("DROP TABLE {probe}"))
                .await
                .map_err(|e| fail(&e, "cannot drop its probe table"))?;
        } else {
            let mut cols = conn
                .columns(&cfg.table)
                .await
                .map_err(|e| fail(&e, "cannot read the table's columns"))?;
            if cols.is_empty() {
                conn.execute(&tables.default_table_ddl())
                    .await
                    .map_err(|e| fail(&e, &format!("cannot create table {}", cfg.table)))?;
                cols = conn
                    .columns(&cfg.table)
                    .await
                    .map_err(|e| fail(&e, "cannot read the table's columns"))?;
            }
            let unique = conn
                .id_is_unique(&cfg.table)
                .await
                .map_err(|e| fail(&e, "cannot read the table's keys"))?;
            if let Some(why) = tables.default_table_misfit(&cols, unique) {
                bail!(
                    "output {}: table {} exists but does not fit sandcrawl's items ({why}); it is left as it is: name another with [output.sql] table = \"…\", or drop it",
                    url.shown,
                    cfg.table
                );
            }
            conn.can_insert(
                &conn.quote(&cfg.table),
                &tables.default_columns(),
                Tables::probe_row(),
            )
            .await
            .map_err(|e| fail(&e, &format!("cannot insert into {}", cfg.table)))?;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(WriterState::default());
        let backlog = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            url: url.clone(),
            conn: Some(conn),
            tables,
            batch_items: cfg.batch_items,
            rx,
            state: state_tx,
            backlog: Arc::clone(&backlog),
            refused_logged: false,
        };
        tokio::spawn(writer.run());
        Ok(SqlSink {
            url: url.clone(),
            tx,
            state,
            sent: 0,
            backlog,
            before: 0,
        })
    }

    /// Takes up the count of an earlier run from its commit token.
    pub fn resume(&mut self, token: Option<&[u8]>) -> Result<()> {
        if let Some(raw) = token {
            let t: SqlToken = serde_json::from_slice(raw).map_err(|_| {
                anyhow!(
                    "output {}: the state directory's record of this output is not a database's; this state was written with another output, so keep that --out or start a new --state",
                    self.url.shown
                )
            })?;
            self.before = t.sql.items;
        }
        Ok(())
    }

    pub fn initial_token() -> Vec<u8> {
        serde_json::to_vec(&SqlToken::default()).unwrap_or_default()
    }
}

impl Sink for SqlSink {
    fn write_page(&mut self, items: &[Item]) -> Result<u64> {
        if items.is_empty() {
            return Ok(self.sent);
        }
        self.sent += 1;
        self.backlog.fetch_add(items.len(), Ordering::Relaxed);
        let job = Job {
            ticket: self.sent,
            items: items.to_vec(),
        };
        if self.tx.send(job).is_err() {
            let why = self.state.borrow().failed.clone();
            bail!(
                "{}",
                why.unwrap_or_else(|| format!("output {}: its writer stopped", self.url.shown))
            );
        }
        Ok(self.sent)
    }

    fn durable(&mut self) -> Result<u64> {
        let s = self.state.borrow();
        if let Some(why) = &s.failed {
            bail!("{why}");
        }
        Ok(s.durable)
    }

    fn changed(&mut self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if self.state.changed().await.is_err() {
                // The writer is gone and said what it had to: nothing more will change.
                std::future::pending::<()>().await;
            }
        })
    }

    fn backlog(&self) -> usize {
        self.backlog.load(Ordering::Relaxed)
    }

    fn commit_token(&self) -> Vec<u8> {
        serde_json::to_vec(&SqlToken {
            sql: Count {
                items: self.items_written(),
            },
        })
        .unwrap_or_default()
    }

    fn sync(&mut self) -> Result<()> {
        // A committed transaction is already durable.
        Ok(())
    }

    fn items_written(&self) -> u64 {
        self.before + self.state.borrow().inserted
    }

    fn describe(&self) -> String {
        self.url.shown.clone()
    }

    fn rejected(&self) -> BTreeMap<String, u64> {
        self.state.borrow().rejected.clone()
    }
}
