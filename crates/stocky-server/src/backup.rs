//! Backups of document databases and of the stock ledger, shared by the REST API and the
//! `stocky backup` / `stocky restore` commands (which run them against a hub over HTTP or
//! directly against a data directory).
//!
//! Shapes follow seed 000: a backup is `{database, backup: {store: [records]}, timestamp,
//! stores, totalRecords, metadata}`. The reserved database `_stock` carries the ledger as
//! its `movements` store; restoring it recomputes the stock of every product it touches
//! from the whole ledger, so a backup restored into an empty hub reproduces stock exactly.
//!
//! A restore is one writer command: it applies whole or not at all, and every problem in
//! the backup is reported (400) before anything is written.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{json, Map, Value};
use stocky_core::documents::{
    check_name, client_fields, compare as compare_store, parse_backup_stores, parse_restore,
    DocOutcome, DocWrite, STOCK_DB,
};
use stocky_core::stock::parse_ledger;
use stocky_core::time::{iso8601, now_millis};
use stocky_store::{Applied, Command, Origin, Outcome, Store};

use crate::error::ApiError;

/// Version of the backup format written in `metadata.version`.
pub const FORMAT_VERSION: &str = "1.0";

/// Checks a database name; `_stock` is the one reserved name allowed here.
pub fn database_name(db: &str) -> Result<(), ApiError> {
    if db == STOCK_DB {
        return Ok(());
    }
    check_name("database", db).map_err(|e| ApiError::bad_request("invalid_name", e.0))
}

fn not_found(db: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("database {db:?} not found"),
    )
}

/// `GET /api/backup`: every database with its stores and record counts, `_stock` last.
pub async fn list(store: &Store, tenant: &str) -> Result<Value, ApiError> {
    let databases = store.databases(tenant).await?;
    let ledger = store.ledger_len(tenant).await?;
    let mut out: Vec<Value> = databases
        .iter()
        .map(|(name, stores)| {
            let total: i64 = stores.values().sum();
            let stores: Vec<Value> = stores
                .iter()
                .map(|(s, n)| json!({"name": s, "records": n}))
                .collect();
            json!({"name": name, "stores": stores, "totalRecords": total})
        })
        .collect();
    out.push(json!({"name": STOCK_DB, "stores": [{"name": "movements", "records": ledger}], "totalRecords": ledger}));
    Ok(json!({"databases": out, "timestamp": iso8601(now_millis())}))
}

/// The backup document of `db`; with `since`, only what changed after it (and a
/// `deleted` map of store → ids removed after it).
pub async fn backup_of(
    store: &Store,
    tenant: &str,
    db: &str,
    since: Option<i64>,
) -> Result<Value, ApiError> {
    database_name(db)?;
    let now = iso8601(now_millis());
    let (epoch, head) = store.stream_head(tenant).await?;
    let (backup, deleted) = if db == STOCK_DB {
        let movements = store.ledger(tenant, since).await?;
        (
            BTreeMap::from([("movements".to_string(), movements)]),
            BTreeMap::new(),
        )
    } else {
        let (backup, deleted) = store.dump(tenant, db, since).await?;
        if since.is_none() && backup.is_empty() {
            return Err(not_found(db));
        }
        (backup, deleted)
    };
    let total: usize = backup.values().map(Vec::len).sum();
    let stores: Vec<&String> = backup.keys().collect();
    let mut metadata =
        json!({"version": FORMAT_VERSION, "created_at": now, "lastEventId": head, "epoch": epoch});
    if let Some(since) = since {
        metadata["since"] = json!(iso8601(since));
        metadata["incremental"] = json!(true);
    }
    let mut document = json!({
        "database": db,
        "backup": backup,
        "timestamp": now,
        "stores": stores,
        "totalRecords": total,
        "metadata": metadata,
    });
    if since.is_some() {
        document["deleted"] = json!(deleted);
    }
    Ok(document)
}

