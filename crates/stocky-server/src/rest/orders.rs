//! Seed 004 on the shared gateway: orders (`/api/orders`), a site's menu and configuration
//! (`/api/sync/menu`, `/api/sync/config`), the order hand-over to a store
//! (`/api/sync/orders/pending`, `/api/sync/orders/confirm`) and customers
//! (`/api/customers/{id}`, `/api/sync/customers/changes`, `/api/sync/customers/bulk`).
//!
//! These static routes take precedence over seed 000's `/api/sync/:db/:store` for the
//! names they use (`menu`, `config`, `orders/pending`, `orders/confirm`,
//! `customers/changes`, `customers/bulk`). The site is the caller's home site (a store
//! node's device credential is bound to its site) or `?siteId=` / `siteId` for owners
//! and admins. Customers are per tenant; this tier's writes are stamped `REMOTE` at the
//! hub and `LOCAL` at a store node.

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use stocky_core::auth::Action;
use stocky_core::customers::Customer;
use stocky_core::orders::{NewOrder, Order, OrderCommand, OrderStatus};
use stocky_core::sync_rules::Side;
use stocky_core::time::{iso8601, now_millis, parse_iso8601};
use stocky_store::orders::{OrderFilter, SiteDataKind};
use stocky_store::{Applied, Command, Outcome};

use super::documents::precondition;
use super::site::{listing_site, target_site, SiteQuery};
use super::{json_body, rest_origin};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{doc, ApiRoutes};
use crate::AppState;

/// Most orders or customers one answer lists.
pub const MAX_PAGE: usize = 1000;
/// Most order updates or customers one request carries.
pub const MAX_BATCH: usize = 500;

pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .post(
            "/api/orders",
            create,
            doc("Place an order (seed 002): it gets the site's daily number")
                .object_body()
                .created_object()
                .or_status(200)
                .errors(&[409, 422])
                .idempotent(),
        )
        .get(
            "/api/orders",
            list,
            doc("Orders, filtered by site, status, day").query::<OrderQuery>(),
        )
        .get("/api/orders/{id}", one, doc("One order"))
        .patch(
            "/api/orders/{id}",
            update,
            doc("Change an order's status or fields (with `version` for optimistic checks)")
                .object_body()
                .errors(&[409, 422])
                .idempotent(),
        )
        .get(
            "/api/sync/orders/pending",
            pending,
            doc("Orders a store has not confirmed yet (seed 004)"),
        )
        .post(
            "/api/sync/orders/confirm",
            confirm,
            doc("A store confirms the orders it received (seed 004)")
                .object_body()
                .errors(&[422])
                .idempotent(),
        )
        .post(
            "/api/sync/menu",
            push_menu,
            doc("Publish the menu (seed 004)")
                .object_body()
                .errors(&[409, 422])
                .idempotent(),
        )
        .get(
            "/api/sync/menu",
            menu,
            doc("The published menu (seed 004)").errors(&[404]),
        )
        .post(
            "/api/sync/config",
            push_config,
            doc("Publish the store configuration (seed 004)")
                .object_body()
                .errors(&[409, 422])
                .idempotent(),
        )
        .get(
            "/api/sync/config",
            config,
            doc("The published store configuration (seed 004)").errors(&[404]),
        )
        .get(
            "/api/customers/{id}",
            customer,
            doc("One customer with addresses"),
        )
        .patch(
            "/api/customers/{id}",
            patch_customer,
            doc("Change a customer's fields (merged per field by time)")
                .object_body()
                .errors(&[409, 422])
                .idempotent(),
        )
        .get(
            "/api/sync/customers/changes",
            customer_changes,
            doc("Customers changed after `since` or a log cursor `after`, oldest first (seed 004)")
                .query::<ChangesQuery>(),
        )
        .post(
            "/api/sync/customers/bulk",
            customers_bulk,
            doc("Upsert customers in bulk, each merged per field (seed 004)")
                .object_body()
                .errors(&[409, 422])
                .idempotent(),
        )
}

/// This tier's side in seed 004's terms.
fn side(state: &AppState) -> Side {
    if state.config.users_from_upstream {
        Side::Local
    } else {
        Side::Remote
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, message)
}

fn object(body: Value, what: &str) -> Result<serde_json::Map<String, Value>, ApiError> {
    match body {
        Value::Object(o) => Ok(o),
        _ => Err(invalid(
            "invalid_body",
            format!("body must be a JSON object: {what}"),
        )),
    }
}

