//! Transfers at rest: the `transfers` table, whose `PROCESSING` rows are the durable job
//! queue of transfers approved and not yet executed (seed 003 §5.3).
//!
//! Invariants:
//! - every status change is a writer command, with its events, in one transaction;
//! - executing a transfer appends its two movements (ids from the transfer's, so a retry
//!   appends nothing) and marks it `COMPLETED` in the same transaction: the stock never
//!   moves half, nor twice;
//! - approving checks the origin's stock inside the writer's transaction.

use serde_json::json;
use stocky_core::stock::{LedgerEntry, LedgerRestored, Rejection};
use stocky_core::transfers::{
    Transfer, TransferCommand, TransferStatus, TRANSFER_APPROVED, TRANSFER_IN, TRANSFER_OUT,
    TRANSFER_REJECTED, TRANSFER_REQUESTED,
};

use crate::inventory::LevelChange;
use crate::sql::{args, Arg, Conn, DbError, Row};
use crate::{unavailable, Reads, StoreError, SubmitError, SyncTables};

/// The origin client of a transfer's movements.
pub const TRANSFER_ORIGIN: &str = "transfer";

/// What a transfer command did: the transfer before and after, and the events it raises
/// as `(name, site, data)`, the first being its own.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferDone {
    pub before: Option<Transfer>,
    pub after: Transfer,
    pub events: Vec<(&'static str, String, String)>,
    /// The stock moved by an execution.
    pub moved: Option<LedgerRestored>,
}

const COLUMNS: &str = "id, from_site, to_site, product_id, quantity, status, reason,
    requested_by, approved_by, rejected_by, rejection_reason, created_at, approved_at,
    completed_at, attempts, last_error";

fn transfer(r: &mut Row) -> Result<Transfer, DbError> {
    let status = r.text(5)?;
    Ok(Transfer {
        id: r.text(0)?,
        from_site: r.text(1)?,
        to_site: r.text(2)?,
        product_id: r.int(3)?,
        quantity: r.int(4)?,
        status: TransferStatus::parse(&status)
            .ok_or_else(|| DbError::other(format!("transfer status {status:?}")))?,
        reason: r.opt_text(6)?,
        requested_by: r.text(7)?,
        approved_by: r.opt_text(8)?,
        rejected_by: r.opt_text(9)?,
        rejection_reason: r.opt_text(10)?,
        created_at: r.int(11)?,
        approved_at: r.opt_int(12)?,
        completed_at: r.opt_int(13)?,
        attempts: r.int(14)?,
        last_error: r.opt_text(15)?,
    })
}

fn load(conn: &mut dyn Conn, tenant: &str, id: &str) -> Result<Option<Transfer>, DbError> {
    conn.query_opt(
        &format!("SELECT {COLUMNS} FROM transfers WHERE tenant_id = $1 AND id = $2"),
        args![tenant, id],
    )?
    .map(|mut r| transfer(&mut r))
    .transpose()
}

fn store(
    conn: &mut dyn Conn,
    tenant: &str,
    t: &Transfer,
    event_id: u64,
    now: i64,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO transfers (tenant_id, id, from_site, to_site, product_id, quantity, status,
            reason, requested_by, approved_by, rejected_by, rejection_reason, created_at,
            approved_at, completed_at, attempts, last_error, updated_at, event_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
         ON CONFLICT (tenant_id, id) DO UPDATE SET status = excluded.status,
            approved_by = excluded.approved_by, rejected_by = excluded.rejected_by,
            rejection_reason = excluded.rejection_reason, approved_at = excluded.approved_at,
            completed_at = excluded.completed_at, updated_at = excluded.updated_at,
            event_id = excluded.event_id",
        args![
            tenant,
            &t.id,
            &t.from_site,
            &t.to_site,
            t.product_id,
            t.quantity,
            t.status.as_str(),
            &t.reason,
            &t.requested_by,
            &t.approved_by,
            &t.rejected_by,
            &t.rejection_reason,
            t.created_at,
            t.approved_at,
            t.completed_at,
            t.attempts,
            &t.last_error,
            now,
            event_id as i64
        ],
    )?;
    Ok(())
}

fn refused(code: &'static str, message: String) -> SubmitError {
    SubmitError::Rejected(Rejection::Refused {
        code,
        message,
        conflict: true,
    })
}

