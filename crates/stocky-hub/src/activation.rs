//! Enrolling a store node (seed 003 §8.2): an owner or admin draws a one-time 6-digit code
//! for a site; the store's edge redeems it once at `POST /activate` and receives its
//! tenant, site, device id, a device credential (an API key bound to the site, revocable
//! like any key) and its initial configuration.
//!
//! - `POST /api/admin/sites/{siteId}/activation-codes` (`{"ttlSecs"}` optional, default
//!   24 h, at most 7 days) → `201 {"code","siteId","expiresAt"}`;
//! - `DELETE /api/admin/sites/{siteId}/activation-codes/{code}` revokes a live code;
//! - `POST /activate` `{"code","name"}` → `{"tenantId","siteId","deviceId","apiKey","config"}`.
//!
//! Only a digest of a code is stored. Guessing is throttled like logins (failed attempts
//! per client IP, `429` + `Retry-After` beyond) and every failure is logged with its IP.

use std::net::SocketAddr;
use std::time::Duration;
use stocky_server::openapi::{doc, ApiRoutes};

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use stocky_core::auth::{Action, Role};
use stocky_core::time::{iso8601, now_millis};
use stocky_server::auth::{digest, random_token, Principal, API_KEY_PREFIX};
use stocky_server::error::{ApiError, ApiJson};
use stocky_server::rest::{json_body, too_many};
use stocky_server::{random_id, AppState};
use stocky_store::audit::AccountAudit;
use stocky_store::{Account, Redeemed, StoreError};

/// How long a code is valid unless the request says otherwise.
pub const DEFAULT_CODE_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest validity a code may be given.
const MAX_CODE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The role of a device credential: a store node sells, receives, counts and syncs its
/// own site; it cannot manage access.
const DEVICE_ROLE: Role = Role::Manager;

/// Routes behind authentication (owners and admins).
pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .post(
            "/api/admin/sites/{site_id}/activation-codes",
            create_code,
            doc("A one-time code that activates a store node for the site (owners and admins)")
                .created_object(),
        )
        .delete(
            "/api/admin/sites/{site_id}/activation-codes/{code}",
            revoke_code,
            doc("Revoke an unused activation code"),
        )
}

/// `POST /activate`: public, throttled.
pub fn public_routes() -> ApiRoutes {
    ApiRoutes::new().post(
        "/activate",
        activate,
        doc("A store node trades a one-time activation code for its device credential")
            .body::<ActivateBody>()
            .created_object()
            .errors(&[409, 410, 429]),
    )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CodeRequest {
    ttl_secs: Option<u64>,
}

/// Six decimal digits from the OS random source.
fn draw_code() -> String {
    let token = random_token("");
    let n = token
        .bytes()
        .fold(0u64, |acc, b| acc.wrapping_mul(131).wrapping_add(b as u64));
    format!("{:06}", n % 1_000_000)
}

async fn create_code(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path(site): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    p.require(Action::ManageAccess)?;
    let has_body = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some();
    let body: CodeRequest = if has_body {
        json_body(request, &state).await?
    } else {
        CodeRequest::default()
    };
    let ttl = body
        .ttl_secs
        .map_or(DEFAULT_CODE_TTL, Duration::from_secs)
        .min(MAX_CODE_TTL)
        .max(Duration::from_secs(1));
    let now = now_millis();
    let expires_at = now + ttl.as_millis() as i64;
    // A clash with another live code is possible (10⁶ codes): draw again.
    for _ in 0..20 {
        let code = draw_code();
        let (hash, tenant, at, by) = (
            digest(&code),
            p.tenant.to_string(),
            site.clone(),
            p.id.to_string(),
        );
        // The code itself is a secret: the entry names the site and expiry only.
        let entry = audit_entry(
            &p,
            "activation_code:create",
            &site,
            json!({"siteId": site, "expiresAt": iso8601(expires_at)}),
        );
        match state
            .store
            .sync(move |s| {
                s.create_activation_code(&hash, &tenant, &at, &by, now, expires_at)?;
                s.audit(&entry)
            })
            .await
        {
            Ok(()) => {
                tracing::info!(tenant = %p.tenant, site = %site, by = %p.id, "activation code created");
                return Ok((
                    StatusCode::CREATED,
                    Json(json!({"code": code, "siteId": site, "expiresAt": iso8601(expires_at)})),
                ));
            }
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "too many live activation codes; revoke or use some and retry",
    ))
}

/// The audit entry of an activation-code change at `site` by `p`.
fn audit_entry(p: &Principal, action: &str, site: &str, after: Value) -> AccountAudit {
    AccountAudit {
        tenant: p.tenant.to_string(),
        user: Some(p.actor().to_string()),
        device: None,
        action: action.to_owned(),
        entity_type: "site",
        entity_id: Some(site.to_owned()),
        after: Some(after.to_string()),
    }
}

async fn revoke_code(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
    Path((site, code)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ManageAccess)?;
    let (hash, tenant, at) = (digest(&code), p.tenant.to_string(), site.clone());
    let entry = audit_entry(&p, "activation_code:revoke", &site, json!({"siteId": site}));
    let revoked = state
        .store
        .sync(move |s| {
            let revoked = s.revoke_activation_code(&tenant, &at, &hash, now_millis())?;
            if revoked {
                s.audit(&entry)?;
            }
            Ok(revoked)
        })
        .await?;
    if !revoked {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no live activation code {code:?} for site {site:?}"),
        ));
    }
    Ok(Json(
        json!({"success": true, "siteId": site, "revoked": true}),
    ))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
