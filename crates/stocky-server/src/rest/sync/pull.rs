//! `POST /api/sync/pull` `{"siteId", "cursor":{"eventId","id"}, "limit",
//! "documentsCursor":{"eventId","db","store","id"}, "documentsLimit",
//! "outbox":{"pending","pendingSales","oldestUnsyncedSaleAt"}}`.
//!
//! Movements of the site after `cursor`, and — when `documentsCursor` is given — document
//! changes of the tenant after it (the collections whose rule comes down only). Each
//! answer that is not cut short moves its cursor to the head it was read at, so what was
//! left out (the caller's own pushes, collections that stay up) is not scanned again.

use axum::extract::{Request, State};
use axum::{Extension, Json};
use serde_json::{json, Value};
use stocky_core::auth::Action;
use stocky_core::time::{iso8601, now_millis};
use stocky_store::{DocCursor, OutboxCursor};

use super::{pusher, requested_site};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::rest::json_body;
use crate::AppState;

/// Movements one pull answers at most.
pub const MAX_PULL: usize = 1000;
/// Document changes one pull answers at most.
pub const MAX_PULL_DOCUMENTS: usize = 500;
/// Catalog changes one pull answers at most.
pub const MAX_PULL_PRODUCTS: usize = 500;

fn limit(body: &Value, key: &str, max: usize) -> usize {
    body[key]
        .as_u64()
        .map_or(max, |l| (l as usize).clamp(1, max))
}

pub(super) async fn pull(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let started = now_millis();
    let round = pull_round(&state, &p, request).await;
    super::record_round(&state, &p, "pull", started, round).await
}

/// One pull.
async fn pull_round(
    state: &AppState,
    p: &Principal,
    request: Request,
) -> Result<super::Round, ApiError> {
    p.require(Action::Read)?;
    let body: Value = json_body(request, state).await?;
    let site = requested_site(state, p, body.get("siteId").or_else(|| body.get("sedeId"))).await?;
    let cursor = &body["cursor"];
    let after = OutboxCursor {
        event_id: cursor["eventId"]
            .as_u64()
            .or_else(|| body["lastEventId"].as_u64())
            .unwrap_or(0),
        id: cursor["id"].as_str().unwrap_or("").to_owned(),
    };
    let limit_movements = limit(&body, "limit", MAX_PULL);
    // Read before the changes: everything up to `head` is committed, so an answer that is
    // not cut short holds everything up to it.
    let (epoch, head) = state.store.stream_head(&p.tenant).await?;
    let asked_from = after.event_id;
    let (tenant, at, own) = (p.tenant.to_string(), site.clone(), pusher(p));
    let mut rows = state
        .store
        .sync(move |s| {
            s.movements_after(&tenant, Some(&at), &after, limit_movements + 1, Some(&own))
        })
        .await?;
    let has_more = rows.len() > limit_movements;
    rows.truncate(limit_movements);
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
    let movements: Vec<Value> = rows
        .iter()
        .map(|r| {
            let e = &r.entry;
            json!({
                "id": e.id, "productId": e.product_id, "delta": e.delta, "kind": e.kind,
                "reason": e.reason, "originClient": e.origin_client, "originOp": e.origin_op,
                "serverTime": iso8601(e.server_time), "eventId": r.cursor.event_id,
                "clientTime": e.client_time.map(iso8601), "userId": e.user_id,
            })
        })
        .collect();
    let mut answer = json!({
        "success": true,
        "siteId": site,
        "movements": movements,
        "cursor": next,
        "hasMore": has_more,
        "epoch": epoch,
        "timestamp": iso8601(now_millis()),
    });
    if let Some(given) = body.get("documentsCursor") {
        let (documents, next, more) = documents(state, p, given, &body, head).await?;
        answer["documents"] = Value::Array(documents);
        answer["documentsCursor"] = next;
        answer["documentsHasMore"] = json!(more);
    }
    if let Some(given) = body.get("ordersCursor") {
        let after = given["eventId"].as_u64().unwrap_or(0);
        let (tenant, at, own) = (p.tenant.to_string(), site.clone(), pusher(p));
        let limit = limit(&body, "ordersLimit", MAX_PULL_PRODUCTS);
        let mut orders = state
            .store
            .read(move |r| r.orders_after(&tenant, &at, after, &own, limit + 1))
            .await?;
        let more = orders.len() > limit;
        orders.truncate(limit);
        let next = match orders.last() {
            Some((event_id, _)) if more => *event_id,
            _ => head.max(after),
        };
        answer["orders"] = Value::Array(orders.iter().map(|(_, o)| o.to_json()).collect());
        answer["ordersCursor"] = json!({"eventId": next});
        answer["ordersHasMore"] = json!(more);
    }
    if let Some(given) = body.get("productsCursor") {
        let (products, next, more) = products(state, p, given, &body, head).await?;
        answer["products"] = Value::Array(products);
        answer["productsCursor"] = next;
        answer["productsHasMore"] = json!(more);
    }
    let handed = answer["movements"].as_array().map_or(0, Vec::len)
        + answer["documents"].as_array().map_or(0, Vec::len)
        + answer["products"].as_array().map_or(0, Vec::len)
        + answer["orders"].as_array().map_or(0, Vec::len);
    // A store node reports its outbox with each pull (admins see it per site); a report
    // that does not parse is ignored, not an error: it is advisory.
    let outbox = body
        .get("outbox")
        .and_then(|o| serde_json::from_value::<stocky_core::api::OutboxReport>(o.clone()).ok());
    Ok(super::Round {
        site,
        items: handed as u64,
        version: Some(version),
        outbox,
        answer,
    })
}

