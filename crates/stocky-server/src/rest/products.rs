//! The product catalog (seed 003 §5.2): `/api/products` CRUD with optimistic concurrency
//! (`If-Match` or the body's `version`: a stale write is `409 version_conflict`), search by
//! SKU, barcode or name, and paging by id.
//!
//! Products are tenant-wide master data keyed by seed 000's numeric `productId` (the stock
//! key); every change is an event (`product:created|updated|deleted`) that every
//! connection of the tenant may receive. Reading needs `Read`; writing `EditCatalog`
//! (owners, admins, managers — not cashiers).

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use stocky_core::auth::Action;
use stocky_core::catalog::{self, ProductFields, ProductWrite};
use stocky_core::stock::ProductId;
use stocky_store::catalog::ProductFilter;
use stocky_store::{Applied, Command, Outcome};

use super::documents::precondition;
use super::site::{target_site, SiteQuery};
use super::{json_body, rest_origin};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{doc, ApiRoutes};
use crate::AppState;

/// Most products one page lists.
pub const MAX_PAGE: usize = 1000;

pub fn routes() -> ApiRoutes {
    let product = "/api/products/{id}";
    ApiRoutes::new()
        .get(
            "/api/products",
            list,
            doc("The catalog: search by SKU, barcode, text, category; a page at a time")
                .query::<ListQuery>(),
        )
        .post(
            "/api/products",
            create,
            doc("Add a product to the catalog (managers and up)")
                .body_schema(std::sync::Arc::new(|_| ProductFields::schema(true)))
                .created_object()
                .or_status(200)
                .errors(&[409, 422])
                .idempotent(),
        )
        .get(product, one, doc("One product"))
        .put(
            product,
            replace,
            doc("Replace a product's fields")
                .body_schema(std::sync::Arc::new(|_| ProductFields::schema(true)))
                .errors(&[409, 422])
                .idempotent(),
        )
        .patch(
            product,
            patch,
            doc("Change some of a product's fields")
                .body_schema(std::sync::Arc::new(|_| ProductFields::schema(false)))
                .errors(&[409, 422])
                .idempotent(),
        )
        .delete(
            product,
            delete,
            doc("Delete a product (kept as a tombstone that syncs)")
                .errors(&[409])
                .idempotent(),
        )
}

fn product_id(text: &str) -> Result<ProductId, ApiError> {
    catalog::product_id(Some(&Value::String(text.to_owned())))
        .map_err(|e| ApiError::bad_request(e.code, e.message))
}

fn object(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Object(o) => Ok(o),
        _ => Err(ApiError::bad_request(
            "invalid_body",
            "body must be a JSON object: {sku, name, category, price, cost, barcode, metadata}",
        )),
    }
}

/// Runs a catalog write; answers with the product as it stands after it.
async fn write(
    state: &AppState,
    p: &Principal,
    headers: &HeaderMap,
    write: ProductWrite,
    id: Option<ProductId>,
) -> Result<(bool, Value), ApiError> {
    let origin = rest_origin(p, headers)?;
    let applied = state.store.submit(Command::Product(write), origin).await?;
    match applied {
        Applied::New {
            id: event_id,
            outcome: Outcome::Products(changes),
            ..
        } => {
            let product = changes.first().map_or(Value::Null, |c| c.after.to_json());
            Ok((
                true,
                json!({"success": true, "product": product, "eventId": event_id}),
            ))
        }
        Applied::New { id: event_id, .. }
        | Applied::Duplicate { id: event_id, .. }
        | Applied::Unchanged { id: event_id, .. } => {
            let product = match id {
                Some(id) => {
                    let tenant = p.tenant.to_string();
                    state
                        .store
                        .read(move |r| r.product(&tenant, id))
                        .await?
                        .map(|p| p.to_json())
                }
                None => None,
            };
            Ok((
                false,
                json!({"success": true, "product": product, "eventId": event_id, "unchanged": true}),
            ))
        }
    }
}

