//! Store nodes at the hub (seed 003 `sedes`): while a store's device credential holds a
//! live WebSocket, its site is online; every answered ping refreshes `lastPingAt`; every
//! push or pull records `lastSyncAt` (and a pull its `syncVersion`, the hub event id the
//! node has pulled up to) — the sync routes write those marks together with their log
//! entry (`rest::sync::record_round`). A change between online and offline is a `site:status` event
//! (admins only) that back-office pages watch.
//!
//! Invariants: only device credentials ([`Principal::device`]) touch a site's state; a
//! site whose node's connection died with its hub instance drops to offline once its last
//! ping is older than three ping intervals ([`online_window`]); failures to record state
//! are logged and never fail the connection or the request that caused them.

use std::time::Duration;

use serde_json::json;
use stocky_core::time::{iso8601, now_millis};
use stocky_store::{Command, Origin};

use crate::auth::Principal;
use crate::AppState;

/// The event announcing a site's node went online or offline.
pub const SITE_STATUS_EVENT: &str = "site:status";

/// How recent a ping must be for a site to count as online.
pub fn online_window(state: &AppState) -> Duration {
    state.config.ping_interval * 3
}

/// The oldest ping time (milliseconds) that still counts as online now.
pub fn fresh_after(state: &AppState) -> i64 {
    now_millis() - online_window(state).as_millis() as i64
}

/// The device credential's (device, site), if this principal is one.
fn node(p: &Principal) -> Option<(String, String)> {
    let (device, site) = p.store_node()?;
    Some((device.to_string(), site.to_string()))
}

/// A store node's live connection `connection` opened.
pub async fn connected(state: &AppState, p: &Principal, connection: &str) {
    let Some((device, site)) = node(p) else {
        return;
    };
    let (tenant, at, conn, now, fresh) = (
        p.tenant.to_string(),
        site.clone(),
        connection.to_owned(),
        now_millis(),
        fresh_after(state),
    );
    match state
        .store
        .sync(move |s| s.site_online(&tenant, &at, &conn, now, fresh))
        .await
    {
        Ok(true) => announce(state, p, &site, &device, true, now).await,
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, %site, "could not mark the site online"),
    }
}

/// A store node answered a ping.
pub async fn alive(state: &AppState, p: &Principal) {
    let Some((_, site)) = node(p) else {
        return;
    };
    let (tenant, now) = (p.tenant.to_string(), now_millis());
    if let Err(e) = state
        .store
        .sync(move |s| s.site_ping(&tenant, &site, now))
        .await
    {
        tracing::debug!(error = %e, "could not record the site's ping");
    }
}

/// A store node's live connection `connection` closed.
pub async fn disconnected(state: &AppState, p: &Principal, connection: &str) {
    let Some((device, site)) = node(p) else {
        return;
    };
    let (tenant, at, conn) = (p.tenant.to_string(), site.clone(), connection.to_owned());
    match state
        .store
        .sync(move |s| s.site_offline(&tenant, &at, &conn))
        .await
    {
        Ok(true) => announce(state, p, &site, &device, false, now_millis()).await,
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, %site, "could not mark the site offline"),
    }
}

async fn announce(
    state: &AppState,
    p: &Principal,
    site: &str,
    device: &str,
    online: bool,
    now: i64,
) {
    let mut origin = Origin::system(p.tenant.clone(), site.into(), "presence");
    origin.device = Some(device.into());
    let command = Command::Publish {
        event: SITE_STATUS_EVENT.into(),
        data: json!({
            "siteId": site,
            "deviceId": device,
            "isOnline": online,
            "lastPingAt": iso8601(now),
        }),
    };
    if let Err(e) = state.store.submit(command, origin).await {
        tracing::warn!(error = %e, %site, "could not announce the site's status");
    }
}
