//! Sync between tiers (seed 003 §4.2), over the ledger:
//!
//! `POST /api/sync/push`: a downstream node (a store's edge) sends the stock movements it
//! recorded, each with its UUID; the answer is per operation: `applied`, `duplicate` (that
//! UUID is in the ledger already) or `rejected` with a reason.
//!
//! `POST /api/sync/pull` `{"cursor":{"eventId","id"}, "limit"}`: the movements of the
//! caller's site after the cursor, oldest first, with the cursor to continue from. The
//! ledger is append-only, so a cursor never misses or repeats a movement. The caller's own
//! pushes are left out (a node applies movements by UUID anyway, so they would change
//! nothing).
//!
//! Movements from a store are facts: a valid one is never refused for the stock it leaves
//! (a sale that happened may take stock below zero). The valid operations of a request are
//! appended in one writer transaction and commit with one `stock:sync` event carrying the
//! resulting levels; an invalid one is refused alone and never blocks the others.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Extension, Json, Router};
use serde::Serialize;
use serde_json::{json, Map, Value};
use stocky_core::auth::Action;
use stocky_core::stock::{Appended, LedgerEntry, MAX_AMOUNT, MAX_PRODUCT_ID};
use stocky_core::time::{iso8601, now_millis, parse_iso8601};
use stocky_store::{Applied, Command, OutboxCursor, Outcome};

use super::{json_body, rest_origin};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

/// Operations one request may carry.
pub const MAX_PUSH_OPERATIONS: usize = 500;
/// Longest operation id (a UUID has 36 characters).
const MAX_OP_ID: usize = 64;
/// Longest movement kind (`sale`, `refund`, `adjustment`, …).
const MAX_KIND: usize = 32;
/// Longest reason text.
const MAX_REASON: usize = 500;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/sync/push", post(push))
        .route("/api/sync/pull", post(pull))
}

/// Movements one pull answers at most.
pub const MAX_PULL: usize = 1000;

async fn pull(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let body: Value = json_body(request, &state).await?;
    let site = requested_site(&p, body.get("siteId").or_else(|| body.get("sedeId")))?;
    let cursor = &body["cursor"];
    let after = OutboxCursor {
        event_id: cursor["eventId"]
            .as_u64()
            .or_else(|| body["lastEventId"].as_u64())
            .unwrap_or(0),
        id: cursor["id"].as_str().unwrap_or("").to_owned(),
    };
    let limit = body["limit"]
        .as_u64()
        .map_or(MAX_PULL, |l| (l as usize).clamp(1, MAX_PULL));
    // Read before the movements: every movement up to `head` is committed, so an answer
    // that is not cut short holds everything up to it.
    let (_, head) = state.store.stream_head(&p.tenant).await?;
    let asked_from = after.event_id;
    // The caller's own pushes are already where it is: leave them out.
    let (tenant, at, own) = (
        p.tenant.to_string(),
        site.clone(),
        format!("device:{}", p.id),
    );
    let mut rows = state
        .store
        .sync(move |s| s.movements_after(&tenant, Some(&at), &after, limit + 1, Some(&own)))
        .await?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    // Where to continue: after the last movement sent when the answer was cut short, else
    // after the whole log up to `head` (so the caller's own movements, left out, are not
    // scanned again at its next pull).
    let next = match rows.last() {
        Some(last) if has_more => json!({"eventId": last.cursor.event_id, "id": last.cursor.id}),
        _ if head >= asked_from => json!({"eventId": head, "id": ""}),
        _ => cursor.clone(),
    };
    // How far the node is: the last hub event it now holds entirely.
    let version = match rows.last() {
        Some(last) if has_more => last.cursor.event_id.saturating_sub(1),
        _ => head.max(asked_from),
    };
    crate::presence::synced(&state, &p, Some(version)).await;
    let movements: Vec<Value> = rows
        .iter()
        .map(|r| {
            let e = &r.entry;
            json!({
                "id": e.id, "productId": e.product_id, "delta": e.delta, "kind": e.kind,
                "reason": e.reason, "originClient": e.origin_client, "originOp": e.origin_op,
                "serverTime": iso8601(e.server_time), "eventId": r.cursor.event_id,
            })
        })
        .collect();
    Ok(Json(json!({
        "success": true,
        "siteId": site,
        "movements": movements,
        "cursor": next,
        "hasMore": has_more,
        "timestamp": iso8601(now_millis()),
    })))
}

/// One operation's fate.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct OpResult {
    id: Option<String>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

