//! JSON document collections (seed 000's `/api/sync/:dbName/:storeName`) and their backups:
//! names, record shapes, the write commands, and backup parsing.
//!
//! A record is a JSON object with four fields the server owns: `id` (kept if the client
//! gives one, else a UUID), `created_at` and `updated_at` (ISO 8601) and `version`, which
//! increases on every change. Everything else is the client's and is stored as given.
//!
//! Names of databases and stores are `[A-Za-z0-9][A-Za-z0-9_.-]{0,63}`: safe in a path, in
//! a file name and in SQL. Names starting with `_` are reserved for the hub itself
//! (`_stock`, the ledger).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::sync_rules::{CollectionRule, Side};
use crate::time::parse_iso8601;

/// The fields of a record that the server owns.
pub const META_FIELDS: [&str; 4] = ["id", "created_at", "updated_at", "version"];
/// Longest record id accepted.
pub const MAX_ID_LEN: usize = 256;
/// Most records in one bulk write.
pub const MAX_BULK: usize = 10_000;
/// The reserved database name under which backups carry the stock ledger.
pub const STOCK_DB: &str = "_stock";

/// A request that cannot be what it claims to be; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid<T>(message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(message.into()))
}

/// Checks the name of an application event published through `POST /api/events`:
/// `[A-Za-z0-9_.:-]{1,64}`, and not one of the hub's own families (`stock:`, `sync:`,
/// `backup:`, `site:` — store presence, `product:` — the catalog, `inventory:`), which
/// only the hub emits.
pub fn check_event_name(name: &str) -> Result<(), Invalid> {
    let charset = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if !charset {
        return invalid(format!(
            "event type {name:?} must be 1 to 64 letters, digits, '_', '.', ':' or '-'"
        ));
    }
    if [
        "stock:",
        "sync:",
        "backup:",
        "site:",
        "product:",
        "inventory:",
        "transfer:",
        "order:",
        "customer:",
        "menu:",
        "config:",
        "user:",
    ]
    .iter()
    .any(|p| name.starts_with(p))
    {
        return invalid(format!("event type {name:?} is reserved for the hub"));
    }
    Ok(())
}

/// Checks a database or store name (`what` names it in the message).
pub fn check_name(what: &str, name: &str) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        invalid(format!(
            "{what} {name:?} is not valid: use 1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit"
        ))
    }
}

/// Reads a record id: a non-empty string (or an integer, taken as its decimal string)
/// without control characters or '/'.
pub fn record_id(value: &Value, at: &str) -> Result<String, Invalid> {
    let id = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        other => {
            return invalid(format!(
                "{at}.id must be a string, got {}",
                crate::stock::type_name(other)
            ))
        }
    };
    check_id(&id).map_err(|why| Invalid(format!("{at}.id {why}")))?;
    Ok(id)
}

/// Checks an id taken from a URL path or a body.
pub fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(format!("must have 1 to {MAX_ID_LEN} bytes"));
    }
    if id.chars().any(|c| c.is_control() || c == '/') {
        return Err("must not contain control characters or '/'".into());
    }
    Ok(())
}

