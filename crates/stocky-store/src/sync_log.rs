//! The log of sync rounds (seed 004 `SyncLog`, seed 003 `sync_logs`): what kind of round
//! ran (push, pull, users), how many records it moved, whether it succeeded and why not,
//! when it started and ended — at an edge, its own rounds; at the hub, each store's, by
//! tenant and site. Bounded: writing a row keeps only the newest [`KEEP`] of its site
//! (of the whole log at an edge, which has one), give or take the rows written since the
//! last prune.

use crate::sql::{args, DbError};
use crate::{StoreError, SyncTables};

/// Rows kept per site (and at an edge), at least.
pub const KEEP: i64 = 1000;
/// One write in this many prunes the log.
const PRUNE_EVERY: i64 = 64;

/// One round.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncLogEntry {
    /// `push`, `pull`, `users`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub records_affected: u64,
    /// `success` or `failed`.
    pub status: String,
    pub error: Option<String>,
    /// Milliseconds since the epoch.
    pub started_at: i64,
    pub completed_at: i64,
    /// The store's tenant and site, at the hub; none at an edge.
    #[serde(skip)]
    pub site: Option<(String, String)>,
}

impl SyncLogEntry {
    /// A round of `kind` from `started` to `completed` that moved `Ok(records)` or failed
    /// with `Err(why)`; `site` at the hub.
    pub fn round(
        kind: &str,
        (started, completed): (i64, i64),
        outcome: Result<u64, String>,
        site: Option<(String, String)>,
    ) -> Self {
        let (records_affected, status, error) = match outcome {
            Ok(records) => (records, "success", None),
            Err(why) => (0, "failed", Some(why)),
        };
        SyncLogEntry {
            kind: kind.to_owned(),
            records_affected,
            status: status.to_owned(),
            error,
            started_at: started,
            completed_at: completed,
            site,
        }
    }
}

impl SyncTables<'_> {
    /// Appends a round and drops the rows of its site beyond the newest [`KEEP`].
    pub fn log_sync(&mut self, entry: &SyncLogEntry) -> Result<(), StoreError> {
        let (tenant, site) = entry
            .site
            .as_ref()
            .map_or(("", ""), |(t, s)| (t.as_str(), s.as_str()));
        let id = self
            .0
            .query_one(
                "INSERT INTO sync_log (kind, records, status, error, started_at, completed_at,
                tenant_id, site_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
                args![
                    &entry.kind,
                    entry.records_affected as i64,
                    &entry.status,
                    &entry.error,
                    entry.started_at,
                    entry.completed_at,
                    tenant,
                    site
                ],
            )?
            .int(0)?;
        // Pruned now and then (the bound is KEEP plus at most PRUNE_EVERY rows); both
        // scans use the (tenant_id, site_id, id) index: this site's rows only.
        if id % PRUNE_EVERY != 0 {
            return Ok(());
        }
        self.0.execute(
            "DELETE FROM sync_log WHERE tenant_id = $1 AND site_id = $2
               AND id <= (SELECT MAX(id) FROM sync_log WHERE tenant_id = $1 AND site_id = $2) - $3",
            args![tenant, site, KEEP],
        )?;
        Ok(())
    }

    /// The newest `limit` rounds (of `site` = (tenant, site) at the hub), newest first.
    pub fn sync_log(
        &mut self,
        site: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<SyncLogEntry>, StoreError> {
        let (tenant, at) = site.unwrap_or(("", ""));
        let rows = self.0.query(
            "SELECT kind, records, status, error, started_at, completed_at, tenant_id, site_id
             FROM sync_log WHERE tenant_id = $1 AND site_id = $2
             ORDER BY id DESC LIMIT $3",
            args![tenant, at, limit as i64],
        )?;
        rows.into_iter()
            .map(|mut r| {
                Ok(SyncLogEntry {
                    kind: r.text(0)?,
                    records_affected: r.int(1)? as u64,
                    status: r.text(2)?,
                    error: r.opt_text(3)?,
                    started_at: r.int(4)?,
                    completed_at: r.int(5)?,
                    site: Some((r.text(6)?, r.text(7)?)).filter(|(t, _)| !t.is_empty()),
                })
            })
            .collect::<Result<_, DbError>>()
            .map_err(StoreError::from)
    }
}
