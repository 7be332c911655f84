//! The site's users, mirrored from the hub (`GET /api/sync/users`) so that they sign in
//! at the edge with their hub credentials while the internet is down (seed 003 §7.2):
//! the gateway's own `POST /api/auth/login` checks them against the local copy and signs
//! tokens with the edge's key, verified locally.
//!
//! Cloud wins: the local users become exactly the hub's list, under the local tenant and
//! site; a user removed, disabled, demoted or whose password was reset at the hub loses
//! its local sessions at the next refresh. When: at activation, whenever the hub's live
//! stream (re)connects, and at every slow poll.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use stocky_client::{Backoff, Client};
use stocky_core::api::SiteUsers;
use stocky_core::{DEFAULT_SITE, DEFAULT_TENANT};
use stocky_store::{Account, Mirrored, Store, UserLogin};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::push::PushError;
use crate::status::SyncStatus;

/// Downloads the site's users and mirrors them locally.
pub async fn refresh(store: &Store, hub: &Client) -> Result<Mirrored, PushError> {
    let listed = hub.site_users().await?;
    Ok(mirror(store, listed).await?)
}

/// Makes the local users exactly `listed`.
pub(crate) async fn mirror(
    store: &Store,
    listed: SiteUsers,
) -> Result<Mirrored, stocky_store::StoreError> {
    let users: Vec<UserLogin> = listed
        .users
        .into_iter()
        .map(|u| UserLogin {
            account: Account {
                id: u.id,
                tenant: DEFAULT_TENANT.into(),
                role: u.role,
                site: Some(DEFAULT_SITE.into()),
                modules: u.modules,
            },
            email: u.email,
            password_hash: u.password_hash,
        })
        .collect();
    store.accounts(move |a| a.mirror_users(&users)).await
}

/// Refreshes at start, when `wake` is notified and every `interval`, until `shutdown`.
pub async fn run(
    store: Store,
    hub: Client,
    wake: Arc<Notify>,
    interval: Duration,
    status: Arc<Mutex<SyncStatus>>,
    shutdown: CancellationToken,
) {
    let backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };
    let mut failures = 0u32;
    loop {
        let started = stocky_core::time::now_millis();
        let result = refresh(&store, &hub).await;
        let wait = match &result {
            Ok(done) => {
                failures = 0;
                if *done != Mirrored::default() {
                    tracing::info!(
                        added = done.added,
                        changed = done.changed,
                        removed = done.removed,
                        "site users refreshed"
                    );
                }
                interval
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!(error = %e, failures, "users refresh failed; retrying");
                status.lock().unwrap_or_else(|e| e.into_inner()).failed(e);
                backoff.delay(failures).min(interval)
            }
        };
        let records = result
            .as_ref()
            .map(|d| (d.added + d.changed + d.removed) as u64);
        crate::log::record(&store, "users", started, records).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
