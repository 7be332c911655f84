//! The push worker: sends the outbox (the local ledger's own movements after the pushed
//! cursor, then the local document changes, [`crate::documents`], then sales and catalog
//! changes, [`crate::retail`]) to the hub's `POST /api/sync/push` in batches, oldest first.
//!
//! Invariants:
//! - the cursor moves only past operations the hub answered (`applied`, `duplicate`, or
//!   `rejected` — a rejected one goes to the quarantine first), so a crash or a lost answer
//!   only makes the next attempt send them again, and the hub recognises them by UUID;
//! - a rejected operation never blocks the ones behind it;
//! - retries are driven by a timer (exponential backoff with jitter, at most a minute), not
//!   by local writes; an idle outbox is looked at once a second;
//! - a round keeps up to four requests of one batch each in flight, and the cursor moves
//!   only when all of them are answered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};
use stocky_client::{Backoff, Client, ClientError};
use stocky_core::sync_rules::SyncRules;
use stocky_core::time::{iso8601, now_millis};
use stocky_core::DEFAULT_TENANT;
use stocky_store::{OutboxCursor, Pending, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::status::SyncStatus;

/// `sync_state` key of the cursor (`"<event_id> <movement id>"`).
pub(crate) const CURSOR_KEY: &str = "push.cursor";
/// How often an idle outbox is looked at.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Push requests a round keeps in flight at most (each of the configured batch size).
const IN_FLIGHT: usize = 4;

#[derive(Deserialize)]
struct PushAnswer {
    results: Vec<OpResult>,
}

#[derive(Deserialize)]
struct OpResult {
    status: String,
    #[serde(default)]
    reason: Option<String>,
}

/// The pushed cursor.
pub async fn cursor(store: &Store) -> Result<OutboxCursor, StoreError> {
    read_cursor(store, CURSOR_KEY).await
}

/// A `"<event_id> <movement id>"` cursor of `sync_state` (the start when absent).
pub(crate) async fn read_cursor(
    store: &Store,
    key: &'static str,
) -> Result<OutboxCursor, StoreError> {
    let text = store.sync(move |s| s.state(key)).await?;
    Ok(text
        .and_then(|t| {
            let (event, id) = t.split_once(' ')?;
            Some(OutboxCursor {
                event_id: event.parse().ok()?,
                id: id.to_owned(),
            })
        })
        .unwrap_or_default())
}

/// Pushes until `shutdown`; `site` is the hub's site of this edge.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    store: Store,
    hub: Client,
    site: String,
    rules: Arc<SyncRules>,
    batch: usize,
    status: Arc<Mutex<SyncStatus>>,
    pulled: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let backoff = Backoff {
        initial: Duration::from_millis(500),
        max: Duration::from_secs(60),
    };
    let mut failures = 0u32;
    loop {
        let started = now_millis();
        let result = async {
            let movements = push_once(&store, &hub, &site, batch).await?;
            let documents = crate::documents::push_once(&store, &hub, &site, &rules, batch).await?;
            let retail = crate::retail::push_once(&store, &hub, &site, batch).await?;
            let orders = crate::remote::push_orders(&store, &hub, &site, batch).await?;
            let remote = crate::remote::push_round(&store, &hub).await?;
            Ok::<_, PushError>(movements + documents + retail + orders + remote)
        }
        .await;
        crate::log::record(&store, "push", started, result.as_ref().map(|n| *n as u64)).await;
        let wait = match result {
            // Nothing to send says nothing about the hub: the live stream and the pull
            // keep the connection state.
            Ok(0) => {
                failures = 0;
                IDLE_POLL
            }
            Ok(sent) => {
                failures = 0;
                status
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .pushed(sent);
                // The hub is reachable: bring its changes down too.
                pulled.notify_one();
                continue; // drain
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!(error = %e, failures, "push failed; retrying");
                status.lock().unwrap_or_else(|e| e.into_inner()).failed(&e);
                backoff.delay(failures)
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Why a sync round (push or pull) failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(transparent)]
    Hub(#[from] ClientError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the local database refused the pulled movements: {0}")]
    Local(#[from] stocky_store::SubmitError),
}

/// One round: up to `IN_FLIGHT` requests of `batch` operations; returns how many the hub
/// answered.
async fn push_once(
    store: &Store,
    hub: &Client,
    site: &str,
    batch: usize,
) -> Result<usize, PushError> {
    let after = cursor(store).await?;
    let pending: Vec<Pending> = store
        .sync(move |s| s.outbox(DEFAULT_TENANT, &after, batch * IN_FLIGHT))
        .await?;
    let Some(last) = pending.last().map(|p| p.cursor.clone()) else {
        return Ok(0);
    };
    let operations: Vec<Value> = pending
        .iter()
        .map(|p| {
            let e = &p.entry;
            json!({
                "id": e.id,
                "productId": e.product_id,
                "delta": e.delta,
                "kind": e.kind,
                "reason": e.reason,
                "clientTime": iso8601(e.client_time.unwrap_or(e.server_time)),
                "userId": e.user_id,
            })
        })
        .collect();
    // Up to IN_FLIGHT requests of `batch` operations at once; the cursor moves only once
    // every one of them is answered (a failure sends them all again: their ids make the
    // repeat harmless, and movements commute, so the hub may commit them in any order).
    let bodies: Vec<Value> = operations
        .chunks(batch.max(1))
        .map(|chunk| json!({"siteId": site, "operations": chunk}))
        .collect();
    let requests = bodies
        .iter()
        .map(|body| hub.post::<PushAnswer, _>("/api/sync/push", body));
    let mut results = Vec::with_capacity(operations.len());
    for answer in futures_util::future::join_all(requests).await {
        results.extend(answer?.results);
    }
    if results.len() != pending.len() {
        return Err(PushError::Hub(ClientError::Decode {
            url: "/api/sync/push".into(),
            message: format!("{} results for {} operations", results.len(), pending.len()),
        }));
    }
    let now = now_millis();
    let refused: Vec<(String, String, String)> = pending
        .iter()
        .zip(&results)
        .zip(&operations)
        .filter(|((_, result), _)| result.status == "rejected")
        .map(|((p, result), op)| {
            let reason = result.reason.clone().unwrap_or_else(|| "rejected".into());
            (p.entry.id.clone(), op.to_string(), reason)
        })
        .collect();
    let count = pending.len();
    let cursor = format!("{} {}", last.event_id, last.id);
    store
        .sync(move |s| {
            for (id, op, reason) in &refused {
                tracing::warn!(op = %id, %reason, "the hub refused an operation: quarantined");
                s.quarantine(id, op, reason, now)?;
            }
            s.set_state(CURSOR_KEY, &cursor)
        })
        .await?;
    Ok(count)
}