async fn fetch(state: &AppState, p: &Principal, id: &str) -> Result<Order, ApiError> {
    let (tenant, key) = (p.tenant.to_string(), id.to_ascii_lowercase());
    let found = state.store.read(move |r| r.order(&tenant, &key)).await?;
    found.filter(|o| p.sees_site(&o.site_id)).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("order {id} not found"),
        )
    })
}

/// `POST /api/orders`: an online channel's order (idempotent by `id`, and by `channel` +
/// `externalId`).
async fn create(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(at): Query<SiteQuery>,
    headers: HeaderMap,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    p.require(Action::Sell)?;
    let body = object(
        json_body(request, &state).await?,
        "{lines, customer, address, …}",
    )?;
    let named = match body.get("siteId").or(body.get("sedeId")) {
        None | Some(Value::Null) => at.site_id,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("invalid_site", "siteId must be a string")),
    };
    let site = target_site(&state, &p, named.as_deref()).await?;
    let new = NewOrder::parse(&body).map_err(|e| invalid(e.code, e.message))?;
    let mut order = new.into_order(&site, now_millis());
    if order.id.is_empty() {
        order.id = uuid::Uuid::new_v4().to_string();
    }
    let mut origin = rest_origin(&p, &headers)?;
    origin.site = site.clone();
    let applied = state
        .store
        .submit(
            Command::Order(OrderCommand::Create(Box::new(order.clone()))),
            origin,
        )
        .await?;
    if let Applied::New {
        outcome: Outcome::Order(done),
        id,
        ..
    } = applied
    {
        return Ok((
            StatusCode::CREATED,
            Json(json!({"success": true, "order": done.after.to_json(), "eventId": id})),
        ));
    }
    // A retry with the same Idempotency-Key: the original event's order, as committed.
    if let Applied::Duplicate {
        original: Some(original),
        ..
    } = &applied
    {
        let order =
            serde_json::value::RawValue::from_string(original.data.clone()).map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            })?;
        return Ok((
            StatusCode::OK,
            Json(json!({"success": true, "duplicate": true, "order": order})),
        ));
    }
    // A repeat: the order as stored (by id, else by the channel's id).
    let (tenant, o) = (p.tenant.to_string(), order);
    let existing = state
        .store
        .read(move |r| {
            Ok(match r.order(&tenant, &o.id)? {
                Some(found) => Some(found),
                None => match (&o.channel, &o.external_id) {
                    (Some(c), Some(e)) => r.order_by_external(&tenant, &o.site_id, c, e)?,
                    _ => None,
                },
            })
        })
        .await?;
    let existing = existing
        .filter(|o| p.sees_site(&o.site_id))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "order_id_conflict",
                "this order id is taken",
            )
        })?;
    Ok((
        StatusCode::OK,
        Json(json!({"success": true, "duplicate": true, "order": existing.to_json()})),
    ))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct OrderQuery {
    #[serde(alias = "sedeId")]
    site_id: Option<String>,
    status: Option<String>,
    day: Option<String>,
    #[serde(default)]
    pending: bool,
    limit: Option<usize>,
}

async fn list_orders(
    state: &AppState,
    p: &Principal,
    q: OrderQuery,
) -> Result<Vec<Order>, ApiError> {
    let site = listing_site(state, p, q.site_id.as_deref()).await?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(OrderStatus::parse(s).ok_or_else(|| {
            invalid(
                "invalid_status",
                format!("status must be pending, accepted, preparing, ready, delivered or cancelled; got {s:?}"),
            )
        })?),
    };
    if let Some(day) = &q.day {
        if day.len() != 10 || parse_iso8601(&format!("{day}T00:00:00.000Z")).is_none() {
            return Err(invalid(
                "invalid_day",
                format!("day must be YYYY-MM-DD, got {day:?}"),
            ));
        }
    }
    let filter = OrderFilter {
        site,
        status,
        day: q.day,
        pending: q.pending,
        limit: q.limit.unwrap_or(200).clamp(1, MAX_PAGE),
    };
    let tenant = p.tenant.to_string();
    Ok(state
        .store
        .read(move |r| r.orders(&tenant, &filter))
        .await?)
}

async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<OrderQuery>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let orders = list_orders(&state, &p, q).await?;
    let data: Vec<Value> = orders.iter().map(Order::to_json).collect();
    Ok(Json(
        json!({"success": true, "count": data.len(), "data": data}),
    ))
}

async fn one(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let order = fetch(&state, &p, &id).await?;
    Ok(Json(json!({"success": true, "order": order.to_json()})))
}

