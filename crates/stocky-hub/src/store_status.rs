//! Seed 004 `GET /api/sync/status` at the hub: per site, `lastSync` (the store's last push
//! or pull), `pendingOrders` (orders no store has numbered yet) and `isConnected` (its store
//! node's WebSocket is open). A site-bound caller (a store node's key) gets its own site's
//! fields at the top level; owners and admins get every site under `sites` (or one with
//! `?siteId=`). At a store node the edge answers this route with its own status instead.

use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde_json::{json, Value};
use stocky_core::auth::Action;
use stocky_core::time::{iso8601, now_millis};
use stocky_server::auth::Principal;
use stocky_server::error::ApiError;
use stocky_server::openapi::{doc, ApiRoutes};
use stocky_server::rest::site::{listing_site, SiteQuery};
use stocky_server::AppState;

pub fn routes() -> ApiRoutes {
    ApiRoutes::new().get(
        "/api/sync/status",
        status,
        doc("The sync state of the tenant's store nodes: online, last ping and sync, outbox")
            .query::<SiteQuery>(),
    )
}

async fn status(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(at): Query<SiteQuery>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let only = listing_site(&state, &p, at.site_id.as_deref()).await?;
    let (tenant, fresh) = (
        p.tenant.to_string(),
        stocky_server::presence::fresh_after(&state),
    );
    let states = state
        .store
        .sync(move |s| s.site_states(&tenant, fresh))
        .await?;
    let mut sites = Vec::new();
    for site in states
        .into_iter()
        .filter(|s| only.as_ref().is_none_or(|o| *o == s.id))
    {
        let (tenant, id) = (p.tenant.to_string(), site.id.clone());
        let pending = state
            .store
            .read(move |r| r.pending_orders(&tenant, &id))
            .await?;
        sites.push(json!({
            "siteId": site.id,
            "lastSync": site.last_sync_at.map(iso8601),
            "pendingOrders": pending,
            "isConnected": site.is_online,
        }));
    }
    let mut answer = match (&only, sites.first()) {
        (Some(_), Some(one)) => one.clone(),
        _ => json!({"sites": sites}),
    };
    answer["success"] = json!(true);
    answer["timestamp"] = json!(iso8601(now_millis()));
    Ok(Json(answer))
}
