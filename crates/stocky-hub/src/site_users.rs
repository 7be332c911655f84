//! `GET /api/sync/users`: a store node downloads the users whose home is its site, with
//! their password hashes, so that they can sign in at the store while the internet is
//! down (seed 003 §7.2). Users, roles and modules are cloud-wins: the edge mirrors this
//! list exactly and never edits it.
//!
//! Only a device credential (an API key issued by activation, bound to its device and
//! site) may call it, and only for its own site: no user token or ordinary API key can
//! read password hashes, whatever its role. Tenant-wide users (owners and admins without
//! a home site) are not sent to stores.

use axum::extract::State;
use axum::{Extension, Json};
use stocky_core::api::{SiteUser, SiteUsers};
use stocky_server::auth::Principal;
use stocky_server::error::ApiError;
use stocky_server::openapi::{doc, ApiRoutes};
use stocky_server::AppState;

pub fn routes() -> ApiRoutes {
    ApiRoutes::new().get(
        "/api/sync/users",
        site_users,
        doc("The users of the store node's site, with the password hashes it needs to sign them in offline (device credentials only)")
            .ok::<SiteUsers>(),
    )
}

async fn site_users(
    State(state): State<AppState>,
    Extension(p): Extension<Principal>,
) -> Result<Json<SiteUsers>, ApiError> {
    let (device, site) = p.require_store_node("download its site's users")?;
    let (tenant, at) = (p.tenant.to_string(), site.to_string());
    let users = state
        .store
        .accounts(move |a| a.site_users(&tenant, &at))
        .await?;
    tracing::info!(tenant = %p.tenant, %site, %device, users = users.len(), "store node downloaded its users");
    Ok(Json(SiteUsers {
        site_id: site.to_string(),
        users: users
            .into_iter()
            .map(|u| SiteUser {
                id: u.account.id,
                email: u.email,
                password_hash: u.password_hash,
                role: u.account.role,
                modules: u.account.modules,
            })
            .collect(),
    }))
}
