//! Reads beside the writer.
//!
//! A small pool of connections used from tokio's blocking threads (read-only where the
//! engine can enforce it). Each read that needs several statements runs them in one read
//! transaction, so it sees one consistent snapshot: e.g. a replay page's bounds and rows, or
//! a full-refresh snapshot and the event id it reflects. A connection that broke is dropped,
//! not returned to the pool, so the next read connects afresh.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use stocky_core::stock::SiteLevel;

use crate::engine::{ConnRole, Engine};
use crate::sql::{args, in_tx, Conn, DbError, Row, TxMode};
use crate::StoreError;

/// Connections kept open for reuse; a burst beyond this opens (and then closes) extra ones.
const POOL_KEEP: usize = 4;

#[derive(Clone)]
pub(crate) struct Pool {
    engine: Arc<dyn Engine>,
    role: ConnRole,
    idle: Arc<Mutex<Vec<Box<dyn Conn>>>>,
    /// Connections taken and not given back yet.
    busy: Arc<AtomicUsize>,
}

impl Pool {
    pub(crate) fn new(engine: Arc<dyn Engine>, role: ConnRole) -> Self {
        Self {
            engine,
            role,
            idle: Arc::new(Mutex::new(Vec::new())),
            busy: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Connections in use and kept idle.
    pub(crate) fn state(&self) -> (usize, usize) {
        let idle = self.idle.lock().map_or(0, |idle| idle.len());
        (self.busy.load(Ordering::Relaxed), idle)
    }

    /// Runs `f` on a pooled connection on a blocking thread.
    pub(crate) async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.clone();
        tokio::task::spawn_blocking(move || {
            pool.busy.fetch_add(1, Ordering::Relaxed);
            let _busy = Busy(&pool.busy);
            let taken = pool
                .idle
                .lock()
                .map_err(|_| StoreError::Task("connection pool poisoned".into()))?
                .pop();
            let mut conn = match taken {
                Some(conn) => conn,
                None => pool.engine.connect(pool.role)?,
            };
            let result = f(&mut *conn);
            if !conn.is_broken() {
                if let Ok(mut idle) = pool.idle.lock() {
                    if idle.len() < POOL_KEEP {
                        idle.push(conn);
                    }
                }
            }
            result
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

/// Counts a connection as busy until dropped (also when the read panics).
struct Busy<'a>(&'a AtomicUsize);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
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
    /// The origin's idempotency key, if it had one.
    pub op_id: Option<String>,
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

/// The stream's `(epoch, head)` as committed.
pub(crate) fn stream_head(conn: &mut dyn Conn, tenant: &str) -> Result<(String, u64), StoreError> {
    let mut row = conn
        .query_opt(
            "SELECT epoch, head FROM streams WHERE tenant_id = $1",
            args![tenant],
        )?
        .ok_or_else(|| StoreError::Schema(format!("tenant {tenant:?} has no event stream")))?;
    Ok((row.text(0)?, row.int(1)? as u64))
}

/// Every tenant stream's committed head.
pub(crate) fn heads(conn: &mut dyn Conn) -> Result<Vec<crate::StreamHead>, StoreError> {
    let rows = conn.query(
        "SELECT tenant_id, epoch, head FROM streams ORDER BY tenant_id",
        &[],
    )?;
    rows.into_iter()
        .map(|mut r| {
            Ok(crate::StreamHead {
                tenant: Arc::from(r.text(0)?),
                epoch: Arc::from(r.text(1)?),
                head: r.int(2)? as u64,
            })
        })
        .collect()
}

pub(crate) fn replay(
    conn: &mut dyn Conn,
    tenant: &str,
    after: u64,
    limit: usize,
) -> Result<ReplayPage, StoreError> {
    in_tx(conn, TxMode::Read, |tx| {
        let (epoch, head) = stream_head(tx, tenant)?;
        let oldest = tx
            .query_one(
                "SELECT MIN(id) FROM events WHERE tenant_id = $1",
                args![tenant],
            )?
            .opt_int(0)?;
        let events = tx
            .query(
                "SELECT id, site_id, event, data, client_id, created_at, op_id FROM events
                 WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
                args![tenant, after as i64, limit as i64],
            )?
            .into_iter()
            .map(|mut r| {
                Ok(StoredEvent {
                    id: r.int(0)? as u64,
                    site: r.text(1)?,
                    event: r.text(2)?,
                    data: r.text(3)?,
                    client_id: r.text(4)?,
                    created_at: r.int(5)?,
                    op_id: r.opt_text(6)?,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        Ok(ReplayPage {
            epoch,
            head,
            oldest: oldest.map_or(head + 1, |o| o as u64),
            events,
        })
    })
}

pub(crate) fn snapshot(
    conn: &mut dyn Conn,
    tenant: &str,
    site: &str,
) -> Result<Snapshot, StoreError> {
    in_tx(conn, TxMode::Read, |tx| {
        let (epoch, head) = stream_head(tx, tenant)?;
        let stock = tx
            .query(
                "SELECT product_id, on_hand, updated_at, last_event_id FROM stock
                 WHERE tenant_id = $1 AND site_id = $2 ORDER BY product_id",
                args![tenant, site],
            )?
            .iter()
            .map(stock_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Snapshot { epoch, head, stock })
    })
}

/// Every site's stock level of a tenant, ordered by product and site, read in one snapshot
/// with the stream head it reflects.
pub(crate) fn tenant_levels(
    conn: &mut dyn Conn,
    tenant: &str,
) -> Result<(u64, Vec<SiteLevel>), StoreError> {
    in_tx(conn, TxMode::Read, |tx| {
        let (_, head) = stream_head(tx, tenant)?;
        let levels = tx
            .query(
                "SELECT site_id, product_id, on_hand FROM stock WHERE tenant_id = $1
                 ORDER BY product_id, site_id",
                args![tenant],
            )?
            .into_iter()
            .map(|mut r| {
                Ok(SiteLevel {
                    site_id: r.text(0)?,
                    product_id: r.int(1)?,
                    stock: r.int(2)?,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        Ok((head, levels))
    })
}

fn stock_row(r: &Row) -> Result<StockRow, DbError> {
    Ok(StockRow {
        product_id: r.int(0)?,
        on_hand: r.int(1)?,
        updated_at: r.int(2)?,
        last_event_id: r.int(3)? as u64,
    })
}

pub(crate) fn stock_of(
    conn: &mut dyn Conn,
    tenant: &str,
    site: &str,
    product: i64,
) -> Result<Option<StockRow>, StoreError> {
    Ok(conn
        .query_opt(
            "SELECT product_id, on_hand, updated_at, last_event_id FROM stock
             WHERE tenant_id = $1 AND site_id = $2 AND product_id = $3",
            args![tenant, site, product],
        )?
        .as_ref()
        .map(stock_row)
        .transpose()?)
}

pub(crate) fn ledger_sum(
    conn: &mut dyn Conn,
    tenant: &str,
    site: &str,
    product: i64,
) -> Result<i64, StoreError> {
    Ok(conn
        .query_one(&crate::bulk_index::sum_sql(), args![tenant, site, product])?
        .int(0)?)
}
