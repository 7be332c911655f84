//! `GET /api/sync/status` at the edge (seed 004), and `GET /api/sync/log` (its `SyncLog`): whether the hub is reachable, when the
//! last push succeeded, how much waits in the outbox and since when, what is quarantined,
//! and the last error. The worker keeps the live part in [`SyncStatus`]; depths are read
//! from the database on each request.

use std::sync::{Arc, Mutex};
use stocky_server::openapi::{doc, ApiRoutes};

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{json, Value};
use stocky_core::api::OutboxReport;
use stocky_core::auth::Action;
use stocky_core::time::{iso8601, now_millis};
use stocky_core::DEFAULT_TENANT;
use stocky_server::auth::Principal;
use stocky_server::error::ApiError;
use stocky_server::AppState;
use stocky_store::{Store, StoreError};

use crate::push::{self, PushError};

/// What the push worker last saw.
#[derive(Debug, Default, Clone)]
pub struct SyncStatus {
    /// The hub answered the last attempt.
    pub is_connected: bool,
    /// Milliseconds; the last push round the hub answered.
    pub last_push_at: Option<i64>,
    /// Milliseconds; the last pull the hub answered.
    pub last_pull_at: Option<i64>,
    pub pulled_total: u64,
    pub pushed_total: u64,
    pub last_error: Option<String>,
    /// The hub refused the device credential (revoked): syncing stops until it is fixed.
    pub credential_refused: bool,
}

impl SyncStatus {
    pub(crate) fn connected(&mut self) {
        self.is_connected = true;
        self.credential_refused = false;
    }

    pub(crate) fn pushed(&mut self, count: usize) {
        self.connected();
        self.last_push_at = Some(now_millis());
        self.pushed_total += count as u64;
        self.last_error = None;
    }

    pub(crate) fn disconnected(&mut self, reason: &str) {
        self.is_connected = false;
        self.last_error = Some(reason.to_owned());
    }

    pub(crate) fn pulled(&mut self, count: usize) {
        self.connected();
        self.last_pull_at = Some(now_millis());
        self.pulled_total += count as u64;
    }

    pub(crate) fn failed(&mut self, error: &PushError) {
        self.is_connected = false;
        if let PushError::Hub(e) = error {
            self.credential_refused = matches!(e.status(), Some(401 | 403));
        }
        self.last_error = Some(error.to_string());
    }
}

/// The status route, with the shared status and this edge's site.
pub fn routes(status: Arc<Mutex<SyncStatus>>, site: String) -> ApiRoutes {
    ApiRoutes::new()
        .get(
            "/api/sync/status",
            sync_status,
            doc("This store node's sync state: hub reachable, outbox, last push and pull"),
        )
        .get(
            "/api/sync/log",
            sync_log,
            doc("This store node's push and pull rounds, newest first"),
        )
        .map_router(|router| router.layer(Extension((status, site))))
}

async fn sync_status(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension((status, site)): Extension<(Arc<Mutex<SyncStatus>>, String)>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let live = status.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let ((pending, oldest), quarantined) = outbox_depth(&state.store).await?;
    let pending_documents = crate::documents::pending(&state.store).await?;
    let (pending_sales, oldest_sale) = crate::retail::pending_sales(&state.store).await?;
    let pending_orders = crate::remote::pending_orders(&state.store).await?;
    let now = now_millis();
    Ok(Json(json!({
        "siteId": site,
        "isConnected": live.is_connected,
        "lastSync": live.last_push_at.max(live.last_pull_at).map(iso8601),
        "lastPushAt": live.last_push_at.map(iso8601),
        "lastPullAt": live.last_pull_at.map(iso8601),
        "pulledTotal": live.pulled_total,
        "pending": pending,
        "pendingDocuments": pending_documents,
        "pendingSales": pending_sales,
        "pendingOrders": pending_orders,
        "oldestUnsyncedSaleAt": oldest_sale.map(iso8601),
        "oldestPendingAgeSecs": oldest.map(|t| (now - t).max(0) / 1000),
        "quarantined": quarantined,
        "pushedTotal": live.pushed_total,
        "credentialRefused": live.credential_refused,
        "lastError": live.last_error,
        "timestamp": iso8601(now),
    })))
}

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct LogQuery {
    limit: Option<usize>,
}

