//! Document collections and backups, in the engine-neutral SQL of [`crate::sql`]: the
//! writes the writer thread applies (inside its transaction, with the event) and the reads
//! the read pool serves.
//!
//! Invariants: `version` increases by one on every change of a record, tombstones included;
//! a restore or a bulk write is part of one transaction, so it applies whole or not at all.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use stocky_core::documents::{
    BackupRecord, DatabaseDropped, DatabaseRestored, DocOutcome, DocWrite, MergeDone,
    MergeStrategy, Merged, RecordsChanged, Restore, SyncedRecord,
};
use stocky_core::stock::{
    delta_in_range, Appended, LedgerEntry, LedgerRestored, Rejection, SiteLevel, MAX_AMOUNT,
};
use stocky_core::sync_rules::{resolve, CollectionRule, Resolution, Revision, Side};
use stocky_core::time::iso8601;

use crate::inventory::LevelChange;
use crate::sql::{args, placeholder_rows, statement_chunks, Conn, DbError};
use crate::{unavailable, StoreError, SubmitError};

/// A stored record's columns.
struct Row {
    body: String,
    version: i64,
    created_at: i64,
    updated_at: i64,
    deleted: bool,
}

fn rejected(r: Rejection) -> SubmitError {
    SubmitError::Rejected(r)
}

fn read_row(
    conn: &mut dyn Conn,
    tenant: &str,
    db: &str,
    store: &str,
    id: &str,
) -> Result<Option<Row>, DbError> {
    let Some(mut r) = conn.query_opt(
        "SELECT body, version, created_at, updated_at, deleted_at IS NOT NULL FROM documents
         WHERE tenant_id = $1 AND db = $2 AND store = $3 AND id = $4",
        args![tenant, db, store, id],
    )?
    else {
        return Ok(None);
    };
    Ok(Some(Row {
        body: r.text(0)?,
        version: r.int(1)?,
        created_at: r.int(2)?,
        updated_at: r.int(3)?,
        deleted: r.bool(4)?,
    }))
}

/// Who changes records, and under which event: every write records the event id (the
/// order sync reads changes in) and the origin (`modified_by`), so that a tier can leave
/// out what came from the one it would send it to.
pub(crate) struct Stamp<'a> {
    pub now: i64,
    pub event_id: u64,
    pub by: &'a str,
}

/// `modified_by` of a revision that combined both tiers' fields (sync field priorities):
/// it belongs to neither side, so both send it on.
pub const MERGED_BY: &str = "merge";

#[allow(clippy::too_many_arguments)]
fn write_row(
    conn: &mut dyn Conn,
    tenant: &str,
    db: &str,
    store: &str,
    id: &str,
    body: &str,
    version: i64,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    stamp: &Stamp<'_>,
) -> Result<(), DbError> {
    conn.execute(
        "INSERT INTO documents (tenant_id, db, store, id, body, version, created_at, updated_at,
            deleted_at, event_id, modified_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (tenant_id, db, store, id) DO UPDATE SET body = excluded.body,
            version = excluded.version, created_at = excluded.created_at,
            updated_at = excluded.updated_at, deleted_at = excluded.deleted_at,
            event_id = excluded.event_id, modified_by = excluded.modified_by",
        args![
            tenant,
            db,
            store,
            id,
            body,
            version,
            created_at,
            updated_at,
            deleted_at,
            stamp.event_id as i64,
            stamp.by
        ],
    )?;
    Ok(())
}

/// Renders a record: the client's fields plus `id`, `created_at`, `updated_at`, `version`.
pub(crate) fn render(
    id: &str,
    body: &str,
    version: i64,
    created_at: i64,
    updated_at: i64,
) -> Value {
    let mut object = match serde_json::from_str::<Value>(body) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    object.insert("id".into(), json!(id));
    object.insert("created_at".into(), json!(iso8601(created_at)));
    object.insert("updated_at".into(), json!(iso8601(updated_at)));
    object.insert("version".into(), json!(version));
    Value::Object(object)
}

