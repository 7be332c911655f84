//! `POST /api/sync/credential/rotate` at the edge (its local admins): replaces the device
//! credential with a new one from the hub, without a moment in which the edge holds no
//! working key (the hub's two steps, `crates/stocky-hub/src/device_key.rs`):
//!
//! 1. the hub issues a new key (the current one still works);
//! 2. the edge writes it to `edge.json` (atomically) and uses it from then on, in every
//!    worker and on its next connection to the hub;
//! 3. with the new key it retires the old one at the hub.
//!
//! A failure before step 2 changes nothing; after it, the edge already works with the new
//! key, and retiring can be repeated by rotating again. A `REMOTE_API_KEY` / `--api-key`
//! override is not changed: unset it, or the next start uses the retired key.

use std::path::PathBuf;
use stocky_server::openapi::{doc, ApiRoutes};

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use stocky_client::{Client, Credential};
use stocky_core::auth::Action;
use stocky_server::auth::Principal;
use stocky_server::error::ApiError;
use stocky_server::AppState;

use crate::config::EdgeConfig;

/// The hub client the workers share, and where `edge.json` lives.
#[derive(Clone)]
pub(crate) struct Rotation {
    pub hub: Client,
    pub data_dir: PathBuf,
}

pub(crate) fn routes(rotation: Rotation) -> ApiRoutes {
    ApiRoutes::new()
        .post(
            "/api/sync/credential/rotate",
            rotate,
            doc("Rotate this store node's device key at the hub (owners and admins)")
                .errors(&[502]),
        )
        .map_router(|router| router.layer(Extension(rotation)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rotated {
    api_key: String,
    key_id: String,
}

fn upstream(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, "hub_unavailable", e.to_string())
}

async fn rotate(
    State(_): State<AppState>,
    Extension(p): Extension<Principal>,
    Extension(rotation): Extension<Rotation>,
) -> Result<Json<Value>, ApiError> {
    p.require(Action::ManageAccess)?;
    let rotated: Rotated = rotation
        .hub
        .post("/api/sync/credential/rotate", &json!({}))
        .await
        .map_err(upstream)?;
    let mut config = EdgeConfig::load(&rotation.data_dir)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    config.api_key = rotated.api_key.clone();
    config
        .save(&rotation.data_dir)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    rotation
        .hub
        .set_credential(Credential::Token(rotated.api_key));
    let retired: Value = rotation
        .hub
        .post("/api/sync/credential/retire", &json!({}))
        .await
        .map_err(upstream)?;
    tracing::info!(key = %rotated.key_id, by = %p.id, "device credential rotated");
    Ok(Json(json!({
        "success": true,
        "keyId": rotated.key_id,
        "retired": retired["revoked"],
    })))
}
