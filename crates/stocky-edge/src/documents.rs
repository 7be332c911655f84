//! Document collections (catalog, configuration, customers, …) between the edge and the
//! hub, by the hub's [`SyncRules`] (handed over at activation):
//!
//! - **up**: documents changed locally (every write records its event and origin) after
//!   the push cursor go to `POST /api/sync/push` as `document` operations, for the
//!   collections whose rule goes up; revisions that came from upstream are never sent back;
//! - **down**: the hub's changes arrive with each pull (`documentsCursor`) and are merged
//!   by the collection's rule from the remote side: the same [`resolve`] the hub runs on a
//!   push, so both tiers converge. A merge that combined both sides' fields is a local
//!   change again and goes up once; taken as it is at the hub, it stops there.
//!
//! Cursors live in `sync_state`; a cursor moves only after what is before it is pushed
//! (answered) or merged (committed).
//!
//! [`resolve`]: stocky_core::sync_rules::resolve

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};
use stocky_client::Client;
use stocky_core::documents::{DocWrite, SyncedRecord};
use stocky_core::sync_rules::{Side, SyncRules};
use stocky_core::DEFAULT_TENANT;
use stocky_server::auth::digest;
use stocky_store::{Command, DocCursor, Store, StoreError, UPSTREAM_ORIGIN};

use crate::push::PushError;

/// `sync_state` keys of the document cursors.
pub(crate) const PUSH_CURSOR_KEY: &str = "documents.push.cursor";
pub(crate) const PULL_CURSOR_KEY: &str = "documents.pull.cursor";

/// A document change as a pull answers it.
#[derive(Deserialize)]
pub(crate) struct Pulled {
    db: String,
    store: String,
    record: Value,
}

/// The cursor's text in `sync_state`: `[eventId, db, store, id]`.
pub(crate) fn encode(cursor: &DocCursor) -> String {
    json!([cursor.event_id, cursor.db, cursor.store, cursor.id]).to_string()
}

/// The wire form of a cursor (`documentsCursor`).
pub(crate) fn wire(cursor: &DocCursor) -> Value {
    json!({"eventId": cursor.event_id, "db": cursor.db, "store": cursor.store, "id": cursor.id})
}

/// A cursor from its wire form.
pub(crate) fn from_wire(value: &Value) -> DocCursor {
    let text = |key: &str| value[key].as_str().unwrap_or("").to_owned();
    DocCursor {
        event_id: value["eventId"].as_u64().unwrap_or(0),
        db: text("db"),
        store: text("store"),
        id: text("id"),
    }
}

pub(crate) async fn read_cursor(store: &Store, key: &'static str) -> Result<DocCursor, StoreError> {
    let text = store.sync(move |s| s.state(key)).await?;
    let parsed: Option<(u64, String, String, String)> =
        text.and_then(|t| serde_json::from_str(&t).ok());
    Ok(parsed
        .map(|(event_id, db, store, id)| DocCursor {
            event_id,
            db,
            store,
            id,
        })
        .unwrap_or_default())
}

/// The operation id of one revision: the same revision always has the same id.
fn op_id(db: &str, store: &str, record: &Value) -> String {
    let key = format!(
        "{db}/{store}/{}@{}",
        record["id"].as_str().unwrap_or(""),
        record["version"]
    );
    format!("doc-{}", &digest(&key)[..32])
}

/// Pushes up to `batch` local document changes; returns how many changes it went past.
pub(crate) async fn push_once(
    store: &Store,
    hub: &Client,
    site: &str,
    rules: &SyncRules,
    batch: usize,
) -> Result<usize, PushError> {
    let after = read_cursor(store, PUSH_CURSOR_KEY).await?;
    let changes = store
        .sync(move |s| s.documents_after(DEFAULT_TENANT, &after, batch, Some(UPSTREAM_ORIGIN)))
        .await?;
    let Some(last) = changes.last().map(|c| c.cursor.clone()) else {
        return Ok(0);
    };
    let operations: Vec<Value> = changes
        .iter()
        .filter(|c| rules.rule_for(&c.db, &c.store).direction.goes_up())
        .map(|c| {
            json!({
                "id": op_id(&c.db, &c.store, &c.record),
                "type": "document",
                "db": c.db,
                "store": c.store,
                "record": c.record,
            })
        })
        .collect();
    let refused = crate::retail::push_operations(hub, site, &operations).await?;
    let count = changes.len();
    crate::retail::settle(store, refused, PUSH_CURSOR_KEY, encode(&last)).await?;
    Ok(count)
}

/// Merges the hub's changes into the local collections that come down, one merge per
/// collection (in the order they arrived), marked as upstream.
pub(crate) async fn merge_pulled(
    store: &Store,
    pulled: Vec<Pulled>,
    rules: &SyncRules,
) -> Result<(), PushError> {
    let mut collections: BTreeMap<(String, String), Vec<SyncedRecord>> = BTreeMap::new();
    for change in pulled {
        let record = match SyncedRecord::from_rendered(&change.record) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(db = %change.db, store = %change.store, error = %e, "skipping a document the hub sent");
                continue;
            }
        };
        if rules
            .rule_for(&change.db, &change.store)
            .direction
            .comes_down()
        {
            collections
                .entry((change.db, change.store))
                .or_default()
                .push(record);
        }
    }
    for ((db, store_name), records) in collections {
        let rule = rules.rule_for(&db, &store_name);
        let write = DocWrite::Merge {
            db,
            store: store_name,
            records,
            from: Side::Remote,
            rule,
        };
        store
            .submit(Command::Documents(write), crate::upstream_origin())
            .await?;
    }
    Ok(())
}

/// Local document changes not pushed yet (of every collection; those that stay local
/// included, as the cursor passes them too).
pub(crate) async fn pending(store: &Store) -> Result<u64, StoreError> {
    let after = read_cursor(store, PUSH_CURSOR_KEY).await?;
    store
        .sync(move |s| s.documents_changed_since(DEFAULT_TENANT, &after, Some(UPSTREAM_ORIGIN)))
        .await
}