pub(crate) fn tombstone(id: &str, version: i64, updated_at: i64) -> Value {
    json!({"id": id, "version": version, "updated_at": iso8601(updated_at), "_deleted": true})
}

fn check_version(
    id: &str,
    expected: Option<i64>,
    current: Option<&Row>,
) -> Result<(), SubmitError> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let actual = current.filter(|r| !r.deleted).map(|r| r.version);
    if actual == Some(expected) {
        Ok(())
    } else {
        Err(rejected(Rejection::VersionConflict {
            id: id.to_owned(),
            expected,
            actual,
        }))
    }
}

/// Applies a document write in the open transaction; returns what it did (whose
/// serialisation is the event's `data`).
pub(crate) fn apply(
    conn: &mut dyn Conn,
    tenant: &str,
    write: &DocWrite,
    stamp: &Stamp<'_>,
) -> Result<DocOutcome, SubmitError> {
    let now = stamp.now;
    match write {
        DocWrite::Upsert { db, store, records } => {
            let (mut created, mut updated, mut out) = (0, 0, Vec::with_capacity(records.len()));
            for (id, fields) in records {
                let id = id
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let current = read_row(conn, tenant, db, store, &id).map_err(unavailable)?;
                let (record, was_live) = put(conn, tenant, db, store, &id, fields, current, stamp)?;
                if was_live {
                    updated += 1;
                } else {
                    created += 1;
                }
                out.push(record);
            }
            Ok(DocOutcome::Changed(RecordsChanged {
                db: db.clone(),
                store: store.clone(),
                records: out,
                created: Some(created),
                updated: Some(updated),
            }))
        }
        DocWrite::Put {
            db,
            store,
            id,
            fields,
            if_version,
        } => {
            let current = read_row(conn, tenant, db, store, id).map_err(unavailable)?;
            check_version(id, *if_version, current.as_ref())?;
            let (record, was_live) = put(conn, tenant, db, store, id, fields, current, stamp)?;
            let (created, updated) = if was_live { (0, 1) } else { (1, 0) };
            Ok(DocOutcome::Changed(RecordsChanged {
                db: db.clone(),
                store: store.clone(),
                records: vec![record],
                created: Some(created),
                updated: Some(updated),
            }))
        }
        DocWrite::Patch {
            db,
            store,
            id,
            fields,
            if_version,
        } => {
            let current = read_row(conn, tenant, db, store, id)
                .map_err(unavailable)?
                .filter(|r| !r.deleted);
            let Some(row) = current else {
                return Err(rejected(Rejection::NotFound {
                    what: format!("record {id:?} in {db}/{store}"),
                }));
            };
            check_version(id, *if_version, Some(&row))?;
            let mut merged = match serde_json::from_str::<Value>(&row.body) {
                Ok(Value::Object(map)) => map,
                _ => Map::new(),
            };
            merged.extend(fields.iter().map(|(k, v)| (k.clone(), v.clone())));
            let body = Value::Object(merged).to_string();
            let version = row.version + 1;
            write_row(
                conn,
                tenant,
                db,
                store,
                id,
                &body,
                version,
                row.created_at,
                now,
                None,
                stamp,
            )
            .map_err(unavailable)?;
            let record = render(id, &body, version, row.created_at, now);
            Ok(DocOutcome::Changed(RecordsChanged {
                db: db.clone(),
                store: store.clone(),
                records: vec![record],
                created: Some(0),
                updated: Some(1),
            }))
        }
        DocWrite::Delete {
            db,
            store,
            id,
            if_version,
        } => {
            let current = read_row(conn, tenant, db, store, id)
                .map_err(unavailable)?
                .filter(|r| !r.deleted);
            let Some(row) = current else {
                return Err(rejected(Rejection::NotFound {
                    what: format!("record {id:?} in {db}/{store}"),
                }));
            };
            check_version(id, *if_version, Some(&row))?;
            let version = row.version + 1;
            write_row(
                conn,
                tenant,
                db,
                store,
                id,
                "{}",
                version,
                row.created_at,
                now,
                Some(now),
                stamp,
            )
            .map_err(unavailable)?;
            Ok(DocOutcome::Changed(RecordsChanged {
                db: db.clone(),
                store: store.clone(),
                records: vec![tombstone(id, version, now)],
                created: None,
                updated: None,
            }))
        }
        DocWrite::Merge {
            db,
            store,
            records,
            from,
            rule,
        } => merge(conn, tenant, (db, store), records, *from, rule, stamp),
        DocWrite::Restore(restore) => self::restore(conn, tenant, restore, stamp),
        DocWrite::DropDatabase { db } => {
            let live: i64 = conn
                .query_one(
                    "SELECT COUNT(*) FROM documents WHERE tenant_id = $1 AND db = $2 AND deleted_at IS NULL",
                    args![tenant, db],
                )
                .and_then(|r| r.int(0))
                .map_err(unavailable)?;
            let removed = conn
                .execute(
                    "DELETE FROM documents WHERE tenant_id = $1 AND db = $2",
                    args![tenant, db],
                )
                .map_err(unavailable)?;
            if removed == 0 {
                return Err(rejected(Rejection::NotFound {
                    what: format!("database {db:?}"),
                }));
            }
            Ok(DocOutcome::Dropped(DatabaseDropped {
                db: db.clone(),
                deleted: live as u64,
            }))
        }
    }
}

