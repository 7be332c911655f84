//! Two indexes the writer maintains in bulk rather than with every command: the ledger
//! by product (`ledger_by_product`: a product's history and its ledger sum) and the
//! audit log by entity (`audit_entities`: `GET /api/audit?entityType=…&entityId=…`).
//!
//! An index ordered by product or entity takes one page per product a commit touches; on
//! SQLite every such page is written whole into the WAL at each commit, so a group commit
//! of stock commands over many products wrote two pages per command for these two
//! indexes alone (a third of the writer's time). Here the writer indexes a tenant's
//! movements and audit entries once [`LAG`] events (by default) have accumulated since
//! the last time, in one sorted `INSERT … SELECT` per index: each page is then written
//! once for many rows.
//!
//! Invariants:
//! - `ledger_by_product` holds exactly the tenant's movements with `event_id <=
//!   streams.indexed_head`, and `audit_entities` exactly the tenant's audit entries of
//!   commands (`event_id > 0`) with `event_id <= indexed_head`. The rest (the *tail*) are
//!   found through `movements_by_event` and `audit_by_event`, which cover the columns a
//!   tail read filters on (site and product, entity type and id). This holds because every
//!   movement and every command's audit entry is inserted by the writer with the event id
//!   it is assigning (above the head, so above `indexed_head`), and the writer indexes and
//!   moves `indexed_head` in the transaction that holds the tenant's stream row lock.
//! - Audit entries of account changes (`event_id = 0`, written outside the writer) are
//!   indexed at once, by the partial index `audit_by_entity`.
//! - Readers read `indexed_head`, the index and the tail in one statement (one snapshot),
//!   so a row is found exactly once whether or not it has been indexed yet.
//! - The tail of a tenant is bounded: at most [`LAG`] events (a tenant that stops
//!   writing keeps its short tail until its next command).

use crate::sql::{args, Conn, DbError};

/// How many events of a tenant may be unindexed before the writer indexes them, by
/// default ([`crate::StoreOptions::index_lag`]). A history or audit read scans the tail
/// (at most this many events) besides the index.
pub const LAG: u64 = 16_384;

/// Whether a tenant whose stream is at `head`, indexed up to `indexed`, is due (`lag`:
/// the events it may leave unindexed).
pub(crate) fn due(indexed: u64, head: u64, lag: u64) -> bool {
    head.saturating_sub(indexed) >= lag.max(1)
}

/// Indexes `tenant`'s movements and audit entries with `from < event_id <= to`, inside
/// the writer's transaction (which holds the stream row lock and moves `indexed_head` to
/// `to`), after the batch's audit entries are written.
///
/// The rows are inserted plainly, inside a savepoint: on PostgreSQL `ON CONFLICT DO
/// NOTHING` costs a speculative insertion per row (about 40 % more for a 16 k-row flush).
/// Should a row be indexed already (an index somehow ahead of `indexed_head`), the
/// savepoint is rolled back and the range indexed again skipping such rows, so that it
/// can never stop a tenant's commits.
pub(crate) fn index(conn: &mut dyn Conn, tenant: &str, from: u64, to: u64) -> Result<(), DbError> {
    conn.batch("SAVEPOINT bulk_index")?;
    match insert_range(conn, tenant, from, to, "") {
        Err(e) if e.is_unique() => {
            tracing::warn!(
                tenant,
                from,
                to,
                "bulk index: rows indexed already; skipping them"
            );
            conn.batch("ROLLBACK TO SAVEPOINT bulk_index")?;
            insert_range(conn, tenant, from, to, "ON CONFLICT DO NOTHING")?;
        }
        other => other?,
    }
    conn.batch("RELEASE SAVEPOINT bulk_index")
}