/// Runs a transfer command (writer only, inside the command's savepoint). `Ok(None)`:
/// nothing to do (a repeat).
pub(crate) fn apply(
    conn: &mut dyn Conn,
    tenant: &str,
    command: &TransferCommand,
    event_id: u64,
    now: i64,
) -> Result<Option<(TransferDone, Vec<LevelChange>)>, SubmitError> {
    let before = load(conn, tenant, command.id()).map_err(unavailable)?;
    let current = || {
        before.clone().ok_or_else(|| {
            SubmitError::Rejected(Rejection::NotFound {
                what: format!("transfer {}", command.id()),
            })
        })
    };
    let data = |t: &Transfer| t.to_json().to_string();
    let mut changes = Vec::new();
    let mut moved = None;
    let (after, events) = match command {
        TransferCommand::Request(t) => {
            if before.is_some() {
                return Ok(None);
            }
            let events = vec![(TRANSFER_REQUESTED, t.from_site.clone(), data(t))];
            ((**t).clone(), events)
        }
        TransferCommand::Approve { id, by } => {
            let mut t = current()?;
            match t.status {
                TransferStatus::Processing | TransferStatus::Completed => return Ok(None),
                TransferStatus::Rejected => {
                    return Err(refused(
                        "transfer_rejected",
                        format!("transfer {id} was rejected"),
                    ))
                }
                TransferStatus::Pending => {}
            }
            let on_hand = conn
                .query_opt(
                    "SELECT on_hand FROM stock WHERE tenant_id = $1 AND site_id = $2 AND product_id = $3",
                    args![tenant, &t.from_site, t.product_id],
                )
                .and_then(|r| r.map(|r| r.int(0)).transpose())
                .map_err(unavailable)?
                .unwrap_or(0);
            if on_hand < t.quantity {
                return Err(SubmitError::Rejected(Rejection::InsufficientStock {
                    product_id: t.product_id,
                    available: on_hand,
                    requested: t.quantity,
                }));
            }
            t.status = TransferStatus::Processing;
            t.approved_by = Some(by.clone());
            t.approved_at = Some(now);
            let d = data(&t);
            let events = vec![
                (TRANSFER_APPROVED, t.from_site.clone(), d.clone()),
                (TRANSFER_APPROVED, t.to_site.clone(), d),
            ];
            (t, events)
        }
        TransferCommand::Reject { id, by, reason } => {
            let mut t = current()?;
            match t.status {
                TransferStatus::Rejected => return Ok(None),
                TransferStatus::Pending => {}
                _ => {
                    return Err(refused(
                        "transfer_approved",
                        format!("transfer {id} was approved already"),
                    ))
                }
            }
            t.status = TransferStatus::Rejected;
            t.rejected_by = Some(by.clone());
            t.rejection_reason = reason.clone();
            let d = data(&t);
            let events = vec![
                (TRANSFER_REJECTED, t.from_site.clone(), d.clone()),
                (TRANSFER_REJECTED, t.to_site.clone(), d),
            ];
            (t, events)
        }
        TransferCommand::Execute { id } => {
            let mut t = current()?;
            match t.status {
                TransferStatus::Completed => return Ok(None),
                TransferStatus::Processing => {}
                _ => {
                    return Err(refused(
                        "transfer_not_approved",
                        format!("transfer {id} is {}, not PROCESSING", t.status.as_str()),
                    ))
                }
            }
            let (out_id, in_id) = t.movement_ids();
            let entry = |id: String, site: &str, delta: i64, kind: &str| LedgerEntry {
                id,
                site: site.to_owned(),
                product_id: t.product_id,
                delta,
                kind: kind.to_owned(),
                reason: t.reason.clone().or(Some(format!("transfer {}", t.id))),
                origin_client: Some(TRANSFER_ORIGIN.to_owned()),
                origin_op: Some(t.id.clone()),
                server_time: now,
                client_time: None,
                user_id: t.approved_by.clone(),
            };
            let entries = [
                entry(out_id, &t.from_site, -t.quantity, "transfer_out"),
                entry(in_id, &t.to_site, t.quantity, "transfer_in"),
            ];
            let (ledger, levels) =
                crate::documents::append_ledger(conn, tenant, &entries, event_id, now)?;
            changes = levels;
            t.status = TransferStatus::Completed;
            t.completed_at = Some(now);
            let level = |site: &str| {
                ledger
                    .levels
                    .iter()
                    .find(|l| l.site_id == site)
                    .map(|l| l.stock)
            };
            let with_stock = |site: &str| {
                let mut v = t.to_json();
                v["stock"] = json!(level(site));
                v.to_string()
            };
            let sync = |site: &str| {
                json!([{"productId": t.product_id, "stock": level(site), "siteId": site}])
                    .to_string()
            };
            let events = vec![
                (TRANSFER_OUT, t.from_site.clone(), with_stock(&t.from_site)),
                (TRANSFER_IN, t.to_site.clone(), with_stock(&t.to_site)),
                ("stock:sync", t.from_site.clone(), sync(&t.from_site)),
                ("stock:sync", t.to_site.clone(), sync(&t.to_site)),
            ];
            moved = Some(ledger);
            (t, events)
        }
    };
    store(conn, tenant, &after, event_id, now).map_err(unavailable)?;
    let done = TransferDone {
        before,
        after,
        events,
        moved,
    };
    Ok(Some((done, changes)))
}

