//! The pull side: movements recorded at the hub for this edge's site (hub REST commands,
//! other nodes' pushes, transfers) come down by `POST /api/sync/pull` after a cursor and
//! are appended to the local ledger by UUID, marked as upstream (never pushed back); the
//! hub's document changes come with them and merge by their rules ([`crate::documents`]).
//! Local stock is recomputed from the ledger, so the hub's deltas and the store's own
//! ones both count, whatever the order they meet in.
//!
//! When it pulls: as soon as the hub's live stream (one WebSocket with the device
//! credential) shows any change, after every push round the hub answered, and at the
//! slow poll of `sync_interval_minutes` (seed 004) as a backstop.
//!
//! Invariants: the cursor moves only after the movements before it are committed
//! locally; the edge's own movements coming back are duplicates by UUID and change
//! nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use stocky_client::{Backoff, Client, Start, SubscribeOptions, Update};
use stocky_core::auth::USER_CHANGED_EVENT;
use stocky_core::stock::LedgerEntry;
use stocky_core::sync_rules::SyncRules;
use stocky_core::time::{now_millis, parse_iso8601};
use stocky_core::{DEFAULT_SITE, DEFAULT_TENANT};
use stocky_store::{Command, OutboxCursor, Store, UPSTREAM_ORIGIN};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::push::PushError;
use crate::status::SyncStatus;

