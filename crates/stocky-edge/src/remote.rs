//! Seed 004 at the store: the edge is the "local backend" and the hub the "remote" one.
//! After each pull the edge runs the seed's `RemoteSyncService` rounds against the hub's
//! seed 004 routes, with its device credential as `X-API-Key`:
//!
//! - **menu and configuration go up** (`POST /api/sync/menu`, `POST /api/sync/config`)
//!   whenever the local copy's version is past the one pushed (`MENU_PUSH`, `CONFIG_PUSH`);
//! - **orders come down** (`GET /api/sync/orders/pending`): each is created here with the
//!   same id and the next daily number of its business day, in one transaction, then the
//!   numbers are confirmed (`POST /api/sync/orders/confirm`, `ORDERS_PULL`). An order
//!   numbered before a crash keeps its number and is confirmed again: no gap, no reuse;
//! - **customers go both ways** (`POST /api/sync/customers/bulk` with every field's stamp,
//!   `GET /api/sync/customers/changes?since=`, `CUSTOMERS_PUSH` / `CUSTOMERS_PULL`), merged
//!   field by field on each side;
//! - order **status** changes travel with the general push (`order` operations) and pull
//!   (`ordersCursor`), last writer wins by version.
//!
//! The hub wakes the edge at once with `order:new` on its live stream (any event wakes the
//! pull); the slow poll (`SYNC_INTERVAL_MINUTES`) is the fallback.

use serde_json::{json, Value};
use stocky_client::Client;
use stocky_core::customers::Customer;
use stocky_core::orders::{Order, OrderCommand};
use stocky_core::sync_rules::Side;
use stocky_core::time::now_millis;
use stocky_core::{DEFAULT_SITE, DEFAULT_TENANT};
use stocky_server::openapi::{doc, ApiRoutes};
use stocky_store::orders::SiteDataKind;
use stocky_store::{Command, Store, StoreError, UPSTREAM_ORIGIN};

use crate::push::{read_cursor, PushError};

/// Order numbers one confirmation carries (the hub's limit).
const CONFIRM_BATCH: usize = 500;
const MENU_PUSHED_KEY: &str = "menu.pushed.version";
const CONFIG_PUSHED_KEY: &str = "config.pushed.version";
/// `sync_state` key of the customers pushed: a local log position `"<event_id> <id>"`.
const CUSTOMERS_PUSH_KEY: &str = "customers.push.cursor";
const CUSTOMERS_PULL_KEY: &str = "customers.pull.since";
/// `sync_state` key of the order changes pushed (`"<event_id> "`).
pub(crate) const ORDERS_PUSH_KEY: &str = "orders.push.cursor";
/// `sync_state` key of the order changes pulled (`"<event_id> "`).
pub(crate) const ORDERS_PULL_KEY: &str = "orders.pull.cursor";

/// Every cursor of this module, for a start over (the hub's epoch changed).
pub(crate) const CURSOR_KEYS: [&str; 6] = [
    MENU_PUSHED_KEY,
    CONFIG_PUSHED_KEY,
    CUSTOMERS_PUSH_KEY,
    CUSTOMERS_PULL_KEY,
    ORDERS_PUSH_KEY,
    ORDERS_PULL_KEY,
];

async fn state_int(store: &Store, key: &'static str) -> Result<i64, StoreError> {
    Ok(store
        .sync(move |s| s.state(key))
        .await?
        .and_then(|v| v.split(' ').next().and_then(|n| n.parse().ok()))
        .unwrap_or(0))
}

async fn set_state(store: &Store, key: &'static str, value: String) -> Result<(), StoreError> {
    store.sync(move |s| s.set_state(key, &value)).await
}

/// Runs one seed 004 round and logs it under `kind` (when it moved something or failed).
async fn logged(
    store: &Store,
    kind: &'static str,
    round: impl std::future::Future<Output = Result<usize, PushError>>,
) -> Result<usize, PushError> {
    let started = now_millis();
    let result = round.await;
    crate::log::record(store, kind, started, result.as_ref().map(|n| *n as u64)).await;
    result
}

