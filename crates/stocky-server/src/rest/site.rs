//! Which site a request acts on: `?siteId=` (seed 003's `sedeId` accepted) on stock reads
//! and commands, `siteId` in sync bodies; by default the caller's home site (or `default`).
//!
//! Invariants: a principal with a home site may name only that site; owners and admins
//! (no home site) may name any site of their tenant; a named site must exist in the
//! caller's tenant (`404`), so a wrong name never reads or writes an empty phantom site.

use std::sync::Arc;

use axum::http::StatusCode;
use serde::Deserialize;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::AppState;

/// `?siteId=` / `?sedeId=`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct SiteQuery {
    /// The site to act on (owners and admins: any site of their tenant); default: the
    /// caller's home site.
    #[serde(rename = "siteId", alias = "sedeId")]
    pub site_id: Option<String>,
}

/// The site the request acts on.
pub async fn target_site(
    state: &AppState,
    p: &Principal,
    named: Option<&str>,
) -> Result<Arc<str>, ApiError> {
    let Some(site) = named else {
        return Ok(p.home_site());
    };
    if !p.sees_site(site) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("site {site:?} is not yours"),
        ));
    }
    if Some(site) == p.site.as_deref() {
        return Ok(site.into());
    }
    let (tenant, known) = (p.tenant.to_string(), site.to_owned());
    if !state
        .store
        .accounts(move |a| a.site_exists(&tenant, &known))
        .await?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("site {site:?} not found"),
        ));
    }
    Ok(site.into())
}

/// The site a listing is narrowed to: none (every site of the tenant) for owners and
/// admins without a home site who name none; otherwise [`target_site`].
pub async fn listing_site(
    state: &AppState,
    p: &Principal,
    named: Option<&str>,
) -> Result<Option<String>, ApiError> {
    if named.is_none() && p.site.is_none() && p.role.is_admin() {
        return Ok(None);
    }
    Ok(Some(target_site(state, p, named).await?.to_string()))
}