/// Restores a backup document (`{"backup": …, "overwrite", "mergeStrategy"}`) into `db`.
pub async fn restore(
    store: &Store,
    origin: Origin,
    db: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    database_name(db)?;
    let invalid = |message: String| ApiError::bad_request("invalid_backup", message);
    let (event_id, counts, stores) = if db == STOCK_DB {
        let entries = parse_ledger(body.get("backup").and_then(|b| b.get("movements")))
            .map_err(|e| invalid(e.0))?;
        let (id, restored, skipped) = match store
            .submit(Command::RestoreLedger(entries), origin)
            .await?
        {
            Applied::New {
                id,
                outcome: Outcome::Ledger(done),
                ..
            }
            | Applied::Unchanged {
                id,
                outcome: Outcome::Ledger(done),
                ..
            } => (id, done.restored(), done.skipped()),
            Applied::New { id, .. }
            | Applied::Duplicate { id, .. }
            | Applied::Unchanged { id, .. } => (id, 0, 0),
        };
        (
            id,
            json!({"restored": restored, "updated": 0, "skipped": skipped}),
            json!(["movements"]),
        )
    } else {
        let restore = parse_restore(db, body).map_err(|e| invalid(e.0))?;
        let stores = json!(restore.stores.keys().collect::<Vec<_>>());
        let (id, restored, updated, skipped) =
            match store.submit(DocWrite::Restore(restore), origin).await? {
                Applied::New {
                    id,
                    outcome: Outcome::Documents(DocOutcome::Restored(done)),
                    ..
                } => (id, done.restored, done.updated, done.skipped),
                Applied::New { id, .. }
                | Applied::Duplicate { id, .. }
                | Applied::Unchanged { id, .. } => (id, 0, 0, 0),
            };
        (
            id,
            json!({"restored": restored, "updated": updated, "skipped": skipped}),
            stores,
        )
    };
    Ok(json!({
        "success": true,
        "database": db,
        "restored": counts["restored"],
        "updated": counts["updated"],
        "skipped": counts["skipped"],
        "stores": stores,
        "eventId": event_id,
        "timestamp": iso8601(now_millis()),
    }))
}

/// Compares a backup with the current contents of `db`, per store.
pub async fn compare(
    store: &Store,
    tenant: &str,
    db: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    database_name(db)?;
    if db == STOCK_DB {
        return Err(ApiError::bad_request(
            "not_comparable",
            "the stock ledger is append-only; restore it (movements already present are skipped)",
        ));
    }
    let backup = parse_backup_stores(body.get("backup"))
        .map_err(|e| ApiError::bad_request("invalid_backup", e.0))?;
    let (current, _) = store.dump(tenant, db, None).await?;
    let mut names: Vec<&String> = backup.keys().chain(current.keys()).collect();
    names.sort();
    names.dedup();
    let mut comparison = Map::new();
    for name in names {
        let records: BTreeMap<String, Map<String, Value>> = current
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["id"].as_str()?.to_owned(), client_fields(r.as_object()?))))
            .collect();
        let counts = compare_store(&records, backup.get(name).map_or(&[][..], Vec::as_slice));
        comparison.insert(name.clone(), json!(counts));
    }
    Ok(json!({"database": db, "comparison": comparison, "timestamp": iso8601(now_millis())}))
}

/// Removes every record of `db` (the ledger cannot be removed).
pub async fn drop_database(store: &Store, origin: Origin, db: &str) -> Result<Value, ApiError> {
    database_name(db)?;
    if db == STOCK_DB {
        return Err(ApiError::bad_request(
            "append_only",
            "the stock ledger is append-only and cannot be deleted",
        ));
    }
    let (event_id, deleted) = match store
        .submit(DocWrite::DropDatabase { db: db.to_owned() }, origin)
        .await?
    {
        Applied::New {
            id,
            outcome: Outcome::Documents(DocOutcome::Dropped(done)),
            ..
        } => (id, done.deleted),
        Applied::New { id, .. } | Applied::Duplicate { id, .. } | Applied::Unchanged { id, .. } => {
            (id, 0)
        }
    };
    Ok(
        json!({"success": true, "database": db, "deleted": deleted, "eventId": event_id, "timestamp": iso8601(now_millis())}),
    )
}
