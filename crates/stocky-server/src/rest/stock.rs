//! Seed 000's REST API for stock: commands (`POST /api/stock/{update,add,subtract,sync}`),
//! server status, and reads of the current state.
//!
//! Every route acts on the caller's home site, or on the site `?siteId=` names (owners
//! and admins: any site of their tenant; see [`super::site`]).
//!
//! Commands take the same path as WebSocket ones — the writer, then the fan-out — so every
//! WebSocket client sees REST changes live. An `Idempotency-Key` header makes a retried
//! command a no-op that answers like the original.

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::Value;
use stocky_core::api::{self, StockCommandResult, StockListing, StockStatus};
use stocky_core::auth::stock_action;
use stocky_core::stock::{Rejection, StockCommand, StockOp, MAX_PRODUCT_ID};
use stocky_core::time::{iso8601, now_millis};
use stocky_store::{Applied, StockRow};

use super::site::{target_site, SiteQuery};
use super::{json_body, rest_origin};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{doc, ApiRoutes};
use crate::AppState;

pub fn routes() -> ApiRoutes {
    let mut routes = ApiRoutes::new()
        .get(
            "/api/stock",
            list_stock,
            doc("The site's stock and the stream head it reflects")
                .query::<SiteQuery>()
                .ok::<StockListing>(),
        )
        .get(
            "/api/stock/status",
            status,
            doc("Server status: connected clients, last event id, epoch").ok::<StockStatus>(),
        )
        .get(
            "/api/stock/{product_id}",
            one_product,
            doc("One product's stock at the site")
                .query::<SiteQuery>()
                .ok::<api::StockRow>(),
        )
        .get(
            "/api/stock/{product_id}/movements",
            movements,
            doc("The product's ledger at the site, newest first, a page at a time")
                .about("`limit` defaults to 100 (at most 1000); pass the answer's `next` as `before` for the next page.")
                .query::<HistoryQuery>(),
        );
    for op in StockOp::ALL {
        let path = format!("/api/stock/{}", op.kind());
        routes = routes.post(
            &path,
            move |s, e, q, h, b| command(s, e, q, h, b, op),
            doc(match op {
                StockOp::Update => "Set absolute stock levels (seed 000 `stock:update`)",
                StockOp::Add => "Add to stock (seed 000 `stock:add`)",
                StockOp::Subtract => "Subtract from stock; refused when stock would go below zero",
                StockOp::Sync => "Replace stock levels in bulk (seed 000 `stock:sync`)",
            })
            .about("All lines apply or none does. The answer carries the committed event; the count of lines comes under the request's field name.")
            .query::<SiteQuery>()
            .body_schema(std::sync::Arc::new(move |_| op.rest_body_schema()))
            .ok::<StockCommandResult>()
            .errors(&[409, 422])
            .idempotent(),
        );
    }
    routes
}

