//! Seed 000's document collections: `/api/sync/:dbName/:storeName[/:id]`, `since`, `stats`.
//!
//! Reads go to the read pool; writes go to the writer and become `sync:upsert` /
//! `sync:delete` events on the log, delivered live and resumable like stock events. Writes
//! check the caller's role before anything else, the body included.
//! PUT and PATCH honour an optional version precondition: an `If-Match` header (`3` or
//! `"3"`) or a `version` field in the body; a stale one gets 409.

use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde_json::{json, Map, Value};
use stocky_core::documents::{
    check_id, check_name, client_fields, parse_bulk, DocOutcome, DocWrite, RecordsChanged,
};
use stocky_core::time::{iso8601, now_millis, parse_iso8601};
use stocky_store::{Applied, Outcome};

use super::{json_body, rest_origin};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{doc, ApiRoutes};
use crate::AppState;
use stocky_core::auth::Action;

pub fn routes() -> ApiRoutes {
    let collection = "/api/sync/{db}/{store}";
    let record = "/api/sync/{db}/{store}/{id}";
    ApiRoutes::new()
        .get(collection, list, doc("Every record of a collection (seed 000 document sync)"))
        .post(
            collection,
            bulk,
            doc("Write records in bulk: creates, updates and deletes, each with its outcome")
                .about("The body is `{\"records\": [...]}` (or an array); each record is the user's own JSON with its `id`. Conflicts resolve by the collection's sync rule.")
                .object_body()
                .errors(&[409, 422])
                .idempotent(),
        )
        .get(
            "/api/sync/{db}/{store}/stats",
            stats,
            doc("How many records a collection holds and when it last changed"),
        )
        .get(
            "/api/sync/{db}/{store}/since/{timestamp}",
            since,
            doc("Records changed after a time (ISO 8601 or milliseconds since the epoch)"),
        )
        .get(record, one, doc("One record"))
        .put(
            record,
            put,
            doc("Create or replace one record")
                .object_body()
                .errors(&[409, 422])
                .idempotent(),
        )
        .patch(
            record,
            patch,
            doc("Merge fields into one record")
                .object_body()
                .errors(&[409, 422])
                .idempotent(),
        )
        .delete(
            record,
            delete,
            doc("Delete one record (a tombstone that syncs)")
                .errors(&[409])
                .idempotent(),
        )
}

fn names(db: &str, store: &str) -> Result<(), ApiError> {
    check_name("database", db)
        .and_then(|()| check_name("store", store))
        .map_err(|e| ApiError::bad_request("invalid_name", e.0))
}

fn id_of(id: &str) -> Result<(), ApiError> {
    check_id(id).map_err(|why| ApiError::bad_request("invalid_id", format!("record id {why}")))
}

/// Submits a write (the caller has been checked for `WriteDocuments`) and returns the
/// event id, what changed (none for a duplicate) and whether it was a duplicate.
async fn write(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    write: DocWrite,
) -> Result<(u64, Option<RecordsChanged>, bool), ApiError> {
    match state.store.submit(write, rest_origin(p, headers)?).await? {
        Applied::New {
            id,
            outcome: Outcome::Documents(DocOutcome::Changed(changed)),
            ..
        }
        | Applied::Unchanged {
            id,
            outcome: Outcome::Documents(DocOutcome::Changed(changed)),
            ..
        } => Ok((id, Some(changed), false)),
        Applied::New { id, .. } | Applied::Unchanged { id, .. } => Ok((id, None, false)),
        Applied::Duplicate { id, .. } => Ok((id, None, true)),
    }
}

async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((db, store)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    names(&db, &store)?;
    let data = state.store.documents(&p.tenant, &db, &store).await?;
    Ok(Json(
        json!({"count": data.len(), "data": data, "timestamp": iso8601(now_millis())}),
    ))
}

async fn one(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((db, store, id)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    names(&db, &store)?;
    id_of(&id)?;
    match state.store.document(&p.tenant, &db, &store, &id).await? {
        Some(record) => Ok(Json(
            json!({"data": record, "timestamp": iso8601(now_millis())}),
        )),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("record {id:?} not found in {db}/{store}"),
        )),
    }
}