/// The client's fields of a record: the object without the server-owned ones.
pub fn client_fields(object: &Map<String, Value>) -> Map<String, Value> {
    object
        .iter()
        .filter(|(k, _)| !META_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A record to create or replace: its id (generated when `None`) and its client fields.
pub type NewRecord = (Option<String>, Map<String, Value>);

/// A write to one store, applied by the writer in one transaction with its event.
#[derive(Debug, Clone, PartialEq)]
pub enum DocWrite {
    /// `POST /api/sync/:db/:store`: create or replace each record (bulk).
    Upsert {
        db: String,
        store: String,
        records: Vec<NewRecord>,
    },
    /// `PUT …/:id`: create or replace one record.
    Put {
        db: String,
        store: String,
        id: String,
        fields: Map<String, Value>,
        if_version: Option<i64>,
    },
    /// `PATCH …/:id`: merge fields into an existing record (top-level, like `Object.assign`).
    Patch {
        db: String,
        store: String,
        id: String,
        fields: Map<String, Value>,
        if_version: Option<i64>,
    },
    /// `DELETE …/:id`: leave a tombstone (so `since` reports the deletion).
    Delete {
        db: String,
        store: String,
        id: String,
        if_version: Option<i64>,
    },
    /// Revisions from the other tier (a store node's push at the hub, the hub's changes
    /// pulled at the store), each resolved against the stored one under `rule`
    /// ([`crate::sync_rules::resolve`]).
    Merge {
        db: String,
        store: String,
        records: Vec<SyncedRecord>,
        from: Side,
        rule: CollectionRule,
    },
    /// `POST /api/backup/:db/restore`.
    Restore(Restore),
    /// `DELETE /api/backup/:db`: remove every record of the database.
    DropDatabase { db: String },
}

impl DocWrite {
    /// The `(db, store)` a write to one store is about (`None`: a whole database).
    pub fn collection(&self) -> Option<(&str, &str)> {
        match self {
            DocWrite::Upsert { db, store, .. }
            | DocWrite::Put { db, store, .. }
            | DocWrite::Patch { db, store, .. }
            | DocWrite::Delete { db, store, .. }
            | DocWrite::Merge { db, store, .. } => Some((db, store)),
            DocWrite::Restore(_) | DocWrite::DropDatabase { .. } => None,
        }
    }

    /// The event this write produces on the log.
    pub fn event_name(&self) -> &'static str {
        match self {
            DocWrite::Upsert { .. }
            | DocWrite::Put { .. }
            | DocWrite::Patch { .. }
            | DocWrite::Merge { .. } => "sync:upsert",
            DocWrite::Delete { .. } => "sync:delete",
            DocWrite::Restore(_) => "backup:restore",
            DocWrite::DropDatabase { .. } => "backup:drop",
        }
    }
}

/// A revision of a record as another tier holds it (client fields plus metadata).
#[derive(Debug, Clone, PartialEq)]
pub struct SyncedRecord {
    pub id: String,
    pub fields: Map<String, Value>,
    pub version: i64,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub updated_at: i64,
    pub deleted: bool,
}

impl SyncedRecord {
    /// Reads a record as rendered by the server (`id`, `version`, `created_at`,
    /// `updated_at`, client fields; a tombstone has `_deleted: true`).
    pub fn from_rendered(value: &Value) -> Result<Self, Invalid> {
        let Value::Object(object) = value else {
            return invalid("a record must be an object");
        };
        let id = record_id(object.get("id").unwrap_or(&Value::Null), "record")?;
        let version = object
            .get("version")
            .and_then(Value::as_i64)
            .filter(|v| *v >= 1)
            .ok_or_else(|| Invalid(format!("record {id:?}: version must be a positive integer")))?;
        let time = |key: &str| -> Result<Option<i64>, Invalid> {
            match object.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => parse_iso8601(s).map(Some).ok_or_else(|| {
                    Invalid(format!(
                        "record {id:?}: {key} must be an ISO-8601 timestamp"
                    ))
                }),
                Some(_) => invalid(format!("record {id:?}: {key} must be a string")),
            }
        };
        let updated_at = time("updated_at")?
            .ok_or_else(|| Invalid(format!("record {id:?}: updated_at is required")))?;
        let created_at = time("created_at")?.unwrap_or(updated_at);
        let deleted = object.get("_deleted") == Some(&Value::Bool(true));
        let mut fields = client_fields(object);
        fields.remove("_deleted");
        Ok(SyncedRecord {
            id,
            fields,
            version,
            created_at,
            updated_at,
            deleted,
        })
    }
}

/// What merging one [`SyncedRecord`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merged {
    /// The incoming revision was the stored one already.
    Same,
    /// The stored revision won.
    Kept,
    /// The incoming revision was stored as it is.
    Taken,
    /// A new revision combining both sides was stored.
    Combined,
}

/// What a [`DocWrite::Merge`] did: the changed records (the event's `data`) and, per
/// incoming record in order, its fate.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeDone {
    pub changed: RecordsChanged,
    pub results: Vec<Merged>,
}

/// Parses a bulk body `{"data":[…]}`.
pub fn parse_bulk(body: &Value) -> Result<Vec<NewRecord>, Invalid> {
    let Some(items) = body.get("data") else {
        return invalid("body must be an object with \"data\": an array of records");
    };
    let Value::Array(items) = items else {
        return invalid(format!(
            "data must be an array, got {}",
            crate::stock::type_name(items)
        ));
    };
    if items.len() > MAX_BULK {
        return invalid(format!(
            "data has {} records; at most {MAX_BULK} per request",
            items.len()
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let Value::Object(obj) = item else {
                return invalid(format!(
                    "data[{i}] must be an object, got {}",
                    crate::stock::type_name(item)
                ));
            };
            let id = obj
                .get("id")
                .filter(|v| !v.is_null())
                .map(|v| record_id(v, &format!("data[{i}]")))
                .transpose()?;
            Ok((id, client_fields(obj)))
        })
        .collect()
}

/// How a restore treats records that exist both in the backup and in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeStrategy {
    /// Keep whichever has the later `updated_at`.
    Newer,
    /// Always take the backup's.
    Force,
    /// Never overwrite an existing record.
    Skip,
}