/// `GET /api/transfers` filters.
#[derive(Debug, Clone, Default)]
pub struct TransferFilter {
    pub status: Option<TransferStatus>,
    /// Only transfers from or to one of these sites (`None`: every site).
    pub sites: Option<Vec<String>>,
    pub limit: usize,
}

impl Reads<'_> {
    pub fn transfer(&mut self, tenant: &str, id: &str) -> Result<Option<Transfer>, StoreError> {
        Ok(load(self.0, tenant, id)?)
    }

    /// Transfers newest first.
    pub fn transfers(
        &mut self,
        tenant: &str,
        filter: &TransferFilter,
    ) -> Result<Vec<Transfer>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM transfers WHERE tenant_id = $1");
        let mut params: Vec<Arg<'_>> = vec![Arg::Text(tenant)];
        if let Some(status) = filter.status {
            params.push(Arg::Text(status.as_str()));
            sql += &format!(" AND status = ${}", params.len());
        }
        if let Some(sites) = &filter.sites {
            let mut any = Vec::new();
            for site in sites {
                params.push(Arg::Text(site));
                let n = params.len();
                any.push(format!("from_site = ${n} OR to_site = ${n}"));
            }
            if any.is_empty() {
                return Ok(Vec::new());
            }
            sql += &format!(" AND ({})", any.join(" OR "));
        }
        sql += &format!(
            " ORDER BY created_at DESC, id DESC LIMIT {}",
            filter.limit.clamp(1, 1000)
        );
        let rows = self.0.query(&sql, &params)?;
        Ok(rows
            .into_iter()
            .map(|mut r| transfer(&mut r))
            .collect::<Result<_, _>>()?)
    }
}

impl SyncTables<'_> {
    /// Every `PROCESSING` transfer of every tenant, oldest first: the job queue.
    pub fn transfers_to_execute(
        &mut self,
        limit: usize,
    ) -> Result<Vec<(String, Transfer)>, StoreError> {
        let rows = self.0.query(
            &format!(
                "SELECT {COLUMNS}, tenant_id FROM transfers WHERE status = 'PROCESSING'
                 ORDER BY approved_at, id LIMIT {}",
                limit.clamp(1, 10_000)
            ),
            &[],
        )?;
        Ok(rows
            .into_iter()
            .map(|mut r| Ok((r.text(16)?, transfer(&mut r)?)))
            .collect::<Result<_, DbError>>()?)
    }

    /// Records a failed or postponed execution (no event: the status does not change).
    pub fn transfer_attempt(
        &mut self,
        tenant: &str,
        id: &str,
        error: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE transfers SET attempts = attempts + 1, last_error = $3, updated_at = $4
             WHERE tenant_id = $1 AND id = $2 AND status = 'PROCESSING'",
            args![tenant, id, error, now],
        )?;
        Ok(())
    }

    /// Whether `site` has an activated store node (a live device credential): such a site
    /// is online only while its node is connected; any other site is served by the hub
    /// and always online.
    pub fn site_has_store_node(&mut self, tenant: &str, site: &str) -> Result<bool, StoreError> {
        Ok(self
            .0
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM api_keys WHERE tenant_id = $1 AND site_id = $2
                   AND device_id IS NOT NULL AND revoked_at IS NULL)",
                args![tenant, site],
            )?
            .bool(0)?)
    }
}
