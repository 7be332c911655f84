//! The audit log (seed 003 AuditModule; its PostgreSQL fields: tenant, user, action,
//! entity type and id, before and after data, client and server timestamps).
//!
//! Invariants: an entry is written in the same transaction as the change it describes —
//! by the writer for every committed command (stock, documents, ledger appends, sales,
//! catalog, thresholds, published events), by the account tables for account changes — so
//! there is no change without its entry and no entry for a change that was rolled back.
//! Entries hold what the change's event carries (never a password, hash, token or key);
//! they are never updated.

use serde_json::{json, Value};
use stocky_core::time::iso8601;

use crate::bulk_index;
use crate::sql::{args, Arg, Conn, DbError};
use crate::{Reads, StoreError};

/// One audit entry to write.
#[derive(Debug, Clone, Default)]
pub struct AuditEntry<'a> {
    pub tenant: &'a str,
    pub user: Option<&'a str>,
    pub device: Option<&'a str>,
    /// What was done: the event name of a command (`stock:add`, `SALE_CREATED`, …) or an
    /// account action (`user:create`, `api_key:revoke`, …).
    pub action: &'a str,
    /// `stock`, `document`, `ledger`, `sale`, `product`, `inventory`, `event`, `user`, …
    pub entity_type: &'a str,
    pub entity_id: Option<&'a str>,
    /// JSON text.
    pub before: Option<&'a str>,
    /// JSON text.
    pub after: Option<&'a str>,
    pub client_time: Option<i64>,
    pub server_time: i64,
    /// The event the change was committed as (0: an account change, which has none).
    pub event_id: u64,
}

/// A command's entry, held by the writer until its batch is written (all of a group
/// commit's entries go in a few multi-row statements, in the batch's transaction). The
/// event's data is shared with the event, not copied.
#[derive(Debug, Clone)]
pub(crate) struct AuditRow {
    pub tenant: std::sync::Arc<str>,
    pub user: Option<std::sync::Arc<str>>,
    pub device: Option<std::sync::Arc<str>>,
    pub action: std::sync::Arc<str>,
    pub entity_type: &'static str,
    pub entity_id: Option<String>,
    pub before: Option<String>,
    pub after: std::sync::Arc<str>,
    pub client_time: Option<i64>,
    pub server_time: i64,
    pub event_id: u64,
}

/// Appends `rows` on `conn`, inside the caller's transaction, a few dozen per statement.
pub(crate) fn write_rows(conn: &mut dyn Conn, rows: &[AuditRow]) -> Result<(), DbError> {
    let mut values = Vec::with_capacity(rows.len() * 11);
    for r in rows {
        values.extend_from_slice(args![
            &*r.tenant,
            r.user.as_deref(),
            r.device.as_deref(),
            &*r.action,
            r.entity_type,
            r.entity_id.as_deref(),
            r.before.as_deref(),
            &*r.after,
            r.client_time,
            r.server_time,
            r.event_id as i64
        ]);
    }
    conn.insert_rows(
        "INSERT INTO audit_log (tenant_id, user_id, device_id, action, entity_type, entity_id,
            before_data, after_data, client_time, server_time, event_id)",
        "",
        11,
        &values,
    )
}

/// Appends `entry` on `conn`, inside the caller's transaction.
pub(crate) fn write(conn: &mut dyn Conn, entry: &AuditEntry<'_>) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO audit_log (tenant_id, user_id, device_id, action, entity_type, entity_id,
            before_data, after_data, client_time, server_time, event_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        args![
            entry.tenant,
            entry.user,
            entry.device,
            entry.action,
            entry.entity_type,
            entry.entity_id,
            entry.before,
            entry.after,
            entry.client_time,
            entry.server_time,
            entry.event_id as i64
        ],
    )?;
    Ok(())
}

/// The audit entry of an account change (users, API keys, sites, devices, tenants): owned,
/// because it travels to the pooled connection's thread. See `Accounts::audited`.
#[derive(Debug, Clone, Default)]
pub struct AccountAudit {
    pub tenant: String,
    pub user: Option<String>,
    pub device: Option<String>,
    /// `user:create`, `api_key:revoke`, `site:create`, …
    pub action: String,
    pub entity_type: &'static str,
    pub entity_id: Option<String>,
    /// What was created or changed, as JSON text — never a password, hash or key.
    pub after: Option<String>,
}

impl AccountAudit {
    pub(crate) fn write(&self, conn: &mut dyn Conn, now: i64) -> Result<(), DbError> {
        write(
            conn,
            &AuditEntry {
                tenant: &self.tenant,
                user: self.user.as_deref(),
                device: self.device.as_deref(),
                action: &self.action,
                entity_type: self.entity_type,
                entity_id: self.entity_id.as_deref(),
                before: None,
                after: self.after.as_deref(),
                client_time: None,
                server_time: now,
                event_id: 0,
            },
        )
    }
}

/// `GET /api/audit` filters.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    /// Entries at or after this server time (ms).
    pub since: Option<i64>,
    /// Entries with an id below this one (paging, newest first).
    pub before_id: Option<i64>,
    pub limit: usize,
}

impl Reads<'_> {
    /// Audit entries of a tenant, newest first, as their API form.
    pub fn audit(&mut self, tenant: &str, filter: &AuditFilter) -> Result<Vec<Value>, StoreError> {
        const COLUMNS: &str = "a.id, a.user_id, a.device_id, a.action, a.entity_type,
            a.entity_id, a.before_data, a.after_data, a.client_time, a.server_time, a.event_id";
        let mut params: Vec<Arg<'_>> = vec![Arg::Text(tenant)];
        if let Some(t) = &filter.entity_type {
            params.push(Arg::Text(t));
            if let Some(id) = &filter.entity_id {
                params.push(Arg::Text(id));
            }
        }
        let mut conditions = String::new();
        if filter.entity_type.is_none() {
            if let Some(id) = &filter.entity_id {
                params.push(Arg::Text(id));
                conditions += &format!(" AND a.entity_id = ${}", params.len());
            }
        }
        if let Some(since) = filter.since {
            params.push(Arg::Int(since));
            conditions += &format!(" AND a.server_time >= ${}", params.len());
        }
        if let Some(before) = filter.before_id {
            params.push(Arg::Int(before));
            conditions += &format!(" AND a.id < ${}", params.len());
        }
        let limit = filter.limit.clamp(1, 1000);
        // By entity: through the indexes written in bulk (`bulk_index`); otherwise by
        // id, or by time with `since`.
        let sql = if filter.entity_type.is_some() {
            bulk_index::audit_sql(COLUMNS, filter.entity_id.is_some(), &conditions, limit)
        } else {
            format!(
                "SELECT {COLUMNS} FROM audit_log a WHERE a.tenant_id = $1{conditions}
                 ORDER BY a.id DESC LIMIT {limit}"
            )
        };
        let parse = |text: Option<String>| {
            text.map(|t| serde_json::from_str::<Value>(&t).unwrap_or(Value::String(t)))
        };
        let mut out = Vec::new();
        for mut r in self.0.query(&sql, &params)? {
            out.push(json!({
                "id": r.int(0)?,
                "userId": r.opt_text(1)?,
                "deviceId": r.opt_text(2)?,
                "action": r.text(3)?,
                "entityType": r.text(4)?,
                "entityId": r.opt_text(5)?,
                "before": parse(r.opt_text(6)?),
                "after": parse(r.opt_text(7)?),
                "clientTimestamp": r.opt_int(8)?.map(iso8601),
                "serverTimestamp": iso8601(r.int(9)?),
                "eventId": r.int(10)?,
            }));
        }
        Ok(out)
    }
}