/// One record of a backup, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupRecord {
    pub id: String,
    pub fields: Map<String, Value>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    pub version: Option<i64>,
}

/// A checked restore request.
#[derive(Debug, Clone, PartialEq)]
pub struct Restore {
    pub db: String,
    pub stores: BTreeMap<String, Vec<BackupRecord>>,
    /// Remove every record of the database first.
    pub overwrite: bool,
    pub strategy: MergeStrategy,
}

/// Parses `{"backup":{store:[records]},"overwrite","mergeStrategy"}` — also the exact
/// output of `GET /api/backup/:db`, whose extra fields are ignored. Every problem is found
/// before anything is written.
pub fn parse_restore(db: &str, body: &Value) -> Result<Restore, Invalid> {
    check_name("database", db)?;
    let Value::Object(body) = body else {
        return invalid("body must be a JSON object with \"backup\"");
    };
    let overwrite = match body.get("overwrite") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return invalid("overwrite must be a boolean"),
    };
    let strategy = match body.get("mergeStrategy").and_then(Value::as_str) {
        None if body.get("mergeStrategy").is_none_or(Value::is_null) => MergeStrategy::Newer,
        Some("newer") => MergeStrategy::Newer,
        Some("force") => MergeStrategy::Force,
        Some("skip") => MergeStrategy::Skip,
        _ => return invalid("mergeStrategy must be \"newer\", \"force\" or \"skip\""),
    };
    let stores = parse_backup_stores(body.get("backup"))?;
    Ok(Restore {
        db: db.to_owned(),
        stores,
        overwrite,
        strategy,
    })
}

/// Parses the `backup` object of a backup: store name → array of records.
pub fn parse_backup_stores(
    backup: Option<&Value>,
) -> Result<BTreeMap<String, Vec<BackupRecord>>, Invalid> {
    let Some(Value::Object(backup)) = backup else {
        return invalid("backup must be an object mapping store names to arrays of records");
    };
    let mut stores = BTreeMap::new();
    for (store, records) in backup {
        check_name("store", store).map_err(|e| Invalid(format!("backup: {e}")))?;
        let Value::Array(records) = records else {
            return invalid(format!("backup.{store} must be an array of records"));
        };
        let mut seen = std::collections::HashSet::new();
        let mut parsed = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            let at = format!("backup.{store}[{i}]");
            let Value::Object(obj) = record else {
                return invalid(format!("{at} must be an object"));
            };
            let id = record_id(obj.get("id").unwrap_or(&Value::Null), &at)?;
            if !seen.insert(id.clone()) {
                return invalid(format!("{at}.id {id:?} appears twice in the store"));
            }
            let time = |field: &str| -> Result<Option<i64>, Invalid> {
                match obj.get(field) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => parse_iso8601(s).map(Some).ok_or_else(|| {
                        Invalid(format!("{at}.{field} is not an ISO-8601 timestamp: {s:?}"))
                    }),
                    Some(_) => invalid(format!("{at}.{field} must be an ISO-8601 string")),
                }
            };
            let version =
                match obj.get("version") {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(v.as_i64().filter(|v| *v >= 1).ok_or_else(|| {
                        Invalid(format!("{at}.version must be a positive integer"))
                    })?),
                };
            parsed.push(BackupRecord {
                id,
                fields: client_fields(obj),
                created_at: time("created_at")?,
                updated_at: time("updated_at")?,
                version,
            });
        }
        stores.insert(store.clone(), parsed);
    }
    Ok(stores)
}

/// Per-store comparison counts of `POST /api/backup/:db/compare`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Comparison {
    pub only_in_backup: usize,
    pub only_in_current: usize,
    pub different: usize,
    pub same: usize,
}

