//! The REST API: seed 000's stock endpoints, document collections and backups, login and
//! administration, plus health.
//!
//! Every `/api` route needs credentials (see [`crate::auth`]) except login, refresh and
//! health; each handler checks the caller's role for its action first — before it reads
//! the body ([`json_body`]) — and works inside the caller's tenant only. Writes take the same path as WebSocket commands — the writer,
//! then the fan-out — so every WebSocket client sees REST changes live. An
//! `Idempotency-Key` header makes a retried write a no-op that answers like the original.

mod admin;
mod audit;
mod backup;
mod documents;
mod events;
pub mod inventory;
mod login;
mod orders;
mod products;
mod sales;
pub mod site;
mod stock;
pub mod sync;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Json;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;
use stocky_core::api::{LoginRequest, PasswordChange, RefreshRequest, SessionUser, TokenGrant};
use stocky_core::protocol::MAX_OP_ID_LEN;
use stocky_store::Origin;

use crate::auth::{self, Principal};
use crate::error::{ApiError, ApiJson};
use crate::openapi::{doc, ApiRoutes, Content};
use crate::AppState;

/// Client id that REST-originated events carry.
pub const REST_CLIENT_ID: &str = "rest";

/// The gateway's routes plus a tier's own: `protected` ones get the same authentication
/// and rate limits as the gateway's, `public` ones neither (they do their own checks).
pub fn routes(state: &AppState, protected: ApiRoutes, public: ApiRoutes) -> ApiRoutes {
    let protected = protected
        .merge(stock::routes())
        .merge(sync::routes())
        .merge(documents::routes())
        .merge(backup::routes(state.config.max_restore_bytes))
        .merge(admin::routes())
        .merge(events::routes())
        .merge(inventory::routes(Default::default()))
        .merge(sales::routes())
        .merge(orders::routes())
        .merge(products::routes())
        .merge(audit::routes())
        .post(
            "/api/auth/logout",
            login::logout,
            doc("Sign out: revoke this session and its tokens")
                .about("Only a login session can log out (`400 not_a_session` for API keys: revoke those instead).")
                .ok::<Acknowledged>()
                .errors(&[400]),
        )
        .post(
            "/api/auth/password",
            login::change_password,
            doc("Change your own password, giving the current one; your other sessions end")
                .about("Only a signed-in user (`400 not_a_session` for API keys and tokens). A wrong current password is `403 wrong_password` and counts as a failed login of the email and address (`429` past the limit); `409 managed_upstream` at a store node.")
                .body::<PasswordChange>()
                .ok::<Acknowledged>()
                .errors(&[400, 403, 409, 429]),
        )
        .get(
            "/api/auth/me",
            login::me,
            doc("Who the credentials speak for").ok::<SessionUser>(),
        )
        .with_credentials(|router| {
            router
                .route_layer(middleware::from_fn_with_state(state.clone(), rate_limit))
                .route_layer(middleware::from_fn_with_state(state.clone(), auth::require))
        });
    public
        .merge(protected)
        .post(
            "/api/auth/login",
            login::login,
            doc("Sign in with email and password: an access and a refresh token")
                .body::<LoginRequest>()
                .ok::<TokenGrant>()
                .errors(&[401, 429]),
        )
        .post(
            "/api/auth/refresh",
            login::refresh,
            doc("Trade a refresh token for new tokens (the refresh token rotates)")
                .body::<RefreshRequest>()
                .ok::<TokenGrant>()
                .errors(&[401, 429]),
        )
        .get("/health", health, doc("The process answers (seed name)").ok::<Health>())
        .get("/healthz", health, doc("The process answers").ok::<Health>())
        .get(
            "/readyz",
            readyz,
            doc("Whether this instance can serve: database, writer, and the tier's own parts")
                .about("`200` when ready, `503` with the same body naming the part that is not. Parts marked `\"required\": false` (Redis at a hub, the hub at an edge) never make the instance not ready.")
                .ok::<Readiness>()
                .errors(&[503]),
        )
        .get("/version", version, doc("Release and git commit").ok::<Version>())
        .get(
            "/metrics",
            crate::metrics::serve,
            doc("Prometheus metrics (OpenMetrics text)")
                .about("Needs `Authorization: Bearer <--metrics-token>` when the instance was started with one.")
                .answers(200, Content::Text("application/openmetrics-text"))
                .errors(&[401]),
        )
}

/// `{"status":"ok"}`.
#[derive(Serialize, JsonSchema)]
struct Health {
    status: &'static str,
}

async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// `{"success":true}`: done, nothing else to say.
#[derive(Serialize, JsonSchema)]
pub struct Acknowledged {
    pub success: bool,
}

/// `GET /version`.
#[derive(Serialize, JsonSchema)]
struct Version {
    name: &'static str,
    version: &'static str,
    /// The git commit the binary was built from, when the build knew it.
    commit: Option<&'static str>,
}

/// `GET /readyz`.
#[derive(Serialize, JsonSchema)]
struct Readiness {
    /// `ready` or `not_ready`.
    status: &'static str,
    /// Each part by name (`database`, `writer`, `redis`, `hub`).
    checks: std::collections::BTreeMap<String, ReadinessPart>,
}

