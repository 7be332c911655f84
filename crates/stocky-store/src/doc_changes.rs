//! Document changes in log order, for sync between tiers: every write stamps a record
//! with the event id that changed it and who did ([`crate::documents`]), so "what changed
//! after this point" is a range scan on `(tenant, event_id, db, store, id)`.
//!
//! Invariants: the cursor is a position in that order (the last change handed out), so a
//! reader that pages with it never misses or repeats a change; a record changed again
//! moves to its new event, and a reader behind it sees only its latest revision (which
//! is all a merge needs). Hard deletions (dropping a database) leave nothing to see:
//! they do not sync.

use serde_json::Value;

use crate::documents::{render, tombstone};
use crate::sql::{args, DbError};
use crate::{StoreError, SyncTables};

/// A position in the change order: after `(event_id, db, store, id)`; the default is the
/// start, and `(n, "", "", "")` is "everything up to event `n`".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocCursor {
    pub event_id: u64,
    pub db: String,
    pub store: String,
    pub id: String,
}

/// One record's latest revision.
#[derive(Debug, Clone, PartialEq)]
pub struct DocChange {
    pub db: String,
    pub store: String,
    /// As rendered by the server (`id`, `version`, timestamps, fields); a tombstone has
    /// `_deleted: true`.
    pub record: Value,
    pub modified_by: Option<String>,
    pub cursor: DocCursor,
}

impl SyncTables<'_> {
    /// How many records of `tenant` changed after `after`, leaving out those last changed
    /// by `skip_by` (a count, not a read of them).
    pub fn documents_changed_since(
        &mut self,
        tenant: &str,
        after: &DocCursor,
        skip_by: Option<&str>,
    ) -> Result<u64, StoreError> {
        let row = self.0.query_one(
            "SELECT COUNT(*) FROM documents
             WHERE tenant_id = $1 AND (event_id, db, store, id) > ($2, $3, $4, $5)
               AND ($6 = '' OR modified_by IS NULL OR modified_by <> $6)",
            args![
                tenant,
                after.event_id as i64,
                after.db.as_str(),
                after.store.as_str(),
                after.id.as_str(),
                skip_by.unwrap_or("")
            ],
        )?;
        Ok(row.int(0)? as u64)
    }

    /// Up to `limit` records of `tenant` changed after `after`, in change order, leaving
    /// out those last changed by `skip_by`.
    pub fn documents_after(
        &mut self,
        tenant: &str,
        after: &DocCursor,
        limit: usize,
        skip_by: Option<&str>,
    ) -> Result<Vec<DocChange>, StoreError> {
        let rows = self.0.query(
            "SELECT event_id, db, store, id, body, version, created_at, updated_at,
                deleted_at IS NOT NULL, modified_by
             FROM documents
             WHERE tenant_id = $1 AND (event_id, db, store, id) > ($2, $3, $4, $5)
               AND ($6 = '' OR modified_by IS NULL OR modified_by <> $6)
             ORDER BY event_id, db, store, id LIMIT $7",
            args![
                tenant,
                after.event_id as i64,
                after.db.as_str(),
                after.store.as_str(),
                after.id.as_str(),
                skip_by.unwrap_or(""),
                limit as i64
            ],
        )?;
        rows.into_iter()
            .map(|mut r| {
                let cursor = DocCursor {
                    event_id: r.int(0)? as u64,
                    db: r.text(1)?,
                    store: r.text(2)?,
                    id: r.text(3)?,
                };
                let (version, created_at, updated_at) = (r.int(5)?, r.int(6)?, r.int(7)?);
                let record = if r.bool(8)? {
                    tombstone(&cursor.id, version, updated_at)
                } else {
                    render(&cursor.id, &r.text(4)?, version, created_at, updated_at)
                };
                Ok(DocChange {
                    db: cursor.db.clone(),
                    store: cursor.store.clone(),
                    record,
                    modified_by: r.opt_text(9)?,
                    cursor,
                })
            })
            .collect::<Result<_, DbError>>()
            .map_err(StoreError::from)
    }
}
