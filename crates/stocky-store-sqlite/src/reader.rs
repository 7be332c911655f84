//! Read-only access beside the writer.
//!
//! A small pool of `query_only` connections used from tokio's blocking threads. Each read
//! that needs several statements runs them in one deferred transaction, so it sees one
//! consistent snapshot (WAL): e.g. a replay page's bounds and rows, or a full-refresh
//! snapshot and the event id it reflects.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

use crate::{schema, StoreError};

/// Connections kept open for reuse; a burst beyond this opens (and then closes) extra ones.
const POOL_KEEP: usize = 4;

#[derive(Clone)]
pub(crate) struct ReadPool {
    path: Arc<PathBuf>,
    idle: Arc<Mutex<Vec<Connection>>>,
    read_only: bool,
}

impl ReadPool {
    /// A pool of `query_only` connections, or (`read_only: false`) of read-write ones.
    pub(crate) fn new(path: PathBuf, read_only: bool) -> Self {
        Self {
            path: Arc::new(path),
            idle: Arc::new(Mutex::new(Vec::new())),
            read_only,
        }
    }

    /// Runs `f` on a pooled connection on a blocking thread.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            let taken = pool
                .idle
                .lock()
                .map_err(|_| StoreError::Task("read pool poisoned".into()))?
                .pop();
            let mut conn = match taken {
                Some(conn) => conn,
                None => {
                    let conn = Connection::open(&*pool.path)?;
                    schema::configure(&conn, pool.read_only)?;
                    conn
                }
            };
            let result = f(&mut conn);
            if let Ok(mut idle) = pool.idle.lock() {
                if idle.len() < POOL_KEEP {
                    idle.push(conn);
                }
            }
            result
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// One event as stored in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub id: u64,
    pub site: String,
    pub event: String,
    /// The event's `data`, as JSON text.
    pub data: String,
    pub client_id: String,
    pub created_at: i64,
}

/// A page of the log and the stream's bounds at the moment it was read.
#[derive(Debug, Clone)]
pub struct ReplayPage {
    pub epoch: String,
    /// Last id assigned in the stream.
    pub head: u64,
    /// Oldest id still in the log (`head + 1` when the log is empty).
    pub oldest: u64,
    pub events: Vec<StoredEvent>,
}

impl ReplayPage {
    /// Whether every event after `after` is still in the log (or there are none).
    pub fn covers(&self, after: u64) -> bool {
        after <= self.head && after + 1 >= self.oldest
    }
}

/// One product's on-hand stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StockRow {
    pub product_id: i64,
    pub on_hand: i64,
    pub updated_at: i64,
    /// The event that last changed it.
    pub last_event_id: u64,
}

/// All of a site's stock and the event id it reflects.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub epoch: String,
    pub head: u64,
    pub stock: Vec<StockRow>,
}

fn stream_head(tx: &rusqlite::Transaction<'_>, tenant: &str) -> Result<(String, u64), StoreError> {
    tx.query_row(
        "SELECT epoch, head FROM streams WHERE tenant_id = ?1",
        params![tenant],
        |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)),
    )
    .optional()?
    .ok_or_else(|| StoreError::Schema(format!("tenant {tenant:?} has no event stream")))
}

/// Every tenant stream's committed head.
pub(crate) fn heads(conn: &mut Connection) -> Result<Vec<crate::StreamHead>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT tenant_id, epoch, head FROM streams")?;
    let rows = stmt.query_map([], |r| {
        Ok(crate::StreamHead {
            tenant: Arc::from(r.get::<_, String>(0)?),
            epoch: Arc::from(r.get::<_, String>(1)?),
            head: r.get::<_, i64>(2)? as u64,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The stream's `(epoch, head)` as committed.
pub(crate) fn head(conn: &mut Connection, tenant: &str) -> Result<(String, u64), StoreError> {
    let tx = conn.transaction()?;
    let head = stream_head(&tx, tenant)?;
    tx.finish()?;
    Ok(head)
}

pub(crate) fn replay(
    conn: &mut Connection,
    tenant: &str,
    after: u64,
    limit: usize,
) -> Result<ReplayPage, StoreError> {
    let tx = conn.transaction()?;
    let (epoch, head) = stream_head(&tx, tenant)?;
    let oldest: Option<i64> = tx.query_row(
        "SELECT MIN(id) FROM events WHERE tenant_id = ?1",
        params![tenant],
        |r| r.get(0),
    )?;
    let events = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, site_id, event, data, client_id, created_at FROM events
             WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![tenant, after as i64, limit as i64], |r| {
            Ok(StoredEvent {
                id: r.get::<_, i64>(0)? as u64,
                site: r.get(1)?,
                event: r.get(2)?,
                data: r.get(3)?,
                client_id: r.get(4)?,
                created_at: r.get(5)?,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    tx.finish()?;
    Ok(ReplayPage {
        epoch,
        head,
        oldest: oldest.map_or(head + 1, |o| o as u64),
        events,
    })
}

pub(crate) fn snapshot(
    conn: &mut Connection,
    tenant: &str,
    site: &str,
) -> Result<Snapshot, StoreError> {
    let tx = conn.transaction()?;
    let (epoch, head) = stream_head(&tx, tenant)?;
    let stock = {
        let mut stmt = tx.prepare_cached(
            "SELECT product_id, on_hand, updated_at, last_event_id FROM stock
             WHERE tenant_id = ?1 AND site_id = ?2 ORDER BY product_id",
        )?;
        let rows = stmt.query_map(params![tenant, site], stock_row)?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    tx.finish()?;
    Ok(Snapshot { epoch, head, stock })
}

fn stock_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StockRow> {
    Ok(StockRow {
        product_id: r.get(0)?,
        on_hand: r.get(1)?,
        updated_at: r.get(2)?,
        last_event_id: r.get::<_, i64>(3)? as u64,
    })
}

pub(crate) fn stock_of(
    conn: &mut Connection,
    tenant: &str,
    site: &str,
    product: i64,
) -> Result<Option<StockRow>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT product_id, on_hand, updated_at, last_event_id FROM stock
             WHERE tenant_id = ?1 AND site_id = ?2 AND product_id = ?3",
        )?
        .query_row(params![tenant, site, product], stock_row)
        .optional()?)
}

pub(crate) fn ledger_sum(
    conn: &mut Connection,
    tenant: &str,
    site: &str,
    product: i64,
) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(SUM(delta), 0) FROM movements WHERE tenant_id = ?1 AND site_id = ?2 AND product_id = ?3",
        )?
        .query_row(params![tenant, site, product], |r| r.get(0))?)
}