/// `GET /api/sync/log?limit=`: the newest sync rounds (default 100, at most 1000).
async fn sync_log(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    axum::extract::Query(query): axum::extract::Query<LogQuery>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::Read)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state.store.sync(move |s| s.sync_log(None, limit)).await?;
    let rows: Vec<Value> = rows
        .into_iter()
        .map(|r| {
            json!({
                "type": r.kind,
                "syncType": r.kind.to_ascii_uppercase(),
                "recordsAffected": r.records_affected,
                "status": r.status,
                "error": r.error,
                "startedAt": iso8601(r.started_at),
                "completedAt": iso8601(r.completed_at),
            })
        })
        .collect();
    Ok(Json(json!({"data": rows})))
}

/// The outbox's depth (operations not pushed, and when the oldest was recorded) and the
/// number of quarantined operations.
async fn outbox_depth(store: &Store) -> Result<((u64, Option<i64>), usize), StoreError> {
    let after = push::cursor(store).await?;
    store
        .sync(move |s| {
            Ok((
                s.outbox_depth(DEFAULT_TENANT, &after)?,
                s.quarantined()?.len(),
            ))
        })
        .await
}

/// What this node reports to the hub with each pull, so that admins see its outbox there.
pub(crate) async fn outbox_report(store: &Store) -> Result<OutboxReport, StoreError> {
    let ((pending, _), _) = outbox_depth(store).await?;
    let (pending_sales, oldest_unsynced_sale_at) = crate::retail::pending_sales(store).await?;
    Ok(OutboxReport {
        pending,
        pending_sales,
        oldest_unsynced_sale_at,
        reported_at: 0,
    })
}

/// How often the outbox gauges of `/metrics` are refreshed.
const EXPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps `stocky_edge_outbox_pending`, `stocky_edge_pending_sales` and
/// `stocky_edge_oldest_unsynced_sale_age_seconds` (label `site`) up to date, until
/// `shutdown`.
pub(crate) async fn export_outbox(
    state: AppState,
    site: String,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let label = stocky_server::metrics::SiteLabel { site };
    let mut tick = tokio::time::interval(EXPORT_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(report) = outbox_report(&state.store).await else {
            continue;
        };
        let metrics = &state.metrics;
        let clamp = |n: u64| n.min(i64::MAX as u64) as i64;
        metrics
            .outbox_pending
            .get_or_create(&label)
            .set(clamp(report.pending));
        metrics
            .pending_sales
            .get_or_create(&label)
            .set(clamp(report.pending_sales));
        let age = report
            .oldest_unsynced_sale_at
            .map_or(0.0, |at| (now_millis() - at).max(0) as f64 / 1000.0);
        metrics
            .oldest_unsynced_sale_age_seconds
            .get_or_create(&label)
            .set(age);
    }
}

/// The hub as `GET /readyz` reports it at an edge (`checks.hub`, not required: the store
/// sells offline, and its operations wait in the outbox).
pub(crate) struct UpstreamCheck(pub Arc<Mutex<SyncStatus>>);

impl stocky_server::ReadinessCheck for UpstreamCheck {
    fn name(&self) -> &'static str {
        "hub"
    }

    fn state(&self) -> Result<(), String> {
        let status = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if status.credential_refused {
            return Err("the hub refused this store's credential: rotate or re-activate it".into());
        }
        if !status.is_connected {
            let why = status.last_error.as_deref().unwrap_or("not reached yet");
            return Err(format!(
                "the hub is unreachable ({why}); selling goes on, operations wait in the outbox"
            ));
        }
        Ok(())
    }
}