/// `sync_state` key of the pull cursor (`"<event_id> <movement id>"`).
pub const CURSOR_KEY: &str = "pull.cursor";
/// `sync_state` key of the hub's epoch the cursors belong to.
pub(crate) const EPOCH_KEY: &str = "hub.epoch";
/// Movements asked for per pull.
const PAGE: usize = 500;
/// A wake-up waits this long for more before pulling, so a burst of hub commits (a drain
/// of this edge's own pushes, say) costs one pull, not one per commit.
const DEBOUNCE: Duration = Duration::from_millis(100);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PullAnswer {
    movements: Vec<Movement>,
    cursor: Cursor,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    documents: Vec<crate::documents::Pulled>,
    #[serde(default)]
    documents_cursor: Option<serde_json::Value>,
    #[serde(default)]
    documents_has_more: bool,
    #[serde(default)]
    orders: Vec<serde_json::Value>,
    #[serde(default)]
    orders_cursor: Option<serde_json::Value>,
    #[serde(default)]
    orders_has_more: bool,
    #[serde(default)]
    products: Vec<serde_json::Value>,
    #[serde(default)]
    products_cursor: Option<serde_json::Value>,
    #[serde(default)]
    products_has_more: bool,
    #[serde(default)]
    epoch: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Cursor {
    event_id: u64,
    #[serde(default)]
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Movement {
    id: String,
    product_id: i64,
    delta: i64,
    kind: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    origin_op: Option<String>,
    #[serde(default)]
    client_time: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    server_time: String,
}

/// Pulls until `shutdown`, whenever `wake` is notified or `interval` passes.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    store: Store,
    hub: Client,
    site: String,
    rules: Arc<SyncRules>,
    wake: Arc<Notify>,
    interval: Duration,
    status: Arc<Mutex<SyncStatus>>,
    shutdown: CancellationToken,
) {
    let backoff = Backoff {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(60),
    };
    let mut failures = 0u32;
    loop {
        let started = now_millis();
        let result = match pull_once(&store, &hub, &site, &rules).await {
            // Seed 004's rounds (menu, config, orders, customers) once the pull caught up.
            Ok((count, false)) => crate::remote::pull_round(&store, &hub, &site)
                .await
                .map(|moved| (count + moved, false)),
            other => other,
        };
        crate::log::record(
            &store,
            "pull",
            started,
            result.as_ref().map(|(n, _)| *n as u64),
        )
        .await;
        let wait = match result {
            Ok((count, more)) => {
                failures = 0;
                status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pulled(count);
                if more {
                    continue;
                }
                interval
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!(error = %e, failures, "pull failed; retrying");
                status.lock().unwrap_or_else(|e| e.into_inner()).failed(&e);
                backoff.delay(failures).min(interval)
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => tokio::time::sleep(DEBOUNCE).await,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Wakes the puller whenever the hub's live stream shows a change, the users' refresh
/// when it shows `user:changed` (and both on every (re)connect, to catch up), until
/// `shutdown` or until the hub refuses the credential.
/// The live stream also tells whether the hub is reachable (`isConnected`).
pub async fn watch(
    hub: Client,
    device: String,
    wake: Arc<Notify>,
    wake_users: Arc<Notify>,
    status: Arc<Mutex<SyncStatus>>,
    shutdown: CancellationToken,
) {
    let mut live = hub.subscribe(SubscribeOptions::new(Start::Now).device(device));
    loop {
        let update = tokio::select! {
            _ = shutdown.cancelled() => return,
            update = live.next() => update,
        };
        let status = || status.lock().unwrap_or_else(|e| e.into_inner());
        match update {
            Some(Ok(Update::Disconnected { reason, .. })) => status().disconnected(&reason),
            Some(Ok(Update::Connected(_))) => {
                status().connected();
                wake.notify_one();
                wake_users.notify_one();
            }
            Some(Ok(Update::Event(e))) if e.event == USER_CHANGED_EVENT => wake_users.notify_one(),
            Some(Ok(_)) => wake.notify_one(),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "the hub's live stream ended; pulling by timer only");
                status().disconnected(&e.to_string());
                return;
            }
            None => return,
        }
    }
}

/// One page of movements and of documents: returns how many changes came and whether
/// more wait.
pub(crate) async fn pull_once(
    store: &Store,
    hub: &Client,
    site: &str,
    rules: &SyncRules,
) -> Result<(usize, bool), PushError> {
    let after = cursor(store).await?;
    let documents_after =
        crate::documents::read_cursor(store, crate::documents::PULL_CURSOR_KEY).await?;
    let answer: PullAnswer = hub
        .post(
            "/api/sync/pull",
            &json!({
                "siteId": site,
                "cursor": {"eventId": after.event_id, "id": after.id},
                "limit": PAGE,
                "documentsCursor": crate::documents::wire(&documents_after),
                "documentsLimit": PAGE,
                "productsCursor": crate::retail::pull_cursor(store).await?,
                "ordersCursor": crate::remote::orders_pull_cursor(store).await?,
                "productsLimit": PAGE,
                "outbox": crate::status::outbox_report(store).await?,
            }),
        )
        .await?;
    if let Some(epoch) = &answer.epoch {
        if resync_if_new(store, epoch).await? {
            return Ok((0, true));
        }
    }
    let count = answer.movements.len()
        + answer.documents.len()
        + answer.products.len()
        + answer.orders.len();
    let more = answer.has_more
        || answer.documents_has_more
        || answer.products_has_more
        || answer.orders_has_more;
    crate::documents::merge_pulled(store, answer.documents, rules).await?;
    crate::retail::merge_pulled(store, answer.products, answer.products_cursor).await?;
    crate::remote::merge_pulled_orders(store, answer.orders, answer.orders_cursor).await?;
    if count > 0 {
        let entries: Vec<LedgerEntry> = answer
            .movements
            .into_iter()
            .map(|m| LedgerEntry {
                id: m.id,
                site: DEFAULT_SITE.to_owned(),
                product_id: m.product_id,
                delta: m.delta,
                kind: m.kind,
                reason: m.reason,
                origin_client: Some(UPSTREAM_ORIGIN.into()),
                origin_op: m.origin_op,
                server_time: parse_iso8601(&m.server_time).unwrap_or_else(now_millis),
                client_time: m.client_time.as_deref().and_then(parse_iso8601),
                user_id: m.user_id,
            })
            .collect();
        let origin = crate::upstream_origin();
        store
            .submit(Command::RestoreLedger(entries), origin)
            .await?;
    }
    let next = format!("{} {}", answer.cursor.event_id, answer.cursor.id);
    let documents_next = answer
        .documents_cursor
        .as_ref()
        .map(|c| crate::documents::encode(&crate::documents::from_wire(c)));
    store
        .sync(move |s| {
            if let Some(documents_next) = &documents_next {
                s.set_state(crate::documents::PULL_CURSOR_KEY, documents_next)?;
            }
            s.set_state(CURSOR_KEY, &next)
        })
        .await?;
    Ok((count, more))
}

/// When the hub's epoch is not the one the cursors belong to (its database was replaced
/// or restored), every cursor starts over: everything is pulled again and merged (the
/// movements by UUID, so nothing counts twice; the activation snapshot, which stood for
/// the hub's history, is taken back out first) and everything local is pushed again (the
/// hub recognises what it has). Returns whether it started over.
async fn resync_if_new(store: &Store, epoch: &str) -> Result<bool, PushError> {
    let known = store.sync(|s| s.state(EPOCH_KEY)).await?;
    if known.as_deref() == Some(epoch) {
        return Ok(false);
    }
    if known.is_some() {
        // The activation snapshot stood for the old hub's history, which now comes down
        // movement by movement: take it back out first (idempotent by id, so a crash
        // before the cursors below are reset only repeats a no-op).
        let snapshot = store
            .sync(|s| s.movements_of_kind(DEFAULT_TENANT, crate::activate::SNAPSHOT_KIND))
            .await?;
        let reversal: Vec<LedgerEntry> = snapshot
            .into_iter()
            .map(|m| LedgerEntry {
                id: format!("resync-{}", m.id),
                delta: -m.delta,
                kind: "resync".into(),
                reason: Some("the hub's history was replaced: pulled again instead".into()),
                origin_client: Some(UPSTREAM_ORIGIN.into()),
                origin_op: None,
                server_time: now_millis(),
                ..m
            })
            .collect();
        if !reversal.is_empty() {
            store
                .submit(Command::RestoreLedger(reversal), crate::upstream_origin())
                .await?;
        }
    }
    let epoch = epoch.to_owned();
    let started_over = store
        .sync(move |s| {
            s.set_state(EPOCH_KEY, &epoch)?;
            if known.is_none() {
                return Ok(false);
            }
            let start = crate::documents::encode(&stocky_store::DocCursor::default());
            s.set_state(CURSOR_KEY, "0 ")?;
            s.set_state(crate::push::CURSOR_KEY, "0 ")?;
            s.set_state(crate::documents::PULL_CURSOR_KEY, &start)?;
            s.set_state(crate::documents::PUSH_CURSOR_KEY, &start)?;
            for key in crate::retail::CURSOR_KEYS
                .into_iter()
                .chain(crate::remote::CURSOR_KEYS)
            {
                s.set_state(key, "0 ")?;
            }
            Ok(true)
        })
        .await?;
    if started_over {
        tracing::warn!("the hub's history changed (new epoch): syncing everything again");
    }
    Ok(started_over)
}

/// The pull cursor (the hub's movements up to it are in the local ledger).
pub async fn cursor(store: &Store) -> Result<OutboxCursor, stocky_store::StoreError> {
    crate::push::read_cursor(store, CURSOR_KEY).await
}