/// What goes up (menu, config, customers), with the push worker: returns how many
/// records moved.
pub(crate) async fn push_round(store: &Store, hub: &Client) -> Result<usize, PushError> {
    let menu = push_site_data(store, hub, SiteDataKind::Menu, MENU_PUSHED_KEY);
    let config = push_site_data(store, hub, SiteDataKind::Config, CONFIG_PUSHED_KEY);
    Ok(logged(store, "MENU_PUSH", menu).await?
        + logged(store, "CONFIG_PUSH", config).await?
        + logged(store, "CUSTOMERS_PUSH", push_customers(store, hub)).await?)
}

/// What comes down (pending orders, customers), after each pull that caught up.
pub(crate) async fn pull_round(
    store: &Store,
    hub: &Client,
    site: &str,
) -> Result<usize, PushError> {
    Ok(
        logged(store, "ORDERS_PULL", pull_orders(store, hub, site)).await?
            + logged(store, "CUSTOMERS_PULL", pull_customers(store, hub)).await?,
    )
}

async fn push_site_data(
    store: &Store,
    hub: &Client,
    kind: SiteDataKind,
    key: &'static str,
) -> Result<usize, PushError> {
    let local = store
        .read(move |r| r.site_data(DEFAULT_TENANT, DEFAULT_SITE, kind))
        .await?;
    let Some((body, version, _)) = local else {
        return Ok(0);
    };
    if version <= state_int(store, key).await? {
        return Ok(0);
    }
    let _: Value = hub
        .post(&format!("/api/sync/{}", kind.as_str()), &body)
        .await?;
    set_state(store, key, version.to_string()).await?;
    Ok(1)
}

/// Seed 004's `pullPendingOrders`: create each pending order here with its daily number,
/// then confirm the numbers.
async fn pull_orders(store: &Store, hub: &Client, site: &str) -> Result<usize, PushError> {
    let pending: Value = hub
        .get(&format!("/api/sync/orders/pending?siteId={site}"))
        .await?;
    let orders = pending["data"].as_array().cloned().unwrap_or_default();
    let mut updates = Vec::with_capacity(orders.len());
    for remote in &orders {
        let order = match Order::from_json(remote, DEFAULT_SITE) {
            Ok(order) => order,
            Err(e) => {
                tracing::warn!(error = %e, "skipping an order the hub sent");
                continue;
            }
        };
        let id = order.id.clone();
        store
            .submit(
                Command::Order(OrderCommand::Arrive(Box::new(order))),
                crate::upstream_origin(),
            )
            .await?;
        let local = store
            .read(move |r| r.order(DEFAULT_TENANT, &id))
            .await?
            .ok_or_else(|| StoreError::NotFound("the order just created".into()))?;
        updates.push(json!({
            "orderId": local.id,
            "dailyNumber": local.daily_number,
            "businessDay": local.business_day,
        }));
    }
    if updates.is_empty() {
        return Ok(0);
    }
    for chunk in updates.chunks(CONFIRM_BATCH) {
        let answer: Value = hub
            .post(
                "/api/sync/orders/confirm",
                &json!({ "orderUpdates": chunk }),
            )
            .await?;
        let refused = answer["results"].as_array().into_iter().flatten();
        for r in refused.filter(|r| r["status"] == "rejected") {
            tracing::warn!(order = %r["orderId"], reason = %r["reason"], "the hub refused a daily number");
        }
    }
    Ok(updates.len())
}

