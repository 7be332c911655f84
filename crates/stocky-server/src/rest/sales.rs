//! Sales (seeds 001 and 003): `POST /api/sales`, reads with filters, seed 001's payment
//! confirmation, refunds and voids.
//!
//! A sale and its stock movements are one writer command (one transaction); the sale's
//! UUID makes a retry a `duplicate`, never a second sale. Every change is announced to the
//! tenant's owners and admins only (`SALE_CREATED` on creation and on a confirmed payment,
//! `SALE_UPDATED` on a refund, `SALE_CANCELLED` on a void) and the stock levels to the
//! site's registers (`stock:sync`). Roles: selling, confirming payments and refunds need
//! `Sell` (cashiers may), voids `VoidSale` (managers and up). A sale of a site the caller
//! does not see is `404`, as if it did not exist.

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use stocky_core::auth::Action;
use stocky_core::sales::{is_uuid, NewSale, RefundRequest, SaleCommand, SaleInvalid, SaleStatus};
use stocky_core::time::{now_millis, parse_iso8601};
use stocky_store::sales::{SaleFilter, StoredSale};
use stocky_store::{Applied, Command, Outcome};

use super::site::{listing_site, target_site};
use super::{json_body, rest_origin};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{doc, ApiRoutes};
use crate::AppState;

/// Most sales one page lists.
pub const MAX_PAGE: usize = 500;

pub fn routes() -> ApiRoutes {
    let refund_doc = || {
        doc("Refund lines of a sale; their stock comes back")
            .object_body()
            .errors(&[409, 422])
            .idempotent()
    };
    let void_doc = || {
        doc("Void (cancel) a sale; all its stock comes back")
            .optional_object_body()
            .errors(&[409, 422])
            .idempotent()
    };
    ApiRoutes::new()
        .post(
            "/api/sales",
            create,
            doc("Record a sale (seed 001): lines, payments; its stock goes out in the same commit")
                .about("The sale's `id` (a UUID made by the register) makes a retry a no-op: `201` the first time, `200` with the stored sale after.")
                .body_schema(std::sync::Arc::new(|_| NewSale::schema()))
                .created_object()
                .or_status(200)
                .errors(&[409, 422])
                .idempotent(),
        )
        .get(
            "/api/sales",
            list,
            doc("Sales, newest first, filtered by site, day, device, status").query::<ListQuery>(),
        )
        .get(
            "/api/sales/review",
            review,
            doc("Sales that need review (taken below zero stock, price overrides)")
                .query::<ListQuery>(),
        )
        .get("/api/sales/{id}", one, doc("One sale"))
        .post(
            "/api/sales/{id}/payments/{payment}/confirm",
            confirm_payment,
            doc("Confirm a pending payment of a sale")
                .errors(&[409, 422])
                .idempotent(),
        )
        .post("/api/sales/{id}/refunds", refund, refund_doc())
        .post("/api/sales/{id}/refund", refund, refund_doc())
        .post("/api/sales/{id}/void", void, void_doc())
        .post("/api/sales/{id}/cancel", void, void_doc())
}

fn invalid(e: SaleInvalid) -> ApiError {
    ApiError::bad_request(e.code, e.message)
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("sale {id} not found"),
    )
}

/// The sale's JSON and its event id after a command.
fn answer(applied: Applied, sale: Option<StoredSale>) -> (bool, u64, Value) {
    match applied {
        Applied::New { id, outcome, .. } => {
            let body = match outcome {
                Outcome::Sale(done) => {
                    let mut v = done.to_json();
                    v["eventId"] = Value::from(id);
                    v
                }
                _ => Value::Null,
            };
            (true, id, body)
        }
        Applied::Duplicate { id, .. } | Applied::Unchanged { id, .. } => {
            (false, id, sale.map_or(Value::Null, |s| s.to_json()))
        }
    }
}

async fn stored(state: &AppState, p: &Principal, id: &str) -> Result<StoredSale, ApiError> {
    if !is_uuid(id) {
        return Err(not_found(id));
    }
    let (tenant, key) = (p.tenant.to_string(), id.to_ascii_lowercase());
    let sale = state.store.read(move |r| r.sale(&tenant, &key)).await?;
    sale.filter(|s| p.sees_site(&s.record.site_id))
        .ok_or_else(|| not_found(id))
}

