//! Prometheus metrics, served at `GET /metrics` in the text exposition format
//! (`prometheus-client`, the Prometheus project's Rust client). docs/operations.md
//! ("Metrics") lists each one; `docs/grafana-dashboard.json` charts them.
//!
//! Invariants:
//! - Labels never carry tenant data: only route templates, result and scope names, and
//!   site ids (the edge's own site). Their sets are bounded, so the series count is too.
//! - Updating a metric is an atomic add (no lock, no allocation on the hot paths:
//!   fan-out, commit, socket writes); label families lock briefly on first use of a label
//!   set only.
//! - `GET /metrics` needs `Authorization: Bearer <STOCKY_METRICS_TOKEN>` when that token
//!   is configured, and nothing otherwise (it reveals no tenant data).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use stocky_store::BatchReport;

use crate::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `applied`, `duplicate`, `unchanged`, `refused` or `unavailable`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScopeLabel {
    /// `credential`, `ip`, `failed_auth` or `login`.
    pub scope: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    /// The route template (`/api/sales/{id}`), `(no route)` for a 404.
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SiteLabel {
    pub site: String,
}

/// Every metric of one process.
pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub deliveries: Counter,
    pub frames_sent: Counter,
    pub bytes_sent: Counter,
    pub slow_consumers: Counter,
    pub commands: Family<ResultLabel, Counter>,
    pub batch_size: Histogram,
    pub commit_seconds: Histogram,
    pub replays: Counter,
    pub replayed_events: Counter,
    pub full_refreshes: Counter,
    pub bus_reconnects: Counter,
    pub bus_lag_seconds: Gauge<f64, AtomicU64>,
    pub rate_limited: Family<ScopeLabel, Counter>,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_seconds: Histogram,
    pub db_readers_busy: Gauge,
    pub db_readers_idle: Gauge,
    pub writer_queue: Gauge,
    pub outbox_pending: Family<SiteLabel, Gauge>,
    pub pending_sales: Family<SiteLabel, Gauge>,
    pub oldest_unsynced_sale_age_seconds: Family<SiteLabel, Gauge<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("stocky");
        let seconds = || Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        let metrics = Metrics {
            connections: Gauge::default(),
            deliveries: Counter::default(),
            frames_sent: Counter::default(),
            bytes_sent: Counter::default(),
            slow_consumers: Counter::default(),
            commands: Family::default(),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 11)),
            commit_seconds: seconds(),
            replays: Counter::default(),
            replayed_events: Counter::default(),
            full_refreshes: Counter::default(),
            bus_reconnects: Counter::default(),
            bus_lag_seconds: Gauge::default(),
            rate_limited: Family::default(),
            http_requests: Family::default(),
            http_seconds: seconds(),
            db_readers_busy: Gauge::default(),
            db_readers_idle: Gauge::default(),
            writer_queue: Gauge::default(),
            outbox_pending: Family::default(),
            pending_sales: Family::default(),
            oldest_unsynced_sale_age_seconds: Family::default(),
            registry: Registry::default(),
        };
        let m = &metrics;
        let r = &mut registry;
        r.register(
            "ws_connections",
            "Open WebSocket connections",
            m.connections.clone(),
        );
        r.register(
            "ws_deliveries",
            "Event deliveries to live connections (one per connection per event)",
            m.deliveries.clone(),
        );
        r.register(
            "ws_frames_sent",
            "WebSocket frames written",
            m.frames_sent.clone(),
        );
        r.register(
            "ws_bytes_sent",
            "Bytes of WebSocket text frames written",
            m.bytes_sent.clone(),
        );
        r.register(
            "ws_slow_consumer_disconnects",
            "Connections closed 4000 for falling behind",
            m.slow_consumers.clone(),
        );
        r.register("commands", "Writer commands by result", m.commands.clone());
        r.register(
            "commit_batch_size",
            "Commands per group commit",
            m.batch_size.clone(),
        );
        r.register(
            "commit_seconds",
            "Group commit latency: begin to answered",
            m.commit_seconds.clone(),
        );
        r.register(
            "replays",
            "Replays served (resume or request_sync)",
            m.replays.clone(),
        );
        r.register(
            "replayed_events",
            "Events sent by replays",
            m.replayed_events.clone(),
        );
        r.register(
            "full_refreshes",
            "full_refresh snapshots sent",
            m.full_refreshes.clone(),
        );
        r.register(
            "bus_reconnects",
            "Redis bus connections re-established after a failure",
            m.bus_reconnects.clone(),
        );
        r.register(
            "bus_lag_seconds",
            "Age of the last event received from another instance over the bus",
            m.bus_lag_seconds.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused by a rate limit, by scope",
            m.rate_limited.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_seconds",
            "HTTP request latency (to the response head)",
            m.http_seconds.clone(),
        );
        r.register(
            "db_readers_busy",
            "Pooled database read connections in use",
            m.db_readers_busy.clone(),
        );
        r.register(
            "db_readers_idle",
            "Pooled database read connections idle",
            m.db_readers_idle.clone(),
        );
        r.register(
            "writer_queue",
            "Commands waiting for the writer",
            m.writer_queue.clone(),
        );
        r.register(
            "edge_outbox_pending",
            "Store node: operations waiting for the hub",
            m.outbox_pending.clone(),
        );
        r.register(
            "edge_pending_sales",
            "Store node: sales the hub has not taken",
            m.pending_sales.clone(),
        );
        r.register(
            "edge_oldest_unsynced_sale_age_seconds",
            "Store node: age of the oldest sale the hub has not taken (0: none)",
            m.oldest_unsynced_sale_age_seconds.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// A writer batch: its size, latency and each command's result.
    pub fn record_batch(&self, report: &BatchReport) {
        self.batch_size.observe(report.size as f64);
        self.commit_seconds.observe(report.latency.as_secs_f64());
        for (result, count) in [
            ("applied", report.applied),
            ("duplicate", report.duplicates),
            ("unchanged", report.unchanged),
            ("refused", report.refused),
            ("unavailable", report.unavailable),
        ] {
            if count > 0 {
                self.commands
                    .get_or_create(&ResultLabel { result })
                    .inc_by(count as u64);
            }
        }
    }

    /// One answered HTTP request.
    pub fn record_request(&self, method: &str, route: &str, status: u16, latency: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_seconds.observe(latency.as_secs_f64());
    }

    /// A request refused by the limit of `scope`.
    pub fn rate_limited(&self, scope: &'static str) {
        self.rate_limited.get_or_create(&ScopeLabel { scope }).inc();
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// `GET /metrics`.
pub async fn serve(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| crate::auth::constant_time_eq(g.as_bytes(), token.0.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need the configured bearer token\n",
            )
                .into_response();
        }
    }
    let pool = state.store.pool_state();
    let metrics = &state.metrics;
    metrics.connections.set(state.fanout.connections() as i64);
    metrics.db_readers_busy.set(pool.readers_busy as i64);
    metrics.db_readers_idle.set(pool.readers_idle as i64);
    metrics.writer_queue.set(pool.writer_queue as i64);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}
