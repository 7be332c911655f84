//! The REST API: seed 000's stock endpoints, document collections and backups, plus health.
//!
//! Writes take the same path as WebSocket commands — the writer, then the fan-out — so
//! every WebSocket client sees REST changes live. An `Idempotency-Key` header makes a
//! retried write a no-op that answers like the original.

mod backup;
mod documents;
mod stock;

use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use stocky_core::protocol::MAX_OP_ID_LEN;
use stocky_core::{DEFAULT_SITE, DEFAULT_TENANT};
use stocky_store_sqlite::Origin;

use crate::error::ApiError;
use crate::AppState;

/// Client id that REST-originated events carry.
pub const REST_CLIENT_ID: &str = "rest";

pub fn routes(max_restore_bytes: usize) -> Router<AppState> {
    Router::new()
        .merge(stock::routes())
        .merge(documents::routes())
        .merge(backup::routes(max_restore_bytes))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
}

/// Unknown paths get the error envelope too, not an empty body.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {}", uri.path()),
    )
}

/// The origin of a REST write, with its `Idempotency-Key` if it has one.
fn rest_origin(headers: &HeaderMap) -> Result<Origin, ApiError> {
    let op_id = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(s) if !s.is_empty() && s.len() <= MAX_OP_ID_LEN => Some(s.to_owned()),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_idempotency_key",
                    format!("Idempotency-Key must be visible ASCII, 1 to {MAX_OP_ID_LEN} bytes"),
                ))
            }
        },
    };
    Ok(Origin {
        tenant: DEFAULT_TENANT.into(),
        site: DEFAULT_SITE.into(),
        connection: 0,
        client_id: REST_CLIENT_ID.into(),
        op_id,
    })
}
