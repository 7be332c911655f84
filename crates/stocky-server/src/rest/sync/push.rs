//! `POST /api/sync/push` `{"siteId", "operations":[…]}`: a store node's movements
//! (`{"id","productId","delta","kind","reason","clientTime"}`, `"type":"movement"` by
//! default), document revisions (`{"id","type":"document","db","store","record"}`,
//! the record as the server renders it, with `version` and `updated_at`), sales
//! (`{"id","type":"sale","sale":{…}}`, as `GET /api/sales/{id}` renders them) and catalog
//! revisions (`{"id","type":"product","product":{…}}`, as `GET /api/products/{id}`
//! renders them). A sale made at a store is never refused for stock: it is a fact.
//!
//! The valid movements of a request are appended in one writer transaction and commit
//! with one `stock:sync` event; the documents of each collection are merged in one
//! transaction per collection under the collection's rule (from the local side). An
//! invalid operation is refused alone and never blocks the others.

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::{json, Map, Value};
use stocky_core::auth::Action;
use stocky_core::catalog::{Product, ProductWrite};
use stocky_core::documents::{check_name, DocOutcome, DocWrite, Merged, SyncedRecord};
use stocky_core::orders::{Order, OrderCommand};
use stocky_core::sales::{SaleCommand, SaleRecord};
use stocky_core::stock::{delta_in_range, Appended, LedgerEntry, MAX_AMOUNT, MAX_PRODUCT_ID};
use stocky_core::sync_rules::Side;
use stocky_core::time::{now_millis, parse_iso8601};
use stocky_store::{Applied, Command, Outcome, SubmitError};

use super::{pusher, requested_site};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::rest::{json_body, rest_origin};
use crate::AppState;

/// Operations one request may carry.
pub const MAX_PUSH_OPERATIONS: usize = 500;
/// Longest operation id (a UUID has 36 characters).
const MAX_OP_ID: usize = 64;
/// Longest movement kind (`sale`, `refund`, `adjustment`, …).
const MAX_KIND: usize = 32;
/// Longest reason text.
const MAX_REASON: usize = 500;
/// The event that tells admins a store's facts took stock below zero.
pub const STOCK_NEGATIVE_EVENT: &str = "stock:negative";