#[derive(Serialize, JsonSchema)]
struct ReadinessPart {
    ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Present for the tier's own parts: `false` means it never makes the instance not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    required: Option<bool>,
}

/// How long a readiness probe waits for the database.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// `GET /readyz`: `200` when this process can serve — its database answers a read and its
/// writer takes commands — else `503` with the part that is not ready. The tier's own
/// parts (Redis at a hub, the hub at an edge) are reported too, with `"required": false`:
/// they do not make the instance not ready. Load balancers use it during rolling restarts
/// and outages; `/healthz` only says that the process answers.
async fn readyz(State(state): State<AppState>) -> Response {
    let part = |result: Result<(), String>| ReadinessPart {
        ready: result.is_ok(),
        error: result.err(),
        required: None,
    };
    let database = part(
        match tokio::time::timeout(READY_TIMEOUT, state.store.stream_heads()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer within 2 s".into()),
        },
    );
    let writer = part(if state.store.writer_alive() {
        Ok(())
    } else {
        Err("the writer has stopped".into())
    });
    let mut ready = database.ready && writer.ready;
    let mut checks = std::collections::BTreeMap::new();
    checks.insert("database".to_owned(), database);
    checks.insert("writer".to_owned(), writer);
    for check in state.readiness.iter() {
        let result = check.state();
        if check.required() && result.is_err() {
            ready = false;
        }
        let mut shown = part(result);
        shown.required = Some(check.required());
        checks.insert(check.name().into(), shown);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Readiness {
        status: if ready { "ready" } else { "not_ready" },
        checks,
    };
    (status, Json(body)).into_response()
}

/// `GET /version`: the release and, when the build knew it, the git commit.
async fn version(State(state): State<AppState>) -> Json<Version> {
    Json(Version {
        name: "stocky",
        version: env!("CARGO_PKG_VERSION"),
        commit: state.config.build_commit,
    })
}

/// The JSON body of `request`, read when the handler calls this: after it has checked the
/// caller's role. (An extractor reads the body before the handler runs, so a caller
/// without the permission would get `400`, `413` or `415` for a bad body and `403` only
/// for a good one.) The rejections are [`ApiJson`]'s.
pub async fn json_body<T: DeserializeOwned>(
    request: Request,
    state: &AppState,
) -> Result<T, ApiError> {
    let ApiJson(value) = ApiJson::from_request(request, state).await?;
    Ok(value)
}

/// [`json_body`] for a body that may be left out (no `Content-Length`, or 0): then
/// `T::default()`.
pub async fn optional_json_body<T: DeserializeOwned + Default>(
    request: Request,
    state: &AppState,
) -> Result<T, ApiError> {
    let empty = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .is_none_or(|v| v == "0");
    if empty {
        return Ok(T::default());
    }
    json_body(request, state).await
}

/// Unknown paths get the error envelope too, not an empty body.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route for {}", uri.path()),
    )
}

/// 429 with `Retry-After` (whole seconds, at least 1).
pub fn too_many(retry_after: std::time::Duration) -> Response {
    let secs = retry_after.as_secs().max(1);
    let error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests; retry in {secs} s"),
    );
    (
        error.status,
        [(header::RETRY_AFTER, secs.to_string())],
        error,
    )
        .into_response()
}

/// Counts the request against its credential and its client IP.
async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let limits = &state.limits;
    if let Some(principal) = request.extensions().get::<Principal>() {
        if let Err(retry) = limits.per_credential.hit(&principal.rate_key()) {
            state.metrics.rate_limited("credential");
            return too_many(retry);
        }
    }
    if let Some(ConnectInfo(addr)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        if let Err(retry) = limits.per_ip.hit(&addr.ip().to_string()) {
            state.metrics.rate_limited("ip");
            return too_many(retry);
        }
    }
    next.run(request).await
}

/// The `X-Device-Id` header: the register or device a REST write comes from.
fn device_header(headers: &HeaderMap) -> Result<Option<std::sync::Arc<str>>, ApiError> {
    match headers.get("x-device-id") {
        None => Ok(None),
        Some(v) => match v.to_str() {
            Ok(s) if !s.is_empty() && s.len() <= 128 => Ok(Some(s.into())),
            _ => Err(ApiError::bad_request(
                "invalid_device_id",
                "X-Device-Id must be visible ASCII, 1 to 128 bytes",
            )),
        },
    }
}

/// The origin of a REST write: the caller's tenant and home site, with its
/// `Idempotency-Key` if it has one.
fn rest_origin(principal: &Principal, headers: &HeaderMap) -> Result<Origin, ApiError> {
    let op_id = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(s) if !s.is_empty() && s.len() <= MAX_OP_ID_LEN => Some(s.to_owned()),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid_idempotency_key",
                    format!("Idempotency-Key must be visible ASCII, 1 to {MAX_OP_ID_LEN} bytes"),
                ))
            }
        },
    };
    Ok(Origin {
        tenant: principal.tenant.clone(),
        site: principal.home_site(),
        connection: 0,
        client_id: REST_CLIENT_ID.into(),
        op_scope: principal.op_scope(),
        op_id,
        user: Some(principal.actor()),
        device: device_header(headers)?.or_else(|| principal.device.clone()),
    })
}