/// Creates or replaces one record; returns it and whether a live record was replaced.
#[allow(clippy::too_many_arguments)]
fn put(
    conn: &mut dyn Conn,
    tenant: &str,
    db: &str,
    store: &str,
    id: &str,
    fields: &Map<String, Value>,
    current: Option<Row>,
    stamp: &Stamp<'_>,
) -> Result<(Value, bool), SubmitError> {
    let now = stamp.now;
    let body = Value::Object(fields.clone()).to_string();
    let (version, created_at, was_live) = match &current {
        Some(row) if !row.deleted => (row.version + 1, row.created_at, true),
        Some(row) => (row.version + 1, now, false),
        None => (1, now, false),
    };
    write_row(
        conn, tenant, db, store, id, &body, version, created_at, now, None, stamp,
    )
    .map_err(unavailable)?;
    Ok((render(id, &body, version, created_at, now), was_live))
}

/// Resolves each incoming revision against the stored one (see
/// [`stocky_core::sync_rules::resolve`]) and writes the ones that change something.
fn merge(
    conn: &mut dyn Conn,
    tenant: &str,
    (db, store): (&str, &str),
    records: &[SyncedRecord],
    from: Side,
    rule: &CollectionRule,
    stamp: &Stamp<'_>,
) -> Result<DocOutcome, SubmitError> {
    let (mut created, mut updated) = (0, 0);
    let mut changed = Vec::new();
    let mut results = Vec::with_capacity(records.len());
    for record in records {
        let current = read_row(conn, tenant, db, store, &record.id).map_err(unavailable)?;
        let stored_fields =
            current
                .as_ref()
                .map(|row| match serde_json::from_str::<Value>(&row.body) {
                    Ok(Value::Object(map)) => map,
                    _ => Map::new(),
                });
        let stored = current
            .as_ref()
            .zip(stored_fields.as_ref())
            .map(|(row, fields)| Revision {
                fields,
                version: row.version,
                updated_at: row.updated_at,
                deleted: row.deleted,
            });
        let incoming = Revision {
            fields: &record.fields,
            version: record.version,
            updated_at: record.updated_at,
            deleted: record.deleted,
        };
        let floor = current.as_ref().map_or(0, |row| row.version);
        let (fields, version, updated_at, deleted, by, result) =
            match resolve(stored, incoming, from, rule) {
                Resolution::Same => {
                    results.push(Merged::Same);
                    continue;
                }
                Resolution::Keep => {
                    results.push(Merged::Kept);
                    continue;
                }
                Resolution::Take => (
                    &record.fields,
                    // The incoming version as it is, so both tiers hold the same revision;
                    // never backwards, even when a side wins with a lower one.
                    if record.version >= floor {
                        record.version
                    } else {
                        floor + 1
                    },
                    record.updated_at,
                    record.deleted,
                    stamp.by,
                    Merged::Taken,
                ),
                Resolution::Merge(ref fields) => (
                    &fields.clone(),
                    record.version.max(floor) + 1,
                    stamp.now,
                    false,
                    MERGED_BY,
                    Merged::Combined,
                ),
            };
        let was_live = current.as_ref().is_some_and(|row| !row.deleted);
        let created_at = current
            .as_ref()
            .map_or(record.created_at, |row| row.created_at);
        let body = if deleted {
            "{}".to_owned()
        } else {
            Value::Object(fields.clone()).to_string()
        };
        let by = Stamp { by, ..*stamp };
        write_row(
            conn,
            tenant,
            db,
            store,
            &record.id,
            &body,
            version,
            created_at,
            updated_at,
            deleted.then_some(updated_at),
            &by,
        )
        .map_err(unavailable)?;
        if deleted {
            changed.push(tombstone(&record.id, version, updated_at));
        } else {
            if was_live {
                updated += 1;
            } else {
                created += 1;
            }
            changed.push(render(&record.id, &body, version, created_at, updated_at));
        }
        results.push(result);
    }
    Ok(DocOutcome::Merged(MergeDone {
        changed: RecordsChanged {
            db: db.to_owned(),
            store: store.to_owned(),
            records: changed,
            created: Some(created),
            updated: Some(updated),
        },
        results,
    }))
}

