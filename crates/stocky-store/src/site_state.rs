//! A site's store-node state at the hub (seed 003 `sedes`: `is_online`, `last_ping_at`,
//! `sync_version`, plus `last_sync_at`), kept on the `sites` row.
//!
//! Invariants:
//! - a site is online while a connection of its device holds `online_connection` and has
//!   pinged within the freshness window the reader gives: a hub instance that died with
//!   the connection open cannot keep a site "online" past that window;
//! - only the connection that marked a site online can mark it offline, so a reconnect
//!   that lands on another instance before the old socket closes is not undone;
//! - `sync_version` only grows: it is the hub event id the site's node has pulled up to.

use stocky_core::api::OutboxReport;

use crate::sql::{args, DbError};
use crate::{StoreError, SyncTables};

/// One site as admins see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteState {
    pub id: String,
    pub name: String,
    pub is_online: bool,
    /// Milliseconds since the epoch.
    pub last_ping_at: Option<i64>,
    pub last_sync_at: Option<i64>,
    pub sync_version: u64,
    /// The node's outbox as it last reported it; `None` before its first report.
    pub outbox: Option<OutboxReport>,
}

impl SyncTables<'_> {
    /// Connection `connection` of the site's device is open; `true` when the site was not
    /// online before (a state change worth an event).
    pub fn site_online(
        &mut self,
        tenant: &str,
        site: &str,
        connection: &str,
        now: i64,
        fresh_after: i64,
    ) -> Result<bool, StoreError> {
        let was = self
            .0
            .query_opt(
                "SELECT online_connection IS NOT NULL AND COALESCE(last_ping_at >= $3, FALSE) FROM sites
                 WHERE tenant_id = $1 AND id = $2",
                args![tenant, site, fresh_after],
            )?
            .map(|r| r.bool(0))
            .transpose()?
            .unwrap_or(false);
        self.0.execute(
            "UPDATE sites SET online_connection = $3, last_ping_at = $4
             WHERE tenant_id = $1 AND id = $2",
            args![tenant, site, connection, now],
        )?;
        Ok(!was)
    }

    /// The site's node showed it is alive (a ping answered, a sync request).
    pub fn site_ping(&mut self, tenant: &str, site: &str, now: i64) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE sites SET last_ping_at = $3 WHERE tenant_id = $1 AND id = $2",
            args![tenant, site, now],
        )?;
        Ok(())
    }

    /// Connection `connection` closed; `true` when it was the one keeping the site online.
    pub fn site_offline(
        &mut self,
        tenant: &str,
        site: &str,
        connection: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.0.execute(
            "UPDATE sites SET online_connection = NULL
             WHERE tenant_id = $1 AND id = $2 AND online_connection = $3",
            args![tenant, site, connection],
        )? > 0)
    }

    /// The site's node pushed or pulled; a pull says how far (`version`, a hub event id)
    /// and may report the node's outbox.
    pub fn site_synced(
        &mut self,
        tenant: &str,
        site: &str,
        now: i64,
        version: Option<u64>,
        outbox: Option<&OutboxReport>,
    ) -> Result<(), StoreError> {
        self.0.execute(
            "UPDATE sites SET last_sync_at = $3, last_ping_at = $3,
                sync_version = CASE WHEN $4 > sync_version THEN $4 ELSE sync_version END
             WHERE tenant_id = $1 AND id = $2",
            args![tenant, site, now, version.unwrap_or(0) as i64],
        )?;
        if let Some(o) = outbox {
            let clamp = |n: u64| n.min(i64::MAX as u64) as i64;
            self.0.execute(
                "UPDATE sites SET outbox_pending = $3, outbox_pending_sales = $4,
                    oldest_unsynced_sale_at = $5, outbox_reported_at = $6
                 WHERE tenant_id = $1 AND id = $2",
                args![
                    tenant,
                    site,
                    clamp(o.pending),
                    clamp(o.pending_sales),
                    o.oldest_unsynced_sale_at,
                    now
                ],
            )?;
        }
        Ok(())
    }

    /// Every site of `tenant` with its node's state; online means pinged at or after
    /// `fresh_after` by a connection still open.
    pub fn site_states(
        &mut self,
        tenant: &str,
        fresh_after: i64,
    ) -> Result<Vec<SiteState>, StoreError> {
        let rows = self.0.query(
            "SELECT id, name, online_connection IS NOT NULL AND COALESCE(last_ping_at >= $2, FALSE),
                last_ping_at, last_sync_at, sync_version, outbox_pending, outbox_pending_sales,
                oldest_unsynced_sale_at, outbox_reported_at
             FROM sites WHERE tenant_id = $1 ORDER BY id",
            args![tenant, fresh_after],
        )?;
        rows.into_iter()
            .map(|mut r| {
                Ok(SiteState {
                    id: r.text(0)?,
                    name: r.text(1)?,
                    is_online: r.bool(2)?,
                    last_ping_at: r.opt_int(3)?,
                    last_sync_at: r.opt_int(4)?,
                    sync_version: r.int(5)? as u64,
                    outbox: match r.opt_int(9)? {
                        Some(reported_at) => Some(OutboxReport {
                            pending: r.opt_int(6)?.unwrap_or(0).max(0) as u64,
                            pending_sales: r.opt_int(7)?.unwrap_or(0).max(0) as u64,
                            oldest_unsynced_sale_at: r.opt_int(8)?,
                            reported_at,
                        }),
                        None => None,
                    },
                })
            })
            .collect::<Result<_, DbError>>()
            .map_err(StoreError::from)
    }
}