/// `PATCH /api/orders/{id}` `{status?, notes?, version?}` (or `If-Match`): LWW by version.
async fn update(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Sell)?;
    let order = fetch(&state, &p, &id).await?;
    let body = object(json_body(request, &state).await?, "{status, notes}")?;
    let if_version = precondition(&headers, &body)?;
    let status = match body.get("status") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(OrderStatus::parse(s).ok_or_else(|| {
            invalid(
                "invalid_status",
                format!("status {s:?} is not an order status"),
            )
        })?),
        Some(_) => return Err(invalid("invalid_status", "status must be a string")),
    };
    let notes = match body.get("notes") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= 2000 => Some(s.clone()),
        Some(_) => {
            return Err(invalid(
                "invalid_field",
                "notes is a string of at most 2000 bytes",
            ))
        }
    };
    let mut origin = rest_origin(&p, &headers)?;
    origin.site = order.site_id.as_str().into();
    let command = OrderCommand::Update {
        id: order.id.clone(),
        status,
        notes,
        if_version,
    };
    let applied = state.store.submit(Command::Order(command), origin).await?;
    let after = match applied {
        Applied::New {
            outcome: Outcome::Order(done),
            ..
        } => done.after,
        _ => fetch(&state, &p, &id).await?,
    };
    Ok(Json(json!({"success": true, "order": after.to_json()})))
}

/// Seed 004 `GET /api/sync/orders/pending`: the site's orders without a daily number,
/// oldest first, as `{"data": […]}`.
async fn pending(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(at): Query<SiteQuery>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let site = target_site(&state, &p, at.site_id.as_deref()).await?;
    let q = OrderQuery {
        site_id: Some(site.to_string()),
        pending: true,
        limit: Some(MAX_PAGE),
        ..OrderQuery::default()
    };
    let orders = list_orders(&state, &p, q).await?;
    let data: Vec<Value> = orders.iter().map(Order::to_json).collect();
    Ok(Json(
        json!({"success": true, "count": data.len(), "data": data}),
    ))
}

/// Seed 004 `POST /api/sync/orders/confirm` `{"orderUpdates":[{"orderId","dailyNumber"}]}`:
/// the store's numbers. Per update: `confirmed`, `unchanged` (the same number again), or
/// `rejected` with a reason (another number, an unknown order, another site's order).
async fn confirm(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    // Numbers are the store's: its node's key (a manager key), managers and up.
    p.require(Action::SetStock)?;
    let body = object(
        json_body(request, &state).await?,
        "{orderUpdates: [{orderId, dailyNumber}]}",
    )?;
    let Some(Value::Array(updates)) = body.get("orderUpdates") else {
        return Err(invalid(
            "invalid_body",
            "orderUpdates must be an array of {orderId, dailyNumber}",
        ));
    };
    if updates.len() > MAX_BATCH {
        return Err(invalid(
            "invalid_body",
            format!("at most {MAX_BATCH} order updates per request"),
        ));
    }
    let mut results = Vec::with_capacity(updates.len());
    for (n, update) in updates.iter().enumerate() {
        let id = update
            .get("orderId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let number = update
            .get("dailyNumber")
            .and_then(Value::as_i64)
            .filter(|d| *d >= 1);
        let (Some(number), false) = (number, id.is_empty()) else {
            results.push(json!({"orderId": id, "status": "rejected",
                "reason": format!("orderUpdates[{n}]: orderId and a dailyNumber ≥ 1 are required")}));
            continue;
        };
        let order = match fetch(&state, &p, &id).await {
            Ok(order) => order,
            Err(e) => {
                results.push(json!({"orderId": id, "status": "rejected", "reason": e.message}));
                continue;
            }
        };
        let mut origin = rest_origin(&p, &headers)?;
        origin.site = order.site_id.as_str().into();
        // Marked as a plain write (not the store's device): a hub change to the order made
        // before the confirmation still comes down to the store with it.
        origin.op_id = None;
        let command = OrderCommand::Confirm {
            id: order.id.clone(),
            daily_number: number,
            business_day: update
                .get("businessDay")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        let status = match state.store.submit(Command::Order(command), origin).await {
            Ok(Applied::New { .. }) => {
                json!({"orderId": id, "status": "confirmed", "dailyNumber": number})
            }
            Ok(_) => json!({"orderId": id, "status": "unchanged", "dailyNumber": number}),
            Err(stocky_store::SubmitError::Rejected(why)) => {
                json!({"orderId": id, "status": "rejected", "reason": why.to_string()})
            }
            Err(e) => return Err(e.into()),
        };
        results.push(status);
    }
    let confirmed = results
        .iter()
        .filter(|r| r["status"] == "confirmed")
        .count();
    Ok(Json(
        json!({"success": true, "confirmed": confirmed, "results": results}),
    ))
}

async fn put_site_data(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    site: Option<&str>,
    kind: SiteDataKind,
    body: Value,
) -> Result<Json<Value>, ApiError> {
    let site = target_site(state, p, site).await?;
    let mut origin = rest_origin(p, headers)?;
    origin.site = site.clone();
    let applied = state
        .store
        .submit(Command::SiteData { kind, body }, origin)
        .await?;
    let (changed, version) = match &applied {
        Applied::New {
            outcome: Outcome::SiteData(v),
            ..
        } => (true, Some(*v)),
        _ => (false, None),
    };
    Ok(Json(json!({
        "success": true,
        "siteId": &*site,
        "changed": changed,
        "version": version,
        "eventId": applied.id(),
    })))
}

/// Seed 004 `POST /api/sync/menu` `{"categories":[…]}`: the store's menu, replacing the
/// site's copy atomically.
async fn push_menu(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(at): Query<SiteQuery>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::EditCatalog)?;
    let body = object(json_body(request, &state).await?, "{categories: […]}")?;
    if !matches!(body.get("categories"), Some(Value::Array(_))) {
        return Err(invalid("invalid_menu", "categories must be an array"));
    }
    put_site_data(
        &state,
        &p,
        &headers,
        at.site_id.as_deref(),
        SiteDataKind::Menu,
        Value::Object(body),
    )
    .await
}

/// Seed 004 `POST /api/sync/config`: RestaurantConfig, BusinessHours (and the business
/// clock: `timezone` as a UTC offset, `businessDayStart`).
async fn push_config(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(at): Query<SiteQuery>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::EditCatalog)?;
    let body = object(
        json_body(request, &state).await?,
        "{restaurantConfig, businessHours}",
    )?;
    put_site_data(
        &state,
        &p,
        &headers,
        at.site_id.as_deref(),
        SiteDataKind::Config,
        Value::Object(body),
    )
    .await
}