/// The two `INSERT … SELECT`s of [`index`], each ending with `conflict`.
fn insert_range(
    conn: &mut dyn Conn,
    tenant: &str,
    from: u64,
    to: u64,
    conflict: &str,
) -> Result<(), DbError> {
    let range = args![tenant, from as i64, to as i64];
    conn.execute(
        &format!(
            "INSERT INTO ledger_by_product (tenant_id, site_id, product_id, event_id, id, delta)
             SELECT tenant_id, site_id, product_id, event_id, id, delta FROM movements
             WHERE tenant_id = $1 AND event_id > $2 AND event_id <= $3
             ORDER BY site_id, product_id, event_id, id {conflict}"
        ),
        range,
    )?;
    conn.execute(
        &format!(
            "INSERT INTO audit_entities (tenant_id, entity_type, entity_id, id)
             SELECT tenant_id, entity_type, COALESCE(entity_id, ''), id FROM audit_log
             WHERE tenant_id = $1 AND event_id > $2 AND event_id <= $3
             ORDER BY entity_type, entity_id, id {conflict}"
        ),
        range,
    )?;
    Ok(())
}

/// The tenant's indexed head, as a scalar subquery over parameter `$1` (the tenant).
const INDEXED_HEAD: &str = "(SELECT indexed_head FROM streams WHERE tenant_id = $1)";

/// SQL for a product's movements, newest first: `columns` of `movements` (unqualified,
/// with `event_id` and `id`), for tenant `$1`, site `$2`, product `$3`, before the
/// position (`$4` event id, `$5` movement id), at most `$6` of them.
pub(crate) fn history_sql(columns: &str) -> String {
    let before = "(event_id < $4 OR (event_id = $4 AND id < $5))";
    format!(
        "SELECT * FROM (
            SELECT {columns} FROM movements
            WHERE tenant_id = $1 AND id IN (
                SELECT id FROM ledger_by_product
                WHERE tenant_id = $1 AND site_id = $2 AND product_id = $3 AND {before}
                ORDER BY event_id DESC, id DESC LIMIT $6)
         ) AS indexed
         UNION ALL
         SELECT * FROM (
            SELECT {columns} FROM movements
            WHERE tenant_id = $1 AND event_id > {INDEXED_HEAD}
              AND site_id = $2 AND product_id = $3 AND {before}
         ) AS tail
         ORDER BY event_id DESC, id DESC LIMIT $6"
    )
}

/// SQL for the sum of a product's movements (tenant `$1`, site `$2`, product `$3`).
pub(crate) fn sum_sql() -> String {
    format!(
        "SELECT CAST(
            COALESCE((SELECT SUM(delta) FROM ledger_by_product
                      WHERE tenant_id = $1 AND site_id = $2 AND product_id = $3), 0)
          + COALESCE((SELECT SUM(delta) FROM movements
                      WHERE tenant_id = $1 AND event_id > {INDEXED_HEAD}
                        AND site_id = $2 AND product_id = $3), 0) AS BIGINT)"
    )
}

/// SQL for the audit entries of tenant `$1` of entity type `$2` (and of entity `$3` when
/// `with_id`), newest first: `columns` of `audit_log a` (qualified, with `a.id`), those
/// that also meet `filter` (`AND …` conditions on `a`), at most `limit`.
pub(crate) fn audit_sql(columns: &str, with_id: bool, filter: &str, limit: usize) -> String {
    let (entity, indexed) = if with_id {
        (
            "a.entity_type = $2 AND a.entity_id = $3",
            "e.entity_type = $2 AND e.entity_id = $3",
        )
    } else {
        ("a.entity_type = $2", "e.entity_type = $2")
    };
    format!(
        "SELECT * FROM (
            SELECT {columns} FROM audit_entities e JOIN audit_log a ON a.id = e.id
            WHERE e.tenant_id = $1 AND {indexed} AND {entity}{filter}
            ORDER BY e.id DESC LIMIT {limit}
         ) AS indexed
         UNION ALL
         SELECT * FROM (
            SELECT {columns} FROM audit_log a
            WHERE a.tenant_id = $1 AND a.event_id = 0 AND {entity}{filter}
            ORDER BY a.id DESC LIMIT {limit}
         ) AS accounts
         UNION ALL
         SELECT * FROM (
            SELECT {columns} FROM audit_log a
            WHERE a.tenant_id = $1 AND a.event_id > {INDEXED_HEAD} AND {entity}{filter}
         ) AS tail
         ORDER BY id DESC LIMIT {limit}"
    )
}
