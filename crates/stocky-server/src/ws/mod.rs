//! The WebSocket endpoint (`WS_PATH`, default `/ws`): upgrade, then one [`session`] task per
//! connection.
//!
//! `?lastEventId=N` (optionally with `&epoch=…`) resumes: the session replays what was
//! missed right after authentication, exactly as a later `request_sync` would.
//! Credentials: `?token=…`, an `Authorization`/`X-API-Key` header, or an `auth` message
//! after `welcome`; `?deviceId=…` names the device for the one-connection-per-user rule.

mod registry;
mod session;

pub use registry::{DirectoryCall, Registry, SessionDirectory};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Query, State};
use axum::response::{IntoResponse, Response};
use stocky_core::protocol::connect::ConnectParams;

use axum::http::HeaderMap;
use session::{Connect, PreAuth};

use crate::auth::credential;
use crate::error::ApiError;
use crate::AppState;

/// Read buffer per connection: small, so that idle connections stay cheap.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes collected before a write reaches the socket; a writer flushes once per batch.
const WRITE_BUFFER: usize = 16 * 1024;
/// Hard cap on an incoming message; above the command limit so that a too-large command
/// gets a `stock:error` instead of a dropped connection.
const HARD_MESSAGE_CAP: usize = 4 * 1024 * 1024;

pub async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let ip = peer.ip().to_string();
    if let Some(refused) = crate::auth::throttled_ip_refusal(&state, &ip) {
        return refused;
    }
    let pairs = query.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let params = match ConnectParams::from_pairs(pairs) {
        Ok(params) => params,
        Err(e) => {
            return ApiError::bad_request("invalid_last_event_id", e.to_string()).into_response()
        }
    };
    if let Err(refused) = origin_allowed(&state, &headers) {
        return refused.into_response();
    }
    let resume = params.last_event_id.map(|id| (id, params.epoch));
    let pre_auth = match params.token.or_else(|| credential(&headers)) {
        None => PreAuth::Missing,
        Some(token) => match state.auth.authenticate(&state.store, &token).await {
            Ok(principal) => PreAuth::Authenticated(principal),
            Err(e) => {
                let unavailable = e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE;
                if !unavailable {
                    let _ = state.limits.failed_auth_per_ip.hit(&ip);
                }
                PreAuth::Invalid { unavailable }
            }
        },
    };
    let connect = Connect {
        pre_auth,
        resume,
        device: params.device_id,
    };
    let max_message = HARD_MESSAGE_CAP.max(state.config.max_message_bytes + 1024);
    let tracker = state.tasks.clone();
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket| tracker.track_future(session::run(socket, state, connect)))
}

/// Cross-site WebSocket hijacking: a browser sends `Origin` with every upgrade, and any
/// page can try one. Allowed: no `Origin` (not a browser), the server's own origin (pages it
/// serves), and the configured CORS origins — except that in dev mode, where no credential
/// is needed, `*` does not count and only loopback pages may connect.
fn origin_allowed(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(axum::http::header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let authority = origin.split_once("://").map_or("", |(_, rest)| rest);
    let same_origin = !host.is_empty() && authority.eq_ignore_ascii_case(host);
    let listed = state.config.cors_origins.iter().any(|o| o == origin);
    let any = state.config.cors_origins.iter().any(|o| o == "*");
    let loopback = {
        let name = authority
            .rsplit_once(':')
            .map_or(authority, |(name, _)| name);
        matches!(name, "localhost" | "127.0.0.1" | "[::1]")
    };
    let allowed = same_origin || listed || if state.auth.dev { loopback } else { any };
    if allowed {
        Ok(())
    } else {
        tracing::info!(origin, "ws: upgrade from a page of another origin refused");
        Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!("pages from {origin} may not open this WebSocket (CORS_ORIGINS lists who may)"),
        ))
    }
}