/// One operation's fate.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
struct OpResult {
    id: Option<String>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

impl OpResult {
    fn refuse(&mut self, reason: String) {
        self.status = "rejected";
        self.reason = Some(reason);
    }
}

/// A checked operation.
enum Operation {
    Movement(LedgerEntry),
    /// A sale made at the store, as it stands there (merged by union with the hub's copy).
    Sale(Box<SaleRecord>),
    /// A catalog revision made at the store (taken when it wins by version, then time).
    Product(Box<Product>),
    /// An order's revision made at the store (its status; LWW by version, then time).
    Order(Box<Order>),
    Document {
        db: String,
        store: String,
        record: SyncedRecord,
    },
}

pub(super) async fn push(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let started = now_millis();
    let round = push_round(&state, &p, headers, request).await;
    super::record_round(&state, &p, "push", started, round).await
}

/// One push.
async fn push_round(
    state: &AppState,
    p: &Principal,
    headers: HeaderMap,
    request: Request,
) -> Result<super::Round, ApiError> {
    p.require(Action::SetStock)?;
    let body: Value = json_body(request, state).await?;
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "body must be a JSON object with \"operations\"",
        ));
    };
    let site = requested_site(state, p, body.get("siteId").or_else(|| body.get("sedeId"))).await?;
    let Some(Value::Array(operations)) = body.get("operations") else {
        return Err(ApiError::bad_request(
            "invalid_data",
            "operations is required (an array of movements and documents)",
        ));
    };
    if operations.len() > MAX_PUSH_OPERATIONS {
        return Err(ApiError::bad_request(
            "invalid_data",
            format!("at most {MAX_PUSH_OPERATIONS} operations per request"),
        ));
    }
    let now = now_millis();
    let origin_client = pusher(p);
    let mut results = Vec::with_capacity(operations.len());
    let mut entries = Vec::new();
    let mut slots = Vec::new();
    let mut collections: BTreeMap<(String, String), Vec<(usize, SyncedRecord)>> = BTreeMap::new();
    let mut sales = Vec::new();
    let mut products = Vec::new();
    let mut orders = Vec::new();
    for (i, op) in operations.iter().enumerate() {
        let id = op.get("id").and_then(Value::as_str).map(str::to_owned);
        let mut result = OpResult {
            id,
            status: "applied",
            reason: None,
        };
        match parse_operation(op, &site, &origin_client, now) {
            Ok(Operation::Movement(entry)) => {
                slots.push(i);
                entries.push(entry);
            }
            Ok(Operation::Sale(sale)) => sales.push((i, *sale)),
            Ok(Operation::Product(product)) => products.push((i, *product)),
            Ok(Operation::Order(order)) => orders.push((i, *order)),
            Ok(Operation::Document { db, store, record }) => {
                if state
                    .config
                    .sync_rules
                    .rule_for(&db, &store)
                    .direction
                    .goes_up()
                {
                    collections
                        .entry((db, store))
                        .or_default()
                        .push((i, record));
                } else {
                    result.refuse(format!(
                        "operations[{i}]: {db}/{store} does not sync up from stores: it is managed at the hub"
                    ));
                }
            }
            Err(reason) => result.refuse(format!("operations[{i}]: {reason}")),
        }
        results.push(result);
    }
    let mut origin = rest_origin(p, &headers)?;
    origin.site = site.as_str().into();
    origin.client_id = origin_client.into();
    let mut last_event_id = None;
    if !entries.is_empty() {
        match state
            .store
            .submit(Command::RestoreLedger(entries), origin.clone())
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
                    alert_negative(state, p, &site, id, below_zero).await;
                }
                for (slot, appended) in slots.iter().zip(done.appended) {
                    if appended == Appended::AlreadyThere {
                        results[*slot].status = "duplicate";
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
    // Documents: one merge per collection. The request's Idempotency-Key belongs to the
    // movements; revisions are idempotent by themselves (the same one is `duplicate`).
    origin.op_id = None;
    for ((db, store), records) in collections {
        let rule = state.config.sync_rules.rule_for(&db, &store);
        let (slots, records): (Vec<usize>, Vec<SyncedRecord>) = records.into_iter().unzip();
        let write = DocWrite::Merge {
            db,
            store,
            records,
            from: Side::Local,
            rule,
        };
        let applied = state
            .store
            .submit(Command::Documents(write), origin.clone())
            .await?;
        let (Applied::New {
            id,
            outcome: Outcome::Documents(DocOutcome::Merged(done)),
            ..
        }
        | Applied::Unchanged {
            id,
            outcome: Outcome::Documents(DocOutcome::Merged(done)),
            ..
        }) = applied
        else {
            continue;
        };
        last_event_id = last_event_id.max(Some(id));
        for (slot, merged) in slots.iter().zip(done.results) {
            results[*slot].status = match merged {
                Merged::Taken | Merged::Combined => "applied",
                Merged::Same => "duplicate",
                Merged::Kept => "superseded",
            };
        }
    }
    // Sales: one command each (idempotent by the sale's id; their movements by theirs),
    // submitted together so that the writer commits them in one group.
    let submitted = sales.into_iter().map(|(slot, sale)| {
        let (state, origin) = (state.clone(), origin.clone());
        async move {
            let command = Command::Sale(SaleCommand::Record(sale));
            (slot, state.store.submit(command, origin).await)
        }
    });
    for (slot, answer) in futures_util::future::join_all(submitted).await {
        match answer {
            Ok(Applied::New { id, .. }) => last_event_id = last_event_id.max(Some(id)),
            Ok(_) => results[slot].status = "duplicate",
            Err(SubmitError::Rejected(why)) => {
                results[slot].refuse(format!("operations[{slot}]: {why}"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Order revisions: one merge each (LWW by version, then time; the number is kept).
    for (slot, order) in orders {
        let command = Command::Order(OrderCommand::Merge(Box::new(order)));
        match state.store.submit(command, origin.clone()).await {
            Ok(Applied::New { id, .. }) => last_event_id = last_event_id.max(Some(id)),
            Ok(_) => results[slot].status = "superseded",
            Err(SubmitError::Rejected(why)) => {
                results[slot].refuse(format!("operations[{slot}]: {why}"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    // Catalog revisions: one merge; a revision that does not win is `superseded` (the
    // hub's is newer or the same).
    if !products.is_empty() {
        let (slots, revisions): (Vec<usize>, Vec<Product>) = products.into_iter().unzip();
        let taken: Vec<(i64, i64)> = match state
            .store
            .submit(
                Command::Product(ProductWrite::Merge(revisions.clone())),
                origin.clone(),
            )
            .await?
        {
            Applied::New {
                id,
                outcome: Outcome::Products(changes),
                ..
            } => {
                last_event_id = last_event_id.max(Some(id));
                changes
                    .iter()
                    .map(|c| (c.after.id, c.after.version))
                    .collect()
            }
            _ => Vec::new(),
        };
        for (slot, revision) in slots.iter().zip(&revisions) {
            if !taken.contains(&(revision.id, revision.version)) {
                results[*slot].status = "superseded";
            }
        }
    }
    let count = |status: &str| results.iter().filter(|r| r.status == status).count();
    let answer = json!({
        "success": true,
        "siteId": site,
        "applied": count("applied"),
        "duplicates": count("duplicate"),
        "superseded": count("superseded"),
        "rejected": count("rejected"),
        "lastEventId": last_event_id,
        "results": results,
    });
    Ok(super::Round {
        site,
        items: results.len() as u64,
        version: None,
        outbox: None,
        answer,
    })
}

/// Raises [`STOCK_NEGATIVE_EVENT`] for the products a push left below zero (`event`: the
/// push's `stock:sync`). The movements stand: this is an alert, not a refusal.
async fn alert_negative(
    state: &AppState,
    p: &Principal,
    site: &str,
    event: u64,
    products: Vec<Value>,
) {
    let mut origin = stocky_store::Origin::system(p.tenant.clone(), site.into(), "sync");
    origin.op_scope = p.op_scope();
    origin.device = p.device.clone();
    let command = Command::Publish {
        event: STOCK_NEGATIVE_EVENT.into(),
        data: json!({"siteId": site, "products": products, "eventId": event, "deviceId": p.device.as_deref()}),
    };
    if let Err(e) = state.store.submit(command, origin).await {
        tracing::warn!(error = %e, site, "could not raise stock:negative");
    }
}

fn text(o: &Map<String, Value>, key: &str, max: usize) -> Result<Option<String>, String> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.len() <= max => Ok(Some(s.clone())),
        Some(_) => Err(format!("{key} must be a string of 1 to {max} bytes")),
    }
}

/// One operation of a push, checked.
fn parse_operation(
    op: &Value,
    site: &str,
    origin_client: &str,
    now: i64,
) -> Result<Operation, String> {
    let Value::Object(o) = op else {
        return Err("must be an object".into());
    };
    let id = text(o, "id", MAX_OP_ID)?.ok_or("id is required (the operation's UUID)")?;
    match o.get("type").and_then(Value::as_str).unwrap_or("movement") {
        "movement" => parse_movement(o, id, site, origin_client, now).map(Operation::Movement),
        "document" => {
            let db = text(o, "db", 64)?.ok_or("db is required for a document")?;
            let store = text(o, "store", 64)?.ok_or("store is required for a document")?;
            check_name("database", &db).map_err(|e| e.0)?;
            check_name("store", &store).map_err(|e| e.0)?;
            if db.starts_with('_') {
                return Err(format!("{db} is reserved"));
            }
            let record = SyncedRecord::from_rendered(o.get("record").unwrap_or(&Value::Null))
                .map_err(|e| e.0)?;
            Ok(Operation::Document { db, store, record })
        }
        "sale" => {
            let sale = o
                .get("sale")
                .ok_or("sale is required for a sale operation")?;
            SaleRecord::from_json(sale, site, now)
                .map(|s| Operation::Sale(Box::new(s)))
                .map_err(|e| format!("{} ({})", e.message, e.code))
        }
        "product" => {
            let product = o
                .get("product")
                .ok_or("product is required for a product operation")?;
            Product::from_json(product)
                .map(|p| Operation::Product(Box::new(p)))
                .map_err(|e| format!("{} ({})", e.message, e.code))
        }
        "order" => {
            let order = o
                .get("order")
                .ok_or("order is required for an order operation")?;
            Order::from_json(order, site)
                .map(|o| Operation::Order(Box::new(o)))
                .map_err(|e| format!("{} ({})", e.message, e.code))
        }
        other => Err(format!(
            "type {other:?} is not an operation type (movement, document, sale, product, order)"
        )),
    }
}

/// A movement: `{"id","productId","delta","kind","reason","clientTime"}`.
fn parse_movement(
    o: &Map<String, Value>,
    id: String,
    site: &str,
    origin_client: &str,
    now: i64,
) -> Result<LedgerEntry, String> {
    let product_id = o
        .get("productId")
        .and_then(Value::as_i64)
        .filter(|p| (1..=MAX_PRODUCT_ID).contains(p))
        .ok_or("productId must be a positive integer")?;
    let delta = o
        .get("delta")
        .and_then(Value::as_i64)
        .filter(|d| *d != 0 && delta_in_range(*d))
        .ok_or_else(|| {
            format!("delta must be a non-zero integer of at most {MAX_AMOUNT} in size")
        })?;
    let kind = text(o, "kind", MAX_KIND)?.unwrap_or_else(|| "sync".into());
    let reason = text(o, "reason", MAX_REASON)?;
    let client_time = match text(o, "clientTime", 40)? {
        Some(at) => Some(parse_iso8601(&at).ok_or("clientTime must be an ISO-8601 timestamp")?),
        None => None,
    };
    let user_id = text(o, "userId", 200)?;
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
        client_time,
        user_id,
    })
}
