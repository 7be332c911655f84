//! `GET /api/inventory/consolidated` (seed 003 InventoryModule): per product, the tenant's
//! total and each site's quantity, for owners and admins.
//!
//! Cached per tenant and labelled with the stream head the read reflected: an answer is
//! served from the cache only while the tenant's live head is that same id, so any
//! movement — committed here, or on another hub instance and delivered by the bus or the
//! log follower — invalidates it, with no cache of its own to keep in step between
//! instances. At most [`CACHED_TENANTS`] tenants are kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde_json::{json, Map, Value};
use stocky_core::stock::SiteLevel;
use stocky_core::time::{iso8601, now_millis};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

/// Tenants whose consolidated view is kept.
pub const CACHED_TENANTS: usize = 64;

/// One tenant's view: the rows, and the head they reflect.
struct View {
    head: u64,
    rows: Arc<Vec<Value>>,
}

/// The cached views, by tenant.
#[derive(Default)]
pub struct ConsolidatedCache(Mutex<HashMap<Arc<str>, View>>);

impl ConsolidatedCache {
    fn get(&self, tenant: &str, head: u64) -> Option<Arc<Vec<Value>>> {
        let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(tenant)
            .filter(|view| view.head == head)
            .map(|view| view.rows.clone())
    }

    fn put(&self, tenant: Arc<str>, head: u64, rows: Arc<Vec<Value>>) {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHED_TENANTS && !cache.contains_key(&tenant) {
            if let Some(victim) = cache.keys().next().cloned() {
                cache.remove(&victim);
            }
        }
        cache.insert(tenant, View { head, rows });
    }
}

pub fn routes(cache: Arc<ConsolidatedCache>) -> Router<AppState> {
    Router::new()
        .route("/api/inventory/consolidated", get(consolidated))
        .layer(Extension(cache))
}

async fn consolidated(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(cache): Extension<Arc<ConsolidatedCache>>,
) -> Result<Json<Value>, ApiError> {
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
    let (rows, head, cached) = match cache.get(&p.tenant, live) {
        Some(rows) => (rows, live, true),
        None => {
            let (head, levels) = state.store.tenant_levels(&p.tenant).await?;
            let rows = Arc::new(consolidate(levels));
            cache.put(p.tenant.clone(), head, rows.clone());
            (rows, head, false)
        }
    };
    Ok(Json(json!({
        "count": rows.len(),
        "data": &*rows,
        "lastEventId": head,
        "cached": cached,
        "timestamp": iso8601(now_millis()),
    })))
}

/// Levels ordered by product → one row per product.
fn consolidate(levels: Vec<SiteLevel>) -> Vec<Value> {
    let mut rows = Vec::new();
    let mut current: Option<(i64, i64, Map<String, Value>)> = None;
    let finish = |(product, total, sites): (i64, i64, Map<String, Value>)| json!({"productId": product, "total": total, "sites": sites});
    for SiteLevel {
        site_id: site,
        product_id: product,
        stock: on_hand,
    } in levels
    {
        match &mut current {
            Some((p, total, sites)) if *p == product => {
                *total = total.saturating_add(on_hand);
                sites.insert(site, json!(on_hand));
            }
            _ => {
                if let Some(done) = current.take() {
                    rows.push(finish(done));
                }
                let mut sites = Map::new();
                sites.insert(site, json!(on_hand));
                current = Some((product, on_hand, sites));
            }
        }
    }
    rows.extend(current.map(finish));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_product_with_its_sites() {
        let level = |site: &str, product_id, stock| SiteLevel {
            site_id: site.into(),
            product_id,
            stock,
        };
        let rows = consolidate(vec![level("a", 1, 5), level("b", 1, -2), level("a", 2, 7)]);
        assert_eq!(
            Value::Array(rows),
            json!([
                {"productId": 1, "total": 3, "sites": {"a": 5, "b": -2}},
                {"productId": 2, "total": 7, "sites": {"a": 7}},
            ])
        );
        assert!(consolidate(Vec::new()).is_empty());
    }
}