/// The catalog's changes after `given` (`{"eventId","id"}`), leaving out those the caller
/// pushed. The catalog comes down to every store (LWW by version on both tiers).
async fn products(
    state: &AppState,
    p: &Principal,
    given: &Value,
    body: &Value,
    head: u64,
) -> Result<(Vec<Value>, Value, bool), ApiError> {
    let after = (
        given["eventId"].as_u64().unwrap_or(0),
        given["id"].as_i64().unwrap_or(0),
    );
    let limit = limit(body, "productsLimit", MAX_PULL_PRODUCTS);
    let (tenant, own) = (p.tenant.to_string(), pusher(p));
    let mut changes = state
        .store
        .read(move |r| r.products_after(&tenant, after, &own, limit + 1))
        .await?;
    let has_more = changes.len() > limit;
    changes.truncate(limit);
    let next = match changes.last() {
        Some((event_id, product)) if has_more => json!({"eventId": event_id, "id": product.id}),
        _ if head >= after.0 => json!({"eventId": head, "id": 0}),
        _ => given.clone(),
    };
    let products = changes.iter().map(|(_, p)| p.to_json()).collect();
    Ok((products, next, has_more))
}

/// The document changes after `given`, of the collections that come down.
async fn documents(
    state: &AppState,
    p: &Principal,
    given: &Value,
    body: &Value,
    head: u64,
) -> Result<(Vec<Value>, Value, bool), ApiError> {
    let text = |key: &str| given[key].as_str().unwrap_or("").to_owned();
    let after = DocCursor {
        event_id: given["eventId"].as_u64().unwrap_or(0),
        db: text("db"),
        store: text("store"),
        id: text("id"),
    };
    let asked_from = after.event_id;
    let limit = limit(body, "documentsLimit", MAX_PULL_DOCUMENTS);
    let (tenant, own) = (p.tenant.to_string(), pusher(p));
    let mut changes = state
        .store
        .sync(move |s| s.documents_after(&tenant, &after, limit + 1, Some(&own)))
        .await?;
    let has_more = changes.len() > limit;
    changes.truncate(limit);
    let next = match changes.last() {
        Some(last) if has_more => json!({
            "eventId": last.cursor.event_id, "db": last.cursor.db,
            "store": last.cursor.store, "id": last.cursor.id,
        }),
        _ if head >= asked_from => json!({"eventId": head, "db": "", "store": "", "id": ""}),
        _ => given.clone(),
    };
    let rules = &state.config.sync_rules;
    let documents = changes
        .into_iter()
        .filter(|c| rules.rule_for(&c.db, &c.store).direction.comes_down())
        .map(|c| json!({"db": c.db, "store": c.store, "record": c.record}))
        .collect();
    Ok((documents, next, has_more))
}
