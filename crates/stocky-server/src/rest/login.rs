//! `POST /api/auth/login`, `/refresh`, `/logout`, `/password` and `GET /api/auth/me`.
//!
//! Login checks an argon2 password hash (on a blocking thread) and opens a session: an
//! access token (JWT carrying `{userId, tenantId, siteId, role, modules, sid, exp}`) and a
//! refresh token (stored hashed, rotated on every use). Logout revokes the session, which
//! also invalidates its access tokens. Failed logins are throttled per email and per IP
//! (each attempt reserves its place before the password is checked; a success gives it
//! back), password checks run at most one per core at a time, and every failure says the
//! same thing. A wrong current password in a password change counts as a failed login.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use stocky_core::accounts::check_password;
use stocky_core::accounts::email_key;
use stocky_core::api::{LoginRequest, PasswordChange, RefreshRequest, SessionUser, TokenGrant};
use stocky_core::auth::{sign, Claims};
use stocky_core::time::{iso8601, now_millis};
use stocky_store::{Account, UserChanged};

use super::too_many;
use crate::auth::{
    self, digest, hash_password_off_thread, password_matches, random_token, unauthorized, Principal,
};
use crate::error::{ApiError, ApiJson};
use crate::AppState;

/// A new access token for `account` in session `sid`, and the answer that carries it.
fn issue(state: &AppState, account: &Account, sid: &str, refresh_token: &str) -> TokenGrant {
    let now = now_millis() / 1000;
    let exp = now + state.config.access_ttl.as_secs() as i64;
    let claims = Claims {
        user_id: account.id.clone(),
        tenant_id: account.tenant.clone(),
        site_id: account.site.clone(),
        role: account.role,
        modules: account.modules.clone(),
        sid: sid.to_owned(),
        exp,
        iat: now,
    };
    TokenGrant {
        access_token: sign(&claims, state.auth.jwt_secret()),
        refresh_token: refresh_token.to_owned(),
        token_type: "Bearer".into(),
        expires_in: state.config.access_ttl.as_secs(),
        expires_at: iso8601(exp * 1000),
        user: SessionUser {
            user_id: account.id.clone(),
            tenant_id: account.tenant.clone(),
            site_id: account.site.clone(),
            role: account.role,
            modules: account.modules.clone(),
        },
    }
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<TokenGrant>, Response> {
    let email = email_key(&body.email);
    let ip = addr.ip().to_string();
    reserve_password_check(&state, &ip, &email).map_err(too_many)?;
    let lookup = email.clone();
    let user = state
        .store
        .accounts(move |a| a.user_by_email(&lookup))
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    let password = body.password;
    let checked = auth::password_work_off_thread(move || match user {
        Some(user) if password_matches(&password, &user.password_hash) => Some(user),
        Some(_) => None,
        // Spend the same time on unknown emails, so timing does not reveal which exist.
        None => {
            let _ = password_matches(&password, DUMMY_HASH);
            None
        }
    })
    .await
    .map_err(IntoResponse::into_response)?;
    let Some(user) = checked else {
        tracing::info!("login failed");
        return Err(unauthorized().into_response());
    };
    password_check_passed(&state, &ip, &email);
    let sid = crate::random_id();
    let refresh = random_token("rt_");
    let expires = now_millis() + state.config.refresh_ttl.as_millis() as i64;
    let (account, device, sid_in, refresh_hash) = (
        user.account.clone(),
        body.device_id,
        sid.clone(),
        digest(&refresh),
    );
    state
        .store
        .accounts(move |a| {
            a.create_session(&sid_in, &account, device.as_deref(), &refresh_hash, expires)
        })
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    Ok(Json(issue(&state, &user.account, &sid, &refresh)))
}

/// Counts a password check of `email` from `ip` against the login limits before it runs,
/// atomically with the limit check, so a burst of simultaneous attempts cannot run more
/// checks than the limits allow; `Err(retry_after)` past either.
fn reserve_password_check(state: &AppState, ip: &str, email: &str) -> Result<(), Duration> {
    let limits = &state.limits;
    let reserved = limits.login_per_ip.hit(ip).and_then(|()| {
        limits
            .login_per_email
            .hit(email)
            .inspect_err(|_| limits.login_per_ip.refund(ip))
    });
    if reserved.is_err() {
        state.metrics.rate_limited("login");
    }
    reserved
}

/// A reserved password check passed: the address gets its place back and the email's
/// failures are forgotten.
fn password_check_passed(state: &AppState, ip: &str, email: &str) {
    state.limits.login_per_ip.refund(ip);
    state.limits.login_per_email.reset(email);
}

/// An argon2 hash of a random string, checked against for unknown emails.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$7Bm0CyWOVsVHB3SPe0ZaQqLPtm5AQLG1qTz3oYWShJs";

/// `POST /api/auth/refresh`. It carries no credential header, so it is limited here as the
/// `/api` middleware limits the others: per client IP, and an unknown refresh token counts
/// as a bad credential of that IP (past the limit, `429` until the window ends).
pub async fn refresh(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenGrant>, Response> {
    let ip = addr.ip().to_string();
    let limits = &state.limits;
    if let Some(refused) = auth::throttled_ip_refusal(&state, &ip) {
        return Err(refused);
    }
    if let Err(retry) = limits.per_ip.hit(&ip) {
        state.metrics.rate_limited("ip");
        return Err(too_many(retry));
    }
    let old = digest(&body.refresh_token);
    let refresh = random_token("rt_");
    let new = digest(&refresh);
    let now = now_millis();
    let session = state
        .store
        .accounts(move |a| a.rotate_session(&old, &new, now))
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    let Some(session) = session else {
        let _ = limits.failed_auth_per_ip.hit(&ip);
        return Err(unauthorized().into_response());
    };
    Ok(Json(issue(&state, &session.account, &session.id, &refresh)))
}

pub async fn logout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<super::Acknowledged>, ApiError> {
    let Some(sid) = principal.session.clone() else {
        return Err(ApiError::bad_request(
            "not_a_session",
            "only a login session can log out; revoke API keys instead",
        ));
    };
    state
        .store
        .accounts(move |a| a.revoke_session(&sid))
        .await?;
    Ok(Json(super::Acknowledged { success: true }))
}

/// `POST /api/auth/password`: a signed-in user changes their own password, giving the
/// current one. Their other sessions end; this one stays.
pub async fn change_password(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Extension(p): Extension<Principal>,
    request: axum::extract::Request,
) -> Result<Json<super::Acknowledged>, Response> {
    let Some(sid) = p.session.clone().filter(|_| p.kind == auth::Kind::User) else {
        return Err(ApiError::bad_request(
            "not_a_session",
            "only a signed-in user has a password to change",
        )
        .into_response());
    };
    super::admin::users_are_local(&state).map_err(IntoResponse::into_response)?;
    // Read once the caller is known to have a password here.
    let body: PasswordChange = super::json_body(request, &state)
        .await
        .map_err(IntoResponse::into_response)?;
    check_password(&body.new_password)
        .map_err(|e| ApiError::bad_request("weak_password", e.0).into_response())?;
    let (tenant, id) = (p.tenant.to_string(), p.id.to_string());
    let user = state
        .store
        .accounts(move |a| a.user_login(&tenant, &id))
        .await
        .map_err(|e| ApiError::from(e).into_response())?
        .ok_or_else(|| unauthorized().into_response())?;
    // Throttled as a login of this email from this address.
    let (ip, email) = (addr.ip().to_string(), email_key(&user.email));
    reserve_password_check(&state, &ip, &email).map_err(too_many)?;
    let (current, hash) = (body.current_password, user.password_hash);
    let matches = auth::password_work_off_thread(move || password_matches(&current, &hash))
        .await
        .map_err(IntoResponse::into_response)?;
    if !matches {
        tracing::info!("password change refused: wrong current password");
        return Err(ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "wrong_password",
            "the current password is not right",
        )
        .into_response());
    }
    password_check_passed(&state, &ip, &email);
    let hash = hash_password_off_thread(body.new_password)
        .await
        .map_err(IntoResponse::into_response)?;
    let entry = super::admin::audit_entry(
        &p,
        "user:password",
        "user",
        &p.id,
        json!({"userId": &*p.id}),
    );
    let (tenant, id) = (p.tenant.to_string(), p.id.to_string());
    let outcome = state
        .store
        .accounts(move |a| {
            a.audited(&entry, |a| {
                a.set_password(&tenant, &id, &hash, Some(&sid), true)
            })
        })
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
    match outcome {
        UserChanged::Done { after, .. } => {
            let site = after.account.site.as_deref();
            super::admin::announce_user_change(&state, &p, &p.id, [site, None]).await;
            Ok(Json(super::Acknowledged { success: true }))
        }
        UserChanged::NotFound | UserChanged::OwnerOnly => Err(unauthorized().into_response()),
    }
}

pub async fn me(Extension(p): Extension<Principal>) -> Json<Value> {
    let kind = match p.kind {
        auth::Kind::User => "user",
        auth::Kind::ApiKey => "api_key",
        auth::Kind::AdminToken => "admin_token",
        auth::Kind::Dev => "dev",
    };
    Json(json!({
        "userId": &*p.id,
        "tenantId": &*p.tenant,
        "siteId": p.site.as_deref(),
        "role": p.role,
        "modules": p.modules.as_deref(),
        "kind": kind,
    }))
}