fn restore(
    conn: &mut dyn Conn,
    tenant: &str,
    restore: &Restore,
    stamp: &Stamp<'_>,
) -> Result<DocOutcome, SubmitError> {
    let db = &restore.db;
    if restore.overwrite {
        conn.execute(
            "DELETE FROM documents WHERE tenant_id = $1 AND db = $2",
            args![tenant, db],
        )
        .map_err(unavailable)?;
    }
    let (mut restored, mut updated, mut skipped) = (0, 0, 0);
    for (store, records) in &restore.stores {
        for record in records {
            let current = read_row(conn, tenant, db, store, &record.id).map_err(unavailable)?;
            let live = current.as_ref().filter(|r| !r.deleted);
            let take = match (live, restore.strategy) {
                (None, _) => true,
                (Some(_), MergeStrategy::Force) => true,
                (Some(_), MergeStrategy::Skip) => false,
                // An undated backup record never counts as newer.
                (Some(row), MergeStrategy::Newer) => {
                    record.updated_at.is_some_and(|t| t > row.updated_at)
                }
            };
            if !take {
                skipped += 1;
                continue;
            }
            if live.is_some() {
                updated += 1;
            } else {
                restored += 1;
            }
            write_restored(conn, tenant, db, store, record, current.as_ref(), stamp)
                .map_err(unavailable)?;
        }
    }
    Ok(DocOutcome::Restored(DatabaseRestored {
        db: db.clone(),
        stores: restore.stores.keys().cloned().collect(),
        restored,
        updated,
        skipped,
    }))
}

/// Writes a backup record, keeping its timestamps; its version never goes backwards.
fn write_restored(
    conn: &mut dyn Conn,
    tenant: &str,
    db: &str,
    store: &str,
    record: &BackupRecord,
    current: Option<&Row>,
    stamp: &Stamp<'_>,
) -> Result<(), DbError> {
    let now = stamp.now;
    let body = Value::Object(record.fields.clone()).to_string();
    let floor = current.map_or(1, |r| r.version + 1);
    let version = record.version.unwrap_or(1).max(floor);
    let updated_at = record.updated_at.unwrap_or(now);
    let created_at = record.created_at.unwrap_or(updated_at);
    write_row(
        conn, tenant, db, store, &record.id, &body, version, created_at, updated_at, None, stamp,
    )
}