async fn create(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    p.require(Action::Sell)?;
    let body: Value = json_body(request, &state).await?;
    let Value::Object(o) = &body else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "body must be a JSON object: {id, lines, payments, …}",
        ));
    };
    let named = o
        .get("siteId")
        .or(o.get("sedeId"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let site = target_site(&state, &p, named.as_deref()).await?;
    let mut sale = NewSale::parse(o).map_err(invalid)?;
    let mut origin = rest_origin(&p, &headers)?;
    if sale.device_id.is_none() {
        sale.device_id = origin.device.as_deref().map(str::to_owned);
    }
    let id = sale
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    sale.id = Some(id.clone());
    let record = sale.into_record(&site, Some(&p.actor()), now_millis());
    origin.site = site;
    let applied = state
        .store
        .submit(Command::Sale(SaleCommand::Create(record)), origin)
        .await?;
    let existing = match &applied {
        Applied::New { .. } => None,
        _ => stored(&state, &p, &id).await.ok(),
    };
    let (created, event_id, sale) = answer(applied, existing);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = json!({
        "success": true,
        "status": if created { "created" } else { "duplicate" },
        "sale": sale,
        "eventId": event_id,
    });
    Ok((status, Json(body)).into_response())
}

/// `GET /api/sales` query: `siteId`, `day` (YYYY-MM-DD, UTC), `deviceId`, `status`,
/// `needsReview`, `limit`, `before` (the `next` of the previous page).
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    #[serde(alias = "sedeId", alias = "site")]
    site_id: Option<String>,
    #[serde(alias = "date")]
    day: Option<String>,
    #[serde(alias = "device", alias = "registerId")]
    device_id: Option<String>,
    status: Option<String>,
    #[serde(default)]
    needs_review: bool,
    limit: Option<usize>,
    before: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    list_sales(state, p, q).await
}

async fn review(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(mut q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    q.needs_review = true;
    list_sales(state, p, q).await
}

async fn list_sales(state: AppState, p: Principal, q: ListQuery) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    // Owners and admins see every site unless they name one; others their home site.
    let site = listing_site(&state, &p, q.site_id.as_deref()).await?;
    if let Some(day) = &q.day {
        let valid = day.len() == 10 && parse_iso8601(&format!("{day}T00:00:00.000Z")).is_some();
        if !valid {
            return Err(ApiError::bad_request(
                "invalid_day",
                format!("day must be a date as YYYY-MM-DD, got {day:?}"),
            ));
        }
    }
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(SaleStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_status",
                format!(
                    "status must be one of pending, completed, partially_refunded, refunded, cancelled; got {s:?}"
                ),
            )
        })?),
    };
    let before = match q.before.as_deref() {
        None => None,
        Some(cursor) => Some(
            cursor
                .split_once('_')
                .and_then(|(t, id)| Some((t.parse::<i64>().ok()?, id.to_owned())))
                .ok_or_else(|| {
                    ApiError::bad_request("invalid_cursor", "before must be a previous page's next")
                })?,
        ),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let filter = SaleFilter {
        site,
        day: q.day,
        device: q.device_id,
        status,
        needs_review: q.needs_review,
        before,
        limit,
    };
    let tenant = p.tenant.to_string();
    let sales = state.store.read(move |r| r.sales(&tenant, &filter)).await?;
    let next = (sales.len() == limit)
        .then(|| sales.last())
        .flatten()
        .map(|s| format!("{}_{}", s.record.server_time, s.record.id));
    let data: Vec<Value> = sales.iter().map(StoredSale::to_json).collect();
    Ok(Json(json!({
        "success": true,
        "count": data.len(),
        "data": data,
        "next": next,
    })))
}

async fn one(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let sale = stored(&state, &p, &id).await?;
    Ok(Json(json!({"success": true, "sale": sale.to_json()})))
}

/// Runs a command on an existing sale the caller sees, and answers with the sale.
async fn change(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    sale: StoredSale,
    command: SaleCommand,
) -> Result<Json<Value>, ApiError> {
    let id = sale.record.id.clone();
    let mut origin = rest_origin(p, headers)?;
    origin.site = sale.record.site_id.as_str().into();
    let applied = state.store.submit(Command::Sale(command), origin).await?;
    let fresh = match &applied {
        Applied::New { .. } => None,
        _ => Some(stored(state, p, &id).await?),
    };
    let (changed, event_id, sale) = answer(applied, fresh);
    Ok(Json(json!({
        "success": true,
        "status": if changed { "applied" } else { "unchanged" },
        "sale": sale,
        "eventId": event_id,
    })))
}

async fn confirm_payment(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((id, payment)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Sell)?;
    let sale = stored(&state, &p, &id).await?;
    let command = SaleCommand::ConfirmPayment {
        sale: sale.record.id.clone(),
        payment,
        at: now_millis(),
    };
    change(&state, &p, &headers, sale, command).await
}

async fn refund(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Sell)?;
    let body: Value = json_body(request, &state).await?;
    let Value::Object(o) = &body else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "body must be a JSON object: {id?, lines?, reason?}",
        ));
    };
    let mut refund = RefundRequest::parse(o).map_err(invalid)?;
    refund
        .id
        .get_or_insert_with(|| uuid::Uuid::new_v4().to_string());
    let sale = stored(&state, &p, &id).await?;
    let command = SaleCommand::Refund {
        sale: sale.record.id.clone(),
        refund,
        user: Some(p.actor().to_string()),
        at: now_millis(),
    };
    change(&state, &p, &headers, sale, command).await
}

async fn void(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::VoidSale)?;
    let body: Value = super::optional_json_body(request, &state).await?;
    let reason = match body.get("reason") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= stocky_core::sales::MAX_TEXT => Some(s.clone()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_field",
                "reason must be a string of at most 500 bytes",
            ))
        }
    };
    let sale = stored(&state, &p, &id).await?;
    let command = SaleCommand::Void {
        sale: sale.record.id.clone(),
        reason,
        user: Some(p.actor().to_string()),
        at: now_millis(),
    };
    change(&state, &p, &headers, sale, command).await
}
