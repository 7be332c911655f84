//! Seed 000's backups: list, full and incremental backup, restore with merge strategies,
//! compare, and drop — per database of documents, plus the reserved `_stock` database that
//! carries the stock ledger (restoring it recomputes every touched product's stock from the
//! ledger, so a backup restored into an empty hub reproduces stock exactly).
//!
//! A restore is one writer command: it applies whole or not at all, and every problem in
//! the backup is reported (400) before anything is written.

use std::collections::BTreeMap;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use stocky_core::documents::{
    check_name, client_fields, compare, parse_backup_stores, parse_restore, DocWrite, STOCK_DB,
};
use stocky_core::stock::parse_ledger;
use stocky_core::time::{iso8601, now_millis, parse_iso8601};
use stocky_core::DEFAULT_TENANT;
use stocky_store_sqlite::{Applied, Command};

use super::rest_origin;
use crate::error::{ApiError, ApiJson};
use crate::AppState;

/// Version of the backup format written in `metadata.version`.
const FORMAT_VERSION: &str = "1.0";

pub fn routes(max_restore_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/api/backup", get(list))
        .route("/api/backup/{db}", get(full).delete(drop_database))
        .route("/api/backup/{db}/incremental/{since}", get(incremental))
        .route(
            "/api/backup/{db}/restore",
            post(restore).layer(DefaultBodyLimit::max(max_restore_bytes)),
        )
        .route(
            "/api/backup/{db}/compare",
            post(compare_backup).layer(DefaultBodyLimit::max(max_restore_bytes)),
        )
}

fn database_name(db: &str) -> Result<(), ApiError> {
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

async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let databases = state.store.databases(DEFAULT_TENANT).await?;
    let ledger = state.store.ledger(DEFAULT_TENANT).await?.len();
    let mut out: Vec<Value> = databases
        .iter()
        .map(|(name, stores)| {
            let stores: Vec<Value> = stores
                .iter()
                .map(|(s, n)| json!({"name": s, "records": n}))
                .collect();
            let total: i64 = databases[name].values().sum();
            json!({"name": name, "stores": stores, "totalRecords": total})
        })
        .collect();
    out.push(json!({"name": STOCK_DB, "stores": [{"name": "movements", "records": ledger}], "totalRecords": ledger}));
    Ok(Json(
        json!({"databases": out, "timestamp": iso8601(now_millis())}),
    ))
}

/// The seed's backup document for `db`, with changes after `since` only when given.
async fn backup_of(state: &AppState, db: &str, since: Option<i64>) -> Result<Value, ApiError> {
    database_name(db)?;
    let now = iso8601(now_millis());
    let stream = state.default_stream();
    let (backup, deleted) = if db == STOCK_DB {
        let movements = state.store.ledger(DEFAULT_TENANT).await?;
        let movements: Vec<Value> = match since {
            Some(since) => movements
                .into_iter()
                .filter(|m| {
                    m["serverTime"]
                        .as_str()
                        .and_then(parse_iso8601)
                        .is_some_and(|t| t > since)
                })
                .collect(),
            None => movements,
        };
        (
            BTreeMap::from([("movements".to_string(), movements)]),
            BTreeMap::new(),
        )
    } else {
        let (backup, deleted) = state.store.dump(DEFAULT_TENANT, db, since).await?;
        if since.is_none() && backup.is_empty() {
            return Err(not_found(db));
        }
        (backup, deleted)
    };
    let total: usize = backup.values().map(Vec::len).sum();
    let stores: Vec<&String> = backup.keys().collect();
    let mut metadata = json!({
        "version": FORMAT_VERSION,
        "created_at": now,
        "lastEventId": stream.head(),
        "epoch": &*stream.epoch,
    });
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

async fn full(
    State(state): State<AppState>,
    Path(db): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(backup_of(&state, &db, None).await?))
}

async fn incremental(
    State(state): State<AppState>,
    Path((db, since)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let since_ms = parse_iso8601(&since).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_timestamp",
            format!("{since:?} is not an ISO-8601 timestamp"),
        )
    })?;
    Ok(Json(backup_of(&state, &db, Some(since_ms)).await?))
}

