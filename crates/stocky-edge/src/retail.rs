//! Sales and the catalog between this edge and the hub.
//!
//! - **Sales go up.** A sale made here (and each later fact of it: a confirmed payment, a
//!   refund, a void) is pushed as a `sale` operation with its original UUID and times; the
//!   hub merges it by union and appends the movements it implies by their ids, so a sale
//!   whose movements already went up with the outbox counts once. Sales are never refused
//!   for stock at the hub.
//! - **The catalog goes both ways**, last writer wins by `version`, then server time (seed
//!   003 §6.4), the same rule on both tiers: local edits are pushed as `product`
//!   operations; the hub's changes come down with the pull (`productsCursor`) and are
//!   merged here, marked upstream (so they are never pushed back).
//!
//! Invariants: cursors move only past what the hub answered (a rejected operation goes to
//! the quarantine first); pulled revisions are merged before the pull cursor moves, so a
//! crash repeats a merge that then changes nothing.

use serde_json::{json, Value};
use stocky_client::Client;
use stocky_core::catalog::{Product, ProductWrite};
use stocky_core::DEFAULT_TENANT;
use stocky_store::{Command, Store, StoreError, UPSTREAM_ORIGIN};

use crate::push::{read_cursor, PushError};

/// `sync_state` key of the sales pushed (`"<event_id> "`).
pub(crate) const SALES_PUSH_KEY: &str = "sales.push.cursor";
/// `sync_state` key of the catalog changes pushed (`"<event_id> <productId>"`).
pub(crate) const PRODUCTS_PUSH_KEY: &str = "products.push.cursor";
/// `sync_state` key of the catalog changes pulled (`"<event_id> <productId>"`).
pub(crate) const PRODUCTS_PULL_KEY: &str = "products.pull.cursor";

/// Every cursor of this module, for a start over (the hub's epoch changed).
pub(crate) const CURSOR_KEYS: [&str; 3] = [SALES_PUSH_KEY, PRODUCTS_PUSH_KEY, PRODUCTS_PULL_KEY];

/// One push request of `operations`; returns the refused ones as `(op id, operation,
/// reason)` for the quarantine. Fails when the hub did not answer each operation.
pub(crate) async fn push_operations(
    hub: &Client,
    site: &str,
    operations: &[Value],
) -> Result<Vec<(String, String, String)>, PushError> {
    if operations.is_empty() {
        return Ok(Vec::new());
    }
    let answer: Value = hub
        .post(
            "/api/sync/push",
            &json!({"siteId": site, "operations": operations}),
        )
        .await?;
    let results = answer["results"].as_array().cloned().unwrap_or_default();
    if results.len() != operations.len() {
        return Err(PushError::Hub(stocky_client::ClientError::Decode {
            url: "/api/sync/push".into(),
            message: format!(
                "{} results for {} operations",
                results.len(),
                operations.len()
            ),
        }));
    }
    Ok(operations
        .iter()
        .zip(&results)
        .filter(|(_, result)| result["status"] == "rejected")
        .map(|(op, result)| {
            let reason = result["reason"].as_str().unwrap_or("rejected").to_owned();
            let id = op["id"].as_str().unwrap_or_default().to_owned();
            (id, op.to_string(), reason)
        })
        .collect())
}

/// Quarantines what the hub refused and moves cursor `key` to `cursor`, in one go.
pub(crate) async fn settle(
    store: &Store,
    refused: Vec<(String, String, String)>,
    key: &'static str,
    cursor: String,
) -> Result<(), StoreError> {
    let now = stocky_core::time::now_millis();
    store
        .sync(move |s| {
            for (id, op, reason) in &refused {
                tracing::warn!(op = %id, %reason, "the hub refused an operation: quarantined");
                s.quarantine(id, op, reason, now)?;
            }
            s.set_state(key, &cursor)
        })
        .await
}

/// Pushes up to `batch` sales and `batch` catalog changes made here; returns how many.
pub(crate) async fn push_once(
    store: &Store,
    hub: &Client,
    site: &str,
    batch: usize,
) -> Result<usize, PushError> {
    let after = read_cursor(store, SALES_PUSH_KEY).await?.event_id;
    let sales = store
        .read(move |r| r.sales_after(DEFAULT_TENANT, after, UPSTREAM_ORIGIN, batch))
        .await?;
    let mut sent = sales.len();
    if let Some(last) = sales.last().map(|s| s.event_id) {
        let operations: Vec<Value> = sales
            .iter()
            .map(|s| {
                json!({
                    "id": format!("sale-{}-{}", s.record.id, s.event_id),
                    "type": "sale",
                    "sale": s.record.to_json(&s.unknown_products),
                })
            })
            .collect();
        let refused = push_operations(hub, site, &operations).await?;
        settle(store, refused, SALES_PUSH_KEY, format!("{last} ")).await?;
    }

    let after = read_cursor(store, PRODUCTS_PUSH_KEY).await?;
    let after = (after.event_id, after.id.parse().unwrap_or(0));
    let products = store
        .read(move |r| r.products_after(DEFAULT_TENANT, after, UPSTREAM_ORIGIN, batch))
        .await?;
    sent += products.len();
    if let Some((event, product)) = products.last() {
        let cursor = format!("{event} {}", product.id);
        let operations: Vec<Value> = products
            .iter()
            .map(|(_, p)| {
                json!({
                    "id": format!("product-{}-{}", p.id, p.version),
                    "type": "product",
                    "product": p.to_json(),
                })
            })
            .collect();
        let refused = push_operations(hub, site, &operations).await?;
        settle(store, refused, PRODUCTS_PUSH_KEY, cursor).await?;
    }
    Ok(sent)
}

/// Sales not pushed yet, and the server time of the oldest.
pub(crate) async fn pending_sales(store: &Store) -> Result<(u64, Option<i64>), StoreError> {
    let after = read_cursor(store, SALES_PUSH_KEY).await?.event_id;
    store
        .read(move |r| r.sales_pending(DEFAULT_TENANT, after, UPSTREAM_ORIGIN))
        .await
}

/// The catalog pull cursor, as the hub's pull takes it.
pub(crate) async fn pull_cursor(store: &Store) -> Result<Value, StoreError> {
    let after = read_cursor(store, PRODUCTS_PULL_KEY).await?;
    Ok(json!({"eventId": after.event_id, "id": after.id.parse::<i64>().unwrap_or(0)}))
}

/// Merges the hub's catalog changes (the winner by version, then time, is kept), marked
/// upstream, then moves the pull cursor to `next`.
pub(crate) async fn merge_pulled(
    store: &Store,
    pulled: Vec<Value>,
    next: Option<Value>,
) -> Result<(), PushError> {
    let revisions: Vec<Product> = pulled
        .iter()
        .filter_map(|p| match Product::from_json(p) {
            Ok(product) => Some(product),
            Err(e) => {
                tracing::warn!(error = %e, "skipping a product the hub sent");
                None
            }
        })
        .collect();
    if !revisions.is_empty() {
        store
            .submit(
                Command::Product(ProductWrite::Merge(revisions)),
                crate::upstream_origin(),
            )
            .await?;
    }
    if let Some(next) = next {
        let cursor = format!(
            "{} {}",
            next["eventId"].as_u64().unwrap_or(0),
            next["id"].as_i64().unwrap_or(0)
        );
        store
            .sync(move |s| s.set_state(PRODUCTS_PULL_KEY, &cursor))
            .await?;
    }
    Ok(())
}