async fn bulk(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((db, store)): Path<(String, String)>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::WriteDocuments)?;
    let body: Value = json_body(request, &state).await?;
    names(&db, &store)?;
    let records = parse_bulk(&body).map_err(|e| ApiError::bad_request("invalid_data", e.0))?;
    let synced = records.len();
    let (event_id, data, duplicate) = write(
        &state,
        &p,
        &headers,
        DocWrite::Upsert { db, store, records },
    )
    .await?;
    Ok(Json(json!({
        "success": true,
        "synced": synced,
        "created": data.as_ref().and_then(|d| d.created),
        "updated": data.as_ref().and_then(|d| d.updated),
        "eventId": event_id,
        "duplicate": duplicate,
        "timestamp": iso8601(now_millis()),
    })))
}

/// The expected version of a PUT/PATCH: `If-Match` first, then the body's `version`.
pub(super) fn precondition(
    headers: &HeaderMap,
    body: &Map<String, Value>,
) -> Result<Option<i64>, ApiError> {
    if let Some(value) = headers.get("if-match") {
        let text = value
            .to_str()
            .unwrap_or_default()
            .trim()
            .trim_start_matches("W/")
            .trim_matches('"');
        return text.parse::<i64>().map(Some).map_err(|_| {
            ApiError::bad_request(
                "invalid_if_match",
                "If-Match must be a record version, e.g. \"3\"",
            )
        });
    }
    match body.get("version") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("invalid_version", "version must be an integer")),
    }
}

fn object(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::bad_request(
            "invalid_body",
            "body must be a JSON object (the record's fields)",
        )),
    }
}

async fn single(
    state: AppState,
    p: Principal,
    headers: HeaderMap,
    (db, store, id): (String, String, String),
    body: Value,
    patch: bool,
) -> Result<Json<Value>, ApiError> {
    names(&db, &store)?;
    id_of(&id)?;
    let body = object(body)?;
    let if_version = precondition(&headers, &body)?;
    let fields = client_fields(&body);
    let command = if patch {
        DocWrite::Patch {
            db,
            store,
            id,
            fields,
            if_version,
        }
    } else {
        DocWrite::Put {
            db,
            store,
            id,
            fields,
            if_version,
        }
    };
    let (event_id, data, duplicate) = write(&state, &p, &headers, command).await?;
    Ok(Json(json!({
        "success": true,
        "data": data.as_ref().and_then(|d| d.records.first()),
        "created": data.as_ref().and_then(|d| d.created) == Some(1),
        "eventId": event_id,
        "duplicate": duplicate,
        "timestamp": iso8601(now_millis()),
    })))
}

async fn put(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(path): Path<(String, String, String)>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::WriteDocuments)?;
    let body = json_body(request, &state).await?;
    single(state, p, headers, path, body, false).await
}

async fn patch(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(path): Path<(String, String, String)>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::WriteDocuments)?;
    let body = json_body(request, &state).await?;
    single(state, p, headers, path, body, true).await
}

async fn delete(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((db, store, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::WriteDocuments)?;
    names(&db, &store)?;
    id_of(&id)?;
    let if_version = match headers.get("if-match") {
        Some(_) => precondition(&headers, &Map::new())?,
        None => None,
    };
    let (event_id, _, duplicate) = write(
        &state,
        &p,
        &headers,
        DocWrite::Delete {
            db,
            store,
            id: id.clone(),
            if_version,
        },
    )
    .await?;
    Ok(Json(json!({
        "success": true,
        "id": id,
        "eventId": event_id,
        "duplicate": duplicate,
        "timestamp": iso8601(now_millis()),
    })))
}

async fn since(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((db, store, timestamp)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    names(&db, &store)?;
    let since_ms = parse_iso8601(&timestamp).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_timestamp",
            format!("{timestamp:?} is not an ISO-8601 timestamp (e.g. 2025-10-08T00:00:00.000Z)"),
        )
    })?;
    let data = state
        .store
        .documents_since(&p.tenant, &db, &store, since_ms)
        .await?;
    Ok(Json(json!({
        "count": data.len(),
        "data": data,
        "since": iso8601(since_ms),
        "timestamp": iso8601(now_millis()),
    })))
}

async fn stats(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((db, store)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    names(&db, &store)?;
    let now = now_millis();
    let mut stats = state
        .store
        .document_stats(&p.tenant, &db, &store, now)
        .await?;
    stats["timestamp"] = json!(iso8601(now));
    Ok(Json(stats))
}