async fn restore(
    State(state): State<AppState>,
    Path(db): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    database_name(&db)?;
    let origin = rest_origin(&headers)?;
    let invalid = |message: String| ApiError::bad_request("invalid_backup", message);
    if db == STOCK_DB {
        let entries = parse_ledger(body.get("backup").and_then(|b| b.get("movements")))
            .map_err(|e| invalid(e.0))?;
        let applied = state
            .store
            .submit(Command::RestoreLedger(entries), origin)
            .await?;
        let (event_id, summary) = match applied {
            Applied::New { id, summary, .. } => (id, summary.unwrap_or(Value::Null)),
            Applied::Duplicate { id, .. } => (id, json!({"restored": 0, "skipped": 0})),
        };
        return Ok(Json(json!({
            "success": true,
            "database": db,
            "restored": summary["restored"],
            "updated": 0,
            "skipped": summary["skipped"],
            "stores": ["movements"],
            "eventId": event_id,
            "timestamp": iso8601(now_millis()),
        })));
    }
    let restore = parse_restore(&db, &body).map_err(|e| invalid(e.0))?;
    let applied = state
        .store
        .submit(DocWrite::Restore(restore), origin)
        .await?;
    let (event_id, data) = match applied {
        Applied::New { id, data, .. } => (id, serde_json::from_str(&data).unwrap_or(Value::Null)),
        Applied::Duplicate { id, .. } => (
            id,
            json!({"restored": 0, "updated": 0, "skipped": 0, "stores": []}),
        ),
    };
    Ok(Json(json!({
        "success": true,
        "database": db,
        "restored": data["restored"],
        "updated": data["updated"],
        "skipped": data["skipped"],
        "stores": data["stores"],
        "eventId": event_id,
        "timestamp": iso8601(now_millis()),
    })))
}

async fn compare_backup(
    State(state): State<AppState>,
    Path(db): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    database_name(&db)?;
    if db == STOCK_DB {
        return Err(ApiError::bad_request(
            "not_comparable",
            "the stock ledger is append-only; restore it instead of comparing",
        ));
    }
    let backup = parse_backup_stores(body.get("backup"))
        .map_err(|e| ApiError::bad_request("invalid_backup", e.0))?;
    let (current, _) = state.store.dump(DEFAULT_TENANT, &db, None).await?;
    let mut stores: Vec<&String> = backup.keys().chain(current.keys()).collect();
    stores.sort();
    stores.dedup();
    let mut comparison = Map::new();
    for store in stores {
        let records: BTreeMap<String, Map<String, Value>> = current
            .get(store)
            .into_iter()
            .flatten()
            .filter_map(|r| Some((r["id"].as_str()?.to_owned(), client_fields(r.as_object()?))))
            .collect();
        let counts = compare(&records, backup.get(store).map_or(&[][..], Vec::as_slice));
        comparison.insert(store.clone(), json!(counts));
    }
    Ok(Json(
        json!({"database": db, "comparison": comparison, "timestamp": iso8601(now_millis())}),
    ))
}

async fn drop_database(
    State(state): State<AppState>,
    Path(db): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    database_name(&db)?;
    if db == STOCK_DB {
        return Err(ApiError::bad_request(
            "append_only",
            "the stock ledger is append-only and cannot be deleted",
        ));
    }
    let applied = state
        .store
        .submit(
            DocWrite::DropDatabase { db: db.clone() },
            rest_origin(&headers)?,
        )
        .await?;
    let (event_id, deleted) = match applied {
        Applied::New { id, data, .. } => (
            id,
            serde_json::from_str::<Value>(&data)
                .map(|d| d["deleted"].clone())
                .unwrap_or(Value::Null),
        ),
        Applied::Duplicate { id, .. } => (id, json!(0)),
    };
    Ok(Json(json!({
        "success": true,
        "database": db,
        "deleted": deleted,
        "eventId": event_id,
        "timestamp": iso8601(now_millis()),
    })))
}