/// Appends ledger movements (restored, pushed, pulled or implied by a sale), skipping ones
/// already present, and adds what was appended to the materialised stock of every product
/// they touch. Returns what was appended with the resulting levels, and those levels
/// before and after with their minimum (for low-stock alerts).
pub(crate) fn append_ledger(
    conn: &mut dyn Conn,
    tenant: &str,
    entries: &[LedgerEntry],
    event_id: u64,
    now: i64,
) -> Result<(LedgerRestored, Vec<LevelChange>), SubmitError> {
    let mut known_sites = std::collections::HashSet::new();
    for e in entries {
        if known_sites.insert(e.site.as_str()) {
            let site_known: bool = conn
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM sites WHERE tenant_id = $1 AND id = $2)",
                    args![tenant, &e.site],
                )
                .and_then(|r| r.bool(0))
                .map_err(unavailable)?;
            if !site_known {
                return Err(rejected(Rejection::NotFound {
                    what: format!("site {:?} of movement {}", e.site, e.id),
                }));
            }
        }
    }
    // Multi-row inserts; `RETURNING` names the movements that were not there yet.
    let mut new_ids = std::collections::HashSet::new();
    for chunk in statement_chunks(entries) {
        let sql = format!(
            "INSERT INTO movements (id, tenant_id, site_id, product_id, delta, kind, reason,
                origin_client, origin_op, event_id, server_time, client_time, user_id)
             VALUES {} ON CONFLICT DO NOTHING RETURNING id",
            placeholder_rows(1, chunk.len(), 13)
        );
        let mut params = Vec::with_capacity(chunk.len() * 13);
        for e in chunk {
            params.extend_from_slice(args![
                &e.id,
                tenant,
                &e.site,
                e.product_id,
                e.delta,
                &e.kind,
                &e.reason,
                &e.origin_client,
                &e.origin_op,
                event_id as i64,
                e.server_time,
                e.client_time,
                &e.user_id
            ]);
        }
        for mut row in conn.query(&sql, &params).map_err(unavailable)? {
            new_ids.insert(row.text(0).map_err(unavailable)?);
        }
    }
    let mut appended = Vec::with_capacity(entries.len());
    // Per touched product, the sum of the deltas appended now (duplicates add nothing).
    let mut touched = std::collections::BTreeMap::<(&str, i64), i64>::new();
    for e in entries {
        let sum = touched.entry((e.site.as_str(), e.product_id)).or_insert(0);
        // `remove`: an id given twice in one batch is appended once.
        appended.push(if new_ids.remove(&e.id) {
            // Checked: a level beyond twice the largest amount cannot come from valid
            // history, and refusing it here keeps the SQL addition below from overflowing.
            *sum = sum
                .checked_add(e.delta)
                .filter(|s| s.checked_abs().is_some_and(|a| a <= 2 * MAX_AMOUNT))
                .ok_or_else(|| {
                    rejected(Rejection::Overflow {
                        product_id: e.product_id,
                    })
                })?;
            Appended::New
        } else {
            Appended::AlreadyThere
        });
    }
    // On-hand is the ledger sum, kept materialised: add what was appended (a product with
    // no row yet starts from zero). One row per product and statement: PostgreSQL refuses
    // to upsert a row twice in one statement.
    let touched: Vec<((&str, i64), i64)> = touched.into_iter().collect();
    let mut levels = Vec::with_capacity(touched.len());
    let mut changes = Vec::new();
    for chunk in statement_chunks(&touched) {
        let sql = format!(
            "INSERT INTO stock (tenant_id, site_id, product_id, on_hand, updated_at, last_event_id)
             VALUES {}
             ON CONFLICT (tenant_id, site_id, product_id) DO UPDATE
                SET on_hand = stock.on_hand + excluded.on_hand,
                    updated_at = excluded.updated_at, last_event_id = excluded.last_event_id
             RETURNING site_id, product_id, on_hand, min_stock",
            placeholder_rows(1, chunk.len(), 6)
        );
        let mut params = Vec::with_capacity(chunk.len() * 6);
        for ((site, product), delta) in chunk {
            params.extend_from_slice(args![tenant, *site, *product, *delta, now, event_id as i64]);
        }
        for mut row in conn.query(&sql, &params).map_err(unavailable)? {
            let level = SiteLevel {
                site_id: row.text(0).map_err(unavailable)?,
                product_id: row.int(1).map_err(unavailable)?,
                stock: row.int(2).map_err(unavailable)?,
            };
            // The savepoint is rolled back: the whole append is refused, nothing changes.
            if !delta_in_range(level.stock) {
                return Err(rejected(Rejection::Overflow {
                    product_id: level.product_id,
                }));
            }
            if let Some(min) = row.opt_int(3).map_err(unavailable)? {
                let delta = chunk
                    .iter()
                    .find(|((site, product), _)| {
                        *site == level.site_id && *product == level.product_id
                    })
                    .map_or(0, |(_, delta)| *delta);
                changes.push(LevelChange {
                    site: level.site_id.clone(),
                    product: level.product_id,
                    before: level.stock - delta,
                    after: level.stock,
                    min_stock: Some(min),
                });
            }
            levels.push(level);
        }
    }
    levels.sort_by(|a, b| (&a.site_id, a.product_id).cmp(&(&b.site_id, b.product_id)));
    Ok((LedgerRestored { levels, appended }, changes))
}

