//! Sales at rest: the `sales` table (one row per sale, its [`SaleRecord`] as JSON text in
//! the stored form) and the ledger movements a sale implies.
//!
//! Invariants:
//! - a sale's row and its movements are written by the writer in the command's savepoint,
//!   so a sale never exists without its stock effect, nor the other way round;
//! - movements are appended through [`crate::documents::append_ledger`] with the ids the
//!   record implies, so recording or merging the same sale twice (or after its movements
//!   arrived by a push) adds nothing;
//! - a row's `record` only grows (confirmed payments, refunds, a void): see
//!   `stocky_core::sales`.

use serde_json::Value;
use stocky_core::sales::{decide, SaleCommand, SaleRecord, SaleRefusal, SaleStatus};
use stocky_core::stock::{LedgerEntry, LedgerRestored, ProductId, Rejection};
use stocky_core::time::parse_iso8601;

use crate::inventory::LevelChange;
use crate::sql::{args, placeholder_rows, statement_chunks, Arg, Conn, DbError, Row};
use crate::{unavailable, Reads, StoreError, SubmitError};

/// What a sale command did.
#[derive(Debug, Clone, PartialEq)]
pub struct SaleDone {
    pub record: SaleRecord,
    /// The sale as it was before (None: new).
    pub before: Option<SaleRecord>,
    /// `SALE_CREATED`, `SALE_UPDATED` or `SALE_CANCELLED`.
    pub event: &'static str,
    /// Lines whose product is not in the catalog: the sale stands, flagged for review.
    pub unknown_products: Vec<ProductId>,
    /// The movements appended now and the resulting levels.
    pub ledger: LedgerRestored,
}

impl SaleDone {
    /// The event's data: the sale in its API form.
    pub fn to_json(&self) -> Value {
        self.record.to_json(&self.unknown_products)
    }
}

fn load(
    conn: &mut dyn Conn,
    tenant: &str,
    id: &str,
) -> Result<Option<(SaleRecord, Vec<ProductId>)>, DbError> {
    conn.query_opt(
        "SELECT record, unknown_products FROM sales WHERE tenant_id = $1 AND id = $2",
        args![tenant, id],
    )?
    .map(|mut row| decode(&mut row, 0))
    .transpose()
}

/// A sale and its review list from `record` at column `at` and `unknown_products` after it.
fn decode(row: &mut Row, at: usize) -> Result<(SaleRecord, Vec<ProductId>), DbError> {
    let record: SaleRecord = serde_json::from_str(&row.text(at)?)
        .map_err(|e| DbError::other(format!("a stored sale does not read back: {e}")))?;
    let unknown = match row.opt_text(at + 1)? {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| DbError::other(format!("a sale's review list does not read: {e}")))?,
        None => Vec::new(),
    };
    Ok((record, unknown))
}

/// The catalog's ids among `products` that are not live products.
fn unknown_products(
    conn: &mut dyn Conn,
    tenant: &str,
    products: &[ProductId],
) -> Result<Vec<ProductId>, DbError> {
    let mut wanted: Vec<ProductId> = products.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut known = std::collections::HashSet::new();
    for chunk in statement_chunks(&wanted) {
        let sql = format!(
            "SELECT id FROM products WHERE tenant_id = $1 AND deleted_at IS NULL AND id IN {}",
            placeholder_rows(2, 1, chunk.len())
        );
        let mut params = vec![Arg::Text(tenant)];
        params.extend(chunk.iter().map(|&p| Arg::Int(p)));
        for row in conn.query(&sql, &params)? {
            known.insert(row.int(0)?);
        }
    }
    Ok(wanted.into_iter().filter(|p| !known.contains(p)).collect())
}