async fn get_site_data(
    state: &AppState,
    p: &Principal,
    site: Option<&str>,
    kind: SiteDataKind,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let site = target_site(state, p, site).await?;
    let (tenant, at) = (p.tenant.to_string(), site.to_string());
    let data = state
        .store
        .read(move |r| r.site_data(&tenant, &at, kind))
        .await?;
    let Some((body, version, updated_at)) = data else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("site {site:?} has no {} yet", kind.as_str()),
        ));
    };
    let mut answer = json!({"success": true, "siteId": &*site, "version": version,
                            "updatedAt": iso8601(updated_at)});
    match (kind, body) {
        (SiteDataKind::Menu, Value::Object(o)) => {
            answer["categories"] = o.get("categories").cloned().unwrap_or(Value::Null)
        }
        (_, body) => answer["data"] = body,
    }
    Ok(Json(answer))
}

async fn menu(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(at): Query<SiteQuery>,
) -> Result<Json<Value>, ApiError> {
    get_site_data(&state, &p, at.site_id.as_deref(), SiteDataKind::Menu).await
}

async fn config(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(at): Query<SiteQuery>,
) -> Result<Json<Value>, ApiError> {
    get_site_data(&state, &p, at.site_id.as_deref(), SiteDataKind::Config).await
}

async fn customer(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let (tenant, key) = (p.tenant.to_string(), id.clone());
    let found = state.store.read(move |r| r.customer(&tenant, &key)).await?;
    let customer = found.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("customer {id} not found"),
        )
    })?;
    Ok(Json(
        json!({"success": true, "customer": customer.to_json()}),
    ))
}

/// Merges customers written on this tier (or sent by the other), answering with those
/// that changed.
async fn merge(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    customers: Vec<Customer>,
) -> Result<Vec<Customer>, ApiError> {
    let mut origin = rest_origin(p, headers)?;
    origin.op_id = None;
    if p.device.is_some() {
        // A store node's writes are marked as its, so its changes feed leaves them out.
        origin.client_id = super::sync::pusher(p).into();
    }
    match state
        .store
        .submit(Command::Customers(customers), origin)
        .await?
    {
        Applied::New {
            outcome: Outcome::Customers(changed),
            ..
        }
        | Applied::Unchanged {
            outcome: Outcome::Customers(changed),
            ..
        } => Ok(changed),
        _ => Ok(Vec::new()),
    }
}

