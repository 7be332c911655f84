//! `GET /api/audit?entityType=&entityId=&since=&limit=&before=` (seed 003 AuditModule):
//! the tenant's audit log, newest first, for owners and admins. Entries are written with
//! the change they describe (see `stocky_store::audit`).

use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use stocky_core::auth::Action;
use stocky_core::time::parse_iso8601;
use stocky_store::audit::AuditFilter;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{doc, ApiRoutes};
use crate::AppState;

/// Most entries one page lists.
pub const MAX_PAGE: usize = 1000;

pub fn routes() -> ApiRoutes {
    ApiRoutes::new().get(
        "/api/audit",
        list,
        doc("The tenant's audit log, newest first (owners and admins)")
            .about("Filter by `entityType`, `entityId`, `since`; page with the answer's `next` as `before`.")
            .query::<AuditQuery>(),
    )
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct AuditQuery {
    entity_type: Option<String>,
    entity_id: Option<String>,
    /// ISO 8601, or milliseconds since the epoch.
    since: Option<String>,
    before: Option<i64>,
    limit: Option<usize>,
}

async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ReadAudit)?;
    let since = match q.since.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<i64>()
                .ok()
                .or_else(|| parse_iso8601(s))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_since",
                        "since must be an ISO-8601 time or milliseconds since the epoch",
                    )
                })?,
        ),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let filter = AuditFilter {
        entity_type: q.entity_type,
        entity_id: q.entity_id,
        since,
        before_id: q.before,
        limit,
    };
    let tenant = p.tenant.to_string();
    let entries = state.store.read(move |r| r.audit(&tenant, &filter)).await?;
    let next = (entries.len() == limit)
        .then(|| entries.last().and_then(|e| e["id"].as_i64()))
        .flatten();
    Ok(Json(json!({
        "success": true,
        "count": entries.len(),
        "data": entries,
        "next": next,
    })))
}
