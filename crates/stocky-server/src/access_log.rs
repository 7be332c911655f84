//! One access-log line per HTTP request, at `info` on the target `stocky::access`:
//! method, route template (`/api/sales/{id}`, never the concrete path, so ids and query
//! strings — which may carry a `token` — stay out), status, latency, the caller's tenant
//! when it authenticated, and the request id.
//!
//! Invariants:
//! - Never a credential, a header value other than the request id, or a body.
//! - Every response carries `X-Request-Id`: the caller's own when it sent a usable one
//!   (1–64 visible ASCII characters), else a fresh random one; the log line has the same.
//! - A WebSocket upgrade is logged when it is answered (`101`), not when the socket closes.
//!
//! Silence it with `RUST_LOG=info,stocky::access=off`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// The authenticated caller's tenant, left on the response by [`crate::auth::require`].
#[derive(Debug, Clone)]
pub struct Tenant(pub Arc<str>);

const REQUEST_ID: &str = "x-request-id";

/// The middleware (installed with `Router::layer`, so the route template is known); it
/// also counts the request in the metrics (`stocky_http_requests`).
pub async fn log(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(no route)".to_owned(), |p| p.as_str().to_owned());
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .filter(|v| usable(v))
        .cloned()
        .unwrap_or_else(fresh_id);
    let mut response = next.run(request).await;
    let tenant = response.extensions().get::<Tenant>().map(|t| t.0.clone());
    let latency = started.elapsed();
    state
        .metrics
        .record_request(method.as_str(), &route, response.status().as_u16(), latency);
    tracing::info!(
        target: "stocky::access",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        tenant = tenant.as_deref().unwrap_or("-"),
        request_id = request_id.to_str().unwrap_or("-"),
        "request"
    );
    response.headers_mut().insert(REQUEST_ID, request_id);
    response
}

fn usable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty() && bytes.len() <= 64 && bytes.iter().all(|b| b.is_ascii_graphic())
}

fn fresh_id() -> HeaderValue {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&hex).expect("hex is a valid header value")
}
