//! Rotating a store node's device credential, in two steps so that a node that fails
//! half-way is never locked out:
//!
//! 1. `POST /api/sync/credential/rotate` with the current key: a new key for the same
//!    device (same role, site and modules, bound to the device) → `{"apiKey","keyId"}`,
//!    shown once. The current key keeps working; any older key of the device is revoked.
//! 2. The node stores the new key, then calls `POST /api/sync/credential/retire` with it:
//!    every other key of the device is revoked.
//!
//! Only device credentials may call either. A node that crashes between the steps still
//! holds a working key (the old one, or the new one it saved) and rotates again.

use axum::extract::State;
use axum::{Extension, Json};
use serde_json::{json, Value};
use stocky_server::auth::{digest, random_token, Principal, API_KEY_PREFIX};
use stocky_server::error::ApiError;
use stocky_server::openapi::{doc, ApiRoutes};
use stocky_server::{random_id, AppState};
use stocky_store::Account;

pub fn routes() -> ApiRoutes {
    ApiRoutes::new()
        .post(
            "/api/sync/credential/rotate",
            rotate,
            doc("A store node gets a new device key; the old one keeps working until retired"),
        )
        .post(
            "/api/sync/credential/retire",
            retire,
            doc("A store node retires its previous device key once it holds the new one"),
        )
}

async fn rotate(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let device = p.require_store_node("rotate its credential")?.0.to_string();
    let account = Account {
        id: random_id(),
        tenant: p.tenant.to_string(),
        role: p.role,
        site: p.site.as_deref().map(str::to_owned),
        modules: p.modules.as_deref().map(<[String]>::to_vec),
    };
    let api_key = random_token(API_KEY_PREFIX);
    let (key_hash, new, current, at) = (
        digest(&api_key),
        account.clone(),
        p.id.to_string(),
        device.clone(),
    );
    let name = format!("{device} (rotated)");
    state
        .store
        .accounts(move |a| {
            a.create_device_key(&new, &at, &name, &key_hash)?;
            // Older keys go now; the caller's stays until the node retires it.
            a.revoke_device_keys_except(&new.tenant, &at, [&new.id, &current])
        })
        .await?;
    tracing::info!(tenant = %p.tenant, %device, "device credential rotated");
    Ok(Json(
        json!({"success": true, "apiKey": api_key, "keyId": account.id, "deviceId": device}),
    ))
}

async fn retire(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    let device = p.require_store_node("rotate its credential")?.0.to_string();
    let (tenant, at, keep) = (p.tenant.to_string(), device.clone(), p.id.to_string());
    let revoked = state
        .store
        .accounts(move |a| a.revoke_device_keys_except(&tenant, &at, [&keep, &keep]))
        .await?;
    tracing::info!(tenant = %p.tenant, %device, revoked, "older device credentials retired");
    Ok(Json(
        json!({"success": true, "revoked": revoked, "deviceId": device}),
    ))
}
