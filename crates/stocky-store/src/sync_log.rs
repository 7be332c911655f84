//! The log of sync rounds (seed 004 `SyncLog`): what kind of round ran (push, pull,
//! users), how many records it moved, whether it succeeded and why not, when it started
//! and ended. Bounded: writing a row keeps only the newest [`KEEP`].

use crate::sql::{args, DbError};
use crate::{StoreError, SyncTables};

/// Rows kept.
pub const KEEP: i64 = 1000;

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
}

impl SyncTables<'_> {
    /// Appends a round and drops the rows beyond the newest [`KEEP`].
    pub fn log_sync(&mut self, entry: &SyncLogEntry) -> Result<(), StoreError> {
        self.0.execute(
            "INSERT INTO sync_log (kind, records, status, error, started_at, completed_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            args![
                &entry.kind,
                entry.records_affected as i64,
                &entry.status,
                &entry.error,
                entry.started_at,
                entry.completed_at
            ],
        )?;
        self.0.execute(
            "DELETE FROM sync_log WHERE id <= (SELECT MAX(id) FROM sync_log) - $1",
            args![KEEP],
        )?;
        Ok(())
    }

    /// The newest `limit` rounds, newest first.
    pub fn sync_log(&mut self, limit: usize) -> Result<Vec<SyncLogEntry>, StoreError> {
        let rows = self.0.query(
            "SELECT kind, records, status, error, started_at, completed_at FROM sync_log
             ORDER BY id DESC LIMIT $1",
            args![limit as i64],
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
                })
            })
            .collect::<Result<_, DbError>>()
            .map_err(StoreError::from)
    }
}
