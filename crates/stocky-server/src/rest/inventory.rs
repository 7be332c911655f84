//! Inventory (seed 003 InventoryModule and `inventory`): `GET /api/inventory/consolidated`
//! — per product, the tenant's total and each site's quantity, for owners and admins —
//! and per site, `GET /api/inventory?siteId=&low=`, `GET /api/inventory/{productId}` and
//! `PUT /api/inventory/{productId}` (`minStock`, `maxStock`; managers and up).
//!
//! Cached per tenant and labelled with the stream head the read reflected: an answer is
//! served from the cache only while the tenant's live head is that same id, so any
//! movement — committed here, or on another hub instance and delivered by the bus or the
//! log follower — invalidates it, with no cache of its own to keep in step between
//! instances. At most [`CACHED_TENANTS`] tenants are kept. A view is kept as the JSON
//! text of its rows, so a cached answer costs a copy, not a serialisation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::fmt::Write;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use stocky_core::auth::Action;
use stocky_core::stock::{SiteLevel, Thresholds, MAX_PRODUCT_ID};
use stocky_core::time::{iso8601, now_millis};
use stocky_store::inventory::InventoryLevel;
use stocky_store::{Applied, Command, Outcome};

use super::site::target_site;
use super::{json_body, rest_origin};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::openapi::{doc, ApiRoutes};
use crate::AppState;

/// Tenants whose consolidated view is kept.
pub const CACHED_TENANTS: usize = 64;

/// One tenant's view: its rows as JSON text (served as they are), how many, and the head
/// they reflect.
struct View {
    head: u64,
    count: usize,
    rows: Arc<str>,
}

/// The cached views, by tenant.
#[derive(Default)]
pub struct ConsolidatedCache(Mutex<HashMap<Arc<str>, Arc<View>>>);

impl ConsolidatedCache {
    fn get(&self, tenant: &str, head: u64) -> Option<Arc<View>> {
        let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(tenant).filter(|view| view.head == head).cloned()
    }

    fn put(&self, tenant: Arc<str>, view: Arc<View>) {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHED_TENANTS && !cache.contains_key(&tenant) {
            if let Some(victim) = cache.keys().next().cloned() {
                cache.remove(&victim);
            }
        }
        cache.insert(tenant, view);
    }
}

pub fn routes(cache: Arc<ConsolidatedCache>) -> ApiRoutes {
    ApiRoutes::new()
        .get(
            "/api/inventory/consolidated",
            consolidated,
            doc("Every product's quantity per site and in total (owners and admins)"),
        )
        .map_router(|router| router.layer(Extension(cache)))
        .get(
            "/api/inventory",
            site_inventory,
            doc("A site's inventory (seed 003 `inventory`): every product, or those below their minimum")
                .query::<InventoryQuery>(),
        )
        .get(
            "/api/inventory/{product_id}",
            product_inventory,
            doc("One product at a site: quantity (the ledger sum) and thresholds")
                .query::<super::site::SiteQuery>(),
        )
        .put(
            "/api/inventory/{product_id}",
            set_thresholds,
            doc("Set a product's `minStock`/`maxStock` at a site (managers and up)")
                .about("A missing or null threshold is cleared. Crossing below `minStock` raises `stock:low`.")
                .query::<super::site::SiteQuery>()
                .object_body()
                .errors(&[422]),
        )
}

/// `?siteId=&low=true`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
struct InventoryQuery {
    #[serde(rename = "siteId", alias = "sedeId")]
    site_id: Option<String>,
    #[serde(default)]
    low: bool,
}

fn product_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|p| (1..=MAX_PRODUCT_ID).contains(p))
        .ok_or_else(|| {
            ApiError::bad_request(
                "invalid_product_id",
                format!("productId must be an integer from 1 to {MAX_PRODUCT_ID}"),
            )
        })
}

/// `GET /api/inventory?siteId=&low=`: a site's inventory (seed 003 `inventory`), every
/// product or those below their minimum.
async fn site_inventory(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Query(q): Query<InventoryQuery>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let site = target_site(&state, &p, q.site_id.as_deref()).await?;
    let tenant = p.tenant.to_string();
    let (site_id, low) = (site.to_string(), q.low);
    let levels = state
        .store
        .read(move |r| r.inventory(&tenant, &site_id, low))
        .await?;
    let data: Vec<Value> = levels.iter().map(InventoryLevel::to_json).collect();
    Ok(Json(
        json!({"success": true, "siteId": &*site, "count": data.len(), "data": data}),
    ))
}