async fn push(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::SetStock)?;
    let body: Value = json_body(request, &state).await?;
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "body must be a JSON object with \"operations\"",
        ));
    };
    let site = requested_site(&p, body.get("siteId").or_else(|| body.get("sedeId")))?;
    let Some(Value::Array(operations)) = body.get("operations") else {
        return Err(ApiError::bad_request(
            "invalid_data",
            "operations is required (an array of movements)",
        ));
    };
    if operations.len() > MAX_PUSH_OPERATIONS {
        return Err(ApiError::bad_request(
            "invalid_data",
            format!("at most {MAX_PUSH_OPERATIONS} operations per request"),
        ));
    }
    let (tenant, known) = (p.tenant.to_string(), site.clone());
    if !state
        .store
        .accounts(move |a| a.site_exists(&tenant, &known))
        .await?
    {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("site {site:?} not found"),
        ));
    }

    let now = now_millis();
    let origin_client = format!("device:{}", p.id);
    let mut results = Vec::with_capacity(operations.len());
    let mut entries = Vec::new();
    let mut slots = Vec::new();
    for (i, op) in operations.iter().enumerate() {
        let id = op.get("id").and_then(Value::as_str).map(str::to_owned);
        match parse_operation(op, &site, &origin_client, now) {
            Ok(entry) => {
                slots.push(i);
                entries.push(entry);
                results.push(OpResult {
                    id,
                    status: "applied",
                    reason: None,
                });
            }
            Err(reason) => results.push(OpResult {
                id,
                status: "rejected",
                reason: Some(format!("operations[{i}]: {reason}")),
            }),
        }
    }
    let mut last_event_id = None;
    if !entries.is_empty() {
        let mut origin = rest_origin(&p, &headers)?;
        origin.site = site.as_str().into();
        match state
            .store
            .submit(Command::RestoreLedger(entries), origin)
            .await?
        {
            Applied::New {
                id,
                outcome: Outcome::Ledger(done),
                ..
            } => {
                last_event_id = Some(id);
                let below_zero: Vec<Value> = done
                    .levels
                    .iter()
                    .filter(|level| level.stock < 0)
                    .map(|level| json!({"productId": level.product_id, "stock": level.stock}))
                    .collect();
                if done.restored() > 0 && !below_zero.is_empty() {
                    alert_negative(&state, &p, &site, id, below_zero).await;
                }
                for (slot, appended) in slots.iter().zip(done.appended) {
                    match appended {
                        Appended::New => {}
                        Appended::AlreadyThere => results[*slot].status = "duplicate",
                        Appended::IdTaken => {
                            results[*slot].status = "rejected";
                            results[*slot].reason =
                                Some("the id is already used by another movement".into());
                        }
                    }
                }
            }
            Applied::New { id, .. }
            | Applied::Duplicate { id, .. }
            | Applied::Unchanged { id, .. } => {
                // An Idempotency-Key repeat: the whole request was applied before.
                last_event_id = Some(id);
                for slot in &slots {
                    results[*slot].status = "duplicate";
                }
            }
        }
    }
    crate::presence::synced(&state, &p, None).await;
    let count = |status: &str| results.iter().filter(|r| r.status == status).count();
    Ok(Json(json!({
        "success": true,
        "siteId": site,
        "applied": count("applied"),
        "duplicates": count("duplicate"),
        "rejected": count("rejected"),
        "lastEventId": last_event_id,
        "results": results,
    })))
}

/// The event that tells admins a store's facts took stock below zero.
pub const STOCK_NEGATIVE_EVENT: &str = "stock:negative";

/// Raises [`STOCK_NEGATIVE_EVENT`] for the products a push left below zero (`event`: the
/// push's `stock:sync`). The movements stand: this is an alert, not a refusal.
async fn alert_negative(
    state: &AppState,
    p: &Principal,
    site: &str,
    event: u64,
    products: Vec<Value>,
) {
    let origin = stocky_store::Origin {
        tenant: p.tenant.clone(),
        site: site.into(),
        connection: 0,
        client_id: "sync".into(),
        op_id: None,
    };
    let command = Command::Publish {
        event: STOCK_NEGATIVE_EVENT.into(),
        data: json!({"siteId": site, "products": products, "eventId": event, "deviceId": p.device.as_deref()}),
    };
    if let Err(e) = state.store.submit(command, origin).await {
        tracing::warn!(error = %e, site, "could not raise stock:negative");
    }
}

/// The request's `siteId` (seed 003's `sedeId` accepted), by default the caller's home
/// site; it must be one the caller sees.
fn requested_site(p: &Principal, given: Option<&Value>) -> Result<String, ApiError> {
    let site = match given {
        None | Some(Value::Null) => p.home_site().to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_body",
                "siteId must be a string",
            ))
        }
    };
    if !p.sees_site(&site) {
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "forbidden",
            format!("site {site:?} is not yours"),
        ));
    }
    Ok(site)
}

/// One movement of a push, checked: `{"id","productId","delta","kind","reason","clientTime"}`.
fn parse_operation(
    op: &Value,
    site: &str,
    origin_client: &str,
    now: i64,
) -> Result<LedgerEntry, String> {
    let Value::Object(o) = op else {
        return Err("must be an object".into());
    };
    let text = |o: &Map<String, Value>, key: &str, max: usize| -> Result<Option<String>, String> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.len() <= max => Ok(Some(s.clone())),
            Some(_) => Err(format!("{key} must be a string of 1 to {max} bytes")),
        }
    };
    let id = text(o, "id", MAX_OP_ID)?.ok_or("id is required (the operation's UUID)")?;
    let product_id = o
        .get("productId")
        .and_then(Value::as_i64)
        .filter(|p| (1..=MAX_PRODUCT_ID).contains(p))
        .ok_or("productId must be a positive integer")?;
    let delta = o
        .get("delta")
        .and_then(Value::as_i64)
        .filter(|d| *d != 0 && d.abs() <= MAX_AMOUNT)
        .ok_or_else(|| {
            format!("delta must be a non-zero integer of at most {MAX_AMOUNT} in size")
        })?;
    let kind = text(o, "kind", MAX_KIND)?.unwrap_or_else(|| "sync".into());
    let reason = text(o, "reason", MAX_REASON)?;
    if let Some(at) = text(o, "clientTime", 40)? {
        parse_iso8601(&at).ok_or("clientTime must be an ISO-8601 timestamp")?;
    }
    Ok(LedgerEntry {
        origin_op: Some(id.clone()),
        id,
        site: site.to_owned(),
        product_id,
        delta,
        kind,
        reason,
        origin_client: Some(origin_client.to_owned()),
        server_time: now,
    })
}