// ---- reads --------------------------------------------------------------------------

/// Live records of a store, oldest first.
pub(crate) fn list(
    conn: &mut dyn Conn,
    tenant: &str,
    db: &str,
    store: &str,
) -> Result<Vec<Value>, StoreError> {
    let rows = conn.query(
        "SELECT id, body, version, created_at, updated_at FROM documents
         WHERE tenant_id = $1 AND db = $2 AND store = $3 AND deleted_at IS NULL ORDER BY created_at, id",
        args![tenant, db, store],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for mut r in rows {
        out.push(render(
            &r.text(0)?,
            &r.text(1)?,
            r.int(2)?,
            r.int(3)?,
            r.int(4)?,
        ));
    }
    Ok(out)
}

/// One live record.
pub(crate) fn get(
    conn: &mut dyn Conn,
    tenant: &str,
    db: &str,
    store: &str,
    id: &str,
) -> Result<Option<Value>, StoreError> {
    Ok(read_row(conn, tenant, db, store, id)?
        .filter(|r| !r.deleted)
        .map(|r| render(id, &r.body, r.version, r.created_at, r.updated_at)))
}

/// Every change after `since` (ms): live records and tombstones, in update order.
pub(crate) fn since(
    conn: &mut dyn Conn,
    tenant: &str,
    db: &str,
    store: &str,
    since: i64,
) -> Result<Vec<Value>, StoreError> {
    let rows = conn.query(
        "SELECT id, body, version, created_at, updated_at, deleted_at IS NOT NULL FROM documents
         WHERE tenant_id = $1 AND db = $2 AND store = $3 AND updated_at > $4 ORDER BY updated_at, id",
        args![tenant, db, store, since],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for mut r in rows {
        let id = r.text(0)?;
        out.push(if r.bool(5)? {
            tombstone(&id, r.int(2)?, r.int(4)?)
        } else {
            render(&id, &r.text(1)?, r.int(2)?, r.int(3)?, r.int(4)?)
        });
    }
    Ok(out)
}

/// Seed 000's store statistics.
pub(crate) fn stats(
    conn: &mut dyn Conn,
    tenant: &str,
    db: &str,
    store: &str,
    now: i64,
) -> Result<Value, StoreError> {
    let day: i64 = 86_400_000;
    let r = conn.query_one(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE updated_at > $4),
            COUNT(*) FILTER (WHERE updated_at > $5), MIN(created_at), MAX(updated_at)
         FROM documents WHERE tenant_id = $1 AND db = $2 AND store = $3 AND deleted_at IS NULL",
        args![tenant, db, store, now - day, now - 7 * day],
    )?;
    let time = |v: Option<i64>| v.map(iso8601);
    Ok(json!({
        "total": r.int(0)?,
        "updatedLast24h": r.int(1)?,
        "updatedLast7d": r.int(2)?,
        "oldestRecord": time(r.opt_int(3)?),
        "newestRecord": time(r.opt_int(4)?),
    }))
}

/// Every database with its stores and live record counts.
pub(crate) fn databases(
    conn: &mut dyn Conn,
    tenant: &str,
) -> Result<BTreeMap<String, BTreeMap<String, i64>>, StoreError> {
    let rows = conn.query(
        "SELECT db, store, COUNT(*) FILTER (WHERE deleted_at IS NULL) FROM documents
         WHERE tenant_id = $1 GROUP BY db, store ORDER BY db, store",
        args![tenant],
    )?;
    let mut out: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for mut r in rows {
        let (db, store, count) = (r.text(0)?, r.text(1)?, r.int(2)?);
        out.entry(db).or_default().insert(store, count);
    }
    Ok(out)
}

/// A database's records per store: live ones updated after `since` (all when `None`), and
/// the ids deleted after `since`.
pub(crate) fn dump(
    conn: &mut dyn Conn,
    tenant: &str,
    db: &str,
    since: Option<i64>,
) -> Result<crate::Dump, StoreError> {
    let rows = conn.query(
        "SELECT store, id, body, version, created_at, updated_at, deleted_at IS NOT NULL FROM documents
         WHERE tenant_id = $1 AND db = $2 AND updated_at > $3 ORDER BY store, created_at, id",
        args![tenant, db, since.unwrap_or(i64::MIN)],
    )?;
    let mut live: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut deleted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for mut r in rows {
        let store = r.text(0)?;
        let id = r.text(1)?;
        let record = if r.bool(6)? {
            None
        } else {
            Some(render(&id, &r.text(2)?, r.int(3)?, r.int(4)?, r.int(5)?))
        };
        match (store, id, record) {
            (store, _, Some(record)) => live.entry(store).or_default().push(record),
            (store, id, None) if since.is_some() => deleted.entry(store).or_default().push(id),
            (store, _, None) => {
                live.entry(store).or_default();
            }
        }
    }
    Ok((live, deleted))
}

/// How many movements a tenant's ledger holds.
pub(crate) fn ledger_len(conn: &mut dyn Conn, tenant: &str) -> Result<i64, StoreError> {
    Ok(conn
        .query_one(
            "SELECT COUNT(*) FROM movements WHERE tenant_id = $1",
            args![tenant],
        )?
        .int(0)?)
}

/// The whole ledger of a tenant, oldest first, in the `_stock` backup format.
pub(crate) fn ledger(
    conn: &mut dyn Conn,
    tenant: &str,
    since: Option<i64>,
) -> Result<Vec<Value>, StoreError> {
    let rows = conn.query(
        "SELECT id, site_id, product_id, delta, kind, reason, origin_client, origin_op, event_id, server_time,
            client_time, user_id
         FROM movements WHERE tenant_id = $1 AND server_time > $2 ORDER BY server_time, event_id, id",
        args![tenant, since.unwrap_or(i64::MIN)],
    )?;
    let mut out = Vec::with_capacity(rows.len());
    for mut r in rows {
        out.push(json!({
            "id": r.text(0)?,
            "siteId": r.text(1)?,
            "productId": r.int(2)?,
            "delta": r.int(3)?,
            "kind": r.text(4)?,
            "reason": r.opt_text(5)?,
            "originClient": r.opt_text(6)?,
            "originOp": r.opt_text(7)?,
            "eventId": r.int(8)?,
            "serverTime": iso8601(r.int(9)?),
            "clientTime": r.opt_int(10)?.map(iso8601),
            "userId": r.opt_text(11)?,
        }));
    }
    Ok(out)
}