/// `GET /api/inventory/{productId}?siteId=`: quantity (the ledger sum), thresholds.
async fn product_inventory(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(product): Path<String>,
    Query(q): Query<InventoryQuery>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let product = product_id(&product)?;
    let site = target_site(&state, &p, q.site_id.as_deref()).await?;
    let tenant = p.tenant.to_string();
    let level = state
        .store
        .read(move |r| r.inventory_level(&tenant, &site, product))
        .await?;
    Ok(Json(json!({"success": true, "inventory": level.to_json()})))
}

/// `PUT /api/inventory/{productId}?siteId=` `{minStock, maxStock}` (managers and up): a
/// missing or null threshold is cleared. Crossing below `minStock` raises `stock:low`.
async fn set_thresholds(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(product): Path<String>,
    Query(q): Query<InventoryQuery>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::SetStock)?;
    let product = product_id(&product)?;
    let site = target_site(&state, &p, q.site_id.as_deref()).await?;
    let body: Value = json_body(request, &state).await?;
    let thresholds = Thresholds::parse(product, &body)
        .map_err(|e| ApiError::bad_request("invalid_data", e.0))?;
    let mut origin = rest_origin(&p, &headers)?;
    origin.site = site.clone();
    let applied = state
        .store
        .submit(Command::Thresholds(thresholds), origin)
        .await?;
    let event_id = applied.id();
    let level = match applied {
        Applied::New {
            outcome: Outcome::Thresholds(level),
            ..
        } => level,
        _ => {
            let tenant = p.tenant.to_string();
            state
                .store
                .read(move |r| r.inventory_level(&tenant, &site, product))
                .await?
        }
    };
    Ok(Json(
        json!({"success": true, "inventory": level.to_json(), "eventId": event_id}),
    ))
}

async fn consolidated(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(cache): Extension<Arc<ConsolidatedCache>>,
) -> Result<Response, ApiError> {
    if !p.role.is_admin() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "role {} sees one site; the consolidated inventory is for owners and admins",
                p.role.as_str()
            ),
        ));
    }
    let live = state.tenant_stream(&p.tenant).await?.head();
    let (view, cached) = match cache.get(&p.tenant, live) {
        Some(view) => (view, true),
        None => {
            let (head, levels) = state.store.tenant_levels(&p.tenant).await?;
            let (count, rows) = consolidate(&levels);
            let view = Arc::new(View {
                head,
                count,
                rows: rows.into(),
            });
            cache.put(p.tenant.clone(), view.clone());
            (view, false)
        }
    };
    let body = format!(
        r#"{{"cached":{cached},"count":{},"data":{},"lastEventId":{},"timestamp":"{}"}}"#,
        view.count,
        view.rows,
        view.head,
        iso8601(now_millis())
    );
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Levels ordered by product → the JSON array of one row per product
/// (`{"productId","sites":{site: quantity},"total"}`), and how many rows.
fn consolidate(levels: &[SiteLevel]) -> (usize, String) {
    let mut out = String::with_capacity(levels.len() * 24 + 2);
    out.push('[');
    let mut count = 0;
    let mut at = 0;
    while at < levels.len() {
        let product = levels[at].product_id;
        let end = levels[at..]
            .iter()
            .position(|l| l.product_id != product)
            .map_or(levels.len(), |n| at + n);
        if count > 0 {
            out.push(',');
        }
        let _ = write!(out, r#"{{"productId":{product},"sites":{{"#);
        let mut total = 0i64;
        for (i, level) in levels[at..end].iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let site = serde_json::to_string(&level.site_id).unwrap_or_default();
            let _ = write!(out, "{site}:{}", level.stock);
            total = total.saturating_add(level.stock);
        }
        let _ = write!(out, r#"}},"total":{total}}}"#);
        count += 1;
        at = end;
    }
    out.push(']');
    (count, out)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;

    #[test]
    fn one_row_per_product_with_its_sites() {
        let level = |site: &str, product_id, stock| SiteLevel {
            site_id: site.into(),
            product_id,
            stock,
        };
        let (count, rows) = consolidate(&[level("a", 1, 5), level("b", 1, -2), level("a", 2, 7)]);
        assert_eq!(count, 2);
        assert_eq!(
            serde_json::from_str::<Value>(&rows).unwrap(),
            json!([
                {"productId": 1, "total": 3, "sites": {"a": 5, "b": -2}},
                {"productId": 2, "total": 7, "sites": {"a": 7}},
            ])
        );
        assert_eq!(consolidate(&[]), (0, "[]".to_owned()));
    }
}
