//! Seed 000's backup routes; the logic lives in [`crate::backup`], shared with the CLI.

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;
use stocky_core::time::parse_iso8601;

use super::rest_origin;
use crate::backup;
use crate::error::{ApiError, ApiJson};
use crate::AppState;

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

async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(backup::list(&state.store).await?))
}

async fn full(
    State(state): State<AppState>,
    Path(db): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(backup::backup_of(&state.store, &db, None).await?))
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
    Ok(Json(
        backup::backup_of(&state.store, &db, Some(since_ms)).await?,
    ))
}

async fn restore(
    State(state): State<AppState>,
    Path(db): Path<String>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        backup::restore(&state.store, rest_origin(&headers)?, &db, &body).await?,
    ))
}

async fn compare(
    State(state): State<AppState>,
    Path(db): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(backup::compare(&state.store, &db, &body).await?))
}

async fn drop_database(
    State(state): State<AppState>,
    Path(db): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(
        backup::drop_database(&state.store, rest_origin(&headers)?, &db).await?,
    ))
}