async fn command(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(at): Query<SiteQuery>,
    headers: HeaderMap,
    request: Request,
    op: StockOp,
) -> Result<Response, ApiError> {
    p.require(stock_action(op))?;
    let site = target_site(&state, &p, at.site_id.as_deref()).await?;
    let body: Value = json_body(request, &state).await?;
    let field = op.rest_field();
    let Value::Object(body) = body else {
        return Err(ApiError::bad_request(
            "invalid_body",
            format!("body must be a JSON object with {field:?}"),
        ));
    };
    let command = StockCommand::parse(op, field, body.get(field))
        .map_err(|e| ApiError::bad_request("invalid_data", e.0))?;
    let lines = command.lines.len();
    let mut origin = rest_origin(&p, &headers)?;
    origin.site = site;
    let body = match state.store.submit(command, origin).await? {
        Applied::New {
            id,
            epoch,
            data,
            sent_to,
            ..
        } => StockCommandResult::render(field, lines, id, &epoch, sent_to, Some(&data)),
        Applied::Duplicate { id, epoch, .. } | Applied::Unchanged { id, epoch, .. } => {
            StockCommandResult::render(field, lines, id, &epoch, 0, None)
        }
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn status(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<StockStatus>, ApiError> {
    let stream = state.tenant_stream(&p.tenant).await?;
    Ok(Json(StockStatus {
        connected_clients: stream.connected(),
        timestamp: iso8601(now_millis()),
        last_event_id: stream.head(),
        epoch: stream.epoch.to_string(),
    }))
}

fn stock_row(row: &StockRow) -> api::StockRow {
    api::StockRow {
        product_id: row.product_id,
        stock: row.on_hand,
        updated_at: iso8601(row.updated_at),
        last_event_id: row.last_event_id,
    }
}

async fn list_stock(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(at): Query<SiteQuery>,
) -> Result<Json<StockListing>, ApiError> {
    let site = target_site(&state, &p, at.site_id.as_deref()).await?;
    let snapshot = state.store.snapshot(&p.tenant, &site).await?;
    let data: Vec<api::StockRow> = snapshot.stock.iter().map(stock_row).collect();
    Ok(Json(StockListing {
        count: data.len(),
        data,
        last_event_id: snapshot.head,
        epoch: snapshot.epoch,
        timestamp: iso8601(now_millis()),
    }))
}

/// `?siteId=&limit=&before=`.
#[derive(serde::Deserialize, schemars::JsonSchema)]
struct HistoryQuery {
    #[serde(rename = "siteId", alias = "sedeId")]
    site_id: Option<String>,
    /// Rows per page (default 100, at most 1000).
    limit: Option<usize>,
    /// The `next` of the previous page: `<eventId>:<movementId>`.
    before: Option<String>,
}

/// `GET /api/stock/{productId}/movements`: the product's ledger at the site, newest first,
/// a page at a time (`limit` default 100, at most 1000; `next` continues).
async fn movements(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(raw): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Value>, ApiError> {
    let product_id = product_id(&raw)?;
    let site = target_site(&state, &p, query.site_id.as_deref()).await?;
    let before = match query.before.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            text.split_once(':')
                .and_then(|(event, id)| {
                    Some(stocky_store::OutboxCursor {
                        event_id: event.parse().ok()?,
                        id: id.to_owned(),
                    })
                })
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_cursor",
                        "before must be the `next` of a previous page (<eventId>:<movementId>)",
                    )
                })?,
        ),
    };
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let (tenant, at) = (p.tenant.to_string(), site.to_string());
    let mut rows = state
        .store
        .sync(move |s| s.product_history(&tenant, &at, product_id, before.as_ref(), limit + 1))
        .await?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = rows
        .last()
        .filter(|_| more)
        .map(|r| format!("{}:{}", r.cursor.event_id, r.cursor.id));
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            let e = &r.entry;
            serde_json::json!({
                "id": e.id, "productId": e.product_id, "siteId": e.site, "delta": e.delta,
                "kind": e.kind, "reason": e.reason, "originClient": e.origin_client,
                "originOp": e.origin_op, "eventId": r.cursor.event_id,
                "serverTime": iso8601(e.server_time),
                "clientTime": e.client_time.map(iso8601), "userId": e.user_id,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "productId": product_id,
        "siteId": &*site,
        "count": data.len(),
        "data": data,
        "next": next,
    })))
}

fn product_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| (1..=MAX_PRODUCT_ID).contains(id))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_product_id",
                format!("productId must be a positive integer, got {raw:?}"),
            )
        })
}

async fn one_product(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(raw): Path<String>,
    Query(at): Query<SiteQuery>,
) -> Result<Json<api::StockRow>, ApiError> {
    let product_id = product_id(&raw)?;
    let site = target_site(&state, &p, at.site_id.as_deref()).await?;
    match state.store.stock_of(&p.tenant, &site, product_id).await? {
        Some(row) => Ok(Json(stock_row(&row))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "product_not_found",
            Rejection::UnknownProduct { product_id }.to_string(),
        )),
    }
}
