//! Connection set-up and embedded migrations.
//!
//! Pragmas follow seed 003 (§4.1): WAL journal, `synchronous = NORMAL`, foreign keys on,
//! incremental auto-vacuum. Migrations are plain SQL, applied in order inside one
//! transaction each, and tracked with `PRAGMA user_version`; a database written by a newer
//! Stocky (a higher version than this binary knows) is refused rather than guessed at.

use rusqlite::Connection;

use crate::StoreError;

/// Each entry upgrades the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE sites (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
-- One event stream per tenant: `head` is the last id assigned, `epoch` changes only when
-- the log is lost or replaced.
CREATE TABLE streams (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants(id),
    epoch       TEXT NOT NULL,
    head        INTEGER NOT NULL
);
-- Materialised on-hand stock: always equal to the sum of the product's movements.
CREATE TABLE stock (
    tenant_id     TEXT NOT NULL,
    site_id       TEXT NOT NULL,
    product_id    INTEGER NOT NULL,
    on_hand       INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    last_event_id INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, site_id, product_id),
    FOREIGN KEY (tenant_id, site_id) REFERENCES sites(tenant_id, id)
) WITHOUT ROWID;
-- The append-only ledger: never updated, never deleted.
CREATE TABLE movements (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    site_id       TEXT NOT NULL,
    product_id    INTEGER NOT NULL,
    delta         INTEGER NOT NULL,
    kind          TEXT NOT NULL,
    reason        TEXT,
    origin_client TEXT,
    origin_op     TEXT,
    event_id      INTEGER NOT NULL,
    client_time   INTEGER,
    server_time   INTEGER NOT NULL
);
CREATE INDEX movements_by_product ON movements (tenant_id, site_id, product_id);
-- The transactional event log (outbox): written with the change, pruned by retention.
CREATE TABLE events (
    tenant_id   TEXT NOT NULL,
    id          INTEGER NOT NULL,
    site_id     TEXT NOT NULL,
    event       TEXT NOT NULL,
    data        TEXT NOT NULL,
    client_id   TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
-- Idempotency keys of applied commands (`opId`, `Idempotency-Key`).
CREATE TABLE applied_ops (
    tenant_id   TEXT NOT NULL,
    op_id       TEXT NOT NULL,
    event_id    INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, op_id)
) WITHOUT ROWID;
"#,
    r#"
-- JSON document collections (seed 000's /api/sync/:db/:store). `body` holds the client's
-- fields; id, timestamps and version are columns. A deleted record stays as a tombstone
-- (`deleted_at` set, body '{}') so that `since` can report the deletion.
CREATE TABLE documents (
    tenant_id   TEXT NOT NULL,
    db          TEXT NOT NULL,
    store       TEXT NOT NULL,
    id          TEXT NOT NULL,
    body        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER,
    PRIMARY KEY (tenant_id, db, store, id)
) WITHOUT ROWID;
CREATE INDEX documents_by_update ON documents (tenant_id, db, store, updated_at);
"#,
    r#"
-- People and machines. Emails are unique across the hub (login needs no tenant name).
-- `site_id` NULL means every site of the tenant; `modules` NULL means every module.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants(id),
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    site_id       TEXT,
    modules       TEXT,
    created_at    INTEGER NOT NULL,
    disabled_at   INTEGER
);
CREATE TABLE devices (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    id          TEXT NOT NULL,
    site_id     TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, id)
) WITHOUT ROWID;
-- API keys are stored as SHA-256 hashes; the key itself is shown once, at creation.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    name        TEXT NOT NULL,
    key_hash    TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL,
    site_id     TEXT,
    modules     TEXT,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
-- Login sessions: the refresh token (hashed) and whether the session was logged out.
CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    user_id       TEXT NOT NULL REFERENCES users(id),
    device_id     TEXT,
    refresh_hash  TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
"#,
];

/// Applies seed 003's pragmas to a fresh connection.
pub(crate) fn configure(conn: &Connection, read_only: bool) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    if read_only {
        conn.execute_batch("PRAGMA query_only = ON;")?;
        return Ok(());
    }
    // auto_vacuum only takes effect before the first table exists, so it comes first.
    conn.execute_batch(
        "PRAGMA auto_vacuum = INCREMENTAL;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;",
    )?;
    Ok(())
}

/// Brings the schema up to date; returns the version now in force.
pub(crate) fn migrate(conn: &mut Connection) -> Result<usize, StoreError> {
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Schema(format!(
            "database schema version {current} is newer than this binary supports ({}); upgrade Stocky",
            MIGRATIONS.len()
        )));
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (version + 1) as i64)?;
        tx.commit()?;
    }
    Ok(MIGRATIONS.len())
}