/// Customers changed here after the pushed log position that hold a field this store
/// wrote (stamped LOCAL), with every stamp, in one bulk request. The position is the
/// local log's, so no clock decides what is skipped; a customer whose row changed again
/// (a pull merged the hub's fields into it) is sent again, which the hub merges as a
/// no-op.
async fn push_customers(store: &Store, hub: &Client) -> Result<usize, PushError> {
    let after = read_cursor(store, CUSTOMERS_PUSH_KEY).await?;
    let changed = store
        .read(move |r| r.customers_after(DEFAULT_TENANT, (after.event_id, &after.id), 500))
        .await?;
    let Some(((event, id), _)) = changed.last() else {
        return Ok(0);
    };
    let cursor = format!("{event} {id}");
    let mine: Vec<Value> = changed
        .iter()
        .filter(|(_, c)| c.last_write_by(Side::Local).is_some())
        .map(|(_, c)| c.to_json())
        .collect();
    if !mine.is_empty() {
        let _: Value = hub
            .post("/api/sync/customers/bulk", &json!({ "customers": mine }))
            .await?;
    }
    set_state(store, CUSTOMERS_PUSH_KEY, cursor).await?;
    Ok(mine.len())
}

/// The hub's customer changes since the last pull, merged here field by field.
async fn pull_customers(store: &Store, hub: &Client) -> Result<usize, PushError> {
    let after = store
        .sync(|s| s.state(CUSTOMERS_PULL_KEY))
        .await?
        .filter(|c| c.contains(':'))
        .unwrap_or_else(|| "0:".to_owned());
    let changes: Value = hub
        .get(&format!("/api/sync/customers/changes?after={after}"))
        .await?;
    let list = changes["data"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return Ok(0);
    }
    let customers: Vec<Customer> = list
        .iter()
        .filter_map(
            |c| match Customer::from_json(c, Side::Remote, now_millis()) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a customer the hub sent");
                    None
                }
            },
        )
        .collect();
    store
        .submit(Command::Customers(customers), crate::upstream_origin())
        .await?;
    if let Some(next) = changes["cursor"].as_str() {
        set_state(store, CUSTOMERS_PULL_KEY, next.to_owned()).await?;
    }
    Ok(list.len())
}

/// Local order changes (status, notes) after the pushed cursor, as `order` operations.
pub(crate) async fn push_orders(
    store: &Store,
    hub: &Client,
    site: &str,
    batch: usize,
) -> Result<usize, PushError> {
    let after = read_cursor(store, ORDERS_PUSH_KEY).await?.event_id;
    let orders = store
        .read(move |r| r.orders_after(DEFAULT_TENANT, DEFAULT_SITE, after, UPSTREAM_ORIGIN, batch))
        .await?;
    let Some((last, _)) = orders.last() else {
        return Ok(0);
    };
    let operations: Vec<Value> = orders
        .iter()
        .map(|(_, o)| {
            json!({"id": format!("order-{}-{}", o.id, o.version), "type": "order", "order": o.to_json()})
        })
        .collect();
    let refused = crate::retail::push_operations(hub, site, &operations).await?;
    crate::retail::settle(store, refused, ORDERS_PUSH_KEY, format!("{last} ")).await?;
    Ok(operations.len())
}

/// Seed 004's `pendingOrders` at the store: order changes made here that the hub has not
/// taken yet.
pub(crate) async fn pending_orders(store: &Store) -> Result<usize, StoreError> {
    let after = read_cursor(store, ORDERS_PUSH_KEY).await?.event_id;
    Ok(store
        .read(move |r| r.orders_after(DEFAULT_TENANT, DEFAULT_SITE, after, UPSTREAM_ORIGIN, 10_000))
        .await?
        .len())
}

/// The orders cursor of a pull, as the hub takes it.
pub(crate) async fn orders_pull_cursor(store: &Store) -> Result<Value, StoreError> {
    Ok(json!({"eventId": read_cursor(store, ORDERS_PULL_KEY).await?.event_id}))
}

