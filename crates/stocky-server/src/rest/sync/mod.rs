//! Sync between tiers (seed 003 §4.2), over the ledger and the document collections:
//!
//! `POST /api/sync/push` ([`push`]): a downstream node (a store's edge) sends what it
//! recorded — stock movements, each with its UUID, and document revisions — and gets an
//! answer per operation: `applied`, `duplicate`, `superseded` (a document whose hub
//! revision won; the node gets it at its next pull) or `rejected` with a reason.
//!
//! `POST /api/sync/pull` ([`pull`]): the movements of the caller's site and the document
//! changes of its tenant after the caller's cursors, oldest first, with the cursors to
//! continue from. Both are read in log order (the ledger and the documents remember the
//! event that wrote them), so a cursor never misses or repeats a change. The caller's own
//! pushes are left out.
//!
//! Movements from a store are facts: a valid one is never refused for the stock it leaves
//! (a sale that happened may take stock below zero: admins get `stock:negative`).
//! Documents follow the hub's [`stocky_core::sync_rules::SyncRules`]: a collection that
//! does not sync up refuses pushes, one that does not come down is left out of pulls,
//! and conflicts resolve by the collection's rule.

mod pull;
mod push;

use axum::routing::post;
use axum::{Json, Router};
use serde_json::Value;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

pub use push::{MAX_PUSH_OPERATIONS, STOCK_NEGATIVE_EVENT};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/sync/push", post(push::push))
        .route("/api/sync/pull", post(pull::pull))
}

/// The body's `siteId` (seed 003's `sedeId` accepted), checked like `?siteId=`
/// ([`crate::rest::site::target_site`]): by default the caller's home site.
async fn requested_site(
    state: &AppState,
    p: &Principal,
    given: Option<&Value>,
) -> Result<String, ApiError> {
    let named = match given {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "siteId must be a string",
            ))
        }
    };
    Ok(crate::rest::site::target_site(state, p, named)
        .await?
        .to_string())
}

/// Answers a push or pull round and records it in the hub's sync log (seed 003
/// `sync_logs`): every push, and every pull that handed something out or failed, under the
/// site it was for (for a failure before the site was known, the caller's home site, when
/// it has one).
async fn record_round(
    state: &AppState,
    p: &Principal,
    kind: &'static str,
    started: i64,
    round: Result<(String, u64, Value), ApiError>,
) -> Result<Json<Value>, ApiError> {
    let now = stocky_core::time::now_millis();
    let (site, outcome) = match &round {
        Ok((_, 0, _)) if kind == "pull" => (None, Ok(0)),
        Ok((site, count, _)) => (Some(site.clone()), Ok(*count)),
        Err(e) => (p.site.as_deref().map(str::to_owned), Err(e.message.clone())),
    };
    if let Some(site) = site {
        let entry = stocky_store::SyncLogEntry::round(
            kind,
            (started, now),
            outcome,
            Some((p.tenant.to_string(), site)),
        );
        if let Err(e) = state.store.sync(move |s| s.log_sync(&entry)).await {
            tracing::debug!(error = %e, "could not write the sync log");
        }
    }
    round.map(|(_, _, answer)| Json(answer))
}

/// How the caller's writes are marked (movements' `origin_client`, documents'
/// `modified_by`), so its pulls leave them out.
fn pusher(p: &Principal) -> String {
    format!("device:{}", p.id)
}
