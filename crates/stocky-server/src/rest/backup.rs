//! Seed 000's backup routes; the logic lives in [`crate::backup`], shared with the CLI.

use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::Value;
use stocky_core::time::parse_iso8601;

use super::{json_body, rest_origin};
use crate::auth::Principal;
use crate::backup;
use crate::error::ApiError;
use crate::AppState;
use stocky_core::auth::Action;

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
            post(compare).layer(DefaultBodyLimit::max(max_restore_bytes)),
        )
}

async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ReadBackups)?;
    Ok(Json(backup::list(&state.store, &p.tenant).await?))
}

async fn full(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(db): Path<String>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ReadBackups)?;
    Ok(Json(
        backup::backup_of(&state.store, &p.tenant, &db, None).await?,
    ))
}

async fn incremental(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((db, since)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ReadBackups)?;
    let since_ms = parse_iso8601(&since).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_timestamp",
            format!("{since:?} is not an ISO-8601 timestamp"),
        )
    })?;
    Ok(Json(
        backup::backup_of(&state.store, &p.tenant, &db, Some(since_ms)).await?,
    ))
}

async fn restore(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(db): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let origin = restoring(&p, &headers)?;
    let body: Value = json_body(request, &state).await?;
    Ok(Json(
        backup::restore(&state.store, origin, &db, &body).await?,
    ))
}

async fn compare(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(db): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::RestoreBackups)?;
    let body: Value = json_body(request, &state).await?;
    Ok(Json(
        backup::compare(&state.store, &p.tenant, &db, &body).await?,
    ))
}

async fn drop_database(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(db): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        backup::drop_database(&state.store, restoring(&p, &headers)?, &db).await?,
    ))
}

/// The origin of a restore or drop, after checking the caller may do it.
fn restoring(
    p: &Principal,
    headers: &axum::http::HeaderMap,
) -> Result<stocky_store::Origin, ApiError> {
    p.require(Action::RestoreBackups)?;
    rest_origin(p, headers)
}