/// Merges the hub's order changes (LWW by version; numbers kept), marked upstream.
pub(crate) async fn merge_pulled_orders(
    store: &Store,
    pulled: Vec<Value>,
    next: Option<Value>,
) -> Result<(), PushError> {
    for remote in pulled {
        match Order::from_json(&remote, DEFAULT_SITE) {
            Ok(order) => {
                store
                    .submit(
                        Command::Order(OrderCommand::Merge(Box::new(order))),
                        crate::upstream_origin(),
                    )
                    .await?;
            }
            Err(e) => tracing::warn!(error = %e, "skipping an order the hub sent"),
        }
    }
    if let Some(next) = next {
        let cursor = format!("{} ", next["eventId"].as_u64().unwrap_or(0));
        set_state(store, ORDERS_PULL_KEY, cursor).await?;
    }
    Ok(())
}

/// `GET /api/sync/metadata?entityType=Order|Customer`: seed 004's SyncMetadata, derived
/// from the records and the sync cursors (nothing to keep in step): per entity, when it
/// last changed, who changed it (`LOCAL` here, `REMOTE` from the hub), whether the hub
/// still has to get it (`syncPending`) and its version.
pub(crate) fn routes() -> ApiRoutes {
    ApiRoutes::new().get(
        "/api/sync/metadata",
        metadata,
        doc("What this store node holds and when each kind of data last came from the hub (seed 004)")
            .query::<MetadataQuery>(),
    )
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct MetadataQuery {
    entity_type: Option<String>,
}

async fn metadata(
    axum::extract::State(state): axum::extract::State<stocky_server::AppState>,
    axum::Extension(p): axum::Extension<stocky_server::auth::Principal>,
    axum::extract::Query(q): axum::extract::Query<MetadataQuery>,
) -> Result<axum::Json<Value>, stocky_server::error::ApiError> {
    p.require(stocky_core::auth::Action::Read)?;
    let store = &state.store;
    let wanted = |t: &str| {
        q.entity_type
            .as_deref()
            .is_none_or(|w| w.eq_ignore_ascii_case(t))
    };
    let mut data = Vec::new();
    if wanted("Order") {
        let pushed = read_cursor(store, ORDERS_PUSH_KEY).await?.event_id;
        // Orders last changed here (not taken from the hub), with their change's event.
        let mine = store
            .read(move |r| r.orders_after(DEFAULT_TENANT, DEFAULT_SITE, 0, UPSTREAM_ORIGIN, 10_000))
            .await?;
        let orders = store
            .read(|r| {
                r.orders(
                    DEFAULT_TENANT,
                    &stocky_store::orders::OrderFilter {
                        limit: 1000,
                        ..Default::default()
                    },
                )
            })
            .await?;
        for o in orders {
            let local = mine.iter().find(|(_, m)| m.id == o.id);
            let pending = local.is_some_and(|(event, _)| *event > pushed);
            data.push(json!({
                "entityType": "Order", "entityId": o.id,
                "lastModifiedAt": stocky_core::time::iso8601(o.updated_at),
                "modifiedBy": if local.is_some() { "LOCAL" } else { "REMOTE" },
                "syncPending": pending, "syncVersion": o.version,
            }));
        }
    }
    if wanted("Customer") {
        let pushed = read_cursor(store, CUSTOMERS_PUSH_KEY).await?;
        let unpushed: std::collections::HashSet<String> = store
            .read(move |r| r.customers_after(DEFAULT_TENANT, (pushed.event_id, &pushed.id), 10_000))
            .await?
            .into_iter()
            .map(|(_, c)| c.id)
            .collect();
        let customers = store
            .read(|r| r.customers_since(DEFAULT_TENANT, i64::MIN, None, 10_000))
            .await?;
        for c in customers {
            let pending = unpushed.contains(&c.id) && c.last_write_by(Side::Local).is_some();
            data.push(json!({
                "entityType": "Customer", "entityId": c.id,
                "lastModifiedAt": stocky_core::time::iso8601(c.updated_at()),
                "modifiedBy": if c.modified_by() == Side::Local { "LOCAL" } else { "REMOTE" },
                // Customers merge field by field: they have stamps, not one version.
                "syncPending": pending, "syncVersion": Value::Null,
            }));
        }
    }
    Ok(axum::Json(
        json!({"success": true, "count": data.len(), "data": data}),
    ))
}
