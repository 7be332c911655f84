//! The operations the hub refused, for an admin at the edge (seed 003 §4.2: visible,
//! retryable, discardable):
//!
//! - `GET /api/sync/quarantine` lists them with the hub's reason;
//! - `POST /api/sync/quarantine/{opId}/retry` sends one again now (after the hub's rules or
//!   the data were fixed); it leaves the quarantine only when the hub takes it;
//! - `DELETE /api/sync/quarantine/{opId}` gives up on it: for a movement, a compensating
//!   movement (marked upstream, never pushed) takes its delta back out of the local stock,
//!   so the edge agrees with the hub again, and the ledger keeps both; for a document, the
//!   local revision stays until the hub's next change of the record comes down.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde_json::{json, Value};
use stocky_client::Client;
use stocky_core::auth::Action;
use stocky_core::stock::LedgerEntry;
use stocky_core::time::{iso8601, now_millis};
use stocky_core::DEFAULT_SITE;
use stocky_server::auth::Principal;
use stocky_server::error::ApiError;
use stocky_server::openapi::{doc, ApiRoutes};
use stocky_server::AppState;
use stocky_store::{Command, UPSTREAM_ORIGIN};

/// The hub client and this edge's hub site, for retries.
#[derive(Clone)]
pub(crate) struct Upstream {
    pub hub: Client,
    pub site: String,
}

pub(crate) fn routes(upstream: Upstream) -> ApiRoutes {
    ApiRoutes::new()
        .get(
            "/api/sync/quarantine",
            list,
            doc("Operations the hub refused, kept here for a person to decide"),
        )
        .post(
            "/api/sync/quarantine/{op_id}/retry",
            retry,
            doc("Send a quarantined operation to the hub again").errors(&[409, 422, 502]),
        )
        .delete(
            "/api/sync/quarantine/{op_id}",
            discard,
            doc("Discard a quarantined operation (its movement is undone locally)"),
        )
        .map_router(|router| router.layer(Extension(upstream)))
}

async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let rows = state.store.sync(|s| s.quarantined()).await?;
    let data: Vec<Value> = rows
        .into_iter()
        .map(|(op_id, operation, reason, at)| {
            json!({
                "opId": op_id,
                "operation": serde_json::from_str::<Value>(&operation).unwrap_or(Value::String(operation)),
                "reason": reason,
                "quarantinedAt": iso8601(at),
            })
        })
        .collect();
    Ok(Json(json!({"count": data.len(), "data": data})))
}

/// The quarantined operation `op_id` as it was sent.
async fn quarantined(state: &AppState, op_id: &str) -> Result<Value, ApiError> {
    let rows = state.store.sync(|s| s.quarantined()).await?;
    let Some((_, operation, _, _)) = rows.into_iter().find(|(id, ..)| id == op_id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no quarantined operation {op_id:?}"),
        ));
    };
    serde_json::from_str(&operation).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the quarantined operation is not JSON: {e}"),
        )
    })
}

async fn retry(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(upstream): Extension<Upstream>,
    Path(op_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ManageAccess)?;
    let operation = quarantined(&state, &op_id).await?;
    let answer: Value = upstream
        .hub
        .post(
            "/api/sync/push",
            &json!({"siteId": upstream.site, "operations": [operation]}),
        )
        .await
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, "hub_unavailable", e.to_string()))?;
    let result = answer["results"][0].clone();
    let taken = matches!(
        result["status"].as_str(),
        Some("applied" | "duplicate" | "superseded")
    );
    if taken {
        let id = op_id.clone();
        state.store.sync(move |s| s.release(&id)).await?;
    } else {
        let (id, reason) = (
            op_id.clone(),
            result["reason"].as_str().unwrap_or("rejected").to_owned(),
        );
        let body = operation.to_string();
        state
            .store
            .sync(move |s| s.quarantine(&id, &body, &reason, now_millis()))
            .await?;
    }
    Ok(Json(
        json!({"success": taken, "opId": op_id, "result": result}),
    ))
}

async fn discard(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(op_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ManageAccess)?;
    let operation = quarantined(&state, &op_id).await?;
    if matches!(
        operation["type"].as_str(),
        Some("document" | "sale" | "product")
    ) {
        // The local revision stays as it is; the hub's next change of it comes down (a
        // sale's stock effect went up with its movements).
        let id = op_id.clone();
        state.store.sync(move |s| s.release(&id)).await?;
        tracing::info!(op = %op_id, by = %p.id, "quarantined document discarded");
        return Ok(Json(
            json!({"success": true, "opId": op_id, "discarded": true}),
        ));
    }
    let (Some(product_id), Some(delta)) =
        (operation["productId"].as_i64(), operation["delta"].as_i64())
    else {
        return Err(ApiError::bad_request(
            "invalid_operation",
            "the quarantined operation has no productId/delta",
        ));
    };
    let compensation = LedgerEntry {
        id: format!("discard-{op_id}"),
        site: DEFAULT_SITE.to_owned(),
        product_id,
        delta: -delta,
        kind: "discard".into(),
        reason: Some(format!(
            "quarantined operation {op_id} discarded by {}",
            p.id
        )),
        origin_client: Some(UPSTREAM_ORIGIN.into()),
        origin_op: Some(op_id.clone()),
        server_time: now_millis(),
        client_time: None,
        user_id: Some(p.actor().to_string()),
    };
    state
        .store
        .submit(
            Command::RestoreLedger(vec![compensation]),
            crate::upstream_origin(),
        )
        .await?;
    let id = op_id.clone();
    state.store.sync(move |s| s.release(&id)).await?;
    tracing::info!(op = %op_id, by = %p.id, "quarantined operation discarded");
    Ok(Json(
        json!({"success": true, "opId": op_id, "discarded": true}),
    ))
}
