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

use axum::Json;
use serde_json::Value;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{doc, ApiRoutes};
use crate::AppState;

pub use push::{MAX_PUSH_OPERATIONS, STOCK_NEGATIVE_EVENT};

pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .post(
            "/api/sync/push",
            push::push,
            doc("A store node sends what it recorded: movements and document revisions (seed 003)")
                .about("Each operation gets its own answer: `applied`, `duplicate`, `superseded` or `rejected` with a reason.")
                .object_body()
                .errors(&[422]),
        )
        .post(
            "/api/sync/pull",
            pull::pull,
            doc("Movements and document changes after the caller's cursors, oldest first (seed 003)")
                .object_body()
                .errors(&[410, 422]),
        )
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

/// What one push or pull did: the site it was for, how many items it carried or handed
/// out, how far a pull brought the caller (a hub event id), and the answer.
struct Round {
    site: String,
    items: u64,
    version: Option<u64>,
    /// The node's outbox as its pull reported it (`"outbox"` in the body).
    outbox: Option<stocky_core::api::OutboxReport>,
    answer: Value,
}

/// Answers a push or pull round and records it, in one pooled call: a store node's sync
/// marks on its site ([`crate::presence`]: `lastSyncAt`, and a pull's `syncVersion`), and
/// the hub's sync log (seed 003 `sync_logs`): every push, and every pull that handed
/// something out or failed, under the site it was for (for a failure before the site was
/// known, the caller's home site, when it has one).
async fn record_round(
    state: &AppState,
    p: &Principal,
    kind: &'static str,
    started: i64,
    round: Result<Round, ApiError>,
) -> Result<Json<Value>, ApiError> {
    let now = stocky_core::time::now_millis();
    let (logged_site, outcome) = match &round {
        Ok(r) if kind == "pull" && r.items == 0 => (None, Ok(0)),
        Ok(r) => (Some(r.site.clone()), Ok(r.items)),
        Err(e) => (p.site.as_deref().map(str::to_owned), Err(e.message.clone())),
    };
    let entry = logged_site.map(|site| {
        stocky_store::SyncLogEntry::round(
            kind,
            (started, now),
            outcome,
            Some((p.tenant.to_string(), site)),
        )
    });
    let node = match (&round, p.store_node()) {
        (Ok(r), Some((_, site))) => Some((site.to_string(), r.version, r.outbox)),
        _ => None,
    };
    if entry.is_some() || node.is_some() {
        let tenant = p.tenant.to_string();
        let recorded = state
            .store
            .sync(move |s| {
                if let Some((site, version, outbox)) = &node {
                    s.site_synced(&tenant, site, now, *version, outbox.as_ref())?;
                }
                match &entry {
                    Some(entry) => s.log_sync(entry),
                    None => Ok(()),
                }
            })
            .await;
        if let Err(e) = recorded {
            tracing::warn!(error = %e, "could not record the sync round");
        }
    }
    round.map(|r| Json(r.answer))
}

/// How the caller's writes are marked (movements' `origin_client`, documents'
/// `modified_by`), so its pulls leave them out.
pub(crate) fn pusher(p: &Principal) -> String {
    format!("device:{}", p.id)
}