/// Compares a store's current records (id → client fields) with a backup's. Records are
/// "same" when their client fields are equal; timestamps and versions are not compared.
pub fn compare(
    current: &BTreeMap<String, Map<String, Value>>,
    backup: &[BackupRecord],
) -> Comparison {
    let mut result = Comparison::default();
    let mut matched = 0;
    for record in backup {
        match current.get(&record.id) {
            None => result.only_in_backup += 1,
            Some(fields) => {
                matched += 1;
                if *fields == record.fields {
                    result.same += 1;
                } else {
                    result.different += 1;
                }
            }
        }
    }
    result.only_in_current = current.len() - matched;
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_safe() {
        for ok in ["DefautlDB", "products", "a", "shop-1.v2", "x_y"] {
            assert!(check_name("store", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "_stock",
            "../etc",
            "a/b",
            "a b",
            "x;drop table",
            ".hidden",
            &"a".repeat(65),
        ] {
            assert!(check_name("store", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bulk_parsing_keeps_ids_and_strips_server_fields() {
        let parsed =
            parse_bulk(&json!({"data":[{"id":"1","name":"A","version":9},{"name":"B"},{"id":7}]}))
                .unwrap();
        assert_eq!(
            parsed[0],
            (
                Some("1".into()),
                json!({"name":"A"}).as_object().unwrap().clone()
            )
        );
        assert_eq!(parsed[1].0, None);
        assert_eq!(parsed[2].0.as_deref(), Some("7"));
        assert_eq!(
            parse_bulk(&json!({"data":[1]})).unwrap_err().0,
            "data[0] must be an object, got number"
        );
        assert!(parse_bulk(&json!({"data":[{"id":"a/b"}]}))
            .unwrap_err()
            .0
            .contains("data[0].id"));
    }

    #[test]
    fn restore_parsing_names_the_problem() {
        let ok = parse_restore(
            "db",
            &json!({"backup":{"p":[{"id":"1","x":1,"updated_at":"2025-10-09T10:30:00.000Z"}]},"mergeStrategy":"skip"}),
        )
        .unwrap();
        assert_eq!(ok.strategy, MergeStrategy::Skip);
        assert_eq!(ok.stores["p"][0].updated_at, Some(1_760_005_800_000));
        let cases = [
            (json!({}), "backup must be an object"),
            (json!({"backup":{"p":{}}}), "backup.p must be an array"),
            (
                json!({"backup":{"p":[{"x":1}]}}),
                "backup.p[0].id must be a string",
            ),
            (
                json!({"backup":{"p":[{"id":"1","updated_at":"yesterday"}]}}),
                "backup.p[0].updated_at is not an ISO-8601",
            ),
            (
                json!({"backup":{"p":[{"id":"1"},{"id":"1"}]}}),
                "appears twice",
            ),
            (
                json!({"backup":{},"mergeStrategy":"merge"}),
                "mergeStrategy must be",
            ),
            (json!({"backup":{"../x":[]}}), "store \"../x\" is not valid"),
        ];
        for (body, want) in cases {
            let err = parse_restore("db", &body).unwrap_err().0;
            assert!(err.contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn compare_counts_each_kind() {
        let fields = |v: Value| v.as_object().unwrap().clone();
        let current: BTreeMap<String, Map<String, Value>> = [
            ("1".to_string(), fields(json!({"a":1}))),
            ("2".to_string(), fields(json!({"a":2}))),
            ("3".to_string(), fields(json!({"a":3}))),
        ]
        .into();
        let record = |id: &str, v: Value| BackupRecord {
            id: id.into(),
            fields: fields(v),
            created_at: None,
            updated_at: None,
            version: None,
        };
        let backup = [
            record("1", json!({"a":1})),
            record("2", json!({"a":9})),
            record("4", json!({})),
        ];
        assert_eq!(
            compare(&current, &backup),
            Comparison {
                only_in_backup: 1,
                only_in_current: 1,
                different: 1,
                same: 1
            }
        );
    }
}

/// The `data` of a `sync:upsert` / `sync:delete` event, and what a document write did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecordsChanged {
    pub db: String,
    pub store: String,
    /// The records as stored (with `id`, timestamps and `version`; tombstones for deletes).
    pub records: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<usize>,
}

/// The `data` of a `backup:drop` event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatabaseDropped {
    pub db: String,
    /// Live records removed.
    pub deleted: u64,
}

/// The `data` of a `backup:restore` event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatabaseRestored {
    pub db: String,
    pub stores: Vec<String>,
    pub restored: usize,
    pub updated: usize,
    pub skipped: usize,
}

/// What a document write did; its serialisation is the event's `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum DocOutcome {
    Changed(RecordsChanged),
    Merged(MergeDone),
    Dropped(DatabaseDropped),
    Restored(DatabaseRestored),
}

impl DocOutcome {
    /// The event's `data` JSON.
    pub fn event_data(&self) -> String {
        match self {
            DocOutcome::Changed(c) => serde_json::to_string(c),
            DocOutcome::Merged(m) => serde_json::to_string(&m.changed),
            DocOutcome::Dropped(d) => serde_json::to_string(d),
            DocOutcome::Restored(r) => serde_json::to_string(r),
        }
        .expect("serialising plain structs cannot fail")
    }
}