/// Runs `command` against the stored sale (writer only, inside the command's savepoint).
/// `Ok(None)`: nothing to change (a replay).
pub(crate) fn apply(
    conn: &mut dyn Conn,
    tenant: &str,
    command: &SaleCommand,
    by: &str,
    event_id: u64,
    now: i64,
) -> Result<Option<(SaleDone, Vec<LevelChange>)>, SubmitError> {
    let stored = load(conn, tenant, command.sale_id()).map_err(unavailable)?;
    let decided = decide(stored.as_ref().map(|(r, _)| r), command).map_err(|refusal| {
        SubmitError::Rejected(match refusal {
            SaleRefusal::NotFound(what) => Rejection::NotFound { what },
            SaleRefusal::Invalid(i) => Rejection::Refused {
                conflict: i.code == "sale_id_conflict",
                code: i.code,
                message: i.message,
            },
        })
    })?;
    let Some((record, event)) = decided else {
        return Ok(None);
    };
    let (before, unknown) = match stored {
        Some((before, unknown)) => (Some(before), unknown),
        None => {
            let products: Vec<ProductId> = record.lines.iter().map(|l| l.product_id).collect();
            (
                None,
                unknown_products(conn, tenant, &products).map_err(unavailable)?,
            )
        }
    };
    let text = serde_json::to_string(&record).expect("a sale record serialises");
    let unknown_text =
        (!unknown.is_empty()).then(|| serde_json::to_string(&unknown).expect("ids serialise"));
    conn.execute(
        "INSERT INTO sales (tenant_id, id, site_id, device_id, user_id, status, total, record,
            unknown_products, client_time, server_time, event_id, modified_by, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (tenant_id, id) DO UPDATE SET status = excluded.status,
            record = excluded.record, event_id = excluded.event_id,
            modified_by = excluded.modified_by, updated_at = excluded.updated_at",
        args![
            tenant,
            &record.id,
            &record.site_id,
            &record.device_id,
            &record.user_id,
            record.status().as_str(),
            record.total,
            &text,
            &unknown_text,
            record.client_time,
            record.server_time,
            event_id as i64,
            by,
            now
        ],
    )
    .map_err(unavailable)?;
    let entries: Vec<LedgerEntry> = record
        .movements()
        .into_iter()
        .map(|m| LedgerEntry {
            id: m.id,
            site: record.site_id.clone(),
            product_id: m.product_id,
            delta: m.delta,
            kind: m.kind.to_owned(),
            reason: m.reason,
            origin_client: Some(by.to_owned()),
            origin_op: Some(record.id.clone()),
            server_time: m.time,
            // The register's time is the sale's; refunds and voids happen at the server.
            client_time: (m.kind == "sale").then_some(record.client_time).flatten(),
            user_id: m.user.or_else(|| record.user_id.clone()),
        })
        .collect();
    let (ledger, changes) = crate::documents::append_ledger(conn, tenant, &entries, event_id, now)?;
    let done = SaleDone {
        record,
        before,
        event,
        unknown_products: unknown,
        ledger,
    };
    Ok(Some((done, changes)))
}

/// `GET /api/sales` filters; every one optional.
#[derive(Debug, Clone, Default)]
pub struct SaleFilter {
    pub site: Option<String>,
    /// `YYYY-MM-DD`, the UTC day of the sale's server time.
    pub day: Option<String>,
    pub device: Option<String>,
    pub status: Option<SaleStatus>,
    /// Only sales flagged for review (unknown products).
    pub needs_review: bool,
    /// Newest first, before this `(server_time, id)`.
    pub before: Option<(i64, String)>,
    pub limit: usize,
}

/// A sale as read, with its review list and the event that last changed it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSale {
    pub record: SaleRecord,
    pub unknown_products: Vec<ProductId>,
    pub event_id: u64,
}

impl StoredSale {
    pub fn to_json(&self) -> Value {
        let mut v = self.record.to_json(&self.unknown_products);
        v["eventId"] = Value::from(self.event_id);
        v
    }
}