async fn create(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    p.require(Action::EditCatalog)?;
    let body = object(json_body(request, &state).await?)?;
    let id = match body.get("id").or(body.get("productId")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            catalog::product_id(Some(v)).map_err(|e| ApiError::bad_request(e.code, e.message))?,
        ),
    };
    let fields =
        ProductFields::parse(&body, None).map_err(|e| ApiError::bad_request(e.code, e.message))?;
    let command = ProductWrite::Put {
        id,
        fields,
        if_version: None,
        create_only: true,
    };
    let (created, body) = write(&state, &p, &headers, command, id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)).into_response())
}

async fn replace(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::EditCatalog)?;
    let id = product_id(&id)?;
    let body = object(json_body(request, &state).await?)?;
    let if_version = precondition(&headers, &body)?;
    let fields =
        ProductFields::parse(&body, None).map_err(|e| ApiError::bad_request(e.code, e.message))?;
    let command = ProductWrite::Put {
        id: Some(id),
        fields,
        if_version,
        create_only: false,
    };
    Ok(Json(
        write(&state, &p, &headers, command, Some(id)).await?.1,
    ))
}

async fn patch(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::EditCatalog)?;
    let id = product_id(&id)?;
    let mut body = object(json_body(request, &state).await?)?;
    let if_version = precondition(&headers, &body)?;
    for server_owned in ["id", "productId", "version", "createdAt", "updatedAt"] {
        body.remove(server_owned);
    }
    // Checked now for a clear 400 (against an empty base); the writer checks again
    // against the stored product.
    let probe = ProductFields {
        name: "probe".into(),
        ..ProductFields::default()
    };
    ProductFields::parse(&body, Some(&probe))
        .map_err(|e| ApiError::bad_request(e.code, e.message))?;
    let command = ProductWrite::Patch {
        id,
        fields: body,
        if_version,
    };
    Ok(Json(
        write(&state, &p, &headers, command, Some(id)).await?.1,
    ))
}

async fn delete(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::EditCatalog)?;
    let id = product_id(&id)?;
    let if_version = match headers.get("if-match") {
        Some(_) => precondition(&headers, &Map::new())?,
        None => None,
    };
    let command = ProductWrite::Delete { id, if_version };
    Ok(Json(
        write(&state, &p, &headers, command, Some(id)).await?.1,
    ))
}

async fn one(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(id): Path<String>,
    Query(at): Query<SiteQuery>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let id = product_id(&id)?;
    let site = target_site(&state, &p, at.site_id.as_deref()).await?;
    let tenant = p.tenant.to_string();
    let (product, level) = state
        .store
        .read(move |r| {
            Ok((
                r.product(&tenant, id)?,
                r.inventory_level(&tenant, &site, id)?,
            ))
        })
        .await?;
    let Some(product) = product.filter(|p| !p.deleted) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("product {id} not found"),
        ));
    };
    let mut body = product.to_json();
    body["stock"] = Value::from(level.quantity);
    body["inventory"] = level.to_json();
    Ok(Json(json!({"success": true, "product": body})))
}

/// `GET /api/products` query: `sku`, `barcode`, `q` (part of name, SKU or barcode),
/// `category`, `after` (the `next` of the previous page), `limit`, `includeDeleted`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    sku: Option<String>,
    barcode: Option<String>,
    #[serde(alias = "search")]
    q: Option<String>,
    category: Option<String>,
    after: Option<ProductId>,
    limit: Option<usize>,
    #[serde(default)]
    include_deleted: bool,
}

async fn list(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    if q.q.as_deref().is_some_and(|s| s.len() > 200) {
        return Err(ApiError::bad_request(
            "invalid_query",
            "q is at most 200 bytes",
        ));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let filter = ProductFilter {
        sku: q.sku,
        barcode: q.barcode,
        q: q.q.filter(|s| !s.is_empty()),
        category: q.category,
        after: q.after,
        limit,
        deleted: q.include_deleted,
    };
    let tenant = p.tenant.to_string();
    let products = state
        .store
        .read(move |r| r.products(&tenant, &filter))
        .await?;
    let next = (products.len() == limit)
        .then(|| products.last().map(|p| p.id))
        .flatten();
    let data: Vec<Value> = products.iter().map(|p| p.to_json()).collect();
    Ok(Json(json!({
        "success": true,
        "count": data.len(),
        "data": data,
        "next": next,
    })))
}
