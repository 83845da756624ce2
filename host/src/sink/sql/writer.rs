//! The task that owns a database connection: it takes the pages' items from the crawl in
//! order, writes them in batched transactions, and reports how far it has committed. It owns
//! reconnecting and retrying: a server that goes away costs a pause, one log line when it
//! goes and one when it is back, never an item. It must not touch the frontier; the crawl
//! commits a page only once [`WriterState::durable`] has passed the page's ticket.

use super::db::{Conn, Failure, classify, message};
use super::tables::Tables;
use crate::sink::Item;
use crate::sink::target::SqlUrl;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Back-off between attempts while the server is away.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Errors that are not about reachability (a table changed under the crawl, a revoked grant)
/// end the crawl after this many attempts at one batch; its pages stay queued for resume.
const OTHER_ATTEMPTS: u32 = 3;

/// One page's items, in the order the crawl committed them.
pub(super) struct Job {
    pub ticket: u64,
    pub items: Vec<Item>,
}

/// What the crawl reads about the writer.
#[derive(Debug, Clone, Default)]
pub struct WriterState {
    /// The highest ticket whose items are committed in the database.
    pub durable: u64,
    /// Rows inserted (a row that was already there is not counted).
    pub inserted: u64,
    /// Items that could not be written, by summary key (`sql_type_clash`, ...).
    pub rejected: BTreeMap<String, u64>,
    /// Set when the writer gave up: the crawl stops with this line.
    pub failed: Option<String>,
}

pub(super) struct Writer {
    pub url: SqlUrl,
    pub conn: Option<Conn>,
    pub tables: Tables,
    pub batch_items: usize,
    pub rx: mpsc::UnboundedReceiver<Job>,
    pub state: watch::Sender<WriterState>,
    pub backlog: Arc<AtomicUsize>,
    /// Whether a refused item was logged (once per output: a bad field can repeat a lot).
    pub refused_logged: bool,
}

impl Writer {
    pub(super) async fn run(mut self) {
        while let Some(first) = self.rx.recv().await {
            let mut jobs = vec![first];
            let mut n = jobs[0].items.len();
            // Whatever queued while the last batch was written goes in this one.
            while n < self.batch_items {
                match self.rx.try_recv() {
                    Ok(j) => {
                        n += j.items.len();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            let ticket = jobs.last().map_or(0, |j| j.ticket);
            match self.write(&jobs).await {
                Ok((inserted, rejected)) => {
                    self.backlog.fetch_sub(n, Ordering::Relaxed);
                    self.state.send_modify(|s| {
                        s.durable = ticket;
                        s.inserted += inserted;
                        for (k, v) in rejected {
                            *s.rejected.entry(k).or_default() += v;
                        }
                    });
                }
                Err(line) => {
                    self.state.send_modify(|s| s.failed = Some(line));
                    return;
                }
            }
        }
        if let Some(c) = self.conn.take() {
            c.close().await;
        }
    }

    /// Writes one batch, retrying until it is committed; `Err` only for an error that
    /// retrying does not fix. A batch the server refuses for its data (a value its column
    /// cannot hold) is split in halves until the refused items are found: they are counted
    /// (`sql_item_refused`) and logged, and the rest is written.
    async fn write(&mut self, jobs: &[Job]) -> Result<(u64, BTreeMap<String, u64>), String> {
        let items: Vec<&Item> = jobs.iter().flat_map(|j| j.items.iter()).collect();
        let mut inserted = 0;
        let mut rejected: BTreeMap<String, u64> = BTreeMap::new();
        let mut todo: Vec<&[&Item]> = vec![&items];
        while let Some(chunk) = todo.pop() {
            match self.write_chunk(chunk).await? {
                Ok((n, r)) => {
                    inserted += n;
                    for (k, v) in r {
                        *rejected.entry(k).or_default() += v;
                    }
                }
                Err(_) if chunk.len() > 1 => {
                    let (a, b) = chunk.split_at(chunk.len() / 2);
                    todo.push(b);
                    todo.push(a);
                }
                Err(why) => {
                    *rejected.entry("sql_item_refused".into()).or_default() += 1;
                    if let Some(it) = chunk.first()
                        && !self.refused_logged
                    {
                        self.refused_logged = true;
                        tracing::error!(
                            output = %self.url.shown,
                            "the database refused item {} (kind {:?}, {}): {why}; such items are not written (counted under sql_item_refused in the summary); further ones are not logged",
                            it.id,
                            it.kind,
                            it.url
                        );
                    }
                }
            }
        }
        Ok((inserted, rejected))
    }

    /// Writes `items` in one transaction, retrying while the server is away. The inner `Err`
    /// is the server refusing the data itself (retrying cannot help; splitting may).
    #[allow(clippy::type_complexity)]
    async fn write_chunk(
        &mut self,
        items: &[&Item],
    ) -> Result<Result<(u64, BTreeMap<String, u64>), String>, String> {
        let mut delay = RETRY_FIRST;
        let mut away_since: Option<Instant> = None;
        let mut other = 0;
        loop {
            let attempt = self.attempt(items).await;
            let e = match attempt {
                Ok(r) => {
                    if let Some(t) = away_since {
                        tracing::warn!(
                            output = %self.url.shown,
                            "database is back after {:.1}s; the crawl goes on",
                            t.elapsed().as_secs_f64()
                        );
                    }
                    return Ok(Ok(r));
                }
                Err(e) => e,
            };
            if classify(&e) == Failure::Data {
                // The transaction was rolled back; the connection is still good.
                return Ok(Err(message(&e)));
            }
            // Whatever state the connection is in, the next attempt starts on a fresh one.
            if let Some(c) = self.conn.take() {
                drop(c);
            }
            match classify(&e) {
                Failure::Transient => {
                    if away_since.is_none() {
                        tracing::warn!(
                            output = %self.url.shown,
                            "database unreachable ({}); the items wait in memory (fetching pauses at output.sql.max_backlog_items) and sandcrawl reconnects every few seconds; nothing is lost",
                            message(&e)
                        );
                        away_since = Some(Instant::now());
                    }
                }
                _ => {
                    other += 1;
                    if other >= OTHER_ATTEMPTS {
                        return Err(format!(
                            "output {}: {} (the pages of the items not written stay queued; fix the database and run again to resume)",
                            self.url.shown,
                            message(&e)
                        ));
                    }
                    tracing::warn!(output = %self.url.shown, "writing items failed ({}); retrying", message(&e));
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(RETRY_MAX);
        }
    }

    async fn attempt(
        &mut self,
        items: &[&Item],
    ) -> Result<(u64, BTreeMap<String, u64>), sqlx::Error> {
        let conn = match &mut self.conn {
            Some(c) => c,
            None => self.conn.insert(Conn::connect(&self.url).await?),
        };
        let (inserts, rejected) = self.tables.plan(conn, items).await?;
        let inserted = if inserts.is_empty() {
            0
        } else {
            conn.insert_all(&inserts).await?
        };
        Ok((inserted, rejected))
    }
}