impl Reads<'_> {
    /// Sales changed after `event_id`, oldest change first, leaving out those last changed
    /// through `skip_via` (what the other side sent us): an edge's push reads these.
    pub fn sales_after(
        &mut self,
        tenant: &str,
        event_id: u64,
        skip_via: &str,
        limit: usize,
    ) -> Result<Vec<StoredSale>, StoreError> {
        let rows = self.0.query(
            &format!(
                "SELECT record, unknown_products, event_id FROM sales
                 WHERE tenant_id = $1 AND event_id > $2
                   AND (modified_by IS NULL OR modified_by <> $3)
                 ORDER BY event_id, id LIMIT {}",
                limit.clamp(1, 10_000)
            ),
            args![tenant, event_id as i64, skip_via],
        )?;
        Ok(rows
            .into_iter()
            .map(|mut r| stored(&mut r))
            .collect::<Result<_, _>>()?)
    }

    /// How many sales changed after `event_id` (not through `skip_via`), and the server
    /// time of the oldest of them: what an edge has not pushed yet.
    pub fn sales_pending(
        &mut self,
        tenant: &str,
        event_id: u64,
        skip_via: &str,
    ) -> Result<(u64, Option<i64>), StoreError> {
        let row = self.0.query_one(
            "SELECT COUNT(*), MIN(server_time) FROM sales WHERE tenant_id = $1 AND event_id > $2
               AND (modified_by IS NULL OR modified_by <> $3)",
            args![tenant, event_id as i64, skip_via],
        )?;
        Ok((row.int(0)? as u64, row.opt_int(1)?))
    }

    pub fn sale(&mut self, tenant: &str, id: &str) -> Result<Option<StoredSale>, StoreError> {
        let row = self.0.query_opt(
            "SELECT record, unknown_products, event_id FROM sales WHERE tenant_id = $1 AND id = $2",
            args![tenant, id],
        )?;
        Ok(row.map(|mut r| stored(&mut r)).transpose()?)
    }

    /// Sales newest first, by `filter`.
    pub fn sales(
        &mut self,
        tenant: &str,
        filter: &SaleFilter,
    ) -> Result<Vec<StoredSale>, StoreError> {
        let mut sql = String::from(
            "SELECT record, unknown_products, event_id FROM sales WHERE tenant_id = $1",
        );
        let mut params: Vec<Arg<'_>> = vec![Arg::Text(tenant)];
        let day = match &filter.day {
            Some(day) => Some(
                parse_iso8601(&format!("{day}T00:00:00.000Z"))
                    .ok_or_else(|| StoreError::NotFound(format!("day {day:?}")))?,
            ),
            None => None,
        };
        if let Some(site) = &filter.site {
            params.push(Arg::Text(site));
            sql += &format!(" AND site_id = ${}", params.len());
        }
        if let Some(start) = day {
            params.push(Arg::Int(start));
            sql += &format!(" AND server_time >= ${}", params.len());
            params.push(Arg::Int(start + 86_400_000));
            sql += &format!(" AND server_time < ${}", params.len());
        }
        if let Some(device) = &filter.device {
            params.push(Arg::Text(device));
            sql += &format!(" AND device_id = ${}", params.len());
        }
        if let Some(status) = filter.status {
            params.push(Arg::Text(status.as_str()));
            sql += &format!(" AND status = ${}", params.len());
        }
        if filter.needs_review {
            sql += " AND unknown_products IS NOT NULL";
        }
        if let Some((time, id)) = &filter.before {
            params.push(Arg::Int(*time));
            let t = params.len();
            params.push(Arg::Text(id));
            sql += &format!(
                " AND (server_time < ${t} OR (server_time = ${t} AND id < ${}))",
                params.len()
            );
        }
        sql += &format!(
            " ORDER BY server_time DESC, id DESC LIMIT {}",
            filter.limit.clamp(1, 1000)
        );
        let rows = self.0.query(&sql, &params)?;
        Ok(rows
            .into_iter()
            .map(|mut r| stored(&mut r))
            .collect::<Result<_, _>>()?)
    }
}

fn stored(row: &mut Row) -> Result<StoredSale, DbError> {
    let (record, unknown_products) = decode(row, 0)?;
    Ok(StoredSale {
        record,
        unknown_products,
        event_id: row.int(2)? as u64,
    })
}