struct ActivateBody {
    code: String,
    name: Option<String>,
}

async fn activate(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<ActivateBody>,
) -> Result<Json<Value>, Response> {
    let ip = addr.ip().to_string();
    let limiter = &state.limits.login_per_ip;
    if let Err(retry) = limiter.blocked(&ip) {
        return Err(too_many(retry));
    }
    let failed = |code: &'static str, status: StatusCode, message: &str| {
        let _ = limiter.hit(&ip);
        tracing::warn!(ip = %ip, reason = code, "activation refused");
        ApiError::new(status, code, message).into_response()
    };
    let code = body.code.trim().to_owned();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(failed(
            "invalid_code",
            StatusCode::BAD_REQUEST,
            "an activation code is 6 digits",
        ));
    }
    let device_id = format!("edge-{}", &random_id()[..12]);
    let device_name = body
        .name
        .filter(|n| !n.trim().is_empty() && n.len() <= 100)
        .unwrap_or_else(|| device_id.clone());
    let api_key = random_token(API_KEY_PREFIX);
    let account = Account {
        id: random_id(),
        tenant: String::new(), // the code's
        role: DEVICE_ROLE,
        site: None, // the code's
        modules: None,
    };
    let (hash, key_hash, device, name) = (
        digest(&code),
        digest(&api_key),
        device_id.clone(),
        device_name.clone(),
    );
    let redeemed = state
        .store
        .sync(move |s| {
            s.redeem_activation_code(
                &hash,
                now_millis(),
                &device,
                &name,
                (&account, &name, &key_hash),
            )
        })
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    match redeemed {
        Redeemed::Activated { tenant, site } => {
            tracing::info!(%tenant, %site, device = %device_id, ip = %ip, "store node activated");
            let entry = AccountAudit {
                tenant: tenant.clone(),
                user: None,
                device: Some(device_id.clone()),
                action: "site:activate".into(),
                entity_type: "site",
                entity_id: Some(site.clone()),
                after: Some(
                    json!({"siteId": site, "deviceId": device_id, "deviceName": device_name})
                        .to_string(),
                ),
            };
            if let Err(e) = state.store.sync(move |s| s.audit(&entry)).await {
                tracing::warn!(error = %e, "could not write the activation's audit entry");
            }
            Ok(Json(json!({
                "success": true,
                "tenantId": tenant,
                "siteId": site,
                "deviceId": device_id,
                "deviceName": device_name,
                "apiKey": api_key,
                "config": {
                    "syncIntervalMinutes": 5,
                    "pushBatchSize": 50,
                    "wsPath": state.config.ws_path,
                    "syncRules": state.config.sync_rules,
                },
            })))
        }
        Redeemed::Unknown => Err(failed(
            "activation_code_unknown",
            StatusCode::NOT_FOUND,
            "no such activation code",
        )),
        Redeemed::Used => Err(failed(
            "activation_code_used",
            StatusCode::CONFLICT,
            "this activation code was already used; ask for a new one",
        )),
        Redeemed::Expired => Err(failed(
            "activation_code_expired",
            StatusCode::GONE,
            "this activation code has expired; ask for a new one",
        )),
        Redeemed::Revoked => Err(failed(
            "activation_code_revoked",
            StatusCode::GONE,
            "this activation code was revoked; ask for a new one",
        )),
    }
}