/// `PATCH /api/customers/{id}`: this tier's edit, stamped with its side.
async fn patch_customer(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::WriteDocuments)?;
    let mut body = object(json_body(request, &state).await?, "the fields to change")?;
    body.insert("id".into(), json!(id));
    body.remove("sync");
    body.remove("updatedAt");
    let side = side(&state);
    body.insert(
        "modifiedBy".into(),
        json!(if side == Side::Local {
            "LOCAL"
        } else {
            "REMOTE"
        }),
    );
    let write = Customer::from_json(&Value::Object(body), side, now_millis())
        .map_err(|e| invalid(e.code, e.message))?;
    merge(&state, &p, &headers, vec![write]).await?;
    let (tenant, key) = (p.tenant.to_string(), id.clone());
    let now = state.store.read(move |r| r.customer(&tenant, &key)).await?;
    Ok(Json(
        json!({"success": true, "customer": now.map(|c| c.to_json())}),
    ))
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
struct ChangesQuery {
    /// ISO 8601 or milliseconds since the epoch (seed 004); absent: everything.
    since: Option<String>,
    /// A log position `<eventId>:<customerId>` from a previous answer's `cursor`: changes
    /// in the order they were committed (what Stocky's edges use).
    after: Option<String>,
    limit: Option<usize>,
}

/// Seed 004 `GET /api/sync/customers/changes?since=`: customers (with their addresses)
/// changed after `since`, oldest first; `timestamp` is the `since` of the next call. With
/// `?after=<cursor>` the changes come in log order instead, with the next `cursor`. A
/// store's own pushes come back too: merging them again changes nothing.
async fn customer_changes(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ChangesQuery>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let tenant = p.tenant.to_string();
    if let Some(after) = q.after.filter(|a| !a.is_empty()) {
        let (event, id) = after
            .split_once(':')
            .and_then(|(e, id)| Some((e.parse::<u64>().ok()?, id.to_owned())))
            .ok_or_else(|| invalid("invalid_cursor", "after must be a previous answer's cursor"))?;
        let changes = state
            .store
            .read(move |r| r.customers_after(&tenant, (event, &id), limit))
            .await?;
        let cursor = changes
            .last()
            .map_or(after, |((e, id), _)| format!("{e}:{id}"));
        let data: Vec<Value> = changes.iter().map(|(_, c)| c.to_json()).collect();
        return Ok(Json(json!({
            "success": true, "count": data.len(), "data": data,
            "hasMore": data.len() == limit, "cursor": cursor,
        })));
    }
    let since = match q
        .since
        .as_deref()
        .filter(|s| !s.is_empty() && *s != "null" && *s != "undefined")
    {
        None => None,
        Some(s) => Some(
            s.parse::<i64>()
                .ok()
                .or_else(|| parse_iso8601(s))
                .ok_or_else(|| {
                    invalid(
                        "invalid_since",
                        "since must be an ISO-8601 time or milliseconds since the epoch",
                    )
                })?,
        ),
    };
    let from = since.unwrap_or(i64::MIN);
    let customers = state
        .store
        .read(move |r| r.customers_since(&tenant, from, None, limit))
        .await?;
    // The next `since`: the last change handed out, else the one asked with.
    let next = customers.last().map(Customer::updated_at).or(since);
    let data: Vec<Value> = customers.iter().map(Customer::to_json).collect();
    Ok(Json(json!({
        "success": true,
        "count": data.len(),
        "data": data,
        "hasMore": data.len() == limit,
        "timestamp": next.map(iso8601),
        "since": next,
    })))
}

/// Seed 004 `POST /api/sync/customers/bulk` `{"customers":[…]}` (or an array): customers
/// from the other side (`modifiedBy`, by default the store's: LOCAL at the hub), merged
/// field by field.
async fn customers_bulk(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::WriteDocuments)?;
    let body: Value = json_body(request, &state).await?;
    let list = match &body {
        Value::Array(list) => list,
        Value::Object(o) => match o.get("customers").or(o.get("data")) {
            Some(Value::Array(list)) => list,
            _ => return Err(invalid("invalid_body", "customers must be an array")),
        },
        _ => return Err(invalid("invalid_body", "body must be {customers: […]}")),
    };
    if list.len() > MAX_BATCH {
        return Err(invalid(
            "invalid_body",
            format!("at most {MAX_BATCH} customers per request"),
        ));
    }
    let other_side = match side(&state) {
        Side::Local => Side::Remote,
        Side::Remote => Side::Local,
    };
    let now = now_millis();
    let customers = list
        .iter()
        .enumerate()
        .map(|(n, c)| {
            Customer::from_json(c, other_side, now)
                .map_err(|e| invalid(e.code, format!("customers[{n}]: {}", e.message)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let received = customers.len();
    let changed = merge(&state, &p, &headers, customers).await?;
    Ok(Json(
        json!({"success": true, "received": received, "updated": changed.len()}),
    ))
}
