//! The edge's sync log (seed 004 `SyncLog`): one row per push, pull or users round that
//! moved something or failed — idle rounds are not logged, so the bounded log keeps
//! history rather than heartbeats. `GET /api/sync/log` lists it, newest first.

use stocky_core::time::now_millis;
use stocky_store::{Store, SyncLogEntry};

use crate::push::PushError;

/// Records a round of `kind` started at `started` that moved `result` records.
pub(crate) async fn record(
    store: &Store,
    kind: &'static str,
    started: i64,
    result: Result<u64, &PushError>,
) {
    let outcome = match result {
        Ok(0) => return,
        Ok(records) => Ok(records),
        Err(e) => Err(e.to_string()),
    };
    let entry = SyncLogEntry::round(kind, (started, now_millis()), outcome, None);
    if let Err(e) = store.sync(move |s| s.log_sync(&entry)).await {
        tracing::debug!(error = %e, "could not write the sync log");
    }
}
