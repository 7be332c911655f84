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
use axum::extract::{Query, State};
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
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let pairs = query.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let params = match ConnectParams::from_pairs(pairs) {
        Ok(params) => params,
        Err(e) => {
            return ApiError::bad_request("invalid_last_event_id", e.to_string()).into_response()
        }
    };
    let resume = params.last_event_id.map(|id| (id, params.epoch));
    let pre_auth = match params.token.or_else(|| credential(&headers)) {
        None => PreAuth::Missing,
        Some(token) => match state.auth.authenticate(&state.store, &token).await {
            Ok(principal) => PreAuth::Authenticated(principal),
            Err(e) => PreAuth::Invalid {
                unavailable: e.status == axum::http::StatusCode::SERVICE_UNAVAILABLE,
            },
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
